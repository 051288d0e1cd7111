// Row-group pruning: decides from min/max/null-count statistics that no row of a row group can
// satisfy a predicate. Conservative: anything it does not understand keeps the row group.
import { decodeLiteral, type ExprNode } from './expressions.ts';
import type { ColumnStats } from './io/parquet/index.ts';
import { conjuncts } from './optimizer.ts';

type Comparable = number | bigint | string | boolean;

function literal(e: ExprNode): Comparable | undefined {
  if (e.op !== 'lit') return undefined;
  const v = decodeLiteral(e.value);
  return typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' || typeof v === 'boolean' ? v : undefined;
}

function column(e: ExprNode): string | undefined {
  return e.op === 'col' ? e.name : undefined;
}

/** Total order across number/bigint (compared exactly), string, boolean; undefined when incomparable. */
function cmp(a: Comparable, b: Comparable): number | undefined {
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) {
    if (typeof a === 'number' && Number.isNaN(a)) return undefined;
    if (typeof b === 'number' && Number.isNaN(b)) return undefined;
    // bigint vs number: compare without losing precision on the bigint side.
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (typeof a !== typeof b) return undefined;
  return a < b ? -1 : a > b ? 1 : 0;
}

const FLIP: Record<string, string> = { lt: 'gt', le: 'ge', gt: 'lt', ge: 'le', eq: 'eq', neq: 'neq' };

/** True when the conjunct can be proven false (or null) for every row of the group. */
function refutes(c: ExprNode, stats: Record<string, ColumnStats>, numRows: number): boolean {
  if (c.op !== 'call') return false;
  if (c.fn === 'and') return c.args.some((a) => refutes(a, stats, numRows));
  if (c.fn === 'or') return c.args.every((a) => refutes(a, stats, numRows));
  const [a, b] = c.args;
  if (c.fn === 'is_null' || c.fn === 'not_null') {
    const name = a && column(a);
    const s = name ? stats[name] : undefined;
    if (!s || s.nullCount === null) return false;
    return c.fn === 'is_null' ? s.nullCount === 0 : s.nullCount === numRows;
  }
  if (c.fn === 'between' && a && b && c.args[2]) {
    return refutes({ op: 'call', fn: 'ge', args: [a, b] }, stats, numRows) || refutes({ op: 'call', fn: 'le', args: [a, c.args[2]] }, stats, numRows);
  }
  if (c.fn === 'is_in' && a) {
    const name = column(a);
    const s = name ? stats[name] : undefined;
    const values = c.params?.['values'];
    if (!s || s.min === null || s.max === null || !Array.isArray(values)) return false;
    return values.every((v) => {
      const lv = decodeLiteral(v);
      if (lv === null) return true;
      if (typeof lv !== 'number' && typeof lv !== 'bigint' && typeof lv !== 'string' && typeof lv !== 'boolean') return false;
      const lo = cmp(lv, s.min as Comparable);
      const hi = cmp(lv, s.max as Comparable);
      return lo !== undefined && hi !== undefined && (lo < 0 || hi > 0);
    });
  }
  if (!['lt', 'le', 'gt', 'ge', 'eq'].includes(c.fn) || !a || !b) return false;
  let fn = c.fn;
  let name = column(a);
  let value = literal(b);
  if (name === undefined || value === undefined) {
    name = column(b);
    value = literal(a);
    fn = FLIP[fn] as typeof fn;
  }
  if (name === undefined || value === undefined) return false;
  const s = stats[name];
  if (!s) return false;
  if (s.nullCount === numRows) return true; // all null: every comparison is null
  if (s.min === null || s.max === null) return false;
  const vsMin = cmp(value, s.min as Comparable);
  const vsMax = cmp(value, s.max as Comparable);
  if (vsMin === undefined || vsMax === undefined) return false;
  switch (fn) {
    case 'lt':
      return vsMin <= 0; // x < v impossible when min >= v
    case 'le':
      return vsMin < 0;
    case 'gt':
      return vsMax >= 0;
    case 'ge':
      return vsMax > 0;
    case 'eq':
      return vsMin < 0 || vsMax > 0;
    default:
      return false;
  }
}

export function canSkipRowGroup(predicate: ExprNode, stats: Record<string, ColumnStats>, numRows: number): boolean {
  return conjuncts(predicate).some((c) => refutes(c, stats, numRows));
}

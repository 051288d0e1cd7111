// Builds (and type-checks, at call time) the plan nodes of groupBy/agg, distinct, sort, join,
// concat and keyed repartition. Errors name the column at fault.
import { ColumnNotFoundError, DataType, Field, Schema, type SchemaJSON } from '../datatypes.ts';
import { inferField } from '../eval.ts';
import { type AggNode, col, exprName, type ExprNode } from '../expressions.ts';
import { planSchema, type AggregateCall, type JoinHow, type PlanNode, type SortKey } from '../plan.ts';
import { udfEvalContext } from '../udf-exec.ts';
import { checkKeyType } from './keys.ts';

function field(schema: Schema, name: string, what: string): Field {
  if (typeof name !== 'string') throw new TypeError(`${what}: column names must be strings, got ${typeof name}`);
  if (!schema.has(name)) throw new ColumnNotFoundError(name, schema.names, what);
  return schema.field(name);
}

const ORDERABLE = new Set([
  'bool',
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'float32',
  'float64',
  'utf8',
  'binary',
  'date',
  'timestamp',
]);

/** The output type of an aggregate over `t`, or an error naming the column. */
function aggType(fn: AggNode['fn'], t: DataType, column: string): DataType {
  const bad = (want: string): never => {
    throw new TypeError(`${fn === 'count_distinct' ? 'countDistinct' : fn}: column '${column}' is ${t}, expected ${want}`);
  };
  switch (fn) {
    case 'sum':
      if (t.kind === 'bool') return DataType.int64();
      if (!t.isNumeric()) bad('a numeric column');
      return t.isFloat() ? DataType.float64() : DataType.int64();
    case 'mean':
      if (!t.isNumeric() && t.kind !== 'bool') bad('a numeric column');
      return DataType.float64();
    case 'min':
    case 'max':
      if (!ORDERABLE.has(t.kind)) bad('an orderable column (numbers, strings, dates, timestamps, bools)');
      return t;
    case 'count':
      return DataType.int64();
    case 'count_distinct':
      checkKeyType(column, t, 'countDistinct');
      return DataType.int64();
    case 'first':
      return t;
    case 'list':
      return DataType.list(t);
  }
}

/** groupBy(keys).agg(aggs) (no keys: one row over the whole frame). */
export function aggregateNode(input: PlanNode, keys: readonly string[], aggs: readonly AggNode[], what: string): PlanNode {
  const schema = planSchema(input);
  const seen = new Set<string>();
  const keyFields = keys.map((k) => {
    const f = field(schema, k, what);
    checkKeyType(k, f.type, what);
    if (seen.has(k)) throw new Error(`${what}: key '${k}' is given twice`);
    seen.add(k);
    return f;
  });
  const calls: AggregateCall[] = [];
  const inputExprs: ExprNode[] = keys.map((k) => col(k).node);
  const inputFields: Field[] = [...keyFields];
  for (const [i, a] of aggs.entries()) {
    if (!a || typeof a !== 'object' || !('fn' in a)) throw new TypeError(`${what}: argument ${i + 1} is not an aggregation (use e.g. col('x').sum())`);
    let f: Field;
    try {
      f = inferField(a.expr, schema, udfEvalContext);
    } catch (err) {
      if (err instanceof Error) err.message = `${what}: ${err.message}`;
      throw err;
    }
    const column = exprName(a.expr);
    const out = aggType(a.fn, f.type, column);
    if (seen.has(a.name)) throw new Error(`${what}: duplicate output column '${a.name}'; use .alias() to rename one`);
    seen.add(a.name);
    calls.push({ fn: a.fn, expr: a.expr, name: a.name, inType: f.type.json, outType: out.json });
    inputExprs.push({ op: 'alias', expr: a.expr, name: `__a${i}` });
    inputFields.push(new Field(`__a${i}`, f.type, true));
  }
  if (!keys.length && !aggs.length) throw new Error(`${what} needs at least one aggregation`);
  const projected: PlanNode = { type: 'project', input, exprs: inputExprs, schema: new Schema(inputFields).toJSON() };
  const outFields = [...keyFields.map((f) => new Field(f.name, f.type, true)), ...calls.map((c) => new Field(c.name, DataType.fromJSON(c.outType), true))];
  return { type: 'aggregate', inputs: [projected], keys: [...keys], aggs: calls, schema: new Schema(outFields).toJSON() };
}

/** distinct(columns?): one row per distinct value of the columns (all by default), keeping every column (the first row's). */
export function distinctNode(input: PlanNode, columns: readonly string[]): PlanNode {
  const schema = planSchema(input);
  const keys = columns.length ? [...columns] : schema.names;
  for (const k of keys) checkKeyType(k, field(schema, k, 'distinct').type, 'distinct');
  const rest = schema.names.filter((n) => !keys.includes(n));
  const agg = aggregateNode(
    input,
    keys,
    rest.map((n) => ({ fn: 'first' as const, expr: col(n).node, name: n })),
    'distinct',
  );
  if (!rest.length) return agg;
  // Back to the input's column order.
  return { type: 'project', input: agg, exprs: schema.names.map((n) => col(n).node), schema: schema.toJSON() };
}

export interface SortOptions {
  /** Descending (per key, or one for all). Default false. */
  desc?: boolean | readonly boolean[];
  /** Nulls before other values (per key, or one for all). Default false: nulls last, as DuckDB. */
  nullsFirst?: boolean | readonly boolean[];
}

export function sortNode(input: PlanNode, by: readonly string[], opts: SortOptions): PlanNode {
  if (!by.length) throw new Error('sort() needs at least one column');
  const schema = planSchema(input);
  const per = (v: boolean | readonly boolean[] | undefined, name: string): boolean[] => {
    if (v === undefined) return by.map(() => false);
    if (typeof v === 'boolean') return by.map(() => v);
    if (!Array.isArray(v) || v.length !== by.length || v.some((x) => typeof x !== 'boolean')) {
      throw new TypeError(`sort: option '${name}' must be a boolean or one boolean per key (${by.length})`);
    }
    return [...v];
  };
  const desc = per(opts.desc, 'desc');
  const nullsFirst = per(opts.nullsFirst, 'nullsFirst');
  const keys: SortKey[] = by.map((c, i) => {
    const f = field(schema, c, 'sort');
    if (!ORDERABLE.has(f.type.kind) && f.type.kind !== 'null') throw new TypeError(`sort: column '${c}' is ${f.type}, which cannot be sorted`);
    return { column: c, desc: desc[i]!, nullsFirst: nullsFirst[i]! };
  });
  return { type: 'sort', inputs: [input], by: keys, schema: input.schema };
}

export interface JoinOptions {
  /** Key columns with the same names on both sides (they appear once in the output). */
  on?: string | readonly string[];
  leftOn?: string | readonly string[];
  rightOn?: string | readonly string[];
  /** Default 'inner'. */
  how?: JoinHow;
  /** Appended to right column names that clash with left ones. Default '_right'. */
  suffix?: string;
}

const HOWS: readonly JoinHow[] = ['inner', 'left', 'right', 'outer', 'semi', 'anti'];

export function joinNode(left: PlanNode, right: PlanNode, opts: JoinOptions): PlanNode {
  if (!opts || typeof opts !== 'object') throw new TypeError('join(other, opts) needs options: { on } or { leftOn, rightOn }');
  const how = opts.how ?? 'inner';
  if (!HOWS.includes(how)) throw new TypeError(`join: how must be one of ${HOWS.join(', ')}, got ${String(how)}`);
  const list = (v: string | readonly string[] | undefined): string[] | null => (v === undefined ? null : typeof v === 'string' ? [v] : [...v]);
  const on = list(opts.on);
  let leftOn = list(opts.leftOn);
  let rightOn = list(opts.rightOn);
  if (on && (leftOn || rightOn)) throw new TypeError('join: give either on, or leftOn and rightOn, not both');
  if (on) leftOn = rightOn = on;
  if (!leftOn || !rightOn || !leftOn.length) throw new TypeError('join: needs on, or leftOn and rightOn');
  if (leftOn.length !== rightOn.length) throw new TypeError(`join: leftOn has ${leftOn.length} column(s), rightOn ${rightOn.length}`);
  const suffix = opts.suffix ?? '_right';
  if (typeof suffix !== 'string' || !suffix) throw new TypeError('join: suffix must be a non-empty string');
  const ls = planSchema(left);
  const rs = planSchema(right);
  for (const [i, l] of leftOn.entries()) {
    const r = rightOn[i]!;
    const lf = field(ls, l, 'join (left side)');
    const rf = field(rs, r, 'join (right side)');
    checkKeyType(l, lf.type, 'join');
    if (!lf.type.equals(rf.type)) {
      throw new TypeError(`join: key column '${l}' is ${lf.type} on the left but '${r}' is ${rf.type} on the right; cast one side so both have the same type`);
    }
  }
  const using = on !== null;
  const semi = how === 'semi' || how === 'anti';
  const fields: Field[] = ls.fields.map((f) => new Field(f.name, f.type, f.nullable || how === 'right' || how === 'outer'));
  const rightNames: Record<string, string> = {};
  if (!semi) {
    const taken = new Set(ls.names);
    for (const f of rs.fields) {
      if (using && rightOn.includes(f.name)) continue;
      let name = f.name;
      if (taken.has(name)) name = `${name}${suffix}`;
      if (taken.has(name)) throw new Error(`join: right column '${f.name}' would be named '${name}', which the left side already has; pass another suffix`);
      taken.add(name);
      rightNames[f.name] = name;
      fields.push(new Field(name, f.type, f.nullable || how === 'left' || how === 'outer'));
    }
  }
  return { type: 'join', inputs: [left, right], leftOn, rightOn, how, using, rightNames, schema: new Schema(fields).toJSON() };
}

export function concatNode(a: PlanNode, b: PlanNode): PlanNode {
  const sa = planSchema(a);
  const sb = planSchema(b);
  const names = new Set([...sa.names, ...sb.names]);
  for (const n of names) {
    const ta = sa.has(n) ? sa.field(n).type.toString() : 'missing';
    const tb = sb.has(n) ? sb.field(n).type.toString() : 'missing';
    if (ta !== tb) throw new TypeError(`concat: column '${n}' is ${ta} in this frame but ${tb} in the other`);
  }
  if (sa.names.join('\0') !== sb.names.join('\0'))
    throw new TypeError(`concat: columns are in a different order (${sa.names.join(', ')} vs ${sb.names.join(', ')}); select them in the same order`);
  const schema: SchemaJSON = new Schema(sa.fields.map((f, i) => new Field(f.name, f.type, f.nullable || sb.fields[i]!.nullable))).toJSON();
  return { type: 'concat', inputs: [a, b], schema };
}

export function repartitionNode(input: PlanNode, n: number, keys: readonly string[]): PlanNode {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`repartition(n) needs a positive integer, got ${String(n)}`);
  const schema = planSchema(input);
  for (const k of keys) checkKeyType(k, field(schema, k, 'repartition').type, 'repartition');
  return { type: 'repartition', inputs: [input], keys: [...keys], partitions: n, schema: input.schema };
}

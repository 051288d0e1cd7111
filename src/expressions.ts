// Expressions: a tiny builder (`col`, `lit`, methods) over plain-JSON nodes. Nodes are what plans
// carry and ship; type rules and kernels live in src/functions (one function per file).
import { DataType, type DataTypeJSON } from './datatypes.ts';

/** A literal value as it travels in JSON: bigint and bytes are tagged so JSON.stringify keeps them. */
export type LiteralJSON =
  | null
  | boolean
  | number
  | string
  | { $bigint: string }
  | { $float: 'NaN' | 'Infinity' | '-Infinity' }
  | { $bytes: string }
  | { $date: string }
  | LiteralJSON[]
  | { $struct: { [k: string]: LiteralJSON } };

/** A JS value usable as a literal. */
export type Scalar = null | boolean | number | bigint | string | Uint8Array | Date | readonly Scalar[] | { readonly [k: string]: Scalar };

/** Builtin function names (kernels in src/functions). */
export type FunctionName =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'mod'
  | 'neg'
  | 'eq'
  | 'neq'
  | 'lt'
  | 'le'
  | 'gt'
  | 'ge'
  | 'and'
  | 'or'
  | 'not'
  | 'is_null'
  | 'not_null'
  | 'is_in'
  | 'between'
  | 'fill_null'
  | 'if_else'
  | 'str.length'
  | 'str.lower'
  | 'str.upper'
  | 'str.contains'
  | 'str.starts_with'
  | 'str.ends_with'
  | 'str.split'
  | 'list.length'
  | 'list.get'
  | 'struct.get';

export type ExprNode =
  | { op: 'col'; name: string }
  | { op: 'lit'; value: LiteralJSON; type: DataTypeJSON }
  | { op: 'alias'; expr: ExprNode; name: string }
  | { op: 'cast'; expr: ExprNode; to: DataTypeJSON }
  | { op: 'call'; fn: FunctionName; args: ExprNode[]; params?: { [k: string]: LiteralJSON } }
  | UdfCallNode;

/** A call of a user-defined function, resolved by its registered name (never serialized code). */
export interface UdfCallNode {
  op: 'udf';
  name: string;
  args: ExprNode[];
  /** Constructor arguments of a `cls` handle: one instance per distinct (class, init) per worker. */
  init?: LiteralJSON[];
}

declare const UNTYPED: unique symbol;
/**
 * The value type of an expression TypeScript cannot know, e.g. `col('x')`. It is accepted wherever
 * a typed expression is expected, and reads back as `unknown`.
 */
export type Untyped = typeof UNTYPED;
/** The JS type an expression's values read back as. */
export type ValueOf<T> = [T] extends [Untyped] ? unknown : T;

/** An expression or a constant; an untyped context accepts any expression. */
export type ExprLike<T = unknown> = [T] extends [Untyped] ? Expr<unknown> | Scalar : Expr<T> | Expr<Untyped> | Scalar;

/**
 * A column expression. `T` is the JS type of its values (phantom, for the typed DataFrame API);
 * null is always possible at run time.
 */
/** Brands expressions so that one made by another copy of the package (a bundle beside the sources)
 *  is still recognised as an expression instead of being taken for a literal value. */
const EXPR_BRAND = Symbol.for('fanout.Expr');

export class Expr<T = unknown> {
  declare readonly __type?: T;
  constructor(readonly node: ExprNode) {}

  get [EXPR_BRAND](): true {
    return true;
  }
  static [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === 'object' && v !== null && (v as { [EXPR_BRAND]?: unknown })[EXPR_BRAND] === true;
  }

  toJSON(): ExprNode {
    return this.node;
  }
  toString(): string {
    return exprToString(this.node);
  }
  /** Output column name: the column it derives from, or its alias. */
  get name(): string {
    return exprName(this.node);
  }

  private call<R>(fn: FunctionName, args: ExprLike[], params?: { [k: string]: LiteralJSON }): Expr<R> {
    const node: ExprNode = { op: 'call', fn, args: [this.node, ...args.map((a) => toExpr(a).node)] };
    if (params) node.params = params;
    return new Expr<R>(node);
  }

  add(other: ExprLike): Expr<T> {
    return this.call('add', [other]);
  }
  sub(other: ExprLike): Expr<T> {
    return this.call('sub', [other]);
  }
  mul(other: ExprLike): Expr<T> {
    return this.call('mul', [other]);
  }
  /** True division: the result is float64 (float32 for float32 operands). */
  div(other: ExprLike): Expr<number> {
    return this.call('div', [other]);
  }
  mod(other: ExprLike): Expr<T> {
    return this.call('mod', [other]);
  }
  neg(): Expr<T> {
    return this.call('neg', []);
  }

  eq(other: ExprLike): Expr<boolean> {
    return this.call('eq', [other]);
  }
  neq(other: ExprLike): Expr<boolean> {
    return this.call('neq', [other]);
  }
  lt(other: ExprLike): Expr<boolean> {
    return this.call('lt', [other]);
  }
  le(other: ExprLike): Expr<boolean> {
    return this.call('le', [other]);
  }
  gt(other: ExprLike): Expr<boolean> {
    return this.call('gt', [other]);
  }
  ge(other: ExprLike): Expr<boolean> {
    return this.call('ge', [other]);
  }

  /** Three-valued logic: false AND null = false, true OR null = true. */
  and(other: ExprLike<boolean>): Expr<boolean> {
    return this.call('and', [other]);
  }
  or(other: ExprLike<boolean>): Expr<boolean> {
    return this.call('or', [other]);
  }
  not(): Expr<boolean> {
    return this.call('not', []);
  }

  isNull(): Expr<boolean> {
    return this.call('is_null', []);
  }
  notNull(): Expr<boolean> {
    return this.call('not_null', []);
  }
  isIn(values: readonly Scalar[]): Expr<boolean> {
    return this.call('is_in', [], { values: values.map(encodeLiteral) });
  }
  /** lo <= x <= hi (inclusive both ends, as in SQL). */
  between(lo: ExprLike, hi: ExprLike): Expr<boolean> {
    return this.call('between', [lo, hi]);
  }
  fillNull(value: ExprLike<T>): Expr<T> {
    return this.call('fill_null', [value]);
  }
  /** On a boolean expression: `then` where true, `otherwise` where false or null. */
  ifElse<R = Untyped>(then: ExprLike<R>, otherwise: ExprLike<R>): Expr<R> {
    return this.call('if_else', [then, otherwise]);
  }

  alias(name: string): Expr<T> {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('alias(name) needs a non-empty string');
    return new Expr<T>({ op: 'alias', expr: this.node, name });
  }
  cast<R = Untyped>(dtype: DataType<R>): Expr<R> {
    if (!(dtype instanceof DataType)) throw new TypeError('cast(dtype) needs a DataType, e.g. DataType.float64()');
    return new Expr<R>({ op: 'cast', expr: this.node, to: dtype.json });
  }

  // Aggregations (for groupBy(...).agg(...) and df.agg(...)); SQL null semantics: nulls are
  // skipped, and an aggregate over no non-null value is null (count: 0).
  /** Sum; integer columns sum to int64 (bigint), floats to float64. */
  sum(): AggExpr<[T] extends [bigint] ? bigint : [T] extends [number] ? number | bigint : unknown> {
    return new AggExpr({ fn: 'sum', expr: this.node, name: exprName(this.node) });
  }
  /** Mean as float64. */
  mean(): AggExpr<number> {
    return new AggExpr({ fn: 'mean', expr: this.node, name: exprName(this.node) });
  }
  min(): AggExpr<ValueOf<T>> {
    return new AggExpr({ fn: 'min', expr: this.node, name: exprName(this.node) });
  }
  max(): AggExpr<ValueOf<T>> {
    return new AggExpr({ fn: 'max', expr: this.node, name: exprName(this.node) });
  }
  /** Number of non-null values (int64); never null (0 over no rows). */
  count(): AggExpr<bigint, string, never> {
    return new AggExpr({ fn: 'count', expr: this.node, name: exprName(this.node) });
  }
  /** Number of distinct non-null values (int64); never null (0 over no rows). */
  countDistinct(): AggExpr<bigint, string, never> {
    return new AggExpr({ fn: 'count_distinct', expr: this.node, name: exprName(this.node) });
  }
  /** The value of the group's first row in input order (null if that value is null). */
  first(): AggExpr<ValueOf<T>> {
    return new AggExpr({ fn: 'first', expr: this.node, name: exprName(this.node) });
  }

  get str(): StringNamespace {
    return new StringNamespace(this);
  }
  /**
   * List functions (`.list.length()`, `.list.get(i)`); called, `.list()` is the aggregation that
   * collects every value of the group (nulls included) in input order.
   */
  get list(): ListNamespace & (() => AggExpr<(ValueOf<T> | null)[]>) {
    const ns = new ListNamespace(this);
    const agg = (): AggExpr<(ValueOf<T> | null)[]> => new AggExpr({ fn: 'list', expr: this.node, name: exprName(this.node) });
    // A function's own `length` is read-only but configurable: redefine it as the namespace method.
    Object.defineProperty(agg, 'length', { value: () => ns.length() });
    Object.defineProperty(agg, 'get', { value: (i: number) => ns.get(i) });
    return agg as unknown as ListNamespace & (() => AggExpr<(ValueOf<T> | null)[]>);
  }
  get struct(): StructNamespace {
    return new StructNamespace(this);
  }

  /** @internal used by the namespaces */
  _call<R>(fn: FunctionName, args: ExprLike[], params?: { [k: string]: LiteralJSON }): Expr<R> {
    return this.call<R>(fn, args, params);
  }
}

export type AggFn = 'sum' | 'mean' | 'min' | 'max' | 'count' | 'count_distinct' | 'first' | 'list';

/** An aggregation as data: function, input expression, output name. */
export interface AggNode {
  fn: AggFn;
  expr: ExprNode;
  name: string;
}

/** An aggregation expression (`col('x').sum().alias('total')`); `T` its value type, `N` its output name. */
/** `Z`: what a result may be besides T (null, as in SQL; `never` for the counts, which are 0 over no rows). */
export class AggExpr<T = unknown, N extends string = string, Z = null> {
  declare readonly __type?: T;
  declare readonly __name?: N;
  declare readonly __null?: Z;
  constructor(readonly node: AggNode) {}
  alias<M extends string>(name: M): AggExpr<T, M, Z> {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('alias(name) needs a non-empty string');
    return new AggExpr<T, M, Z>({ ...this.node, name });
  }
  toString(): string {
    return `${this.node.fn}(${exprToString(this.node.expr)}) as ${this.node.name}`;
  }
}

export class StringNamespace {
  constructor(private readonly e: Expr) {}
  /** Length in Unicode code points. */
  length(): Expr<number> {
    return this.e._call('str.length', []);
  }
  lower(): Expr<string> {
    return this.e._call('str.lower', []);
  }
  upper(): Expr<string> {
    return this.e._call('str.upper', []);
  }
  contains(s: ExprLike<string>): Expr<boolean> {
    return this.e._call('str.contains', [s]);
  }
  startsWith(s: ExprLike<string>): Expr<boolean> {
    return this.e._call('str.starts_with', [s]);
  }
  endsWith(s: ExprLike<string>): Expr<boolean> {
    return this.e._call('str.ends_with', [s]);
  }
  split(sep: string): Expr<string[]> {
    if (typeof sep !== 'string' || sep.length === 0) throw new TypeError('str.split(sep) needs a non-empty string separator');
    return this.e._call('str.split', [], { sep });
  }
}

export class ListNamespace {
  constructor(private readonly e: Expr) {}
  length(): Expr<number> {
    return this.e._call('list.length', []);
  }
  /** Element at `i` (negative counts from the end); null when out of range. */
  get(i: number): Expr<Untyped> {
    if (!Number.isInteger(i)) throw new TypeError(`list.get(i) needs an integer index, got ${String(i)}`);
    return this.e._call('list.get', [], { index: i });
  }
}

export class StructNamespace {
  constructor(private readonly e: Expr) {}
  get(field: string): Expr<Untyped> {
    if (typeof field !== 'string' || !field) throw new TypeError('struct.get(field) needs a field name');
    return this.e._call('struct.get', [], { field });
  }
}

export function col<T = Untyped>(name: string): Expr<NoInfer<T>> {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('col(name) needs a non-empty column name');
  // NoInfer: a bare col('x') stays untyped even where a typed expression is expected.
  return new Expr<T>({ op: 'col', name });
}

/** A literal; its type is inferred from the JS value unless `dtype` is given. */
export function lit<T extends Scalar>(value: T, dtype?: DataType): Expr<T> {
  const type = dtype ? dtype.json : inferLiteralType(value);
  return new Expr<T>({ op: 'lit', value: encodeLiteral(value), type });
}

export function toExpr<T = unknown>(v: ExprLike<T>): Expr<T> {
  return v instanceof Expr ? (v as Expr<T>) : (lit(v as Scalar) as Expr<T>);
}

/**
 * Literal typing: integral JS numbers in int32 range are int32 (so `col('n').add(1)` keeps an int32
 * column int32 and widens naturally otherwise), other numbers float64, bigint int64.
 */
export function inferLiteralType(v: Scalar): DataTypeJSON {
  if (v === null || v === undefined) return { kind: 'null' };
  switch (typeof v) {
    case 'boolean':
      return { kind: 'bool' };
    case 'number':
      return Number.isInteger(v) && v >= -2147483648 && v <= 2147483647 ? { kind: 'int32' } : { kind: 'float64' };
    case 'bigint':
      return { kind: 'int64' };
    case 'string':
      return { kind: 'utf8' };
  }
  if (v instanceof Uint8Array) return { kind: 'binary' };
  if (v instanceof Date) return { kind: 'timestamp', unit: 'ms', tz: null };
  if (Array.isArray(v)) {
    const first = (v as readonly Scalar[]).find((x) => x !== null);
    return { kind: 'list', child: first === undefined ? { kind: 'null' } : inferLiteralType(first) };
  }
  return {
    kind: 'struct',
    fields: Object.entries(v as { [k: string]: Scalar }).map(([name, x]) => ({ name, type: inferLiteralType(x), nullable: true })),
  };
}

export function encodeLiteral(v: Scalar): LiteralJSON {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case 'boolean':
    case 'string':
      return v;
    case 'number':
      // JSON has no NaN/Infinity: tag them so plans round-trip exactly.
      if (!Number.isFinite(v)) return { $float: String(v) as 'NaN' };
      return v;
    case 'bigint':
      return { $bigint: v.toString() };
  }
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') };
  if (v instanceof Date) return { $date: v.toISOString() };
  if (Array.isArray(v)) return (v as readonly Scalar[]).map(encodeLiteral);
  const out: { [k: string]: LiteralJSON } = {};
  for (const [k, x] of Object.entries(v as { [k: string]: Scalar })) out[k] = encodeLiteral(x);
  return { $struct: out };
}

export function decodeLiteral(j: LiteralJSON): Scalar {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return j.map(decodeLiteral);
  if ('$bigint' in j) return BigInt(j.$bigint);
  if ('$float' in j) return Number(j.$float);
  if ('$bytes' in j) return new Uint8Array(Buffer.from(j.$bytes, 'base64'));
  if ('$date' in j) return new Date(j.$date);
  const out: { [k: string]: Scalar } = {};
  for (const [k, x] of Object.entries(j.$struct)) out[k] = decodeLiteral(x);
  return out;
}

/** The output name of an expression: alias, else the first column it reads, else 'literal'. */
export function exprName(node: ExprNode): string {
  switch (node.op) {
    case 'col':
      return node.name;
    case 'alias':
      return node.name;
    case 'lit':
      return 'literal';
    case 'cast':
      return exprName(node.expr);
    case 'call':
    case 'udf':
      return node.args.length ? exprName(node.args[0]!) : node.op === 'udf' ? node.name : 'literal';
  }
}

/** Columns an expression reads. */
export function columnsOf(node: ExprNode, into: Set<string> = new Set()): Set<string> {
  switch (node.op) {
    case 'col':
      into.add(node.name);
      break;
    case 'lit':
      break;
    case 'alias':
    case 'cast':
      columnsOf(node.expr, into);
      break;
    case 'call':
    case 'udf':
      for (const a of node.args) columnsOf(a, into);
      break;
  }
  return into;
}

/** Rewrites every node bottom-up. */
export function mapExpr(node: ExprNode, f: (n: ExprNode) => ExprNode): ExprNode {
  switch (node.op) {
    case 'alias':
      return f({ ...node, expr: mapExpr(node.expr, f) });
    case 'cast':
      return f({ ...node, expr: mapExpr(node.expr, f) });
    case 'call':
      return f({ ...node, args: node.args.map((a) => mapExpr(a, f)) });
    case 'udf':
      return f({ ...node, args: node.args.map((a) => mapExpr(a, f)) });
    default:
      return f(node);
  }
}

/**
 * The UDF calls in `node`, outer before inner (a UDF's arguments may hold UDF calls too). The one
 * walker for "which UDFs does this expression call"; lazy, so a search stops at the first match.
 */
export function* udfCalls(node: ExprNode): Generator<UdfCallNode> {
  switch (node.op) {
    case 'udf':
      yield node;
      for (const a of node.args) yield* udfCalls(a);
      break;
    case 'alias':
    case 'cast':
      yield* udfCalls(node.expr);
      break;
    case 'call':
      for (const a of node.args) yield* udfCalls(a);
      break;
    default:
      break;
  }
}

/** Does `node` call a UDF anywhere? */
export function containsUdf(node: ExprNode): boolean {
  return !udfCalls(node).next().done;
}

const INFIX: Partial<Record<FunctionName, string>> = {
  add: '+',
  sub: '-',
  mul: '*',
  div: '/',
  mod: '%',
  eq: '==',
  neq: '!=',
  lt: '<',
  le: '<=',
  gt: '>',
  ge: '>=',
  and: '&',
  or: '|',
};

function literalToString(v: LiteralJSON): string {
  const d = decodeLiteral(v);
  if (typeof d === 'string') return JSON.stringify(d);
  if (typeof d === 'bigint') return `${d}`;
  if (d instanceof Date) return d.toISOString();
  if (d instanceof Uint8Array) return `b'${Buffer.from(d).toString('hex')}'`;
  return JSON.stringify(v);
}

/** Compact, readable form used by explain and error messages: `col(x) * lit(2) + lit(1)`. */
export function exprToString(node: ExprNode): string {
  switch (node.op) {
    case 'col':
      return `col(${node.name})`;
    case 'lit':
      return `lit(${literalToString(node.value)})`;
    case 'alias':
      return `${exprToString(node.expr)} as ${node.name}`;
    case 'cast':
      return `cast(${exprToString(node.expr)} as ${DataType.fromJSON(node.to)})`;
    case 'udf':
      return `${node.name}(${node.args.map(exprToString).join(', ')})`;
    case 'call': {
      const infix = INFIX[node.fn];
      const a = node.args.map((x) => (x.op === 'call' && INFIX[x.fn] ? `(${exprToString(x)})` : exprToString(x)));
      if (infix && a.length === 2) return `${a[0]} ${infix} ${a[1]}`;
      const params = node.params ? Object.entries(node.params).map(([k, v]) => `${k}=${literalToString(v)}`) : [];
      if (node.fn === 'not') return `!${a[0]}`;
      if (node.fn === 'neg') return `-${a[0]}`;
      return `${node.fn}(${[...a, ...params].join(', ')})`;
    }
  }
}

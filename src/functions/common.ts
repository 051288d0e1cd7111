// Shared contract of builtin functions: type resolution (before any data is read), optional
// argument coercion (casts the evaluator applies), and a vectorized kernel.
import type * as arrow from 'apache-arrow';
import { DataType, type Field } from '../datatypes.ts';
import { decodeLiteral, exprToString, type ExprNode, type FunctionName, type LiteralJSON } from '../expressions.ts';

/** A type error found while resolving an expression; names the expressions and types involved. */
export class ExpressionTypeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpressionTypeError';
  }
}

export type Params = { readonly [k: string]: LiteralJSON };

export interface ResolveContext {
  readonly fn: FunctionName;
  /** The argument expressions (for messages such as `col(price) (float64)` and literal detection). */
  readonly args: readonly ExprNode[];
}

export interface KernelContext {
  /** The type resolve() returned; the kernel's result must have exactly this layout. */
  readonly outType: DataType;
  /** Argument types after coercion. */
  readonly argTypes: readonly DataType[];
  /** owned[i]: argument i is a temporary of this evaluation, so its value buffer may be reused. */
  readonly owned: readonly boolean[];
}

/**
 * A builtin function. Kernel arguments have `length` rows, or exactly 1 row when the argument is a
 * scalar (a literal, or an expression over literals) to broadcast; kernels take fast paths for
 * scalars instead of materializing them.
 */
export interface FunctionDef {
  readonly name: FunctionName;
  /** The kernel's value buffer is always new (or an owned argument's), so later kernels may reuse it. */
  readonly freshOutput?: boolean;
  resolve(argFields: readonly Field[], params: Params, ctx: ResolveContext): DataType;
  /** Types the evaluator casts the arguments to before the kernel runs (null: leave as is). */
  coerce?(argFields: readonly Field[], params: Params, ctx: ResolveContext, outType: DataType): readonly (DataType | null)[];
  kernel(args: arrow.Data[], params: Params, length: number, ctx: KernelContext): arrow.Data;
}

/** `col(price) (float64)`: how messages refer to argument i. */
export function describeArg(ctx: ResolveContext, fields: readonly Field[], i: number): string {
  return `${exprToString(ctx.args[i]!)} (${fields[i]!.type})`;
}

export function expectArity(ctx: ResolveContext, fields: readonly Field[], n: number): void {
  if (fields.length !== n) throw new ExpressionTypeError(`${ctx.fn} takes ${n} argument${n === 1 ? '' : 's'}, got ${fields.length}`);
}

/** `str.upper needs utf8, got col(n) (int64)`. */
export function requireKind(ctx: ResolveContext, fields: readonly Field[], i: number, kinds: readonly string[], what: string): void {
  const k = fields[i]!.type.kind;
  if (k === 'null' || kinds.includes(k)) return;
  throw new ExpressionTypeError(`${ctx.fn} needs ${what}, got ${describeArg(ctx, fields, i)}`);
}

const INT_WIDTH: Partial<Record<string, number>> = {
  int8: 8,
  int16: 16,
  int32: 32,
  int64: 64,
  uint8: 8,
  uint16: 16,
  uint32: 32,
  uint64: 64,
};

function intType(signed: boolean, width: number): DataType {
  return new DataType({ kind: `${signed ? 'int' : 'uint'}${width}` as 'int8' });
}

/** Standard numeric promotion (see expressions docs): widest int, int+float -> float64, f32+f32 -> f32. */
export function promoteNumeric(a: DataType, b: DataType): DataType {
  if (a.equals(b)) return a;
  if (a.isFloat() || b.isFloat()) {
    return a.kind === 'float32' && b.kind === 'float32' ? a : DataType.float64();
  }
  const wa = INT_WIDTH[a.kind]!,
    wb = INT_WIDTH[b.kind]!;
  const sa = a.kind.startsWith('int'),
    sb = b.kind.startsWith('int');
  if (sa === sb) return intType(sa, Math.max(wa, wb));
  const [ws, wu] = sa ? [wa, wb] : [wb, wa];
  if (wu < ws) return intType(true, ws);
  if (wu < 64) return intType(true, wu * 2);
  return DataType.float64();
}

/** Finest of two timestamp units. */
function finerUnit(a: string, b: string): 's' | 'ms' | 'us' | 'ns' {
  const order = ['s', 'ms', 'us', 'ns'];
  return order[Math.max(order.indexOf(a), order.indexOf(b))] as 's';
}

/**
 * Least common type two values can both be converted to without losing their meaning, or null.
 * null fits anything; numbers promote; date+timestamp -> timestamp; nested types recurse.
 */
export function supertype(a: DataType, b: DataType): DataType | null {
  if (a.kind === 'null') return b;
  if (b.kind === 'null') return a;
  if (a.equals(b)) return a;
  if (a.isNumeric() && b.isNumeric()) return promoteNumeric(a, b);
  if (a.isTemporal() && b.isTemporal()) {
    const ja = a.json,
      jb = b.json;
    if (ja.kind === 'timestamp' && jb.kind === 'timestamp') {
      if (ja.tz !== jb.tz) return null;
      return DataType.timestamp(finerUnit(ja.unit, jb.unit), ja.tz);
    }
    return ja.kind === 'timestamp' ? a : b;
  }
  const ja = a.json,
    jb = b.json;
  if ((ja.kind === 'list' || ja.kind === 'fixedSizeList') && (jb.kind === 'list' || jb.kind === 'fixedSizeList')) {
    const c = supertype(a.child(), b.child());
    if (!c) return null;
    if (ja.kind === 'fixedSizeList' && jb.kind === 'fixedSizeList' && ja.size === jb.size) return DataType.fixedSizeList(c, ja.size);
    return DataType.list(c);
  }
  if (ja.kind === 'struct' && jb.kind === 'struct') {
    if (ja.fields.length !== jb.fields.length || ja.fields.some((f, i) => f.name !== jb.fields[i]!.name)) return null;
    const fields: Record<string, DataType> = {};
    for (let i = 0; i < ja.fields.length; i++) {
      const s = supertype(new DataType(ja.fields[i]!.type), new DataType(jb.fields[i]!.type));
      if (!s) return null;
      fields[ja.fields[i]!.name] = s;
    }
    return DataType.struct(fields);
  }
  return null;
}

const FIT_RANGE: Partial<Record<string, [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
  int64: [-(2 ** 63), 2 ** 63],
  uint64: [0, 2 ** 64],
};

/**
 * Polars-style weak literals: an int32 literal next to another numeric operand takes that operand's
 * type when its value fits (so `col('id').gt(5)` on int64 compares int64s, `uint8 + 1` stays uint8);
 * a float64 literal next to float32 becomes float32. Returns the operand types to promote.
 */
export function weakenLiterals(fields: readonly Field[], ctx: ResolveContext): DataType[] {
  const types = fields.map((f) => f.type);
  const isLit = ctx.args.map((a) => a.op === 'lit');
  // The "strong" type literals adapt to: the first non-literal numeric operand.
  const anchorIdx = types.findIndex((t, i) => !isLit[i] && t.isNumeric());
  if (anchorIdx < 0) return types;
  const anchor = types[anchorIdx]!;
  return types.map((t, i) => {
    if (!isLit[i]) return t;
    const node = ctx.args[i]!;
    if (node.op !== 'lit') return t;
    const v = decodeLiteral(node.value);
    if (t.kind === 'int32' && typeof v === 'number') {
      if (anchor.isFloat()) return anchor;
      const r = FIT_RANGE[anchor.kind];
      if (r && v >= r[0] && v < r[1] + (anchor.isBigInt() ? 0 : 1)) return anchor;
      return t;
    }
    if (t.kind === 'float64' && anchor.kind === 'float32') return anchor;
    return t;
  });
}

/** Literal utf8 operands next to date/timestamp are parsed as that type (`col('d').gt('2024-01-01')`). */
export function temporalLiterals(types: DataType[], ctx: ResolveContext): DataType[] {
  const anchor = types.find((t) => t.isTemporal());
  if (!anchor) return types;
  return types.map((t, i) => (t.kind === 'utf8' && ctx.args[i]!.op === 'lit' ? anchor : t));
}

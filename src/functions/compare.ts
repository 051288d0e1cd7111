// eq / neq / lt / le / gt / ge -> bool. Numbers compare exactly across types (bigint vs number
// uses JS's exact mixed comparison), strings and binary byte-wise (= code point order), bools with
// false < true, dates/timestamps after converting to a common unit. NaN compares like IEEE 754.
import * as arrow from 'apache-arrow';
import { DataType, type Field } from '../datatypes.ts';
import type { FunctionName } from '../expressions.ts';
import { andValidity, bitmapBytes, bitsAt0 } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { compareNumbers, type CmpOp } from '../kernels/compare-loops.ts';
import { compareBytes, equalBytes } from '../kernels/utf8.ts';

export type { CmpOp } from '../kernels/compare-loops.ts';
import {
  describeArg,
  expectArity,
  ExpressionTypeError,
  type FunctionDef,
  type KernelContext,
  type ResolveContext,
  temporalLiterals,
  weakenLiterals,
} from './common.ts';

const FLIP: Record<CmpOp, CmpOp> = { eq: 'eq', neq: 'neq', lt: 'gt', le: 'ge', gt: 'lt', ge: 'le' };

function comparable(a: DataType, b: DataType): boolean {
  if (a.kind === 'null' || b.kind === 'null') return true;
  if (a.isNumeric() && b.isNumeric()) return true;
  if (a.isTemporal() && b.isTemporal()) return true;
  return a.kind === b.kind && (a.kind === 'utf8' || a.kind === 'binary' || a.kind === 'bool');
}

/** Operand types after literal adjustment, or a type error naming both operands. */
export function comparisonTypes(op: string, fields: readonly Field[], ctx: ResolveContext, i = 0, j = 1): [DataType, DataType] {
  const types = temporalLiterals(weakenLiterals(fields, ctx), ctx);
  const a = types[i]!,
    b = types[j]!;
  if (!comparable(a, b)) {
    throw new ExpressionTypeError(
      `cannot compare ${describeArg(ctx, fields, i)} and ${describeArg(ctx, fields, j)}: ${op} needs two numbers, two strings, two bools, two binaries or two dates/timestamps`,
    );
  }
  return [a, b];
}

const UNIT_ORDER = ['s', 'ms', 'us', 'ns'];

/** Types to cast the two operands to so one kernel loop can compare them exactly. */
export function comparisonCoercion(a: DataType, b: DataType): [DataType | null, DataType | null] {
  if (a.kind === 'null' || b.kind === 'null') return [null, null];
  if (a.isTemporal() && b.isTemporal()) {
    if (a.kind === 'date' && b.kind === 'date') return [a, b];
    const ja = a.json,
      jb = b.json;
    const ua = ja.kind === 'timestamp' ? ja.unit : null,
      ub = jb.kind === 'timestamp' ? jb.unit : null;
    const unit = UNIT_ORDER[Math.max(UNIT_ORDER.indexOf(ua ?? 's'), UNIT_ORDER.indexOf(ub ?? 's'))] as 's';
    const tsa = DataType.timestamp(unit, ja.kind === 'timestamp' ? ja.tz : null);
    const tsb = DataType.timestamp(unit, jb.kind === 'timestamp' ? jb.tz : null);
    return [tsa, tsb];
  }
  if (a.isNumeric() && b.isNumeric() && a.isBigInt() !== b.isBigInt()) {
    // Small ints widen exactly to int64 so both sides are bigint; floats stay (mixed compare is exact).
    return [a.isInteger() && !a.isBigInt() ? DataType.int64() : a, b.isInteger() && !b.isBigInt() ? DataType.int64() : b];
  }
  return [a, b];
}

function test(op: CmpOp, c: number): boolean {
  switch (op) {
    case 'eq':
      return c === 0;
    case 'neq':
      return c !== 0;
    case 'lt':
      return c < 0;
    case 'le':
      return c <= 0;
    case 'gt':
      return c > 0;
    case 'ge':
      return c >= 0;
  }
}

function bytesCompare(op: CmpOp, a: arrow.Data, b: arrow.Data, out: Uint8Array, n: number, scalar: boolean): void {
  const ao = a.valueOffsets as Int32Array,
    av = a.values as Uint8Array;
  const bo = b.valueOffsets as Int32Array,
    bv = b.values as Uint8Array;
  if (op === 'eq' || op === 'neq') {
    const want = op === 'eq';
    for (let i = 0; i < n; i++) {
      const j = scalar ? 0 : i;
      if (equalBytes(av, ao[i]!, ao[i + 1]!, bv, bo[j]!, bo[j + 1]!) === want) out[i >> 3]! |= 1 << (i & 7);
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const j = scalar ? 0 : i;
    if (test(op, compareBytes(av, ao[i]!, ao[i + 1]!, bv, bo[j]!, bo[j + 1]!))) out[i >> 3]! |= 1 << (i & 7);
  }
}

function boolBytes(d: arrow.Data, n: number): Uint8Array {
  if (d.length !== n) {
    const on = ((d.values as Uint8Array)[d.offset >> 3]! >> (d.offset & 7)) & 1;
    return new Uint8Array(bitmapBytes(n)).fill(on ? 0xff : 0);
  }
  return bitsAt0(d.values as Uint8Array, d.offset, n);
}

function boolCompare(op: CmpOp, a: arrow.Data, b: arrow.Data, out: Uint8Array, n: number): void {
  const x = boolBytes(a, n),
    y = boolBytes(b, n);
  const bytes = (n + 7) >> 3;
  for (let k = 0; k < bytes; k++) {
    const p = x[k]!,
      q = y[k]!;
    let r: number;
    switch (op) {
      case 'eq':
        r = ~(p ^ q);
        break;
      case 'neq':
        r = p ^ q;
        break;
      case 'lt':
        r = ~p & q;
        break;
      case 'le':
        r = ~p | q;
        break;
      case 'gt':
        r = p & ~q;
        break;
      default:
        r = p | ~q;
        break;
    }
    out[k] = r & 0xff;
  }
  if (n & 7) out[bytes - 1]! &= (1 << (n & 7)) - 1;
}

/** Compares two coerced operands (each `length` rows or a length-1 scalar) into a bool Data. */
export function compareKernel(op: CmpOp, a: arrow.Data, b: arrow.Data, length: number): arrow.Data {
  const type = new arrow.Bool();
  const aS = a.length !== length,
    bS = b.length !== length;
  if (a.typeId === arrow.Type.Null || b.typeId === arrow.Type.Null || (aS && a.nullCount > 0) || (bS && b.nullCount > 0)) return allNull(type, length);
  // Keep the array on the left: scalar op array == array flip(op) scalar.
  if (aS && !bS) return compareKernel(FLIP[op], b, a, length);
  const validity = andValidity([a, b], length);
  const out = new Uint8Array(bitmapBytes(length));
  switch (a.typeId) {
    case arrow.Type.Bool:
      boolCompare(op, a, b, out, length);
      break;
    case arrow.Type.Utf8:
    case arrow.Type.Binary:
      bytesCompare(op, a, b, out, length, bS);
      break;
    default:
      compareNumbers(op, a.values as ArrayLike<number>, b.values as ArrayLike<number>, bS, out, length);
  }
  return mkData(type, length, validity, out);
}

function makeCompare(op: CmpOp): FunctionDef {
  return {
    name: op as FunctionName,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      expectArity(ctx, fields, 2);
      comparisonTypes(op, fields, ctx);
      return DataType.bool();
    },
    coerce(fields, _params, ctx) {
      const [a, b] = comparisonTypes(op, fields, ctx);
      return comparisonCoercion(a, b);
    },
    kernel(args: arrow.Data[], _params, length: number, _ctx: KernelContext) {
      return compareKernel(op, args[0]!, args[1]!, length);
    },
  };
}

export const eq = makeCompare('eq');
export const neq = makeCompare('neq');
export const lt = makeCompare('lt');
export const le = makeCompare('le');
export const gt = makeCompare('gt');
export const ge = makeCompare('ge');

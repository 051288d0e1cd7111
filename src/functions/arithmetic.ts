// add / sub / mul / div / mod over numeric types. Operands are coerced to the result type first
// (div: float64, or float32 for two float32), so each kernel loop reads and writes one array type.
// Integer results wrap on overflow (two's complement, like Arrow's unchecked kernels); integer mod
// by zero gives null; float ops follow IEEE 754; mod is truncated (sign of the dividend, as SQL).
import * as arrow from 'apache-arrow';
import { DataType, type Field } from '../datatypes.ts';
import type { FunctionName } from '../expressions.ts';
import { andValidity, bitmapBytes, clearBit } from '../kernels/bitmap.ts';
import { arithmetic, type ArithOp } from '../kernels/arith-loops.ts';
import { allNull, arrayCtor, mkData, type NumArray } from '../kernels/data.ts';
import { ownData } from '../kernels/owned.ts';
import {
  describeArg,
  expectArity,
  ExpressionTypeError,
  type FunctionDef,
  type KernelContext,
  type Params,
  promoteNumeric,
  type ResolveContext,
  weakenLiterals,
} from './common.ts';

const VERB: Record<ArithOp, string> = { add: 'add', sub: 'subtract', mul: 'multiply', div: 'divide', mod: 'take the modulo of' };

/** Operand types after weak-literal adjustment; throws naming both operands unless both are numeric. */
export function numericOperands(op: string, fields: readonly Field[], ctx: ResolveContext): DataType[] {
  expectArity(ctx, fields, 2);
  const types = weakenLiterals(fields, ctx);
  for (let i = 0; i < 2; i++) {
    const t = types[i]!;
    if (t.isNumeric() || t.kind === 'null') continue;
    const both = `${describeArg(ctx, fields, 0)} and ${describeArg(ctx, fields, 1)}`;
    if (t.isTemporal()) throw new ExpressionTypeError(`cannot ${VERB[op as ArithOp] ?? op} ${both}: arithmetic on date/timestamp is not supported`);
    throw new ExpressionTypeError(`cannot ${VERB[op as ArithOp] ?? op} ${both}: ${op} needs numeric operands`);
  }
  return types;
}

function resultType(op: ArithOp, types: DataType[]): DataType {
  const [a, b] = types as [DataType, DataType];
  if (a.kind === 'null' && b.kind === 'null') return op === 'div' ? DataType.float64() : DataType.null();
  const t = a.kind === 'null' ? b : b.kind === 'null' ? a : promoteNumeric(a, b);
  if (op === 'div') return t.kind === 'float32' ? t : DataType.float64();
  return t;
}

/** Integer mod: a zero divisor gives null (marked in `valid`, created on demand). */
function intMod(
  a: ArrayLike<number | bigint>,
  b: ArrayLike<number | bigint>,
  out: { [i: number]: number | bigint },
  n: number,
  mode: number,
  valid: Uint8Array | null,
): Uint8Array | null {
  const zero = typeof a[0] === 'bigint' || typeof b[0] === 'bigint' ? 0n : 0;
  for (let i = 0; i < n; i++) {
    const x = mode === 2 ? a[0]! : a[i]!;
    const y = mode === 1 ? b[0]! : b[i]!;
    // biome-ignore lint/suspicious/noDoubleEquals: y is a number or a bigint; == compares across both (0n == 0)
    if (y == zero) {
      if (valid === null) {
        valid = new Uint8Array(bitmapBytes(n)).fill(0xff);
      }
      clearBit(valid, i);
      continue;
    }
    out[i] = (x as number) % (y as number);
  }
  return valid;
}

export function arithKernel(op: ArithOp, args: arrow.Data[], length: number, ctx: KernelContext): arrow.Data {
  const type = ctx.outType.toArrow();
  if (ctx.outType.kind === 'null') return allNull(type, length);
  const [a, b] = args as [arrow.Data, arrow.Data];
  const aS = a.length !== length,
    bS = b.length !== length;
  let validity = andValidity(args, length);
  if ((aS && a.nullCount > 0) || (bS && b.nullCount > 0) || a.typeId === arrow.Type.Null || b.typeId === arrow.Type.Null) return allNull(type, length);
  const mode = aS && !bS ? 2 : bS && !aS ? 1 : 0;
  const n = length;
  const t = ctx.outType;
  // Reuse a temporary operand's buffer (x*2+1 allocates once, not twice).
  let out: NumArray | BigInt64Array | BigUint64Array;
  if (ctx.owned[0] && !aS && a.offset === 0 && (a.values as NumArray).length === n) out = a.values as NumArray;
  else if (ctx.owned[1] && !bS && b.offset === 0 && (b.values as NumArray).length === n) out = b.values as NumArray;
  else out = new (arrayCtor(type))(n);
  const av = a.values as NumArray,
    bv = b.values as NumArray;
  if (op === 'mod' && t.isInteger()) {
    validity = intMod(av, bv, out as unknown as { [i: number]: number }, n, mode, validity);
  } else {
    arithmetic(op, av, bv, out, n, mode);
  }
  const d = mkData(type, n, validity, out);
  // Every buffer here is fresh (or a temporary operand's, reused): a worker may move it (owned.ts)
  // instead of copying it. Not a one-row result: constant folding keeps that one for every batch.
  return n > 1 ? ownData(d) : d;
}

function makeArith(op: ArithOp): FunctionDef {
  return {
    name: op as FunctionName,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      return resultType(op, numericOperands(op, fields, ctx));
    },
    coerce(fields, _params, _ctx, outType) {
      return fields.map(() => (outType.kind === 'null' ? null : outType));
    },
    kernel(args: arrow.Data[], _params: Params, length: number, ctx: KernelContext) {
      return arithKernel(op, args, length, ctx);
    },
  };
}

export const add = makeArith('add');
export const sub = makeArith('sub');
export const mul = makeArith('mul');
export const div = makeArith('div');
export const mod = makeArith('mod');

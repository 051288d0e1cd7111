// and / or / not with SQL three-valued logic, computed 8 rows per byte on the bitmaps:
// false AND null = false, true OR null = true, otherwise null propagates.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { bitmapBytes, bitsAt0, finishValidity } from '../kernels/bitmap.ts';
import { mkDataCounted } from '../kernels/data.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef, type ResolveContext } from './common.ts';
import type { Field } from '../datatypes.ts';

function requireBools(fields: readonly Field[], ctx: ResolveContext): void {
  for (let i = 0; i < fields.length; i++) {
    const k = fields[i]!.type.kind;
    if (k === 'bool' || k === 'null') continue;
    const all = fields.map((_, j) => describeArg(ctx, fields, j)).join(' and ');
    throw new ExpressionTypeError(`cannot apply ${ctx.fn} to ${all}: ${ctx.fn} needs bool operands, got ${describeArg(ctx, fields, i)}`);
  }
}

/** Offset-0 (value, validity) byte views of a bool operand; scalars are broadcast to whole bytes. */
function planes(d: arrow.Data, n: number): { v: Uint8Array; m: Uint8Array } {
  const bytes = bitmapBytes(n);
  if (d.typeId === arrow.Type.Null) return { v: new Uint8Array(bytes), m: new Uint8Array(bytes) };
  if (d.length !== n) {
    const p = d.offset;
    const valid = d.nullCount === 0 || ((d.nullBitmap![p >> 3]! >> (p & 7)) & 1) === 1;
    const on = ((d.values as Uint8Array)[p >> 3]! >> (p & 7)) & 1;
    return { v: new Uint8Array(bytes).fill(on ? 0xff : 0), m: new Uint8Array(bytes).fill(valid ? 0xff : 0) };
  }
  const v = bitsAt0(d.values as Uint8Array, d.offset, n);
  const m = d.nullCount === 0 ? new Uint8Array(bytes).fill(0xff) : bitsAt0(d.nullBitmap!, d.offset, n);
  return { v, m };
}

function kleene(isAnd: boolean, args: arrow.Data[], n: number): arrow.Data {
  const a = planes(args[0]!, n),
    b = planes(args[1]!, n);
  const bytes = (n + 7) >> 3;
  const values = new Uint8Array(bitmapBytes(n));
  const valid = new Uint8Array(bitmapBytes(n));
  for (let k = 0; k < bytes; k++) {
    const at = a.v[k]! & a.m[k]!,
      af = ~a.v[k]! & a.m[k]!;
    const bt = b.v[k]! & b.m[k]!,
      bf = ~b.v[k]! & b.m[k]!;
    // Known-true / known-false planes; anything else is null.
    const t = isAnd ? at & bt : at | bt;
    const f = isAnd ? af | bf : af & bf;
    values[k] = t & 0xff;
    valid[k] = (t | f) & 0xff;
  }
  if (n & 7) valid[bytes - 1]! &= (1 << (n & 7)) - 1;
  const { nullBitmap, nullCount } = finishValidity(valid, n);
  return mkDataCounted(new arrow.Bool(), n, nullBitmap, nullCount, values);
}

function makeBinary(name: 'and' | 'or'): FunctionDef {
  return {
    name,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      expectArity(ctx, fields, 2);
      requireBools(fields, ctx);
      return DataType.bool();
    },
    kernel(args, _params, length) {
      return kleene(name === 'and', args, length);
    },
  };
}

export const and = makeBinary('and');
export const or = makeBinary('or');

export const not: FunctionDef = {
  name: 'not',
  freshOutput: true,
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 1);
    requireBools(fields, ctx);
    return DataType.bool();
  },
  kernel(args, _params, n) {
    const a = planes(args[0]!, n);
    const bytes = (n + 7) >> 3;
    const values = new Uint8Array(bitmapBytes(n));
    for (let k = 0; k < bytes; k++) values[k] = ~a.v[k]! & 0xff;
    const valid = args[0]!.typeId === arrow.Type.Null || args[0]!.nullCount > 0 ? a.m.slice() : null;
    const { nullBitmap, nullCount } = finishValidity(valid, n);
    return mkDataCounted(new arrow.Bool(), n, nullBitmap, nullCount, values);
  },
};

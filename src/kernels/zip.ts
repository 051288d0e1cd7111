// zip: row i from `a` where bit i of `pick` is set, else from `b` (if_else, fill_null). Either
// side may be a length-1 scalar. Primitives and bools take a direct loop; other types gather
// through take over [a, b] concatenated.
import * as arrow from 'apache-arrow';
import { bitmapBytes, getBit, isValid } from './bitmap.ts';
import { allNull, arrayCtor, isBigIntType, isPrimitive, mkData, type NumArray } from './data.ts';
import { concatData } from './concat.ts';
import { take } from './take.ts';

export function zip(pick: Uint8Array, a: arrow.Data, b: arrow.Data, n: number, type: arrow.DataType): arrow.Data {
  if (type.typeId === arrow.Type.Null) return allNull(type, n);
  const aS = a.length !== n,
    bS = b.length !== n;
  // Null-typed sides (a null literal) become all-null sides of the result type.
  if (a.typeId === arrow.Type.Null) a = allNull(type, a.length);
  if (b.typeId === arrow.Type.Null) b = allNull(type, b.length);
  const aNoNull = a.nullCount === 0,
    bNoNull = b.nullCount === 0;
  let validity: Uint8Array | null = null;
  if (!(aNoNull && bNoNull)) {
    validity = new Uint8Array(bitmapBytes(n));
    const aValid0 = aS && isValid(a, 0),
      bValid0 = bS && isValid(b, 0);
    for (let i = 0; i < n; i++) {
      const ok = getBit(pick, i) ? (aS ? aValid0 : aNoNull || isValid(a, i)) : bS ? bValid0 : bNoNull || isValid(b, i);
      if (ok) validity[i >> 3]! |= 1 << (i & 7);
    }
  }
  if (isPrimitive(type)) {
    const big = isBigIntType(type);
    const out = new (arrayCtor(type))(n);
    if (big) {
      // int32 pairs: no per-row BigInt allocation.
      const av = a.values as BigInt64Array,
        bv = b.values as BigInt64Array;
      const ap = new Int32Array(av.buffer, av.byteOffset, a.length * 2),
        bp = new Int32Array(bv.buffer, bv.byteOffset, b.length * 2);
      const op = new Int32Array(out.buffer);
      for (let i = 0; i < n; i++) {
        const fromA = getBit(pick, i);
        const src = fromA ? ap : bp;
        const j = (fromA ? aS : bS) ? 0 : i;
        op[2 * i] = src[2 * j]!;
        op[2 * i + 1] = src[2 * j + 1]!;
      }
    } else {
      const av = a.values as NumArray,
        bv = b.values as NumArray,
        o = out as NumArray;
      const a0 = av[0]!,
        b0 = bv[0]!;
      for (let i = 0; i < n; i++) {
        o[i] = getBit(pick, i) ? (aS ? a0 : av[i]!) : bS ? b0 : bv[i]!;
      }
    }
    return mkData(type, n, validity, out);
  }
  if (type.typeId === arrow.Type.Bool) {
    const out = new Uint8Array(bitmapBytes(n));
    const av = a.values as Uint8Array,
      bv = b.values as Uint8Array;
    const a0 = getBit(av, a.offset),
      b0 = getBit(bv, b.offset);
    for (let i = 0; i < n; i++) {
      const v = getBit(pick, i) ? (aS ? a0 : getBit(av, a.offset + i)) : bS ? b0 : getBit(bv, b.offset + i);
      if (v) out[i >> 3]! |= 1 << (i & 7);
    }
    return mkData(type, n, validity, out);
  }
  const both = concatData([a, b], type);
  const idx = new Int32Array(n);
  const la = a.length;
  for (let i = 0; i < n; i++) idx[i] = getBit(pick, i) ? (aS ? 0 : i) : la + (bS ? 0 : i);
  return take(both, idx);
}

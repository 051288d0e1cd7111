// filter: boolean mask -> selection vector (Int32Array of kept rows) -> take. The selection is
// computed once per batch and shared by all columns.
import * as arrow from 'apache-arrow';
import { bitsAt0, popcount } from './bitmap.ts';
import { take } from './take.ts';

/**
 * Offset-0 bits of rows where a bool Data is true and valid (null counts as false), for n rows.
 * A length-1 mask with n !== 1 is a broadcast scalar. Null-typed masks select nothing.
 */
export function trueBits(mask: arrow.Data, n: number): Uint8Array {
  const bytes = (n + 7) >> 3;
  const out = new Uint8Array(bytes);
  if (mask.typeId === arrow.Type.Null) return out;
  if (mask.typeId !== arrow.Type.Bool) throw new TypeError(`filter mask must be bool, got ${String(mask.type)}`);
  if (mask.length !== n) {
    if (mask.length !== 1) throw new RangeError(`filter mask has ${mask.length} rows, expected ${n}`);
    const p = mask.offset;
    const on = (mask.nullCount === 0 || (mask.nullBitmap![p >> 3]! & (1 << (p & 7))) !== 0) && ((mask.values as Uint8Array)[p >> 3]! & (1 << (p & 7))) !== 0;
    if (on) {
      out.fill(0xff, 0, n >> 3);
      if (n & 7) out[n >> 3] = (1 << (n & 7)) - 1;
    }
    return out;
  }
  const v = bitsAt0(mask.values as Uint8Array, mask.offset, n);
  if (mask.nullCount === 0) {
    out.set(v.subarray(0, bytes));
  } else {
    const valid = bitsAt0(mask.nullBitmap!, mask.offset, n);
    for (let k = 0; k < bytes; k++) out[k] = v[k]! & valid[k]!;
  }
  if (n & 7) out[bytes - 1]! &= (1 << (n & 7)) - 1;
  return out;
}

/** Positions of set bits among the first n of an offset-0 bitmap. */
export function selectionFromBits(bits: Uint8Array, n: number): Int32Array {
  const count = popcount(bits, 0, n);
  const sel = new Int32Array(count);
  let c = 0;
  const bytes = (n + 7) >> 3;
  for (let k = 0; k < bytes; k++) {
    let b = bits[k]!;
    if (b === 0) continue;
    const base = k << 3;
    if (b === 0xff) {
      for (let t = 0; t < 8; t++) sel[c++] = base + t;
      continue;
    }
    while (b !== 0) {
      const low = b & -b;
      sel[c++] = base + 31 - Math.clz32(low);
      b ^= low;
    }
  }
  return sel;
}

/** Selection vector for a bool mask (true and valid rows). */
export function selection(mask: arrow.Data, n: number): Int32Array {
  return selectionFromBits(trueBits(mask, n), n);
}

export function filterData(d: arrow.Data, mask: arrow.Data): arrow.Data {
  const sel = selection(mask, d.length);
  if (sel.length === d.length) return d;
  return take(d, sel);
}

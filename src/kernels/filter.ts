// filter: boolean mask -> selection vector (Int32Array of kept rows) -> takeSelected. The selection is
// computed once per batch and shared by all columns.
import * as arrow from 'apache-arrow';
import { bitsAt0, popcount } from './bitmap.ts';
import { takeSelected } from './take.ts';

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

/**
 * Positions of set bits among the first n of an offset-0 bitmap. With `scratch` (count + 8 slots or
 * more) the result is a view of it, for a caller that uses the selection only until its next call.
 */
export function selectionFromBits(bits: Uint8Array, n: number, scratch?: Int32Array): Int32Array {
  const count = popcount(bits, 0, n);
  // Branch-free per mixed byte: each bit's position is written, and the cursor moves by the bit.
  // A filter's mask is mostly mixed bytes, where a loop over set bits mispredicts (1.7x slower at
  // 50% selectivity). Writes run up to 7 past the last kept row: 8 spare slots.
  const buf = scratch && scratch.length >= count + 8 ? scratch : new Int32Array(count + 8);
  let c = 0;
  const full = n >> 3;
  for (let k = 0; k < full; k++) {
    const b = bits[k]!;
    if (b === 0) continue;
    const base = k << 3;
    if (b === 0xff) {
      for (let t = 0; t < 8; t++) buf[c + t] = base + t;
      c += 8;
      continue;
    }
    buf[c] = base;
    c += b & 1;
    buf[c] = base + 1;
    c += (b >> 1) & 1;
    buf[c] = base + 2;
    c += (b >> 2) & 1;
    buf[c] = base + 3;
    c += (b >> 3) & 1;
    buf[c] = base + 4;
    c += (b >> 4) & 1;
    buf[c] = base + 5;
    c += (b >> 5) & 1;
    buf[c] = base + 6;
    c += (b >> 6) & 1;
    buf[c] = base + 7;
    c += (b >> 7) & 1;
  }
  for (let i = full << 3; i < n; i++) if ((bits[i >> 3]! >> (i & 7)) & 1) buf[c++] = i;
  return buf.subarray(0, count);
}

/** Selection vector for a bool mask (true and valid rows). */
export function selection(mask: arrow.Data, n: number): Int32Array {
  return selectionFromBits(trueBits(mask, n), n);
}

export function filterData(d: arrow.Data, mask: arrow.Data): arrow.Data {
  const sel = selection(mask, d.length);
  if (sel.length === d.length) return d;
  return takeSelected(d, sel);
}

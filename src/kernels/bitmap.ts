// Bit-packed buffers (Arrow validity bitmaps and boolean values): LSB-first, bit i of the array at
// byte i >> 3, mask 1 << (i & 7). Arrow JS leaves bitmaps unsliced, so logical element i of a Data
// lives at bit `data.offset + i`; every helper here takes an explicit bit offset.
import * as arrow from 'apache-arrow';

/** Bytes for n bits, rounded up to 8 bytes (Arrow recommends 8/64-byte padding). */
export function bitmapBytes(n: number): number {
  return ((n + 63) & ~63) >> 3;
}

export function newBitmap(n: number, fill = false): Uint8Array {
  const b = new Uint8Array(bitmapBytes(n));
  if (fill) setAll(b, n);
  return b;
}

/** Sets bits [0, n) and leaves the padding zero. */
function setAll(b: Uint8Array, n: number): void {
  const full = n >> 3;
  b.fill(0xff, 0, full);
  if (n & 7) b[full] = (1 << (n & 7)) - 1;
}

export function getBit(b: Uint8Array, i: number): boolean {
  return (b[i >> 3]! & (1 << (i & 7))) !== 0;
}

export function setBit(b: Uint8Array, i: number): void {
  b[i >> 3]! |= 1 << (i & 7);
}

export function clearBit(b: Uint8Array, i: number): void {
  b[i >> 3]! &= ~(1 << (i & 7));
}

const POPCNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCNT[i] = (i & 1) + POPCNT[i >> 1]!;

/** Number of set bits in [offset, offset + n). */
export function popcount(b: Uint8Array, offset: number, n: number): number {
  if (n <= 0) return 0;
  let i = offset;
  const end = offset + n;
  let c = 0;
  // Leading bits up to a byte boundary, whole bytes, trailing bits.
  while (i < end && (i & 7) !== 0) {
    c += (b[i >> 3]! >> (i & 7)) & 1;
    i++;
  }
  const endByte = end >> 3;
  for (let k = i >> 3; k < endByte; k++) c += POPCNT[b[k]!]!;
  i = Math.max(i, endByte << 3);
  while (i < end) {
    c += (b[i >> 3]! >> (i & 7)) & 1;
    i++;
  }
  return c;
}

/**
 * Copies n bits from src (starting at bit srcOffset) into dst at bit dstOffset. Bits of dst outside
 * the target range are preserved.
 */
export function copyBits(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number, n: number): void {
  if (n <= 0) return;
  if ((dstOffset & 7) === 0) {
    const d0 = dstOffset >> 3;
    const full = n >> 3;
    const s0 = srcOffset >> 3;
    const shift = srcOffset & 7;
    if (shift === 0) {
      dst.set(src.subarray(s0, s0 + full), d0);
    } else {
      const inv = 8 - shift;
      for (let k = 0; k < full; k++) {
        dst[d0 + k] = ((src[s0 + k]! >> shift) | (src[s0 + k + 1]! << inv)) & 0xff;
      }
    }
    // Tail bits one by one so bits after the range stay untouched.
    for (let i = full << 3; i < n; i++) {
      if (getBit(src, srcOffset + i)) setBit(dst, dstOffset + i);
      else clearBit(dst, dstOffset + i);
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    if (getBit(src, srcOffset + i)) setBit(dst, dstOffset + i);
    else clearBit(dst, dstOffset + i);
  }
}

/** A fresh offset-0 copy of n bits starting at srcOffset. */
export function sliceBits(src: Uint8Array, srcOffset: number, n: number): Uint8Array {
  const out = new Uint8Array(bitmapBytes(n));
  copyBits(src, srcOffset, out, 0, n);
  return out;
}

/**
 * Offset-0 view of n bits starting at srcOffset: shares the buffer when the start is byte-aligned
 * (callers must treat results as read-only), copies otherwise.
 */
export function bitsAt0(src: Uint8Array, srcOffset: number, n: number): Uint8Array {
  if ((srcOffset & 7) === 0) {
    const start = srcOffset >> 3;
    const need = (n + 7) >> 3;
    if (src.length >= start + need) return src.subarray(start, start + need);
  }
  return sliceBits(src, srcOffset, n);
}

/** Inverts n bits in place (offset 0). Padding bits beyond n are left as garbage-free zeros. */
export function invertBits(b: Uint8Array, n: number): void {
  const full = n >> 3;
  for (let k = 0; k < full; k++) b[k] = ~b[k]! & 0xff;
  if (n & 7) b[full] = ~b[full]! & ((1 << (n & 7)) - 1);
}

/** True when the Data has no null slots (Null-typed Data is all null). */
export function hasNoNulls(d: arrow.Data): boolean {
  if (d.typeId === arrow.Type.Null) return d.length === 0;
  return d.nullCount === 0;
}

/** True when the logical slot i of d is valid. Slow path: for per-row code that is already slow. */
export function isValid(d: arrow.Data, i: number): boolean {
  if (d.typeId === arrow.Type.Null) return false;
  if (d.nullCount === 0) return true;
  return getBit(d.nullBitmap!, d.offset + i);
}

/**
 * Offset-0 validity bits for the n logical slots of d, or null when all are valid. The result may
 * share d's buffer (read-only).
 */
export function validity0(d: arrow.Data): Uint8Array | null {
  if (d.typeId === arrow.Type.Null) return new Uint8Array(bitmapBytes(d.length));
  if (d.nullCount === 0) return null;
  return bitsAt0(d.nullBitmap!, d.offset, d.length);
}

/**
 * AND of the validity of several arguments, for a result of n rows. Arguments of length 1 where
 * n !== 1 are broadcast scalars: a null scalar makes everything null. Returns a fresh, writable
 * offset-0 bitmap, or null when every row is valid.
 */
export function andValidity(args: readonly arrow.Data[], n: number): Uint8Array | null {
  let out: Uint8Array | null = null;
  for (const a of args) {
    if (a.length !== n) {
      if (!isValid(a, 0)) return new Uint8Array(bitmapBytes(n));
      continue;
    }
    if (hasNoNulls(a)) continue;
    if (a.typeId === arrow.Type.Null) return new Uint8Array(bitmapBytes(n));
    const bm = a.nullBitmap!;
    if (out === null) {
      out = new Uint8Array(bitmapBytes(n));
      copyBits(bm, a.offset, out, 0, n);
    } else {
      andBitsInto(out, bm, a.offset, n);
    }
  }
  return out;
}

/** out[0..n) &= src[srcOffset..srcOffset+n). */
export function andBitsInto(out: Uint8Array, src: Uint8Array, srcOffset: number, n: number): void {
  const s = bitsAt0(src, srcOffset, n);
  const bytes = (n + 7) >> 3;
  for (let k = 0; k < bytes; k++) out[k]! &= s[k]!;
}

/**
 * Validity fields for arrow.Data from an offset-0 bitmap (or null = all valid): drops the bitmap
 * when it has no zero bits so consumers can take their no-null fast paths.
 */
export function finishValidity(bits: Uint8Array | null, n: number): { nullBitmap: Uint8Array; nullCount: number } {
  if (bits === null) return { nullBitmap: new Uint8Array(0), nullCount: 0 };
  const nullCount = n - popcount(bits, 0, n);
  if (nullCount === 0) return { nullBitmap: new Uint8Array(0), nullCount: 0 };
  return { nullBitmap: bits, nullCount };
}

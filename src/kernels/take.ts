// take: gather rows by Int32Array indices, for every supported type including nested ones. A
// negative index yields a null row (explode, list.get and outer joins use that).
import * as arrow from 'apache-arrow';
import { bitmapBytes, getBit, hasNoNulls } from './bitmap.ts';
import { ownData } from './owned.ts';
import { arrayCtor, fixedListSize, isBigIntType, isPrimitive, mkData, nullTypeData, type NumArray, type TypedArray } from './data.ts';

/** Scans indices once: whether any is negative; throws on an index past the end. */
function checkIndices(idx: Int32Array, n: number): boolean {
  let max = -1;
  let neg = false;
  for (let i = 0; i < idx.length; i++) {
    const j = idx[i]!;
    if (j > max) max = j;
    else if (j < 0) neg = true;
  }
  if (max >= n) throw new RangeError(`take: index ${max} out of range for ${n} rows`);
  return neg;
}

/** Gathered validity (offset 0), or null when every gathered row is valid. */
function takeValidity(d: arrow.Data, idx: Int32Array, neg: boolean): Uint8Array | null {
  const m = idx.length;
  if (d.typeId === arrow.Type.Null) return new Uint8Array(bitmapBytes(m));
  const noNulls = hasNoNulls(d);
  if (noNulls && !neg) return null;
  const out = new Uint8Array(bitmapBytes(m));
  if (noNulls) {
    for (let i = 0; i < m; i++) if (idx[i]! >= 0) out[i >> 3]! |= 1 << (i & 7);
  } else {
    const bm = d.nullBitmap!;
    const off = d.offset;
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      if (j >= 0) {
        const p = off + j;
        if (bm[p >> 3]! & (1 << (p & 7))) out[i >> 3]! |= 1 << (i & 7);
      }
    }
  }
  return out;
}

// Separate copies per array class keep each gather loop monomorphic for V8 (see compare-loops.ts).
function gatherF64(src: Float64Array, idx: Int32Array, out: Float64Array, neg: boolean): void {
  const m = idx.length;
  if (!neg) for (let i = 0; i < m; i++) out[i] = src[idx[i]!]!;
  else
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      out[i] = j >= 0 ? src[j]! : 0;
    }
}

function gatherI32(src: Int32Array, idx: Int32Array, out: Int32Array, neg: boolean): void {
  const m = idx.length;
  if (!neg) for (let i = 0; i < m; i++) out[i] = src[idx[i]!]!;
  else
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      out[i] = j >= 0 ? src[j]! : 0;
    }
}

function gatherNum(src: NumArray, idx: Int32Array, out: NumArray, neg: boolean): void {
  const m = idx.length;
  if (!neg) for (let i = 0; i < m; i++) out[i] = src[idx[i]!]!;
  else
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      out[i] = j >= 0 ? src[j]! : 0;
    }
}

/**
 * 64-bit slots copied as int32 pairs: BigInt element access would allocate per row, and a
 * Float64Array copy may canonicalize NaN bit patterns (int64 -1 is one). The loop without negative
 * indices has no per-row branch: it is the filter path's hot loop.
 */
function gatherPairs(src: Int32Array, idx: Int32Array, out: Int32Array, neg: boolean): void {
  const m = idx.length;
  if (!neg) {
    for (let i = 0, o = 0; i < m; i++, o += 2) {
      const j = idx[i]! << 1;
      out[o] = src[j]!;
      out[o + 1] = src[j + 1]!;
    }
    return;
  }
  for (let i = 0; i < m; i++) {
    const j = idx[i]!;
    if (j < 0) continue;
    out[2 * i] = src[2 * j]!;
    out[2 * i + 1] = src[2 * j + 1]!;
  }
}

function takePrimitive(d: arrow.Data, idx: Int32Array, neg: boolean, validity: Uint8Array | null): arrow.Data {
  const m = idx.length;
  const Ctor = arrayCtor(d.type);
  const out = new Ctor(m) as TypedArray;
  if (isBigIntType(d.type)) {
    const src = d.values as BigInt64Array;
    gatherPairs(new Int32Array(src.buffer, src.byteOffset, src.length * 2), idx, new Int32Array(out.buffer), neg);
  } else if (out instanceof Float64Array) {
    gatherF64(d.values as Float64Array, idx, out, neg);
  } else if (out instanceof Int32Array) {
    gatherI32(d.values as Int32Array, idx, out, neg);
  } else {
    gatherNum(d.values as NumArray, idx, out as NumArray, neg);
  }
  return mkData(d.type, m, validity, out);
}

function takeBool(d: arrow.Data, idx: Int32Array, validity: Uint8Array | null): arrow.Data {
  const m = idx.length;
  const src = d.values as Uint8Array;
  const off = d.offset;
  const out = new Uint8Array(bitmapBytes(m));
  for (let i = 0; i < m; i++) {
    const j = idx[i]!;
    if (j < 0) continue;
    const p = off + j;
    if (src[p >> 3]! & (1 << (p & 7))) out[i >> 3]! |= 1 << (i & 7);
  }
  return mkData(d.type, m, validity, out);
}

/** Output offsets for variable-size slots; null / missing rows get length 0. */
function takeOffsets(d: arrow.Data, idx: Int32Array, validity: Uint8Array | null): Int32Array {
  const m = idx.length;
  const src = d.valueOffsets as Int32Array;
  const out = new Int32Array(m + 1);
  let pos = 0;
  if (validity === null) {
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      pos += src[j + 1]! - src[j]!;
      out[i + 1] = pos;
    }
  } else {
    for (let i = 0; i < m; i++) {
      const j = idx[i]!;
      if (validity[i >> 3]! & (1 << (i & 7))) pos += src[j + 1]! - src[j]!;
      out[i + 1] = pos;
    }
  }
  return out;
}

function takeVarBinary(d: arrow.Data, idx: Int32Array, validity: Uint8Array | null): arrow.Data {
  const m = idx.length;
  const src = d.valueOffsets as Int32Array;
  const bytes = d.values as Uint8Array;
  const offsets = takeOffsets(d, idx, validity);
  const out = new Uint8Array(offsets[m]!);
  // Copy runs of consecutive source rows at once: filters mostly keep neighbouring rows.
  // Null output rows have length 0 and end a run (their source bytes are not copied).
  let i = 0;
  while (i < m) {
    if (validity !== null && !(validity[i >> 3]! & (1 << (i & 7)))) {
      i++;
      continue;
    }
    const j0 = idx[i]!;
    let k = i + 1;
    while (k < m && idx[k] === j0 + (k - i) && (validity === null || (validity[k >> 3]! & (1 << (k & 7))) !== 0)) k++;
    const s = src[j0]!,
      e = src[j0 + (k - i)]!;
    const len = e - s;
    const dst = offsets[i]!;
    if (len < 32) {
      for (let b = 0; b < len; b++) out[dst + b] = bytes[s + b]!;
    } else {
      out.set(bytes.subarray(s, e), dst);
    }
    i = k;
  }
  return mkData(d.type, m, validity, out, offsets);
}

function takeList(d: arrow.Data, idx: Int32Array, validity: Uint8Array | null): arrow.Data {
  const m = idx.length;
  const src = d.valueOffsets as Int32Array;
  const offsets = takeOffsets(d, idx, validity);
  const childIdx = new Int32Array(offsets[m]!);
  let p = 0;
  for (let i = 0; i < m; i++) {
    const len = offsets[i + 1]! - offsets[i]!;
    if (len === 0) continue;
    const s = src[idx[i]!]!;
    for (let k = 0; k < len; k++) childIdx[p++] = s + k;
  }
  return mkData(d.type, m, validity, undefined, offsets, [take(d.children[0]!, childIdx)]);
}

function takeFixedList(d: arrow.Data, idx: Int32Array, validity: Uint8Array | null): arrow.Data {
  const m = idx.length;
  const size = fixedListSize(d.type);
  const childIdx = new Int32Array(m * size);
  for (let i = 0; i < m; i++) {
    const j = idx[i]!;
    const valid = validity === null || (validity[i >> 3]! & (1 << (i & 7))) !== 0;
    for (let k = 0; k < size; k++) childIdx[i * size + k] = valid ? j * size + k : -1;
  }
  return mkData(d.type, m, validity, undefined, undefined, [take(d.children[0]!, childIdx)]);
}

/** Rows idx[0], idx[1], ... of d (negative index -> null row). Result has offset 0. */
export function take(d: arrow.Data, idx: Int32Array): arrow.Data {
  return takeRows(d, idx, checkIndices(idx, d.length));
}

/**
 * Rows of a selection vector (from selectionFromBits: every index in range and non-negative), so
 * without take's index scan: a filter takes every column of a batch with one shared selection.
 */
export function takeSelected(d: arrow.Data, sel: Int32Array): arrow.Data {
  return takeRows(d, sel, false);
}

// Every output buffer of a gather is a fresh allocation: marked, a worker may move it (owned.ts).
function takeRows(d: arrow.Data, idx: Int32Array, neg: boolean): arrow.Data {
  return ownData(gatherRows(d, idx, neg));
}

function gatherRows(d: arrow.Data, idx: Int32Array, neg: boolean): arrow.Data {
  const t = d.type;
  if (t.typeId === arrow.Type.Null) return nullTypeData(idx.length);
  const validity = takeValidity(d, idx, neg);
  switch (t.typeId) {
    case arrow.Type.Bool:
      return takeBool(d, idx, validity);
    case arrow.Type.Utf8:
    case arrow.Type.Binary:
      return takeVarBinary(d, idx, validity);
    case arrow.Type.List:
      return takeList(d, idx, validity);
    case arrow.Type.FixedSizeList:
      return takeFixedList(d, idx, validity);
    case arrow.Type.Struct:
      return mkData(
        t,
        idx.length,
        validity,
        undefined,
        undefined,
        d.children.map((c) => takeRows(c, idx, neg)),
      );
    default:
      if (isPrimitive(t)) return takePrimitive(d, idx, neg, validity);
      throw new TypeError(`take: unsupported Arrow type ${String(t)}`);
  }
}

/** Rows [0, n) all equal to row `row` of d (broadcast of a scalar). */
export function repeatRow(d: arrow.Data, row: number, n: number): arrow.Data {
  const t = d.type;
  if (isPrimitive(t) && hasNoNulls(d)) {
    const out = new (arrayCtor(t))(n) as TypedArray;
    (out as { fill(v: number | bigint): unknown }).fill((d.values as unknown as ArrayLike<number | bigint>)[row]!);
    return mkData(t, n, null, out);
  }
  if (t.typeId === arrow.Type.Bool && hasNoNulls(d)) {
    const bits = new Uint8Array(bitmapBytes(n));
    if (getBit(d.values as Uint8Array, d.offset + row)) {
      bits.fill(0xff, 0, n >> 3);
      if (n & 7) bits[n >> 3] = (1 << (n & 7)) - 1;
    }
    return mkData(t, n, null, bits);
  }
  return take(d, new Int32Array(n).fill(row));
}

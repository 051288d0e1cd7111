// cast: converts Data between types. Numeric conversions that do not fit the target (float -> int
// overflow, NaN, negative -> unsigned) give null, not wrapped garbage; text that does not parse
// raises CastError (Daft-style strictness: silently nulling typos hides bad data).
import * as arrow from 'apache-arrow';
import { take } from './take.ts';
import { concatData } from './concat.ts';
import { DataType, type DataTypeKind } from '../datatypes.ts';
import { bitmapBytes, clearBit, getBit, newBitmap, validity0 } from './bitmap.ts';
import { allNull, fixedListSize, mkData, retype, type NumArray } from './data.ts';
import { floorDiv, formatDate, formatTimestamp, parseDate, parseTimestamp, TICKS_PER_DAY, TICKS_PER_SECOND, unitOf } from './temporal.ts';
import { decodeUtf8Strict, latin1, utf8Decoder, Utf8Writer } from './utf8.ts';
import { formatFloat32, formatPhysicalValue } from '../convert/index.ts';

/** A value that cannot be converted (unparseable text, invalid UTF-8). */
export class CastError extends Error {
  constructor(
    message: string,
    readonly value: string,
    readonly row: number,
    readonly target: string,
  ) {
    super(message);
    this.name = 'CastError';
  }
}

const INT_KINDS = new Set<DataTypeKind>(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64']);
const FLOAT_KINDS = new Set<DataTypeKind>(['float32', 'float64']);
const isInt = (k: DataTypeKind) => INT_KINDS.has(k);
const isNum = (k: DataTypeKind) => INT_KINDS.has(k) || FLOAT_KINDS.has(k);
const isBig = (k: DataTypeKind) => k === 'int64' || k === 'uint64';

const RANGE: Partial<Record<DataTypeKind, [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

/** Why `from` cannot be cast to `to`, or null when it can. */
export function castUnsupportedReason(from: DataType, to: DataType): string | null {
  const f = from.kind,
    t = to.kind;
  if (from.equals(to) || f === 'null' || t === 'utf8') return null;
  if ((isNum(f) || f === 'bool') && (isNum(t) || t === 'bool')) return null;
  if (f === 'utf8' && (isNum(t) || t === 'bool' || t === 'date' || t === 'timestamp' || t === 'binary')) return null;
  if (isInt(f) && (t === 'date' || t === 'timestamp')) return null;
  if ((f === 'date' || f === 'timestamp') && (isInt(t) || t === 'date' || t === 'timestamp')) return null;
  if ((f === 'list' || f === 'fixedSizeList') && t === 'list') return castUnsupportedReason(from.child(), to.child());
  if (f === 'fixedSizeList' && t === 'fixedSizeList') {
    if ((from.json as { size: number }).size !== (to.json as { size: number }).size) return `cannot cast ${from} to ${to}: sizes differ`;
    return castUnsupportedReason(from.child(), to.child());
  }
  if (f === 'struct' && t === 'struct') {
    const src = new Map(from.structFields().map((x) => [x.name, x.type]));
    for (const tf of to.structFields()) {
      const sf = src.get(tf.name);
      if (!sf) return `cannot cast ${from} to ${to}: source has no field '${tf.name}'`;
      const r = castUnsupportedReason(sf, tf.type);
      if (r) return r;
    }
    return null;
  }
  return `cannot cast ${from} to ${to}`;
}

/** Mutable validity for a cast result: starts as the input's, rows that fail to convert are cleared. */
class Valid {
  bits: Uint8Array | null;
  constructor(
    d: arrow.Data,
    private readonly n: number,
  ) {
    const v = validity0(d);
    this.bits = v === null ? null : v.slice();
  }
  fail(i: number): void {
    if (this.bits === null) this.bits = newBitmap(this.n, true);
    clearBit(this.bits, i);
  }
  isValid(i: number): boolean {
    return this.bits === null || getBit(this.bits, i);
  }
}

const TWO32 = 4294967296;
const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;

/** Int32 pair view of a 64-bit typed array (lo word at 2i, hi word at 2i + 1, little-endian). */
function pairs(a: BigInt64Array | BigUint64Array, n: number): Int32Array {
  return new Int32Array(a.buffer, a.byteOffset, n * 2);
}

/** 64-bit ints -> float64, correctly rounded, without per-row BigInt allocation. */
function bigToFloat64(src: BigInt64Array | BigUint64Array, signed: boolean, n: number): Float64Array {
  const p = pairs(src, n);
  const out = new Float64Array(n);
  if (signed) for (let i = 0; i < n; i++) out[i] = p[2 * i + 1]! * TWO32 + (p[2 * i]! >>> 0);
  else for (let i = 0; i < n; i++) out[i] = (p[2 * i + 1]! >>> 0) * TWO32 + (p[2 * i]! >>> 0);
  return out;
}

function numToNum(d: arrow.Data, f: DataTypeKind, to: DataType): arrow.Data {
  const n = d.length;
  const t = to.kind;
  const type = to.toArrow();
  const valid = new Valid(d, n);
  if (f === 'bool') {
    const bits = d.values as Uint8Array;
    const Ctor = isBig(t) ? Int32Array : (arrayFor(t) as unknown as Float64ArrayConstructor);
    const stride = isBig(t) ? 2 : 1;
    const out = new Ctor(n * stride);
    for (let i = 0; i < n; i++) if (getBit(bits, d.offset + i)) out[i * stride] = 1;
    return mkData(type, n, valid.bits, isBig(t) ? new (t === 'int64' ? BigInt64Array : BigUint64Array)(out.buffer) : out);
  }
  // Source as plain numbers (64-bit sources converted exactly when they fit 2^53).
  let src: NumArray;
  if (isBig(f)) {
    if (isBig(t)) return bigToBig(d, t, type, valid);
    src = bigToFloat64(d.values as BigInt64Array, f === 'int64', n);
  } else {
    src = (d.values as NumArray).subarray(0, n);
  }
  if (t === 'bool') {
    const bits = new Uint8Array(bitmapBytes(n));
    for (let i = 0; i < n; i++) if (src[i] !== 0) bits[i >> 3]! |= 1 << (i & 7);
    return mkData(type, n, valid.bits, bits);
  }
  if (t === 'float64') return mkData(type, n, valid.bits, src instanceof Float64Array && src !== d.values ? src : new Float64Array(src));
  if (t === 'float32') return mkData(type, n, valid.bits, new Float32Array(src));
  const floatSrc = FLOAT_KINDS.has(f) || isBig(f);
  if (!isBig(t)) {
    const [lo, hi] = RANGE[t]!;
    const srcRange = RANGE[f];
    // Widening int casts are exact: let the engine convert natively.
    if (srcRange && srcRange[0] >= lo && srcRange[1] <= hi) return mkData(type, n, valid.bits, new (arrayFor(t))(src));
    const out = new (arrayFor(t))(n);
    for (let i = 0; i < n; i++) {
      const v = floatSrc ? Math.trunc(src[i]!) : src[i]!;
      if (v >= lo && v <= hi) out[i] = v;
      else valid.fail(i);
    }
    return mkData(type, n, valid.bits, out);
  }
  // Numbers -> 64-bit ints, written as int32 pairs.
  const out = t === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
  const p = pairs(out, n);
  const lo = t === 'int64' ? -TWO63 : 0;
  const hi = t === 'int64' ? TWO63 : TWO64;
  for (let i = 0; i < n; i++) {
    const v = Math.trunc(src[i]!);
    if (!(v >= lo && v < hi)) {
      valid.fail(i);
      continue;
    }
    const h = Math.floor(v / TWO32);
    p[2 * i] = (v - h * TWO32) | 0;
    p[2 * i + 1] = h | 0;
  }
  return mkData(type, n, valid.bits, out);
}

function bigToBig(d: arrow.Data, t: DataTypeKind, type: arrow.DataType, valid: Valid): arrow.Data {
  const n = d.length;
  const src = d.values as BigInt64Array;
  const p = pairs(src, n);
  // Same bits; values whose sign bit flips meaning (negative int64 / uint64 >= 2^63) become null.
  for (let i = 0; i < n; i++) if (p[2 * i + 1]! < 0) valid.fail(i);
  const out =
    t === 'int64'
      ? new BigInt64Array(src.buffer.slice(src.byteOffset, src.byteOffset + n * 8))
      : new BigUint64Array(src.buffer.slice(src.byteOffset, src.byteOffset + n * 8));
  return mkData(type, n, valid.bits, out);
}

function arrayFor(
  k: DataTypeKind,
):
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor {
  switch (k) {
    case 'int8':
      return Int8Array;
    case 'int16':
      return Int16Array;
    case 'int32':
      return Int32Array;
    case 'uint8':
      return Uint8Array;
    case 'uint16':
      return Uint16Array;
    case 'uint32':
      return Uint32Array;
    case 'float32':
      return Float32Array;
    default:
      return Float64Array;
  }
}

function toUtf8(d: arrow.Data, from: DataType): arrow.Data {
  const n = d.length;
  const type = new arrow.Utf8();
  const valid = validity0(d);
  const f = from.kind;
  if (f === 'binary') return binaryToUtf8(d);
  const w = new Utf8Writer(n, n * 8);
  const ok = (i: number) => valid === null || getBit(valid, i);
  if (f === 'bool') {
    const bits = d.values as Uint8Array;
    for (let i = 0; i < n; i++) {
      if (ok(i)) w.writeAscii(getBit(bits, d.offset + i) ? 'true' : 'false');
      w.endRow();
    }
  } else if (isInt(f) || f === 'float64') {
    const src = d.values as unknown as ArrayLike<number | bigint>;
    for (let i = 0; i < n; i++) {
      if (ok(i)) w.writeAscii(String(src[i]));
      w.endRow();
    }
  } else if (f === 'float32') {
    const src = d.values as Float32Array;
    for (let i = 0; i < n; i++) {
      if (ok(i)) w.writeAscii(formatFloat32(src[i]!));
      w.endRow();
    }
  } else if (f === 'date') {
    const src = d.values as Int32Array;
    for (let i = 0; i < n; i++) {
      if (ok(i)) w.writeAscii(formatDate(src[i]!));
      w.endRow();
    }
  } else if (f === 'timestamp') {
    const src = d.values as BigInt64Array;
    const unit = unitOf(d.type);
    const tz = (d.type as arrow.Timestamp).timezone ?? null;
    for (let i = 0; i < n; i++) {
      if (ok(i)) w.writeAscii(formatTimestamp(src[i]!, unit, tz));
      w.endRow();
    }
  } else {
    for (let i = 0; i < n; i++) {
      const s = formatPhysicalValue(d, i);
      if (s !== null) w.writeString(s);
      w.endRow();
    }
  }
  return mkData(type, n, valid === null ? null : valid.slice(), w.values(), w.offsets);
}

/** binary -> utf8 shares the buffers after checking the bytes are valid UTF-8 row by row. */
function binaryToUtf8(d: arrow.Data): arrow.Data {
  const o = d.valueOffsets as Int32Array;
  const bytes = d.values as Uint8Array;
  const n = d.length;
  let whole = true;
  try {
    decodeUtf8Strict(bytes.subarray(o[0]!, o[n]!));
  } catch {
    whole = false;
  }
  for (let i = 0; i < n; i++) {
    const s = o[i]!,
      e = o[i + 1]!;
    // A row starting with a continuation byte means a character straddles a row boundary.
    if (whole && (s === e || (bytes[s]! & 0xc0) !== 0x80)) continue;
    try {
      decodeUtf8Strict(bytes.subarray(s, e));
    } catch {
      if (getValidAt(d, i)) throw new CastError(`invalid UTF-8 at row ${i}`, Buffer.from(bytes.subarray(s, e)).toString('hex'), i, 'utf8');
    }
  }
  return d.clone(new arrow.Utf8());
}

function getValidAt(d: arrow.Data, i: number): boolean {
  return d.nullCount === 0 || getBit(d.nullBitmap!, d.offset + i);
}

const FLOAT_RE = /^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\s*$/i;
const INT_RE = /^\s*[+-]?\d+\s*$/;
const TRUE_WORDS = new Set(['true', 't', '1', 'yes', 'y']);
const FALSE_WORDS = new Set(['false', 'f', '0', 'no', 'n']);

function parseFail(d: arrow.Data, i: number, to: DataType): never {
  const o = d.valueOffsets as Int32Array;
  const s = utf8Decoder.decode((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!));
  throw new CastError(`value ${JSON.stringify(s)} at row ${i} is not a valid ${to}`, s, i, String(to));
}

function parseFloatText(s: string): number | null {
  if (!FLOAT_RE.test(s)) return null;
  const t = s.trim().toLowerCase().replace(/^\+/, '');
  if (t === 'nan' || t === '-nan') return NaN;
  if (t === 'inf' || t === 'infinity') return Infinity;
  if (t === '-inf' || t === '-infinity') return -Infinity;
  return Number(t);
}

function fromUtf8(d: arrow.Data, to: DataType): arrow.Data {
  const n = d.length;
  const t = to.kind;
  const type = to.toArrow();
  const o = d.valueOffsets as Int32Array;
  const bytes = d.values as Uint8Array;
  const valid = new Valid(d, n);
  if (t === 'binary') return d.clone(type);
  if (t === 'bool') {
    const bits = new Uint8Array(bitmapBytes(n));
    for (let i = 0; i < n; i++) {
      if (!valid.isValid(i)) continue;
      const s = latin1(bytes, o[i]!, o[i + 1]!)
        .trim()
        .toLowerCase();
      if (TRUE_WORDS.has(s)) bits[i >> 3]! |= 1 << (i & 7);
      else if (!FALSE_WORDS.has(s)) parseFail(d, i, to);
    }
    return mkData(type, n, valid.bits, bits);
  }
  if (t === 'date') {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      if (!valid.isValid(i)) continue;
      const v = parseDate(latin1(bytes, o[i]!, o[i + 1]!));
      if (v === null || v < -2147483648 || v > 2147483647) parseFail(d, i, to);
      out[i] = v;
    }
    return mkData(type, n, valid.bits, out);
  }
  if (t === 'timestamp') {
    const out = new BigInt64Array(n);
    const unit = unitOf(type);
    for (let i = 0; i < n; i++) {
      if (!valid.isValid(i)) continue;
      const v = parseTimestamp(latin1(bytes, o[i]!, o[i + 1]!), unit);
      if (v === null || BigInt.asIntN(64, v) !== v) parseFail(d, i, to);
      out[i] = v;
    }
    return mkData(type, n, valid.bits, out);
  }
  if (FLOAT_KINDS.has(t)) {
    const out = new (t === 'float32' ? Float32Array : Float64Array)(n);
    for (let i = 0; i < n; i++) {
      if (!valid.isValid(i)) continue;
      const v = parseFloatText(latin1(bytes, o[i]!, o[i + 1]!));
      if (v === null) parseFail(d, i, to);
      out[i] = v;
    }
    return mkData(type, n, valid.bits, out);
  }
  if (isBig(t)) {
    const out = t === 'int64' ? new BigInt64Array(n) : new BigUint64Array(n);
    for (let i = 0; i < n; i++) {
      if (!valid.isValid(i)) continue;
      const s = latin1(bytes, o[i]!, o[i + 1]!);
      if (!INT_RE.test(s)) parseFail(d, i, to);
      const v = BigInt(s.trim());
      if ((t === 'int64' ? BigInt.asIntN(64, v) : BigInt.asUintN(64, v)) !== v) parseFail(d, i, to);
      out[i] = v;
    }
    return mkData(type, n, valid.bits, out);
  }
  const [lo, hi] = RANGE[t]!;
  const out = new (arrayFor(t))(n);
  for (let i = 0; i < n; i++) {
    if (!valid.isValid(i)) continue;
    const v = parseIntBytes(bytes, o[i]!, o[i + 1]!);
    if (v === null || v < lo || v > hi) parseFail(d, i, to);
    out[i] = v;
  }
  return mkData(type, n, valid.bits, out);
}

/** ASCII decimal integer with optional sign and surrounding blanks, straight from bytes. */
function parseIntBytes(b: Uint8Array, s: number, e: number): number | null {
  while (s < e && (b[s] === 32 || b[s] === 9)) s++;
  while (e > s && (b[e - 1] === 32 || b[e - 1] === 9)) e--;
  let neg = false;
  if (s < e && (b[s] === 45 || b[s] === 43)) {
    neg = b[s] === 45;
    s++;
  }
  if (s === e || e - s > 15) {
    // Too long for exact double accumulation: let BigInt decide (still rejects junk).
    if (s === e) return null;
    const txt = latin1(b, s, e);
    if (!/^\d+$/.test(txt)) return null;
    const v = Number(BigInt(txt));
    return neg ? -v : v;
  }
  let v = 0;
  for (let k = s; k < e; k++) {
    const c = b[k]! - 48;
    if (c < 0 || c > 9) return null;
    v = v * 10 + c;
  }
  return neg ? -v : v;
}

function temporalCast(d: arrow.Data, from: DataType, to: DataType): arrow.Data {
  const n = d.length;
  const f = from.kind,
    t = to.kind;
  const type = to.toArrow();
  // Integers and temporals share physical layouts: reinterpret, then convert integer widths.
  if (isInt(f)) {
    const raw = castData(d, t === 'date' ? DataType.int32() : DataType.int64());
    return retype(raw, type);
  }
  if (isInt(t)) {
    const raw = retype(d, f === 'date' ? new arrow.Int32() : new arrow.Int64());
    return castData(raw, to);
  }
  const valid = new Valid(d, n);
  if (f === 'date') {
    const src = d.values as Int32Array;
    const perDay = TICKS_PER_DAY[(to.json as { unit: 's' }).unit];
    const out = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const v = BigInt(src[i]!) * perDay;
      if (BigInt.asIntN(64, v) !== v) valid.fail(i);
      else out[i] = v;
    }
    return mkData(type, n, valid.bits, out);
  }
  const src = d.values as BigInt64Array;
  const unit = unitOf(d.type);
  if (t === 'date') {
    const perDay = TICKS_PER_DAY[unit];
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = floorDiv(src[i]!, perDay);
      if (v < -2147483648n || v > 2147483647n) valid.fail(i);
      else out[i] = Number(v);
    }
    return mkData(type, n, valid.bits, out);
  }
  // timestamp -> timestamp
  const toUnit = (to.json as { unit: 's' }).unit;
  if (toUnit === unit) return retype(d, type);
  const a = TICKS_PER_SECOND[unit],
    b = TICKS_PER_SECOND[toUnit];
  const out = new BigInt64Array(n);
  if (b > a) {
    const k = b / a;
    for (let i = 0; i < n; i++) {
      const v = src[i]! * k;
      if (BigInt.asIntN(64, v) !== v) valid.fail(i);
      else out[i] = v;
    }
  } else {
    const k = a / b;
    for (let i = 0; i < n; i++) out[i] = floorDiv(src[i]!, k);
  }
  return mkData(type, n, valid.bits, out);
}

function listCast(d: arrow.Data, from: DataType, to: DataType): arrow.Data {
  const n = d.length;
  const type = to.toArrow();
  const valid = validity0(d);
  const validCopy = valid === null ? null : valid.slice();
  if (from.kind === 'fixedSizeList') {
    const size = fixedListSize(d.type);
    const child = castData(d.children[0]!.slice(0, n * size), to.child());
    if (to.kind === 'fixedSizeList') return mkData(type, n, validCopy, undefined, undefined, [child]);
    const offsets = new Int32Array(n + 1);
    for (let i = 0; i <= n; i++) offsets[i] = i * size;
    return mkData(type, n, validCopy, undefined, offsets, [child]);
  }
  const o = d.valueOffsets as Int32Array;
  const start = o[0]!,
    end = o[n]!;
  const offsets = start === 0 ? o.subarray(0, n + 1) : o.subarray(0, n + 1).map((x) => x - start);
  const child = castData(d.children[0]!.slice(start, end - start), to.child());
  return mkData(type, n, validCopy, undefined, offsets, [child]);
}

function structCast(d: arrow.Data, from: DataType, to: DataType): arrow.Data {
  const n = d.length;
  const names = from.structFields().map((f) => f.name);
  const children = to.structFields().map((tf) => castData(d.children[names.indexOf(tf.name)]!.slice(0, n), tf.type));
  const valid = validity0(d);
  return mkData(to.toArrow(), n, valid === null ? null : valid.slice(), undefined, undefined, children);
}

/** Casts d (any supported arrow type) to `to`. Throws CastError on unparseable text, TypeError if unsupported. */
export function castData(d: arrow.Data, to: DataType): arrow.Data {
  const from = DataType.fromArrow(d.type);
  const reason = castUnsupportedReason(from, to);
  if (reason) throw new TypeError(reason);
  if (from.equals(to)) return retype(d, to.toArrow());
  const f = from.kind,
    t = to.kind;
  if (f === 'null') return allNull(to.toArrow(), d.length);
  if (t === 'utf8') return toUtf8(d, from);
  if ((isNum(f) || f === 'bool') && (isNum(t) || t === 'bool')) return numToNum(d, f, to);
  if (f === 'utf8') return fromUtf8(d, to);
  if (f === 'list' || f === 'fixedSizeList') return listCast(d, from, to);
  if (f === 'struct') return structCast(d, from, to);
  return temporalCast(d, from, to);
}

/**
 * Brings a column read from a batch to the exact physical layout `type` promises: large offsets
 * and millisecond dates are converted (Arrow JS may hand us those), matching layouts are retyped
 * without copying, anything else is cast.
 */
export function conform(d: arrow.Data, type: DataType): arrow.Data {
  const target = type.toArrow();
  const n = normalizeLayout(d);
  if (DataType.fromArrow(n.type).equals(type)) return retype(n, target);
  return castData(n, type);
}

function normalizeLayout(d: arrow.Data): arrow.Data {
  const t = d.type;
  switch (t.typeId) {
    case arrow.Type.Dictionary: {
      // Decode: gather the dictionary's values by the indices; null indices stay null.
      const dict = (d as arrow.Data<arrow.Dictionary>).dictionary;
      if (!dict) throw new TypeError('dictionary-encoded column without its dictionary');
      const values = dict.data.length === 1 ? dict.data[0]! : concatData(dict.data, dict.type);
      const src = d.values as unknown as ArrayLike<number | bigint>;
      const idx = new Int32Array(d.length);
      const valid = validity0(d);
      for (let i = 0; i < d.length; i++) {
        idx[i] = valid !== null && ((valid[i >> 3]! >> (i & 7)) & 1) === 0 ? -1 : Number(src[i]!);
      }
      return normalizeLayout(take(values, idx));
    }
    case arrow.Type.LargeUtf8:
    case arrow.Type.LargeBinary: {
      const o = d.valueOffsets as unknown as BigInt64Array;
      const n = d.length;
      const start = Number(o[0]!),
        end = Number(o[n]!);
      if (end - start > 0x7fffffff) throw new RangeError('string column over 2 GiB cannot be converted to 32-bit offsets');
      const offsets = new Int32Array(n + 1);
      for (let i = 0; i <= n; i++) offsets[i] = Number(o[i]!) - start;
      const valid = validity0(d);
      const values = (d.values as Uint8Array).subarray(start, end);
      return mkData(t.typeId === arrow.Type.LargeUtf8 ? new arrow.Utf8() : new arrow.Binary(), n, valid === null ? null : valid.slice(), values, offsets);
    }
    case arrow.Type.Date: {
      if ((t as arrow.Date_).unit === arrow.DateUnit.DAY) return d;
      const src = d.values as unknown as BigInt64Array;
      const out = new Int32Array(d.length);
      for (let i = 0; i < d.length; i++) out[i] = Number(floorDiv(src[i]!, 86400000n));
      const valid = validity0(d);
      return mkData(new arrow.DateDay(), d.length, valid === null ? null : valid.slice(), out);
    }
    case arrow.Type.List:
    case arrow.Type.FixedSizeList:
    case arrow.Type.Struct: {
      const children = d.children.map(normalizeLayout);
      if (children.every((c, i) => c === d.children[i])) return d;
      const fields = children.map((c, i) => new arrow.Field(t.children[i]!.name, c.type, true));
      const nt =
        t.typeId === arrow.Type.List
          ? new arrow.List(fields[0]!)
          : t.typeId === arrow.Type.FixedSizeList
            ? new arrow.FixedSizeList(fixedListSize(t), fields[0]!)
            : new arrow.Struct(fields);
      return d.clone(nt, d.offset, d.length, d.nullCount, undefined, children);
    }
    default:
      return d;
  }
}

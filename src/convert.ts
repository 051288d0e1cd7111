// Conversion between plain JS values and Arrow data. Both directions read and write the typed arrays
// inside arrow `Data` directly: arrow's builders, `vectorFromArray` and row proxies are 10-30x slower
// (see shared/notes/measurements.md).
//
// Value mapping (Arrow -> JS, and what JS values each column type accepts on the way in):
//   null                          -> null
//   bool                          -> boolean
//   int8..int32, uint8..uint32    -> number           (accepts integral numbers, or bigints, in range)
//   int64, uint64                 -> bigint           (accepts integral numbers or bigints in range)
//   float32, float64              -> number           (accepts numbers; bigints are converted)
//   utf8                          -> string
//   binary                        -> Uint8Array       (reads are views into the Arrow buffer: do not mutate)
//   date                          -> Date at UTC midnight (accepts Date; the time of day is dropped)
//   timestamp                     -> Date             (accepts Date, or a bigint already in the column's unit).
//                                    A Date holds milliseconds: us/ns timestamps lose their sub-ms
//                                    part on read (rounded toward -infinity).
//   list, fixedSizeList           -> JsValue[]        (accepts arrays and typed arrays)
//   struct                        -> plain object     (accepts plain objects; missing fields are null,
//                                                      keys not in the struct are ignored)
// `undefined` is accepted wherever null is. Arrow Data may be sliced (nonzero `offset`) and may have no
// validity bitmap when it has no nulls: every reader here handles both, following arrow-js's layout
// conventions (fixed-width `values` and `valueOffsets` start at the slice, bitmaps and bool bits are
// indexed with `offset`, struct and fixed-size-list children are sliced with their parent).
import { Buffer, isAscii } from 'node:buffer';
import * as arrow from 'apache-arrow';
import { DataType, Field, Schema, fromArrowType, toArrowType, type DataTypeJSON, type FieldJSON } from './datatypes.ts';

export type JsValue = null | boolean | number | bigint | string | Uint8Array | Date | JsValue[] | { [k: string]: JsValue };

// ---------------------------------------------------------------------------------------------
// Inference
// ---------------------------------------------------------------------------------------------

// Singletons so that the per-value inference of scalar columns allocates nothing and merges by identity.
const T_NULL: DataTypeJSON = { kind: 'null' };
const T_BOOL: DataTypeJSON = { kind: 'bool' };
const T_INT64: DataTypeJSON = { kind: 'int64' };
const T_FLOAT64: DataTypeJSON = { kind: 'float64' };
const T_UTF8: DataTypeJSON = { kind: 'utf8' };
const T_BINARY: DataTypeJSON = { kind: 'binary' };
const T_TS_MS: DataTypeJSON = { kind: 'timestamp', unit: 'ms', tz: null };

const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;
const TWO_32 = 2 ** 32;

class MergeError extends Error {
  constructor(readonly a: DataTypeJSON, readonly b: DataTypeJSON) { super('incompatible types'); }
}

function typeStr(t: DataTypeJSON): string { return new DataType(t).toString(); }

function isPlainObject(v: object): v is Record<string, unknown> {
  const p = Object.getPrototypeOf(v) as unknown;
  return p === Object.prototype || p === null;
}

type AnyTypedArray =
  | Int8Array | Int16Array | Int32Array | Uint8Array | Uint8ClampedArray | Uint16Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

function isTypedArray(v: unknown): v is AnyTypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

/** Arrow type of a typed array's elements (the zero-copy mapping of columnsToBatch). */
function typedArrayType(a: AnyTypedArray): DataTypeJSON {
  if (a instanceof Float64Array) return T_FLOAT64;
  if (a instanceof Float32Array) return { kind: 'float32' };
  if (a instanceof Int32Array) return { kind: 'int32' };
  if (a instanceof Int16Array) return { kind: 'int16' };
  if (a instanceof Int8Array) return { kind: 'int8' };
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) return { kind: 'uint8' };
  if (a instanceof Uint16Array) return { kind: 'uint16' };
  if (a instanceof Uint32Array) return { kind: 'uint32' };
  if (a instanceof BigInt64Array) return T_INT64;
  return { kind: 'uint64' };
}

class UnsupportedValue extends Error {}

/**
 * Type of one JS value. Numbers are int64 when integral (JS has no int type: like Python ints in
 * Daft/Polars), else float64; a column mixing both becomes float64 through `mergeTypes`.
 */
function inferValue(v: unknown): DataTypeJSON {
  if (v === null || v === undefined) return T_NULL;
  switch (typeof v) {
    case 'number': return Number.isInteger(v) && v >= -TWO_63 && v < TWO_63 ? T_INT64 : T_FLOAT64;
    case 'bigint': return T_INT64;
    case 'string': return T_UTF8;
    case 'boolean': return T_BOOL;
    case 'object': break;
    default: throw new UnsupportedValue(`unsupported value ${describe(v)}`);
  }
  if (v instanceof Date) return T_TS_MS;
  if (v instanceof Uint8Array) return T_BINARY;
  if (Array.isArray(v)) {
    let child = T_NULL;
    for (let i = 0; i < v.length; i++) {
      const t = inferValue(v[i]);
      if (t !== child) child = mergeTypes(child, t);
    }
    return { kind: 'list', child };
  }
  if (isTypedArray(v)) return { kind: 'list', child: typedArrayType(v) };
  if (isPlainObject(v)) {
    const fields: FieldJSON[] = [];
    for (const k of Object.keys(v)) fields.push({ name: k, type: inferValue(v[k]), nullable: true });
    return { kind: 'struct', fields };
  }
  throw new UnsupportedValue(`unsupported value ${describe(v)}`);
}

const INT_BITS: Partial<Record<DataTypeJSON['kind'], number>> = {
  int8: 8, int16: 16, int32: 32, int64: 64, uint8: 8, uint16: 16, uint32: 32, uint64: 64,
};

/** Common supertype of two inferred types, or MergeError. */
function mergeTypes(a: DataTypeJSON, b: DataTypeJSON): DataTypeJSON {
  if (a === b) return a;
  if (a.kind === 'null') return b;
  if (b.kind === 'null') return a;
  const ab = INT_BITS[a.kind], bb = INT_BITS[b.kind];
  const aNum = ab !== undefined || a.kind === 'float32' || a.kind === 'float64';
  const bNum = bb !== undefined || b.kind === 'float32' || b.kind === 'float64';
  if (aNum && bNum) {
    if (a.kind === b.kind) return a;
    if (ab !== undefined && bb !== undefined) {
      // Same signedness: the wider one; mixed signedness: int64 (as Polars does for typical data).
      if (a.kind[0] === b.kind[0]) return ab >= bb ? a : b;
      return T_INT64;
    }
    return T_FLOAT64;
  }
  if (a.kind !== b.kind) throw new MergeError(a, b);
  switch (a.kind) {
    case 'list': {
      const child = mergeTypes(a.child, (b as typeof a).child);
      return child === a.child ? a : { kind: 'list', child };
    }
    case 'struct': {
      const bf = (b as typeof a).fields;
      let changed = bf.length !== a.fields.length;
      const fields = a.fields.map((f, i) => {
        const o = bf[i]?.name === f.name ? bf[i] : bf.find((g) => g.name === f.name);
        if (!o) { changed = true; return f; }
        const t = mergeTypes(f.type, o.type);
        if (t !== f.type) changed = true;
        return t === f.type ? f : { ...f, type: t };
      });
      if (!changed) return a;
      for (const g of bf) if (!fields.some((f) => f.name === g.name)) fields.push(g);
      return { kind: 'struct', fields };
    }
    case 'timestamp': case 'fixedSizeList':
      if (JSON.stringify(a) === JSON.stringify(b)) return a;
      throw new MergeError(a, b);
    default:
      return a;
  }
}

function inferColumn(name: string, values: ArrayLike<unknown>): DataTypeJSON {
  let t = T_NULL;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) continue;
    try {
      const vt = inferValue(v);
      if (vt !== t) t = mergeTypes(t, vt);
    } catch (e) {
      throw inferError(e, name, i, t, v);
    }
  }
  return t;
}

function inferError(e: unknown, name: string, row: number, prev: DataTypeJSON, v: unknown): Error {
  if (e instanceof MergeError) {
    let vt: DataTypeJSON | null = null;
    try { vt = inferValue(v); } catch { /* the value itself mixes types */ }
    if (vt === null) {
      return new TypeError(`column '${name}', row ${row}: cannot infer one type for ${describe(v)}: it mixes ${typeStr(e.a)} and ${typeStr(e.b)}`);
    }
    return new TypeError(
      `column '${name}': cannot infer one type: row ${row} has ${typeStr(vt)} (${describe(v)}) but earlier rows have ${typeStr(prev)}; ` +
      'pass a schema or make the values consistent');
  }
  if (e instanceof UnsupportedValue) return new TypeError(`column '${name}', row ${row}: ${e.message}`);
  return e as Error;
}

/**
 * Schema of plain-object rows: the union of their keys in first-seen order; each column gets the
 * common type of its non-null values (see `inferValue`: integral numbers int64, other numbers
 * float64, int + float -> float64, bigint int64, Date timestamp[ms], Uint8Array binary, other
 * typed arrays list<their element type>, arrays list<merged element type>, plain objects struct
 * with unioned fields). A column with only null/undefined values gets the `null` type (it can
 * still be cast later; guessing utf8 would invent information). Incompatible types in one column
 * throw an Error naming the column, the row and both types.
 */
export function inferSchemaFromRecords(rows: readonly Record<string, unknown>[]): Schema {
  const index = new Map<string, number>();
  const names: string[] = [];
  const types: DataTypeJSON[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new TypeError(`row ${i} is not an object: ${describe(r)}`);
    for (const k of Object.keys(r)) {
      let j = index.get(k);
      if (j === undefined) { j = names.length; index.set(k, j); names.push(k); types.push(T_NULL); }
      const v = r[k];
      if (v === null || v === undefined) continue;
      const cur = types[j]!;
      try {
        const vt = inferValue(v);
        if (vt !== cur) types[j] = mergeTypes(cur, vt);
      } catch (e) {
        throw inferError(e, k, i, cur, v);
      }
    }
  }
  // Cloned: the inferred types share module-level singleton descriptors.
  return new Schema(names.map((n, j) => new Field(n, new DataType(structuredClone(types[j]!)), true)));
}

// ---------------------------------------------------------------------------------------------
// JS values -> Arrow
// ---------------------------------------------------------------------------------------------

/** Where a value sits, for error messages: `what` names the column/UDF, rowOf maps nested slots to top rows. */
interface Ctx {
  what: string;
  path: string;
  rowOf: Int32Array | null;
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string': {
      const s = v.length > 40 ? `${v.slice(0, 40)}…` : v;
      return `string ${JSON.stringify(s)}`;
    }
    case 'number': return `number ${String(v)}`;
    case 'bigint': return `bigint ${v}n`;
    case 'boolean': return `boolean ${v}`;
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
  }
  if (v instanceof Date) return `Date ${Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name} of length ${(v as AnyTypedArray).length ?? v.byteLength}`;
  const ctor = (v as object).constructor;
  if (isPlainObject(v as object)) {
    const keys = Object.keys(v as object);
    return `object {${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}}`;
  }
  return `${ctor?.name ?? 'object'} instance`;
}

function fail(ctx: Ctx, i: number, t: DataTypeJSON, v: unknown, why?: string): never {
  const row = ctx.rowOf ? ctx.rowOf[i]! : i;
  throw new TypeError(`${ctx.what}, row ${row}${ctx.path}: ${why ?? `expected ${typeStr(t)}, got ${describe(v)}`}`);
}

const EMPTY_BITMAP = new Uint8Array(0);

/** Lazily allocated validity bitmap: no allocation at all for columns without nulls. */
class Validity {
  bits: Uint8Array | null = null;
  nulls = 0;
  constructor(private readonly n: number) {}
  setNull(i: number): void {
    if (this.bits === null) {
      this.bits = new Uint8Array((this.n + 7) >> 3).fill(0xff);
    }
    this.bits[i >> 3]! &= ~(1 << (i & 7));
    this.nulls++;
  }
  get bitmap(): Uint8Array { return this.bits ?? EMPTY_BITMAP; }
}

function mkData(
  type: arrow.DataType, length: number, valid: Validity | null,
  values?: ArrayBufferView, offsets?: Int32Array, children: arrow.Data[] = [],
): arrow.Data {
  return new arrow.Data(type, 0, length, valid ? valid.nulls : 0, bufs(offsets, values, valid ? valid.bitmap : EMPTY_BITMAP), children);
}

type DataBuffers = ConstructorParameters<typeof arrow.Data>[4];
/** Buffers in arrow's BufferType order (OFFSET, DATA, VALIDITY); makeData's per-type overloads would copy or re-wrap. */
function bufs(offsets: Int32Array | undefined, values: ArrayBufferView | undefined, bitmap: Uint8Array): DataBuffers {
  return [offsets, values, bitmap, undefined] as unknown as DataBuffers;
}

/**
 * Arrow Data of `type` from JS values (see the mapping at the top of this file). Values that do not
 * fit throw a TypeError naming `what` (a column or UDF), the row and the value.
 */
export function valuesToData(values: readonly unknown[], type: DataType, what = 'values'): arrow.Data {
  return build(values, values.length, type.json, toArrowType(type.json), { what, path: '', rowOf: null });
}

const INT_RANGE: Record<string, [number, number]> = {
  int8: [-128, 127], int16: [-32768, 32767], int32: [-2147483648, 2147483647],
  uint8: [0, 255], uint16: [0, 65535], uint32: [0, 4294967295],
};
const INT64_MIN = -(2n ** 63n), INT64_MAX = 2n ** 63n - 1n, UINT64_MAX = 2n ** 64n - 1n;
const MS_PER_DAY = 86_400_000;
const TS_MUL: Record<string, number> = { s: 0.001, ms: 1, us: 1e3, ns: 1e6 };

function build(values: ArrayLike<unknown>, n: number, t: DataTypeJSON, at: arrow.DataType, ctx: Ctx): arrow.Data {
  switch (t.kind) {
    case 'null': {
      for (let i = 0; i < n; i++) if (values[i] != null) fail(ctx, i, t, values[i]);
      return new arrow.Data(at, 0, n, n);
    }
    case 'bool': {
      const bits = new Uint8Array((n + 7) >> 3);
      const valid = new Validity(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === true) bits[i >> 3]! |= 1 << (i & 7);
        else if (v === false) { /* zero bit */ } else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, bits);
    }
    case 'int8': case 'int16': case 'int32': case 'uint8': case 'uint16': case 'uint32': {
      const [lo, hi] = INT_RANGE[t.kind]!;
      const blo = BigInt(lo), bhi = BigInt(hi);
      const out = new (at as arrow.Int).ArrayType(n) as Int32Array;
      const valid = new Validity(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v === 'number') {
          if (!(Number.isInteger(v) && v >= lo && v <= hi)) fail(ctx, i, t, v, `${describe(v)} does not fit ${t.kind}`);
          out[i] = v;
        } else if (typeof v === 'bigint') {
          if (v < blo || v > bhi) fail(ctx, i, t, v, `${describe(v)} does not fit ${t.kind}`);
          out[i] = Number(v);
        } else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, out);
    }
    case 'int64': case 'uint64': return mkData(at, n, ...build64(values, n, t, ctx));
    case 'float32': case 'float64': {
      const out = t.kind === 'float64' ? new Float64Array(n) : new Float32Array(n);
      const valid = new Validity(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v === 'number') out[i] = v;
        else if (typeof v === 'bigint') out[i] = Number(v);
        else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, out);
    }
    case 'utf8': {
      const { offsets, bytes, valid } = encodeStrings(values, n, t, ctx);
      return mkData(at, n, valid, bytes, offsets);
    }
    case 'binary': {
      const valid = new Validity(n);
      const offsets = new Int32Array(n + 1);
      let total = 0;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v instanceof Uint8Array) total += v.length;
        else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
        offsets[i + 1] = total;
        if (total > 0x7fffffff) fail(ctx, i, t, v, 'binary column exceeds 2 GiB (int32 offsets)');
      }
      const bytes = new Uint8Array(total);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v instanceof Uint8Array) bytes.set(v, offsets[i]!);
      }
      return mkData(at, n, valid, bytes, offsets);
    }
    case 'date': {
      const out = new Int32Array(n);
      const valid = new Validity(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v instanceof Date) {
          const ms = v.getTime();
          if (Number.isNaN(ms)) fail(ctx, i, t, v, 'invalid Date');
          out[i] = Math.floor(ms / MS_PER_DAY);
        } else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, out);
    }
    case 'timestamp': {
      const out = new BigInt64Array(n);
      const words = new Uint32Array(out.buffer);
      const mul = TS_MUL[t.unit]!;
      const valid = new Validity(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v instanceof Date) {
          const ms = v.getTime();
          if (Number.isNaN(ms)) fail(ctx, i, t, v, 'invalid Date');
          const x = mul < 1 ? Math.floor(ms / 1000) : ms * mul;
          if (x > -9007199254740992 && x < 9007199254740992) {
            writeInt64(words, i, x); // exact in a double: no BigInt needed
          } else {
            const big = BigInt(ms) * BigInt(mul);
            if (big < INT64_MIN || big > INT64_MAX) fail(ctx, i, t, v, `${describe(v)} overflows timestamp[${t.unit}]`);
            out[i] = big;
          }
        } else if (typeof v === 'bigint') {
          if (v < INT64_MIN || v > INT64_MAX) fail(ctx, i, t, v, `${describe(v)} does not fit int64`);
          out[i] = v;
        } else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, out);
    }
    case 'list': return buildList(values, n, t, at as arrow.List, ctx);
    case 'fixedSizeList': return buildFixedList(values, n, t, at as arrow.FixedSizeList, ctx);
    case 'struct': return buildStruct(values, n, t, at as arrow.Struct, ctx);
  }
}

/** Two's-complement int64 written as two uint32 words: avoids allocating a BigInt per value. */
function writeInt64(words: Uint32Array, i: number, x: number): void {
  words[2 * i] = x >>> 0; // ToUint32 is exact modulo 2^32 for any integral double
  words[2 * i + 1] = Math.floor(x / TWO_32) >>> 0;
}

function build64(values: ArrayLike<unknown>, n: number, t: DataTypeJSON, ctx: Ctx): [Validity, BigInt64Array | BigUint64Array] {
  const signed = t.kind === 'int64';
  const out = signed ? new BigInt64Array(n) : new BigUint64Array(n);
  const words = new Uint32Array(out.buffer);
  const lo = signed ? -TWO_63 : 0, hi = signed ? TWO_63 : TWO_64;
  const blo = signed ? INT64_MIN : 0n, bhi = signed ? INT64_MAX : UINT64_MAX;
  const valid = new Validity(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v === 'number') {
      if (!(Number.isInteger(v) && v >= lo && v < hi)) fail(ctx, i, t, v, `${describe(v)} does not fit ${t.kind}`);
      writeInt64(words, i, v);
    } else if (typeof v === 'bigint') {
      if (v < blo || v > bhi) fail(ctx, i, t, v, `${describe(v)} does not fit ${t.kind}`);
      out[i] = v;
    } else if (v == null) valid.setNull(i);
    else fail(ctx, i, t, v);
  }
  return [valid, out];
}

const textEncoder = new TextEncoder();
const MAX_BYTES = 0x7fffffff; // int32 offsets

/**
 * UTF-8 encoding of a string column into one buffer. Columns of short strings are encoded by a JS
 * loop (a native call per value costs more than the work); longer ones by joining runs of strings
 * and encoding each run with one native write, then recovering the per-value offsets.
 */
function encodeStrings(values: ArrayLike<unknown>, n: number, t: DataTypeJSON, ctx: Ctx): { offsets: Int32Array; bytes: Uint8Array; valid: Validity } {
  const valid = new Validity(n);
  let units = 0;
  // UTF-16 lengths, kept so that later passes need not touch each string again (cache misses dominate)
  const lens = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v === 'string') { units += v.length; lens[i] = v.length; } else if (v == null) valid.setNull(i);
    else fail(ctx, i, t, v);
  }
  const offsets = new Int32Array(n + 1);
  const bytes = units >= 12 * (n - valid.nulls) ? encodeJoined(values, lens, units, offsets) : encodeLoop(values, n, units, offsets);
  if (bytes === null) {
    const i = offsets.findIndex((o) => o > MAX_BYTES);
    fail(ctx, Math.max(0, i - 1), t, values[Math.max(0, i - 1)], 'utf8 column exceeds 2 GiB (int32 offsets)');
  }
  return { offsets, bytes, valid };
}

function encodeLoop(values: ArrayLike<unknown>, n: number, units: number, offsets: Int32Array): Uint8Array | null {
  let bytes = new Uint8Array(units);
  let pos = 0;
  let left = units; // UTF-16 units not yet encoded; invariant: bytes.length - pos >= left
  for (let i = 0; i < n; i++) {
    const s = values[i];
    if (typeof s === 'string') {
      const len = s.length;
      left -= len;
      let k = 0;
      if (len <= 64) {
        for (; k < len; k++) {
          const c = s.charCodeAt(k);
          if (c >= 0x80) break;
          bytes[pos++] = c;
        }
      }
      if (k < len) {
        // Non-ASCII or long: make room for the worst case (3 bytes per unit) plus what remains.
        const need = pos + 3 * (len - k) + left;
        if (need > bytes.length) {
          if (pos > MAX_BYTES) return null;
          const grown = new Uint8Array(Math.max(need, Math.min(bytes.length * 2, need + 3 * left)));
          grown.set(bytes.subarray(0, pos));
          bytes = grown;
        }
        if (len - k > 64) {
          pos += textEncoder.encodeInto(k === 0 ? s : s.slice(k), bytes.subarray(pos)).written;
        } else {
          pos = encodeUtf8Tail(s, k, bytes, pos);
        }
      }
    }
    offsets[i + 1] = pos;
  }
  if (pos > MAX_BYTES) return null;
  return pos === bytes.length ? bytes : bytes.subarray(0, pos);
}

function isAsciiShort(s: string): boolean {
  for (let k = 0; k < s.length; k++) if (s.charCodeAt(k) >= 0x80) return false;
  return true;
}

const JOIN_UNITS = 1 << 24; // per joined run: well under V8's maximum string length

/**
 * Encodes runs of values joined into one string (Array#join skips null/undefined as ''), each with a
 * single native Buffer#write. Offsets follow from the UTF-16 lengths for ASCII runs, else from a walk
 * over the written bytes; a run where a surrogate pair straddles two values is re-encoded per value.
 */
function encodeJoined(values: ArrayLike<unknown>, lens: Int32Array, units: number, offsets: Int32Array): Uint8Array | null {
  const n = lens.length;
  let bytes = new Uint8Array(units + (units >> 4) + 16);
  let buf = bufferOf(bytes);
  let pos = 0;
  const ensure = (need: number, keep: number): void => {
    if (need <= bytes.length) return;
    const grown = new Uint8Array(Math.max(need, Math.min(bytes.length * 2, MAX_BYTES + 1)));
    grown.set(bytes.subarray(0, keep));
    bytes = grown;
    buf = bufferOf(bytes);
  };
  const join = Array.prototype.join;
  const slice = Array.prototype.slice;
  for (let i = 0; i < n;) {
    let j = i, cu = 0;
    while (j < n) {
      const l = lens[j]!;
      if (cu > 0 && cu + l > JOIN_UNITS) break;
      cu += l;
      j++;
    }
    const str: string = i === 0 && j === n ? join.call(values, '') : join.call(slice.call(values, i, j), '');
    const blen = Buffer.byteLength(str, 'utf8');
    if (pos + blen > MAX_BYTES) return null;
    ensure(pos + blen, pos);
    buf.write(str, pos, blen, 'utf8');
    let ok = true;
    if (blen === str.length) {
      let p = pos;
      for (let k = i; k < j; k++) {
        p += lens[k]!;
        offsets[k + 1] = p;
      }
    } else {
      // Per-value byte lengths (native, fast on flat strings) instead of walking the bytes in JS.
      let p = pos;
      for (let k = i; k < j; k++) {
        const v = values[k];
        if (typeof v === 'string') p += v.length < 32 && isAsciiShort(v) ? v.length : Buffer.byteLength(v, 'utf8');
        offsets[k + 1] = p;
      }
      ok = p === pos + blen; // else a surrogate pair formed across two values by the join
    }
    if (!ok) {
      let p = pos;
      for (let k = i; k < j; k++) {
        const v = values[k];
        if (typeof v === 'string') {
          if (p + 3 * v.length > MAX_BYTES) return null;
          ensure(p + 3 * v.length, p);
          p += buf.write(v, p, 'utf8');
        }
        offsets[k + 1] = p;
      }
      pos = p;
    } else {
      pos += blen;
    }
    i = j;
  }
  return pos === bytes.length ? bytes : bytes.subarray(0, pos);
}

function encodeUtf8Tail(s: string, k: number, b: Uint8Array, pos: number): number {
  const len = s.length;
  for (; k < len; k++) {
    let c = s.charCodeAt(k);
    if (c < 0x80) { b[pos++] = c; continue; }
    if (c < 0x800) { b[pos++] = 0xc0 | (c >> 6); b[pos++] = 0x80 | (c & 63); continue; }
    if ((c & 0xfc00) === 0xd800 && k + 1 < len) {
      const d = s.charCodeAt(k + 1);
      if ((d & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c & 0x3ff) << 10) + (d & 0x3ff);
        k++;
        b[pos++] = 0xf0 | (c >> 18); b[pos++] = 0x80 | ((c >> 12) & 63);
        b[pos++] = 0x80 | ((c >> 6) & 63); b[pos++] = 0x80 | (c & 63);
        continue;
      }
    }
    if ((c & 0xf800) === 0xd800) c = 0xfffd; // lone surrogate: replacement char, as TextEncoder does
    b[pos++] = 0xe0 | (c >> 12); b[pos++] = 0x80 | ((c >> 6) & 63); b[pos++] = 0x80 | (c & 63);
  }
  return pos;
}

function isListValue(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || isTypedArray(v);
}

function childRows(ctx: Ctx, n: number, counts: (i: number) => number, total: number): Int32Array {
  const rows = new Int32Array(total);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const c = counts(i);
    const r = ctx.rowOf ? ctx.rowOf[i]! : i;
    for (let j = 0; j < c; j++) rows[k++] = r;
  }
  return rows;
}

function buildList(values: ArrayLike<unknown>, n: number, t: Extract<DataTypeJSON, { kind: 'list' }>, at: arrow.List, ctx: Ctx): arrow.Data {
  const valid = new Validity(n);
  const offsets = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (isListValue(v)) total += v.length;
    else if (v == null) valid.setNull(i);
    else fail(ctx, i, t, v);
    offsets[i + 1] = total;
  }
  if (total > 0x7fffffff) fail(ctx, n - 1, t, null, 'list column exceeds 2^31 elements (int32 offsets)');
  const fast = typedChildren(values, n, t.child, at.children[0]!.type as arrow.DataType, total, (i) => offsets[i]!);
  if (fast) return mkData(at, n, valid, undefined, offsets, [fast]);
  const flat = new Array<unknown>(total);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (isListValue(v)) for (let j = 0; j < v.length; j++) flat[k++] = v[j];
  }
  const rowOf = childRows(ctx, n, (i) => offsets[i + 1]! - offsets[i]!, total);
  const child = build(flat, total, t.child, at.children[0]!.type as arrow.DataType, { what: ctx.what, path: `${ctx.path}, list element`, rowOf });
  return mkData(at, n, valid, undefined, offsets, [child]);
}

/**
 * Child data of a list column whose non-null values are all typed arrays of exactly the child's
 * element type (embeddings from a UDF, say): copied with TypedArray#set, no per-element work.
 * Null when the values don't qualify (the generic path then checks them element by element).
 */
function typedChildren(
  values: ArrayLike<unknown>, n: number, child: DataTypeJSON, at: arrow.DataType, total: number, startOf: (i: number) => number,
): arrow.Data | null {
  if (INT_BITS[child.kind] === undefined && child.kind !== 'float32' && child.kind !== 'float64') return null;
  let seen = false;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v == null) continue;
    if (!isTypedArray(v) || typedArrayType(v).kind !== child.kind || v instanceof Uint8ClampedArray) return null;
    seen = true;
  }
  if (!seen) return null;
  const Ctor = (at as arrow.Int | arrow.Float).ArrayType as unknown as new (len: number) => AnyTypedArray;
  const out = new Ctor(total);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v != null) (out as Float64Array).set(v as Float64Array, startOf(i));
  }
  return mkData(at, total, null, out);
}

function buildFixedList(values: ArrayLike<unknown>, n: number, t: Extract<DataTypeJSON, { kind: 'fixedSizeList' }>, at: arrow.FixedSizeList, ctx: Ctx): arrow.Data {
  const size = t.size;
  const valid = new Validity(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (isListValue(v)) {
      if (v.length !== size) fail(ctx, i, t, v, `expected ${typeStr(t)} with exactly ${size} elements, got ${describe(v)}`);
    } else if (v == null) valid.setNull(i);
    else fail(ctx, i, t, v);
  }
  const fast = typedChildren(values, n, t.child, at.children[0]!.type as arrow.DataType, n * size, (i) => i * size);
  if (fast) return mkData(at, n, valid, undefined, undefined, [fast]);
  const flat = new Array<unknown>(n * size).fill(null);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (isListValue(v)) for (let j = 0; j < size; j++) flat[i * size + j] = v[j];
  }
  const rowOf = childRows(ctx, n, () => size, n * size);
  const child = build(flat, n * size, t.child, at.children[0]!.type as arrow.DataType, { what: ctx.what, path: `${ctx.path}, list element`, rowOf });
  return mkData(at, n, valid, undefined, undefined, [child]);
}

function buildStruct(values: ArrayLike<unknown>, n: number, t: Extract<DataTypeJSON, { kind: 'struct' }>, at: arrow.Struct, ctx: Ctx): arrow.Data {
  const valid = new Validity(n);
  const fields = t.fields;
  const cols = fields.map(() => new Array<unknown>(n).fill(null));
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v == null) { valid.setNull(i); continue; }
    if (typeof v !== 'object' || !isPlainObject(v)) fail(ctx, i, t, v);
    for (let j = 0; j < fields.length; j++) {
      const f = fields[j]!;
      const x = Object.hasOwn(v, f.name) ? v[f.name] : null;
      if (x == null && !f.nullable) fail(ctx, i, t, v, `field '${f.name}' is not nullable, got ${describe(x)}`);
      cols[j]![i] = x;
    }
  }
  const children = fields.map((f, j) =>
    build(cols[j]!, n, f.type, at.children[j]!.type as arrow.DataType, { what: ctx.what, path: `${ctx.path}, field '${f.name}'`, rowOf: ctx.rowOf }));
  return mkData(at, n, valid, undefined, undefined, children);
}

function checkNonNullable(data: arrow.Data, field: Field): void {
  if (field.nullable || data.nullCount === 0) return;
  for (let i = 0; i < data.length; i++) {
    if (!isValid(data, i)) throw new TypeError(`column '${field.name}', row ${i}: null in non-nullable column (${field.type})`);
  }
}

function makeBatch(arrowSchema: arrow.Schema, children: arrow.Data[], length: number): arrow.RecordBatch {
  const struct = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, length, 0, bufs(undefined, undefined, EMPTY_BITMAP), children);
  return new arrow.RecordBatch(arrowSchema, struct as arrow.Data<arrow.Struct>);
}

/**
 * A RecordBatch from plain-object rows. Without `schema` the schema is inferred
 * (`inferSchemaFromRecords`). With it, each value is checked against its column type (error names
 * column, row and value); keys not in the schema are ignored and missing keys are null.
 */
export function recordsToBatch(rows: readonly Record<string, unknown>[], schema?: Schema): arrow.RecordBatch {
  const s = schema ?? inferSchemaFromRecords(rows);
  const n = rows.length;
  if (schema) {
    for (let i = 0; i < n; i++) {
      const r = rows[i];
      if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new TypeError(`row ${i} is not an object: ${describe(r)}`);
    }
  }
  const as = s.toArrow();
  const children = s.fields.map((f, j) => {
    const name = f.name;
    const col = new Array<unknown>(n);
    // A missing key must not pick up Object.prototype members (a column called 'toString').
    const inherited = name in Object.prototype;
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      col[i] = inherited && !Object.hasOwn(r, name) ? undefined : r[name];
    }
    const data = build(col, n, f.type.json, as.fields[j]!.type as arrow.DataType, { what: `column '${name}'`, path: '', rowOf: null });
    checkNonNullable(data, f);
    return data;
  });
  return makeBatch(as, children, n);
}

/**
 * A RecordBatch from named columns. Typed arrays map zero-copy to their Arrow type (Float64Array ->
 * float64, Int32Array -> int32, BigInt64Array -> int64, Uint8Array -> uint8, ...): the batch shares
 * their memory, so later writes to the array show through. Plain arrays are inferred like record
 * values. With `schema`, columns are taken in schema order; a typed array whose element type differs
 * from the schema's is converted (copied), and a column missing from, or not in, the schema is an error.
 */
export function columnsToBatch(
  columns: Record<string, readonly unknown[] | ArrayLike<number> | ArrayLike<bigint>>,
  schema?: Schema,
): arrow.RecordBatch {
  const names = Object.keys(columns);
  let length = -1;
  let first = '';
  for (const name of names) {
    const c = columns[name];
    if (c === null || typeof c !== 'object' || typeof c.length !== 'number') {
      throw new TypeError(`column '${name}' is not an array or typed array: ${describe(c)}`);
    }
    if (length < 0) { length = c.length; first = name; } else if (c.length !== length) {
      const lens = names.map((m) => `'${m}' has ${columns[m]!.length}`).join(', ');
      throw new RangeError(`columns have different lengths: '${first}' has ${length} but '${name}' has ${c.length} (${lens})`);
    }
  }
  if (length < 0) length = 0;
  let s: Schema;
  if (schema) {
    for (const f of schema.fields) if (!Object.hasOwn(columns, f.name)) throw new TypeError(`column '${f.name}' of the schema is missing from the columns (${names.map((m) => `'${m}'`).join(', ') || 'none'})`);
    for (const name of names) if (!schema.has(name)) throw new TypeError(`column '${name}' is not in the schema (${schema.names.map((m) => `'${m}'`).join(', ')})`);
    s = schema;
  } else {
    s = new Schema(names.map((name) => {
      const c = columns[name]!;
      const t = isTypedArray(c) ? typedArrayType(c) : inferColumn(name, c as ArrayLike<unknown>);
      return new Field(name, new DataType(structuredClone(t)), true);
    }));
  }
  const as = s.toArrow();
  const children = s.fields.map((f, j) => {
    const c = columns[f.name]!;
    const at = as.fields[j]!.type as arrow.DataType;
    let data: arrow.Data;
    if (isTypedArray(c) && new DataType(typedArrayType(c)).equals(f.type)) {
      // Zero-copy: a Uint8Array view is re-wrapped only to drop Buffer's prototype, as arrow does.
      const values = c instanceof Uint8Array || c instanceof Uint8ClampedArray ? new Uint8Array(c.buffer, c.byteOffset, c.length) : c;
      data = new arrow.Data(at, 0, c.length, 0, bufs(undefined, values, EMPTY_BITMAP));
    } else {
      const vals = Array.isArray(c) ? c : Array.from(c as ArrayLike<unknown>);
      data = build(vals, length, f.type.json, at, { what: `column '${f.name}'`, path: '', rowOf: null });
    }
    checkNonNullable(data, f);
    return data;
  });
  return makeBatch(as, children, length);
}

// ---------------------------------------------------------------------------------------------
// Arrow -> JS values
// ---------------------------------------------------------------------------------------------

/** The validity bitmap when the data has nulls, else null (no bitmap, or nullCount 0). */
function nullsOf(data: arrow.Data): Uint8Array | null {
  const bm = data.nullBitmap as Uint8Array | undefined;
  if (!bm || bm.length === 0) return null;
  return data.nullCount > 0 ? bm : null;
}

function isValid(data: arrow.Data, i: number): boolean {
  if (data.typeId === arrow.Type.Null) return false;
  const bm = nullsOf(data);
  if (bm === null) return true;
  const p = data.offset + i;
  return ((bm[p >> 3]! >> (p & 7)) & 1) === 1;
}

function bufferOf(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function offsetsOf(data: arrow.Data, start: number, count: number): Int32Array | Float64Array {
  const vo = data.valueOffsets as Int32Array | BigInt64Array;
  if (vo instanceof Int32Array) return vo.subarray(start, start + count + 1);
  const out = new Float64Array(count + 1); // LargeUtf8/LargeBinary/LargeList: 64-bit offsets
  for (let i = 0; i <= count; i++) out[i] = Number(vo[start + i]!);
  return out;
}

/**
 * Strings of a utf8 column range. A native decode per value costs ~200 ns of call overhead, so the
 * byte range is decoded once as latin1 (1 byte -> 1 char, fast) and cut with String#slice; only the
 * values that contain non-ASCII bytes are decoded as UTF-8 one by one (invalid bytes become U+FFFD).
 */
function decodeUtf8Range(data: arrow.Data, start: number, count: number, out: JsValue[]): void {
  const off = offsetsOf(data, start, count);
  const bytes = data.values as Uint8Array;
  const b0 = off[0]!, b1 = off[count]!;
  const buf = bufferOf(bytes);
  const whole = buf.toString('latin1', b0, b1);
  if (isAscii(bytes.subarray(b0, b1))) {
    for (let i = 0; i < count; i++) out[i] = whole.slice(off[i]! - b0, off[i + 1]! - b0);
    return;
  }
  for (let i = 0; i < count; i++) {
    const s = off[i]!, e = off[i + 1]!;
    let p = s;
    while (p < e && bytes[p]! < 0x80) p++;
    out[i] = p === e ? whole.slice(s - b0, e - b0) : buf.toString('utf8', s, e);
  }
}

const dictCache = new WeakMap<object, JsValue[]>();

function dictionaryValues(data: arrow.Data): JsValue[] {
  const dict = data.dictionary;
  if (!dict) throw new TypeError('dictionary-encoded data without a dictionary');
  let vals = dictCache.get(dict);
  if (!vals) {
    vals = [];
    for (const chunk of dict.data) {
      const part = decodeRange(chunk, 0, chunk.length);
      for (let i = 0; i < part.length; i++) vals.push(part[i]!);
    }
    dictCache.set(dict, vals);
  }
  return vals;
}

/** Values [start, start+count) of `data` (indices relative to the data's own, possibly sliced, start). */
function decodeRange(data: arrow.Data, start: number, count: number): JsValue[] {
  const out = new Array<JsValue>(count);
  const bm = nullsOf(data);
  const bo = data.offset + start;
  const type = data.type as arrow.DataType;
  switch (type.typeId) {
    case arrow.Type.Null:
      out.fill(null);
      return out;
    case arrow.Type.Bool: {
      const bits = data.values as Uint8Array;
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        out[i] = ((bits[p >> 3]! >> (p & 7)) & 1) === 1;
      }
      break;
    }
    case arrow.Type.Int: case arrow.Type.Float: {
      if (type.typeId === arrow.Type.Float && (type as arrow.Float).precision === arrow.Precision.HALF) {
        throw new TypeError('float16 columns are not supported');
      }
      // number or bigint elements, depending on the width
      const v = data.values as Float64Array;
      if (bm === null) {
        copierFor(v.constructor)(v, start, out);
        return out;
      }
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        out[i] = ((bm[p >> 3]! >> (p & 7)) & 1) === 0 ? null : v[start + i]!;
      }
      return out;
    }
    case arrow.Type.Date: {
      const v = data.values as Int32Array | BigInt64Array;
      const day = (type as arrow.Date_).unit === arrow.DateUnit.DAY;
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) { out[i] = null; continue; }
        out[i] = new Date(day ? (v[start + i] as number) * MS_PER_DAY : Number(v[start + i]));
      }
      return out;
    }
    case arrow.Type.Timestamp: {
      const v = data.values as BigInt64Array;
      const unit = (type as arrow.Timestamp).unit;
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) { out[i] = null; continue; }
        out[i] = new Date(timestampToMs(v[start + i]!, unit));
      }
      return out;
    }
    case arrow.Type.Utf8: case arrow.Type.LargeUtf8:
      if (count > 0) decodeUtf8Range(data, start, count, out);
      break;
    case arrow.Type.Binary: case arrow.Type.LargeBinary: {
      const off = offsetsOf(data, start, count);
      const bytes = data.values as Uint8Array;
      for (let i = 0; i < count; i++) out[i] = bytes.subarray(off[i]!, off[i + 1]!);
      break;
    }
    case arrow.Type.List: case arrow.Type.LargeList: {
      const off = offsetsOf(data, start, count);
      const c0 = count > 0 ? off[0]! : 0;
      const items = decodeRange(data.children[0]!, c0, count > 0 ? off[count]! - c0 : 0);
      for (let i = 0; i < count; i++) out[i] = items.slice(off[i]! - c0, off[i + 1]! - c0);
      break;
    }
    case arrow.Type.FixedSizeList: {
      const size = (type as arrow.FixedSizeList).listSize;
      const items = decodeRange(data.children[0]!, start * size, count * size);
      for (let i = 0; i < count; i++) out[i] = items.slice(i * size, (i + 1) * size);
      break;
    }
    case arrow.Type.Struct: {
      const fields = (type as arrow.Struct).children;
      const names = fields.map((f) => f.name);
      const cols = zipCols(data.children, start, count);
      return zipper(names, cols)(cols, count, bm, bo);
    }
    case arrow.Type.Dictionary: {
      const dict = dictionaryValues(data);
      const idx = data.values as Int32Array | BigInt64Array;
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) { out[i] = null; continue; }
        out[i] = dict[Number(idx[start + i])] ?? null;
      }
      return out;
    }
    default:
      throw new TypeError(`unsupported Arrow type ${String(type)}`);
  }
  if (bm !== null) {
    for (let i = 0; i < count; i++) {
      const p = bo + i;
      if (((bm[p >> 3]! >> (p & 7)) & 1) === 0) out[i] = null;
    }
  }
  return out;
}

/** Epoch milliseconds of a timestamp value, floored (a Date cannot hold us/ns). */
function timestampToMs(x: bigint, unit: arrow.TimeUnit): number {
  switch (unit) {
    case arrow.TimeUnit.SECOND: return Number(x) * 1000;
    case arrow.TimeUnit.MILLISECOND: return Number(x);
    case arrow.TimeUnit.MICROSECOND: {
      const f = Number(x);
      // Exact while |x| < 2^53 (until year 2255): avoids a BigInt division per value.
      if (f > -9007199254740992 && f < 9007199254740992) return Math.floor(f / 1000);
      return bigFloorDiv(x, 1000n);
    }
    default: return bigFloorDiv(x, 1_000_000n);
  }
}

function bigFloorDiv(x: bigint, d: bigint): number {
  const q = x / d;
  return Number(x < 0n && q * d !== x ? q - 1n : q);
}

/**
 * A column as the row builder reads it: decoded JS values, or (numeric columns) the Arrow typed
 * array itself, read in place, which saves an intermediate array per column.
 */
interface ZipCol {
  values: ArrayLike<unknown>;
  start: number;
  /** Validity bitmap and its bit offset, for typed columns with nulls. */
  bm: Uint8Array | null;
  bo: number;
  typed: boolean;
}

type Zipper = (cols: readonly ZipCol[], n: number, bm: Uint8Array | null, bo: number) => JsValue[];
const zipperCache = new Map<string, Zipper>();

function zipCols(children: readonly arrow.Data[], start: number, count: number): ZipCol[] {
  return children.map((c) => {
    const t = c.type as arrow.DataType;
    if ((t.typeId === arrow.Type.Int || t.typeId === arrow.Type.Float) && (t as arrow.Float).precision !== arrow.Precision.HALF) {
      return { values: c.values as ArrayLike<unknown>, start, bm: nullsOf(c), bo: c.offset + start, typed: true };
    }
    return { values: decodeRange(c, start, count), start: 0, bm: null, bo: 0, typed: false };
  });
}

/**
 * Row builder for a fixed set of keys. A generated object literal gives every row the same hidden
 * class up front, and each column read its own (monomorphic) inline cache: about 2x faster than
 * assigning keys in a loop. Cached per key list and column layout.
 */
function zipper(names: readonly string[], cols: readonly ZipCol[]): Zipper {
  const layout = cols.map((c) => (c.typed ? (c.bm ? 'n' : 't') : 'a')).join('');
  const key = layout + JSON.stringify(names);
  let z = zipperCache.get(key);
  if (z) return z;
  z = (names.length <= 500 ? generatedZipper(names, layout) : null) ?? loopZipper(names);
  if (zipperCache.size >= 256) zipperCache.delete(zipperCache.keys().next().value!);
  zipperCache.set(key, z);
  return z;
}

function generatedZipper(names: readonly string[], layout: string): Zipper | null {
  // Keys are JSON string literals; '__proto__' must be computed or the literal would set the prototype.
  const props = names.map((n, j) => {
    const k = n === '__proto__' ? '["__proto__"]' : JSON.stringify(n);
    const m = layout[j];
    const read = m === 'a' ? `c${j}[i]` : `c${j}[s${j} + i]`;
    return m === 'n' ? `${k}: ((m${j}[(o${j} + i) >> 3] >> ((o${j} + i) & 7)) & 1) === 0 ? null : ${read}` : `${k}: ${read}`;
  }).join(', ');
  const locals = names.map((_, j) => `const c${j} = c[${j}].values, s${j} = c[${j}].start, m${j} = c[${j}].bm, o${j} = c[${j}].bo;`).join('\n');
  const src = `"use strict"; return function zip(c, n, bm, bo) {
    ${locals}
    const out = new Array(n);
    if (bm === null) { for (let i = 0; i < n; i++) out[i] = { ${props} }; return out; }
    for (let i = 0; i < n; i++) {
      const p = bo + i;
      out[i] = ((bm[p >> 3] >> (p & 7)) & 1) === 0 ? null : { ${props} };
    }
    return out; };`;
  try {
    return (new Function(src) as () => Zipper)();
  } catch {
    return null; // code generation disallowed (--disallow-code-generation-from-strings)
  }
}

function loopZipper(names: readonly string[]): Zipper {
  return (cols, n, bm, bo) => {
    const out = new Array<JsValue>(n);
    for (let i = 0; i < n; i++) {
      const p = bo + i;
      if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) { out[i] = null; continue; }
      const o: { [k: string]: JsValue } = {};
      for (let j = 0; j < names.length; j++) {
        const c = cols[j]!;
        const q = c.bo + i;
        const v = (c.bm !== null && ((c.bm[q >> 3]! >> (q & 7)) & 1) === 0 ? null : c.values[c.start + i]) as JsValue;
        const k = names[j]!;
        if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
        else o[k] = v;
      }
      out[i] = o;
    }
    return out;
  };
}

type Copier = (v: ArrayLike<unknown>, start: number, out: JsValue[]) => void;
const copiers = new Map<unknown, Copier>();

/**
 * Typed array -> JS array copy, one compiled loop per array class: a shared loop would see every
 * element kind at one load site and go megamorphic (several times slower) in a long-running process.
 */
function copierFor(ctor: unknown): Copier {
  let f = copiers.get(ctor);
  if (!f) {
    try {
      f = new Function('v', 's', 'out', '"use strict"; for (let i = 0, n = out.length; i < n; i++) out[i] = v[s + i];') as Copier;
    } catch {
      f = (v, s0, out) => { for (let i = 0; i < out.length; i++) out[i] = v[s0 + i] as JsValue; };
    }
    copiers.set(ctor, f);
  }
  return f;
}

/**
 * All values of `data` as JS values (mapping at the top of this file). `type`, when given, must
 * be the logical type of `data` (its kind is checked); decoding follows the physical Arrow layout.
 */
export function dataToValues(data: arrow.Data, type?: DataType): JsValue[] {
  if (type) checkKind(data, type);
  return decodeRange(data, 0, data.length);
}

function checkKind(data: arrow.Data, type: DataType): void {
  let t = data.type as arrow.DataType;
  if (t.typeId === arrow.Type.Dictionary) t = (t as arrow.Dictionary).dictionary;
  let kind: string;
  try { kind = fromArrowType(t).kind; } catch { return; }
  if (kind !== type.kind) throw new TypeError(`data of Arrow type ${String(data.type)} read as ${type}`);
}

/** Rows of a batch as plain objects keyed by column name (column-wise decode, then one generated zip). */
export function batchToRows(batch: arrow.RecordBatch): Record<string, JsValue>[] {
  const n = batch.numRows;
  const cols = zipCols(batch.data.children, 0, n);
  return zipper(batch.schema.fields.map((f) => f.name), cols)(cols, n, null, 0) as Record<string, JsValue>[];
}

/** The value at row `i` of `data` (honours a sliced offset and the validity bitmap). */
export function valueAt(data: arrow.Data, i: number): JsValue {
  if (!Number.isInteger(i) || i < 0 || i >= data.length) throw new RangeError(`index ${i} out of range [0, ${data.length})`);
  if (!isValid(data, i)) return null;
  const type = data.type as arrow.DataType;
  switch (type.typeId) {
    case arrow.Type.Int: case arrow.Type.Float:
      if ((type as arrow.Float).precision !== arrow.Precision.HALF) return (data.values as Float64Array)[i]!;
      break;
    case arrow.Type.Bool: {
      const p = data.offset + i;
      return (((data.values as Uint8Array)[p >> 3]! >> (p & 7)) & 1) === 1;
    }
    case arrow.Type.Utf8: {
      const vo = data.valueOffsets as Int32Array;
      return bufferOf(data.values as Uint8Array).toString('utf8', vo[i]!, vo[i + 1]!);
    }
  }
  return decodeRange(data, i, 1)[0]!;
}

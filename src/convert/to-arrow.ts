// JS values -> Arrow Data: one builder per type, writing the typed arrays of the Data directly.
import * as arrow from 'apache-arrow';
import { toArrowType, type DataType, type DataTypeJSON } from '../datatypes.ts';
import { INT_BITS, typedArrayType } from './infer.ts';
import { describe, isPlainObject, isTypedArray, typeStr, type AnyTypedArray } from './js-value.ts';
import { encodeJoined, encodeLoop, MAX_BYTES } from './utf8-encode.ts';

const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;
const TWO_32 = 2 ** 32;

/** Where a value sits, for error messages: `what` names the column/UDF, rowOf maps nested slots to top rows. */
interface Ctx {
  what: string;
  path: string;
  rowOf: Int32Array | null;
}

function fail(ctx: Ctx, i: number, t: DataTypeJSON, v: unknown, why?: string): never {
  const row = ctx.rowOf ? ctx.rowOf[i]! : i;
  throw new TypeError(`${ctx.what}, row ${row}${ctx.path}: ${why ?? `expected ${typeStr(t)}, got ${describe(v)}`}`);
}

export const EMPTY_BITMAP = new Uint8Array(0);

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
  get bitmap(): Uint8Array {
    return this.bits ?? EMPTY_BITMAP;
  }
}

function mkData(
  type: arrow.DataType,
  length: number,
  valid: Validity | null,
  values?: ArrayBufferView,
  offsets?: Int32Array,
  children: arrow.Data[] = [],
): arrow.Data {
  return new arrow.Data(type, 0, length, valid ? valid.nulls : 0, bufs(offsets, values, valid ? valid.bitmap : EMPTY_BITMAP), children);
}

type DataBuffers = ConstructorParameters<typeof arrow.Data>[4];
/** Buffers in arrow's BufferType order (OFFSET, DATA, VALIDITY); makeData's per-type overloads would copy or re-wrap. */
export function bufs(offsets: Int32Array | undefined, values: ArrayBufferView | undefined, bitmap: Uint8Array): DataBuffers {
  return [offsets, values, bitmap, undefined] as unknown as DataBuffers;
}

/**
 * Arrow Data of `type` from JS values (the mapping in js-value.ts). Values that do not
 * fit throw a TypeError naming `what` (a column or UDF), the row and the value.
 */
export function valuesToData(values: readonly unknown[], type: DataType, what = 'values'): arrow.Data {
  return build(values, values.length, type.json, toArrowType(type.json), { what, path: '', rowOf: null });
}

const INT_RANGE: Record<string, [number, number]> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};
const INT64_MIN = -(2n ** 63n),
  INT64_MAX = 2n ** 63n - 1n,
  UINT64_MAX = 2n ** 64n - 1n;
const MS_PER_DAY = 86_400_000;
const TS_MUL: Record<string, number> = { s: 0.001, ms: 1, us: 1e3, ns: 1e6 };

/** Arrow Data of JSON type `t` (arrow type `at`) from the first `n` values; errors are placed by `ctx`. */
export function build(values: ArrayLike<unknown>, n: number, t: DataTypeJSON, at: arrow.DataType, ctx: Ctx): arrow.Data {
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
        else if (v === false) {
          /* zero bit */
        } else if (v == null) valid.setNull(i);
        else fail(ctx, i, t, v);
      }
      return mkData(at, n, valid, bits);
    }
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint8':
    case 'uint16':
    case 'uint32': {
      const [lo, hi] = INT_RANGE[t.kind]!;
      const blo = BigInt(lo),
        bhi = BigInt(hi);
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
    case 'int64':
    case 'uint64':
      return mkData(at, n, ...build64(values, n, t, ctx));
    case 'float32':
    case 'float64': {
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
    case 'list':
      return buildList(values, n, t, at as arrow.List, ctx);
    case 'fixedSizeList':
      return buildFixedList(values, n, t, at as arrow.FixedSizeList, ctx);
    case 'struct':
      return buildStruct(values, n, t, at as arrow.Struct, ctx);
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
  const lo = signed ? -TWO_63 : 0,
    hi = signed ? TWO_63 : TWO_64;
  const blo = signed ? INT64_MIN : 0n,
    bhi = signed ? INT64_MAX : UINT64_MAX;
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
    if (typeof v === 'string') {
      units += v.length;
      lens[i] = v.length;
    } else if (v == null) valid.setNull(i);
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
  values: ArrayLike<unknown>,
  n: number,
  child: DataTypeJSON,
  at: arrow.DataType,
  total: number,
  startOf: (i: number) => number,
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

function buildFixedList(
  values: ArrayLike<unknown>,
  n: number,
  t: Extract<DataTypeJSON, { kind: 'fixedSizeList' }>,
  at: arrow.FixedSizeList,
  ctx: Ctx,
): arrow.Data {
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
    if (v == null) {
      valid.setNull(i);
      continue;
    }
    if (typeof v !== 'object' || !isPlainObject(v)) fail(ctx, i, t, v);
    for (let j = 0; j < fields.length; j++) {
      const f = fields[j]!;
      const x = Object.hasOwn(v, f.name) ? v[f.name] : null;
      if (x == null && !f.nullable) fail(ctx, i, t, v, `field '${f.name}' is not nullable, got ${describe(x)}`);
      cols[j]![i] = x;
    }
  }
  const children = fields.map((f, j) =>
    build(cols[j]!, n, f.type, at.children[j]!.type as arrow.DataType, { what: ctx.what, path: `${ctx.path}, field '${f.name}'`, rowOf: ctx.rowOf }),
  );
  return mkData(at, n, valid, undefined, undefined, children);
}

// Arrow Data -> JS values: column-wise decoders over the typed arrays, and the row builder (zipper)
// that turns struct children, or a batch's columns, into plain objects.
import { isAscii } from 'node:buffer';
import * as arrow from 'apache-arrow';
import { fromArrowType, type DataType } from '../datatypes.ts';
import type { JsValue } from './js-value.ts';
import { bufferOf } from './utf8-encode.ts';

const MS_PER_DAY = 86_400_000;

/** The validity bitmap when the data has nulls, else null (no bitmap, or nullCount 0). */
function nullsOf(data: arrow.Data): Uint8Array | null {
  const bm = data.nullBitmap as Uint8Array | undefined;
  if (!bm || bm.length === 0) return null;
  return data.nullCount > 0 ? bm : null;
}

/** Whether slot `i` (relative to the data's own, possibly sliced, start) is non-null. */
export function isValid(data: arrow.Data, i: number): boolean {
  if (data.typeId === arrow.Type.Null) return false;
  const bm = nullsOf(data);
  if (bm === null) return true;
  const p = data.offset + i;
  return ((bm[p >> 3]! >> (p & 7)) & 1) === 1;
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
  const b0 = off[0]!,
    b1 = off[count]!;
  const buf = bufferOf(bytes);
  const whole = buf.toString('latin1', b0, b1);
  if (isAscii(bytes.subarray(b0, b1))) {
    for (let i = 0; i < count; i++) out[i] = whole.slice(off[i]! - b0, off[i + 1]! - b0);
    return;
  }
  for (let i = 0; i < count; i++) {
    const s = off[i]!,
      e = off[i + 1]!;
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
    case arrow.Type.Int:
    case arrow.Type.Float: {
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
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) {
          out[i] = null;
          continue;
        }
        out[i] = new Date(day ? (v[start + i] as number) * MS_PER_DAY : Number(v[start + i]));
      }
      return out;
    }
    case arrow.Type.Timestamp: {
      const v = data.values as BigInt64Array;
      const unit = (type as arrow.Timestamp).unit;
      for (let i = 0; i < count; i++) {
        const p = bo + i;
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) {
          out[i] = null;
          continue;
        }
        out[i] = new Date(timestampToMs(v[start + i]!, unit));
      }
      return out;
    }
    case arrow.Type.Utf8:
    case arrow.Type.LargeUtf8:
      if (count > 0) decodeUtf8Range(data, start, count, out);
      break;
    case arrow.Type.Binary:
    case arrow.Type.LargeBinary: {
      const off = offsetsOf(data, start, count);
      const bytes = data.values as Uint8Array;
      for (let i = 0; i < count; i++) out[i] = bytes.subarray(off[i]!, off[i + 1]!);
      break;
    }
    case arrow.Type.List:
    case arrow.Type.LargeList: {
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
        if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) {
          out[i] = null;
          continue;
        }
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
    case arrow.TimeUnit.SECOND:
      return Number(x) * 1000;
    case arrow.TimeUnit.MILLISECOND:
      return Number(x);
    case arrow.TimeUnit.MICROSECOND: {
      const f = Number(x);
      // Exact while |x| < 2^53 (until year 2255): avoids a BigInt division per value.
      if (f > -9007199254740992 && f < 9007199254740992) return Math.floor(f / 1000);
      return bigFloorDiv(x, 1000n);
    }
    default:
      return bigFloorDiv(x, 1_000_000n);
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

export function zipCols(children: readonly arrow.Data[], start: number, count: number): ZipCol[] {
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
export function zipper(names: readonly string[], cols: readonly ZipCol[]): Zipper {
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
  const props = names
    .map((n, j) => {
      const k = n === '__proto__' ? '["__proto__"]' : JSON.stringify(n);
      const m = layout[j];
      const read = m === 'a' ? `c${j}[i]` : `c${j}[s${j} + i]`;
      return m === 'n' ? `${k}: ((m${j}[(o${j} + i) >> 3] >> ((o${j} + i) & 7)) & 1) === 0 ? null : ${read}` : `${k}: ${read}`;
    })
    .join(', ');
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
      if (bm !== null && ((bm[p >> 3]! >> (p & 7)) & 1) === 0) {
        out[i] = null;
        continue;
      }
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
      f = (v, s0, out) => {
        for (let i = 0; i < out.length; i++) out[i] = v[s0 + i] as JsValue;
      };
    }
    copiers.set(ctor, f);
  }
  return f;
}

/**
 * All values of `data` as JS values (the mapping in js-value.ts). `type`, when given, must
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
  try {
    kind = fromArrowType(t).kind;
  } catch {
    return;
  }
  if (kind !== type.kind) throw new TypeError(`data of Arrow type ${String(data.type)} read as ${type}`);
}

/** The value at row `i` of `data` (honours a sliced offset and the validity bitmap). */
export function valueAt(data: arrow.Data, i: number): JsValue {
  if (!Number.isInteger(i) || i < 0 || i >= data.length) throw new RangeError(`index ${i} out of range [0, ${data.length})`);
  if (!isValid(data, i)) return null;
  const type = data.type as arrow.DataType;
  switch (type.typeId) {
    case arrow.Type.Int:
    case arrow.Type.Float:
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

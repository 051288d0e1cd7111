// The kernels' view of values: JS values in the physical slot representation of an Arrow type
// (date as days since epoch, timestamp as raw ticks), for literals, is_in lists, tests and the
// rare per-row slow paths (formatting nested values in a cast to utf8). Never used inside a
// vectorized kernel loop. Rows and UDF arguments use the logical mapping instead (JsValue, valueAt).
import * as arrow from 'apache-arrow';
import { bitmapBytes, getBit, isValid, setBit } from '../kernels/bitmap.ts';
import { arrayCtor, fixedListSize, isPrimitive, mkData, nullTypeData, type TypedArray } from '../kernels/data.ts';
import { formatDate, formatTimestamp, parseDate, parseTimestamp, ticksFromMillis, unitOf } from '../kernels/temporal.ts';
import { utf8Decoder, utf8Encoder } from '../kernels/utf8.ts';

/**
 * A value in an Arrow type's physical slot representation, as `physicalValueAt` reads it back:
 * numbers, bigint (64-bit ints, timestamp ticks), days since epoch (date), string, bytes, arrays,
 * objects. `Date` appears only on the way in (`physicalValuesToData` accepts it for date/timestamp).
 */
export type PhysicalValue = null | boolean | number | bigint | string | Uint8Array | Date | readonly PhysicalValue[] | { readonly [k: string]: PhysicalValue };

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function bad(v: unknown, type: arrow.DataType): never {
  throw new TypeError(`value ${describe(v)} (${v instanceof Date ? 'Date' : Array.isArray(v) ? 'array' : typeof v}) does not fit type ${String(type)}`);
}

function toInteger(v: unknown, type: arrow.DataType): number {
  if (typeof v === 'bigint') {
    const n = Number(v);
    if (BigInt(n) !== v) bad(v, type);
    return n;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(v, type);
  return v;
}

const INT_RANGE: Record<string, [number, number]> = {
  Int8Array: [-128, 127],
  Int16Array: [-32768, 32767],
  Int32Array: [-2147483648, 2147483647],
  Uint8Array: [0, 255],
  Uint16Array: [0, 65535],
  Uint32Array: [0, 4294967295],
};

/** Encodes one non-null JS value into the physical slot representation of a primitive type. */
function primitiveSlot(v: unknown, type: arrow.DataType): number | bigint {
  const ctor = arrayCtor(type);
  switch (type.typeId) {
    case arrow.Type.Float:
      if (typeof v === 'number') return v;
      if (typeof v === 'bigint') return Number(v);
      return bad(v, type);
    case arrow.Type.Int: {
      if (ctor === BigInt64Array || ctor === BigUint64Array) {
        const b = typeof v === 'bigint' ? v : BigInt(toInteger(v, type));
        const lim = ctor === BigInt64Array ? BigInt.asIntN(64, b) : BigInt.asUintN(64, b);
        if (lim !== b) bad(v, type);
        return b;
      }
      const n = toInteger(v, type);
      const [lo, hi] = INT_RANGE[ctor.name]!;
      if (n < lo || n > hi) bad(v, type);
      return n;
    }
    case arrow.Type.Date: {
      let days: number;
      if (v instanceof Date) days = Math.floor(v.getTime() / 86400000);
      else if (typeof v === 'string') days = parseDate(v) ?? bad(v, type);
      else days = toInteger(v, type);
      return ctor === Int32Array ? days : BigInt(days) * 86400000n;
    }
    case arrow.Type.Timestamp: {
      const unit = unitOf(type);
      if (v instanceof Date) return ticksFromMillis(v.getTime(), unit);
      if (typeof v === 'string') return parseTimestamp(v, unit) ?? bad(v, type);
      if (typeof v === 'bigint') return v;
      return BigInt(toInteger(v, type));
    }
    default:
      return bad(v, type);
  }
}

/**
 * Builds a Data of `type` from physical values (null allowed anywhere); date and timestamp columns
 * also take a Date or an ISO string. Throws TypeError on mismatch.
 */
export function physicalValuesToData(values: readonly unknown[], type: arrow.DataType): arrow.Data {
  const n = values.length;
  if (type.typeId === arrow.Type.Null) {
    for (const v of values) if (v !== null && v !== undefined) bad(v, type);
    return nullTypeData(n);
  }
  const validity = new Uint8Array(bitmapBytes(n));
  for (let i = 0; i < n; i++) if (values[i] !== null && values[i] !== undefined) setBit(validity, i);
  switch (type.typeId) {
    case arrow.Type.Bool: {
      const bits = new Uint8Array(bitmapBytes(n));
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) continue;
        if (typeof v !== 'boolean') bad(v, type);
        if (v) setBit(bits, i);
      }
      return mkData(type, n, validity, bits);
    }
    case arrow.Type.Utf8:
    case arrow.Type.Binary: {
      const parts: Uint8Array[] = [];
      const offsets = new Int32Array(n + 1);
      let total = 0;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        let b: Uint8Array = new Uint8Array(0);
        if (v !== null && v !== undefined) {
          if (typeof v === 'string') b = utf8Encoder.encode(v);
          else if (v instanceof Uint8Array && type.typeId === arrow.Type.Binary) b = v;
          else bad(v, type);
        }
        parts.push(b);
        total += b.length;
        offsets[i + 1] = total;
      }
      const bytes = new Uint8Array(total);
      for (let i = 0; i < n; i++) bytes.set(parts[i]!, offsets[i]!);
      return mkData(type, n, validity, bytes, offsets);
    }
    case arrow.Type.List: {
      const childType = type.children[0]!.type;
      const offsets = new Int32Array(n + 1);
      const flat: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v !== null && v !== undefined) {
          if (!Array.isArray(v)) bad(v, type);
          for (const x of v) flat.push(x);
        }
        offsets[i + 1] = flat.length;
      }
      return mkData(type, n, validity, undefined, offsets, [physicalValuesToData(flat, childType)]);
    }
    case arrow.Type.FixedSizeList: {
      const size = fixedListSize(type);
      const flat: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) {
          for (let k = 0; k < size; k++) flat.push(null);
          continue;
        }
        if (!Array.isArray(v) || v.length !== size) bad(v, type);
        for (const x of v) flat.push(x);
      }
      return mkData(type, n, validity, undefined, undefined, [physicalValuesToData(flat, type.children[0]!.type)]);
    }
    case arrow.Type.Struct: {
      const fields = (type as arrow.Struct).children;
      for (const v of values) {
        if (v !== null && v !== undefined && (typeof v !== 'object' || Array.isArray(v) || v instanceof Date || v instanceof Uint8Array)) bad(v, type);
      }
      const children = fields.map((f) =>
        physicalValuesToData(
          values.map((v) => (v === null || v === undefined ? null : ((v as Record<string, unknown>)[f.name] ?? null))),
          f.type,
        ),
      );
      return mkData(type, n, validity, undefined, undefined, children);
    }
    default: {
      if (!isPrimitive(type)) throw new TypeError(`unsupported Arrow type ${String(type)}`);
      const Ctor = arrayCtor(type);
      const out = new Ctor(n) as TypedArray;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) continue;
        (out as unknown as (number | bigint)[])[i] = primitiveSlot(v, type);
      }
      return mkData(type, n, validity, out);
    }
  }
}

/**
 * The value of logical slot i in its physical representation: numbers; bigint for 64-bit ints and timestamps (raw
 * ticks); date as days since epoch; strings; Uint8Array (a copy); arrays; plain objects.
 */
export function physicalValueAt(d: arrow.Data, i: number): PhysicalValue {
  if (!isValid(d, i)) return null;
  const t = d.type;
  switch (t.typeId) {
    case arrow.Type.Bool:
      return getBit(d.values as Uint8Array, d.offset + i);
    case arrow.Type.Utf8: {
      const o = d.valueOffsets as Int32Array;
      return utf8Decoder.decode((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!));
    }
    case arrow.Type.Binary: {
      const o = d.valueOffsets as Int32Array;
      return (d.values as Uint8Array).slice(o[i]!, o[i + 1]!);
    }
    case arrow.Type.List: {
      const o = d.valueOffsets as Int32Array;
      const out: PhysicalValue[] = [];
      for (let k = o[i]!; k < o[i + 1]!; k++) out.push(physicalValueAt(d.children[0]!, k));
      return out;
    }
    case arrow.Type.FixedSizeList: {
      const size = fixedListSize(t);
      const out: PhysicalValue[] = [];
      for (let k = 0; k < size; k++) out.push(physicalValueAt(d.children[0]!, i * size + k));
      return out;
    }
    case arrow.Type.Struct: {
      const out: { [k: string]: PhysicalValue } = {};
      (t as arrow.Struct).children.forEach((f, j) => {
        out[f.name] = physicalValueAt(d.children[j]!, i);
      });
      return out;
    }
    case arrow.Type.Date: {
      const v = (d.values as unknown as ArrayLike<number | bigint>)[i]!;
      return typeof v === 'bigint' ? Number(v / 86400000n) : v;
    }
    default: {
      if (!isPrimitive(t)) throw new TypeError(`unsupported Arrow type ${String(t)}`);
      return (d.values as unknown as ArrayLike<number | bigint>)[i]!;
    }
  }
}

/** All values of a Data (tests, debugging). */
export function physicalValues(d: arrow.Data): PhysicalValue[] {
  const out: PhysicalValue[] = new Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = physicalValueAt(d, i);
  return out;
}

/** Display form of slot i, used by cast-to-utf8 (nested values print as [1, 2], {a: 1, b: "x"}). */
export function formatPhysicalValue(d: arrow.Data, i: number, quoteStrings = false): string | null {
  if (!isValid(d, i)) return null;
  const t = d.type;
  switch (t.typeId) {
    case arrow.Type.Bool:
      return getBit(d.values as Uint8Array, d.offset + i) ? 'true' : 'false';
    case arrow.Type.Utf8: {
      const s = physicalValueAt(d, i) as string;
      return quoteStrings ? JSON.stringify(s) : s;
    }
    case arrow.Type.Binary: {
      const b = physicalValueAt(d, i) as Uint8Array;
      return quoteStrings ? `b'${Buffer.from(b).toString('hex')}'` : utf8Decoder.decode(b);
    }
    case arrow.Type.Date:
      return formatDate(physicalValueAt(d, i) as number);
    case arrow.Type.Timestamp:
      return formatTimestamp(physicalValueAt(d, i) as bigint, unitOf(t), (t as arrow.Timestamp).timezone ?? null);
    case arrow.Type.Float: {
      const v = physicalValueAt(d, i) as number;
      return (t as arrow.Float).precision === arrow.Precision.SINGLE ? formatFloat32(v) : String(v);
    }
    case arrow.Type.List:
    case arrow.Type.FixedSizeList: {
      const child = d.children[0]!;
      let lo: number, hi: number;
      if (t.typeId === arrow.Type.List) {
        const o = d.valueOffsets as Int32Array;
        lo = o[i]!;
        hi = o[i + 1]!;
      } else {
        const size = fixedListSize(t);
        lo = i * size;
        hi = lo + size;
      }
      const parts: string[] = [];
      for (let k = lo; k < hi; k++) parts.push(formatPhysicalValue(child, k, true) ?? 'null');
      return `[${parts.join(', ')}]`;
    }
    case arrow.Type.Struct: {
      const parts = (t as arrow.Struct).children.map((f, j) => `${f.name}: ${formatPhysicalValue(d.children[j]!, i, true) ?? 'null'}`);
      return `{${parts.join(', ')}}`;
    }
    default:
      return String(physicalValueAt(d, i));
  }
}

/** Shortest decimal that reads back as the same float32 (String() would print the float64 expansion). */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v) || (Number.isInteger(v) && Math.abs(v) < 16777216)) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

// CSV column builders: field byte ranges appended into typed arrays, utf8 bytes and validity bitmaps.
import { isUtf8 } from 'node:buffer';
import * as arrow from 'apache-arrow';
import { DataType, type DataTypeJSON, type TimeUnit } from '../../datatypes.ts';
import { QUOTE } from './options.ts';
import { fieldText } from './tokenizer.ts';
import { NANOS_PER, TICKS_PER_SEC, isBoolBytes, parseDateAt, parseFloatBytes, parseIntBytes, parseTimestampBytes } from './parse.ts';

// ---------------------------------------------------------------------------------------------
// Column builders: append a block of fields, then finish a batch's arrow.Data.

export interface Block {
  buf: Buffer;
  fs: Int32Array;
  fe: Int32Array;
  ff: Uint8Array;
  lines: Int32Array;
  stride: number;
  count: number;
}

interface BuildContext {
  file: string;
  column: string;
  nulls: Uint8Array[];
  defaultNulls: boolean;
}

/**
 * Null rule: empty fields are null in non-string columns; unquoted values listed in nullValues are
 * null everywhere; quoting keeps "" and "NA" as strings in string columns.
 */
export function isNullField(
  ctx: { nulls: Uint8Array[]; defaultNulls: boolean },
  buf: Uint8Array,
  s: number,
  e: number,
  quoted: boolean,
  stringy: boolean,
): boolean {
  if (stringy && quoted) return false;
  if (s === e) return ctx.defaultNulls || !stringy || ctx.nulls.some((n) => n.length === 0);
  if (ctx.defaultNulls) return false;
  const len = e - s;
  outer: for (const n of ctx.nulls) {
    if (n.length !== len) continue;
    for (let k = 0; k < len; k++) if (n[k] !== buf[s + k]) continue outer;
    return true;
  }
  return false;
}

function growBytes(a: Uint8Array<ArrayBuffer>, need: number): Uint8Array<ArrayBuffer> {
  if (need <= a.length) return a;
  const b = new Uint8Array(Math.max(need, a.length * 2));
  b.set(a);
  return b;
}

abstract class ColumnBuilder {
  length = 0;
  nullCount = 0;
  protected validity = new Uint8Array(8192);
  constructor(
    protected readonly ctx: BuildContext,
    protected readonly type: DataTypeJSON,
  ) {}

  protected isNullText(buf: Uint8Array, s: number, e: number, quoted: boolean, stringy: boolean): boolean {
    return isNullField(this.ctx, buf, s, e, quoted, stringy);
  }

  protected reserve(n: number): void {
    this.validity = growBytes(this.validity, (n + 7) >> 3);
  }

  protected setValid(i: number, ok: boolean): void {
    if (ok) this.validity[i >> 3]! |= 1 << (i & 7);
    else {
      this.validity[i >> 3]! &= ~(1 << (i & 7));
      this.nullCount++;
    }
  }

  protected fail(block: Block, r: number, s: number, e: number, f: number, what: string): never {
    let text = fieldText(block.buf, s, e, f);
    if (text.length > 60) text = `${text.slice(0, 57)}...`;
    throw new Error(`${this.ctx.file}:${block.lines[r]}: column '${this.ctx.column}': cannot parse ${JSON.stringify(text)} as ${what}`);
  }

  protected takeValidity(n: number): Uint8Array | null {
    if (this.nullCount === 0) return null;
    return this.validity.slice(0, (n + 7) >> 3);
  }

  abstract append(block: Block, slot: number): void;
  abstract finish(type: arrow.DataType): arrow.Data;

  protected reset(): void {
    this.length = 0;
    this.nullCount = 0;
    this.validity.fill(0);
  }
}

type NumArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;
type NumCtor = new (n: number) => NumArray;

const INT_LIMITS: Partial<Record<DataTypeJSON['kind'], [number, number, NumCtor]>> = {
  int8: [-128, 127, Int8Array],
  int16: [-32768, 32767, Int16Array],
  int32: [-2147483648, 2147483647, Int32Array],
  uint8: [0, 255, Uint8Array],
  uint16: [0, 65535, Uint16Array],
  uint32: [0, 4294967295, Uint32Array],
};

/** int8..uint32, float32/64 and date: one JS number per value. */
class NumberBuilder extends ColumnBuilder {
  private values: NumArray;
  private readonly ctor: NumCtor;
  private readonly parse: (buf: Uint8Array, s: number, e: number) => number | undefined;
  constructor(ctx: BuildContext, type: DataTypeJSON) {
    super(ctx, type);
    const k = type.kind;
    const lim = INT_LIMITS[k];
    if (lim) {
      const [lo, hi] = lim;
      this.ctor = lim[2];
      this.parse = (buf, s, e) => {
        const v = parseIntBytes(buf, s, e);
        return typeof v === 'number' && v >= lo && v <= hi ? v : undefined;
      };
    } else if (k === 'float32' || k === 'float64') {
      this.ctor = k === 'float32' ? Float32Array : Float64Array;
      this.parse = parseFloatBytes;
    } else if (k === 'date') {
      this.ctor = Int32Array;
      this.parse = (buf, s, e) => {
        if (e - s === 10) return parseDateAt(buf, s);
        const ts = parseTimestampBytes(buf, s, e); // a midnight timestamp is a date too
        return ts && ts.secs % 86400 === 0 && ts.nanos === 0 ? ts.secs / 86400 : undefined;
      };
    } else {
      throw new TypeError(`no number builder for ${k}`);
    }
    this.values = new this.ctor(8192);
  }

  append(b: Block, slot: number): void {
    const n = this.length + b.count;
    if (n > this.values.length) {
      const v = new this.ctor(Math.max(n, this.values.length * 2));
      v.set(this.values.subarray(0, this.length));
      this.values = v;
    }
    this.reserve(n);
    const { buf, fs, fe, ff, stride } = b;
    const values = this.values;
    let i = this.length;
    for (let r = 0; r < b.count; r++, i++) {
      const k = r * stride + slot;
      const s = fs[k]!;
      const e = fe[k]!;
      if (s === e || this.isNullText(buf, s, e, (ff[k]! & 1) === 1, false)) {
        this.setValid(i, false);
        values[i] = 0;
        continue;
      }
      const v = this.parse(buf, s, e);
      if (v === undefined) this.fail(b, r, s, e, ff[k]!, this.type.kind);
      values[i] = v;
      this.validity[i >> 3]! |= 1 << (i & 7);
    }
    this.length = n;
  }

  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    const data = new arrow.Data(type, 0, n, this.nullCount, [undefined, this.values.slice(0, n), this.takeValidity(n) ?? EMPTY] as unknown as DataBuffers);
    this.reset();
    return data;
  }
}

type DataBuffers = ConstructorParameters<typeof arrow.Data>[4];
const EMPTY = new Uint8Array(0);

/** int64 / uint64 / timestamp: 64-bit values written as two 32-bit halves (no BigInt per value). */
class Int64Builder extends ColumnBuilder {
  private words = new Int32Array(16384);
  private readonly unit: TimeUnit | null;
  private readonly unsigned: boolean;
  constructor(ctx: BuildContext, type: DataTypeJSON) {
    super(ctx, type);
    this.unit = type.kind === 'timestamp' ? type.unit : null;
    this.unsigned = type.kind === 'uint64';
  }

  append(b: Block, slot: number): void {
    const n = this.length + b.count;
    if (2 * n > this.words.length) {
      const w = new Int32Array(Math.max(2 * n, this.words.length * 2));
      w.set(this.words.subarray(0, 2 * this.length));
      this.words = w;
    }
    this.reserve(n);
    const { buf, fs, fe, ff, stride } = b;
    const words = this.words;
    const unit = this.unit;
    let i = this.length;
    for (let r = 0; r < b.count; r++, i++) {
      const k = r * stride + slot;
      const s = fs[k]!;
      const e = fe[k]!;
      if (s === e || this.isNullText(buf, s, e, (ff[k]! & 1) === 1, false)) {
        this.setValid(i, false);
        words[2 * i] = 0;
        words[2 * i + 1] = 0;
        continue;
      }
      let v: number | bigint | undefined;
      if (unit) {
        const ts = parseTimestampBytes(buf, s, e);
        if (ts) {
          if (unit !== 'ns' && Math.abs(ts.secs) < 9e9) {
            v = ts.secs * TICKS_PER_SEC[unit] + Math.floor(ts.nanos / NANOS_PER[unit]);
          } else {
            v = BigInt(ts.secs) * BigInt(TICKS_PER_SEC[unit]) + BigInt(Math.floor(ts.nanos / NANOS_PER[unit]));
          }
        }
      } else {
        v = parseIntBytes(buf, s, e);
        if (typeof v === 'bigint') {
          const ok = this.unsigned ? v >= 0n && v < 1n << 64n : v >= -(1n << 63n) && v < 1n << 63n;
          if (!ok) v = undefined;
        } else if (this.unsigned && v !== undefined && v < 0) {
          v = undefined;
        }
      }
      if (v === undefined) this.fail(b, r, s, e, ff[k]!, unit ? `timestamp[${unit}]` : this.type.kind);
      if (typeof v === 'number') {
        const hi = Math.floor(v / 4294967296);
        words[2 * i] = (v - hi * 4294967296) | 0;
        words[2 * i + 1] = hi;
      } else {
        const u = BigInt.asUintN(64, v);
        words[2 * i] = Number(u & 0xffffffffn) | 0;
        words[2 * i + 1] = Number(u >> 32n) | 0;
      }
      this.validity[i >> 3]! |= 1 << (i & 7);
    }
    this.length = n;
  }

  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    const buf = this.words.slice(0, 2 * n).buffer;
    const values = this.unsigned ? new BigUint64Array(buf) : new BigInt64Array(buf);
    const data = new arrow.Data(type, 0, n, this.nullCount, [undefined, values, this.takeValidity(n) ?? EMPTY] as unknown as DataBuffers);
    this.reset();
    return data;
  }
}

class BoolBuilder extends ColumnBuilder {
  private bits = new Uint8Array(8192);
  append(b: Block, slot: number): void {
    const n = this.length + b.count;
    this.reserve(n);
    this.bits = growBytes(this.bits, (n + 7) >> 3);
    const { buf, fs, fe, ff, stride } = b;
    let i = this.length;
    for (let r = 0; r < b.count; r++, i++) {
      const k = r * stride + slot;
      const s = fs[k]!;
      const e = fe[k]!;
      if (s === e || this.isNullText(buf, s, e, (ff[k]! & 1) === 1, false)) {
        this.setValid(i, false);
        continue;
      }
      let v = isBoolBytes(buf, s, e);
      if (v === undefined && e - s === 1) v = buf[s] === 0x31 ? true : buf[s] === 0x30 ? false : undefined;
      if (v === undefined) this.fail(b, r, s, e, ff[k]!, 'bool');
      if (v) this.bits[i >> 3]! |= 1 << (i & 7);
      this.validity[i >> 3]! |= 1 << (i & 7);
    }
    this.length = n;
  }
  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    const data = new arrow.Data(type, 0, n, this.nullCount, [
      undefined,
      this.bits.slice(0, (n + 7) >> 3),
      this.takeValidity(n) ?? EMPTY,
    ] as unknown as DataBuffers);
    this.bits.fill(0);
    this.reset();
    return data;
  }
}

/** utf8 / binary: field bytes copied as they are (doubled quotes collapsed). */
class BytesBuilder extends ColumnBuilder {
  private offsets = new Int32Array(8193);
  private bytes = new Uint8Array(1 << 16);
  private used = 0;
  /** Binary fields are base64 text (as writeCsvFile writes them): decode in place (never longer). */
  private decodeBase64(n: number): void {
    const o = this.offsets;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const text = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + o[i]!, o[i + 1]! - o[i]!).toString('latin1');
      const raw = Buffer.from(text, 'base64');
      o[i] = w;
      this.bytes.set(raw, w);
      w += raw.length;
    }
    o[n] = w;
    this.used = w;
  }
  append(b: Block, slot: number): void {
    const n = this.length + b.count;
    if (n + 1 > this.offsets.length) {
      const o = new Int32Array(Math.max(n + 1, this.offsets.length * 2));
      o.set(this.offsets.subarray(0, this.length + 1));
      this.offsets = o;
    }
    this.reserve(n);
    const { buf, fs, fe, ff, stride } = b;
    const utf8 = this.type.kind === 'utf8';
    const blockStart = this.used;
    let i = this.length;
    let used = this.used;
    let bytes = this.bytes;
    const offsets = this.offsets;
    for (let r = 0; r < b.count; r++, i++) {
      const k = r * stride + slot;
      const s = fs[k]!;
      const e = fe[k]!;
      const f = ff[k]!;
      if (this.isNullText(buf, s, e, (f & 1) === 1, true)) {
        this.setValid(i, false);
        offsets[i + 1] = used;
        continue;
      }
      const len = e - s;
      if (used + len > bytes.length) {
        this.bytes = bytes = growBytes(bytes, used + len);
      }
      if (f & 2) {
        for (let p = s; p < e; p++) {
          const c = buf[p]!;
          bytes[used++] = c;
          if (c === QUOTE) p++; // skip the second quote of a doubled pair
        }
      } else if (len < 256) {
        for (let p = s; p < e; p++) bytes[used++] = buf[p]!; // cheaper than a native call for short values
      } else {
        buf.copy(bytes, used, s, e); // native copy, no per-field view object
        used += len;
      }
      offsets[i + 1] = used;
      this.validity[i >> 3]! |= 1 << (i & 7);
    }
    if (utf8 && used > blockStart && !isUtf8(bytes.subarray(blockStart, used))) {
      for (let r = 0, j = this.length; r < b.count; r++, j++) {
        if (!isUtf8(bytes.subarray(offsets[j]!, offsets[j + 1]!))) {
          const k = r * stride + slot;
          throw new Error(
            `${this.ctx.file}:${b.lines[r]}: column '${this.ctx.column}': invalid UTF-8 in ${JSON.stringify(fieldText(buf, fs[k]!, fe[k]!, ff[k]!))}`,
          );
        }
      }
    }
    this.used = used;
    this.length = n;
  }
  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    if (this.type.kind === 'binary') this.decodeBase64(n);
    const data = new arrow.Data(type, 0, n, this.nullCount, [
      this.offsets.slice(0, n + 1),
      this.bytes.slice(0, this.used),
      this.takeValidity(n) ?? EMPTY,
    ] as unknown as DataBuffers);
    this.used = 0;
    this.offsets[0] = 0;
    this.reset();
    return data;
  }
}

class NullBuilder extends ColumnBuilder {
  append(b: Block, slot: number): void {
    for (let r = 0; r < b.count; r++) {
      const k = r * b.stride + slot;
      if (!this.isNullText(b.buf, b.fs[k]!, b.fe[k]!, (b.ff[k]! & 1) === 1, false)) this.fail(b, r, b.fs[k]!, b.fe[k]!, b.ff[k]!, 'null');
    }
    this.length += b.count;
  }
  finish(type: arrow.DataType): arrow.Data {
    const data = new arrow.Data(type, 0, this.length, this.length);
    this.length = 0;
    return data;
  }
}

export function makeBuilder(ctx: BuildContext, type: DataTypeJSON): ColumnBuilder {
  switch (type.kind) {
    case 'null':
      return new NullBuilder(ctx, type);
    case 'bool':
      return new BoolBuilder(ctx, type);
    case 'int64':
    case 'uint64':
    case 'timestamp':
      return new Int64Builder(ctx, type);
    case 'utf8':
    case 'binary':
      return new BytesBuilder(ctx, type);
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint8':
    case 'uint16':
    case 'uint32':
    case 'float32':
    case 'float64':
    case 'date':
      return new NumberBuilder(ctx, type);
    default:
      throw new TypeError(`column '${ctx.column}' of ${ctx.file}: ${DataType.fromJSON(type)} columns cannot be read from CSV`);
  }
}

// CSV I/O. Reading tokenizes bytes directly (RFC 4180: quotes, doubled quotes, CRLF/LF) and
// converts field byte ranges column by column into Arrow buffers (typed arrays, utf8 bytes copied
// as-is, validity bitmaps), never materializing a JS string per field except where a float needs
// the slow parsing path. Writing formats Arrow buffers straight into a reused byte buffer.
import { civilFromDays, daysFromCivil } from '../kernels/temporal.ts';
import * as fs from 'node:fs';
import { isUtf8 } from 'node:buffer';
import * as arrow from 'apache-arrow';
import { ColumnNotFoundError, DataType, Field, Schema, type DataTypeJSON, type SchemaJSON, type TimeUnit } from '../datatypes.ts';
import { batchSegments, statFile } from './paths.ts';
import {
  isLocalUri, statObjectSync, noteObjects, objectHint, openObjectWriter, readRangeSync, openObjectReader,
} from './store/index.ts';

export interface CsvOptions {
  /** Default ',' (tab for *.tsv files). */
  delimiter?: string;
  header?: boolean;
  /** Unquoted field values read as null (default ['']). Empty fields are null for non-string columns. */
  nullValues?: string[];
  /**
   * Names and types of the columns to read: a Schema, or `{ name: DataType }`. With a header, fields
   * are matched to header names (order free; header columns not in the schema are not read). A schema
   * whose names are none of the header's, with one field per column, renames the columns by position,
   * as it does without a header.
   */
  schema?: Schema;
  inferRows?: number;
  batchSize?: number;
  columns?: readonly string[];
}

/** A CSV schema option: a Schema, or an object mapping column names to DataTypes (in file order). */
export type CsvSchema = Schema | Readonly<Record<string, DataType>>;

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'an unknown class'}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * The `schema` option as a Schema: a Schema (also one from another copy of this package), or a plain
 * object `{ id: DataType.int64(), ... }` whose fields are nullable. Anything else is a TypeError that
 * says what is expected.
 */
export function csvSchemaOption(schema: unknown, where: string): Schema | undefined {
  if (schema === undefined) return undefined;
  if (schema instanceof Schema) return schema;
  const expected = `${where}: option 'schema' must be a Schema or an object mapping column names to DataTypes (e.g. { id: DataType.int64(), amount: DataType.float64() })`;
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new TypeError(`${expected}, got ${describeValue(schema)}`);
  const o = schema as { fields?: unknown; toJSON?: unknown };
  if (Array.isArray(o.fields) && typeof o.toJSON === 'function') return Schema.fromJSON((o.toJSON as () => SchemaJSON)());
  const proto: unknown = Object.getPrototypeOf(schema);
  if (proto !== Object.prototype && proto !== null) throw new TypeError(`${expected}, got ${describeValue(schema)}`);
  const entries = Object.entries(schema as Record<string, unknown>);
  if (entries.length === 0) throw new TypeError(`${expected}, got an empty object`);
  return new Schema(entries.map(([name, t]) => {
    if (t instanceof DataType) return new Field(name, t, true);
    // A DataType from another copy of this package carries the same JSON.
    const json = (t as { json?: { kind?: unknown } } | null)?.json;
    if (t && typeof t === 'object' && json && typeof json.kind === 'string') return new Field(name, new DataType(json as DataTypeJSON), true);
    throw new TypeError(`${expected}; column '${name}' is ${describeValue(t)}, not a DataType`);
  }));
}

export interface WriteCsvOptions { delimiter?: string; header?: boolean; schema?: Schema }

const DEFAULT_BATCH_SIZE = 65536;
const DEFAULT_INFER_ROWS = 1000;
const CHUNK = 1 << 20;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;

// ---------------------------------------------------------------------------------------------
// Options

interface Resolved { delim: number; header: boolean; nulls: Uint8Array[]; defaultNulls: boolean; inferRows: number; batchSize: number }

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function resolveOptions(opts: CsvOptions, file: string): Resolved {
  const d = opts.delimiter ?? (file.toLowerCase().endsWith('.tsv') ? '\t' : ',');
  if (d.length !== 1 || d.charCodeAt(0) > 127 || d === '"' || d === '\n' || d === '\r') {
    throw new RangeError(`CSV delimiter must be a single ASCII character other than a quote or newline, got ${JSON.stringify(d)}`);
  }
  const nullValues = opts.nullValues ?? [''];
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  return {
    delim: d.charCodeAt(0),
    header: opts.header ?? true,
    nulls: nullValues.map((v) => encoder.encode(v)),
    defaultNulls: nullValues.length === 1 && nullValues[0] === '',
    inferRows: opts.inferRows ?? DEFAULT_INFER_ROWS,
    batchSize,
  };
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

class CsvSyntaxError extends Error {}

/**
 * Splits records out of a byte buffer. One record at a time: field bounds land in fs/fe/ff
 * (flags: 1 quoted, 2 holds doubled quotes). A record cut by the end of the buffer is reported
 * as incomplete (-1) unless the buffer ends the file.
 */
class Tokenizer {
  fs: Int32Array;
  fe: Int32Array;
  ff: Uint8Array;
  nf = 0;
  /** Line number where the last parsed record started, and the next line to read. */
  recLine = 1;
  line = 1;
  // Next delimiter / LF / CR at or after the scan position (Infinity: none in the buffer). Found
  // with Buffer.indexOf (memchr), about 1 GB/s against ~0.3 GB/s for a byte loop in JS.
  private scanBuf: Buffer | null = null;
  private scanEnd = -1;
  private scanPos = 0;
  private nD = -1;
  private nLF = -1;
  private nCR = -1;
  constructor(readonly delim: number, cap: number) {
    this.fs = new Int32Array(cap);
    this.fe = new Int32Array(cap);
    this.ff = new Uint8Array(cap);
  }

  /**
   * In a one-column file a blank line is a record (one empty field, i.e. a null): that is how a
   * null in such a file is written, so skipping it would drop rows.
   */
  blankLinesAreRecords = false;

  /** Where field k of the current record is stored (fs/fe/ff[base + k]); fields past `limit` are only counted. */
  base = 0;
  limit = Infinity;

  private push(s: number, e: number, f: number): void {
    const k = this.nf++;
    if (k >= this.limit) return;
    const i = this.base + k;
    if (i >= this.fs.length) {
      const grow = <T extends Int32Array | Uint8Array>(a: T): T => { const b = new (a.constructor as new (n: number) => T)(a.length * 2); b.set(a); return b; };
      this.fs = grow(this.fs); this.fe = grow(this.fe); this.ff = grow(this.ff);
    }
    this.fs[i] = s; this.fe[i] = e; this.ff[i] = f;
  }

  /** A cut record: the cached positions may lie past where the next call restarts. */
  private incomplete(): number {
    this.scanBuf = null;
    return -1;
  }

  /** Forget cached search positions: call whenever the buffer's contents move or change. */
  resetScan(): void {
    this.scanBuf = null;
  }

  /** Parse one record at pos (skipping blank lines). Returns the position after it, or -1 if incomplete. nf = 0 at EOF. */
  record(buf: Buffer, pos: number, end: number, final: boolean): number {
    const d = this.delim;
    // Cached positions hold only for forward scans over unchanged bytes.
    if (this.scanBuf !== buf || this.scanEnd !== end || pos < this.scanPos) {
      this.scanBuf = buf;
      this.scanEnd = end;
      this.scanPos = pos;
      this.nD = this.nLF = this.nCR = -1;
    }
    let line = this.line;
    // blank lines
    while (pos < end && !this.blankLinesAreRecords) {
      const c = buf[pos]!;
      if (c === LF) { pos++; line++; continue; }
      if (c === CR) {
        if (pos + 1 >= end && !final) return this.incomplete();
        pos += pos + 1 < end && buf[pos + 1] === LF ? 2 : 1;
        line++;
        continue;
      }
      break;
    }
    this.nf = 0;
    this.recLine = line;
    if (pos >= end) {
      if (!final) return this.incomplete();
      this.line = line;
      return pos;
    }
    for (;;) {
      if (pos < end && buf[pos] === QUOTE) {
        const s = pos + 1;
        let p = s;
        let flags = 1;
        let e: number;
        for (;;) {
          const q = buf.indexOf(QUOTE, p);
          if (q < 0 || q >= end) {
            if (!final) return this.incomplete();
            throw new CsvSyntaxError(`unterminated quoted field starting at line ${line}`);
          }
          if (q + 1 < end && buf[q + 1] === QUOTE) { flags = 3; p = q + 2; continue; }
          if (q + 1 >= end && !final) return this.incomplete(); // cannot tell a closing quote from a doubled one yet
          e = q;
          pos = q + 1;
          break;
        }
        for (let i = s; i < e; i++) if (buf[i] === LF) line++;
        if (pos < end) {
          const c = buf[pos]!;
          if (c !== d && c !== LF && c !== CR) throw new CsvSyntaxError(`unexpected character after closing quote at line ${line}`);
        }
        this.push(s, e, flags);
      } else {
        const s = pos;
        if (this.nD < pos) { const i = buf.indexOf(d, pos); this.nD = i < 0 ? Infinity : i; }
        if (this.nLF < pos) { const i = buf.indexOf(LF, pos); this.nLF = i < 0 ? Infinity : i; }
        if (this.nCR < pos) { const i = buf.indexOf(CR, pos); this.nCR = i < 0 ? Infinity : i; }
        const stop = Math.min(this.nD, this.nLF, this.nCR);
        if (stop >= end) {
          if (!final) return this.incomplete();
          pos = end;
        } else {
          pos = stop;
        }
        this.push(s, pos, 0);
      }
      if (pos >= end) break; // final record without newline
      const c = buf[pos]!;
      if (c === d) {
        pos++;
        if (pos >= end) {
          if (!final) return this.incomplete();
          this.push(pos, pos, 0); // trailing delimiter at EOF: one more empty field
          break;
        }
        continue;
      }
      if (c === CR) {
        if (pos + 1 >= end && !final) return this.incomplete();
        pos += pos + 1 < end && buf[pos + 1] === LF ? 2 : 1;
      } else {
        pos++;
      }
      line++;
      break;
    }
    this.line = line;
    this.scanPos = pos;
    return pos;
  }
}

/** Text of a field (unquoted, doubled quotes collapsed). */
function fieldText(buf: Uint8Array, s: number, e: number, f: number): string {
  const t = decoder.decode(buf.subarray(s, e));
  return f & 2 ? t.replaceAll('""', '"') : t;
}

// ---------------------------------------------------------------------------------------------
// Value parsers on bytes

const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** Integer field: a number when |v| <= 2^53-1, a bigint beyond, undefined if not an integer. */
function parseIntBytes(buf: Uint8Array, s: number, e: number): number | bigint | undefined {
  let i = s;
  let neg = false;
  if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) { neg = buf[i] === 0x2d; i++; }
  if (i >= e) return undefined;
  if (e - i <= 15) {
    let v = 0;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) return undefined;
      v = v * 10 + c;
    }
    return neg ? -v : v;
  }
  for (let k = i; k < e; k++) { const c = buf[k]! - 48; if (c < 0 || c > 9) return undefined; }
  const big = BigInt(decoder.decode(buf.subarray(i, e)));
  const v = neg ? -big : big;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function lowerAscii(buf: Uint8Array, s: number, e: number): string {
  let out = '';
  for (let i = s; i < e && i - s < 16; i++) out += String.fromCharCode(buf[i]! | 0x20);
  return out;
}

/** Float field (decimal, exponent, nan/inf/infinity); undefined if it is not one. */
function parseFloatBytes(buf: Uint8Array, s: number, e: number): number | undefined {
  let i = s;
  let neg = false;
  if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) { neg = buf[i] === 0x2d; i++; }
  if (i >= e) return undefined;
  let m = 0;
  let exact = true;
  let digits = 0;
  let frac = 0;
  for (; i < e; i++) {
    const c = buf[i]! - 48;
    if (c < 0 || c > 9) break;
    // m * 10 + c must stay exact (≤ 2^53 - 1), or the fast path would round twice.
    if (m > (Number.MAX_SAFE_INTEGER - c) / 10) exact = false; else m = m * 10 + c;
    digits++;
  }
  if (i < e && buf[i] === 0x2e) {
    i++;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) break;
      if (m > (Number.MAX_SAFE_INTEGER - c) / 10) exact = false; else { m = m * 10 + c; frac++; }
      digits++;
    }
  }
  if (digits === 0) {
    const w = lowerAscii(buf, i, e);
    if (i + w.length !== e) return undefined;
    if (w === 'nan') return NaN;
    if (w === 'inf' || w === 'infinity') return neg ? -Infinity : Infinity;
    return undefined;
  }
  let exp = 0;
  if (i < e && (buf[i] === 0x65 || buf[i] === 0x45)) {
    i++;
    let eneg = false;
    if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) { eneg = buf[i] === 0x2d; i++; }
    const es = i;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) return undefined;
      if (exp < 100000) exp = exp * 10 + c;
    }
    if (i === es) return undefined;
    if (eneg) exp = -exp;
  }
  if (i !== e) return undefined;
  // Clinger's fast path: an exact mantissa and an exact power of ten, one correctly rounded op.
  const p = exp - frac;
  if (exact && p >= -22 && p <= 22) {
    const v = p < 0 ? m / POW10[-p]! : m * POW10[p]!;
    return neg ? -v : v;
  }
  return Number(latin1(buf, s, e));
}

/** ASCII/latin1 text of bytes (Buffer's native slice when available: no intermediate view). */
function latin1(buf: Uint8Array, s: number, e: number): string {
  return Buffer.isBuffer(buf) ? buf.toString('latin1', s, e) : String.fromCharCode(...buf.subarray(s, e));
}

function isBoolBytes(buf: Uint8Array, s: number, e: number): boolean | undefined {
  const n = e - s;
  if (n === 4 || n === 5) {
    const w = lowerAscii(buf, s, e);
    if (w === 'true') return true;
    if (w === 'false') return false;
  }
  return undefined;
}

function digit2(buf: Uint8Array, i: number): number {
  const a = buf[i]! - 48;
  const b = buf[i + 1]! - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** YYYY-MM-DD at [s, s+10) -> days, or undefined. */
function parseDateAt(buf: Uint8Array, s: number): number | undefined {
  const y1 = digit2(buf, s);
  const y2 = digit2(buf, s + 2);
  if (y1 < 0 || y2 < 0 || buf[s + 4] !== 0x2d || buf[s + 7] !== 0x2d) return undefined;
  const m = digit2(buf, s + 5);
  const d = digit2(buf, s + 8);
  const y = y1 * 100 + y2;
  if (m < 1 || m > 12 || d < 1 || d > MONTH_DAYS[m - 1]!) return undefined;
  if (m === 2 && d === 29 && !(y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0))) return undefined;
  return daysFromCivil(y, m, d);
}

function parseDateBytes(buf: Uint8Array, s: number, e: number): number | undefined {
  return e - s === 10 ? parseDateAt(buf, s) : undefined;
}

interface ParsedTs { secs: number; nanos: number; hasTz: boolean; fracDigits: number }
const tsScratch: ParsedTs = { secs: 0, nanos: 0, hasTz: false, fracDigits: 0 };

/** ISO-8601 date[T| ]HH:MM[:SS[.f{1,9}]][Z|±HH[:MM]] (or a bare date) into tsScratch. */
function parseTimestampBytes(buf: Uint8Array, s: number, e: number): ParsedTs | undefined {
  if (e - s < 10) return undefined;
  const days = parseDateAt(buf, s);
  if (days === undefined) return undefined;
  let secs = days * 86400;
  let nanos = 0;
  let fracDigits = 0;
  let hasTz = false;
  let i = s + 10;
  if (i < e) {
    const sep = buf[i];
    if ((sep !== 0x54 && sep !== 0x74 && sep !== 0x20) || e - i < 6) return undefined;
    const hh = digit2(buf, i + 1);
    const mm = digit2(buf, i + 4);
    if (hh < 0 || hh > 23 || buf[i + 3] !== 0x3a || mm < 0 || mm > 59) return undefined;
    secs += hh * 3600 + mm * 60;
    i += 6;
    if (i < e && buf[i] === 0x3a) {
      const ss = digit2(buf, i + 1);
      if (ss < 0 || ss > 60 || i + 3 > e) return undefined;
      secs += ss;
      i += 3;
      if (i < e && (buf[i] === 0x2e || buf[i] === 0x2c)) {
        i++;
        const fs0 = i;
        while (i < e && buf[i]! >= 48 && buf[i]! <= 57) {
          if (i - fs0 < 9) nanos = nanos * 10 + (buf[i]! - 48);
          i++;
        }
        fracDigits = i - fs0;
        if (fracDigits === 0) return undefined;
        if (fracDigits < 9) nanos *= POW10[9 - fracDigits]!;
      }
    }
    if (i < e) {
      const c = buf[i];
      if (c === 0x5a || c === 0x7a) { hasTz = true; i++; }
      else if (c === 0x2b || c === 0x2d) {
        const oh = digit2(buf, i + 1);
        if (oh < 0 || oh > 23 || i + 3 > e) return undefined;
        let om = 0;
        i += 3;
        if (i < e && buf[i] === 0x3a) i++;
        if (i < e) {
          om = digit2(buf, i);
          if (om < 0 || om > 59 || i + 2 > e) return undefined;
          i += 2;
        }
        const off = (oh * 3600 + om * 60) * (c === 0x2d ? -1 : 1);
        secs -= off;
        hasTz = true;
      }
    }
    if (i !== e) return undefined;
  }
  tsScratch.secs = secs;
  tsScratch.nanos = nanos;
  tsScratch.hasTz = hasTz;
  tsScratch.fracDigits = fracDigits;
  return tsScratch;
}

const NANOS_PER: Record<TimeUnit, number> = { s: 1e9, ms: 1e6, us: 1e3, ns: 1 };
const TICKS_PER_SEC: Record<TimeUnit, number> = { s: 1, ms: 1e3, us: 1e6, ns: 1e9 };

// ---------------------------------------------------------------------------------------------
// Column builders: append a block of fields, then finish a batch's arrow.Data.

interface Block {
  buf: Buffer;
  fs: Int32Array;
  fe: Int32Array;
  ff: Uint8Array;
  lines: Int32Array;
  stride: number;
  count: number;
}

interface BuildContext { file: string; column: string; nulls: Uint8Array[]; defaultNulls: boolean }

/**
 * Null rule: empty fields are null in non-string columns; unquoted values listed in nullValues are
 * null everywhere; quoting keeps "" and "NA" as strings in string columns.
 */
function isNullField(ctx: { nulls: Uint8Array[]; defaultNulls: boolean }, buf: Uint8Array, s: number, e: number, quoted: boolean, stringy: boolean): boolean {
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
  constructor(protected readonly ctx: BuildContext, protected readonly type: DataTypeJSON) {}

  protected isNullText(buf: Uint8Array, s: number, e: number, quoted: boolean, stringy: boolean): boolean {
    return isNullField(this.ctx, buf, s, e, quoted, stringy);
  }

  protected reserve(n: number): void {
    this.validity = growBytes(this.validity, (n + 7) >> 3);
  }

  protected setValid(i: number, ok: boolean): void {
    if (ok) this.validity[i >> 3]! |= 1 << (i & 7);
    else { this.validity[i >> 3]! &= ~(1 << (i & 7)); this.nullCount++; }
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
  int8: [-128, 127, Int8Array], int16: [-32768, 32767, Int16Array], int32: [-2147483648, 2147483647, Int32Array],
  uint8: [0, 255, Uint8Array], uint16: [0, 65535, Uint16Array], uint32: [0, 4294967295, Uint32Array],
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
      if (s === e || this.isNullText(buf, s, e, (ff[k]! & 1) === 1, false)) { this.setValid(i, false); values[i] = 0; continue; }
      const v = this.parse(buf, s, e);
      if (v === undefined) this.fail(b, r, s, e, ff[k]!, this.type.kind);
      values[i] = v;
      this.validity[i >> 3]! |= 1 << (i & 7);
    }
    this.length = n;
  }

  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    const data = new arrow.Data(type, 0, n, this.nullCount,
      [undefined, this.values.slice(0, n), this.takeValidity(n) ?? EMPTY] as unknown as DataBuffers);
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
      if (s === e || this.isNullText(buf, s, e, (ff[k]! & 1) === 1, false)) { this.setValid(i, false); continue; }
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
    const data = new arrow.Data(type, 0, n, this.nullCount,
      [undefined, this.bits.slice(0, (n + 7) >> 3), this.takeValidity(n) ?? EMPTY] as unknown as DataBuffers);
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
      if (used + len > bytes.length) { this.bytes = bytes = growBytes(bytes, used + len); }
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
          throw new Error(`${this.ctx.file}:${b.lines[r]}: column '${this.ctx.column}': invalid UTF-8 in ${JSON.stringify(fieldText(buf, fs[k]!, fe[k]!, ff[k]!))}`);
        }
      }
    }
    this.used = used;
    this.length = n;
  }
  finish(type: arrow.DataType): arrow.Data {
    const n = this.length;
    if (this.type.kind === 'binary') this.decodeBase64(n);
    const data = new arrow.Data(type, 0, n, this.nullCount,
      [this.offsets.slice(0, n + 1), this.bytes.slice(0, this.used), this.takeValidity(n) ?? EMPTY] as unknown as DataBuffers);
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

function makeBuilder(ctx: BuildContext, type: DataTypeJSON): ColumnBuilder {
  switch (type.kind) {
    case 'null': return new NullBuilder(ctx, type);
    case 'bool': return new BoolBuilder(ctx, type);
    case 'int64': case 'uint64': case 'timestamp': return new Int64Builder(ctx, type);
    case 'utf8': case 'binary': return new BytesBuilder(ctx, type);
    case 'int8': case 'int16': case 'int32': case 'uint8': case 'uint16': case 'uint32':
    case 'float32': case 'float64': case 'date':
      return new NumberBuilder(ctx, type);
    default:
      throw new TypeError(`column '${ctx.column}' of ${ctx.file}: ${DataType.fromJSON(type)} columns cannot be read from CSV`);
  }
}

// ---------------------------------------------------------------------------------------------
// Header, inference, schema resolution

interface HeaderInfo { names: string[]; /** bytes consumed by the BOM and the header record */ dataStart: number; dataLine: number }

function stripBom(buf: Uint8Array, end: number): number {
  return end >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
}

function uniqueNames(raw: string[]): string[] {
  const seen = new Set<string>();
  return raw.map((n, i) => {
    let name = n === '' ? `column_${i + 1}` : n;
    if (seen.has(name)) {
      let k = 1;
      while (seen.has(`${name}_${k}`)) k++;
      name = `${name}_${k}`;
    }
    seen.add(name);
    return name;
  });
}

/** Read a prefix of the file synchronously until `enough(buf, end, eof)` holds (or EOF). */
function readPrefixSync(file: string, enough: (buf: Buffer, end: number, eof: boolean) => boolean): { buf: Buffer; end: number; eof: boolean } {
  const fd = fs.openSync(file, 'r');
  try {
    let buf = Buffer.allocUnsafe(1 << 16);
    let end = 0;
    for (;;) {
      if (end === buf.length) {
        const b = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(b, 0, 0, end);
        buf = b;
      }
      const n = fs.readSync(fd, buf, end, buf.length - end, end);
      end += n;
      const eof = n === 0;
      if (enough(buf, end, eof) || eof) return { buf, end, eof };
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** readPrefixSync for an S3 object: ranged GETs of 64 KiB, doubling, through the sync facade. */
function readPrefixSyncS3(uri: string, size: number, etag: string, enough: (buf: Buffer, end: number, eof: boolean) => boolean): { buf: Buffer; end: number; eof: boolean } {
  let buf: Buffer = Buffer.alloc(0);
  let want = 1 << 16;
  for (;;) {
    const upto = Math.min(size, want);
    const more = readRangeSync(uri, buf.length, upto, etag);
    buf = buf.length ? Buffer.concat([buf, more]) : Buffer.from(more.buffer, more.byteOffset, more.length);
    const eof = buf.length >= size;
    if (enough(buf, buf.length, eof) || eof) return { buf, end: buf.length, eof };
    want *= 2;
  }
}

/** Size and version of a CSV file: (size, mtime) locally, (size, ETag) on S3 (a listing's word, else a HEAD). */
function csvStat(file: string): { size: number; mtimeMs: number; etag?: string } {
  if (isLocalUri(file)) return statFile(file, 'CSV');
  let h = objectHint(file);
  if (!h) {
    const o = statObjectSync(file);
    noteObjects([o], objectHint(file, Infinity)?.group);
    h = objectHint(file)!;
  }
  return { size: h.size, mtimeMs: 0, etag: h.etag };
}

function readPrefix(file: string, st: { size: number; etag?: string }, enough: (buf: Buffer, end: number, eof: boolean) => boolean): { buf: Buffer; end: number; eof: boolean } {
  return st.etag !== undefined ? readPrefixSyncS3(file, st.size, st.etag, enough) : readPrefixSync(file, enough);
}

function parseHeader(file: string, buf: Buffer, end: number, eof: boolean, o: Resolved, tok: Tokenizer): HeaderInfo | null {
  const start = stripBom(buf, end);
  tok.line = 1;
  let p: number;
  try {
    p = tok.record(buf, start, end, eof);
  } catch (e) {
    if (e instanceof CsvSyntaxError) throw new Error(`${file}: ${e.message}`);
    throw e;
  }
  if (p < 0) return null;
  const raw: string[] = [];
  for (let k = 0; k < tok.nf; k++) raw.push(fieldText(buf, tok.fs[k]!, tok.fe[k]!, tok.ff[k]!));
  if (o.header) return { names: uniqueNames(raw), dataStart: p, dataLine: tok.line };
  return { names: raw.map((_, i) => `column_${i + 1}`), dataStart: start, dataLine: 1 };
}

interface ColumnGuess { seen: boolean; bool: boolean; int: boolean; float: boolean; date: boolean; ts: boolean; tz: boolean; ns: boolean }

function inferTypes(file: string, o: Resolved, names: string[], buf: Buffer, start: number, end: number, eof: boolean, line: number, tok: Tokenizer): DataTypeJSON[] {
  const g: ColumnGuess[] = names.map(() => ({ seen: false, bool: true, int: true, float: true, date: true, ts: true, tz: false, ns: false }));
  tok.line = line;
  let pos = start;
  for (let rows = 0; rows < o.inferRows && pos < end; rows++) {
    let p: number;
    try {
      p = tok.record(buf, pos, end, eof);
    } catch (e) {
      if (e instanceof CsvSyntaxError) throw new Error(`${file}: ${e.message}`);
      throw e;
    }
    if (p < 0 || tok.nf === 0) break;
    if (tok.nf !== names.length) throw new Error(`${file}:${tok.recLine}: expected ${names.length} fields, found ${tok.nf}`);
    pos = p;
    for (let c = 0; c < names.length; c++) {
      const s = tok.fs[c]!;
      const e = tok.fe[c]!;
      if (s === e || isNullField(o, buf, s, e, (tok.ff[c]! & 1) === 1, false)) continue;
      const q = g[c]!;
      q.seen = true;
      if (q.bool && isBoolBytes(buf, s, e) === undefined) q.bool = false;
      if (q.int) {
        const v = parseIntBytes(buf, s, e);
        if (v === undefined || (typeof v === 'bigint' && (v < -(1n << 63n) || v >= 1n << 63n))) q.int = false;
      }
      if (q.float && parseFloatBytes(buf, s, e) === undefined) q.float = false;
      if (q.date && parseDateBytes(buf, s, e) === undefined) q.date = false;
      if (q.ts) {
        const t = parseTimestampBytes(buf, s, e);
        if (!t) q.ts = false;
        else { if (t.hasTz) q.tz = true; if (t.fracDigits > 6) q.ns = true; }
      }
    }
  }
  return g.map((q): DataTypeJSON => {
    if (!q.seen) return { kind: 'utf8' };
    if (q.bool) return { kind: 'bool' };
    if (q.int) return { kind: 'int64' };
    if (q.float) return { kind: 'float64' };
    if (q.date) return { kind: 'date' };
    if (q.ts) return { kind: 'timestamp', unit: q.ns ? 'ns' : 'us', tz: q.tz ? 'UTC' : null };
    return { kind: 'utf8' };
  });
}

/** How the file's columns map to the schema's fields. */
interface Layout { fileNames: string[]; schema: Schema; /** file column index of each schema field */ columnOf: number[] }

function resolveLayout(file: string, fileNames: string[], schema: Schema, hasHeader: boolean): Layout {
  const positional = (): Layout => {
    if (schema.fields.length !== fileNames.length) {
      throw new Error(`${file} has ${fileNames.length} columns but the schema given has ${schema.fields.length}`);
    }
    return { fileNames, schema, columnOf: schema.fields.map((_, i) => i) };
  };
  if (!hasHeader) return positional();
  // With a header, fields match header names, so a file whose columns come in another order reads
  // right. A schema sharing no name with the header renames the columns by position.
  const columnOf = schema.fields.map((f) => fileNames.indexOf(f.name));
  if (columnOf.every((i) => i < 0) && schema.fields.length === fileNames.length) return positional();
  const missing = schema.fields.filter((_, k) => columnOf[k]! < 0).map((f) => f.name);
  if (missing.length > 0) {
    const also = missing.length > 1 ? `; also missing: ${missing.slice(1).map((n) => `'${n}'`).join(', ')}` : '';
    throw new ColumnNotFoundError(missing[0]!, fileNames, `the header of ${file} (schema fields are matched to header names${also})`);
  }
  return { fileNames, schema, columnOf };
}

interface CachedCsv { size: number; mtimeMs: number; etag?: string; key: string; schema: Schema }
const csvCache = new Map<string, CachedCsv>();

function optionsKey(o: Resolved, opts: CsvOptions): string {
  return JSON.stringify([o.delim, o.header, opts.nullValues ?? null, o.inferRows, opts.schema?.toJSON() ?? null]);
}

function fileLayout(file: string, rawOpts: CsvOptions): { sizeBytes: number; layout: Layout } {
  const given = csvSchemaOption(rawOpts.schema, file);
  const opts: CsvOptions = given ? { ...rawOpts, schema: given } : rawOpts;
  const st = csvStat(file);
  const o = resolveOptions(opts, file);
  const key = optionsKey(o, opts);
  const hit = csvCache.get(file);
  const tok = new Tokenizer(o.delim, 64);
  const need = (buf: Buffer, end: number, eof: boolean): boolean => parseHeader(file, buf, end, eof, o, tok) !== null;
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs && hit.etag === st.etag && hit.key === key && !opts.schema) {
    const { buf, end, eof } = readPrefix(file, st, need);
    const h = parseHeader(file, buf, end, eof, o, tok);
    return { sizeBytes: st.size, layout: resolveLayout(file, h?.names ?? [], hit.schema, o.header) };
  }
  // Read enough to hold the header and inferRows records.
  const { buf, end, eof } = readPrefix(file, st, (b, e, done) => {
    if (!need(b, e, done)) return false;
    if (opts.schema || o.inferRows <= 0) return true;
    let records = 0;
    let pos = parseHeader(file, b, e, done, o, tok)!.dataStart;
    try {
      while (records < o.inferRows) {
        const p = tok.record(b, pos, e, done);
        if (p < 0 || tok.nf === 0) return p >= 0;
        pos = p;
        records++;
      }
    } catch {
      return true; // syntax errors surface with their line number below
    }
    return true;
  });
  const h = parseHeader(file, buf, end, eof, o, tok);
  if (!h || h.names.length === 0) throw new Error(`empty CSV file (no header or data): ${file}`);
  let schema: Schema;
  if (given) {
    schema = given;
  } else {
    const types = o.inferRows > 0
      ? inferTypes(file, o, h.names, buf, h.dataStart, end, eof, h.dataLine, tok)
      : h.names.map((): DataTypeJSON => ({ kind: 'utf8' }));
    schema = new Schema(h.names.map((n, i) => new Field(n, DataType.fromJSON(types[i]!), true)));
    csvCache.set(file, st.etag !== undefined ? { size: st.size, mtimeMs: st.mtimeMs, etag: st.etag, key, schema } : { size: st.size, mtimeMs: st.mtimeMs, key, schema });
  }
  return { sizeBytes: st.size, layout: resolveLayout(file, h.names, schema, o.header) };
}

/**
 * Schema of a CSV file: the header's names (or column_1..n), types inferred from the first
 * `inferRows` records: bool, int64, float64, date (YYYY-MM-DD), timestamp (ISO 8601; tz UTC when
 * values carry an offset), else utf8. Columns with no values are utf8. Synchronous; reads a prefix.
 */
export function inspectCsv(path: string, opts: CsvOptions = {}): { path: string; sizeBytes: number; schema: Schema } {
  const { sizeBytes, layout } = fileLayout(path, opts);
  return { path, sizeBytes, schema: layout.schema };
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Sequential reads of a file's bytes: positioned reads locally, one streamed GET on S3. */
interface ChunkSource {
  /** Up to `len` bytes at `pos` (S3: `pos` must follow the previous read) into `into`; 0 at the end. */
  read(into: Buffer, len: number, pos: number): Promise<number>;
  close(): Promise<void>;
}

async function openChunkSource(path: string): Promise<ChunkSource> {
  // S3: one GET read front to back, pinned to the ETag the schema was inferred from (a replaced
  // object fails instead of mis-parsing); locally positional reads into the caller's buffer.
  const etag = objectHint(path, Infinity)?.etag;
  return openObjectReader(path, etag === undefined ? {} : { etag });
}

/**
 * Stream a CSV file as Arrow record batches matching `schema.select(columns)` exactly. A value
 * that does not parse as its column's type is an error naming the file, line and column.
 */
export async function* readCsvBatches(path: string, opts: CsvOptions = {}): AsyncGenerator<arrow.RecordBatch> {
  const o = resolveOptions(opts, path);
  const { layout } = fileLayout(path, opts);
  const names = opts.columns ? [...opts.columns] : layout.schema.names;
  for (const n of names) if (!layout.schema.has(n)) throw new ColumnNotFoundError(n, layout.schema.names, path);
  const outSchema = layout.schema.select(names);
  const arrowSchema = outSchema.toArrow();
  const ncols = layout.fileNames.length;
  // The tokenizer stores every field of a record at [record * ncols + column] of the block arrays;
  // each builder reads its own column's slots from there.
  const slots = names.map((n) => layout.columnOf[layout.schema.indexOf(n)]!);
  const builders = outSchema.fields.map((f) => makeBuilder({ file: path, column: f.name, nulls: o.nulls, defaultNulls: o.defaultNulls }, f.type.json));

  const maxBlock = Math.max(1, Math.min(o.batchSize, 16384, Math.floor((1 << 20) / Math.max(1, ncols))));
  const tok = new Tokenizer(o.delim, maxBlock * ncols);
  tok.blankLinesAreRecords = ncols === 1;
  const block: Block = { buf: Buffer.alloc(0), fs: tok.fs, fe: tok.fe, ff: tok.ff, lines: new Int32Array(maxBlock), stride: ncols, count: 0 };
  const fh = await openChunkSource(path);
  let pending: Promise<{ bytes: Buffer; n: number }> | null = null;
  try {
    let buf = Buffer.allocUnsafe(2 * CHUNK);
    let start = 0;
    let end = 0;
    let filePos = 0;
    let eof = false;
    // The next chunk is read (in libuv's thread pool) while we parse the current one.
    const spare = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let which = 0;
    const readAhead = (): Promise<{ bytes: Buffer; n: number }> => {
      const bytes = spare[which]!;
      which ^= 1;
      return fh.read(bytes, CHUNK, filePos).then((n) => ({ bytes, n }));
    };
    pending = readAhead();
    const fill = async (): Promise<void> => {
      const { bytes, n } = await pending!;
      if (n === 0) { eof = true; pending = null; return; }
      filePos += n;
      pending = readAhead();
      if (start > 0) { buf.copy(buf, 0, start, end); end -= start; start = 0; }
      if (buf.length - end < n) {
        const b = Buffer.allocUnsafe(Math.max(buf.length * 2, end + n));
        buf.copy(b, 0, 0, end);
        buf = b;
      }
      bytes.copy(buf, end, 0, n);
      end += n;
      tok.resetScan();
    };

    // Header (or first record when there is none) fixes where data starts.
    for (;;) {
      await fill();
      const h = parseHeader(path, buf, end, eof, o, tok);
      if (h) {
        start = h.dataStart;
        tok.line = h.dataLine;
        tok.limit = ncols;
        [block.fs, block.fe, block.ff] = [tok.fs, tok.fe, tok.ff]; // in case the header grew them
        break;
      }
      if (eof) return;
    }

    let rows = 0;
    const flush = (): arrow.RecordBatch => {
      const children = builders.map((b, i) => b.finish(arrowSchema.fields[i]!.type));
      const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, rows, 0, undefined, children) as arrow.Data<arrow.Struct>;
      rows = 0;
      return new arrow.RecordBatch(arrowSchema, data);
    };

    for (;;) {
      // Tokenize a block of whole records from the buffer.
      let count = 0;
      let incomplete = false;
      const limit = Math.min(maxBlock, o.batchSize - rows);
      while (count < limit) {
        let p: number;
        tok.base = count * ncols;
        try {
          p = tok.record(buf, start, end, eof);
        } catch (e) {
          if (e instanceof CsvSyntaxError) throw new Error(`${path}: ${e.message}`);
          throw e;
        }
        if (p < 0) { incomplete = true; break; }
        start = p;
        if (tok.nf === 0) break; // EOF after blank lines
        if (tok.nf !== ncols) throw new Error(`${path}:${tok.recLine}: expected ${ncols} fields, found ${tok.nf}`);
        block.lines[count] = tok.recLine;
        count++;
      }
      if (count > 0) {
        block.buf = buf;
        block.count = count;
        for (let k = 0; k < builders.length; k++) builders[k]!.append(block, slots[k]!);
        rows += count;
        if (rows >= o.batchSize) yield flush();
      }
      if (incomplete || (count < limit && !eof)) {
        if (eof) break;
        await fill();
        continue;
      }
      if (eof && start >= end) break;
    }
    if (rows > 0) yield flush();
  } finally {
    if (pending) await pending.catch(() => undefined); // never close under an in-flight read
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

class ByteOut {
  buf = new Uint8Array(1 << 20);
  len = 0;
  private spare = new Uint8Array(1 << 20);
  /** Hand the filled buffer over (to an in-flight write) and continue in the other one. */
  swap(): void {
    [this.buf, this.spare] = [this.spare, this.buf];
    this.len = 0;
  }
  ensure(n: number): void {
    if (this.len + n > this.buf.length) {
      const b = new Uint8Array(Math.max(this.len + n, this.buf.length * 2));
      b.set(this.buf.subarray(0, this.len));
      this.buf = b;
    }
  }
  byte(c: number): void { this.ensure(1); this.buf[this.len++] = c; }
  ascii(s: string): void {
    this.ensure(s.length);
    const b = this.buf;
    let l = this.len;
    for (let i = 0; i < s.length; i++) b[l++] = s.charCodeAt(i);
    this.len = l;
  }
  /** A field's bytes, quoted (with doubled quotes) when they hold the delimiter, a quote or a newline, or are empty. */
  field(src: Uint8Array, s: number, e: number, delim: number): void {
    let needs = s === e;
    for (let i = s; i < e && !needs; i++) {
      const c = src[i]!;
      if (c === delim || c === QUOTE || c === LF || c === CR) needs = true;
    }
    if (!needs) {
      this.ensure(e - s);
      this.buf.set(src.subarray(s, e), this.len);
      this.len += e - s;
      return;
    }
    this.ensure(2 * (e - s) + 2);
    const b = this.buf;
    let l = this.len;
    b[l++] = QUOTE;
    for (let i = s; i < e; i++) {
      const c = src[i]!;
      b[l++] = c;
      if (c === QUOTE) b[l++] = QUOTE;
    }
    b[l++] = QUOTE;
    this.len = l;
  }
  fieldText(s: string, delim: number): void {
    const bytes = encoder.encode(s);
    this.field(bytes, 0, bytes.length, delim);
  }
}

function pad(n: number, w: number): string { return String(n).padStart(w, '0'); }

function formatDate(days: number): string {
  const [y, m, d] = civilFromDays(days);
  const ys = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 6);
  return `${ys}-${pad(m, 2)}-${pad(d, 2)}`;
}

function formatTimestamp(ticks: bigint, unit: TimeUnit, tz: string | null): string {
  const per = BigInt(TICKS_PER_SEC[unit]);
  let secs = ticks / per;
  let frac = ticks % per;
  if (frac < 0n) { frac += per; secs -= 1n; }
  const s = Number(secs);
  const days = Math.floor(s / 86400);
  const sod = s - days * 86400;
  let out = `${formatDate(days)}T${pad(Math.floor(sod / 3600), 2)}:${pad(Math.floor(sod / 60) % 60, 2)}:${pad(sod % 60, 2)}`;
  const digits = { s: 0, ms: 3, us: 6, ns: 9 }[unit];
  if (digits) out += `.${frac.toString().padStart(digits, '0')}`;
  return tz ? `${out}Z` : out;
}

function formatFloat(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return String(v);
}

function isValidAt(d: arrow.Data, i: number): boolean {
  if (d.nullCount === 0) return true;
  if (d.typeId === arrow.Type.Null) return false;
  const bits = d.nullBitmap;
  if (!bits || bits.length === 0) return true;
  const j = d.offset + i;
  return ((bits[j >> 3]! >> (j & 7)) & 1) === 1;
}

const JSON_ESCAPE_NUMBERS = (v: number): string => (Number.isFinite(v) ? String(v) : 'null');

/** JSON text of a (nested) value, type-directed: bigint stays exact, dates/timestamps ISO, bytes base64. */
function jsonOf(d: arrow.Data, i: number, t: DataTypeJSON): string {
  if (!isValidAt(d, i)) return 'null';
  // Arrow JS slices values, offsets and struct/fixed-size-list children with the Data: index them by
  // `i`. Only bitmaps (validity, bool values) keep the slice's `offset`.
  const j = d.offset + i;
  switch (t.kind) {
    case 'null': return 'null';
    case 'bool': return ((d.values as Uint8Array)[j >> 3]! >> (j & 7)) & 1 ? 'true' : 'false';
    case 'int64': case 'uint64': return String((d.values as BigInt64Array)[i]);
    case 'float32': case 'float64': return JSON_ESCAPE_NUMBERS((d.values as Float64Array)[i]!);
    case 'utf8': {
      const o = d.valueOffsets as Int32Array;
      return JSON.stringify(decoder.decode((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!)));
    }
    case 'binary': {
      const o = d.valueOffsets as Int32Array;
      return JSON.stringify(Buffer.from((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!)).toString('base64'));
    }
    case 'date': return JSON.stringify(formatDate((d.values as Int32Array)[i]!));
    case 'timestamp': return JSON.stringify(formatTimestamp((d.values as BigInt64Array)[i]!, t.unit, t.tz));
    case 'list': {
      const o = d.valueOffsets as Int32Array;
      const parts: string[] = [];
      for (let k = o[i]!; k < o[i + 1]!; k++) parts.push(jsonOf(d.children[0]!, k, t.child));
      return `[${parts.join(',')}]`;
    }
    case 'fixedSizeList': {
      const parts: string[] = [];
      for (let k = i * t.size; k < (i + 1) * t.size; k++) parts.push(jsonOf(d.children[0]!, k, t.child));
      return `[${parts.join(',')}]`;
    }
    case 'struct':
      return `{${t.fields.map((f, k) => `${JSON.stringify(f.name)}:${jsonOf(d.children[k]!, i, f.type)}`).join(',')}}`;
    default: // int8..uint32
      return String((d.values as Int32Array)[i]);
  }
}

type Formatter = (i: number, out: ByteOut) => void;

function formatterFor(d: arrow.Data, t: DataTypeJSON, delim: number): Formatter {
  const off = d.offset;
  switch (t.kind) {
    case 'null': return () => undefined;
    case 'bool': {
      const bits = d.values as Uint8Array;
      return (i, out) => { const j = off + i; out.ascii((bits[j >> 3]! >> (j & 7)) & 1 ? 'true' : 'false'); };
    }
    case 'int8': case 'int16': case 'int32': case 'uint8': case 'uint16': case 'uint32': {
      const v = d.values as Int32Array;
      return (i, out) => out.ascii(String(v[i]));
    }
    case 'int64': case 'uint64': {
      const v = d.values as BigInt64Array;
      return (i, out) => out.ascii(String(v[i]));
    }
    case 'float32': case 'float64': {
      const v = d.values as Float64Array;
      return (i, out) => out.ascii(formatFloat(v[i]!));
    }
    case 'utf8': {
      const o = d.valueOffsets as Int32Array;
      const v = d.values as Uint8Array;
      return (i, out) => out.field(v, o[i]!, o[i + 1]!, delim);
    }
    case 'binary': {
      const o = d.valueOffsets as Int32Array;
      const v = d.values as Uint8Array;
      return (i, out) => out.fieldText(Buffer.from(v.subarray(o[i]!, o[i + 1]!)).toString('base64'), delim);
    }
    case 'date': {
      const v = d.values as Int32Array;
      return (i, out) => out.ascii(formatDate(v[i]!));
    }
    case 'timestamp': {
      const v = d.values as BigInt64Array;
      return (i, out) => out.ascii(formatTimestamp(v[i]!, t.unit, t.tz));
    }
    default:
      return (i, out) => out.fieldText(jsonOf(d, i, t), delim);
  }
}

function toAsyncIterator<T>(src: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> {
  if (Symbol.asyncIterator in src) return (src as AsyncIterable<T>)[Symbol.asyncIterator]();
  const it = (src as Iterable<T>)[Symbol.iterator]();
  return { next: async () => it.next(), return: async (v?: unknown) => (it.return ? it.return(v) : { done: true as const, value: v as T }) };
}

/** Where writeCsvFile's bytes go: a local file, or an S3 object through a multipart upload. */
interface CsvSink {
  /** The bytes are copied or written before the promise resolves: the caller may then reuse the buffer. */
  write(bytes: Uint8Array): Promise<unknown>;
  /** ok: make the file whole (S3: complete the upload); else leave nothing behind. */
  close(ok: boolean): Promise<void>;
}

async function openCsvSink(path: string): Promise<CsvSink> {
  // Through the storage layer: the file appears whole on close (upload completed, or a local temp renamed in).
  const upload = await openObjectWriter(path, { contentType: 'text/csv' });
  return {
    write: (b) => upload.write(b),
    close: async (ok) => {
      if (!ok) return upload.abort();
      await upload.close();
    },
  };
}

/**
 * Stream batches into a CSV file: header row (default), RFC 4180 quoting where needed, nulls as
 * empty fields and empty strings as "", dates and timestamps ISO 8601 (timestamps with a time
 * zone in UTC with 'Z'), binary as base64, lists and structs as JSON.
 */
export async function writeCsvFile(path: string, batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>,
  opts: WriteCsvOptions = {}): Promise<{ rows: number; bytes: number }> {
  const delimStr = opts.delimiter ?? ',';
  if (delimStr.length !== 1 || delimStr.charCodeAt(0) > 127 || delimStr === '"' || delimStr === '\n' || delimStr === '\r') {
    throw new RangeError(`CSV delimiter must be a single ASCII character other than a quote or newline, got ${JSON.stringify(delimStr)}`);
  }
  const delim = delimStr.charCodeAt(0);
  const header = opts.header ?? true;
  let schema = opts.schema ?? null;
  const it = toAsyncIterator(batches);
  const fh = await openCsvSink(path);
  const out = new ByteOut();
  let rows = 0;
  let bytes = 0;
  let ok = false;
  // One write in flight while the next buffer is formatted (the disk wait otherwise dominates).
  let inflight: Promise<unknown> | null = null;
  const flushOut = async (): Promise<void> => {
    if (out.len === 0) return;
    if (inflight) await inflight; // the spare buffer is free again once its write is done
    inflight = fh.write(out.buf.subarray(0, out.len));
    bytes += out.len;
    out.swap();
  };
  const writeHeader = (s: Schema): void => {
    if (!header) return;
    s.names.forEach((n, i) => { if (i) out.byte(delim); out.fieldText(n, delim); });
    out.byte(LF);
  };
  try {
    if (schema) writeHeader(schema);
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const batch = r.value;
      if (!schema) { schema = Schema.fromArrow(batch.schema); writeHeader(schema); }
      const names = batch.schema.fields.map((bf) => bf.name);
      const idx = schema.fields.map((f) => {
        const i = names.indexOf(f.name);
        if (i < 0) throw new ColumnNotFoundError(f.name, names, `a batch written to ${path}`);
        return i;
      });
      for (const seg of batchSegments(batch)) {
        const cols = schema.fields.map((f, k) => {
          const d = seg.columns[idx[k]!]!;
          return { d, fmt: formatterFor(d, f.type.json, delim), always: d.nullCount === 0 };
        });
        const n = seg.length;
        for (let i = 0; i < n; i++) {
          for (let c = 0; c < cols.length; c++) {
            if (c) out.byte(delim);
            const col = cols[c]!;
            if (col.always || isValidAt(col.d, i)) col.fmt(i, out);
          }
          out.byte(LF);
          if (out.len > (1 << 22)) await flushOut();
        }
        rows += n;
      }
      if (out.len > (1 << 20)) await flushOut();
    }
    await flushOut();
    if (inflight) await inflight;
    ok = true;
  } catch (e) {
    try { await it.return?.(); } catch { /* secondary */ }
    throw e;
  } finally {
    if (inflight) await inflight.catch(() => undefined);
    await fh.close(ok);
  }
  return { rows, bytes };
}

// CSV writes: Arrow buffers formatted straight into a reused byte buffer, to a local file or an S3 upload.
import { civilFromDays } from '../../kernels/temporal.ts';
import * as arrow from 'apache-arrow';
import { ColumnNotFoundError, Schema, type DataTypeJSON, type TimeUnit } from '../../datatypes.ts';
import { batchSegments } from '../paths.ts';
import { openObjectWriter } from '../store/index.ts';
import { CR, LF, QUOTE, decoder, encoder, type WriteCsvOptions } from './options.ts';
import { TICKS_PER_SEC } from './parse.ts';

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
  byte(c: number): void {
    this.ensure(1);
    this.buf[this.len++] = c;
  }
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

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

function formatDate(days: number): string {
  const [y, m, d] = civilFromDays(days);
  const ys = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 6);
  return `${ys}-${pad(m, 2)}-${pad(d, 2)}`;
}

function formatTimestamp(ticks: bigint, unit: TimeUnit, tz: string | null): string {
  const per = BigInt(TICKS_PER_SEC[unit]);
  let secs = ticks / per;
  let frac = ticks % per;
  if (frac < 0n) {
    frac += per;
    secs -= 1n;
  }
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
    case 'null':
      return 'null';
    case 'bool':
      return ((d.values as Uint8Array)[j >> 3]! >> (j & 7)) & 1 ? 'true' : 'false';
    case 'int64':
    case 'uint64':
      return String((d.values as BigInt64Array)[i]);
    case 'float32':
    case 'float64':
      return JSON_ESCAPE_NUMBERS((d.values as Float64Array)[i]!);
    case 'utf8': {
      const o = d.valueOffsets as Int32Array;
      return JSON.stringify(decoder.decode((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!)));
    }
    case 'binary': {
      const o = d.valueOffsets as Int32Array;
      return JSON.stringify(Buffer.from((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!)).toString('base64'));
    }
    case 'date':
      return JSON.stringify(formatDate((d.values as Int32Array)[i]!));
    case 'timestamp':
      return JSON.stringify(formatTimestamp((d.values as BigInt64Array)[i]!, t.unit, t.tz));
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
    case 'null':
      return () => undefined;
    case 'bool': {
      const bits = d.values as Uint8Array;
      return (i, out) => {
        const j = off + i;
        out.ascii((bits[j >> 3]! >> (j & 7)) & 1 ? 'true' : 'false');
      };
    }
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint8':
    case 'uint16':
    case 'uint32': {
      const v = d.values as Int32Array;
      return (i, out) => out.ascii(String(v[i]));
    }
    case 'int64':
    case 'uint64': {
      const v = d.values as BigInt64Array;
      return (i, out) => out.ascii(String(v[i]));
    }
    case 'float32':
    case 'float64': {
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
export async function writeCsvFile(
  path: string,
  batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>,
  opts: WriteCsvOptions = {},
): Promise<{ rows: number; bytes: number }> {
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
    s.names.forEach((n, i) => {
      if (i) out.byte(delim);
      out.fieldText(n, delim);
    });
    out.byte(LF);
  };
  try {
    if (schema) writeHeader(schema);
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const batch = r.value;
      if (!schema) {
        schema = Schema.fromArrow(batch.schema);
        writeHeader(schema);
      }
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
          if (out.len > 1 << 22) await flushOut();
        }
        rows += n;
      }
      if (out.len > 1 << 20) await flushOut();
    }
    await flushOut();
    if (inflight) await inflight;
    ok = true;
  } catch (e) {
    try {
      await it.return?.();
    } catch {
      /* secondary */
    }
    throw e;
  } finally {
    if (inflight) await inflight.catch(() => undefined);
    await fh.close(ok);
  }
  return { rows, bytes };
}

// CSV header, type inference and schema resolution (local files and S3 objects, read synchronously).
import * as fs from 'node:fs';
import { ColumnNotFoundError, DataType, Field, Schema, type DataTypeJSON } from '../../datatypes.ts';
import { statFile } from '../paths.ts';
import { isLocalUri, statObjectSync, noteObjects, objectHint, readRangeSync } from '../store/index.ts';
import { csvSchemaOption, resolveOptions, type CsvOptions, type Resolved } from './options.ts';
import { CsvSyntaxError, Tokenizer, fieldText } from './tokenizer.ts';
import { isBoolBytes, parseDateBytes, parseFloatBytes, parseIntBytes, parseTimestampBytes } from './parse.ts';
import { isNullField } from './builders.ts';

// ---------------------------------------------------------------------------------------------
// Header, inference, schema resolution

interface HeaderInfo {
  names: string[] /** bytes consumed by the BOM and the header record */;
  dataStart: number;
  dataLine: number;
}

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
function readPrefixSyncS3(
  uri: string,
  size: number,
  etag: string,
  enough: (buf: Buffer, end: number, eof: boolean) => boolean,
): { buf: Buffer; end: number; eof: boolean } {
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

function readPrefix(
  file: string,
  st: { size: number; etag?: string },
  enough: (buf: Buffer, end: number, eof: boolean) => boolean,
): { buf: Buffer; end: number; eof: boolean } {
  return st.etag !== undefined ? readPrefixSyncS3(file, st.size, st.etag, enough) : readPrefixSync(file, enough);
}

export function parseHeader(file: string, buf: Buffer, end: number, eof: boolean, o: Resolved, tok: Tokenizer): HeaderInfo | null {
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

interface ColumnGuess {
  seen: boolean;
  bool: boolean;
  int: boolean;
  float: boolean;
  date: boolean;
  ts: boolean;
  tz: boolean;
  ns: boolean;
}

function inferTypes(
  file: string,
  o: Resolved,
  names: string[],
  buf: Buffer,
  start: number,
  end: number,
  eof: boolean,
  line: number,
  tok: Tokenizer,
): DataTypeJSON[] {
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
        else {
          if (t.hasTz) q.tz = true;
          if (t.fracDigits > 6) q.ns = true;
        }
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
interface Layout {
  fileNames: string[];
  schema: Schema /** file column index of each schema field */;
  columnOf: number[];
}

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
    const also =
      missing.length > 1
        ? `; also missing: ${missing
            .slice(1)
            .map((n) => `'${n}'`)
            .join(', ')}`
        : '';
    throw new ColumnNotFoundError(missing[0]!, fileNames, `the header of ${file} (schema fields are matched to header names${also})`);
  }
  return { fileNames, schema, columnOf };
}

interface CachedCsv {
  size: number;
  mtimeMs: number;
  etag?: string;
  key: string;
  schema: Schema;
}
const csvCache = new Map<string, CachedCsv>();

function optionsKey(o: Resolved, opts: CsvOptions): string {
  return JSON.stringify([o.delim, o.header, opts.nullValues ?? null, o.inferRows, opts.schema?.toJSON() ?? null]);
}

export function fileLayout(file: string, rawOpts: CsvOptions): { sizeBytes: number; layout: Layout } {
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
    const types =
      o.inferRows > 0 ? inferTypes(file, o, h.names, buf, h.dataStart, end, eof, h.dataLine, tok) : h.names.map((): DataTypeJSON => ({ kind: 'utf8' }));
    schema = new Schema(h.names.map((n, i) => new Field(n, DataType.fromJSON(types[i]!), true)));
    csvCache.set(
      file,
      st.etag !== undefined ? { size: st.size, mtimeMs: st.mtimeMs, etag: st.etag, key, schema } : { size: st.size, mtimeMs: st.mtimeMs, key, schema },
    );
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

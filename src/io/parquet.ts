// Parquet I/O: footer inspection (sync, hyparquet on the file tail), streaming reads (parquet-wasm
// ParquetFile, one row group at a time, imported through the Arrow C data interface into batches
// that match our Schema exactly) and streaming writes (parquet-wasm transformParquetStream).
// Paths may be s3:// URIs: footers then come through the synchronous S3 facade, data through
// ranged GETs (S3Blob), writes through a multipart upload.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import * as vm from 'node:vm';
import { createRequire } from 'node:module';
import * as arrow from 'apache-arrow';
import { parquetMetadata, parquetSchema } from 'hyparquet';
import type { FileMetaData, SchemaElement, SchemaTree, Statistics } from 'hyparquet';
import type * as PW from 'parquet-wasm';
import { ColumnNotFoundError, Field, Schema, toArrowType, type DataTypeJSON, type FieldJSON, type TimeUnit } from '../datatypes.ts';
import type { Scalar } from '../expressions.ts';
import { batchSegments, statFile } from './paths.ts';
import { unaliasBatch } from '../ipc-alias.ts';
import {
  isLocalUri, METADATA_TTL_MS, statObjectSync, noteObjects, objectHint, parquetTailsSync, openObjectBlob, openRangedBlob, ObjectChangedError, forgetObject, openObjectWriter, deleteObjects, type RangedBlob, type ObjectWriter, type TailRequest,
} from './store/index.ts';

// ---------------------------------------------------------------------------------------------
// Public types

export interface ColumnStats { min: Scalar | null; max: Scalar | null; nullCount: number | null }
export interface RowGroupInfo {
  index: number;
  numRows: number;
  uncompressedBytes: number;
  compressedBytes: number;
  /** Top-level primitive columns only. min/max are bounds (writers may truncate long strings). */
  stats: Record<string, ColumnStats>;
}
export interface ParquetFileInfo {
  path: string;
  sizeBytes: number;
  numRows: number;
  schema: Schema;
  rowGroups: RowGroupInfo[];
  /** Columns left out of `schema` because no DataType represents them (interval, union...). */
  unsupportedColumns: { name: string; reason: string }[];
}

export interface ReadParquetOptions {
  columns?: readonly string[];
  rowGroups?: readonly number[];
  batchSize?: number;
  schema?: Schema;
}

export type ParquetCompression = 'snappy' | 'zstd' | 'gzip' | 'lz4' | 'brotli' | 'none';
export interface WriteParquetOptions { schema?: Schema; compression?: ParquetCompression; rowGroupSize?: number }

export const DEFAULT_BATCH_SIZE = 65536;
export const DEFAULT_ROW_GROUP_SIZE = 131072;

/** Process-wide read counters (tests and metrics use them to check streaming and pruning). */
export const readStats = { rowGroupsRead: 0, batchesRead: 0, rowsRead: 0 };

// ---------------------------------------------------------------------------------------------
// parquet-wasm instance management.
//
// parquet-wasm's async reader `.unwrap()`s inside futures, so corrupt data makes Rust panic inside
// a queueMicrotask callback: an uncaught exception that kills the whole process and leaves the
// pending promise unsettled forever. We therefore evaluate the package's own Node glue with a
// private `queueMicrotask` that catches such traps, rejects the operations in flight and retires
// the instance (a fresh one is created on next use).

type ParquetWasm = typeof PW;

interface WasmInstance {
  pw: ParquetWasm;
  /** Why the instance is unusable, once it trapped. */
  dead: Error | null;
  listeners: Set<(e: Error) => void>;
}

// lib has no WebAssembly typings here (no DOM lib); the runtime always has it.
const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: ErrorConstructor } }).WebAssembly.RuntimeError;
const isWasmTrap = (e: unknown): boolean => e instanceof WasmRuntimeError;

let current: WasmInstance | null = null;
let loading: Promise<WasmInstance> | null = null;

function retire(inst: WasmInstance, err: unknown): void {
  if (inst.dead) return;
  inst.dead = err instanceof Error ? err : new Error(String(err));
  if (current === inst) current = null;
  for (const l of [...inst.listeners]) l(inst.dead);
  inst.listeners.clear();
}

function loadInstance(): WasmInstance {
  const req = createRequire(import.meta.url);
  const gluePath = req.resolve('parquet-wasm'); // the CommonJS Node build: instantiates synchronously
  const source = fs.readFileSync(gluePath, 'utf8');
  const inst: WasmInstance = { pw: undefined as unknown as ParquetWasm, dead: null, listeners: new Set() };
  const guardedQueueMicrotask = (cb: () => void): void => {
    queueMicrotask(() => {
      if (inst.dead) return; // never run Rust code on a trapped instance again
      try {
        cb();
      } catch (e) {
        retire(inst, e);
      }
    });
  };
  const fn = vm.compileFunction(source, ['exports', 'require', 'module', '__filename', '__dirname', 'queueMicrotask'], { filename: gluePath });
  const mod = { exports: {} as Record<string, unknown> };
  fn.call(mod.exports, mod.exports, req, mod, gluePath, nodePath.dirname(gluePath), guardedQueueMicrotask);
  inst.pw = mod.exports as unknown as ParquetWasm;
  if (typeof inst.pw.ParquetFile !== 'function' || typeof inst.pw.wasmMemory !== 'function') {
    throw new Error('unexpected parquet-wasm module layout');
  }
  return inst;
}

async function getWasm(): Promise<WasmInstance> {
  if (current && !current.dead) return current;
  if (!loading) {
    loading = (async () => {
      let inst: WasmInstance;
      try {
        inst = loadInstance();
      } catch {
        // Fallback: the plain package (no trap isolation) if its glue ever changes shape.
        const pw = (await import('parquet-wasm')) as unknown as ParquetWasm & { default?: ParquetWasm };
        inst = { pw: pw.ParquetFile ? pw : pw.default!, dead: null, listeners: new Set() };
      }
      current = inst;
      return inst;
    })().finally(() => { loading = null; });
  }
  return loading;
}

/** Settle with `p`, or reject if the instance traps first (then `p` would never settle). */
function guarded<T>(inst: WasmInstance, p: Promise<T> | (() => Promise<T>)): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (inst.dead) { reject(inst.dead); return; }
    const onTrap = (e: Error): void => reject(e);
    inst.listeners.add(onTrap);
    let promise: Promise<T>;
    try {
      promise = typeof p === 'function' ? p() : p;
    } catch (e) {
      inst.listeners.delete(onTrap);
      if (isWasmTrap(e)) retire(inst, e);
      reject(e);
      return;
    }
    promise.then(
      (v) => { inst.listeners.delete(onTrap); resolve(v); },
      (e) => { inst.listeners.delete(onTrap); reject(e); },
    );
  });
}

/** Run sync wasm calls; a trap retires the instance. */
function wasmSync<T>(inst: WasmInstance, fn: () => T): T {
  if (inst.dead) throw inst.dead;
  try {
    return fn();
  } catch (e) {
    if (isWasmTrap(e)) retire(inst, e);
    throw e;
  }
}

// Row-group decodes run one at a time so that a trap is attributed to the right file.
let readQueue: Promise<unknown> = Promise.resolve();
function withReadLock<T>(fn: () => Promise<T>): Promise<T> {
  const run = readQueue.then(fn, fn);
  readQueue = run.catch(() => undefined);
  return run;
}

let warmed: Promise<void> | null = null;
/** Instantiate parquet-wasm and exercise its write/read paths once (idempotent). Workers call it at start. */
export function warmParquet(): Promise<void> {
  if (!warmed) {
    warmed = (async () => {
      const inst = await getWasm();
      // A tiny in-memory round trip, so the first real call does not pay for first-use setup.
      const t = arrow.tableFromArrays({ a: Float64Array.from([1, 2, 3]) });
      const bytes = wasmSync(inst, () => inst.pw.writeParquet(inst.pw.Table.fromIPCStream(arrow.tableToIPC(t, 'stream'))));
      wasmSync(inst, () => inst.pw.readParquet(bytes).free());
    })().catch((e) => { warmed = null; throw e; });
  }
  return warmed;
}

// ---------------------------------------------------------------------------------------------
// Footer inspection

interface LeafInfo { column: number; element: SchemaElement }
interface CachedInfo { size: number; mtimeMs: number; info: ParquetFileInfo }
const infoCache = new Map<string, CachedInfo>();
const INFO_CACHE_MAX = 4096;

// Statistics stay raw (bigint ticks, day numbers, bytes): we convert them per DataType below.
const RAW_PARSERS = {
  timestampFromMilliseconds: (v: bigint) => v,
  timestampFromMicroseconds: (v: bigint) => v,
  timestampFromNanoseconds: (v: bigint) => v,
  dateFromDays: (d: number) => d,
  stringFromBytes: (b: Uint8Array) => b,
  jsonFromBytes: (b: Uint8Array) => b,
  geometryFromBytes: (b: Uint8Array) => b,
  geographyFromBytes: (b: Uint8Array) => b,
  uuidFromBytes: (b: Uint8Array) => b,
};

const PAR1 = 0x31524150; // 'PAR1' little-endian
const PARE = 0x45524150; // encrypted footer

function readFooter(file: string, size: number): FileMetaData {
  if (size < 12) throw new Error(`not a Parquet file (only ${size} bytes): ${file}`);
  const fd = fs.openSync(file, 'r');
  try {
    const tail = Buffer.alloc(8);
    fs.readSync(fd, tail, 0, 8, size - 8);
    const magic = tail.readUInt32LE(4);
    if (magic !== PAR1) {
      const head = Buffer.alloc(4);
      fs.readSync(fd, head, 0, 4, 0);
      const headMagic = head.readUInt32LE(0);
      if (magic === PARE) throw new Error(`encrypted Parquet files are not supported: ${file}`);
      if (headMagic === PAR1) throw new Error(`truncated Parquet file (footer magic missing; incomplete write or cut file): ${file}`);
      throw new Error(`not a Parquet file (bad magic bytes): ${file}`);
    }
    const metaLen = tail.readUInt32LE(0);
    if (metaLen === 0 || metaLen > size - 12) {
      throw new Error(`corrupt Parquet footer (metadata length ${metaLen} does not fit in ${size} bytes): ${file}`);
    }
    const buf = Buffer.alloc(metaLen + 8);
    fs.readSync(fd, buf, 0, metaLen + 8, size - 8 - metaLen);
    let md: FileMetaData;
    try {
      md = parquetMetadata(buf, { parsers: RAW_PARSERS, geoparquet: false });
    } catch (e) {
      throw new Error(`corrupt Parquet footer in ${file}: ${(e as Error).message}`);
    }
    if (!Array.isArray(md.schema) || md.schema.length === 0 || !Array.isArray(md.row_groups) || typeof md.num_rows !== 'bigint') {
      throw new Error(`corrupt Parquet footer in ${file}: missing schema or row groups`);
    }
    return md;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Footer of a local Parquet file: schema, row groups and their statistics. Synchronous (it reads
 * only the file tail) and cached by (path, size, mtime).
 */
export function inspectParquet(path: string): ParquetFileInfo {
  if (!isLocalUri(path)) return inspectS3(path, METADATA_TTL_MS).info;
  const st = statFile(path, 'Parquet');
  const hit = infoCache.get(path);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.info;
  const md = readFooter(path, st.size);
  let info: ParquetFileInfo;
  try {
    info = buildInfo(path, st.size, md);
  } catch (e) {
    if (e instanceof ColumnNotFoundError) throw e;
    const msg = (e as Error).message;
    throw new Error(msg.includes(path) ? msg : `invalid Parquet schema in ${path}: ${msg}`);
  }
  if (infoCache.size >= INFO_CACHE_MAX) infoCache.delete(infoCache.keys().next().value!);
  infoCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, info });
  return info;
}

// ---------------------------------------------------------------------------------------------
// Footers of S3 objects: cached by (URI, ETag). A listing's ETag (s3Hint) or a recent check vouches
// for a cached footer; otherwise a HEAD does. A miss fetches the footers of every object of the
// same listing at once (in parallel, in the sync worker): readParquet over a prefix pays one round.

/** Byte ranges [start, end) of each top-level column's chunks, per row group (for prefetching). */
type ChunkRanges = Map<string, [number, number][]>[];
interface S3Footer { etag: string; size: number; info: ParquetFileInfo; tail: { offset: number; bytes: Uint8Array } | null; chunks: ChunkRanges; checkedAt: number }
const s3InfoCache = new Map<string, S3Footer>();
/** Footers (with page indexes) up to this size stay in memory, so opening the file for a read costs no request. */
const KEEP_TAIL_MAX = 4 << 20;

/** Bytes of footer tails held in s3InfoCache, at most KEPT_TAILS_MAX (the oldest give theirs up first). */
let keptTailBytes = 0;
const KEPT_TAILS_MAX = 128 << 20;

function s3CacheSet(uri: string, v: S3Footer): void {
  const drop = (f: S3Footer | undefined): void => { if (f?.tail) { keptTailBytes -= f.tail.bytes.length; f.tail = null; } };
  drop(s3InfoCache.get(uri));
  s3InfoCache.delete(uri);
  if (s3InfoCache.size >= INFO_CACHE_MAX) {
    const oldest = s3InfoCache.keys().next().value!;
    drop(s3InfoCache.get(oldest));
    s3InfoCache.delete(oldest);
  }
  if (v.tail) {
    keptTailBytes += v.tail.bytes.length;
    for (const f of s3InfoCache.values()) {
      if (keptTailBytes <= KEPT_TAILS_MAX) break;
      drop(f);
    }
    if (keptTailBytes > KEPT_TAILS_MAX) drop(v);
  }
  s3InfoCache.set(uri, v);
}

function chunkRanges(md: FileMetaData): ChunkRanges {
  return md.row_groups.map((rg) => {
    const m = new Map<string, [number, number][]>();
    for (const c of rg.columns) {
      const meta = c.meta_data;
      if (!meta) continue;
      const data = Number(meta.data_page_offset);
      const dict = meta.dictionary_page_offset !== undefined ? Number(meta.dictionary_page_offset) : data;
      const start = Math.min(dict, data);
      const name = meta.path_in_schema[0]!;
      let list = m.get(name);
      if (!list) m.set(name, (list = []));
      list.push([start, start + Number(meta.total_compressed_size)]);
    }
    return m;
  });
}

/** The same checks and messages as readFooter, on bytes fetched from the end of an object. */
function parseS3Footer(uri: string, size: number, tail: Uint8Array, head: Uint8Array | null): FileMetaData {
  if (size < 12) throw new Error(`not a Parquet file (only ${size} bytes): ${uri}`);
  const dv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  const magic = dv.getUint32(tail.length - 4, true);
  if (magic !== PAR1) {
    const headMagic = head && head.length >= 4 ? new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) : 0;
    if (magic === PARE) throw new Error(`encrypted Parquet files are not supported: ${uri}`);
    if (headMagic === PAR1) throw new Error(`truncated Parquet file (footer magic missing; incomplete write or cut file): ${uri}`);
    throw new Error(`not a Parquet file (bad magic bytes): ${uri}`);
  }
  const metaLen = dv.getUint32(tail.length - 8, true);
  if (metaLen === 0 || metaLen > size - 12 || metaLen + 8 > tail.length) {
    throw new Error(`corrupt Parquet footer (metadata length ${metaLen} does not fit in ${size} bytes): ${uri}`);
  }
  const buf = tail.slice(tail.length - metaLen - 8).buffer as ArrayBuffer;
  let md: FileMetaData;
  try {
    md = parquetMetadata(buf, { parsers: RAW_PARSERS, geoparquet: false });
  } catch (e) {
    throw new Error(`corrupt Parquet footer in ${uri}: ${(e as Error).message}`);
  }
  if (!Array.isArray(md.schema) || md.schema.length === 0 || !Array.isArray(md.row_groups) || typeof md.num_rows !== 'bigint') {
    throw new Error(`corrupt Parquet footer in ${uri}: missing schema or row groups`);
  }
  return md;
}

function footerFromTail(uri: string, size: number, etag: string, offset: number, bytes: Uint8Array, head: Uint8Array | null): S3Footer {
  const md = parseS3Footer(uri, size, bytes, head);
  let info: ParquetFileInfo;
  try {
    info = buildInfo(uri, size, md);
  } catch (e) {
    if (e instanceof ColumnNotFoundError) throw e;
    const msg = (e as Error).message;
    throw new Error(msg.includes(uri) ? msg : `invalid Parquet schema in ${uri}: ${msg}`);
  }
  const tail = bytes.length <= KEEP_TAIL_MAX ? { offset, bytes } : null;
  return { etag, size, info, tail, chunks: chunkRanges(md), checkedAt: Date.now() };
}

/**
 * Footer of an S3 object. A cached footer is used as is when something vouched for its ETag
 * within `maxAgeMs`; data reads pass Infinity (their ranged GETs check the ETag themselves).
 */
function inspectS3(uri: string, maxAgeMs: number): S3Footer {
  const hit = s3InfoCache.get(uri);
  if (hit) {
    const hint = objectHint(uri, maxAgeMs);
    if (hint ? hint.etag === hit.etag : Date.now() - hit.checkedAt <= maxAgeMs) return hit;
    if (!hint) {
      const o = statObjectSync(uri);
      noteObjects([o], objectHint(uri, Infinity)?.group);
      if (o.etag === hit.etag) {
        hit.checkedAt = Date.now();
        return hit;
      }
    }
  }
  // This object, plus the others of its listing whose footers are not cached yet.
  const group = (objectHint(uri)?.group ?? []).filter((u) => {
    if (u === uri) return false;
    const h = objectHint(u);
    const c = s3InfoCache.get(u);
    return h !== undefined && (!c || c.etag !== h.etag);
  });
  const failure = fetchS3Footers([uri, ...group.slice(0, 1023)]).get(uri);
  if (failure) throw failure;
  return s3InfoCache.get(uri)!;
}

/** Fetch and cache footers (one parallel batch); returns the errors by URI. */
function fetchS3Footers(uris: readonly string[]): Map<string, Error> {
  const requests: TailRequest[] = uris.map((u) => {
    const h = objectHint(u);
    return h ? { uri: u, size: h.size, etag: h.etag } : { uri: u };
  });
  const errors = new Map<string, Error>();
  for (const r of parquetTailsSync(requests)) {
    try {
      if ('error' in r) throw Object.assign(new Error(r.error.message), { code: r.error.code });
      s3CacheSet(r.uri, footerFromTail(r.uri, r.size, r.etag, r.offset, r.bytes, r.head));
    } catch (e) {
      errors.set(r.uri, e as Error);
    }
  }
  return errors;
}

/** Footers of many files at once (one parallel round for the s3:// URIs among them). */
export function inspectParquetMany(paths: readonly string[]): ParquetFileInfo[] {
  const missing = paths.filter((p) => !isLocalUri(p) && !s3InfoCache.has(p));
  if (missing.length > 1) fetchS3Footers([...new Set(missing)]);
  return paths.map((p) => inspectParquet(p));
}

function buildInfo(path: string, size: number, md: FileMetaData): ParquetFileInfo {
  const tree = parquetSchema(md);
  const fromArrow = arrowSchemaFromMetadata(md);
  const fields: Field[] = [];
  const unsupported: { name: string; reason: string }[] = [];
  for (const node of tree.children) {
    const name = node.element.name;
    const nullable = node.element.repetition_type !== 'REQUIRED';
    let mapped: Mapped;
    const af = fromArrow?.fields.find((f) => f.name === name);
    if (af) mapped = mapArrowType(af.type);
    else mapped = mapParquetNode(node);
    if (typeof mapped === 'string') unsupported.push({ name, reason: mapped });
    else fields.push(Field.fromJSON({ name, type: mapped, nullable: af ? af.nullable : nullable }));
  }
  const schema = new Schema(fields);

  // Leaf columns by top-level name (only depth-1 leaves carry usable min/max for pruning).
  const leaves = new Map<string, LeafInfo>();
  const leafElements = md.schema.filter((e) => e.type !== undefined);
  if (md.row_groups[0]) {
    md.row_groups[0].columns.forEach((c, i) => {
      const p = c.meta_data?.path_in_schema;
      if (p && p.length === 1 && leafElements[i]) leaves.set(p[0]!, { column: i, element: leafElements[i]! });
    });
  }
  const rowGroups: RowGroupInfo[] = md.row_groups.map((rg, index) => {
    const stats: Record<string, ColumnStats> = {};
    for (const f of schema.fields) {
      const leaf = leaves.get(f.name);
      if (!leaf || f.type.isNested()) continue;
      const s = rg.columns[leaf.column]?.meta_data?.statistics;
      stats[f.name] = convertStats(s, f.type.json, leaf.element);
    }
    let compressed = rg.total_compressed_size !== undefined ? Number(rg.total_compressed_size) : 0;
    if (rg.total_compressed_size === undefined) {
      for (const c of rg.columns) compressed += Number(c.meta_data?.total_compressed_size ?? 0n);
    }
    return {
      index,
      numRows: Number(rg.num_rows),
      uncompressedBytes: Number(rg.total_byte_size),
      compressedBytes: compressed,
      stats,
    };
  });
  return { path, sizeBytes: size, numRows: Number(md.num_rows), schema, rowGroups, unsupportedColumns: unsupported };
}

/** The Arrow schema arrow-rs embedded (`ARROW:schema`, base64 IPC message), or null. */
function arrowSchemaFromMetadata(md: FileMetaData): arrow.Schema | null {
  const kv = md.key_value_metadata?.find((k) => k.key === 'ARROW:schema');
  if (!kv?.value) return null;
  try {
    const bytes = Buffer.from(kv.value, 'base64');
    const reader = arrow.RecordBatchReader.from(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    reader.open();
    return reader.schema ?? null;
  } catch {
    return null; // unreadable hint: the Parquet schema alone still describes the data
  }
}

/** A DataType, or a string saying why the column is unsupported. */
type Mapped = DataTypeJSON | string;

function mapArrowType(t: arrow.DataType): Mapped {
  switch (t.typeId) {
    case arrow.Type.Null: return { kind: 'null' };
    case arrow.Type.Bool: return { kind: 'bool' };
    case arrow.Type.Int: {
      const i = t as arrow.Int;
      return { kind: `${i.isSigned ? 'int' : 'uint'}${i.bitWidth}` } as DataTypeJSON;
    }
    case arrow.Type.Float: {
      const p = (t as arrow.Float).precision;
      return { kind: p === arrow.Precision.DOUBLE ? 'float64' : 'float32' };
    }
    case arrow.Type.Utf8: case arrow.Type.LargeUtf8: case arrow.Type.Utf8View: return { kind: 'utf8' };
    case arrow.Type.Binary: case arrow.Type.LargeBinary: case arrow.Type.BinaryView: case arrow.Type.FixedSizeBinary:
      return { kind: 'binary' };
    case arrow.Type.Date: return { kind: 'date' };
    case arrow.Type.Timestamp: {
      const ts = t as arrow.Timestamp;
      return { kind: 'timestamp', unit: ARROW_UNITS[ts.unit]!, tz: ts.timezone ?? null };
    }
    case arrow.Type.Time: return { kind: (t as arrow.Time).bitWidth === 32 ? 'int32' : 'int64' };
    case arrow.Type.Duration: return { kind: 'int64' };
    case arrow.Type.Decimal: return { kind: 'float64' };
    case arrow.Type.Dictionary: return mapArrowType((t as arrow.Dictionary).dictionary);
    case arrow.Type.List: case arrow.Type.LargeList: {
      const c = mapArrowType(t.children[0]!.type);
      return typeof c === 'string' ? c : { kind: 'list', child: c };
    }
    case arrow.Type.FixedSizeList: {
      const c = mapArrowType(t.children[0]!.type);
      return typeof c === 'string' ? c : { kind: 'fixedSizeList', child: c, size: (t as arrow.FixedSizeList).listSize };
    }
    case arrow.Type.Map: {
      // map<k, v> reads as list<struct<key, value>>: same physical layout.
      const entries = mapArrowType(t.children[0]!.type);
      return typeof entries === 'string' ? entries : { kind: 'list', child: entries };
    }
    case arrow.Type.Struct: {
      const fields: FieldJSON[] = [];
      for (const f of t.children as arrow.Field[]) {
        const m = mapArrowType(f.type);
        if (typeof m === 'string') return m;
        fields.push({ name: f.name, type: m, nullable: f.nullable });
      }
      return { kind: 'struct', fields };
    }
    default:
      return `Arrow type ${String(t)} is not supported`;
  }
}

const ARROW_UNITS: Record<number, TimeUnit> = {
  [arrow.TimeUnit.SECOND]: 's', [arrow.TimeUnit.MILLISECOND]: 'ms', [arrow.TimeUnit.MICROSECOND]: 'us', [arrow.TimeUnit.NANOSECOND]: 'ns',
};
const PARQUET_UNITS: Record<string, TimeUnit> = { MILLIS: 'ms', MICROS: 'us', NANOS: 'ns' };

/** Parquet schema node -> DataType, following arrow-rs (what parquet-wasm returns) for files without ARROW:schema. */
function mapParquetNode(node: SchemaTree): Mapped {
  const e = node.element;
  const inner = e.repetition_type === 'REPEATED' ? mapParquetInner(node) : null;
  if (inner !== null) return typeof inner === 'string' ? inner : { kind: 'list', child: inner }; // legacy bare repeated field
  return mapParquetInner(node);
}

function mapParquetInner(node: SchemaTree): Mapped {
  const e = node.element;
  if (e.type !== undefined) return mapParquetLeaf(e);
  const lt = e.logical_type?.type;
  const ct = e.converted_type;
  if (lt === 'LIST' || ct === 'LIST') {
    const rep = node.children[0];
    if (!rep || node.children.length !== 1) return `malformed LIST column '${e.name}'`;
    let element: Mapped;
    // Backward-compatibility rules of the Parquet LIST spec (2-level legacy layouts).
    if (rep.element.type !== undefined) element = mapParquetLeaf(rep.element);
    else if (rep.children.length > 1 || rep.element.name === 'array' || rep.element.name === `${e.name}_tuple`) element = mapStruct(rep);
    else element = mapParquetNode(rep.children[0]!);
    return typeof element === 'string' ? element : { kind: 'list', child: element };
  }
  if (lt === 'MAP' || ct === 'MAP' || ct === 'MAP_KEY_VALUE') {
    const kv = node.children[0];
    if (!kv || kv.children.length !== 2) return `malformed MAP column '${e.name}'`;
    const entries = mapStruct(kv);
    return typeof entries === 'string' ? entries : { kind: 'list', child: entries };
  }
  return mapStruct(node);
}

function mapStruct(node: SchemaTree): Mapped {
  const fields: FieldJSON[] = [];
  for (const c of node.children) {
    const m = mapParquetNode(c);
    if (typeof m === 'string') return m;
    fields.push({ name: c.element.name, type: m, nullable: c.element.repetition_type !== 'REQUIRED' });
  }
  if (fields.length === 0) return `empty group '${node.element.name}'`;
  return { kind: 'struct', fields };
}

function mapParquetLeaf(e: SchemaElement): Mapped {
  const lt = e.logical_type;
  const ct = e.converted_type;
  if (lt?.type === 'DECIMAL' || ct === 'DECIMAL') return { kind: 'float64' };
  switch (e.type) {
    case 'BOOLEAN': return { kind: 'bool' };
    case 'INT32':
      if (lt?.type === 'INTEGER') return { kind: `${lt.isSigned ? 'int' : 'uint'}${lt.bitWidth}` } as DataTypeJSON;
      if (lt?.type === 'DATE' || ct === 'DATE') return { kind: 'date' };
      if (lt?.type === 'TIME' || ct === 'TIME_MILLIS') return { kind: 'int32' };
      switch (ct) {
        case 'INT_8': return { kind: 'int8' };
        case 'INT_16': return { kind: 'int16' };
        case 'UINT_8': return { kind: 'uint8' };
        case 'UINT_16': return { kind: 'uint16' };
        case 'UINT_32': return { kind: 'uint32' };
        default: return { kind: 'int32' };
      }
    case 'INT64':
      if (lt?.type === 'INTEGER') return { kind: lt.isSigned ? 'int64' : 'uint64' };
      if (lt?.type === 'TIMESTAMP') return { kind: 'timestamp', unit: PARQUET_UNITS[lt.unit]!, tz: lt.isAdjustedToUTC ? 'UTC' : null };
      if (ct === 'TIMESTAMP_MILLIS') return { kind: 'timestamp', unit: 'ms', tz: 'UTC' };
      if (ct === 'TIMESTAMP_MICROS') return { kind: 'timestamp', unit: 'us', tz: 'UTC' };
      if (ct === 'UINT_64') return { kind: 'uint64' };
      return { kind: 'int64' }; // plain, INT_64, TIME_MICROS/NANOS (ticks)
    case 'INT96': return { kind: 'timestamp', unit: 'ns', tz: null };
    case 'FLOAT': return { kind: 'float32' };
    case 'DOUBLE': return { kind: 'float64' };
    case 'BYTE_ARRAY':
      if (lt?.type === 'STRING' || lt?.type === 'ENUM' || lt?.type === 'JSON' || ct === 'UTF8' || ct === 'ENUM' || ct === 'JSON') return { kind: 'utf8' };
      return { kind: 'binary' };
    case 'FIXED_LEN_BYTE_ARRAY':
      if (lt?.type === 'FLOAT16') return { kind: 'float32' };
      if (ct === 'INTERVAL' || lt?.type === 'INTERVAL') return `INTERVAL column '${e.name}' is not supported`;
      return { kind: 'binary' };
    default:
      return `Parquet type ${String(e.type)} of '${e.name}' is not supported`;
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

const UNIT_TICKS: Record<TimeUnit, bigint> = { s: 1n, ms: 1000n, us: 1000000n, ns: 1000000000n };
const utf8Decoder = new TextDecoder();

function convertStats(s: Statistics | undefined, type: DataTypeJSON, el: SchemaElement): ColumnStats {
  if (!s) return { min: null, max: null, nullCount: null };
  // Legacy min/max used signed byte-wise ordering: only trust them where that is the real order.
  const legacyOk = el.type === 'BOOLEAN' || el.type === 'FLOAT' || el.type === 'DOUBLE' ||
    ((el.type === 'INT32' || el.type === 'INT64') && !isUnsignedElement(el));
  const rawMin = s.min_value ?? (legacyOk ? s.min : undefined);
  const rawMax = s.max_value ?? (legacyOk ? s.max : undefined);
  return {
    min: convertStat(rawMin, type, el, false),
    max: convertStat(rawMax, type, el, true),
    nullCount: s.null_count === undefined ? null : Number(s.null_count),
  };
}

function isUnsignedElement(el: SchemaElement): boolean {
  return (el.converted_type?.startsWith('UINT_') ?? false) || (el.logical_type?.type === 'INTEGER' && !el.logical_type.isSigned);
}

function convertStat(v: unknown, type: DataTypeJSON, el: SchemaElement, isMax: boolean): Scalar | null {
  if (v === undefined || v === null) return null;
  switch (type.kind) {
    case 'bool': return typeof v === 'boolean' ? v : null;
    case 'int8': case 'int16': case 'int32': case 'uint8': case 'uint16': case 'uint32':
      if (typeof v === 'number') return v;
      if (typeof v === 'bigint') return Number(v);
      return null;
    case 'int64': case 'uint64':
      if (typeof v === 'bigint') return v;
      if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
      return null;
    case 'float32': case 'float64':
      if (typeof v === 'number') return Number.isNaN(v) ? null : v;
      if (typeof v === 'bigint') return Number(v);
      if (v instanceof Uint8Array && (el.logical_type?.type === 'DECIMAL' || el.converted_type === 'DECIMAL')) {
        return decimalBytesToNumber(v, el.scale ?? (el.logical_type?.type === 'DECIMAL' ? el.logical_type.scale : 0));
      }
      return null;
    case 'utf8':
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array) return utf8Decoder.decode(v);
      return null;
    case 'binary':
      if (v instanceof Uint8Array) return v;
      if (typeof v === 'string') return new TextEncoder().encode(v);
      return null;
    case 'date':
      if (typeof v === 'number') return v;
      if (v instanceof Date) return Math.floor(v.getTime() / 86400000);
      return null;
    case 'timestamp': {
      if (typeof v !== 'bigint' || el.type !== 'INT64') return null; // INT96 statistics are unusable
      const lt = el.logical_type;
      let src: TimeUnit | null = null;
      if (lt?.type === 'TIMESTAMP') src = PARQUET_UNITS[lt.unit]!;
      else if (el.converted_type === 'TIMESTAMP_MILLIS') src = 'ms';
      else if (el.converted_type === 'TIMESTAMP_MICROS') src = 'us';
      return rescaleTicks(v, src ?? type.unit, type.unit, isMax);
    }
    default:
      return null;
  }
}

function rescaleTicks(v: bigint, from: TimeUnit, to: TimeUnit, roundUp: boolean): bigint {
  const f = UNIT_TICKS[from];
  const t = UNIT_TICKS[to];
  if (f === t) return v;
  if (t > f) return v * (t / f);
  const d = f / t;
  let q = v / d; // truncates toward zero
  const r = v % d;
  if (r !== 0n) {
    if (v < 0n && !roundUp) q -= 1n; // floor for lower bounds
    if (v > 0n && roundUp) q += 1n; // ceil for upper bounds
  }
  return q;
}

/** Big-endian two's complement unscaled decimal -> number. */
function decimalBytesToNumber(b: Uint8Array, scale: number): number {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  if (b.length > 0 && b[0]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return Number(v) / 10 ** scale;
}

// ---------------------------------------------------------------------------------------------
// Arrow C data interface import (wasm32 layout). We read parquet-wasm's exported arrays ourselves
// rather than through arrow-js-ffi because we must also convert to our one-layout-per-DataType
// rule (LargeUtf8 -> Utf8, dictionary -> plain, Date64 -> Date32, decimal -> float64...), honour
// array offsets, and copy each buffer exactly once out of wasm memory.

interface FfiSchemaNode { format: string; name: string; children: FfiSchemaNode[]; dictionary: FfiSchemaNode | null }

function readCString(u8: Uint8Array, ptr: number): string {
  let end = ptr;
  while (u8[end] !== 0) end++;
  return utf8Decoder.decode(u8.subarray(ptr, end));
}

function readFfiSchema(mem: ArrayBuffer, ptr: number): FfiSchemaNode {
  const dv = new DataView(mem);
  const u8 = new Uint8Array(mem);
  const walk = (p: number): FfiSchemaNode => {
    const format = readCString(u8, dv.getUint32(p, true));
    const namePtr = dv.getUint32(p + 4, true);
    const name = namePtr ? readCString(u8, namePtr) : '';
    const nChildren = Number(dv.getBigInt64(p + 24, true));
    const childrenPtr = dv.getUint32(p + 32, true);
    const dictPtr = dv.getUint32(p + 36, true);
    const children: FfiSchemaNode[] = [];
    for (let i = 0; i < nChildren; i++) children.push(walk(dv.getUint32(childrenPtr + 4 * i, true)));
    return { format, name, children, dictionary: dictPtr ? walk(dictPtr) : null };
  };
  return walk(ptr);
}

type AnyTypedArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array |
  BigInt64Array | BigUint64Array | Float32Array | Float64Array;
type TypedCtor = (new (length: number) => AnyTypedArray) & (new (buffer: ArrayBuffer, byteOffset?: number, length?: number) => AnyTypedArray) & { BYTES_PER_ELEMENT: number };

/** Physical element type of primitive C-data formats. */
function formatCtor(fmt: string): TypedCtor | null {
  switch (fmt) {
    case 'c': return Int8Array as unknown as TypedCtor;
    case 'C': return Uint8Array as unknown as TypedCtor;
    case 's': return Int16Array as unknown as TypedCtor;
    case 'S': return Uint16Array as unknown as TypedCtor;
    case 'i': case 'tdD': case 'tts': case 'ttm': return Int32Array as unknown as TypedCtor;
    case 'I': return Uint32Array as unknown as TypedCtor;
    case 'l': case 'tdm': case 'ttu': case 'ttn': return BigInt64Array as unknown as TypedCtor;
    case 'L': return BigUint64Array as unknown as TypedCtor;
    case 'f': return Float32Array as unknown as TypedCtor;
    case 'g': return Float64Array as unknown as TypedCtor;
    default:
      if (fmt.startsWith('ts') || fmt.startsWith('tD')) return BigInt64Array as unknown as TypedCtor;
      return null;
  }
}

function targetCtor(kind: DataTypeJSON['kind']): TypedCtor | null {
  switch (kind) {
    case 'int8': return Int8Array as unknown as TypedCtor;
    case 'uint8': return Uint8Array as unknown as TypedCtor;
    case 'int16': return Int16Array as unknown as TypedCtor;
    case 'uint16': return Uint16Array as unknown as TypedCtor;
    case 'int32': case 'date': return Int32Array as unknown as TypedCtor;
    case 'uint32': return Uint32Array as unknown as TypedCtor;
    case 'int64': case 'timestamp': return BigInt64Array as unknown as TypedCtor;
    case 'uint64': return BigUint64Array as unknown as TypedCtor;
    case 'float32': return Float32Array as unknown as TypedCtor;
    case 'float64': return Float64Array as unknown as TypedCtor;
    default: return null;
  }
}

const INT_RANGE: Partial<Record<DataTypeJSON['kind'], [number, number]>> = {
  int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
  int32: [-2147483648, 2147483647], uint32: [0, 4294967295],
};

const EMPTY_BITMAP = new Uint8Array(0);
const POPCOUNT = new Uint8Array(256).map((_, i) => { let c = 0; for (let x = i; x; x >>= 1) c += x & 1; return c; });

/** Count set bits among the first n bits. */
function popcount(bits: Uint8Array, n: number): number {
  let c = 0;
  const full = n >> 3;
  for (let i = 0; i < full; i++) c += POPCOUNT[bits[i]!]!;
  const rem = n & 7;
  if (rem) c += POPCOUNT[bits[full]! & ((1 << rem) - 1)]!;
  return c;
}

type DataBuffers = ConstructorParameters<typeof arrow.Data>[4];

function makeArrowData(type: arrow.DataType, length: number, nullCount: number, validity: Uint8Array | null,
  values?: ArrayBufferView, offsets?: Int32Array, children: arrow.Data[] = []): arrow.Data {
  const buffers = [offsets, values, nullCount > 0 && validity ? validity : EMPTY_BITMAP] as unknown as DataBuffers;
  return new arrow.Data(type, 0, length, nullCount > 0 ? nullCount : 0, buffers, children);
}

interface ArrayHeader {
  length: number; nullCount: number; offset: number; nBuffers: number;
  buffersPtr: number; childrenPtr: number; dictPtr: number;
}

class FfiImporter {
  private readonly dv: DataView;
  private readonly u8: Uint8Array;
  constructor(private readonly mem: ArrayBuffer, private readonly where: string) {
    this.dv = new DataView(mem);
    this.u8 = new Uint8Array(mem);
  }

  private header(p: number): ArrayHeader {
    const dv = this.dv;
    return {
      length: Number(dv.getBigInt64(p, true)),
      nullCount: Number(dv.getBigInt64(p + 8, true)),
      offset: Number(dv.getBigInt64(p + 16, true)),
      nBuffers: Number(dv.getBigInt64(p + 24, true)),
      buffersPtr: dv.getUint32(p + 40, true),
      childrenPtr: dv.getUint32(p + 44, true),
      dictPtr: dv.getUint32(p + 48, true),
    };
  }
  private buffer(h: ArrayHeader, i: number): number { return i < h.nBuffers ? this.dv.getUint32(h.buffersPtr + 4 * i, true) : 0; }
  private child(h: ArrayHeader, i: number): number { return this.dv.getUint32(h.childrenPtr + 4 * i, true); }

  private fail(msg: string): never { throw new Error(`${this.where}: ${msg}`); }

  /** Copy bits [bitStart, bitStart + n) into a fresh bitmap starting at bit 0. */
  private copyBits(ptr: number, bitStart: number, n: number): Uint8Array {
    const nBytes = (n + 7) >> 3;
    const byte0 = ptr + (bitStart >> 3);
    const shift = bitStart & 7;
    if (shift === 0) return new Uint8Array(this.mem.slice(byte0, byte0 + nBytes));
    const out = new Uint8Array(nBytes);
    const src = this.u8;
    const last = ptr + ((bitStart + n - 1) >> 3);
    for (let i = 0; i < nBytes; i++) {
      const a = src[byte0 + i]!;
      const b = byte0 + i + 1 <= last ? src[byte0 + i + 1]! : 0;
      out[i] = ((a >> shift) | (b << (8 - shift))) & 0xff;
    }
    return out;
  }

  /** Validity of the window, or null when it has no nulls. */
  private validity(h: ArrayHeader, start: number, n: number): { bits: Uint8Array | null; nulls: number } {
    const ptr = this.buffer(h, 0);
    if (ptr === 0 || h.nullCount === 0 || n === 0) return { bits: null, nulls: 0 };
    const bits = this.copyBits(ptr, start, n);
    const nulls = n - popcount(bits, n);
    return nulls === 0 ? { bits: null, nulls: 0 } : { bits, nulls };
  }

  /** Import one column (window [h.offset + extra, +len)) as `target` with arrow type `type`. */
  importData(p: number, node: FfiSchemaNode, target: DataTypeJSON, type: arrow.DataType, extra: number, len: number | null): arrow.Data {
    const h = this.header(p);
    const start = h.offset + extra;
    const n = len ?? h.length;
    if (node.dictionary && h.dictPtr) return this.importDictionary(h, node, target, type, start, n);
    const fmt = node.format;
    if (fmt === 'n') return nullData(target, type, n);
    switch (target.kind) {
      case 'null':
        return this.fail(`cannot read a column of format '${fmt}' as null`);
      case 'bool': {
        if (fmt !== 'b') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const values = this.copyBits(this.buffer(h, 1), start, n);
        return makeArrowData(type, n, nulls, bits, values);
      }
      case 'int8': case 'int16': case 'int32': case 'int64':
      case 'uint8': case 'uint16': case 'uint32': case 'uint64':
      case 'float32': case 'float64': case 'date': case 'timestamp': {
        const { bits, nulls } = this.validity(h, start, n);
        const values = this.primitive(h, fmt, target, start, n);
        return makeArrowData(type, n, nulls, bits, values);
      }
      case 'utf8': case 'binary': {
        const { bits, nulls } = this.validity(h, start, n);
        const { offsets, data } = this.varBinary(h, fmt, target, start, n);
        return makeArrowData(type, n, nulls, bits, data, offsets);
      }
      case 'list': {
        if (fmt !== '+l' && fmt !== '+L' && fmt !== '+m') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const offsets = this.offsets(this.buffer(h, 1), fmt === '+L', start, n);
        const base = offsets.base;
        const child = this.importData(this.child(h, 0), node.children[0]!, target.child, type.children[0]!.type,
          base, offsets.values[n]!);
        return makeArrowData(type, n, nulls, bits, undefined, offsets.values, [child]);
      }
      case 'fixedSizeList': {
        if (!fmt.startsWith('+w:')) return this.incompatible(fmt, target);
        const size = Number(fmt.slice(3));
        if (size !== target.size) this.fail(`fixed-size list of ${size} cannot be read as ${target.size}`);
        const { bits, nulls } = this.validity(h, start, n);
        const child = this.importData(this.child(h, 0), node.children[0]!, target.child, type.children[0]!.type, start * size, n * size);
        return makeArrowData(type, n, nulls, bits, undefined, undefined, [child]);
      }
      case 'struct': {
        if (fmt !== '+s') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const children = target.fields.map((f, i) => {
          const ci = node.children.findIndex((c) => c.name === f.name);
          if (ci < 0) this.fail(`struct field '${f.name}' missing from decoded data`);
          return this.importData(this.child(h, ci), node.children[ci]!, f.type, type.children[i]!.type, start, n);
        });
        return makeArrowData(type, n, nulls, bits, undefined, undefined, children);
      }
    }
    return this.incompatible(fmt, target);
  }

  private incompatible(fmt: string, target: DataTypeJSON): never {
    return this.fail(`decoded data of Arrow C format '${fmt}' cannot be read as ${JSON.stringify(target)}`);
  }

  /** Offsets [start, start + n] rebased to 0; `base` is the first original offset. */
  private offsets(ptr: number, large: boolean, start: number, n: number): { values: Int32Array; base: number } {
    const out = new Int32Array(n + 1);
    if (n === 0 && ptr === 0) return { values: out, base: 0 };
    if (!large) {
      const src = new Int32Array(this.mem, ptr + 4 * start, n + 1);
      const base = src[0]!;
      if (base === 0) out.set(src);
      else for (let i = 0; i <= n; i++) out[i] = src[i]! - base;
      return { values: out, base };
    }
    const src = new BigInt64Array(this.mem, ptr + 8 * start, n + 1);
    const base = Number(src[0]!);
    if (Number(src[n]!) - base > 0x7fffffff) this.fail('a batch holds more than 2 GiB of values; use a smaller batchSize');
    for (let i = 0; i <= n; i++) out[i] = Number(src[i]!) - base;
    return { values: out, base };
  }

  private varBinary(h: ArrayHeader, fmt: string, target: DataTypeJSON, start: number, n: number): { offsets: Int32Array; data: Uint8Array } {
    if (fmt === 'u' || fmt === 'z' || fmt === 'U' || fmt === 'Z') {
      const { values, base } = this.offsets(this.buffer(h, 1), fmt === 'U' || fmt === 'Z', start, n);
      const dataPtr = this.buffer(h, 2);
      const data = new Uint8Array(this.mem.slice(dataPtr + base, dataPtr + base + values[n]!));
      return { offsets: values, data };
    }
    if (fmt.startsWith('w:') && target.kind === 'binary') {
      const w = Number(fmt.slice(2));
      const dataPtr = this.buffer(h, 1);
      const data = new Uint8Array(this.mem.slice(dataPtr + start * w, dataPtr + (start + n) * w));
      const offsets = new Int32Array(n + 1);
      for (let i = 0; i <= n; i++) offsets[i] = i * w;
      return { offsets, data };
    }
    return this.incompatible(fmt, target);
  }

  /** Fixed-width values of the window as the target's typed array (converting where needed). */
  private primitive(h: ArrayHeader, fmt: string, target: DataTypeJSON, start: number, n: number): AnyTypedArray {
    const ptr = this.buffer(h, 1);
    const tctor = targetCtor(target.kind)!;
    if (fmt.startsWith('d:')) return this.decimal(ptr, fmt, target, start, n);
    if (fmt === 'e') {
      if (target.kind !== 'float32' && target.kind !== 'float64') return this.incompatible(fmt, target);
      const src = new Uint16Array(this.mem, ptr + 2 * start, n);
      const out = new tctor(n) as Float32Array | Float64Array;
      for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]!);
      return out;
    }
    const sctor = formatCtor(fmt);
    if (!sctor) return this.incompatible(fmt, target);
    const w = sctor.BYTES_PER_ELEMENT;
    // Same physical layout and meaning: one copy.
    if (sctor === tctor && sameMeaning(fmt, target)) {
      return new tctor(this.mem.slice(ptr + w * start, ptr + w * (start + n)));
    }
    const src = new sctor(this.mem, ptr + w * start, n);
    if (target.kind === 'date') {
      if (fmt !== 'tdm') return this.incompatible(fmt, target);
      const out = new Int32Array(n);
      const s = src as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = Math.floor(Number(s[i]!) / 86400000);
      return out;
    }
    if (target.kind === 'timestamp') {
      if (!fmt.startsWith('ts')) return this.incompatible(fmt, target);
      const from = ({ s: 's', m: 'ms', u: 'us', n: 'ns' } as const)[fmt[2] as 's' | 'm' | 'u' | 'n'];
      const out = new BigInt64Array(n);
      const s = src as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = rescaleTicks(s[i]!, from, target.unit, false);
      return out;
    }
    // Numeric casts (e.g. a dataset schema unified to a wider type than this file's).
    if (!/^[cCsSiIlLfg]$/.test(fmt) && !fmt.startsWith('tt') && !fmt.startsWith('tD')) return this.incompatible(fmt, target);
    const srcFloat = fmt === 'f' || fmt === 'g';
    const tgtFloat = target.kind === 'float32' || target.kind === 'float64';
    if (srcFloat && !tgtFloat) return this.fail(`cannot read floating-point data as ${target.kind}`);
    const out = new tctor(n);
    if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
      const lo = out instanceof BigUint64Array ? 0n : -(1n << 63n);
      const hi = out instanceof BigUint64Array ? (1n << 64n) - 1n : (1n << 63n) - 1n;
      for (let i = 0; i < n; i++) {
        const v = BigInt(src[i]!);
        if (v < lo || v > hi) this.fail(`value ${v} out of range for ${target.kind}`);
        out[i] = v;
      }
    } else {
      const range = INT_RANGE[target.kind];
      const o = out as Float64Array;
      for (let i = 0; i < n; i++) {
        const v = Number(src[i]!);
        if (range && (v < range[0] || v > range[1])) this.fail(`value ${v} out of range for ${target.kind}`);
        o[i] = v;
      }
    }
    return out;
  }

  private decimal(ptr: number, fmt: string, target: DataTypeJSON, start: number, n: number): AnyTypedArray {
    if (target.kind !== 'float64' && target.kind !== 'float32') return this.incompatible(fmt, target);
    const parts = fmt.slice(2).split(',').map(Number);
    const scale = parts[1] ?? 0;
    const bits = parts[2] ?? 128;
    const w = bits / 8;
    const out = target.kind === 'float64' ? new Float64Array(n) : new Float32Array(n);
    const dv = this.dv;
    const div = 10 ** scale;
    for (let i = 0; i < n; i++) {
      const p = ptr + (start + i) * w;
      let v: number;
      if (w === 4) v = dv.getInt32(p, true);
      else if (w === 8) v = Number(dv.getBigInt64(p, true));
      else {
        // little-endian words, most significant word signed
        v = Number(dv.getBigInt64(p + w - 8, true));
        for (let k = w - 16; k >= 0; k -= 8) v = v * 18446744073709551616 + Number(dv.getBigUint64(p + k, true));
      }
      out[i] = v / div;
    }
    return out;
  }

  private importDictionary(h: ArrayHeader, node: FfiSchemaNode, target: DataTypeJSON, type: arrow.DataType, start: number, n: number): arrow.Data {
    const ictor = formatCtor(node.format);
    if (!ictor || !/^[cCsSiIlL]$/.test(node.format)) this.fail(`unsupported dictionary index format '${node.format}'`);
    const dict = this.importData(h.dictPtr, node.dictionary!, target, type, 0, null);
    const idxSrc = new ictor(this.mem, this.buffer(h, 1) + ictor.BYTES_PER_ELEMENT * start, n);
    const { bits: idxBits } = this.validity(h, start, n);
    const valid = new Uint8Array((n + 7) >> 3);
    const idx = new Int32Array(n);
    let nulls = 0;
    const dictValid = dict.nullCount > 0 ? dict.nullBitmap : null;
    for (let i = 0; i < n; i++) {
      const k = Number(idxSrc[i]!);
      const ok = (!idxBits || (idxBits[i >> 3]! >> (i & 7)) & 1) && (!dictValid || (dictValid[k >> 3]! >> (k & 7)) & 1);
      if (ok) { valid[i >> 3]! |= 1 << (i & 7); idx[i] = k; } else { nulls++; idx[i] = 0; }
    }
    if (n > 0 && dict.length === 0 && nulls < n) this.fail('dictionary index into an empty dictionary');
    return gather(dict, idx, valid, nulls, type);
  }
}

function sameMeaning(fmt: string, target: DataTypeJSON): boolean {
  if (target.kind === 'timestamp') return fmt.startsWith('ts') && fmt[2] === target.unit[0];
  if (target.kind === 'date') return fmt === 'tdD';
  return true;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Dictionary values gathered into a plain array (utf8/binary and fixed-width types). */
function gather(dict: arrow.Data, idx: Int32Array, valid: Uint8Array, nulls: number, type: arrow.DataType): arrow.Data {
  const n = idx.length;
  if (dict.valueOffsets && (arrow.DataType.isUtf8(dict.type) || arrow.DataType.isBinary(dict.type))) {
    const dOff = dict.valueOffsets as Int32Array;
    const dVal = dict.values as Uint8Array;
    const offsets = new Int32Array(n + 1);
    let total = 0;
    for (let i = 0; i < n; i++) {
      if ((valid[i >> 3]! >> (i & 7)) & 1) total += dOff[idx[i]! + 1]! - dOff[idx[i]!]!;
      offsets[i + 1] = total;
    }
    const data = new Uint8Array(total);
    for (let i = 0; i < n; i++) {
      const len = offsets[i + 1]! - offsets[i]!;
      if (len) data.set(dVal.subarray(dOff[idx[i]!]!, dOff[idx[i]!]! + len), offsets[i]!);
    }
    return makeArrowData(type, n, nulls, valid, data, offsets);
  }
  if (arrow.DataType.isBool(dict.type)) {
    const src = dict.values as Uint8Array;
    const out = new Uint8Array((n + 7) >> 3);
    for (let i = 0; i < n; i++) if ((src[idx[i]! >> 3]! >> (idx[i]! & 7)) & 1) out[i >> 3]! |= 1 << (i & 7);
    return makeArrowData(type, n, nulls, valid, out);
  }
  const src = dict.values as AnyTypedArray;
  if (!src || dict.children.length) throw new Error(`dictionary-encoded ${String(dict.type)} columns are not supported`);
  const out = new (src.constructor as TypedCtor)(n);
  for (let i = 0; i < n; i++) (out as Float64Array)[i] = (src as Float64Array)[idx[i]!]!;
  return makeArrowData(type, n, nulls, valid, out);
}

/** An all-null column of `target` (for a Null-typed source column). */
function nullData(target: DataTypeJSON, type: arrow.DataType, n: number): arrow.Data {
  const valid = new Uint8Array((n + 7) >> 3);
  switch (target.kind) {
    case 'null': return new arrow.Data(type, 0, n, n);
    case 'bool': return makeArrowData(type, n, n, valid, new Uint8Array((n + 7) >> 3));
    case 'utf8': case 'binary': return makeArrowData(type, n, n, valid, new Uint8Array(0), new Int32Array(n + 1));
    case 'list': return makeArrowData(type, n, n, valid, undefined, new Int32Array(n + 1), [nullData(target.child, type.children[0]!.type, 0)]);
    case 'fixedSizeList': return makeArrowData(type, n, n, valid, undefined, undefined, [nullData(target.child, type.children[0]!.type, n * target.size)]);
    case 'struct': return makeArrowData(type, n, n, valid, undefined, undefined, target.fields.map((f, i) => nullData(f.type, type.children[i]!.type, n)));
    default: return makeArrowData(type, n, n, valid, new (targetCtor(target.kind)!)(n));
  }
}

function emptyColumnsBatch(length: number): arrow.RecordBatch {
  const schema = new arrow.Schema([]);
  return new arrow.RecordBatch(schema, new arrow.Data(new arrow.Struct([]), 0, length, 0, undefined, []) as arrow.Data<arrow.Struct>);
}

// ---------------------------------------------------------------------------------------------
// Reading

interface OpenFile { inst: WasmInstance; pf: PW.ParquetFile }

async function openParquetFile(path: string, s3Blob: RangedBlob | null): Promise<OpenFile> {
  const inst = await getWasm();
  // Lazily read slices: only the ranges parquet-wasm asks for (local file or ranged GETs).
  const blob = s3Blob ? (s3Blob as unknown as Blob) : await openObjectBlob(path);
  const pf = await withReadLock(() => guarded(inst, () => inst.pw.ParquetFile.fromFile(blob)));
  return { inst, pf };
}

/** For an s3:// path: a blob over the object version the footer came from, holding the footer bytes. */
function s3BlobFor(path: string): { blob: RangedBlob; chunks: ChunkRanges } {
  const f = inspectS3(path, Infinity);
  return { blob: openRangedBlob(path, f.size, f.tail ? { etag: f.etag, tail: f.tail } : { etag: f.etag }), chunks: f.chunks };
}

/**
 * Stream a Parquet file as Arrow record batches, one row group at a time (never the whole file),
 * conforming exactly to `schema.select(columns).toArrow()`.
 */
export async function* readParquetBatches(path: string, opts: ReadParquetOptions = {}): AsyncGenerator<arrow.RecordBatch> {
  const remote = isLocalUri(path) ? null : s3BlobFor(path);
  const info = remote ? inspectS3(path, Infinity).info : inspectParquet(path);
  const fileSchema = opts.schema ?? info.schema;
  const names = opts.columns ? [...opts.columns] : fileSchema.names;
  for (const n of names) {
    if (!info.schema.has(n)) {
      const why = info.unsupportedColumns.find((u) => u.name === n);
      if (why) throw new Error(`column '${n}' of ${path} cannot be read: ${why.reason}`);
      throw new ColumnNotFoundError(n, info.schema.names, path);
    }
    if (!fileSchema.has(n)) throw new ColumnNotFoundError(n, fileSchema.names, `the schema given for ${path}`);
  }
  const outSchema = fileSchema.select(names);
  const arrowSchema = outSchema.toArrow();
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const rowGroups = opts.rowGroups ? [...opts.rowGroups] : info.rowGroups.map((g) => g.index);
  for (const g of rowGroups) {
    if (!Number.isInteger(g) || g < 0 || g >= info.rowGroups.length) {
      throw new RangeError(`row group ${g} out of range for ${path} (${info.rowGroups.length} row groups)`);
    }
  }

  if (names.length === 0) {
    // Nothing to decode: row counts come from the footer.
    for (const g of rowGroups) {
      for (let left = info.rowGroups[g]!.numRows; left > 0; left -= batchSize) yield emptyColumnsBatch(Math.min(left, batchSize));
    }
    return;
  }

  // S3: fetch the projected column chunks of this row group and the next while decoding.
  const prefetch = (i: number): void => {
    const g = rowGroups[i];
    if (!remote || g === undefined) return;
    remote.blob.prefetch(names.flatMap((n) => remote.chunks[g]?.get(n) ?? []), `rg${g}`);
  };
  let file: OpenFile | null = null;
  try {
    for (let gi = 0; gi < rowGroups.length; gi++) {
      const g = rowGroups[gi]!;
      if (info.rowGroups[g]!.numRows === 0) continue;
      prefetch(gi);
      prefetch(gi + 1);
      // Batches of this row group already yielded: if another reader's corrupt file kills the
      // shared parquet-wasm instance mid-row-group, we re-decode on a fresh one and skip them.
      let delivered = 0;
      for (let attempt = 0; ; attempt++) {
        if (!file || file.inst.dead) {
          try {
            file = await openParquetFile(path, remote?.blob ?? null);
          } catch (e) {
            throw new Error(`cannot open Parquet file ${path}: ${errorText(s3Changed(path, remote?.blob.takeError() ?? e))}`);
          }
        }
        const { inst, pf } = file;
        let stream: PW.FFIStream;
        try {
          const table = await withReadLock(() => guarded(inst, () => pf.read({ rowGroups: [g], columns: names, batchSize })));
          stream = wasmSync(inst, () => table.intoFFI());
          readStats.rowGroupsRead++;
        } catch (e) {
          // A failed ranged read surfaces from parquet-wasm as a trap: report the read's own error.
          throw new Error(`failed to decode row group ${g} of ${path}: ${errorText(s3Changed(path, remote?.blob.takeError() ?? e))}`);
        } finally {
          remote?.blob.evict(`rg${g}`); // decoded (or failed): its bytes are no longer needed
        }
        let interrupted = false;
        try {
          const nBatches = wasmSync(inst, () => stream.numArrays());
          const addrs = wasmSync(inst, () => stream.arrayAddrs());
          const schemaPtr = wasmSync(inst, () => stream.schemaAddr());
          const node = readFfiSchema(inst.pw.wasmMemory().buffer as ArrayBuffer, schemaPtr);
          const childIndex = names.map((n) => {
            const i = node.children.findIndex((c) => c.name === n);
            if (i < 0) throw new Error(`failed to decode row group ${g} of ${path}: column '${n}' missing from decoded data`);
            return i;
          });
          for (let b = delivered; b < nBatches; b++) {
            if (inst.dead) { interrupted = true; break; }
            // Re-read memory.buffer each time: wasm memory may have grown (and detached it) meanwhile.
            const mem = inst.pw.wasmMemory().buffer as ArrayBuffer;
            const importer = new FfiImporter(mem, `${path} row group ${g}`);
            const arrPtr = addrs[b]!;
            const dv = new DataView(mem);
            const length = Number(dv.getBigInt64(arrPtr, true));
            const parentOffset = Number(dv.getBigInt64(arrPtr + 16, true)); // a sliced batch offsets its columns
            const childrenPtr = dv.getUint32(arrPtr + 44, true);
            const columns = outSchema.fields.map((f, i) => importer.importData(
              dv.getUint32(childrenPtr + 4 * childIndex[i]!, true), node.children[childIndex[i]!]!, f.type.json,
              arrowSchema.fields[i]!.type, parentOffset, length));
            const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, length, 0, undefined, columns) as arrow.Data<arrow.Struct>;
            readStats.batchesRead++;
            readStats.rowsRead += length;
            delivered++;
            yield new arrow.RecordBatch(arrowSchema, data);
          }
        } finally {
          if (!inst.dead) stream.free();
        }
        if (!interrupted) break;
        if (attempt >= 2) throw new Error(`failed to decode row group ${g} of ${path}: ${errorText(inst.dead)}`);
      }
    }
  } finally {
    if (file && !file.inst.dead) file.pf.free();
  }
}

/** Bytes of WebAssembly memory parquet-wasm holds in this thread (it grows, never shrinks); 0 before first use. */
export function parquetWasmMemoryBytes(): number {
  return current && !current.dead ? (current.pw.wasmMemory().buffer as ArrayBuffer).byteLength : 0;
}

/** A read that found a newer object version: forget its footer, so the next plan sees the new one. */
function s3Changed(path: string, e: unknown): unknown {
  const text = e instanceof Error ? e.message : String(e);
  if (e instanceof ObjectChangedError || text.includes('the object changed')) {
    const f = s3InfoCache.get(path);
    if (f?.tail) keptTailBytes -= f.tail.bytes.length;
    s3InfoCache.delete(path);
    forgetObject(path);
  }
  return e;
}

function errorText(e: unknown): string {
  if (isWasmTrap(e)) return `parquet-wasm aborted (${(e as Error).message}); the data is corrupt or truncated`;
  if (e instanceof Error) return e.message;
  return String(e);
}

// ---------------------------------------------------------------------------------------------
// Writing

const COMPRESSION: Record<ParquetCompression, keyof typeof PW.Compression> = {
  snappy: 'SNAPPY', zstd: 'ZSTD', gzip: 'GZIP', lz4: 'LZ4_RAW', brotli: 'BROTLI', none: 'UNCOMPRESSED',
};

/** Same physical layout (type ids and shape), ignoring field names and nullability. */
function samePhysicalType(a: arrow.DataType, b: arrow.DataType): boolean {
  if (a.typeId !== b.typeId) return false;
  if (String(a) !== String(b)) {
    // String() covers widths, units, time zones, list sizes; children are compared below.
    if (!(arrow.DataType.isList(a) || arrow.DataType.isStruct(a) || arrow.DataType.isFixedSizeList(a))) return false;
  }
  if (a.children?.length !== b.children?.length) return false;
  return (a.children ?? []).every((c: arrow.Field, i: number) => samePhysicalType(c.type, b.children[i]!.type));
}

function hasNullsWhereRequired(field: arrow.Field, data: arrow.Data): string | null {
  if (!field.nullable && data.nullCount > 0) return field.name;
  if (arrow.DataType.isStruct(field.type)) {
    const fields = field.type.children as arrow.Field[];
    for (let i = 0; i < fields.length; i++) {
      const r = hasNullsWhereRequired(fields[i]!, data.children[i]!);
      if (r) return `${field.name}.${r}`;
    }
  }
  return null;
}

/** A batch relabelled to exactly `arrowSchema` (one per single-chunk run), or an error saying which column does not fit. */
function conformForWrite(batch: arrow.RecordBatch, schema: Schema, arrowSchema: arrow.Schema, path: string): arrow.RecordBatch[] {
  const names = batch.schema.fields.map((bf) => bf.name);
  const idx = arrowSchema.fields.map((f) => {
    const i = names.indexOf(f.name);
    if (i < 0) throw new ColumnNotFoundError(f.name, names, `a batch written to ${path}`);
    return i;
  });
  return batchSegments(batch).map((seg) => {
    const children = arrowSchema.fields.map((f, k) => {
      const data = seg.columns[idx[k]!]!;
      if (!samePhysicalType(data.type, f.type)) {
        throw new TypeError(`column '${f.name}' written to ${path} has Arrow type ${String(data.type)}, expected ${String(f.type)} (${schema.field(f.name).type})`);
      }
      const bad = hasNullsWhereRequired(f, data);
      if (bad) throw new TypeError(`column '${bad}' written to ${path} is declared not null but holds nulls`);
      return data.type === f.type ? data : data.clone(f.type);
    });
    const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, seg.length, 0, undefined, children) as arrow.Data<arrow.Struct>;
    return new arrow.RecordBatch(arrowSchema, data);
  });
}

function toAsyncIterator<T>(src: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> {
  if (Symbol.asyncIterator in src) return (src as AsyncIterable<T>)[Symbol.asyncIterator]();
  const it = (src as Iterable<T>)[Symbol.iterator]();
  return {
    next: async () => it.next(),
    return: async (v?: unknown) => (it.return ? it.return(v) : { done: true as const, value: v as T }),
  };
}

function toWasmBatch(inst: WasmInstance, batch: arrow.RecordBatch): PW.RecordBatch {
  const ipc = arrow.tableToIPC(new arrow.Table([unaliasBatch(batch)]), 'stream');
  return wasmSync(inst, () => {
    const t = inst.pw.Table.fromIPCStream(ipc);
    try {
      const rb = t.recordBatch(0);
      if (!rb) throw new Error('IPC round trip lost the batch');
      return rb;
    } finally {
      t.free();
    }
  });
}

/** Where writeParquetFile's bytes go: a local file, or an S3 object through a multipart upload. */
interface ParquetSink {
  write(chunk: Uint8Array): Promise<unknown>;
  /** Make the file whole (close it / complete the upload). */
  finish(): Promise<void>;
  /** After a failure: leave nothing behind. */
  discard(): Promise<void>;
  /** Delete the finished file. */
  remove(): Promise<void>;
  /** Rows in the footer when the sink kept the file's tail (S3: no read-back needed), else null. */
  writtenRows(): number | null;
}

async function openSink(path: string): Promise<ParquetSink> {
  // Through the storage layer: the file appears whole on finish (upload completed, or a local temp renamed in).
  const upload: ObjectWriter = await openObjectWriter(path);
  // The footer is written last: keep the last chunks (about 1 MiB) to read the row count from.
  const tail: Uint8Array[] = [];
  let tailBytes = 0;
  return {
    write: (chunk) => {
      tail.push(chunk);
      tailBytes += chunk.length;
      while (tail.length > 1 && tailBytes - tail[0]!.length >= 1 << 20) tailBytes -= tail.shift()!.length;
      return upload.write(chunk);
    },
    finish: async () => { await upload.close(); },
    discard: () => upload.abort(),
    remove: () => deleteObjects([path]),
    writtenRows: () => {
      const buf = Buffer.concat(tail);
      if (buf.length < 12 || buf.readUInt32LE(buf.length - 4) !== PAR1 || buf.readUInt32LE(buf.length - 8) + 8 > buf.length) return null;
      try {
        return Number(parseS3Footer(path, Number.MAX_SAFE_INTEGER, new Uint8Array(buf.buffer, buf.byteOffset, buf.length), null).num_rows);
      } catch {
        return null;
      }
    },
  };
}

/**
 * The deepest column the Parquet writer accepts, in Arrow fields from the column down to its leaf
 * (list<float64> is 2). Batches reach parquet-wasm as Arrow IPC, whose Rust reader verifies the schema
 * flatbuffer with a nesting limit of 64 tables (Message, Schema, one Field per level, the leaf's type);
 * past it parquet-wasm fails with an opaque "Dyn casting error". Measured: 60 nested lists or structs
 * write (61 fields), 61 do not. Reading has no such limit (the IPC goes the other way, to apache-arrow).
 */
export const MAX_PARQUET_WRITE_FIELD_DEPTH = 61;

function fieldDepth(f: arrow.Field): { depth: number; path: string[] } {
  let best: { depth: number; path: string[] } = { depth: 0, path: [] };
  for (const c of f.type.children ?? []) {
    const d = fieldDepth(c);
    if (d.depth > best.depth) best = d;
  }
  return { depth: best.depth + 1, path: [f.name, ...best.path] };
}

/** Fails before any work when a column nests deeper than the Parquet writer can take, naming it, its depth and the limit. */
export function checkParquetWriteNesting(schema: Schema, path: string): void {
  for (const f of schema.toArrow().fields) {
    const { depth, path: fields } = fieldDepth(f);
    if (depth <= MAX_PARQUET_WRITE_FIELD_DEPTH) continue;
    const shown = fields.length > 6 ? [...fields.slice(0, 3), '…', ...fields.slice(-2)] : fields;
    throw new RangeError(`cannot write Parquet ${path}: column '${f.name}' nests ${depth - 1} levels deep (${depth} Arrow fields: ${shown.join('.')}); ` +
      `the Parquet writer (parquet-wasm) takes at most ${MAX_PARQUET_WRITE_FIELD_DEPTH} fields from a column to its leaf, i.e. ${MAX_PARQUET_WRITE_FIELD_DEPTH - 1} nested lists or structs`);
  }
}


/**
 * Write batches to one Parquet file with parquet-wasm's streaming writer: at most one row group
 * is buffered (inside wasm), bytes go to disk as each row group closes. Returns rows and bytes written.
 */
export async function writeParquetFile(path: string, batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>,
  opts: WriteParquetOptions = {}): Promise<{ rows: number; bytes: number }> {
  const inst = await getWasm();
  const it = toAsyncIterator(batches);
  const rowGroupSize = opts.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
  if (!Number.isInteger(rowGroupSize) || rowGroupSize <= 0) throw new RangeError(`rowGroupSize must be a positive integer, got ${rowGroupSize}`);
  const compression = opts.compression ?? 'snappy';
  if (!(compression in COMPRESSION)) throw new RangeError(`unknown Parquet compression '${compression}'`);

  // The first non-empty batch decides the schema when none is given (and tells us if there is data).
  let first: arrow.RecordBatch | null = null;
  let schema = opts.schema ?? null;
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      // Batches built without a schema mark columns non-null when they happen to hold no nulls:
      // a schema taken from them must not reject a later batch that does.
      if (!schema) schema = new Schema(Schema.fromArrow(r.value.schema).fields.map((f) => new Field(f.name, f.type, true)));
      if (r.value.numRows > 0) { first = r.value; break; }
    }
  } catch (e) {
    await it.return?.();
    throw e;
  }
  if (!schema) throw new Error(`cannot write ${path}: no batches and no schema given`);
  try {
    checkParquetWriteNesting(schema, path);
  } catch (e) {
    await it.return?.();
    throw e;
  }
  const arrowSchema = schema.toArrow();
  const makeProps = (): PW.WriterProperties => new inst.pw.WriterPropertiesBuilder()
    .setCompression(inst.pw.Compression[COMPRESSION[compression]])
    .setMaxRowGroupSize(rowGroupSize)
    .setCreatedBy('fanout (parquet-wasm)')
    .build();

  if (!first) {
    // Valid empty file carrying the schema.
    const bytes = wasmSync(inst, () => inst.pw.writeParquet(
      inst.pw.Table.fromIPCStream(arrow.tableToIPC(new arrow.Table(arrowSchema), 'stream')), makeProps()));
    const w = await openObjectWriter(path);
    try {
      await w.write(bytes);
    } catch (e) {
      await w.abort();
      throw e;
    }
    await w.close();
    return { rows: 0, bytes: bytes.length };
  }

  let rows = 0;
  let sourceError: unknown = null;
  const pending: arrow.RecordBatch[] = conformForWrite(first, schema, arrowSchema, path);
  const input = new ReadableStream<PW.RecordBatch>({
    pull: async (ctrl) => {
      try {
        let b = pending.shift();
        while (!b || b.numRows === 0) {
          const r = await it.next();
          if (r.done) { ctrl.close(); return; }
          if (r.value.numRows > 0) pending.push(...conformForWrite(r.value, schema!, arrowSchema, path));
          b = pending.shift();
        }
        rows += b.numRows;
        ctrl.enqueue(toWasmBatch(inst, b));
      } catch (e) {
        // parquet-wasm would ignore a stream error and close a valid-looking file: remember it.
        sourceError = e;
        ctrl.close();
      }
    },
    cancel: async () => { await it.return?.(); },
  }, { highWaterMark: 0 });

  const sink = await openSink(path);
  let bytes = 0;
  let ok = false;
  try {
    const props = makeProps();
    const output = await guarded(inst, () => inst.pw.transformParquetStream(input, props)) as ReadableStream<Uint8Array>;
    const reader = output.getReader();
    let inflight: Promise<unknown> | null = null; // disk write overlapping the next row group's encoding
    try {
      for (;;) {
        const r = await guarded(inst, reader.read());
        if (r.done) break;
        if (inflight) await inflight;
        inflight = sink.write(r.value);
        bytes += r.value.length;
      }
      if (inflight) await inflight;
    } finally {
      if (inflight) await inflight.catch(() => undefined);
    }
    if (sourceError) throw sourceError;
    ok = true;
  } catch (e) {
    try { await it.return?.(); } catch { /* the source's own cleanup error is secondary */ }
    if (e === sourceError) throw e;
    throw new Error(`failed to write Parquet file ${path}: ${errorText(e)}`);
  } finally {
    if (!ok) await sink.discard();
  }
  try {
    await sink.finish();
  } catch (e) {
    throw new Error(`failed to write Parquet file ${path}: ${errorText(e)}`);
  }
  // parquet-wasm drops batches it cannot write without telling: check the footer's row count.
  const written = sink.writtenRows() ?? inspectParquet(path).numRows;
  if (written !== rows) {
    await sink.remove();
    throw new Error(`failed to write Parquet file ${path}: wrote ${written} of ${rows} rows`);
  }
  return { rows, bytes };
}

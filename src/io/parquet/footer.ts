// Parquet footers, local (hyparquet on the file tail) and S3 (cached by URI and ETag), into ParquetFileInfo.
import * as fs from 'node:fs';
// The footer parser alone (7 of hyparquet's 28 modules: cold start); legacy.ts imports the reader when needed.
import { parquetMetadata, parquetSchema } from 'hyparquet/src/metadata.js';
import type { FileMetaData, SchemaElement } from 'hyparquet';
import { ColumnNotFoundError, Field, Schema } from '../../datatypes.ts';
import { statFile } from '../paths.ts';
import {
  isLocalUri,
  METADATA_TTL_MS,
  statObjectSync,
  noteObjects,
  objectHint,
  parquetTailsSync,
  ObjectChangedError,
  forgetObject,
  type TailRequest,
} from '../store/index.ts';
import type { ColumnStats, ParquetFileInfo, RowGroupInfo } from './types.ts';
import { arrowSchemaFromMetadata, mapArrowType, mapParquetNode, type Mapped } from './schema.ts';
import { convertStats } from './stats.ts';
import { parquetWasmCaveats } from './legacy.ts';

// ---------------------------------------------------------------------------------------------
// Footer inspection

interface LeafInfo {
  column: number;
  element: SchemaElement;
}
interface CachedInfo {
  size: number;
  mtimeMs: number;
  info: ParquetFileInfo;
  chunks: ChunkRanges;
  /** Where the bytes parquet-wasm reads to open the file start: the footer, and page indexes right before it. */
  tailStart: number;
}
const infoCache = new Map<string, CachedInfo>();
const INFO_CACHE_MAX = 4096;

// Statistics stay raw (bigint ticks, day numbers, bytes): we convert them per DataType in stats.ts.
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

export const PAR1 = 0x31524150; // 'PAR1' little-endian
const PARE = 0x45524150; // encrypted footer

function readFooter(file: string, size: number): { md: FileMetaData; metaLen: number } {
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
    return { md, metaLen };
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
  const { md, metaLen } = readFooter(path, st.size);
  let info: ParquetFileInfo;
  try {
    info = buildInfo(path, st.size, md);
  } catch (e) {
    if (e instanceof ColumnNotFoundError) throw e;
    const msg = (e as Error).message;
    throw new Error(msg.includes(path) ? msg : `invalid Parquet schema in ${path}: ${msg}`);
  }
  if (infoCache.size >= INFO_CACHE_MAX) infoCache.delete(infoCache.keys().next().value!);
  infoCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, info, chunks: chunkRanges(md), tailStart: tailStart(md, st.size - 8 - metaLen) });
  return info;
}

/** Page indexes further than this before the footer are left to parquet-wasm's own reads. */
const OPEN_TAIL_MAX = 4 << 20;

/**
 * The start of the file's last bytes that opening it in parquet-wasm reads: the footer, and the page
 * indexes when they lie right before it (where writers put them). Read at once, they spare the open
 * its three reads one after the other (last 8 bytes, footer, page indexes).
 */
function tailStart(md: FileMetaData, footerStart: number): number {
  let start = footerStart;
  for (const rg of md.row_groups) {
    for (const c of rg.columns) {
      for (const at of [c.column_index_offset, c.offset_index_offset]) {
        if (at !== undefined && Number(at) < start) start = Number(at);
      }
    }
  }
  return footerStart - start <= OPEN_TAIL_MAX ? Math.max(0, start) : footerStart;
}

/** A local file's footer and the byte ranges of its column chunks (what the reader prefetches). */
export function inspectLocal(path: string): { info: ParquetFileInfo; chunks: ChunkRanges; mtimeMs: number | undefined; tailStart: number | undefined } {
  const info = inspectParquet(path);
  const hit = infoCache.get(path)?.info === info ? infoCache.get(path) : undefined;
  return { info, chunks: hit?.chunks ?? [], mtimeMs: hit?.mtimeMs, tailStart: hit?.tailStart };
}

// ---------------------------------------------------------------------------------------------
// Footers of S3 objects: cached by (URI, ETag). A listing's ETag (s3Hint) or a recent check vouches
// for a cached footer; otherwise a HEAD does. A miss fetches the footers of every object of the
// same listing at once (in parallel, in the sync worker): readParquet over a prefix pays one round.

/** Byte ranges [start, end) of each top-level column's chunks, per row group (for prefetching). */
export type ChunkRanges = Map<string, [number, number][]>[];
interface S3Footer {
  etag: string;
  size: number;
  info: ParquetFileInfo;
  tail: { offset: number; bytes: Uint8Array } | null;
  chunks: ChunkRanges;
  checkedAt: number;
}
const s3InfoCache = new Map<string, S3Footer>();
/** Footers (with page indexes) up to this size stay in memory, so opening the file for a read costs no request. */
const KEEP_TAIL_MAX = 4 << 20;

/** Bytes of footer tails held in s3InfoCache, at most KEPT_TAILS_MAX (the oldest give theirs up first). */
let keptTailBytes = 0;
const KEPT_TAILS_MAX = 128 << 20;

function s3CacheSet(uri: string, v: S3Footer): void {
  const drop = (f: S3Footer | undefined): void => {
    if (f?.tail) {
      keptTailBytes -= f.tail.bytes.length;
      f.tail = null;
    }
  };
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
export function parseS3Footer(uri: string, size: number, tail: Uint8Array, head: Uint8Array | null): FileMetaData {
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
export function inspectS3(uri: string, maxAgeMs: number): S3Footer {
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

function buildInfo(path: string, size: number, md: FileMetaData): ParquetFileInfo {
  const tree = parquetSchema(md);
  const fromArrow = arrowSchemaFromMetadata(md);
  const fields: Field[] = [];
  const unsupported: { name: string; reason: string }[] = [];
  const caveats = parquetWasmCaveats(tree);
  const encrypted = md.row_groups[0]?.columns.findIndex((c) => c.crypto_metadata !== undefined) ?? -1;
  if (encrypted >= 0) {
    // plaintext footer, encrypted column data
    const leaf = md.schema.filter((e) => e.type !== undefined)[encrypted]?.name ?? `#${encrypted}`;
    throw new Error(`encrypted Parquet columns are not supported (column '${leaf}' uses Parquet modular encryption): ${path}`);
  }
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
    const columnBytes: RowGroupInfo['columnBytes'] = {};
    for (const c of rg.columns) {
      const top = c.meta_data?.path_in_schema[0];
      if (top === undefined) continue;
      const b = (columnBytes[top] ??= { compressed: 0, uncompressed: 0 });
      b.compressed += Number(c.meta_data?.total_compressed_size ?? 0n);
      b.uncompressed += Number(c.meta_data?.total_uncompressed_size ?? 0n);
    }
    return {
      index,
      numRows: Number(rg.num_rows),
      uncompressedBytes: Number(rg.total_byte_size),
      compressedBytes: compressed,
      columnBytes,
      stats,
    };
  });
  return { path, sizeBytes: size, numRows: Number(md.num_rows), schema, rowGroups, unsupportedColumns: unsupported, parquetWasmCaveats: caveats };
}

/** A read that found a newer object version: forget its footer, so the next plan sees the new one. */
export function s3Changed(path: string, e: unknown): unknown {
  const text = e instanceof Error ? e.message : String(e);
  if (e instanceof ObjectChangedError || text.includes('the object changed')) {
    const f = s3InfoCache.get(path);
    if (f?.tail) keptTailBytes -= f.tail.bytes.length;
    s3InfoCache.delete(path);
    forgetObject(path);
  }
  return e;
}

// Files parquet-wasm (arrow-rs) reads wrongly or refuses, read through hyparquet instead: legacy
// repeated groups without a LIST annotation (arrow-rs returns no rows), INT96 timestamps (arrow-rs
// wraps values outside the int64 nanosecond range) and footers arrow-rs's thrift decoder rejects.
import * as zlib from 'node:zlib';
import * as arrow from 'apache-arrow';
// hyparquet's reader (28 modules) is imported when a file first needs it, not by `import 'fanout'`.
import type { AsyncBuffer, Compressors, SchemaTree } from 'hyparquet';
import { DataType, type DataTypeJSON, type Schema, type TimeUnit } from '../../datatypes.ts';
import { valuesToData } from '../../convert/index.ts';
import { rescaleTicks } from './stats.ts';
import type { ParquetFileInfo } from './types.ts';

/** Ticks as hyparquet decoded them (exact bigint), tagged with their unit. */
class Ticks {
  constructor(
    readonly v: bigint,
    readonly unit: TimeUnit,
  ) {}
}

const PARSERS = {
  timestampFromMilliseconds: (v: bigint) => new Ticks(v, 'ms'),
  timestampFromMicroseconds: (v: bigint) => new Ticks(v, 'us'),
  timestampFromNanoseconds: (v: bigint) => new Ticks(v, 'ns'),
  dateFromDays: (d: number) => d,
};

// hyparquet decodes SNAPPY itself; Node's zlib adds GZIP (concatenated members too), BROTLI, and
// ZSTD where this Node has it (22.15+). LZ4 files fail with hyparquet's "unsupported compression codec".
const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
const COMPRESSORS: Compressors = {
  GZIP: (b) => zlib.gunzipSync(b),
  BROTLI: (b) => zlib.brotliDecompressSync(b),
  ...(zstd ? { ZSTD: (b: Uint8Array) => zstd(b) } : {}),
};

const INT64_MIN = -(1n << 63n),
  INT64_MAX = (1n << 63n) - 1n;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Top-level columns parquet-wasm cannot be trusted with, and why. INT96 is per column (projections
 * avoiding it keep the fast reader); a legacy repeated group makes arrow-rs read no rows of any
 * column of the file, so it marks them all.
 */
export function parquetWasmCaveats(root: SchemaTree): Record<string, string> {
  const out: Record<string, string> = {};
  let fileWide: string | null = null;
  for (const node of root.children) {
    const c = columnCaveat(node);
    if (c) out[node.element.name] = c;
    if (c?.startsWith('repeated group')) fileWide ??= `${c} in column '${node.element.name}'`;
  }
  if (fileWide) for (const node of root.children) out[node.element.name] = fileWide;
  return out;
}

function columnCaveat(node: SchemaTree): string | null {
  const walk = (n: SchemaTree, parentAnnotated: boolean, depth: number): string | null => {
    const e = n.element;
    if (e.type === 'INT96' && !e.converted_type && !e.logical_type) return 'INT96 timestamps';
    if (e.type === undefined && e.repetition_type === 'REPEATED' && depth > 0 && !parentAnnotated) {
      return `repeated group '${e.name}' without a LIST annotation`;
    }
    const lt = e.logical_type?.type;
    const ct = e.converted_type;
    const annotated = lt === 'LIST' || lt === 'MAP' || ct === 'LIST' || ct === 'MAP' || ct === 'MAP_KEY_VALUE';
    for (const c of n.children) {
      const r = walk(c, annotated, depth + 1);
      if (r) return r;
    }
    return null;
  };
  return walk(node, false, 0);
}

/** Is this parquet-wasm error one of a footer it cannot decode (which hyparquet may)? */
export function isFooterDecodeError(e: unknown): boolean {
  return e instanceof Error && /Parquet error: Expected list element type/.test(e.message);
}

/** One value from hyparquet's object rows -> the JS value valuesToData takes for `t`. */
function normalize(v: unknown, t: DataTypeJSON, at: string): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'date':
      if (typeof v !== 'number') break;
      return new Date(v * 86_400_000);
    case 'timestamp': {
      if (!(v instanceof Ticks)) break;
      const x = rescaleTicks(v.v, v.unit, t.unit, false);
      if (x < INT64_MIN || x > INT64_MAX) {
        // Only INT96 (days + nanoseconds) can exceed int64 nanoseconds; pyarrow and arrow-rs wrap it around.
        const what = v.unit === 'ns' ? 'INT96 timestamp' : 'timestamp';
        throw new Error(`${at}: ${what} ${v.v} ${v.unit} does not fit timestamp[${t.unit}] (int64 ticks); reading it would wrap around`);
      }
      return x;
    }
    case 'utf8':
      if (v instanceof Uint8Array) return utf8.decode(v);
      return v;
    case 'binary':
      if (typeof v === 'string') return new TextEncoder().encode(v);
      return v;
    case 'list':
    case 'fixedSizeList':
      if (!Array.isArray(v)) {
        throw new Error(`${at}: MAP values are not supported in files read by the fallback reader (hyparquet)`);
      }
      return v.map((x) => normalize(x, t.child, at));
    case 'struct': {
      if (typeof v !== 'object') break;
      const o = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const f of t.fields) out[f.name] = normalize(o[f.name], f.type, `${at}.${f.name}`);
      return out;
    }
    default:
      return v;
  }
  throw new Error(`${at}: unexpected value ${typeof v} for ${new DataType(t).toString()}`);
}

/** The Blob subset both readers use: a local file's `fs.openAsBlob` or an S3Blob (ranged GETs). */
export interface SliceableBlob {
  size: number;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** Row groups `rowGroups` of a file as batches of `outSchema` (its column names), decoded by hyparquet. */
export async function* readWithHyparquet(
  path: string,
  blob: SliceableBlob,
  info: ParquetFileInfo,
  outSchema: Schema,
  rowGroups: readonly number[],
  batchSize: number,
  why: string,
): AsyncGenerator<arrow.RecordBatch> {
  const { parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const arrowSchema = outSchema.toArrow();
  const starts: number[] = [];
  let acc = 0;
  for (const g of info.rowGroups) {
    starts.push(acc);
    acc += g.numRows;
  }
  const file: AsyncBuffer = { byteLength: blob.size, slice: (start, end) => blob.slice(start, end ?? blob.size).arrayBuffer() };
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(file, { geoparquet: false }); // once, not per row group
  } catch (e) {
    throw new Error(`cannot open Parquet file ${path} (read with hyparquet: ${why}): ${(e as Error).message}`);
  }
  for (const g of rowGroups) {
    const rowStart = starts[g]!;
    const rowEnd = rowStart + info.rowGroups[g]!.numRows;
    if (rowEnd === rowStart) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file,
        metadata,
        columns: outSchema.names,
        rowStart,
        rowEnd,
        parsers: PARSERS,
        compressors: COMPRESSORS,
        geoparquet: false,
      });
    } catch (e) {
      throw new Error(`failed to decode row group ${g} of ${path} (read with hyparquet: ${why}): ${(e as Error).message}`);
    }
    for (let off = 0; off < rows.length; off += batchSize) {
      const slice = rows.slice(off, off + batchSize);
      const columns = outSchema.fields.map((f) => {
        const at = `column '${f.name}' of ${path}`;
        const vals = slice.map((r) => normalize(r[f.name], f.type.json, at));
        return valuesToData(vals, f.type, at);
      });
      const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, slice.length, 0, undefined, columns) as arrow.Data<arrow.Struct>;
      yield new arrow.RecordBatch(arrowSchema, data);
    }
  }
}

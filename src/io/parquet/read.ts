// Streaming Parquet reads: one row group at a time through parquet-wasm, conformed to the requested Schema.
import * as arrow from 'apache-arrow';
import type * as PW from 'parquet-wasm';
import { ColumnNotFoundError, type Schema } from '../../datatypes.ts';
import { FileBlob } from '../store/file-blob.ts';
import { isLocalUri, openFileBlob, openRangedBlob, type RangedBlob } from '../store/index.ts';
import { DEFAULT_BATCH_SIZE, readStats, type ParquetFileInfo, type ReadParquetOptions } from './types.ts';
import { getWasm, guarded, isWasmTrap, wasmSync, withReadLock, type WasmInstance } from './wasm.ts';
import { inspectLocal, inspectS3, s3Changed, type ChunkRanges } from './footer.ts';
import { readFfiSchema } from './import-layout.ts';
import { FfiImporter, emptyColumnsBatch } from './import.ts';
import { isFooterDecodeError, readWithHyparquet } from './legacy.ts';

// ---------------------------------------------------------------------------------------------
// Reading

interface OpenFile {
  inst: WasmInstance;
  pf: PW.ParquetFile;
}

async function openParquetFile(blob: RangedBlob, tail: readonly [number, number] | null): Promise<OpenFile> {
  // The bytes the open reads (footer, page indexes) in one read, started while the instance loads:
  // parquet-wasm asks for them in three reads one after the other (last 8 bytes, footer, indexes).
  if (tail) blob.prefetch([tail], 'open');
  try {
    const inst = await getWasm();
    // Lazily read slices: only the ranges parquet-wasm asks for (positioned reads or ranged GETs).
    const pf = await withReadLock(() => guarded(inst, () => inst.pw.ParquetFile.fromFile(blob as unknown as Blob)));
    return { inst, pf };
  } finally {
    blob.evict('open');
  }
}

// ---------------------------------------------------------------------------------------------
// Open files kept across readers. A scan reads a file one partition (row group) at a time; opening
// a blob and parsing the footer again in wasm cost ~6.5 ms a partition. So each thread keeps the
// blob and parquet-wasm's ParquetFile of the last few file versions. A version is keyed by path,
// size and mtime (S3: URI and ETag): a changed file is a new key, and its older entries are closed.

interface CachedReader {
  key: string;
  path: string;
  blob: RangedBlob;
  /** The file's last bytes that opening it reads (local files; S3 blobs hold their footer tail). */
  openTail: readonly [number, number] | null;
  /** Opened on first use; shared by readers of this version (their decodes are serialized by withReadLock). */
  file: Promise<OpenFile> | null;
  /** Readers using it now: it is closed only once none is left. */
  users: number;
  /** Out of the cache: close when the last user leaves. */
  evicted: boolean;
  /** Tag of the row group prefetched for the next reader, if any. */
  hint: string | null;
}

// Insertion order is recency order (oldest first). Each entry holds at most one fd.
const readers = new Map<string, CachedReader>();
let readerCacheMax = 4;

/** Bound the open-file cache (tests; 0 opens and closes a file per reader). Evicts what no longer fits. */
export function setParquetReaderCacheSize(n: number): void {
  readerCacheMax = n;
  while (readers.size > readerCacheMax) dropReader(readers.values().next().value!);
}

/** How many file versions the cache holds open now (tests). */
export function parquetReaderCacheSize(): number {
  return readers.size;
}

function acquireReader(path: string, key: string, open: () => RangedBlob, openTail: readonly [number, number] | null): CachedReader {
  let e = readers.get(key);
  if (e) {
    readers.delete(key);
    readers.set(key, e);
  } else {
    // Another version of this file: it changed, never read through the old entry again.
    for (const old of [...readers.values()]) if (old.path === path) dropReader(old);
    e = { key, path, blob: open(), openTail, file: null, users: 0, evicted: readerCacheMax <= 0, hint: null };
    if (!e.evicted) {
      readers.set(key, e);
      while (readers.size > readerCacheMax) dropReader(readers.values().next().value!);
    }
  }
  e.users++;
  return e;
}

function dropReader(e: CachedReader): void {
  if (readers.get(e.key) === e) readers.delete(e.key);
  e.evicted = true;
  if (e.users === 0) void closeReader(e);
}

async function closeReader(e: CachedReader): Promise<void> {
  const f = e.file;
  e.file = null;
  if (f) {
    // A dead instance's memory went with it: its ParquetFile must not be touched.
    await f.then(({ inst, pf }) => (inst.dead ? undefined : pf.free())).catch(() => undefined);
  }
  if (e.blob instanceof FileBlob) await e.blob.close();
}

/** A reader is done with `e`; after a failure the entry is dropped (its blob may hold the read error). */
async function releaseReader(e: CachedReader, failed: boolean): Promise<void> {
  e.users--;
  if (failed) dropReader(e);
  if (e.evicted && e.users === 0) await closeReader(e);
}

/** The entry's ParquetFile on a live instance, opening it (once, for all its readers) when needed. */
function openCached(e: CachedReader): Promise<OpenFile> {
  const cur = e.file;
  if (!cur) return reopen(e, null);
  return cur.then((f) => (f.inst.dead ? reopen(e, cur) : f));
}

function reopen(e: CachedReader, stale: Promise<OpenFile> | null): Promise<OpenFile> {
  if (e.file !== stale) return openCached(e); // another reader replaced it meanwhile
  const p = openParquetFile(e.blob, e.openTail);
  e.file = p;
  p.catch(() => {
    if (e.file === p) e.file = null;
  });
  return p;
}

/** A file's footer, and a blob over the version it describes with the byte ranges of its column chunks. */
interface Source {
  info: ParquetFileInfo;
  chunks: ChunkRanges;
  /** The file version the footer describes: path, size and mtime, or URI and ETag. */
  key: string;
  /** Local files: [start, size) of the bytes opening the file in parquet-wasm reads. */
  openTail: readonly [number, number] | null;
  open(): RangedBlob;
}

function sourceFor(path: string): Source {
  if (isLocalUri(path)) {
    const { info, chunks, mtimeMs, tailStart } = inspectLocal(path);
    return {
      info,
      chunks,
      key: `${path}\0${info.sizeBytes}\0${mtimeMs}`,
      openTail: tailStart === undefined ? null : [tailStart, info.sizeBytes],
      open: () => openFileBlob(path, info.sizeBytes, mtimeMs),
    };
  }
  const f = inspectS3(path, Infinity);
  return {
    info: f.info,
    chunks: f.chunks,
    key: `${path}\0${f.size}\0${f.etag}`,
    openTail: null,
    open: () => openRangedBlob(path, f.size, f.tail ? { etag: f.etag, tail: f.tail } : { etag: f.etag }),
  };
}

/** The rows to decode of each selected row group: [offset, offset + count) within it. */
interface GroupSpan {
  group: number;
  offset: number;
  count: number;
}

/** `rows` and `limit` over the concatenation of the selected row groups, as per-group spans (empty ones left out). */
function groupSpans(info: ParquetFileInfo, rowGroups: readonly number[], rows: { start: number; end: number } | undefined, limit: number): GroupSpan[] {
  const out: GroupSpan[] = [];
  let base = 0;
  let left = limit;
  for (const g of rowGroups) {
    const n = info.rowGroups[g]!.numRows;
    const s = Math.max(base, rows?.start ?? 0);
    const e = Math.min(base + n, rows?.end ?? Infinity);
    base += n;
    const count = Math.min(e - s, left);
    if (count <= 0) continue;
    out.push({ group: g, offset: s - (base - n), count });
    left -= count;
    if (left <= 0) break;
  }
  return out;
}

/** Rows [offset, offset + count) of each span, cut out of a reader's whole-row-group batches. */
async function* cutSpans(batches: AsyncIterable<arrow.RecordBatch>, info: ParquetFileInfo, spans: readonly GroupSpan[]): AsyncGenerator<arrow.RecordBatch> {
  // readWithHyparquet yields the spans' row groups in order, each whole.
  let si = 0;
  let at = 0; // row within the current span's row group
  for await (const b of batches) {
    let pos = 0;
    while (pos < b.numRows && si < spans.length) {
      const span = spans[si]!;
      const groupRows = info.rowGroups[span.group]!.numRows;
      const take = Math.min(b.numRows - pos, groupRows - at);
      const from = Math.max(at, span.offset);
      const to = Math.min(at + take, span.offset + span.count);
      if (to > from) yield b.slice(pos + from - at, pos + to - at);
      pos += take;
      at += take;
      if (at >= groupRows) {
        si++;
        at = 0;
      }
    }
    if (si >= spans.length) return;
  }
}

/**
 * Stream a Parquet file as Arrow record batches, one row group at a time (never the whole file),
 * conforming exactly to `schema.select(columns).toArrow()`. `rows` and `limit` count rows over the
 * selected row groups in order; only those rows are decoded.
 */
export async function* readParquetBatches(path: string, opts: ReadParquetOptions = {}): AsyncGenerator<arrow.RecordBatch> {
  // Without a visitor the decode yields only batches (never null).
  yield* readSpans(path, opts, null) as AsyncGenerator<arrow.RecordBatch>;
}

/**
 * Receives a borrowing read's batches, synchronously. A batch with `borrowed` true may VIEW
 * parquet-wasm's memory: its buffers are valid only during this call (the next call into
 * parquet-wasm may grow memory and detach them, and the decoded stream is freed right after its
 * last batch, its memory reused). So the visitor must not keep the batch, its columns or views of
 * them, nor call into parquet-wasm. Other batches (`borrowed` false) are owned copies.
 */
export type BorrowedVisitor = (batch: arrow.RecordBatch, borrowed: boolean) => void;

/** Tests: wasm memory pages to grow by after each visit of a borrowed batch (detaches every view handed out). */
export const borrowTuning = { growPagesAfterVisit: 0 };

/**
 * readParquetBatches's rows, handed to `visit` instead of yielded: each row group is decoded, its
 * batches visited one after the other with no await between them (so no other reader runs in this
 * thread meanwhile), then freed. `mode.borrow`, read before each batch, says whether the batch may
 * be borrowed (views of wasm memory) or must be copied: a visitor that finds it must keep rows
 * clears it. The generator yields (nothing) after each row group, and after each batch read by the
 * copying fallbacks (hyparquet), so the caller can hand on what the visitor produced.
 */
export async function* readParquetBorrowed(path: string, opts: ReadParquetOptions, visit: BorrowedVisitor, mode: { borrow: boolean }): AsyncGenerator<void> {
  for await (const _ of readSpans(path, opts, { visit, mode })) yield;
}

interface Visiting {
  visit: BorrowedVisitor;
  mode: { borrow: boolean };
  /** The visitor threw (the caller's error, like a consumer's early return: the file stays cached). */
  threw?: boolean;
}

function visitOne(visiting: Visiting, b: arrow.RecordBatch, borrowed: boolean): void {
  try {
    visiting.visit(b, borrowed);
  } catch (e) {
    visiting.threw = true;
    throw e;
  }
}

/** Batches, or with a visitor null after each row group (and each fallback batch) visited. */
async function* readSpans(path: string, opts: ReadParquetOptions, visiting: Visiting | null): AsyncGenerator<arrow.RecordBatch | null> {
  const src = sourceFor(path);
  const info = src.info;
  const fileSchema = opts.schema ?? info.schema;
  const dropped = !opts.columns && !opts.schema ? info.unsupportedColumns[0] : undefined;
  if (dropped) throw new Error(`column '${dropped.name}' of ${path} cannot be read: ${dropped.reason} (pass columns without it to read the others)`);
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
  const { rows } = opts;
  if (rows && !(Number.isInteger(rows.start) && Number.isInteger(rows.end) && rows.start >= 0 && rows.end >= rows.start)) {
    throw new RangeError(`rows must be integers with 0 <= start <= end, got ${JSON.stringify(rows)} for ${path}`);
  }
  if (rows) {
    // A range past the selected rows is a planning bug or a changed file: say so, do not return fewer rows.
    const selected = rowGroups.reduce((n, g) => n + info.rowGroups[g]!.numRows, 0);
    if (rows.end > selected) {
      throw new RangeError(
        `row range [${rows.start}, ${rows.end}) out of range for row group${rowGroups.length === 1 ? '' : 's'} ${rowGroups.join(',')} of ${path} (${selected} rows)`,
      );
    }
  }
  const limit = opts.limit ?? Infinity;
  if (limit !== Infinity && !(Number.isInteger(limit) && limit >= 0)) throw new RangeError(`limit must be a non-negative integer, got ${limit} for ${path}`);
  const spans = groupSpans(info, rowGroups, rows, limit);

  if (names.length === 0) {
    // Nothing to decode: row counts come from the footer.
    for (const { count } of spans) {
      for (let left = count; left > 0; left -= batchSize) yield owned(emptyColumnsBatch(Math.min(left, batchSize)), visiting);
    }
    return;
  }
  if (spans.length === 0) return;

  const entry = acquireReader(path, src.key, () => src.open(), src.openTail);
  let failed = false;
  try {
    // Prefetch the row group after the last one only for a local read to its end (a scan's partition),
    // not for a limit or a row range cut short, nor on S3 (a GET that may be wasted costs a request).
    const last = spans[spans.length - 1]!;
    const toEnd = entry.blob instanceof FileBlob && limit === Infinity && last.offset + last.count === info.rowGroups[last.group]!.numRows;
    yield* decodeSpans(path, src, entry, names, outSchema, arrowSchema, spans, batchSize, toEnd, visiting);
  } catch (e) {
    failed = !visiting?.threw; // an early return by the consumer is not a failure: the entry stays cached
    throw e;
  } finally {
    await releaseReader(entry, failed);
  }
}

async function* decodeSpans(
  path: string,
  src: Source,
  entry: CachedReader,
  names: string[],
  outSchema: Schema,
  arrowSchema: arrow.Schema,
  spans: readonly GroupSpan[],
  batchSize: number,
  hintNext: boolean,
  visiting: Visiting | null,
): AsyncGenerator<arrow.RecordBatch | null> {
  const info = src.info;
  const blob = entry.blob;
  const rowGroups = spans.map((s) => s.group);
  const whole = spans.every((s) => s.offset === 0 && s.count === info.rowGroups[s.group]!.numRows);
  async function* hyparquet(why: string): AsyncGenerator<arrow.RecordBatch | null> {
    const all = readWithHyparquet(path, blob, info, outSchema, rowGroups, batchSize, why);
    for await (const b of whole ? all : cutSpans(all, info, spans)) yield owned(b, visiting);
  }
  // Columns arrow-rs reads wrongly (legacy layouts, INT96 ranges) go through hyparquet instead.
  const caveat = names.map((n) => info.parquetWasmCaveats?.[n]).find((c) => c !== undefined);
  if (caveat !== undefined) {
    yield* hyparquet(caveat);
    return;
  }

  // Fetch the projected column chunks of this row group and the next while decoding (positioned
  // reads on libuv's threads locally, parallel ranged GETs on S3).
  const prefetch = (i: number): void => {
    let g = rowGroups[i];
    if (g === undefined) {
      // Past this reader's last row group: fetch the file's next one for the next partition's reader,
      // so that its read overlaps this decode (one such hint per open file; its reader evicts it).
      if (i !== rowGroups.length || !hintNext || entry.evicted) return;
      g = rowGroups[i - 1]! + 1;
      if (g >= info.rowGroups.length) return;
      if (entry.hint !== null && entry.hint !== `rg${g}`) blob.evict(entry.hint);
      entry.hint = `rg${g}`;
    }
    blob.prefetch(
      names.flatMap((n) => src.chunks[g]?.get(n) ?? []),
      `rg${g}`,
    );
  };
  let file: OpenFile | null = null;
  try {
    for (let gi = 0; gi < rowGroups.length; gi++) {
      const { group: g, offset, count } = spans[gi]!;
      prefetch(gi);
      prefetch(gi + 1);
      // Batches of this row group already yielded: if another reader's corrupt file kills the
      // shared parquet-wasm instance mid-row-group, we re-decode on a fresh one and skip them.
      let delivered = 0;
      let rowsDelivered = 0;
      for (let attempt = 0; ; attempt++) {
        if (!file || file.inst.dead) {
          try {
            file = await openCached(entry);
          } catch (e) {
            if (file === null && isFooterDecodeError(e)) {
              // first open: nothing delivered yet
              // A footer arrow-rs's decoder rejects (hyparquet parsed it above): read the file with hyparquet.
              yield* hyparquet('footer parquet-wasm cannot decode');
              return;
            }
            throw new Error(`cannot open Parquet file ${path}: ${errorText(s3Changed(path, blob.takeError() ?? e))}`);
          }
        }
        const { inst, pf } = file;
        let stream: PW.FFIStream;
        try {
          // A row range decodes only its rows (offset/limit within the row group): first-row latency
          // and memory follow the range, not the row group.
          const ro: PW.ReaderOptions = { rowGroups: [g], columns: names, batchSize };
          if (offset > 0) ro.offset = offset;
          if (count < info.rowGroups[g]!.numRows) ro.limit = count;
          const table = await withReadLock(() => guarded(inst, () => pf.read(ro)));
          stream = wasmSync(inst, () => table.intoFFI());
          readStats.rowGroupsRead++;
        } catch (e) {
          // A failed ranged read surfaces from parquet-wasm as a trap: report the read's own error.
          throw new Error(`failed to decode row group ${g} of ${path}: ${errorText(s3Changed(path, blob.takeError() ?? e))}`);
        } finally {
          blob.evict(`rg${g}`); // decoded (or failed): its bytes are no longer needed
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
            if (inst.dead) {
              interrupted = true;
              break;
            }
            // Re-read memory.buffer each time: wasm memory may have grown (and detached it) meanwhile.
            const mem = inst.pw.wasmMemory().buffer as ArrayBuffer;
            const borrowed = visiting?.mode.borrow === true;
            const importer = new FfiImporter(mem, `${path} row group ${g}`, borrowed);
            const arrPtr = addrs[b]!;
            const dv = new DataView(mem);
            const length = Number(dv.getBigInt64(arrPtr, true));
            const parentOffset = Number(dv.getBigInt64(arrPtr + 16, true)); // a sliced batch offsets its columns
            const childrenPtr = dv.getUint32(arrPtr + 44, true);
            const columns = outSchema.fields.map((f, i) =>
              importer.importData(
                dv.getUint32(childrenPtr + 4 * childIndex[i]!, true),
                node.children[childIndex[i]!]!,
                f.type.json,
                arrowSchema.fields[i]!.type,
                parentOffset,
                length,
              ),
            );
            const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, length, 0, undefined, columns) as arrow.Data<arrow.Struct>;
            readStats.batchesRead++;
            readStats.rowsRead += length;
            delivered++;
            rowsDelivered += length;
            const batch = new arrow.RecordBatch(arrowSchema, data);
            if (!visiting) {
              yield batch;
              continue;
            }
            // No await from here to the stream's free: the views stay valid through the visit.
            if (borrowed) readStats.batchesBorrowed++;
            visitOne(visiting, batch, borrowed);
            if (borrowed && borrowTuning.growPagesAfterVisit > 0) inst.pw.wasmMemory().grow(borrowTuning.growPagesAfterVisit);
          }
          // Never a silent short read: arrow-rs has returned no rows for layouts it misreads.
          if (!interrupted && rowsDelivered !== count) {
            throw new Error(
              `failed to decode row group ${g} of ${path}: parquet-wasm decoded ${rowsDelivered} rows of columns ${names.map((n) => `'${n}'`).join(', ')}, ${count === info.rowGroups[g]!.numRows ? `the footer says ${count}` : `expected rows ${offset}..${offset + count} of its ${info.rowGroups[g]!.numRows}`}`,
            );
          }
        } finally {
          if (!inst.dead) stream.free();
        }
        if (visiting) yield null; // the row group's batches are visited (and their views gone)
        if (!interrupted) break;
        if (attempt >= 2) throw new Error(`failed to decode row group ${g} of ${path}: ${errorText(inst.dead)}`);
      }
    }
  } finally {
    // The ParquetFile stays open in the reader cache: releaseReader frees it once it is evicted.
    file = null;
  }
}

/** An owned batch: yielded, or visited (then null yielded) by a borrowing read. */
function owned(b: arrow.RecordBatch, visiting: Visiting | null): arrow.RecordBatch | null {
  if (!visiting) return b;
  visitOne(visiting, b, false);
  return null;
}

export function errorText(e: unknown): string {
  if (isWasmTrap(e)) return `parquet-wasm aborted (${(e as Error).message}); the data is corrupt or truncated`;
  if (e instanceof Error) return e.message;
  return String(e);
}

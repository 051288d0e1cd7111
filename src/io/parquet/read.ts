// Streaming Parquet reads: one row group at a time through parquet-wasm, conformed to the requested Schema.
import * as arrow from 'apache-arrow';
import type * as PW from 'parquet-wasm';
import { ColumnNotFoundError } from '../../datatypes.ts';
import { isLocalUri, openObjectBlob, openRangedBlob, type RangedBlob } from '../store/index.ts';
import { DEFAULT_BATCH_SIZE, readStats, type ReadParquetOptions, type RowRange } from './types.ts';
import { getWasm, guarded, isWasmTrap, wasmSync, withReadLock, type WasmInstance } from './wasm.ts';
import { inspectParquet, inspectS3, s3Changed, type ChunkRanges } from './footer.ts';
import { readFfiSchema } from './import-layout.ts';
import { FfiImporter, emptyColumnsBatch } from './import.ts';
import { isFooterDecodeError, readWithHyparquet } from './legacy.ts';

// ---------------------------------------------------------------------------------------------
// Reading

interface OpenFile {
  inst: WasmInstance;
  pf: PW.ParquetFile;
}

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
  const range = opts.rows ? checkRowRange(opts.rows, rowGroups, info.rowGroups, path) : null;
  // Rows of row group g this read delivers: all of them, or the requested range.
  const rowsOf = (g: number): number => (range ? range.end - range.start : info.rowGroups[g]!.numRows);

  if (names.length === 0) {
    // Nothing to decode: row counts come from the footer.
    for (const g of rowGroups) {
      for (let left = rowsOf(g); left > 0; left -= batchSize) yield emptyColumnsBatch(Math.min(left, batchSize));
    }
    return;
  }

  // Columns arrow-rs reads wrongly (legacy layouts, INT96 ranges) go through hyparquet instead.
  const caveat = names.map((n) => info.parquetWasmCaveats?.[n]).find((c) => c !== undefined);
  if (caveat !== undefined) {
    const all = readWithHyparquet(path, remote?.blob ?? (await openObjectBlob(path)), info, outSchema, rowGroups, batchSize, caveat);
    yield* range ? sliceRows(all, range) : all;
    return;
  }

  // S3: fetch the projected column chunks of this row group and the next while decoding.
  const prefetch = (i: number): void => {
    const g = rowGroups[i];
    if (!remote || g === undefined) return;
    remote.blob.prefetch(
      names.flatMap((n) => remote.chunks[g]?.get(n) ?? []),
      `rg${g}`,
    );
  };
  let file: OpenFile | null = null;
  try {
    for (let gi = 0; gi < rowGroups.length; gi++) {
      const g = rowGroups[gi]!;
      if (rowsOf(g) === 0) continue;
      prefetch(gi);
      prefetch(gi + 1);
      // Batches of this row group already yielded: if another reader's corrupt file kills the
      // shared parquet-wasm instance mid-row-group, we re-decode on a fresh one and skip them.
      let delivered = 0;
      let rowsDelivered = 0;
      for (let attempt = 0; ; attempt++) {
        if (!file || file.inst.dead) {
          try {
            file = await openParquetFile(path, remote?.blob ?? null);
          } catch (e) {
            if (file === null && isFooterDecodeError(e)) {
              // first open: nothing delivered yet
              // A footer arrow-rs's decoder rejects (hyparquet parsed it above): read the file with hyparquet.
              const all = readWithHyparquet(
                path,
                remote?.blob ?? (await openObjectBlob(path)),
                info,
                outSchema,
                rowGroups,
                batchSize,
                'footer parquet-wasm cannot decode',
              );
              yield* range ? sliceRows(all, range) : all;
              return;
            }
            throw new Error(`cannot open Parquet file ${path}: ${errorText(s3Changed(path, remote?.blob.takeError() ?? e))}`);
          }
        }
        const { inst, pf } = file;
        let stream: PW.FFIStream;
        try {
          const table = await withReadLock(() =>
            guarded(inst, () =>
              pf.read({ rowGroups: [g], columns: names, batchSize, ...(range ? { offset: range.start, limit: range.end - range.start } : {}) }),
            ),
          );
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
            if (inst.dead) {
              interrupted = true;
              break;
            }
            // Re-read memory.buffer each time: wasm memory may have grown (and detached it) meanwhile.
            const mem = inst.pw.wasmMemory().buffer as ArrayBuffer;
            const importer = new FfiImporter(mem, `${path} row group ${g}`);
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
            yield new arrow.RecordBatch(arrowSchema, data);
          }
          // Never a silent short read: arrow-rs has returned no rows for layouts it misreads.
          const want = rowsOf(g);
          if (!interrupted && rowsDelivered !== want) {
            throw new Error(
              `failed to decode row group ${g} of ${path}: parquet-wasm decoded ${rowsDelivered} rows of columns ${names.map((n) => `'${n}'`).join(', ')}, the footer says ${want}`,
            );
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

/** The requested row range, checked against its row group: a clear error naming the file otherwise. */
function checkRowRange(rows: RowRange, rowGroups: readonly number[], groups: readonly { numRows: number }[], path: string): RowRange {
  if (rowGroups.length !== 1) throw new RangeError(`a row range needs exactly one row group, got ${rowGroups.length} for ${path}`);
  const n = groups[rowGroups[0]!]!.numRows;
  const { start, end } = rows;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > n) {
    throw new RangeError(`row range [${start}, ${end}) out of range for row group ${rowGroups[0]} of ${path} (${n} rows)`);
  }
  return { start, end };
}

/** Rows [start, end) of a stream (the fallback reader decodes whole row groups; this keeps the range). */
async function* sliceRows(batches: AsyncGenerator<arrow.RecordBatch>, range: RowRange): AsyncGenerator<arrow.RecordBatch> {
  let pos = 0;
  try {
    for await (const b of batches) {
      const from = Math.max(range.start - pos, 0);
      const to = Math.min(range.end - pos, b.numRows);
      pos += b.numRows;
      if (to > from) yield from === 0 && to === b.numRows ? b : b.slice(from, to);
      if (pos >= range.end) return;
    }
  } finally {
    await batches.return(undefined);
  }
}

export function errorText(e: unknown): string {
  if (isWasmTrap(e)) return `parquet-wasm aborted (${(e as Error).message}); the data is corrupt or truncated`;
  if (e instanceof Error) return e.message;
  return String(e);
}

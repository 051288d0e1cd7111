// Streaming Parquet writes (parquet-wasm transformParquetStream) to a local file or an S3 multipart upload.
import * as arrow from 'apache-arrow';
import type * as PW from 'parquet-wasm';
import { ColumnNotFoundError, Field, Schema } from '../../datatypes.ts';
import { batchSegments } from '../paths.ts';
import { openObjectWriter, deleteObjects, type ObjectWriter } from '../store/index.ts';
import { DEFAULT_ROW_GROUP_SIZE, type WriteParquetOptions } from './types.ts';
import { IpcEncoder } from './write-ipc.ts';
import { ENCODING_SAMPLE_ROWS, checkWriteOptions, columnEncodings, writerProperties } from './write-props.ts';
import { getWasm, guarded, wasmSync, type WasmInstance } from './wasm.ts';
import { PAR1, inspectParquet, parseS3Footer } from './footer.ts';
import { errorText } from './read.ts';

// ---------------------------------------------------------------------------------------------
// Writing

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
        throw new TypeError(
          `column '${f.name}' written to ${path} has Arrow type ${String(data.type)}, expected ${String(f.type)} (${schema.field(f.name).type})`,
        );
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

function toWasmBatch(inst: WasmInstance, ipcEncoder: IpcEncoder, batch: arrow.RecordBatch): PW.RecordBatch {
  const ipc = ipcEncoder.encode(batch);
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
    finish: async () => {
      await upload.close();
    },
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
    throw new RangeError(
      `cannot write Parquet ${path}: column '${f.name}' nests ${depth - 1} levels deep (${depth} Arrow fields: ${shown.join('.')}); ` +
        `the Parquet writer (parquet-wasm) takes at most ${MAX_PARQUET_WRITE_FIELD_DEPTH} fields from a column to its leaf, i.e. ${MAX_PARQUET_WRITE_FIELD_DEPTH - 1} nested lists or structs`,
    );
  }
}

/**
 * Write batches to one Parquet file with parquet-wasm's streaming writer: at most one row group
 * is buffered (inside wasm), bytes go to disk as each row group closes. Returns rows and bytes written.
 */
export async function writeParquetFile(
  path: string,
  batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>,
  opts: WriteParquetOptions = {},
): Promise<{ rows: number; bytes: number }> {
  // Bad options fail before the source is touched (columnEncoding's columns are checked once the schema is known).
  checkWriteOptions(opts, opts.schema ?? null, path);
  const inst = await getWasm();
  const it = toAsyncIterator(batches);
  const rowGroupSize = opts.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;

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
      if (r.value.numRows > 0) {
        first = r.value;
        break;
      }
    }
  } catch (e) {
    await it.return?.();
    throw e;
  }
  if (!schema) throw new Error(`cannot write ${path}: no batches and no schema given`);
  try {
    checkParquetWriteNesting(schema, path);
    if (!opts.schema) checkWriteOptions(opts, schema, path);
  } catch (e) {
    await it.return?.();
    throw e;
  }
  const arrowSchema = schema.toArrow();
  const makeProps = (sample: readonly arrow.RecordBatch[]): PW.WriterProperties =>
    writerProperties(inst.pw, opts, rowGroupSize, columnEncodings(opts, schema, sample, rowGroupSize));

  if (!first) {
    // Valid empty file carrying the schema.
    const bytes = wasmSync(inst, () =>
      inst.pw.writeParquet(inst.pw.Table.fromIPCStream(arrow.tableToIPC(new arrow.Table(arrowSchema), 'stream')), makeProps([])),
    );
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
  let sourceDone = false;
  if ((opts.encoding ?? 'auto') === 'auto') {
    // 'auto' chooses each column's encoding from the first rows: gather enough of them when batches are small.
    try {
      let gathered = first.numRows;
      while (gathered < ENCODING_SAMPLE_ROWS) {
        const r = await it.next();
        if (r.done) {
          sourceDone = true;
          break;
        }
        gathered += r.value.numRows;
        if (r.value.numRows > 0) pending.push(...conformForWrite(r.value, schema, arrowSchema, path));
      }
    } catch (e) {
      await it.return?.();
      throw e;
    }
  }
  const encodingSample = [...pending];
  const ipcEncoder = new IpcEncoder(arrowSchema);
  const input = new ReadableStream<PW.RecordBatch>(
    {
      pull: async (ctrl) => {
        try {
          let b = pending.shift();
          while (!b || b.numRows === 0) {
            const r = sourceDone ? { done: true as const, value: undefined } : await it.next();
            if (r.done) {
              ctrl.close();
              return;
            }
            if (r.value.numRows > 0) pending.push(...conformForWrite(r.value, schema!, arrowSchema, path));
            b = pending.shift();
          }
          rows += b.numRows;
          ctrl.enqueue(toWasmBatch(inst, ipcEncoder, b));
        } catch (e) {
          // parquet-wasm would ignore a stream error and close a valid-looking file: remember it.
          sourceError = e;
          ctrl.close();
        }
      },
      cancel: async () => {
        await it.return?.();
      },
    },
    { highWaterMark: 0 },
  );

  const sink = await openSink(path);
  let bytes = 0;
  let ok = false;
  try {
    // The first rows decide each column's encoding (see write-props.ts).
    const props = makeProps(encodingSample);
    encodingSample.length = 0;
    const output = (await guarded(inst, () => inst.pw.transformParquetStream(input, props))) as ReadableStream<Uint8Array>;
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
    try {
      await it.return?.();
    } catch {
      /* the source's own cleanup error is secondary */
    }
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

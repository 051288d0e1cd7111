// Hive-partitioned dataset writes: rows are split by the values of the `partitionBy` columns into
// `key=value/` directories (values URL-encoded, null as __HIVE_DEFAULT_PARTITION__), and the
// partition columns are left out of the files (as Hive, Spark and Daft do: the path holds them).
// Every file goes under the DatasetWriter's temp dir, so the one commit that follows (one
// `_SUCCESS` manifest listing every file) publishes all partitions at once.
import type * as arrow from 'apache-arrow';
import { Schema } from '../datatypes.ts';
import { dataToValues } from '../convert/from-arrow.ts';
import { takeBatch } from '../eval.ts';
import { HIVE_NULL } from './hive.ts';
import * as path from 'node:path';
import { writeCsvFile } from './csv/index.ts';
import { writeParquetFile, type ParquetWriterOptions } from './parquet/index.ts';
import { deleteObjects, isLocalUri, prepareObject } from './store/index.ts';
import type { DatasetWriter, WritePartOptions } from './writer.ts';
import type { WrittenFile } from './commit-common.ts';

const PARTITION_KINDS = new Set(['bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float32', 'float64', 'utf8', 'date']);
/** Most file systems (and S3 console tools) refuse longer path segments. */
const MAX_SEGMENT_BYTES = 255;

/**
 * Checks `partitionBy` against the schema being written, before any work: names, types, and that
 * some column is left for the files. Returns the columns.
 */
export function checkPartitionBy(schema: Schema, partitionBy: unknown, where: string): string[] {
  if (!Array.isArray(partitionBy) || partitionBy.length === 0 || !partitionBy.every((c) => typeof c === 'string')) {
    throw new TypeError(`${where}: partitionBy must be a non-empty array of column names`);
  }
  const cols = partitionBy as string[];
  const seen = new Set<string>();
  for (const c of cols) {
    if (seen.has(c)) throw new Error(`${where}: partitionBy names column '${c}' twice`);
    seen.add(c);
    if (!schema.has(c)) throw new Error(`${where}: partitionBy column '${c}' is not a column of the data (columns: ${schema.names.join(', ')})`);
    if (c.startsWith('_') || c.startsWith('.') || /[/\\=%]/.test(c) || c === '') {
      throw new Error(
        `${where}: partitionBy column '${c}' cannot name a directory ('key=value'): it must not contain / \\ = % or start with _ or . (readers skip such directories); rename it first`,
      );
    }
    const t = schema.field(c).type;
    if (!PARTITION_KINDS.has(t.kind)) {
      throw new Error(`${where}: partitionBy column '${c}' is ${t}; partition values must be bool, integers, floats, utf8 or date`);
    }
  }
  if (cols.length === schema.fields.length) throw new Error(`${where}: partitionBy names every column (${cols.join(', ')}); the files would hold no column`);
  return cols;
}

/** A partition value as a path segment value (the reader's inverse: URL-decoding, then typing). */
function segmentValue(v: unknown, column: string, kind: string): string {
  if (v === null || v === undefined) return HIVE_NULL;
  let s: string;
  if (v instanceof Date) s = v.toISOString().slice(0, 10);
  else if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`partitionBy column '${column}' has the value ${v}, which cannot be a partition directory`);
    // Floats keep a '.0' so that reading the layout back infers float64, not int64.
    s = (kind === 'float32' || kind === 'float64') && Number.isInteger(v) && !/e/i.test(String(v)) ? `${v}.0` : String(v);
  } else if (typeof v === 'bigint' || typeof v === 'boolean') s = String(v);
  else if (typeof v === 'string') {
    if (v === '')
      throw new Error(
        `partitionBy column '${column}' has an empty string, which cannot be a partition directory (readers would see null); filter or replace it first`,
      );
    if (v === HIVE_NULL) throw new Error(`partitionBy column '${column}' has the value '${HIVE_NULL}', which readers take for null`);
    s = v;
  } else throw new Error(`partitionBy column '${column}' has a value of type ${typeof v}, which cannot be a partition directory`);
  return encodeURIComponent(s);
}

/** One directory's writer: batches handed over one at a time (the file writer pulls them), so memory stays bounded. */
class PartitionStream implements AsyncIterable<arrow.RecordBatch> {
  private queue: arrow.RecordBatch[] = [];
  private done = false;
  private wake: (() => void) | null = null;
  private taken: (() => void) | null = null;
  failure: unknown = null;
  result: Promise<WrittenFile> | null = null;

  /** Resolves once the writer has taken the batch (or failed). */
  async push(b: arrow.RecordBatch): Promise<void> {
    if (this.failure) throw this.failure;
    this.queue.push(b);
    this.wake?.();
    if (this.queue.length > 1) await new Promise<void>((r) => (this.taken = r));
  }

  close(): void {
    this.done = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<arrow.RecordBatch> {
    for (;;) {
      const b = this.queue.shift();
      if (b) {
        const t = this.taken;
        this.taken = null;
        t?.();
        yield b;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  fail(e: unknown): void {
    this.failure = e;
    const t = this.taken;
    this.taken = null;
    t?.();
  }
}

/** A file of a partitioned write and its partition directory (`key=value/…`, as below the dataset). */
export interface PartitionFile extends WrittenFile {
  dir: string;
}

/** Writes one hive partition directory's file: `dir` is `key=value/…`, the batches its rows without the partition columns. */
type OpenPartitionFile = (dir: string, batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>, fileSchema: Schema) => Promise<WrittenFile>;

/** The directory of the all-null partition: where a write of no rows keeps one empty file (for the schema). */
function emptyPartitionDir(partitionBy: readonly string[]): string {
  return partitionBy.map((c) => `${c}=${HIVE_NULL}`).join('/');
}

/** The schema of the files of a partitioned write: every column but the partition columns. */
function partitionFileSchema(schema: Schema, partitionBy: readonly string[]): Schema {
  return new Schema(schema.fields.filter((f) => !partitionBy.includes(f.name)));
}

/**
 * Writes `batches` (with `schema`) as hive partitions under the writer's temp dir: one file per
 * partition directory, named like any part (index `index`). Returns the written parts for commit.
 * With no rows at all and `keepSchema`, one empty file in the all-null partition (an
 * 'overwrite-partitions' write passes false: it has no partition to replace).
 */
export function writePartitionedParts(
  writer: DatasetWriter,
  index: number,
  batches: AsyncIterable<arrow.RecordBatch>,
  schema: Schema,
  partitionBy: readonly string[],
  opts: WritePartOptions = {},
  keepSchema = true,
): Promise<WrittenFile[]> {
  const files = splitIntoPartitions(
    batches,
    schema,
    partitionBy,
    (dir, b, fileSchema) => writer.writePart(index, b, { ...opts, schema: fileSchema }, dir),
    keepSchema,
  );
  return files.then((fs) => fs.map(({ path, rows, bytes }) => ({ path, rows, bytes })));
}

/**
 * A worker's share of a distributed partitioned write (a worker thread's task, a serverless stage's
 * last partition): its rows split by partition value, one file per partition directory it has
 * rows for, at `dir/<name of partPath>` beside where its unpartitioned part would go. Writes
 * nothing without rows; the commit step keeps the schema (partitionedCommitParts).
 */
export function writePartitionFiles(
  batches: AsyncIterable<arrow.RecordBatch>,
  schema: Schema,
  partitionBy: readonly string[],
  format: 'parquet' | 'csv',
  partPath: string,
  parquet: ParquetWriterOptions = {},
): Promise<PartitionFile[]> {
  const remote = !isLocalUri(partPath);
  const cut = remote ? partPath.lastIndexOf('/') : partPath.lastIndexOf(path.sep);
  const at = (dir: string): string =>
    remote ? `${partPath.slice(0, cut)}/${dir}/${partPath.slice(cut + 1)}` : path.join(partPath.slice(0, cut), ...dir.split('/'), partPath.slice(cut + 1));
  return splitIntoPartitions(
    batches,
    schema,
    partitionBy,
    async (dir, b, fileSchema) => {
      const file = at(dir);
      await prepareObject(file);
      try {
        const r =
          format === 'parquet' ? await writeParquetFile(file, b, { ...parquet, schema: fileSchema }) : await writeCsvFile(file, b, { schema: fileSchema });
        return { path: file, rows: r.rows, bytes: r.bytes };
      } catch (e) {
        await deleteObjects([file]).catch(() => undefined);
        throw e;
      }
    },
    false,
  );
}

/** The commit's parts of a distributed partitioned write: every worker's files, or (no rows anywhere, keepSchema) one empty file for the schema. */
export async function partitionedCommitParts(
  writer: DatasetWriter,
  written: readonly WrittenFile[],
  schema: Schema,
  partitionBy: readonly string[],
  keepSchema: boolean,
): Promise<WrittenFile[]> {
  if (written.length || !keepSchema) return [...written];
  return [await writer.writePart(0, [], { schema: partitionFileSchema(schema, partitionBy) }, emptyPartitionDir(partitionBy))];
}

async function splitIntoPartitions(
  batches: AsyncIterable<arrow.RecordBatch>,
  schema: Schema,
  partitionBy: readonly string[],
  openFile: OpenPartitionFile,
  keepSchema: boolean,
): Promise<PartitionFile[]> {
  const keyCols = partitionBy.map((c) => schema.indexOf(c));
  const kinds = partitionBy.map((c) => schema.field(c).type.kind);
  const dataCols = schema.fields.map((_, i) => i).filter((i) => !keyCols.includes(i));
  const fileSchema = partitionFileSchema(schema, partitionBy);
  const streams = new Map<string, PartitionStream>();
  const open = (dir: string): PartitionStream => {
    let s = streams.get(dir);
    if (!s) {
      const stream = new PartitionStream();
      s = stream;
      stream.result = openFile(dir, stream, fileSchema);
      stream.result.catch((e: unknown) => stream.fail(e));
      streams.set(dir, s);
    }
    return s;
  };
  try {
    for await (const b of batches) {
      if (b.numRows === 0) continue;
      const values = keyCols.map((i) => dataToValues(b.data.children[i]!));
      const rowsOf = new Map<string, number[]>();
      for (let r = 0; r < b.numRows; r++) {
        const dir = partitionBy.map((c, k) => `${c}=${segmentValue(values[k]![r], c, kinds[k]!)}`).join('/');
        let rows = rowsOf.get(dir);
        if (!rows) {
          for (const seg of dir.split('/')) {
            if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) {
              throw new Error(`partition directory '${seg.slice(0, 60)}…' is longer than ${MAX_SEGMENT_BYTES} bytes; that value cannot be a path segment`);
            }
          }
          rows = [];
          rowsOf.set(dir, rows);
        }
        rows.push(r);
      }
      for (const [dir, rows] of rowsOf) {
        const part = rows.length === b.numRows ? b : takeBatch(b, Int32Array.from(rows));
        await open(dir).push(part.selectAt(dataCols));
      }
    }
  } catch (e) {
    for (const s of streams.values()) {
      s.fail(e);
      s.close();
    }
    await Promise.allSettled([...streams.values()].map((s) => s.result));
    throw e;
  }
  if (streams.size === 0 && keepSchema) {
    // No rows: one empty file (in the all-null partition) keeps the schema readable, as an
    // unpartitioned write keeps one empty part.
    const dir = emptyPartitionDir(partitionBy);
    return [{ ...(await openFile(dir, [], fileSchema)), dir }];
  }
  for (const s of streams.values()) s.close();
  const settled = await Promise.allSettled([...streams.values()].map((s) => s.result!));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const dirs = [...streams.keys()];
  return settled.map((r, i) => ({ ...(r as PromiseFulfilledResult<WrittenFile>).value, dir: dirs[i]! }));
}

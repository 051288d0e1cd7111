// The stage executor: runs one partition task (a source slice plus operators) as a stream of
// record batches. The embedded runner calls it in-process or inside worker threads; later the
// Lambda and ECS entrypoints call the very same function.
import type * as arrow from 'apache-arrow';
import { Schema } from './datatypes.ts';
import { containsUdf, type ExprNode } from './expressions.ts';
import { explodeBatch, filterBatch, projectBatch } from './eval.ts';
import { readCsvBatches } from './io/csv/index.ts';
import { readParquetBatches } from './io/parquet/index.ts';
import { writeCsvFile } from './io/csv/index.ts';
import { writeParquetFile } from './io/parquet/index.ts';
import type { OpJSON, PartitionTask, SourceJSON } from './physical.ts';
import type { ProgressSink } from './progress.ts';
import { filterWithUdfs, projectWithUdfs, runtime, type RunMetrics, type UdfRuntime } from './udf-exec.ts';

/** In-memory sources by id (fromRecords, fromArrow, collected results). */
export type MemorySources = ReadonlyMap<string, readonly arrow.RecordBatch[]>;

export interface ExecContext {
  memory?: MemorySources;
  /** UDF metrics of the run, summed across partitions and workers. */
  metrics?: RunMetrics;
  progress?: ProgressSink;
  batchSize?: number;
  signal?: AbortSignal;
  /** Where the partition's UDF metrics go (a per-run fork, so a failed run's counts die with it). */
  rt?: UdfRuntime;
}

async function* readSource(src: SourceJSON, ctx: ExecContext): AsyncGenerator<arrow.RecordBatch> {
  switch (src.kind) {
    case 'multi': {
      let remaining = src.limit ?? Infinity;
      for (const part of src.parts) {
        for await (let b of readSource(part, ctx)) {
          if (b.numRows > remaining) b = b.slice(0, remaining);
          remaining -= b.numRows;
          yield b;
          if (remaining <= 0) return;
        }
      }
      return;
    }
    case 'memory': {
      const batches = ctx.memory?.get(src.id);
      if (!batches) throw new Error(`in-memory source ${src.id} is not available here`);
      for (let i = src.start; i < src.end; i++) yield batches[i]!;
      return;
    }
    case 'parquet': {
      const schema = Schema.fromJSON(src.schema);
      const opts: Parameters<typeof readParquetBatches>[1] = { columns: src.columns, schema };
      if (src.rowGroups) opts.rowGroups = src.rowGroups;
      if (ctx.batchSize) opts.batchSize = ctx.batchSize;
      yield* scanFiltered(readParquetBatches(src.path, opts), src.filter, src.limit);
      return;
    }
    case 'csv': {
      const opts: Parameters<typeof readCsvBatches>[1] = {
        ...src.csv, columns: src.columns, schema: Schema.fromJSON(src.fileSchema),
      };
      if (ctx.batchSize) opts.batchSize = ctx.batchSize;
      yield* scanFiltered(readCsvBatches(src.path, opts), src.filter, src.limit);
      return;
    }
  }
}

/** The scan applies its pushed filter and limit itself, and stops reading once the limit is met. */
async function* scanFiltered(
  batches: AsyncGenerator<arrow.RecordBatch>,
  filter: ExprNode | null,
  limit: number | null,
): AsyncGenerator<arrow.RecordBatch> {
  let remaining = limit ?? Infinity;
  try {
    for await (let b of batches) {
      if (filter) b = filterBatch(b, filter);
      if (b.numRows === 0) continue;
      if (b.numRows > remaining) b = b.slice(0, remaining);
      remaining -= b.numRows;
      yield b;
      if (remaining <= 0) return;
    }
  } finally {
    await batches.return(undefined);
  }
}

/** Applies one operator to a stream. */
export async function* applyOp(input: AsyncIterable<arrow.RecordBatch>, op: OpJSON, rt: UdfRuntime = runtime): AsyncGenerator<arrow.RecordBatch> {
  switch (op.type) {
    case 'filter': {
      const udf = containsUdf(op.predicate);
      let offset = 0;
      for await (const b of input) {
        const out = udf ? await filterWithUdfs(b, op.predicate, rt, offset) : filterBatch(b, op.predicate);
        offset += b.numRows;
        if (out.numRows) yield out;
      }
      return;
    }
    case 'project': {
      const schema = Schema.fromJSON(op.schema);
      if (!op.exprs.some(containsUdf)) {
        for await (const b of input) yield projectBatch(b, op.exprs, schema);
        return;
      }
      let offset = 0;
      for await (const b of input) {
        // Empty batches never reach a UDF.
        if (!b.numRows) continue;
        const out = await projectWithUdfs(b, op.exprs, schema, rt, offset);
        offset += b.numRows;
        if (out.numRows) yield out;
      }
      return;
    }
    case 'explode':
      for await (const b of input) {
        const out = explodeBatch(b, op.columns);
        if (out.numRows) yield out;
      }
      return;
    case 'limit': {
      let remaining = op.n;
      if (remaining <= 0) return;
      for await (let b of input) {
        if (b.numRows > remaining) b = b.slice(0, remaining);
        remaining -= b.numRows;
        yield b;
        // Returning here closes the upstream generators, which stops their reads.
        if (remaining <= 0) return;
      }
      return;
    }
  }
}

export function applyOps(input: AsyncIterable<arrow.RecordBatch>, ops: readonly OpJSON[], rt: UdfRuntime = runtime): AsyncIterable<arrow.RecordBatch> {
  let stream = input;
  for (const op of ops) stream = applyOp(stream, op, rt);
  return stream;
}

/** Runs one partition task as a stream of batches. */
export function runPartition(task: PartitionTask, ctx: ExecContext = {}): AsyncIterable<arrow.RecordBatch> {
  return applyOps(readSource(task.source, ctx), task.ops, ctx.rt ?? runtime);
}

export interface SinkResult {
  index: number;
  path: string;
  rows: number;
  bytes: number;
}

/** Runs a task whose output goes to a file (its `sink`), returning what was written. */
export async function runPartitionToSink(task: PartitionTask, ctx: ExecContext = {}): Promise<SinkResult> {
  const sink = task.sink;
  if (!sink) throw new Error(`partition ${task.index} has no sink`);
  const schema = Schema.fromJSON(sink.schema);
  const batches = runPartition(task, ctx);
  const r = sink.format === 'parquet'
    ? await writeParquetFile(sink.path, batches, { schema })
    : await writeCsvFile(sink.path, batches, { schema });
  return { index: task.index, path: sink.path, rows: r.rows, bytes: r.bytes };
}

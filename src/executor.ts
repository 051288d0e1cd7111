// The stage executor and its one partition driver: runPartition runs a partition task (a source
// slice plus operators) with its own forked UDF runtime and sends the output to a sink: the consumer
// (stream), a file, an object-store shard, or a parent port under credits. The embedded runner's
// in-process path and worker threads, GPU child processes, the Stage Lambda and the ECS slot all
// call it.
import * as arrow from 'apache-arrow';
import { Schema, type SchemaJSON } from './datatypes.ts';
import { containsUdf, type ExprNode } from './expressions.ts';
import { evalTuning, explodeBatch, filterBatch, FilterProject, projectBatch } from './eval.ts';
import { readCsvBatches } from './io/csv/index.ts';
import { readParquetBatches } from './io/parquet/index.ts';
import { writeCsvFile } from './io/csv/index.ts';
import { writeParquetFile, type ParquetWriterOptions } from './io/parquet/index.ts';
import { withPartitionColumns } from './io/hive.ts';
import { writePartitionFiles, type PartitionFile } from './io/partitioned-writer.ts';
import { unaliasBatch } from './ipc-alias.ts';
import { borrowedPhaseOne, partialAggregate } from './aggregate/operator.ts';
import { describeTask, type OpJSON, type PartitionTask, type SourceJSON } from './physical.ts';
import { filterWithUdfs, projectWithUdfs, runtime, udfWindow, type RunMetrics, type UdfRuntime } from './udf-exec.ts';

/** In-memory sources by id (fromRecords, fromArrow, collected results). */
export type MemorySources = ReadonlyMap<string, readonly arrow.RecordBatch[]>;

/** What a partition run needs from where it runs. Plain data plus a signal: runners add their own. */
export interface ExecContext {
  memory?: MemorySources;
  batchSize?: number;
  /** Aborts the run between batches: reads and UDF calls stop, the run rejects with an AbortError. */
  signal?: AbortSignal;
  /**
   * The runtime partitions fork from (default: this thread's): forks share its UDF class instances
   * and in-flight caps, and each partition run counts into a fork of its own.
   */
  rt?: UdfRuntime;
  /** Names the partition in stall warnings and abort errors (default: `partition 3: /data/f.parquet`). */
  label?: string;
  /** Earlier stages' output, read by 'shard' sources (the serverless runner's work bucket). */
  shards?: (key: string) => AsyncIterable<arrow.RecordBatch>;
}

/** An action was aborted through its AbortSignal; names the partition it stopped. */
export class AbortError extends Error {
  /** What the partition had done when it stopped (rows, its UDF metrics). */
  outcome?: PartitionOutcome;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

export function isAbortError(e: unknown): e is Error {
  return e instanceof Error && e.name === 'AbortError';
}

function throwIfAborted(signal: AbortSignal | undefined, label: string): void {
  if (signal?.aborted) throw new AbortError(`aborted (${label})`, { cause: signal.reason });
}

/** A project op without UDFs: it may run fused with the filter before it (FilterProject). */
type PlainProject = Extract<OpJSON, { type: 'project' }>;

function plainProject(op: OpJSON | undefined): PlainProject | null {
  return evalTuning.fusedFilterProject && op?.type === 'project' && !op.exprs.some(containsUdf) ? op : null;
}

/**
 * Reads a source; the scan checks the signal between batches, so an abort stops reading. `project`:
 * the task's first op, fused into the scan's pushed filter (the caller skips that op).
 */
async function* readSource(src: SourceJSON, ctx: ExecContext, label: string, project: PlainProject | null = null): AsyncGenerator<arrow.RecordBatch> {
  switch (src.kind) {
    case 'multi': {
      let remaining = src.limit ?? Infinity;
      for (const part of src.parts) {
        for await (let b of readSource(part, ctx, label)) {
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
      let pos = 0; // rows before batch i, counted from batch `start`
      for (let i = src.start; i < src.end; i++) {
        throwIfAborted(ctx.signal, label);
        let b = batches[i]!;
        if (src.rows) {
          const from = Math.max(src.rows.start - pos, 0);
          const to = Math.min(src.rows.end - pos, b.numRows);
          pos += b.numRows;
          if (to <= from) {
            if (pos >= src.rows.end) return;
            continue;
          }
          if (from > 0 || to < b.numRows) b = b.slice(from, to);
        }
        yield b;
      }
      return;
    }
    case 'shard': {
      if (!ctx.shards) throw new Error(`shard ${src.key} cannot be read here (no shard reader in the execution context)`);
      yield* scanFiltered(ctx.shards(src.key)[Symbol.asyncIterator](), null, null, ctx.signal, label);
      return;
    }
    case 'parquet': {
      const schema = Schema.fromJSON(src.schema);
      const opts: Parameters<typeof readParquetBatches>[1] = { columns: src.columns, schema };
      if (src.rowGroups) opts.rowGroups = src.rowGroups;
      if (src.rows) opts.rows = src.rows;
      if (ctx.batchSize) opts.batchSize = ctx.batchSize;
      // Without a filter the limit is a row count the decoder can stop at (mid row group).
      if (src.limit !== null && !src.filter) opts.limit = src.limit;
      yield* scanFiltered(withPartitionColumns(readParquetBatches(src.path, opts), src.partition), src.filter, src.limit, ctx.signal, label, project);
      return;
    }
    case 'csv': {
      const opts: Parameters<typeof readCsvBatches>[1] = {
        ...src.csv,
        columns: src.columns,
        schema: Schema.fromJSON(src.fileSchema),
      };
      if (ctx.batchSize) opts.batchSize = ctx.batchSize;
      yield* scanFiltered(withPartitionColumns(readCsvBatches(src.path, opts), src.partition), src.filter, src.limit, ctx.signal, label, project);
      return;
    }
  }
}

/** The scan applies its pushed filter and limit itself, and stops reading once the limit is met. */
async function* scanFiltered(
  batches: AsyncIterator<arrow.RecordBatch>,
  filter: ExprNode | null,
  limit: number | null,
  signal: AbortSignal | undefined,
  label: string,
  project: PlainProject | null = null,
): AsyncGenerator<arrow.RecordBatch> {
  let remaining = limit ?? Infinity;
  const fused =
    filter && evalTuning.fusedFilterProject
      ? new FilterProject(filter, project ? { exprs: project.exprs, schema: Schema.fromJSON(project.schema) } : null)
      : null;
  try {
    for (;;) {
      throwIfAborted(signal, label);
      const next = await batches.next();
      if (next.done) return;
      let b = next.value;
      if (fused) b = fused.apply(b);
      else if (filter) b = filterBatch(b, filter);
      if (b.numRows === 0) continue;
      if (b.numRows > remaining) b = b.slice(0, remaining);
      remaining -= b.numRows;
      yield b;
      if (remaining <= 0) return;
    }
  } finally {
    await batches.return?.(undefined);
  }
}

/** Applies one operator to a stream. */
export async function* applyOp(input: AsyncIterable<arrow.RecordBatch>, op: OpJSON, rt: UdfRuntime = runtime): AsyncGenerator<arrow.RecordBatch> {
  switch (op.type) {
    case 'filter': {
      const udf = containsUdf(op.predicate);
      if (!udf && evalTuning.fusedFilterProject) {
        yield* filterProject(input, new FilterProject(op.predicate, null));
        return;
      }
      const window = udf ? udfWindow([op.predicate], rt) : 1;
      if (window > 1) {
        yield* pipelined(input, window, (b, offset) => filterWithUdfs(b, op.predicate, rt, offset));
        return;
      }
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
      const window = udfWindow(op.exprs, rt);
      if (window > 1) {
        yield* pipelined(input, window, (b, offset) => projectWithUdfs(b, op.exprs, schema, rt, offset));
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
    case 'partialAggregate':
      yield* partialAggregate(input, op);
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

/**
 * An operator over up to `window` batches at once (an actor pool serves them in parallel), output in
 * input order. Empty batches never reach a UDF; `offset` is the batch's first row in the partition.
 */
async function* pipelined(
  input: AsyncIterable<arrow.RecordBatch>,
  window: number,
  fn: (b: arrow.RecordBatch, offset: number) => Promise<arrow.RecordBatch>,
): AsyncGenerator<arrow.RecordBatch> {
  const pending: Promise<arrow.RecordBatch>[] = [];
  let offset = 0;
  try {
    for await (const b of input) {
      if (!b.numRows) continue;
      const p = fn(b, offset);
      p.catch(() => undefined); // awaited in order below; a later batch's failure waits its turn
      pending.push(p);
      offset += b.numRows;
      if (pending.length >= window) {
        const out = await pending.shift()!;
        if (out.numRows) yield out;
      }
    }
    while (pending.length) {
      const out = await pending.shift()!;
      if (out.numRows) yield out;
    }
  } finally {
    // Stopped early or failed: calls still in flight finish on their actors; their results are dropped.
    pending.length = 0;
  }
}

export function applyOps(input: AsyncIterable<arrow.RecordBatch>, ops: readonly OpJSON[], rt: UdfRuntime = runtime): AsyncIterable<arrow.RecordBatch> {
  let stream = input;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const project = op.type === 'filter' && !containsUdf(op.predicate) ? plainProject(ops[i + 1]) : null;
    if (op.type === 'filter' && project) {
      stream = filterProject(stream, new FilterProject(op.predicate, { exprs: project.exprs, schema: Schema.fromJSON(project.schema) }));
      i++;
    } else stream = applyOp(stream, op, rt);
  }
  return stream;
}

async function* filterProject(input: AsyncIterable<arrow.RecordBatch>, fused: FilterProject): AsyncGenerator<arrow.RecordBatch> {
  for await (const b of input) {
    const out = fused.apply(b);
    if (out.numRows) yield out;
  }
}

/** The task's first op when it can run fused with the scan's pushed filter (see readSource). */
function scanProject(task: PartitionTask): PlainProject | null {
  const src = task.source;
  return (src.kind === 'parquet' || src.kind === 'csv') && src.filter ? plainProject(task.ops[0]) : null;
}

/** The task's output batches: phase one over borrowed views of the decoder's memory where it can run so, else the ops over the source's stream. */
function partitionBatches(task: PartitionTask, ctx: ExecContext, label: string, rt: UdfRuntime): AsyncIterable<arrow.RecordBatch> {
  const borrowed = borrowedPhaseOne(task, ctx.batchSize, () => throwIfAborted(ctx.signal, label));
  if (borrowed) return borrowed;
  const project = scanProject(task);
  return applyOps(readSource(task.source, ctx, label, project), project ? task.ops.slice(1) : task.ops, rt);
}

/** Where a partition's output goes. */
export type PartitionSink = StreamSink | FileSink | ShardSink | IpcSink;

/** To the caller, which iterates the returned PartitionStream (and may stop early). */
export interface StreamSink {
  kind: 'stream';
}

/** A Parquet or CSV file (local path or s3:// URI). */
export interface FileSink {
  kind: 'file';
  format: 'parquet' | 'csv';
  path: string;
  schema: SchemaJSON;
  /** A hive layout: the rows split into one file per partition directory, each at `dir/<name of path>` (partitioned-writer.ts). */
  partitionBy?: string[];
  /** Parquet writer options (plain data: the sink goes to worker threads). */
  parquet?: ParquetWriterOptions;
}

/** An Arrow IPC stream uploaded to an object-store key (the serverless runner's stage shards). */
export interface ShardSink {
  kind: 'shard';
  store: { upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number> };
  key: string;
  schema: SchemaJSON;
}

/** Batches posted to a parent (worker thread or child process), one per credit the parent grants. */
export interface IpcSink {
  kind: 'ipc';
  /** Resolves true when the parent has granted a credit, false once it cancelled (the run stops quietly). */
  credit(): Promise<boolean>;
  post(batch: arrow.RecordBatch): void;
}

/** What one partition run did; the metrics are its own forked runtime's. */
export interface PartitionOutcome {
  index: number;
  rows: number;
  /** Bytes written (file and shard sinks; 0 otherwise). */
  bytes: number;
  /** The file path or shard key written ('' for stream and ipc sinks). */
  path: string;
  /** A partitioned file sink's files (one per hive partition directory the partition had rows for). */
  files?: PartitionFile[];
  metrics: RunMetrics;
  /** Wall time from start to the end of its output, ms. */
  elapsedMs: number;
  /** Epoch ms it started (wall clock, comparable across threads and processes: trace spans). */
  startedAt: number;
}

/** A partition's output for the stream sink; `outcome()` is final once the iteration has ended. */
export interface PartitionStream extends AsyncIterable<arrow.RecordBatch> {
  outcome(): PartitionOutcome;
}

const STREAM: StreamSink = { kind: 'stream' };

/**
 * The partition driver: runs `task` with a fork of `ctx.rt` (its metrics are the outcome's), checks
 * `ctx.signal` between batches, and sends the output to `sink`. With the stream sink (default) the
 * returned stream runs the partition as it is iterated; other sinks run it to the end.
 */
export function runPartition(task: PartitionTask, ctx?: ExecContext, sink?: StreamSink): PartitionStream;
export function runPartition(task: PartitionTask, ctx: ExecContext, sink: FileSink | ShardSink | IpcSink): Promise<PartitionOutcome>;
export function runPartition(task: PartitionTask, ctx: ExecContext = {}, sink: PartitionSink = STREAM): PartitionStream | Promise<PartitionOutcome> {
  const label = ctx.label ?? describeTask(task);
  const rt = (ctx.rt ?? runtime).fork(label);
  const started = performance.now();
  const startedAt = Date.now();
  let ended: number | null = null;
  let rows = 0;
  let bytes = 0;
  let path = '';
  let files: PartitionFile[] | undefined;
  const outcome = (): PartitionOutcome => ({
    index: task.index,
    rows,
    bytes,
    path,
    ...(files ? { files } : {}),
    metrics: rt.metrics,
    elapsedMs: (ended ?? performance.now()) - started,
    startedAt,
  });
  async function* batches(): AsyncGenerator<arrow.RecordBatch> {
    try {
      throwIfAborted(ctx.signal, label);
      for await (const b of partitionBatches(task, ctx, label, rt)) {
        // Between batches: after an abort no further batch is read or handed to a UDF.
        throwIfAborted(ctx.signal, label);
        rows += b.numRows;
        yield b;
      }
    } catch (err) {
      if (err instanceof AbortError) err.outcome = outcome();
      throw err;
    } finally {
      ended = performance.now();
    }
  }
  if (sink.kind === 'stream') {
    const it = batches();
    return { [Symbol.asyncIterator]: () => it, outcome };
  }
  return (async (): Promise<PartitionOutcome> => {
    switch (sink.kind) {
      case 'file': {
        const schema = Schema.fromJSON(sink.schema);
        if (sink.partitionBy) {
          files = await writePartitionFiles(batches(), schema, sink.partitionBy, sink.format, sink.path, sink.parquet);
          bytes = files.reduce((n, f) => n + f.bytes, 0);
          path = sink.path;
          break;
        }
        const r =
          sink.format === 'parquet'
            ? await writeParquetFile(sink.path, batches(), { ...sink.parquet, schema })
            : await writeCsvFile(sink.path, batches(), { schema });
        bytes = r.bytes;
        path = sink.path;
        break;
      }
      case 'shard':
        bytes = await sink.store.upload(sink.key, ipcChunks(batches(), Schema.fromJSON(sink.schema).toArrow()));
        path = sink.key;
        break;
      case 'ipc': {
        const it = batches();
        try {
          for (;;) {
            const next = await it.next();
            if (next.done || !(await sink.credit())) break;
            sink.post(next.value);
          }
        } finally {
          await it.return(undefined);
        }
        break;
      }
    }
    return outcome();
  })();
}

/** Batches as the chunks of one Arrow IPC stream (aliased columns written under their real types). */
export async function* ipcChunks(batches: AsyncIterable<arrow.RecordBatch>, schema: arrow.Schema): AsyncGenerator<Uint8Array> {
  const writer = new arrow.RecordBatchStreamWriter();
  const out = writer.toDOMStream();
  const reader = out.getReader();
  const pump = (async () => {
    writer.reset(undefined, schema);
    for await (const b of batches) writer.write(unaliasBatch(new arrow.RecordBatch(schema, b.data)));
    writer.finish();
  })();
  let failed = false;
  let failure: unknown = null;
  pump.catch((e: unknown) => {
    failed = true;
    failure = e;
    writer.abort();
  });
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch (e) {
      // writer.abort() makes the reader reject with its own value, not the operator's error: the
      // error worth reporting is the one the pump stored.
      await pump.catch(() => undefined);
      throw failed ? failure : e;
    }
    if (chunk.done) break;
    yield chunk.value as Uint8Array;
  }
  await pump.catch(() => undefined);
  if (failed) throw failure;
}

// A serverless run's life, as functions the Lambda and ECS entrypoints call: plan it (stages and
// partitions, written to the work bucket), run one partition of a stage, run a GPU worker slot,
// finalize (check every shard, commit the output, sum metrics) or record a failure.
// Shard keys are deterministic, so a retried partition overwrites its shard, never duplicates it.
import * as arrow from 'apache-arrow';
import { randomUUID } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import { mapLimit } from '../concurrency.ts';
import { Schema, type SchemaJSON } from '../datatypes.ts';
import { applyOps, runPartition, type ExecContext, type PartitionOutcome } from '../executor.ts';
import { DatasetWriter, type WrittenFile } from '../io/writer.ts';
import { optimize } from '../optimizer.ts';
import { buildPhysicalPlan, type OpJSON, type PartitionTask, type SourceJSON } from '../physical.ts';
import type { PlanNode } from '../plan.ts';
import { mergeMetrics, type RunMetrics } from '../udf-exec.ts';
import { splitStages, DEFAULT_STAGE_OPTIONS, type StageJSON, type StageOptions } from './stages.ts';
import { getJson, NotFoundError, putJson, type ObjectStore } from '../io/store/index.ts';

export const PLAN_VERSION = 1;

export interface RunOutput {
  uri: string;
  format: 'parquet' | 'csv';
  mode: 'error' | 'overwrite' | 'append' | 'overwrite-partitions';
  /** Hive layout: Finalize splits the result into `key=value/` directories (see partitioned-writer.ts). */
  partitionBy?: string[];
}

/** Everything a worker needs, stored at runs/<runId>/plan.json (never in a state-machine payload). */
export interface RunPlan {
  version: number;
  runId: string;
  /** Module(s) that register the pipeline's UDFs when imported (null: none needed). */
  pipeline: string | string[] | null;
  createdAt: string;
  schema: SchemaJSON;
  /** Stage-0 sources, one per partition. */
  sources: SourceJSON[];
  stages: StageJSON[];
  /** Operators over the merged result (e.g. a global limit), run by Finalize. */
  globalOps: OpJSON[];
  output: RunOutput | null;
  /** Rows per batch the stages read (the runner's batchSize); absent: the readers' default. */
  batchSize?: number;
}

/** What the Plan step returns to the state machine: small, whatever the partition count. */
export interface PlanSummary {
  runId: string;
  workBucket: string;
  stages: { index: number; executor: StageJSON['executor']; partitions: number; concurrency: number; slots: number; itemsKey: string }[];
}

/**
 * What a run id may be: it becomes a key segment (`runs/<runId>/`), an ECS environment value and,
 * in LocalStore, a directory name, so nothing that could change a path (`/`, `.`, `..`) is allowed.
 * newRunId() and EventBridge event ids (UUIDs) both match.
 */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

/** The run id, or a clear error naming it (and where it came from). */
export function checkRunId(runId: unknown, where = 'run id'): string {
  if (typeof runId !== 'string' || !RUN_ID_PATTERN.test(runId)) {
    throw new Error(`invalid ${where} ${JSON.stringify(runId)}: a run id is 1 to 80 characters from A-Z, a-z, 0-9, '_' and '-'`);
  }
  return runId;
}

/** A stage or partition index as a key segment: a non-negative integer. */
function index(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0) throw new Error(`invalid ${what} ${JSON.stringify(n)}: expected a non-negative integer`);
  return n;
}

const run = (runId: string): string => `runs/${checkRunId(runId)}`;
export const keys = {
  plan: (runId: string) => `${run(runId)}/plan.json`,
  items: (runId: string, stage: number) => `${run(runId)}/stage-${index(stage, 'stage')}/items.json`,
  shard: (runId: string, stage: number, partition: number) =>
    `${run(runId)}/stage-${index(stage, 'stage')}/part-${String(index(partition, 'partition')).padStart(5, '0')}.arrow`,
  result: (runId: string, partition: number) => `${run(runId)}/result/part-${String(index(partition, 'partition')).padStart(5, '0')}.${'parquet'}`,
  metrics: (runId: string, stage: number, partition: number) =>
    `${run(runId)}/stage-${index(stage, 'stage')}/metrics-${String(index(partition, 'partition')).padStart(5, '0')}.json`,
  summary: (runId: string) => `${run(runId)}/summary.json`,
  failure: (runId: string) => `${run(runId)}/failure.json`,
  error: (runId: string, stage: number, partition: number) =>
    `${run(runId)}/stage-${index(stage, 'stage')}/error-${String(index(partition, 'partition')).padStart(5, '0')}.json`,
  stagePrefix: (runId: string, stage: number) => `${run(runId)}/stage-${index(stage, 'stage')}/`,
  resultPrefix: (runId: string) => `${run(runId)}/result/`,
  /** Where a run without an output commits its result (read back by the runner). */
  output: (runId: string) => `${run(runId)}/output`,
};

export function newRunId(): string {
  return `${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomUUID().slice(0, 8)}`;
}

/** Builds the run plan for a logical plan (optimized and split into stages here). */
export function planRun(
  plan: PlanNode,
  opts: {
    runId?: string;
    pipeline: string | string[] | null;
    output?: RunOutput | null;
    targetPartitionBytes?: number;
    batchSize?: number;
    stageOptions?: StageOptions;
  },
): RunPlan {
  if (hasMemorySource(plan)) {
    throw new Error(
      'the serverless runner reads its input from files (readParquet / readCsv on s3:// or local paths); in-memory DataFrames run on the embedded runner',
    );
  }
  if (opts.batchSize !== undefined && (!Number.isInteger(opts.batchSize) || opts.batchSize <= 0)) {
    throw new RangeError(`planRun: batchSize must be a positive integer, got ${String(opts.batchSize)}`);
  }
  const physical = buildPhysicalPlan(optimize(plan), { targetPartitionBytes: opts.targetPartitionBytes ?? 128 << 20 });
  const stages = splitStages(physical, opts.stageOptions ?? DEFAULT_STAGE_OPTIONS);
  const run: RunPlan = {
    version: PLAN_VERSION,
    runId: opts.runId === undefined ? newRunId() : checkRunId(opts.runId),
    pipeline: opts.pipeline,
    createdAt: new Date().toISOString(),
    schema: physical.schema,
    sources: physical.partitions.map((p) => p.source),
    stages,
    globalOps: physical.globalOps,
    output: opts.output ?? null,
  };
  if (opts.batchSize !== undefined) run.batchSize = opts.batchSize;
  return run;
}

/** Whether a plan reads in-memory batches (which only the process holding them can run). */
export function hasMemorySource(plan: PlanNode): boolean {
  let n = plan;
  while ('input' in n) n = n.input;
  return n.type === 'in_memory';
}

/** Writes the plan and each stage's partition index list; returns the small summary. */
export async function preparePlan(store: ObjectStore, plan: RunPlan, workBucket: string): Promise<PlanSummary> {
  await putJson(store, keys.plan(plan.runId), plan);
  const n = plan.sources.length;
  const stages = [];
  for (const s of plan.stages) {
    const itemsKey = keys.items(plan.runId, s.index);
    // Map ItemReader input: partition indices (or worker slots for GPU stages).
    await putJson(
      store,
      itemsKey,
      Array.from({ length: s.executor === 'lambda' ? n : s.slots }, (_, i) => i),
    );
    stages.push({ index: s.index, executor: s.executor, partitions: n, concurrency: s.concurrency, slots: s.slots, itemsKey });
  }
  return { runId: plan.runId, workBucket, stages };
}

const planCache = new Map<string, RunPlan>();

export async function loadPlan(store: ObjectStore, runId: string): Promise<RunPlan> {
  let p = planCache.get(runId);
  if (!p) {
    try {
      p = await getJson<RunPlan>(store, keys.plan(runId));
    } catch (e) {
      if (e instanceof NotFoundError) throw new Error(`run ${runId}: no plan at ${store.uri(keys.plan(runId))}`);
      throw e;
    }
    if (p.version !== PLAN_VERSION) throw new Error(`run ${runId}: plan version ${p.version}, this worker understands ${PLAN_VERSION}`);
    if (p.runId !== runId) throw new Error(`run ${runId}: ${store.uri(keys.plan(runId))} belongs to run ${JSON.stringify(p.runId)}`);
    planCache.set(runId, p);
  }
  return p;
}

/** Imports the pipeline module so its UDFs register by name (once per process). */
const imported = new Set<string>();

/**
 * A pipeline specifier as a module URL: a path becomes a file: URL. A relative path is relative to
 * LAMBDA_TASK_ROOT where that is set (the bundle's directory: /var/task on AWS, a temp dir on an
 * emulator or in the app harness), else to the working directory; so the template's
 * FANOUT_PIPELINE=./index.mjs names the bundle wherever the function runs.
 */
export function resolvePipelineSpec(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  if (isAbsolute(spec)) return pathToFileURL(spec).href;
  if (spec.startsWith('.')) return pathToFileURL(resolve(env['LAMBDA_TASK_ROOT'] || '.', spec)).href;
  return spec;
}

/**
 * The modules this process's deployment names: FANOUT_PIPELINE (the bundle's own pipeline) and the
 * comma-separated FANOUT_PIPELINE_ALLOW. Empty: not a deployment (local runs, tests).
 */
export function deployedPipelines(env: NodeJS.ProcessEnv = process.env): Set<string> {
  const specs = [env['FANOUT_PIPELINE'] ?? '', ...(env['FANOUT_PIPELINE_ALLOW'] ?? '').split(',')].map((s) => s.trim()).filter(Boolean);
  return new Set(specs.map((s) => resolvePipelineSpec(s, env)));
}

/**
 * A module named by data (a plan, an execution input) where no deployment says what to import: only
 * local files, never data:, http(s): or package specifiers, which would let that data choose code.
 */
export function checkLocalPipeline(spec: unknown, where: string): string {
  if (typeof spec !== 'string' || spec === '') throw new Error(`${where}: a pipeline module must be a non-empty string, got ${JSON.stringify(spec)}`);
  const url = resolvePipelineSpec(spec);
  if (!url.startsWith('file:')) {
    throw new Error(
      `${where}: pipeline module ${JSON.stringify(spec.slice(0, 200))} is not a file path or file: URL; only local files are imported by name (a deployment imports only FANOUT_PIPELINE / FANOUT_PIPELINE_ALLOW)`,
    );
  }
  return url;
}

/**
 * Modules a plan asks its workers to import. plan.json is data that anyone able to write the work
 * bucket can write, so it never chooses code by itself: in a deployment only the modules the
 * deployment names are imported (the rest, e.g. a runner's local file URLs, are ignored: the bundle
 * registers the UDFs); elsewhere only local files.
 */
function planPipeline(plan: RunPlan): string[] {
  const listed: unknown[] = plan.pipeline === null || plan.pipeline === undefined ? [] : Array.isArray(plan.pipeline) ? plan.pipeline : [plan.pipeline];
  const deployed = deployedPipelines();
  if (deployed.size > 0) return listed.filter((m): m is string => typeof m === 'string' && deployed.has(resolvePipelineSpec(m)));
  return listed.map((m) => checkLocalPipeline(m, `run ${plan.runId}: plan`));
}
export async function importPipeline(spec: string | string[] | null): Promise<void> {
  for (const m of spec === null ? [] : Array.isArray(spec) ? spec : [spec]) {
    if (imported.has(m)) continue;
    await import(m);
    imported.add(m);
  }
}

async function* readShard(store: ObjectStore, key: string): AsyncGenerator<arrow.RecordBatch> {
  const reader = await arrow.RecordBatchReader.from(await store.stream(key));
  for await (const b of reader) yield b;
}

/** Starts the line a failing ECS task writes first to stderr: its error's name and message. */
export const ECS_FAILURE_PREFIX = 'fanout ecs task failed: ';

/** Text of anything thrown: an Error's message, else the value itself (never "[object Object]"). */
export function thrownText(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string') return (e as { message: string }).message;
  if (typeof e === 'string') return e;
  return inspect(e, { depth: 4, breakLength: Infinity });
}

/** Anything thrown, as an Error (Lambda runtimes report a non-Error as its `toString()`). */
export function asError(e: unknown): Error {
  if (e instanceof Error) return e;
  const err = new Error(thrownText(e), { cause: e });
  const name = (e as { name?: unknown } | null)?.name;
  if (typeof name === 'string' && name) err.name = name;
  return err;
}

/** Where a partition is read from, in words: its files and row groups (and the shard a later stage reads). */
export function describeSource(s: SourceJSON): string {
  if (s.kind === 'memory') return `in-memory batches ${s.start}..${s.end - 1}`;
  if (s.kind === 'multi') return s.parts.map(describeSource).join(' + ');
  if (s.kind === 'shard') return `shard ${s.key}`;
  const rg = s.kind === 'parquet' && s.rowGroups ? ` row groups ${s.rowGroups.join(',')}` : '';
  return `${s.path}${rg}`;
}

/**
 * A partition's failure with where it happened: run, stage, partition and its input. The name
 * stays the original error's (Lambda's errorType, matched by Retry/Catch); the original is `cause`.
 */
export class PartitionError extends Error {
  constructor(
    readonly runId: string,
    readonly stage: number,
    readonly partition: number,
    readonly where: string,
    cause: unknown,
  ) {
    const err = asError(cause);
    super(`${err.message} (${where})`, { cause });
    this.name = err.name;
    this.stack = `${this.name}: ${this.message}\n    --- caused by ---\n${err.stack ?? String(err)}`;
  }
}

/** A failed partition's error, kept in the work bucket: Distributed Map and ECS failures do not carry it. */
const errorKey = keys.error;

interface PartitionErrorRecord {
  stage: number;
  partition: number;
  name: string;
  message: string;
  at: string;
}

/** Written next to each shard once it is complete: its size and the UDF metrics of the partition. */
interface PartitionMarker {
  rows: number;
  bytes: number;
  metrics: RunMetrics;
  /** The partition's wall time in the driver, ms (absent in markers of older runs). */
  elapsedMs?: number;
  /** When the partition started and finished (ISO), for run histories and timelines. */
  startedAt?: string;
  finishedAt?: string;
  /** A distributed partitioned write (partitionedOutput): the files this partition wrote, by hive partition directory. */
  parts?: { dir: string; rows: number; bytes: number }[];
}

export interface PartitionResult {
  runId: string;
  stage: number;
  partition: number;
  rows: number;
  bytes: number;
  key: string;
  /** The partition's wall time in the driver, ms, and its UDF stats (as in its marker). */
  elapsedMs: number;
  metrics: RunMetrics;
}

/** Runs one partition of one stage: reads its input (scan or previous shard), writes its shard. */
export async function runStagePartition(store: ObjectStore, runId: string, stageIndex: number, partition: number): Promise<PartitionResult> {
  const plan = await loadPlan(store, runId);
  const stage = plan.stages[stageIndex];
  if (!stage) throw new Error(`run ${runId}: no stage ${stageIndex} (plan has ${plan.stages.length})`);
  if (!Number.isInteger(partition) || partition < 0 || partition >= plan.sources.length) {
    throw new Error(`run ${runId}: partition ${partition} out of range (0..${plan.sources.length - 1})`);
  }
  try {
    return await stagePartition(store, plan, stage, partition);
  } catch (e) {
    const via = stageIndex > 0 ? `, through stage ${stageIndex - 1}'s shard` : '';
    const where = `run ${runId}, stage ${stageIndex} (${stage.executor}), partition ${partition}: ${describeSource(plan.sources[partition]!)}${via}`;
    const err = e instanceof PartitionError ? e : new PartitionError(runId, stageIndex, partition, where, e);
    // Best effort: the run's failure record reads it back; the error itself must still surface.
    const record: PartitionErrorRecord = { stage: stageIndex, partition, name: err.name, message: err.message, at: new Date().toISOString() };
    await putJson(store, errorKey(runId, stageIndex, partition), record).catch(() => undefined);
    throw err;
  }
}

async function stagePartition(store: ObjectStore, plan: RunPlan, stage: StageJSON, partition: number): Promise<PartitionResult> {
  const { runId } = plan;
  const stageIndex = stage.index;
  await importPipeline(planPipeline(plan));
  const last = stageIndex === plan.stages.length - 1;
  // The stage's input: its scan slice (stage 0) or the previous stage's shard of this partition.
  const task: PartitionTask = {
    index: partition,
    source: stageIndex === 0 ? plan.sources[partition]! : { kind: 'shard', key: keys.shard(runId, stageIndex - 1, partition) },
    ops: stage.ops,
  };
  // The driver forks the process's runtime for this partition (partitions may run side by side in
  // one process): own metrics, shared class instances.
  const ctx: ExecContext = { label: `run ${runId}, stage ${stageIndex}, partition ${partition}`, shards: (key) => readShard(store, key) };
  if (plan.batchSize !== undefined) ctx.batchSize = plan.batchSize;
  // What this stage's operators produce (the run's final schema only if nothing runs after them).
  const schema = stageSchema(plan, stageIndex);
  let key: string;
  let r: PartitionOutcome;
  const startedAt = new Date().toISOString();
  const partitioned = last ? partitionedOutput(plan) : null;
  if (partitioned) {
    // A hive layout: this partition writes its rows already split into partition directories.
    key = keys.result(runId, partition);
    r = await runPartition(task, ctx, {
      kind: 'file',
      format: partitioned.format,
      path: store.uri(resultPartKey(key, partitioned.format)),
      schema,
      partitionBy: partitioned.partitionBy,
    });
  } else if (last) {
    key = keys.result(runId, partition);
    await store.prepare(key);
    r = await runPartition(task, ctx, { kind: 'file', format: 'parquet', path: store.uri(key), schema });
  } else {
    key = keys.shard(runId, stageIndex, partition);
    r = await runPartition(task, ctx, { kind: 'shard', store, key, schema });
  }
  const marker: PartitionMarker = {
    rows: r.rows,
    bytes: r.bytes,
    metrics: r.metrics,
    elapsedMs: Math.round(r.elapsedMs),
    startedAt,
    finishedAt: new Date().toISOString(),
  };
  if (partitioned) marker.parts = (r.files ?? []).map((f) => ({ dir: f.dir, rows: f.rows, bytes: f.bytes }));
  await putJson(store, keys.metrics(runId, stageIndex, partition), marker);
  return { runId, stage: stageIndex, partition, rows: r.rows, bytes: r.bytes, key, elapsedMs: marker.elapsedMs ?? 0, metrics: r.metrics };
}

/**
 * The output of a hive-partitioned write that the last stage's partitions write themselves (no
 * global operator needs the whole ordered result first); Finalize then only commits their files.
 */
function partitionedOutput(plan: RunPlan): { partitionBy: string[]; format: 'parquet' | 'csv' } | null {
  const out = plan.output;
  if (!out?.partitionBy || plan.globalOps.length) return null;
  return { partitionBy: out.partitionBy, format: out.format };
}

/** A partition's result key in the output format (its partitioned files go to `dir/` beside it). */
function resultPartKey(resultKey: string, format: 'parquet' | 'csv'): string {
  return format === 'parquet' ? resultKey : resultKey.replace(/\.parquet$/, `.${format}`);
}

/** Where a partitioned result file of partition `p` lies: `runs/<id>/result/<dir>/part-<p>.<format>`. */
function resultFileKey(runId: string, p: number, format: 'parquet' | 'csv', dir: string): string {
  const k = resultPartKey(keys.result(runId, p), format);
  const cut = k.lastIndexOf('/');
  return `${k.slice(0, cut)}/${dir}/${k.slice(cut + 1)}`;
}

/** Output schema of a stage: the schema of its last projection/explode, else its input's. */
function stageSchema(plan: RunPlan, stageIndex: number): SchemaJSON {
  for (let s = stageIndex; s >= 0; s--) {
    const ops = plan.stages[s]!.ops;
    for (let i = ops.length - 1; i >= 0; i--) {
      const op = ops[i]!;
      if (op.type === 'project' || op.type === 'explode') return op.schema;
    }
  }
  let src = plan.sources[0];
  while (src && src.kind === 'multi') src = src.parts[0];
  if (src && (src.kind === 'parquet' || src.kind === 'csv')) return src.schema;
  return plan.schema;
}

/** An ECS GPU task: processes partitions slot, slot + slots, ... so its model loads once. */
export async function runGpuSlot(store: ObjectStore, runId: string, stageIndex: number, slot: number, slots: number): Promise<PartitionResult[]> {
  const plan = await loadPlan(store, runId);
  const out: PartitionResult[] = [];
  for (let p = slot; p < plan.sources.length; p += slots) out.push(await runStagePartition(store, runId, stageIndex, p));
  return out;
}

export interface RunSummary {
  runId: string;
  status: 'SUCCEEDED' | 'FAILED';
  rows: number;
  files: WrittenFile[];
  metrics: RunMetrics;
  error?: string;
  failedPartitions?: { stage: number; partitions: number[] }[];
  /** Failed runs: each failed partition's own error (the first few), as its worker reported it. */
  partitionErrors?: { stage: number; partition: number; error: string }[];
  /** Failed runs whose `error` comes from a partition: what the state machine reported. */
  stateMachineError?: string;
  finishedAt: string;
}

/** Partitions without a completion marker: the marker is written after the shard, so it proves both. */
async function missingShards(store: ObjectStore, plan: RunPlan): Promise<{ stage: number; partitions: number[] }[]> {
  const missing: { stage: number; partitions: number[] }[] = [];
  for (const s of plan.stages) {
    const present = new Set(await store.list(keys.stagePrefix(plan.runId, s.index)));
    const parts: number[] = [];
    for (let p = 0; p < plan.sources.length; p++) {
      if (!present.has(keys.metrics(plan.runId, s.index, p))) parts.push(p);
    }
    if (parts.length) missing.push({ stage: s.index, partitions: parts });
  }
  return missing;
}

/** Each partition's completion marker (null where missing), fetched 16 at a time: a run can have thousands. */
async function markers(store: ObjectStore, plan: RunPlan, stage: number): Promise<(PartitionMarker | null)[]> {
  return mapLimit(plan.sources, 16, async (_source, p): Promise<PartitionMarker | null> => {
    try {
      return await getJson<PartitionMarker>(store, keys.metrics(plan.runId, stage, p));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      return null;
    }
  });
}

async function sumMetrics(store: ObjectStore, plan: RunPlan): Promise<RunMetrics> {
  const total: RunMetrics = {};
  for (const s of plan.stages) for (const m of await markers(store, plan, s.index)) if (m) mergeMetrics(total, m.metrics);
  return total;
}

/**
 * Finalize: every stage complete, then the result is committed — to the output (files copied under
 * its _temporary, renamed, manifest written last) or, without an output, a manifest in the run's
 * result prefix. Global operators (a limit) run here over the ordered result.
 */
export async function finalizeRun(store: ObjectStore, runId: string): Promise<RunSummary> {
  // Idempotent: a retried Finalize (the state machine retries service errors) returns the first
  // commit's summary instead of committing twice.
  if (await store.exists(keys.summary(runId))) return getJson<RunSummary>(store, keys.summary(runId));
  const plan = await loadPlan(store, runId);
  await importPipeline(planPipeline(plan));
  const missing = await missingShards(store, plan);
  if (missing.length) {
    const what = missing.map((m) => `stage ${m.stage}: partitions ${m.partitions.slice(0, 20).join(', ')}${m.partitions.length > 20 ? ', …' : ''}`).join('; ');
    throw new Error(`run ${runId} is incomplete (${what}); nothing was committed`);
  }
  const schema = Schema.fromJSON(plan.schema);
  const shardSchema = Schema.fromJSON(stageSchema(plan, plan.stages.length - 1));
  const resultKeys = plan.sources.map((_, p) => keys.result(runId, p));
  const target = plan.output?.uri ?? store.uri(keys.output(runId));
  const writer = await DatasetWriter.begin(target, { format: plan.output?.format ?? 'parquet', mode: plan.output?.mode ?? 'overwrite' });
  try {
    let parts: WrittenFile[];
    const partitioned = partitionedOutput(plan);
    if (partitioned) {
      // A hive layout the partitions wrote themselves: copy every file in, one commit (as unpartitioned results).
      const { partitionedCommitParts } = await import('../io/partitioned-writer.ts');
      const last = await markers(store, plan, plan.stages.length - 1);
      const files = last.flatMap((m, p) => (m?.parts ?? []).map((f) => ({ ...f, p })));
      const written = await mapLimit(files, 16, async (f): Promise<WrittenFile> => {
        const dest = writer.partPath(f.p, f.dir);
        await store.copy(resultFileKey(runId, f.p, partitioned.format, f.dir), dest);
        return { path: dest, rows: f.rows, bytes: f.bytes };
      });
      parts = await partitionedCommitParts(writer, written, schema, partitioned.partitionBy, plan.output?.mode !== 'overwrite-partitions');
    } else if (plan.output?.partitionBy) {
      // A hive layout after a global operator (a limit): one ordered pass over the shards, split into partition directories.
      const { readParquetBatches } = await import('../io/parquet/index.ts');
      const { writePartitionedParts } = await import('../io/partitioned-writer.ts');
      const all = (async function* () {
        for (const k of resultKeys) yield* readParquetBatches(store.uri(k), { schema: shardSchema });
      })();
      parts = await writePartitionedParts(
        writer,
        0,
        applyOps(all, plan.globalOps),
        schema,
        plan.output.partitionBy,
        {},
        plan.output.mode !== 'overwrite-partitions',
      );
    } else if (plan.globalOps.length || (plan.output && plan.output.format !== 'parquet')) {
      // One ordered pass over the shards through the global operators.
      const { readParquetBatches } = await import('../io/parquet/index.ts');
      const all = (async function* () {
        for (const k of resultKeys) yield* readParquetBatches(store.uri(k), { schema: shardSchema });
      })();
      parts = [await writer.writePart(0, applyOps(all, plan.globalOps), { schema })];
    } else {
      const last = await markers(store, plan, plan.stages.length - 1);
      parts = [];
      for (let p = 0; p < resultKeys.length; p++) {
        const rows = last[p]?.rows ?? 0;
        // Empty partitions leave no file, unless all are empty (one keeps the schema).
        if (rows === 0 && (parts.length || p < resultKeys.length - 1)) continue;
        const dest = writer.partPath(p);
        await store.copy(resultKeys[p]!, dest);
        parts.push({ path: dest, rows, bytes: last[p]?.bytes ?? 0 });
      }
    }
    const files = await writer.commit(parts);
    const summary: RunSummary = {
      runId,
      status: 'SUCCEEDED',
      rows: files.reduce((n, f) => n + f.rows, 0),
      files,
      metrics: await sumMetrics(store, plan),
      finishedAt: new Date().toISOString(),
    };
    await putJson(store, keys.summary(runId), summary);
    return summary;
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** The failed partitions' own errors (at most `max`), from the records their workers left. */
async function partitionErrors(
  store: ObjectStore,
  runId: string,
  missing: { stage: number; partitions: number[] }[],
  max = 10,
): Promise<PartitionErrorRecord[]> {
  const out: PartitionErrorRecord[] = [];
  for (const m of missing) {
    const present = new Set(await store.list(keys.stagePrefix(runId, m.stage)));
    for (const p of m.partitions) {
      if (out.length >= max) return out;
      const k = errorKey(runId, m.stage, p);
      if (!present.has(k)) continue;
      try {
        out.push(await getJson<PartitionErrorRecord>(store, k));
      } catch {
        // A record that cannot be read adds nothing; the state machine's error still stands.
      }
    }
  }
  return out;
}

/**
 * The failure path: records what failed (which partitions have no shard), the failed partitions'
 * own errors (UDF, partition, input, original message) and the state machine's error.
 */
export async function recordFailure(store: ObjectStore, runId: string, error: string): Promise<RunSummary> {
  let failedPartitions: RunSummary['failedPartitions'] = [];
  let errors: PartitionErrorRecord[] = [];
  let metrics: RunMetrics = {};
  try {
    const plan = await loadPlan(store, runId);
    failedPartitions = await missingShards(store, plan);
    errors = await partitionErrors(store, runId, failedPartitions);
    metrics = await sumMetrics(store, plan);
  } catch {
    // No plan (the Plan step itself failed): the error says why.
  }
  const first = errors[0];
  const summary: RunSummary = {
    runId,
    status: 'FAILED',
    rows: 0,
    files: [],
    metrics,
    // The partition's own error says more than the state machine's (an ECS exit, a Map threshold).
    error: first ? `${first.name}: ${first.message}` : error,
    failedPartitions,
    finishedAt: new Date().toISOString(),
  };
  if (first) summary.stateMachineError = error;
  if (errors.length) summary.partitionErrors = errors.map((e) => ({ stage: e.stage, partition: e.partition, error: `${e.name}: ${e.message}` }));
  await putJson(store, keys.failure(runId), summary);
  return summary;
}

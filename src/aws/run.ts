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
import { applyOps, ipcChunks as ipcStream, runPartition, type ExecContext, type PartitionOutcome } from '../executor.ts';
import { checkWriteOptions, type ParquetWriterOptions } from '../io/parquet/index.ts';
import { DatasetWriter, type WrittenFile } from '../io/writer.ts';
import { MANIFEST_NAME, type Manifest } from '../io/paths.ts';
import { optimize } from '../optimizer.ts';
import { AWS_MIN_PARTITIONS, buildPhysicalPlan, type OpJSON, type PartitionTask, type SourceJSON } from '../physical.ts';
import type { PlanNode } from '../plan.ts';
import { mergeMetrics, type RunMetrics, type UdfRuntime } from '../udf-exec.ts';
import { gpuSlotRuntime } from './slot-actors.ts';
import { splitStages, DEFAULT_STAGE_OPTIONS, type StageJSON, type StageOptions } from './stages.ts';
import { getJson, isRemotePath, NotFoundError, putJson, type ObjectStore } from '../io/store/index.ts';
import { captureSmallObject } from '../io/s3/index.ts';
import type { AdoptedPart } from '../io/commit-objects.ts';
import type { DataTypeJSON } from '../datatypes.ts';
import { udfCalls } from '../expressions.ts';
import { getUdf } from '../udf.ts';
import { checkTolerance, mapThresholds, toleranceText, toleratesFailures, withinTolerance, type FailureTolerance } from './tolerance.ts';
import { endsInRelational, planRelationalStages } from './shuffle-plan.ts';
import { KeySampler, operatorInput, plainInputSource, writeBoundaries, writeExchange, type ShuffleContext } from './shuffle.ts';
import type { StageInputJSON } from './shuffle-types.ts';

export const PLAN_VERSION = 1;

/** Partition target of serverless runs (uncompressed projected bytes): about one Lambda's worth. */
export const DEFAULT_AWS_PARTITION_BYTES = 128 << 20;

export interface RunOutput {
  uri: string;
  format: 'parquet' | 'csv';
  mode: 'error' | 'overwrite' | 'append' | 'overwrite-partitions';
  /** Hive layout: Finalize splits the result into `key=value/` directories (see partitioned-writer.ts). */
  partitionBy?: string[];
  /** Parquet writer options of the result files (validated by planRun); absent: the writer's defaults. */
  parquet?: ParquetWriterOptions;
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
  /** Partitions that may fail while the run still commits the rest (tolerance.ts); absent: none. */
  tolerance?: FailureTolerance;
  /** Every UDF the stages call and its return type when planned: a resume checks the pipeline still has them (resume.ts). */
  udfs?: PlanUdf[];
  /** W3C traceparent of the run's span when OpenTelemetry is on: every handler continues its trace. */
  traceparent?: string;
  /** Relational runs: the width of their hash and range exchanges and the broadcast-join threshold (shuffle-plan.ts). */
  shuffle?: { partitions: number; broadcastJoinBytes: number };
}

export interface PlanUdf {
  name: string;
  stage: number;
  returnType: DataTypeJSON;
}

/** What the Plan step returns to the state machine: small, whatever the partition count. */
export interface PlanSummary {
  runId: string;
  workBucket: string;
  stages: {
    index: number;
    executor: StageJSON['executor'];
    partitions: number;
    /** Partitions without a completion marker (all on a fresh run; a resume runs only these). */
    remaining: number;
    concurrency: number;
    slots: number;
    itemsKey: string;
    /** The stage's sizing class (placement.ts): the state machine routes it to that class's function or task definition. */
    sizing: string;
    /** The Distributed Map's thresholds (tolerance.ts). */
    toleratedFailurePercentage: number;
    toleratedFailureCount: number;
    /** Partitions one Stage invocation runs (the Map's ItemBatcher / range step). */
    partitionsPerInvocation: number;
  }[];
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
  /** A batched Stage invocation's markers in one object (writeMarkerBatch): partitions first..last. */
  markerBatch: (runId: string, stage: number, first: number, last: number) =>
    `${run(runId)}/stage-${index(stage, 'stage')}/markers-${String(index(first, 'partition')).padStart(5, '0')}-${String(index(last, 'partition')).padStart(5, '0')}.json`,
  stagePrefix: (runId: string, stage: number) => `${run(runId)}/stage-${index(stage, 'stage')}/`,
  resultPrefix: (runId: string) => `${run(runId)}/result/`,
  /** Where a run without an output commits its result: a manifest naming the result files in place (read back by the runner). */
  output: (runId: string) => `${run(runId)}/output`,
};

export function newRunId(): string {
  return `${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomUUID().slice(0, 8)}`;
}

/**
 * What a pipeline module may export as `planOptions` to tune how the Plan Lambda plans its runs
 * (S3-triggered ones included): the target partition size and the fan-out for UDF plans.
 */
export interface PipelinePlanOptions {
  /** Target partition size in uncompressed bytes of the columns read. Default 128 MiB. */
  targetPartitionBytes?: number;
  /** With UDFs, split the input into at least this many partitions. Default 32. */
  minPartitions?: number;
  /** groupBy / distinct / join / sort: partitions of their hash and range exchanges. Default: the widest input's partition count, at most 32. */
  shufflePartitions?: number;
  /** A join's right side estimated under this many bytes is broadcast (no shuffle); 0 never broadcasts. Default 32 MiB. */
  broadcastJoinBytes?: number;
}

/** Builds the run plan for a logical plan (optimized and split into stages here). */
export function planRun(
  plan: PlanNode,
  opts: {
    runId?: string;
    pipeline: string | string[] | null;
    output?: RunOutput | null;
    targetPartitionBytes?: number;
    /** With UDFs, split the scan into at least this many partitions (default AWS_MIN_PARTITIONS). */
    minPartitions?: number;
    batchSize?: number;
    stageOptions?: StageOptions;
    tolerance?: FailureTolerance;
    /** Relational plans: partitions of hash and range exchanges (default: the widest input's, at most 32). */
    shufflePartitions?: number;
    /** Relational plans: a join's right side estimated under this many bytes is broadcast (default 32 MiB). */
    broadcastJoinBytes?: number;
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
  for (const k of ['targetPartitionBytes', 'minPartitions'] as const) {
    const v = opts[k];
    if (v !== undefined && (!Number.isInteger(v) || v <= 0)) throw new RangeError(`planRun: ${k} must be a positive integer, got ${String(v)}`);
  }
  const optimized = optimize(plan);
  const sizing = {
    targetPartitionBytes: opts.targetPartitionBytes ?? DEFAULT_AWS_PARTITION_BYTES,
    minPartitions: opts.minPartitions ?? AWS_MIN_PARTITIONS,
  };
  let planned: Pick<RunPlan, 'sources' | 'stages' | 'globalOps' | 'shuffle'>;
  if (endsInRelational(optimized)) {
    // Every exchange is a stage boundary (shuffle-plan.ts).
    const rel: Parameters<typeof planRelationalStages>[1] = { ...sizing, stageOptions: opts.stageOptions ?? DEFAULT_STAGE_OPTIONS };
    if (opts.shufflePartitions !== undefined) rel.shufflePartitions = opts.shufflePartitions;
    if (opts.broadcastJoinBytes !== undefined) rel.broadcastJoinBytes = opts.broadcastJoinBytes;
    const r = planRelationalStages(optimized, rel);
    planned = { ...r, shuffle: { partitions: r.shufflePartitions, broadcastJoinBytes: r.broadcastJoinBytes } };
  } else {
    const physical = buildPhysicalPlan(optimized, sizing);
    planned = {
      sources: physical.partitions.map((p) => p.source),
      stages: splitStages(physical, opts.stageOptions ?? DEFAULT_STAGE_OPTIONS),
      globalOps: physical.globalOps,
    };
  }
  const stages = planned.stages;
  const run: RunPlan = {
    version: PLAN_VERSION,
    runId: opts.runId === undefined ? newRunId() : checkRunId(opts.runId),
    pipeline: opts.pipeline,
    createdAt: new Date().toISOString(),
    schema: optimized.schema,
    sources: planned.sources,
    stages,
    globalOps: planned.globalOps,
    output: runOutput(opts.output ?? null, optimized.schema),
  };
  if (opts.batchSize !== undefined) run.batchSize = opts.batchSize;
  if (planned.shuffle) run.shuffle = planned.shuffle;
  const tolerance = checkTolerance(opts.tolerance, 'planRun');
  if (tolerance) run.tolerance = tolerance;
  run.udfs = planUdfs(stages);
  return run;
}

/**
 * The output spec as the plan stores it: writer options checked against the result's schema here
 * (not in a Lambda after the run's work), and left out when there are none (such plans are unchanged).
 */
function runOutput(output: RunOutput | null, schema: SchemaJSON): RunOutput | null {
  if (!output) return null;
  const { parquet, ...rest } = output;
  if (!parquet || !Object.keys(parquet).length) return rest;
  if (output.format !== 'parquet') throw new TypeError(`writing ${output.uri}: Parquet writer options given for a ${output.format} output`);
  checkWriteOptions(parquet, Schema.fromJSON(schema), output.uri);
  return { ...rest, parquet };
}

/** Each stage's UDFs with their return types, as the registry has them now. */
export function planUdfs(stages: readonly StageJSON[]): PlanUdf[] {
  const out: PlanUdf[] = [];
  for (const s of stages) {
    const seen = new Set<string>();
    for (const op of s.ops) {
      const exprs = op.type === 'filter' ? [op.predicate] : op.type === 'project' ? op.exprs : [];
      for (const e of exprs)
        for (const c of udfCalls(e)) {
          if (seen.has(c.name)) continue;
          seen.add(c.name);
          out.push({ name: c.name, stage: s.index, returnType: getUdf(c.name).returnDtype.json });
        }
    }
  }
  return out;
}

/** Whether a plan reads in-memory batches (which only the process holding them can run). */
export function hasMemorySource(plan: PlanNode): boolean {
  let n = plan;
  while ('input' in n) n = n.input;
  if ('inputs' in n) return n.inputs.some(hasMemorySource);
  return n.type === 'in_memory';
}

/** Partitions of a stage: its own count in relational runs (an exchange changes it), else the run's sources. */
export function stagePartitions(plan: Pick<RunPlan, 'sources' | 'stages'>, stage: number): number {
  return plan.stages[stage]?.partitions ?? plan.sources.length;
}

/** A stage partition's input in words (errors, failure records, run histories). */
export function describePartitionInput(plan: RunPlan, stage: number, partition: number): string {
  const s = plan.stages[stage];
  const input = s?.input;
  if (!input) {
    // A linear run's partition keeps its scan slice through every stage (the error adds "through stage k's shard").
    const source = s?.partitions === undefined || stage === 0 ? plan.sources[partition] : undefined;
    return source ? describeSource(source) : `shard ${keys.shard(plan.runId, stage - 1, partition)}`;
  }
  const plain = plainInputSource({ shardKey: (st, p) => keys.shard(plan.runId, st, p) }, input, partition);
  if (plain) return describeSource(plain);
  if (input.kind === 'boundaries') return `the key samples of stage ${input.from.stage}`;
  if (input.kind === 'gather') return `every shard of stage ${input.from.stage}, in partition order`;
  if (input.kind === 'join' && input.strategy === 'broadcast') {
    const probe = input.probe ? plainInputSource({ shardKey: (st, p) => keys.shard(plan.runId, st, p) }, input.probe.input, partition) : null;
    const left = probe ? describeSource(probe) : `stage ${input.left.stage}'s shard ${partition}`;
    return `join of ${left} with every shard of stage ${input.right.stage}`;
  }
  const from = input.kind === 'join' ? `stages ${input.left.stage} and ${input.right.stage}` : 'from' in input ? `stage ${input.from.stage}` : 'its inputs';
  return `${input.kind}: bucket ${partition} of every map partition of ${from}`;
}

/**
 * Writes the plan and each stage's partition index list; returns the small summary. Only partitions
 * without a completion marker are listed (all of them on a fresh run), so a resumed run or a rerun
 * of the same run id reuses every finished shard.
 */
/** `stored`: the plan was read from its key (a planned run, a resume): it is not written again. */
export async function preparePlan(store: ObjectStore, plan: RunPlan, workBucket: string, opts: { stored?: boolean } = {}): Promise<PlanSummary> {
  if (!opts.stored) await putJson(store, keys.plan(plan.runId), plan);
  const missing = new Map((await missingShards(store, plan)).map((m) => [m.stage, m.partitions]));
  const stages: PlanSummary['stages'] = [];
  for (const s of plan.stages) {
    const itemsKey = keys.items(plan.runId, s.index);
    const n = stagePartitions(plan, s.index);
    const todo = missing.get(s.index) ?? [];
    // Map ItemReader input: partition indices (or worker slots for GPU stages: each skips its finished partitions).
    await putJson(store, itemsKey, s.executor === 'lambda' ? todo : Array.from({ length: s.slots }, (_, i) => i));
    stages.push({
      index: s.index,
      executor: s.executor,
      partitions: n,
      remaining: todo.length,
      concurrency: s.concurrency,
      slots: s.slots,
      itemsKey,
      ...mapThresholds(plan.tolerance, n),
      sizing: s.placement?.key ?? '',
      // Plans written before batching existed run one partition per invocation.
      partitionsPerInvocation: s.partitionsPerInvocation ?? 1,
    });
  }
  return { runId: plan.runId, workBucket, stages };
}

// Plans a warm worker has read, by their object's URI (a run id alone would mix two work buckets'
// runs), the most recently used few: a warm Lambda environment serves run after run, and a plan
// lists every partition of its run.
const PLAN_CACHE_MAX = 8;
const planCache = new Map<string, RunPlan>();

export async function loadPlan(store: ObjectStore, runId: string): Promise<RunPlan> {
  const uri = store.uri(keys.plan(runId));
  let p = planCache.get(uri);
  if (p) {
    planCache.delete(uri); // most recently used last
    planCache.set(uri, p);
    return p;
  }
  try {
    p = await getJson<RunPlan>(store, keys.plan(runId));
  } catch (e) {
    if (e instanceof NotFoundError) throw new Error(`run ${runId}: no plan at ${uri}`);
    throw e;
  }
  if (p.version !== PLAN_VERSION) throw new Error(`run ${runId}: plan version ${p.version}, this worker understands ${PLAN_VERSION}`);
  if (p.runId !== runId) throw new Error(`run ${runId}: ${uri} belongs to run ${JSON.stringify(p.runId)}`);
  planCache.set(uri, p);
  while (planCache.size > PLAN_CACHE_MAX) planCache.delete(planCache.keys().next().value!);
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
export function planPipeline(plan: RunPlan): string[] {
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
  const rows = s.kind === 'parquet' && s.rows ? ` rows ${s.rows.start}-${s.rows.end}` : '';
  return `${s.path}${rg}${rows}`;
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
  /** The failing UDF, when a UDF failed. */
  udf?: string;
}

/** The UDF named by an error or one of its causes (UdfError.udf). */
function failingUdf(e: unknown): string | undefined {
  for (let c = e, depth = 0; c && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const udf = (c as { udf?: unknown }).udf;
    if (typeof udf === 'string') return udf;
  }
  return undefined;
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
  /** A map partition of an exchange (shuffle.ts): the buckets it wrote (the others had no rows). */
  buckets?: number[];
  /**
   * A small result committed in place (a run without an output): the result object's ETag and its
   * bytes (base64), so the runner reads it back from the marker it already reads, without a GET.
   * The runner uses them only for the version a listing of the results names (same ETag and size).
   */
  result?: { etag: string; data: string };
}

/** Results up to this size travel in their completion marker (a batch of 15 markers stays under ~0.7 MB). */
const INLINE_RESULT_MAX = 32 << 10;

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
  /** Not run by this call: finished before (resume, redrive), or no input after a tolerated failure. */
  skipped?: true;
  /** Epoch ms the driver started it (trace spans). */
  startedAt: number;
  /** The completion marker this call wrote (absent when skipped). */
  marker?: PartitionMarker;
}

/** Runs one partition of one stage: reads its input (scan or previous shard), writes its shard. */
export async function runStagePartition(store: ObjectStore, runId: string, stageIndex: number, partition: number, rt?: UdfRuntime): Promise<PartitionResult> {
  const plan = await loadPlan(store, runId);
  const stage = plan.stages[stageIndex];
  if (!stage) throw new Error(`run ${runId}: no stage ${stageIndex} (plan has ${plan.stages.length})`);
  const count = stagePartitions(plan, stageIndex);
  if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
    throw new Error(`run ${runId}: partition ${partition} of stage ${stageIndex} out of range (0..${count - 1})`);
  }
  try {
    return await stagePartition(store, plan, stage, partition, rt);
  } catch (e) {
    const via = stageIndex > 0 && !stage.input ? `, through stage ${stageIndex - 1}'s shard` : '';
    const where = `run ${runId}, stage ${stageIndex} (${stage.executor}), partition ${partition}: ${describePartitionInput(plan, stageIndex, partition)}${via}`;
    const err = e instanceof PartitionError ? e : new PartitionError(runId, stageIndex, partition, where, e);
    // Best effort: the run's failure record reads it back; the error itself must still surface.
    const record: PartitionErrorRecord = { stage: stageIndex, partition, name: err.name, message: err.message, at: new Date().toISOString() };
    const udf = failingUdf(e);
    if (udf) record.udf = udf;
    await putJson(store, errorKey(runId, stageIndex, partition), record).catch(() => undefined);
    // The stage fails in the Stages Map itself (no Catch, so a redrive re-enters it): the first
    // failing partition leaves the run's failure record; a runner watching the run rewrites it whole.
    if (!toleratesFailures(plan.tolerance)) await recordFirstFailure(store, plan, `${err.name}: ${err.message}`).catch(() => undefined);
    throw err;
  }
}

async function stagePartition(store: ObjectStore, plan: RunPlan, stage: StageJSON, partition: number, rt?: UdfRuntime): Promise<PartitionResult> {
  const { runId } = plan;
  const stageIndex = stage.index;
  const last = stageIndex === plan.stages.length - 1;
  const resultKey = last ? keys.result(runId, partition) : keys.shard(runId, stageIndex, partition);
  // Finished before (a resume, a redrive, a retried GPU slot): the marker is written after the
  // shard, so it proves both; the partition is not run again.
  const done = await readMarker(store, runId, stageIndex, partition);
  if (done)
    return {
      runId,
      stage: stageIndex,
      partition,
      rows: done.rows,
      bytes: done.bytes,
      key: resultKey,
      elapsedMs: 0,
      metrics: {},
      startedAt: Date.now(),
      skipped: true,
    };
  // A tolerated failure upstream: this partition has no input; Finalize reports it as failed.
  if (await skipAfterTolerated(store, plan, stage, partition)) {
    return { runId, stage: stageIndex, partition, rows: 0, bytes: 0, key: resultKey, elapsedMs: 0, metrics: {}, startedAt: Date.now(), skipped: true };
  }
  await importPipeline(planPipeline(plan));
  // The stage's input: its scan slice (stage 0), the previous stage's shard of this partition, or
  // (relational runs) what stage.input names: an exchange's bucket, another input's scan.
  const shuffle = shuffleContext(store, plan, stage);
  let source: SourceJSON = stageIndex === 0 ? plan.sources[partition]! : { kind: 'shard', key: keys.shard(runId, stageIndex - 1, partition) };
  let readShards = (key: string): AsyncIterable<arrow.RecordBatch> => readShard(store, key);
  const startedAt = new Date().toISOString();
  if (stage.input?.kind === 'boundaries') {
    // The sort's boundaries step: no rows, one small file.
    const t0 = performance.now();
    const n = await writeBoundaries(shuffle, stageIndex, stage.input);
    const marker: PartitionMarker = {
      rows: n,
      bytes: 0,
      metrics: {},
      elapsedMs: Math.round(performance.now() - t0),
      startedAt,
      finishedAt: new Date().toISOString(),
    };
    await putJson(store, keys.metrics(runId, stageIndex, partition), marker);
    return {
      runId,
      stage: stageIndex,
      partition,
      rows: n,
      bytes: 0,
      key: resultKey,
      elapsedMs: marker.elapsedMs ?? 0,
      metrics: {},
      startedAt: Date.parse(startedAt),
      marker,
    };
  }
  if (stage.input) {
    const plain = plainInputSource(shuffle, stage.input, partition);
    if (plain) source = plain;
    else {
      // An operator over earlier stages' output (merge aggregation, join, sort): the partition
      // driver reads it as this partition's shard, then runs the stage's operators over it.
      const input = stage.input;
      source = { kind: 'shard', key: `${keys.stagePrefix(runId, stageIndex)}input-${partition}` };
      const own = source.key;
      readShards = (key) => (key === own ? operatorInput(shuffle, input, partition) : readShard(store, key));
    }
  }
  const task: PartitionTask = { index: partition, source, ops: stage.ops };
  // The driver forks the process's runtime for this partition (partitions may run side by side in
  // one process): own metrics, shared class instances.
  const ctx: ExecContext = { label: `run ${runId}, stage ${stageIndex}, partition ${partition}`, shards: readShards };
  if (plan.batchSize !== undefined) ctx.batchSize = plan.batchSize;
  if (rt) ctx.rt = rt;
  // What this stage's operators produce (the run's final schema only if nothing runs after them).
  const schema = stageSchema(plan, stageIndex);
  let key: string;
  let r: PartitionOutcome;
  let buckets: number[] | undefined;
  let inline: PartitionMarker['result'];
  const partitioned = last ? partitionedOutput(plan) : null;
  if (stage.exchange && stage.exchange.kind !== 'sample') {
    // A map partition of a hash or range exchange: bucket files, then (below) the marker listing them.
    const stream = runPartition(task, ctx);
    const written = await writeExchange(shuffle, stageIndex, partition, stage.exchange, stream, schema);
    r = { ...stream.outcome(), bytes: written.bytes };
    buckets = written.buckets;
    key = `${keys.stagePrefix(runId, stageIndex)}shuffle/`;
  } else if (stage.exchange) {
    // A sort's map partition: its shard, and a sample of its keys for the boundaries step.
    const sampler = new KeySampler(stage.exchange.keys);
    key = keys.shard(runId, stageIndex, partition);
    const stream = runPartition(task, ctx);
    const bytes = await store.upload(key, ipcStream(sampler.tap(stream), Schema.fromJSON(schema).toArrow()));
    await sampler.write(shuffle, stageIndex, partition);
    r = { ...stream.outcome(), bytes, path: key };
  } else if (partitioned) {
    // A hive layout: this partition writes its rows already split into partition directories.
    key = keys.result(runId, partition);
    r = await runPartition(task, ctx, {
      kind: 'file',
      format: partitioned.format,
      path: store.uri(resultPartKey(key, partitioned.format)),
      schema,
      partitionBy: partitioned.partitionBy,
      ...writerOptions(plan),
    });
  } else if (last) {
    key = keys.result(runId, partition);
    await store.prepare(key);
    // Committed in place (see finalize): the runner reads this very object back, so a small one rides in the marker.
    const inPlace = !plan.output && !plan.globalOps.length && isRemotePath(store.uri(key));
    const captured = inPlace ? captureSmallObject(store.uri(key), INLINE_RESULT_MAX) : null;
    try {
      r = await runPartition(task, ctx, { kind: 'file', format: 'parquet', path: store.uri(key), schema, ...writerOptions(plan) });
    } finally {
      const got = captured?.();
      if (got) inline = { etag: got.etag, data: Buffer.from(got.bytes.buffer, got.bytes.byteOffset, got.bytes.byteLength).toString('base64') };
    }
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
  if (buckets) marker.buckets = buckets;
  if (inline) marker.result = inline;
  await putJson(store, keys.metrics(runId, stageIndex, partition), marker);
  return {
    runId,
    stage: stageIndex,
    partition,
    rows: r.rows,
    bytes: r.bytes,
    key,
    elapsedMs: marker.elapsedMs ?? 0,
    metrics: r.metrics,
    startedAt: r.startedAt,
    marker,
  };
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

/** The output's Parquet writer options as a FileSink field (none: the sink as before). */
function writerOptions(plan: RunPlan): { parquet?: ParquetWriterOptions } {
  return plan.output?.parquet ? { parquet: plan.output.parquet } : {};
}

/** What the shuffle of a stage's partition needs from the run (shuffle.ts does not import this module). */
function shuffleContext(store: ObjectStore, plan: RunPlan, stage: StageJSON): ShuffleContext {
  return {
    store,
    runId: plan.runId,
    shardKey: (s, p) => keys.shard(plan.runId, s, p),
    markerKey: (s, p) => keys.metrics(plan.runId, s, p),
    batchSize: plan.batchSize ?? 65536,
    // A quarter of the stage's memory (Lambda's, or the task's) for the operator's tables before they spill.
    budgetBytes: Math.max(32 << 20, Math.floor((stage.memoryMiB * (1 << 20)) / 4)),
    tolerant: toleratesFailures(plan.tolerance),
  };
}

/**
 * The one earlier partition a stage partition reads, when it reads exactly one (a linear stage, an
 * earlier stage's shard, a concat's partition, a broadcast join's probe shard); null for a scan or
 * an input that reads every partition of a stage (a reduce, a gather, a build side).
 */
function singleUpstream(stage: StageJSON, partition: number): { stage: number; partition: number } | null {
  const shardOf = (input: StageInputJSON): { stage: number; partition: number } | null => {
    if (input.kind === 'shard') return { stage: input.stage, partition };
    if (input.kind !== 'concat') return null;
    let p = partition;
    for (const i of input.inputs) {
      if (p < i.partitions) return { stage: i.stage, partition: p };
      p -= i.partitions;
    }
    return null;
  };
  const input = stage.input;
  if (!input) return stage.index > 0 ? { stage: stage.index - 1, partition } : null;
  if (input.kind === 'join' && input.strategy === 'broadcast') return input.probe ? shardOf(input.probe.input) : { stage: input.left.stage, partition };
  return shardOf(input);
}

/**
 * A tolerated failure upstream: the partition this one reads failed, so this one has no input and is
 * left out with it (Finalize reports it as failed). Where the numbering differs (a concat's later
 * inputs), its error record names the input and that input's error, so the report says what failed.
 */
async function skipAfterTolerated(store: ObjectStore, plan: RunPlan, stage: StageJSON, partition: number): Promise<boolean> {
  if (stage.index === 0 || !toleratesFailures(plan.tolerance)) return false;
  const up = singleUpstream(stage, partition);
  if (!up || (await store.exists(keys.metrics(plan.runId, up.stage, up.partition)))) return false;
  if (up.partition !== partition) {
    const cause = await getJson<PartitionErrorRecord>(store, errorKey(plan.runId, up.stage, up.partition)).catch(() => null);
    const record: PartitionErrorRecord = {
      stage: stage.index,
      partition,
      name: cause?.name ?? 'Error',
      message: `its input, partition ${up.partition} of stage ${up.stage}, failed${cause ? `: ${cause.message}` : ' (no error recorded)'}`,
      at: new Date().toISOString(),
    };
    if (cause?.udf) record.udf = cause.udf;
    await putJson(store, errorKey(plan.runId, stage.index, partition), record).catch(() => undefined);
  }
  return true;
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
  const own = plan.stages[stageIndex]?.schema;
  if (own) return own;
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

/** Marker keys a batched Stage invocation listed as missing just before running them: readMarker needs no GET for them (used once). */
const listedMissing = new Set<string>();

/**
 * A batch of partitions of one stage (one Stage invocation): one listing of their markers' common
 * key prefix says which have none, so checking each before it runs costs no request (k partitions:
 * one LIST instead of k GETs that mostly answer NoSuchKey).
 */
export async function listMissingMarkers(store: ObjectStore, runId: string, stage: number, partitions: readonly number[]): Promise<void> {
  if (partitions.length < 2) return;
  const ks = partitions.map((p) => keys.metrics(runId, stage, p));
  const sorted = [...ks].sort();
  const [lo, hi] = [sorted[0]!, sorted[sorted.length - 1]!];
  let n = 0;
  while (n < lo.length && lo[n] === hi[n]) n++;
  const present = new Set(await store.list(lo.slice(0, n)));
  if (listedMissing.size > 100_000) listedMissing.clear();
  for (const k of ks) {
    if (present.has(k)) listedMissing.delete(k);
    else listedMissing.add(k);
  }
}

/** What writeMarkerBatch writes: each partition's completion marker, by partition. */
export interface MarkerBatch {
  markers: Record<string, PartitionMarker>;
}

/**
 * After a batched Stage invocation: the completion markers of the partitions it ran, again, in one
 * object written after all of them (keys.markerBatch). Finalize then reads one object per
 * invocation instead of one marker per partition, and so does the runner's live progress
 * (MarkerWatcher). The per-partition markers stay the record of completion (listings, resume,
 * redrive, progress); Finalize takes a partition's marker from a batch
 * only when the listing has the partition's own marker. Best effort: without the batch, Finalize
 * reads the markers one by one.
 */
export async function writeMarkerBatch(store: ObjectStore, results: readonly PartitionResult[]): Promise<void> {
  const ran = results.filter((r): r is PartitionResult & { marker: PartitionMarker } => r.marker !== undefined);
  const first = ran[0];
  if (!first || ran.length < 2 || ran.some((r) => r.runId !== first.runId || r.stage !== first.stage)) return;
  const ps = ran.map((r) => r.partition);
  const batch: MarkerBatch = { markers: Object.fromEntries(ran.map((r) => [String(r.partition), r.marker])) };
  await putJson(store, keys.markerBatch(first.runId, first.stage, Math.min(...ps), Math.max(...ps)), batch).catch(() => undefined);
}

/** A partition's completion marker, or null when it has none. */
async function readMarker(store: ObjectStore, runId: string, stage: number, partition: number): Promise<PartitionMarker | null> {
  if (listedMissing.delete(keys.metrics(runId, stage, partition))) return null;
  try {
    return await getJson<PartitionMarker>(store, keys.metrics(runId, stage, partition));
  } catch (e) {
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}

/**
 * An ECS GPU task: processes partitions slot, slot + slots, ... so its model loads once. With
 * tolerated failures a failing partition does not stop the slot (its error is recorded; Finalize
 * decides whether the run may commit without it).
 */
export async function runGpuSlot(store: ObjectStore, runId: string, stageIndex: number, slot: number, slots: number): Promise<PartitionResult[]> {
  const plan = await loadPlan(store, runId);
  const stage = plan.stages[stageIndex];
  if (!stage) throw new Error(`run ${runId}: no stage ${stageIndex} (plan has ${plan.stages.length})`);
  // GPU UDFs in actor processes placed on this task's devices (fractions packed), started once for every partition of the slot.
  await importPipeline(planPipeline(plan));
  const tolerant = toleratesFailures(plan.tolerance);
  const actors = gpuSlotRuntime(stage);
  const out: PartitionResult[] = [];
  try {
    for (let p = slot, n = stagePartitions(plan, stageIndex); p < n; p += slots) {
      try {
        out.push(await runStagePartition(store, runId, stageIndex, p, actors?.rt));
      } catch (e) {
        if (!tolerant) throw e;
      }
    }
  } finally {
    await actors?.close();
  }
  return out;
}

/** A failed partition: where it failed (stage, partition and its input), the UDF and the message. */
export interface PartitionErrorSummary {
  stage: number;
  partition: number;
  error: string;
  /** The partition's input: file and row groups (or row range). */
  source?: string;
  /** The UDF that failed, when a UDF failed. */
  udf?: string;
}

export interface RunSummary {
  runId: string;
  status: 'SUCCEEDED' | 'FAILED';
  rows: number;
  files: WrittenFile[];
  metrics: RunMetrics;
  error?: string;
  failedPartitions?: { stage: number; partitions: number[] }[];
  /** Failed runs: each failed partition's own error (the first few), as its worker reported it; runs with tolerated failures: every failed partition's (up to 1000). */
  partitionErrors?: PartitionErrorSummary[];
  /** false: committed with tolerated failures (failedPartitions / partitionErrors say which); absent or true: every partition. */
  complete?: boolean;
  /** Failed runs whose `error` comes from a partition: what the state machine reported. */
  stateMachineError?: string;
  finishedAt: string;
}

/**
 * Partitions without a completion marker: the marker is written after the shard, so it proves both.
 * `listed` (when given) receives each stage's listing (key -> last modified), for markers().
 */
async function missingShards(store: ObjectStore, plan: RunPlan, listed?: Map<number, StageListing>): Promise<{ stage: number; partitions: number[] }[]> {
  const missing: { stage: number; partitions: number[] }[] = [];
  for (const s of plan.stages) {
    const { objects } = await store.listObjects(keys.stagePrefix(plan.runId, s.index));
    const present = new Map(objects.map((o) => [o.key, o.lastModified]));
    listed?.set(s.index, present);
    const parts: number[] = [];
    for (let p = 0, n = stagePartitions(plan, s.index); p < n; p++) {
      if (!present.has(keys.metrics(plan.runId, s.index, p))) parts.push(p);
    }
    if (parts.length) missing.push({ stage: s.index, partitions: parts });
  }
  return missing;
}

/**
 * The partitions a failure report names. In a linear run partition p keeps its input through every
 * stage, so a later stage's missing p is the same failure; after an exchange the partitions of later
 * stages are other data, which never ran: only the first incomplete stage failed.
 */
function failedStages(plan: RunPlan, missing: { stage: number; partitions: number[] }[]): { stage: number; partitions: number[] }[] {
  return plan.shuffle ? missing.slice(0, 1) : missing;
}

/** A stage's keys, each with its last-modified time (ms). */
type StageListing = ReadonlyMap<string, number>;

/**
 * Each partition's completion marker (null where missing), fetched 16 at a time: a run can have
 * thousands. With the stage's listing, a partition's marker comes from a listed marker batch
 * (writeMarkerBatch) when the partition's own marker is listed too and is not newer than the batch
 * (a marker written again after its batch, say after it was deleted to run the partition again, is
 * read itself): one GET per Stage invocation instead of one per partition.
 */
async function markers(store: ObjectStore, plan: RunPlan, stage: number, listed?: StageListing): Promise<(PartitionMarker | null)[]> {
  const batched = new Map<number, PartitionMarker>();
  if (listed) {
    const prefix = `${keys.stagePrefix(plan.runId, stage)}markers-`;
    const batchKeys = [...listed.keys()].filter((k) => k.startsWith(prefix) && k.endsWith('.json'));
    const batches = await mapLimit(batchKeys, 16, async (k) => ({
      at: listed.get(k)!,
      batch: await getJson<MarkerBatch>(store, k).catch((e: unknown) => (e instanceof NotFoundError ? null : Promise.reject(e))),
    }));
    for (const { at, batch } of batches) {
      for (const [p, m] of Object.entries(batch?.markers ?? {})) {
        const n = Number(p);
        const own = Number.isInteger(n) && n >= 0 ? listed.get(keys.metrics(plan.runId, stage, n)) : undefined;
        if (own !== undefined && own <= at) batched.set(n, m);
      }
    }
  }
  return mapLimit(Array.from({ length: stagePartitions(plan, stage) }), 16, async (_x, p): Promise<PartitionMarker | null> => {
    const fromBatch = batched.get(p);
    if (fromBatch) return fromBatch;
    try {
      return await getJson<PartitionMarker>(store, keys.metrics(plan.runId, stage, p));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      return null;
    }
  });
}

/** `known`: markers already read, by stage (Finalize has the last stage's): each is fetched once. `listed`: each stage's listing (markers()). */
async function sumMetrics(
  store: ObjectStore,
  plan: RunPlan,
  known: ReadonlyMap<number, (PartitionMarker | null)[]> = new Map(),
  listed?: ReadonlyMap<number, StageListing>,
): Promise<RunMetrics> {
  const total: RunMetrics = {};
  for (const s of plan.stages)
    for (const m of known.get(s.index) ?? (await markers(store, plan, s.index, listed?.get(s.index)))) if (m) mergeMetrics(total, m.metrics);
  return total;
}

/**
 * Finalize: every stage complete (or the partitions missing from the last stage within the run's
 * tolerated failures), then the result is committed — to the output (files copied under its
 * _temporary, renamed, manifest written last) or, without an output, a manifest in the run's output
 * prefix that names the result files in place (`commitInPlace`). Global operators (a limit) run here
 * over the ordered result. A commit with tolerated failures writes a manifest with `complete: false`
 * and the failed partitions, and says so in the summary.
 */
export async function finalizeRun(store: ObjectStore, runId: string): Promise<RunSummary> {
  // Idempotent: a retried Finalize (the state machine retries service errors) returns the first
  // commit's summary instead of committing twice.
  if (await store.exists(keys.summary(runId))) return getJson<RunSummary>(store, keys.summary(runId));
  const plan = await loadPlan(store, runId);
  await importPipeline(planPipeline(plan));
  const listed = new Map<number, StageListing>();
  const missing = await missingShards(store, plan, listed);
  const lastStage = plan.stages.length - 1;
  const failed = missing.find((m) => m.stage === lastStage)?.partitions ?? [];
  const n = stagePartitions(plan, lastStage);
  if (missing.length && !(failed.length && withinTolerance(plan.tolerance, failed.length, n))) {
    const what = missing.map((m) => `stage ${m.stage}: partitions ${m.partitions.slice(0, 20).join(', ')}${m.partitions.length > 20 ? ', …' : ''}`).join('; ');
    const tol =
      failed.length && toleratesFailures(plan.tolerance) ? ` (${failed.length} of ${n} partitions failed, more than ${toleranceText(plan.tolerance)})` : '';
    throw new Error(`run ${runId} is incomplete (${what})${tol}; nothing was committed`);
  }
  const failedSet = new Set(failed);
  const errors = failed.length ? await failureDetails(store, plan, missing, 1000) : [];
  const schema = Schema.fromJSON(plan.schema);
  const shardSchema = Schema.fromJSON(stageSchema(plan, plan.stages.length - 1));
  const present = Array.from({ length: n }, (_, p) => p).filter((p) => !failedSet.has(p));
  const resultKeys = present.map((p) => keys.result(runId, p));
  if (!plan.output && !partitionedOutput(plan) && !plan.globalOps.length)
    return commitInPlace(store, plan, resultKeys, present, failed, missing, errors, listed);
  const target = plan.output?.uri ?? store.uri(keys.output(runId));
  const writer = await DatasetWriter.begin(target, { format: plan.output?.format ?? 'parquet', mode: plan.output?.mode ?? 'overwrite' });
  try {
    let parts: WrittenFile[];
    const known = new Map<number, (PartitionMarker | null)[]>();
    const partitioned = partitionedOutput(plan);
    if (partitioned) {
      // A hive layout the partitions wrote themselves: copy every file in, one commit (as unpartitioned results).
      const { partitionedCommitParts } = await import('../io/partitioned-writer.ts');
      const last = await markers(store, plan, plan.stages.length - 1, listed.get(plan.stages.length - 1));
      const files = last.flatMap((m, p) => (m?.parts ?? []).map((f) => ({ ...f, p })));
      const written = await mapLimit(files, 16, (f) =>
        commitPart(store, writer, resultFileKey(runId, f.p, partitioned.format, f.dir), writer.partPath(f.p, f.dir), f.rows, f.bytes),
      );
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
        { ...plan.output.parquet },
        plan.output.mode !== 'overwrite-partitions',
      );
    } else if (plan.globalOps.length || (plan.output && plan.output.format !== 'parquet')) {
      // One ordered pass over the shards through the global operators.
      const { readParquetBatches } = await import('../io/parquet/index.ts');
      const all = (async function* () {
        for (const k of resultKeys) yield* readParquetBatches(store.uri(k), { schema: shardSchema });
      })();
      parts = [await writer.writePart(0, applyOps(all, plan.globalOps), { ...plan.output?.parquet, schema })];
    } else {
      const last = await markers(store, plan, lastStage, listed.get(lastStage));
      known.set(lastStage, last);
      // Empty partitions leave no file, unless all are empty (one keeps the schema).
      const kept = present.map((p, i) => ({ p, i })).filter(({ p }) => (last[p]?.rows ?? 0) > 0);
      if (!kept.length && present.length) kept.push({ p: present[present.length - 1]!, i: present.length - 1 });
      // Server-side copies, 16 at a time (one after another they made Finalize's time grow with
      // the partition count); the parts stay in partition order.
      parts = await mapLimit(kept, 16, ({ p, i }) => commitPart(store, writer, resultKeys[i]!, writer.partPath(p), last[p]?.rows ?? 0, last[p]?.bytes ?? 0));
    }
    // Readers must never take a partial result for the whole: the manifest says so, and which.
    if (failed.length)
      writer.manifestExtra = {
        complete: false,
        failedPartitions: errors.length ? errors : failed.map((p) => ({ stage: lastStage, partition: p, error: 'no error recorded' })),
      };
    const files = await writer.commit(parts);
    return await recordSummary(store, runId, files, await sumMetrics(store, plan, known, listed), failed.length > 0, missing, errors);
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/**
 * The commit of a run without an output whose results are the last stage's files as they are (no
 * global operator): a manifest at `runs/<id>/output/_SUCCESS` that names the result objects where
 * the stages wrote them (`runs/<id>/result/`), instead of copying each into `output/` (one
 * CopyObject per partition, about a sixth of a 200-partition run on the local harness). The one PUT
 * of the manifest is the commit point, as before: `output/` is this run's own prefix, only Finalize
 * writes it, and a retried Finalize writes the same manifest. Readers of `output/` follow the
 * manifest (it lists full URIs); the summary's files are the result objects.
 */
async function commitInPlace(
  store: ObjectStore,
  plan: RunPlan,
  resultKeys: string[],
  present: number[],
  failed: number[],
  missing: { stage: number; partitions: number[] }[],
  errors: PartitionErrorSummary[],
  listed: Map<number, StageListing>,
): Promise<RunSummary> {
  const { runId } = plan;
  const lastStage = plan.stages.length - 1;
  const last = await markers(store, plan, lastStage, listed.get(lastStage));
  // Empty partitions are left out, unless all are empty (one keeps the schema).
  const kept = present.map((p, i) => ({ p, i })).filter(({ p }) => (last[p]?.rows ?? 0) > 0);
  if (!kept.length && present.length) kept.push({ p: present[present.length - 1]!, i: present.length - 1 });
  const files: WrittenFile[] = kept.map(({ p, i }) => ({ path: store.uri(resultKeys[i]!), rows: last[p]?.rows ?? 0, bytes: last[p]?.bytes ?? 0 }));
  const manifest: Manifest & { version: number } = {
    version: 1,
    format: 'parquet',
    runId,
    files,
    rows: files.reduce((n, f) => n + f.rows, 0),
    committedAt: new Date().toISOString(),
  };
  if (failed.length) {
    manifest.complete = false;
    manifest.failedPartitions = errors.length ? errors : failed.map((p) => ({ stage: lastStage, partition: p, error: 'no error recorded' }));
  }
  await store.put(`${keys.output(runId)}/${MANIFEST_NAME}`, `${JSON.stringify(manifest, null, 2)}\n`);
  const metrics = await sumMetrics(store, plan, new Map([[lastStage, last]]), listed);
  return recordSummary(store, runId, files, metrics, failed.length > 0, missing, errors);
}

/** A committed run's summary, written to `runs/<id>/summary.json`: the record a retried Finalize returns. */
async function recordSummary(
  store: ObjectStore,
  runId: string,
  files: WrittenFile[],
  metrics: RunSummary['metrics'],
  partial: boolean,
  missing: { stage: number; partitions: number[] }[],
  errors: PartitionErrorSummary[],
): Promise<RunSummary> {
  const summary: RunSummary = {
    runId,
    status: 'SUCCEEDED',
    rows: files.reduce((n, f) => n + f.rows, 0),
    files,
    metrics,
    finishedAt: new Date().toISOString(),
  };
  if (partial) {
    summary.complete = false;
    summary.failedPartitions = missing;
    summary.partitionErrors = errors;
  }
  await putJson(store, keys.summary(runId), summary);
  // An earlier attempt's failure record (before a resume or redrive) no longer describes the run.
  await store.delete([keys.failure(runId)]).catch(() => undefined);
  return summary;
}

/**
 * A partition's result file as a part of the commit at `dest` (a writer's temp path). Result and
 * output both in the object store: adopted, so the commit copies it once, straight to its final
 * key (copying it under the writer's _temporary first made every result two CopyObjects). Otherwise
 * (a local store or output) it is copied to `dest` here, as a written part.
 */
async function commitPart(store: ObjectStore, writer: DatasetWriter, key: string, dest: string, rows: number, bytes: number): Promise<WrittenFile> {
  const source = store.uri(key);
  if (writer.remote && isRemotePath(source) && isRemotePath(dest)) {
    const part: AdoptedPart = { path: dest, rows, bytes, source };
    return part;
  }
  await store.copy(key, dest);
  return { path: dest, rows, bytes };
}

/**
 * Each failed partition (at most `max`): the stage it failed in (its first without a marker), its
 * input, the UDF and the message its worker recorded.
 */
async function failureDetails(
  store: ObjectStore,
  plan: RunPlan,
  missing: { stage: number; partitions: number[] }[],
  max: number,
  since?: Date,
): Promise<PartitionErrorSummary[]> {
  const firstStage = new Map<number, number>();
  for (const m of missing) for (const p of m.partitions) if (!firstStage.has(p)) firstStage.set(p, m.stage);
  const failed = [...firstStage.entries()].sort((a, b) => a[0] - b[0]).slice(0, max);
  const listed = new Map<number, Set<string>>();
  for (const m of missing) listed.set(m.stage, new Set(await store.list(keys.stagePrefix(plan.runId, m.stage))));
  return mapLimit(failed, 16, async ([partition, stage]): Promise<PartitionErrorSummary> => {
    const out: PartitionErrorSummary = {
      stage,
      partition,
      error: 'no error recorded (the worker stopped before it could record one)',
      source: describePartitionInput(plan, stage, partition),
    };
    const k = errorKey(plan.runId, stage, partition);
    if (listed.get(stage)?.has(k)) {
      try {
        const r = await getJson<PartitionErrorRecord>(store, k);
        // An earlier attempt's error (before a resume) is not this failure's.
        if (since && !(Date.parse(r.at) >= since.getTime())) return out;
        out.error = `${r.name}: ${r.message}`;
        if (r.udf) out.udf = r.udf;
      } catch {
        // Unreadable: the partition is still listed as failed.
      }
    }
    return out;
  });
}

/**
 * The failure path: records what failed (which partitions have no shard), the failed partitions'
 * own errors (UDF, partition, input, original message; recorded at or after `since`, when given)
 * and the state machine's error.
 */
export async function recordFailure(store: ObjectStore, runId: string, error: string, since?: Date): Promise<RunSummary> {
  let failedPartitions: RunSummary['failedPartitions'] = [];
  let errors: PartitionErrorSummary[] = [];
  let metrics: RunMetrics = {};
  let why: string | null = null;
  try {
    const plan = await loadPlan(store, runId);
    const missing = await missingShards(store, plan);
    failedPartitions = failedStages(plan, missing);
    errors = (await failureDetails(store, plan, failedPartitions, 10, since)).filter((e) => !e.error.startsWith('no error recorded'));
    why = await intolerable(store, plan, missing.slice(failedPartitions.length), since);
    metrics = await sumMetrics(store, plan);
  } catch {
    // No plan (the Plan step itself failed): the error says why.
  }
  const summary = failureSummary(runId, error, failedPartitions, errors, metrics);
  if (why && errors.length) summary.error = `${summary.error}; ${why}`;
  await putJson(store, keys.failure(runId), summary);
  return summary;
}

/**
 * Why a run with tolerated failures failed anyway: a later stage needed every partition of the failed
 * one (shuffle.ts IncompleteInputError). The report names only the first failed stage's partitions,
 * whose own errors do not say that the tolerance could not apply.
 */
async function intolerable(store: ObjectStore, plan: RunPlan, later: { stage: number }[], since?: Date): Promise<string | null> {
  if (!toleratesFailures(plan.tolerance)) return null;
  for (const { stage } of later) {
    const prefix = `${keys.stagePrefix(plan.runId, stage)}error-`;
    for (const k of (await store.list(keys.stagePrefix(plan.runId, stage))).filter((x) => x.startsWith(prefix)).slice(0, 4)) {
      const r = await getJson<PartitionErrorRecord>(store, k).catch(() => null);
      if (r?.name === 'IncompleteInputError' && !(since && !(Date.parse(r.at) >= since.getTime()))) return r.message;
    }
  }
  return null;
}

function failureSummary(
  runId: string,
  error: string,
  failedPartitions: { stage: number; partitions: number[] }[],
  errors: PartitionErrorSummary[],
  metrics: RunMetrics,
): RunSummary {
  const first = errors[0];
  const summary: RunSummary = {
    runId,
    status: 'FAILED',
    rows: 0,
    files: [],
    metrics,
    // The partition's own error says more than the state machine's (an ECS exit, a Map threshold).
    error: first ? first.error : error,
    failedPartitions,
    finishedAt: new Date().toISOString(),
  };
  if (first) summary.stateMachineError = error;
  if (errors.length) summary.partitionErrors = errors;
  return summary;
}

/**
 * A failing partition's own record of the run's failure, written only if the run has none yet: the
 * state machine fails the stage without a recording step (so a redrive can re-enter it), and many
 * partitions may fail at once. Cheap: no metrics, this partition's error first.
 */
async function recordFirstFailure(store: ObjectStore, plan: RunPlan, error: string): Promise<void> {
  if (await store.exists(keys.failure(plan.runId))) return;
  const missing = failedStages(plan, await missingShards(store, plan));
  const errors = (await failureDetails(store, plan, missing, 10)).filter((e) => !e.error.startsWith('no error recorded'));
  await putJson(store, keys.failure(plan.runId), failureSummary(plan.runId, error, missing, errors, {}));
}

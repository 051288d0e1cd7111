// The logic behind the Lambda and ECS entrypoints in lambdas/: parse the event, run the engine's
// run functions, return small stats. The entrypoints themselves are a few lines each.
//
// Safety. An execution input (and a plan.json in the work bucket) is data that whoever may call
// StartExecution (or write the bucket) controls; it never chooses code or where a deployment writes:
// - FANOUT_PIPELINE (set by the deployment: the bundle's own pipeline) and FANOUT_PIPELINE_ALLOW
//   (optional, comma-separated further modules) are the only modules a deployment imports. An input
//   `pipeline` that is not one of them fails the run. Plans' module lists are imported only where
//   neither is set (local runs, tests), and then only file paths / file: URLs (run.ts, planPipeline).
// - FANOUT_WORK_BUCKET: when set, an event may not name another work bucket.
// - FANOUT_OUTPUT_PREFIX: when set, a comma-separated list of s3://bucket/prefix/ locations; a run's
//   output must lie strictly below one of them (same bucket, key under the prefix). Set but empty:
//   no output may be named (results stay in the work bucket). Unset: any output (IAM decides).
//   An output with a '.' or '..' segment is always refused.
// - Run ids match RUN_ID_PATTERN (run.ts) everywhere: handlers, keys, the ECS task's environment.
import type { DataFrame } from '../dataframe.ts';
import {
  checkLocalPipeline,
  checkRunId,
  deployedPipelines,
  finalizeRun,
  importPipeline,
  keys,
  listMissingMarkers,
  loadPlan,
  planRun,
  preparePlan,
  recordFailure,
  resolvePipelineSpec,
  runGpuSlot,
  runStagePartition,
  stagePartitions,
  writeMarkerBatch,
  type PartitionResult,
  type PipelinePlanOptions,
  type PlanSummary,
  type RunOutput,
  type RunPlan,
} from './run.ts';
import { publishPartitionMetrics } from './emf.ts';
import { ECS_TASK_RETRIES, emitRunSpans, LAMBDA_STAGE_RETRIES, tracePartitions, tracePlan, traced } from '../telemetry/aws.ts';
import { isBelowPrefix, S3Store, uriKey, type ObjectStore } from '../io/store/index.ts';
import { prepareResume, type PlanExpectation } from './resume.ts';
import { checkTolerance, type FailureTolerance } from './tolerance.ts';

/** Execution input of the state machine (also what an S3-triggered run starts with). */
export interface RunEvent {
  /** Must match RUN_ID_PATTERN (1-80 of A-Z a-z 0-9 _ -). */
  runId?: string;
  /** The pipeline's input, handed to its default export (e.g. { uri: 's3://bucket/key' }). */
  input?: unknown;
  /** Output location (s3:// URI), under FANOUT_OUTPUT_PREFIX when that is set; null: the result stays in the work bucket for the caller. */
  output?: string | null;
  /** Module specifier of the pipeline; defaults to FANOUT_PIPELINE, and must be it (or on FANOUT_PIPELINE_ALLOW) when that is set. */
  pipeline?: string;
  /** Defaults to FANOUT_WORK_BUCKET, and must equal it when that is set. */
  workBucket?: string | null;
  /** Resume run `runId`: its stored plan and finished partitions are reused; only the rest run (resume.ts). */
  resume?: boolean;
  /** With resume: what the caller's pipeline plans now; a stored plan that differs is refused. */
  expect?: PlanExpectation;
}

export interface StageEvent {
  runId: string;
  workBucket?: string | null;
  stage: number | { index: number };
  partition: number;
  /** Inline Map with batching: run partitions partition .. partition + count - 1 (bounded by the plan). */
  count?: number;
}

/** A Distributed Map ItemBatcher's child input: several partitions for one invocation, run in turn. */
export interface StageBatchEvent {
  Items: StageEvent[];
}

export interface FinalizeEvent {
  runId: string;
  workBucket?: string | null;
}

export interface FailureEvent extends FinalizeEvent {
  error?: unknown;
}

export type StoreFactory = (bucket: string) => ObjectStore;
let storeFactory: StoreFactory = (bucket) => new S3Store(bucket);

/** Tests and harnesses may back the work bucket with something else. */
export function setStoreFactory(f: StoreFactory): void {
  storeFactory = f;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function workBucket(e: { workBucket?: string | null }): string {
  const configured = process.env['FANOUT_WORK_BUCKET'] || undefined;
  const asked = e.workBucket ?? undefined;
  if (asked !== undefined && configured !== undefined && asked !== configured) {
    throw new Error(
      `the event names work bucket ${JSON.stringify(asked)}, but this deployment's work bucket is '${configured}' (FANOUT_WORK_BUCKET); leave workBucket out of the input`,
    );
  }
  const b = asked ?? configured;
  if (!b) throw new Error('no work bucket: set FANOUT_WORK_BUCKET or pass workBucket in the event');
  return bucketName(b);
}

function bucketName(b: unknown): string {
  if (typeof b !== 'string' || !BUCKET_NAME.test(b) || b.includes('..')) throw new Error(`invalid work bucket name ${JSON.stringify(b)}`);
  return b;
}

/** The pipeline module Plan imports: the deployment's own, unless the input names another it allows. */
function pipelineSpec(requested: unknown): string | null {
  const deployed = deployedPipelines();
  if (deployed.size > 0) {
    const own = process.env['FANOUT_PIPELINE'];
    if (requested === undefined || requested === null) {
      if (!own) throw new Error('Plan: the execution input names no pipeline and FANOUT_PIPELINE is not set');
      return resolvePipelineSpec(own);
    }
    const url = typeof requested === 'string' ? resolvePipelineSpec(requested) : null;
    if (url === null || !deployed.has(url)) {
      throw new Error(
        `Plan: the execution input names pipeline ${JSON.stringify(String(requested).slice(0, 200))}, but this deployment imports only ${[...deployed].join(', ')} (FANOUT_PIPELINE / FANOUT_PIPELINE_ALLOW); leave pipeline out of the input`,
      );
    }
    return url;
  }
  if (requested === undefined || requested === null) return null;
  return checkLocalPipeline(requested, 'Plan: the execution input');
}

/** Where FANOUT_OUTPUT_PREFIX allows a run to write (see the top of this file); returns the output. */
export function checkOutput(output: unknown, where: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (output === undefined || output === null) return null;
  if (typeof output !== 'string' || output === '') throw new Error(`${where}: output must be an s3:// URI or null, got ${JSON.stringify(output)}`);
  const path = uriKey(output);
  if (path.split(/[\\/]/).some((seg) => seg === '.' || seg === '..')) {
    throw new Error(`${where}: output ${JSON.stringify(output)} has a '.' or '..' segment`);
  }
  const raw = env['FANOUT_OUTPUT_PREFIX'];
  if (raw === undefined) return output;
  const prefixes = raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (prefixes.length === 0) {
    throw new Error(
      `${where}: output ${output} is not allowed: this deployment keeps results in its work bucket (FANOUT_OUTPUT_PREFIX is empty); pass output null`,
    );
  }
  for (const p of prefixes) {
    // Strictly below: an output equal to the prefix would overwrite every run's results.
    const below = isBelowPrefix(output, p);
    if (below === null) throw new Error(`FANOUT_OUTPUT_PREFIX: ${JSON.stringify(p)} is not an s3:// URI`);
    if (below) return output;
  }
  throw new Error(`${where}: output ${output} is outside this deployment's output location ${prefixes.join(', ')} (FANOUT_OUTPUT_PREFIX)`);
}

type PipelineBuilder = (input: unknown) => DataFrame<object> | Promise<DataFrame<object>>;

/** The module's `planOptions` export, checked: a typo there must not silently plan 128 MiB partitions. */
function pipelinePlanOptions(value: unknown, spec: string): PipelinePlanOptions {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`Plan: pipeline module ${spec}: planOptions must be an object`);
  const out: PipelinePlanOptions = {};
  const known = ['targetPartitionBytes', 'minPartitions', 'shufflePartitions', 'broadcastJoinBytes'] as const;
  for (const [k, v] of Object.entries(value)) {
    const key = known.find((x) => x === k);
    if (!key) throw new Error(`Plan: pipeline module ${spec}: unknown planOptions key '${k}' (known: ${known.join(', ')})`);
    // broadcastJoinBytes may be 0 (never broadcast); the others are counts or sizes.
    const min = key === 'broadcastJoinBytes' ? 0 : 1;
    if (!Number.isInteger(v) || (v as number) < min)
      throw new Error(`Plan: pipeline module ${spec}: planOptions.${k} must be ${min ? 'a positive' : 'a non-negative'} integer, got ${JSON.stringify(v)}`);
    out[key] = v as number;
  }
  return out;
}

/** Plan: reuse a plan the runner already wrote, or build one from the pipeline's default export. */
export async function handlePlan(event: RunEvent): Promise<PlanSummary> {
  // Everything the input decides is checked before anything is read, imported or written.
  if (event.runId !== undefined) checkRunId(event.runId, 'run id in the execution input');
  const bucket = workBucket(event);
  const output = checkOutput(event.output, 'Plan: the execution input');
  const spec = pipelineSpec(event.pipeline);
  const store = storeFactory(bucket);
  return tracePlan(store, event.runId, (adopt) => planStep(event, store, bucket, output, spec, adopt));
}

async function planStep(
  event: RunEvent,
  store: ObjectStore,
  bucket: string,
  output: string | null,
  spec: string | null,
  adopt: (plan: RunPlan) => void,
): Promise<PlanSummary> {
  if (event.resume === true) {
    if (!event.runId) throw new Error('Plan: a resume ({ resume: true }) needs the runId of the run to resume');
    const opts: Parameters<typeof prepareResume>[3] = {};
    if (event.expect) opts.expect = event.expect;
    if (event.output !== undefined) opts.output = output;
    // In a deployment the bundle's own pipeline registers the UDFs the plan is checked against.
    if (deployedPipelines().size > 0) opts.importModules = preloadPipeline;
    const summary = await prepareResume(store, event.runId, bucket, opts);
    checkOutput((await loadPlan(store, event.runId)).output?.uri, `run ${event.runId}: the plan`);
    return summary;
  }
  if (event.runId && (await store.exists(keys.plan(event.runId)))) {
    const plan = await loadPlan(store, event.runId);
    checkOutput(plan.output?.uri, `run ${plan.runId}: the plan`);
    return preparePlan(store, plan, bucket, { stored: true });
  }
  if (!spec) throw new Error('Plan: the event names no pipeline and FANOUT_PIPELINE is not set');
  const mod = (await import(spec)) as { default?: PipelineBuilder; planOptions?: unknown };
  if (typeof mod.default !== 'function') {
    throw new Error(`Plan: pipeline module ${spec} must export default (input) => DataFrame`);
  }
  const df = await mod.default(event.input);
  const out: RunOutput | null = output ? { uri: output, format: 'parquet', mode: 'overwrite' } : null;
  const opts: Parameters<typeof planRun>[1] = { pipeline: spec, output: out, ...pipelinePlanOptions(mod.planOptions, spec) };
  if (event.runId) opts.runId = event.runId;
  const tolerance = deploymentTolerance();
  if (tolerance) opts.tolerance = tolerance;
  const plan = planRun(df.plan, opts);
  adopt(plan); // an S3-triggered run's trace starts here
  return preparePlan(store, plan, bucket);
}

export interface StageResult {
  runId: string;
  stage: number;
  partition: number;
  rows: number;
  bytes: number;
  /** Batched invocations: every partition run, in order (partition is the first). */
  partitions?: number[];
}

/**
 * Stage: one partition, or a batch of them (ItemBatcher's `{ Items }`, or an inline Map's `count`),
 * run one after another; the first failure fails the invocation, naming its partition (a retry
 * re-runs the batch: shard keys are deterministic, so finished partitions are overwritten, never doubled).
 */
export async function handleStage(event: StageEvent | StageBatchEvent): Promise<StageResult> {
  const items = 'Items' in event ? event.Items : [event];
  if (!Array.isArray(items) || items.length === 0) throw new Error('Stage: a batch event needs a non-empty Items array');
  const jobs: { runId: string; bucket: string; store: ObjectStore; stage: number; partition: number }[] = [];
  for (const e of items) {
    const runId = checkRunId(e.runId);
    const bucket = workBucket(e);
    const store = storeFactory(bucket);
    const stage = typeof e.stage === 'number' ? e.stage : e.stage.index;
    if (!Number.isInteger(stage) || stage < 0) throw new Error(`run ${runId}: invalid stage ${JSON.stringify(stage)}`);
    if (!Number.isInteger(e.partition) || e.partition < 0) throw new Error(`run ${runId}: invalid partition ${JSON.stringify(e.partition)}`);
    let count = 1;
    if (e.count !== undefined) {
      if (!Number.isInteger(e.count) || e.count < 1) throw new Error(`run ${runId}: invalid partition count ${JSON.stringify(e.count)}`);
      // The last range of an inline Map's step may run past the plan's partitions.
      count = Math.min(e.count, stagePartitions(await loadPlan(store, runId), stage) - e.partition);
    }
    for (let i = 0; i < count; i++) jobs.push({ runId, bucket, store, stage, partition: e.partition + i });
  }
  await preloadPipeline();
  const first = jobs[0]!;
  const uniform = jobs.every((j) => j.runId === first.runId && j.stage === first.stage && j.bucket === first.bucket);
  // One listing tells which partitions of the batch are still to run (a resume or redrive skips the rest).
  if (uniform) {
    await listMissingMarkers(
      first.store,
      first.runId,
      first.stage,
      jobs.map((j) => j.partition),
    );
  }
  const results = await tracePartitions(
    first.store,
    first.runId,
    first.stage,
    jobs.map((j) => j.partition),
    Date.now(),
    async () => {
      const rs: PartitionResult[] = [];
      for (const j of jobs) rs.push(await runStagePartition(j.store, j.runId, j.stage, j.partition));
      return rs;
    },
    {},
    // Its last failure can end an S3-triggered run (then its run and stage spans are emitted here).
    LAMBDA_STAGE_RETRIES,
  );
  // The batch's markers again in one object, for Finalize (one GET per invocation, not per partition).
  if (uniform) await writeMarkerBatch(first.store, results);
  const out: StageResult = { runId: first.runId, stage: first.stage, partition: first.partition, rows: 0, bytes: 0 };
  for (const r of results) {
    if (!r.skipped) await publishPartitionMetrics(r);
    out.rows += r.rows;
    out.bytes += r.bytes;
  }
  if (jobs.length > 1) out.partitions = jobs.map((j) => j.partition);
  return out;
}

export async function handleFinalize(event: FinalizeEvent): Promise<{ runId: string; rows: number; files: number }> {
  const runId = checkRunId(event.runId);
  const store = storeFactory(workBucket(event));
  // The output comes from plan.json, which anyone able to write the work bucket could have written.
  checkOutput((await loadPlan(store, runId)).output?.uri, `run ${runId}: the plan`);
  await preloadPipeline();
  return traced('fanout.finalize', store, runId, {}, async (span) => {
    const s = await finalizeRun(store, runId);
    span?.setAttributes({ 'fanout.rows_out': s.rows, 'fanout.files': s.files.length });
    await emitRunSpans(store, runId);
    return { runId: s.runId, rows: s.rows, files: s.files.length };
  });
}

export async function handleFailure(event: FailureEvent): Promise<{ runId: string; failedPartitions: number }> {
  // No run id (the Plan failed on an input without one) or an invalid one: nothing to record under.
  const runId = checkRunId(event.runId, 'run id of the failed run');
  const store = storeFactory(workBucket(event));
  const err = event.error as { Error?: string; Cause?: string } | string | undefined;
  const text = typeof err === 'string' ? err : err ? `${err.Error ?? 'Error'}: ${err.Cause ?? ''}` : 'unknown error';
  const s = await traced('fanout.failure', store, runId, { 'fanout.error': text }, async () => {
    const summary = await recordFailure(store, runId, text);
    await emitRunSpans(store, runId, new Error(text));
    return summary;
  });
  return { runId: s.runId, failedPartitions: (s.failedPartitions ?? []).reduce((n, f) => n + f.partitions.length, 0) };
}

/** ECS GPU task: its slot of the stage's partitions, from the container's environment. */
export async function handleEcsTask(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const need = (k: string): string => {
    const v = env[k];
    if (v === undefined || v === '') throw new Error(`ECS task: environment variable ${k} is not set`);
    return v;
  };
  const runId = checkRunId(need('FANOUT_RUN_ID'), 'FANOUT_RUN_ID');
  const store = storeFactory(bucketName(need('FANOUT_WORK_BUCKET')));
  await preloadPipeline();
  const [stage, slot, slots] = [Number(need('FANOUT_STAGE')), Number(need('FANOUT_SLOT')), Number(need('FANOUT_SLOTS'))];
  const results = await tracePartitions(
    store,
    runId,
    stage,
    [slot],
    Date.now(),
    () => runGpuSlot(store, runId, stage, slot, slots),
    { 'fanout.ecs.slot': slot },
    ECS_TASK_RETRIES,
  );
  for (const r of results) if (!r.skipped) await publishPartitionMetrics(r, env);
  return results.length;
}

/**
 * Tolerated failures of runs this deployment plans itself (S3-triggered runs): the construct's
 * toleratedFailurePercentage / toleratedFailureCount props, as FANOUT_TOLERATED_FAILURE_PERCENTAGE /
 * FANOUT_TOLERATED_FAILURE_COUNT. A runner's own plans carry theirs.
 */
function deploymentTolerance(env: NodeJS.ProcessEnv = process.env): FailureTolerance | undefined {
  const num = (k: string): number | undefined => {
    const v = env[k];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`${k} must be a number, got ${JSON.stringify(v)}`);
    return n;
  };
  const t: FailureTolerance = {};
  const pct = num('FANOUT_TOLERATED_FAILURE_PERCENTAGE');
  const count = num('FANOUT_TOLERATED_FAILURE_COUNT');
  if (pct !== undefined) t.toleratedFailurePercentage = pct;
  if (count !== undefined) t.toleratedFailureCount = count;
  return checkTolerance(t, 'the deployment (FANOUT_TOLERATED_FAILURE_*)');
}

/** In AWS the bundle's pipeline registers the UDFs; plans carry file URLs only for local runs. */
async function preloadPipeline(): Promise<void> {
  const own = process.env['FANOUT_PIPELINE'];
  if (own) await importPipeline(resolvePipelineSpec(own));
}

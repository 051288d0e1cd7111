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
  loadPlan,
  planRun,
  preparePlan,
  recordFailure,
  resolvePipelineSpec,
  runGpuSlot,
  runStagePartition,
  type PlanSummary,
  type RunOutput,
  type RunPlan,
} from './run.ts';
import { publishPartitionMetrics } from './emf.ts';
import { emitRunSpans, tracePartitions, tracePlan, traced } from '../telemetry/aws.ts';
import { isBelowPrefix, S3Store, uriKey, type ObjectStore } from '../io/store/index.ts';

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
}

export interface StageEvent {
  runId: string;
  workBucket?: string | null;
  stage: number | { index: number };
  partition: number;
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
  if (event.runId && (await store.exists(keys.plan(event.runId)))) {
    const plan = await loadPlan(store, event.runId);
    checkOutput(plan.output?.uri, `run ${plan.runId}: the plan`);
    return preparePlan(store, plan, bucket);
  }
  if (!spec) throw new Error('Plan: the event names no pipeline and FANOUT_PIPELINE is not set');
  const mod = (await import(spec)) as { default?: PipelineBuilder };
  if (typeof mod.default !== 'function') {
    throw new Error(`Plan: pipeline module ${spec} must export default (input) => DataFrame`);
  }
  const df = await mod.default(event.input);
  const out: RunOutput | null = output ? { uri: output, format: 'parquet', mode: 'overwrite' } : null;
  const opts: Parameters<typeof planRun>[1] = { pipeline: spec, output: out };
  if (event.runId) opts.runId = event.runId;
  const plan = planRun(df.plan, opts);
  adopt(plan); // an S3-triggered run's trace starts here
  return preparePlan(store, plan, bucket);
}

export async function handleStage(event: StageEvent): Promise<{ runId: string; stage: number; partition: number; rows: number; bytes: number }> {
  const runId = checkRunId(event.runId);
  const store = storeFactory(workBucket(event));
  const stage = typeof event.stage === 'number' ? event.stage : event.stage.index;
  if (!Number.isInteger(stage) || stage < 0) throw new Error(`run ${runId}: invalid stage ${JSON.stringify(stage)}`);
  if (!Number.isInteger(event.partition) || event.partition < 0) throw new Error(`run ${runId}: invalid partition ${JSON.stringify(event.partition)}`);
  await preloadPipeline();
  const since = Date.now();
  const [r] = await tracePartitions(store, runId, stage, [event.partition], since, async () => [await runStagePartition(store, runId, stage, event.partition)]);
  await publishPartitionMetrics(r!);
  return { runId: r!.runId, stage: r!.stage, partition: r!.partition, rows: r!.rows, bytes: r!.bytes };
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
  const results = await tracePartitions(store, runId, stage, [slot], Date.now(), () => runGpuSlot(store, runId, stage, slot, slots), {
    'fanout.ecs.slot': slot,
  });
  for (const r of results) await publishPartitionMetrics(r, env);
  return results.length;
}

/** In AWS the bundle's pipeline registers the UDFs; plans carry file URLs only for local runs. */
async function preloadPipeline(): Promise<void> {
  const own = process.env['FANOUT_PIPELINE'];
  if (own) await importPipeline(resolvePipelineSpec(own));
}

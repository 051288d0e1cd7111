// The logic behind the Lambda and ECS entrypoints in lambdas/: parse the event, run the engine's
// run functions, return small stats. The entrypoints themselves are a few lines each.
import { pathToFileURL } from 'node:url';
import { isAbsolute, resolve } from 'node:path';
import type { DataFrame } from '../dataframe.ts';
import {
  finalizeRun, importPipeline, keys, loadPlan, planRun, preparePlan, recordFailure, runGpuSlot, runStagePartition,
  type PlanSummary, type RunOutput,
} from './run.ts';
import type { ObjectStore } from './store.ts';
import { S3Store } from './s3-store.ts';

/** Execution input of the state machine (also what an S3-triggered run starts with). */
export interface RunEvent {
  runId?: string;
  /** The pipeline's input, handed to its default export (e.g. { uri: 's3://bucket/key' }). */
  input?: unknown;
  /** Output location (s3:// URI); null: the result stays in the work bucket for the caller. */
  output?: string | null;
  /** Module specifier of the pipeline; defaults to FANOUT_PIPELINE. */
  pipeline?: string;
  workBucket?: string;
}

export interface StageEvent {
  runId: string;
  workBucket?: string;
  stage: number | { index: number };
  partition: number;
}

export interface FinalizeEvent {
  runId: string;
  workBucket?: string;
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

function workBucket(e: { workBucket?: string }): string {
  const b = e.workBucket ?? process.env['FANOUT_WORK_BUCKET'];
  if (!b) throw new Error('no work bucket: set FANOUT_WORK_BUCKET or pass workBucket in the event');
  return b;
}

function pipelineSpec(e: { pipeline?: string }): string | null {
  const spec = e.pipeline ?? process.env['FANOUT_PIPELINE'] ?? null;
  if (!spec) return null;
  // A path (absolute or relative) becomes a file URL; a URL or a package name is imported as is.
  if (isAbsolute(spec) || spec.startsWith('.')) return pathToFileURL(resolve(spec)).href;
  return spec;
}

type PipelineBuilder = (input: unknown) => DataFrame<object> | Promise<DataFrame<object>>;

/** Plan: reuse a plan the runner already wrote, or build one from the pipeline's default export. */
export async function handlePlan(event: RunEvent): Promise<PlanSummary> {
  const bucket = workBucket(event);
  const store = storeFactory(bucket);
  if (event.runId && (await store.exists(keys.plan(event.runId)))) {
    const plan = await loadPlan(store, event.runId);
    return preparePlan(store, plan, bucket);
  }
  const spec = pipelineSpec(event);
  if (!spec) throw new Error('Plan: the event names no pipeline and FANOUT_PIPELINE is not set');
  const mod = (await import(spec)) as { default?: PipelineBuilder };
  if (typeof mod.default !== 'function') {
    throw new Error(`Plan: pipeline module ${spec} must export default (input) => DataFrame`);
  }
  const df = await mod.default(event.input);
  const output: RunOutput | null = event.output ? { uri: event.output, format: 'parquet', mode: 'overwrite' } : null;
  const opts: Parameters<typeof planRun>[1] = { pipeline: spec, output };
  if (event.runId) opts.runId = event.runId;
  return preparePlan(store, planRun(df, opts), bucket);
}

export async function handleStage(event: StageEvent): Promise<{ runId: string; stage: number; partition: number; rows: number; bytes: number }> {
  const store = storeFactory(workBucket(event));
  const stage = typeof event.stage === 'number' ? event.stage : event.stage.index;
  await preloadPipeline();
  const r = await runStagePartition(store, event.runId, stage, event.partition);
  return { runId: r.runId, stage: r.stage, partition: r.partition, rows: r.rows, bytes: r.bytes };
}

export async function handleFinalize(event: FinalizeEvent): Promise<{ runId: string; rows: number; files: number }> {
  const store = storeFactory(workBucket(event));
  await preloadPipeline();
  const s = await finalizeRun(store, event.runId);
  return { runId: s.runId, rows: s.rows, files: s.files.length };
}

export async function handleFailure(event: FailureEvent): Promise<{ runId: string; failedPartitions: number }> {
  const store = storeFactory(workBucket(event));
  const err = event.error as { Error?: string; Cause?: string } | string | undefined;
  const text = typeof err === 'string' ? err : err ? `${err.Error ?? 'Error'}: ${err.Cause ?? ''}` : 'unknown error';
  const s = await recordFailure(store, event.runId, text);
  return { runId: s.runId, failedPartitions: (s.failedPartitions ?? []).reduce((n, f) => n + f.partitions.length, 0) };
}

/** ECS GPU task: its slot of the stage's partitions, from the container's environment. */
export async function handleEcsTask(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const need = (k: string): string => {
    const v = env[k];
    if (v === undefined || v === '') throw new Error(`ECS task: environment variable ${k} is not set`);
    return v;
  };
  const store = storeFactory(need('FANOUT_WORK_BUCKET'));
  await preloadPipeline();
  const results = await runGpuSlot(store, need('FANOUT_RUN_ID'), Number(need('FANOUT_STAGE')), Number(need('FANOUT_SLOT')), Number(need('FANOUT_SLOTS')));
  return results.length;
}

/** In AWS the bundle's pipeline registers the UDFs; plans carry file URLs only for local runs. */
async function preloadPipeline(): Promise<void> {
  const spec = pipelineSpec({});
  if (spec) await importPipeline(spec);
}

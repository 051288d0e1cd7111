// OpenTelemetry across a serverless run: one trace from the caller (or the S3 trigger) through the
// state machine into the Lambdas and ECS tasks. plan.json, which every handler reads, carries the
// run span's W3C traceparent:
//   fanout.run (the runner's; or, for an S3-triggered run, emitted by Finalize/Failure with the id
//   the Plan handler recorded, or by the Stage invocation whose failure ends the run) ── fanout.plan,
//   fanout.stage ×N ── fanout.partition ── fanout.udf, fanout.finalize | fanout.failure.
// No process lives as long as a stage, so a stage span's id is derived from the run's traceparent
// (each Lambda parents its partition under it at once) and Finalize/Failure emit the stage spans
// from the partitions' completion markers. Each invocation flushes before it returns.
import { mapLimit } from '../concurrency.ts';
import { getJson, isConditionFailure, NotFoundError, putJson, type ObjectStore } from '../io/store/index.ts';
import type { PartitionResult, RunPlan } from '../aws/run.ts';
import { keys, loadPlan, stagePartitions } from '../aws/run.ts';
import type { SourceJSON } from '../physical.ts';
import { toleratesFailures } from '../aws/tolerance.ts';
import { DETERMINISTIC_ERRORS } from '../aws/state-machine.ts';
import { derivedTraceparent, emitSpan, endSpan, flushTelemetry, newTraceparent, startSpan, telemetryEnabled } from './index.ts';
import type { SpanAttributes, TraceSpan } from './common.ts';

/** Marks a plan.json whose run span nobody holds open (S3-triggered): Finalize/Failure emit it. */
const ROOT = 'fanout.traceRoot';

/** A new plan made by the Plan handler (no caller): the run's trace starts here, recorded in the plan. */
export function startPlannedTrace(plan: RunPlan & { traceparent?: string }): void {
  if (!telemetryEnabled() || plan.traceparent) return;
  plan.traceparent = newTraceparent();
  (plan as unknown as Record<string, unknown>)[ROOT] = true;
}

function stageParent(plan: { traceparent?: string }, stage: number): string | null {
  return plan.traceparent ? derivedTraceparent(plan.traceparent, `stage-${stage}`) : null;
}

async function planOf(store: ObjectStore, runId: string): Promise<(RunPlan & { traceparent?: string }) | null> {
  try {
    return await loadPlan(store, runId);
  } catch {
    return null; // no plan yet (a new run) or unreadable: the handler itself says what is wrong
  }
}

/**
 * Runs a handler's work in a span named `name` under the run's traceparent (from plan.json); the
 * span ends, with error status on a throw, and is exported before this resolves.
 */
export async function traced<T>(
  name: string,
  store: ObjectStore,
  runId: string | undefined,
  attributes: SpanAttributes,
  fn: (span: TraceSpan | null) => Promise<T>,
): Promise<T> {
  if (!telemetryEnabled()) return fn(null);
  const plan = runId ? await planOf(store, runId) : null;
  const span = await startSpan(name, { ...(runId ? { 'fanout.run_id': runId } : {}), ...attributes }, plan?.traceparent ?? null);
  let result: T;
  try {
    result = await fn(span);
  } catch (e) {
    await endSpan(span, e);
    throw e;
  }
  await endSpan(span);
  return result;
}

/**
 * The Stage Lambda's (and ECS slot's) partitions: each a fanout.partition span with its UDF spans,
 * under the stage's derived span. `since` is when the handler started (a failure's span start).
 */
export async function tracePartitions(
  store: ObjectStore,
  runId: string,
  stage: number,
  partitions: readonly number[],
  since: number,
  run: () => Promise<PartitionResult[]>,
  attributes: SpanAttributes = {},
  opts: RetryPolicy = {},
): Promise<PartitionResult[]> {
  if (!telemetryEnabled()) return run();
  const plan = await planOf(store, runId);
  const parent = plan ? stageParent(plan, stage) : null;
  const span = await startSpan('fanout.stage.task', { 'fanout.run_id': runId, 'fanout.stage': stage, ...attributes }, parent);
  const source = (p: number): SourceJSON => (stage === 0 && plan?.sources[p]) || { kind: 'shard', key: keys.shard(runId, Math.max(0, stage - 1), p) };
  let results: PartitionResult[] = [];
  let error: unknown;
  try {
    results = await run();
  } catch (e) {
    error = e;
  }
  for (const r of results) {
    const outcome = { index: r.partition, rows: r.rows, bytes: r.bytes, path: r.key, metrics: r.metrics, elapsedMs: r.elapsedMs, startedAt: r.startedAt };
    span?.partition({ index: r.partition, source: source(r.partition), outcome, attributes: { 'fanout.stage': stage } });
  }
  if (error !== undefined) {
    const named = (error as { partition?: unknown }).partition;
    const failed = typeof named === 'number' ? named : partitions.find((p) => !results.some((r) => r.partition === p));
    if (failed !== undefined) span?.partition({ index: failed, source: source(failed), error, failedSince: since, attributes: { 'fanout.stage': stage } });
    // An S3-triggered run that this failure ends has nobody else to emit its stage and run spans.
    try {
      if (plan && (await endsTriggeredRun(store, plan, stage, partitions[0] ?? 0, error, opts))) await emitFailedTriggeredRun(store, plan, stage, since, error);
    } catch (e) {
      // Telemetry must not replace the error the state machine is to see.
      console.warn(`fanout: run ${runId}: could not emit the failed run's spans: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  await endSpan(span, error);
  if (error !== undefined) throw error;
  return results;
}

const runDir = (runId: string): string => keys.plan(runId).replace(/plan\.json$/, '');

/**
 * How the state machine retries a failing Stage invocation or ECS task (state-machine.ts; a test
 * holds these to its Retry lists): the error names it never retries, and how many times in all it
 * runs an invocation that fails with anything else.
 */
export interface RetryPolicy {
  unretried?: readonly string[];
  attempts?: number;
}
/** RunPartition: a UDF's error is not retried; anything else (States.TaskFailed) twice more. */
export const LAMBDA_STAGE_RETRIES: RetryPolicy = { unretried: DETERMINISTIC_ERRORS, attempts: 3 };
/** An ECS task (GPU or Fargate) that stopped badly: once more. */
export const ECS_TASK_RETRIES: RetryPolicy = { attempts: 2 };

/**
 * Does this Stage failure end an S3-triggered run? No runner watches such a run, and a failing stage
 * fails the execution inside its Map (no Catch, for redrive), so no Failure step runs either: the
 * failing invocation is the last of the run's code to run. That holds when the state machine will not
 * retry it (an unretried error, or its last attempt: counted per invocation, keyed by its first
 * partition, which every retry of it repeats) and the run tolerates no failed partition (otherwise
 * the Map may still succeed, and Finalize emits the spans). A crashed or timed-out invocation emits
 * nothing: only an observer of the execution's end could (see the README).
 */
async function endsTriggeredRun(
  store: ObjectStore,
  plan: RunPlan & { traceparent?: string },
  stage: number,
  first: number,
  error: unknown,
  policy: RetryPolicy,
): Promise<boolean> {
  if (!(plan as unknown as Record<string, unknown>)[ROOT] || !plan.traceparent || toleratesFailures(plan.tolerance)) return false;
  const name = (error as { name?: unknown } | null)?.name;
  if (typeof name === 'string' && policy.unretried?.includes(name)) return true;
  if (!policy.attempts) return false;
  const key = `${runDir(plan.runId)}trace-attempts/stage-${stage}-task-${first}.json`;
  let n = 1;
  try {
    n += (await getJson<{ failures: number }>(store, key)).failures;
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  await putJson(store, key, { failures: n });
  return n >= policy.attempts;
}

/**
 * Emits a failed S3-triggered run's stage spans (up to the failing one) and its root span. Partitions
 * failing at once each get here: a create-only marker object lets the first one emit, so the trace
 * has each span once (a redrive that fails again finds it too).
 */
async function emitFailedTriggeredRun(store: ObjectStore, plan: RunPlan, stage: number, since: number, error: unknown): Promise<void> {
  const claim = `${runDir(plan.runId)}trace-failed.json`;
  try {
    await store.put(claim, JSON.stringify({ stage, at: new Date().toISOString() }), { ifNoneMatch: '*', contentType: 'application/json' });
  } catch (e) {
    if (isConditionFailure(e)) return;
    throw e;
  }
  await emitRunSpans(store, plan.runId, error, { lastStage: stage, failedSince: since });
}

interface Marker {
  rows: number;
  startedAt?: string;
  finishedAt?: string;
}

/**
 * Finalize / Failure: emit each stage's span (from its partitions' markers, with the id its
 * partitions already point at) and, for an S3-triggered run, the run span itself.
 */
export async function emitRunSpans(store: ObjectStore, runId: string, error?: unknown, opts: { lastStage?: number; failedSince?: number } = {}): Promise<void> {
  if (!telemetryEnabled()) return;
  const plan = await planOf(store, runId);
  if (!plan?.traceparent) return;
  const now = Date.now();
  const created = Date.parse(plan.createdAt) || now;
  for (const s of plan.stages) {
    // A stage failure that ends the run: the stages after it never started.
    if (opts.lastStage !== undefined && s.index > opts.lastStage) break;
    const self = stageParent(plan, s.index);
    if (!self) continue;
    // Stages after a shuffle have their own partition count (the exchange's buckets), not the inputs'.
    const partitions = stagePartitions(plan, s.index);
    const marks = await mapLimit(Array.from({ length: partitions }), 16, async (_x, p): Promise<Marker | null> => {
      try {
        return await getJson<Marker>(store, keys.metrics(runId, s.index, p));
      } catch (e) {
        if (e instanceof NotFoundError) return null;
        throw e;
      }
    });
    const done = marks.filter((m): m is Marker => m !== null);
    const starts = done.map((m) => Date.parse(m.startedAt ?? '')).filter(Number.isFinite);
    if (s.index === opts.lastStage && opts.failedSince !== undefined) starts.push(opts.failedSince);
    const ends = done.map((m) => Date.parse(m.finishedAt ?? '')).filter(Number.isFinite);
    const incomplete = done.length < partitions;
    if (!done.length && error === undefined) continue;
    await emitSpan({
      name: 'fanout.stage',
      self,
      parent: plan.traceparent,
      attributes: {
        'fanout.run_id': runId,
        'fanout.stage': s.index,
        'fanout.executor': s.executor,
        'fanout.partitions': partitions,
        'fanout.partitions.done': done.length,
        'fanout.rows_out': done.reduce((n, m) => n + m.rows, 0),
        'fanout.udfs': s.udfs,
      },
      start: starts.length ? Math.min(...starts) : created,
      end: ends.length && !incomplete ? Math.max(...ends) : now,
      ...(incomplete && error !== undefined ? { error } : {}),
    });
  }
  if ((plan as unknown as Record<string, unknown>)[ROOT]) {
    await emitSpan({
      name: 'fanout.run',
      self: plan.traceparent,
      parent: null,
      attributes: {
        'fanout.run_id': runId,
        'fanout.runner': 'aws',
        'fanout.trigger': 'plan',
        'fanout.partitions': plan.sources.length,
        'fanout.stages': plan.stages.length,
      },
      start: created,
      end: now,
      ...(error !== undefined ? { error } : {}),
    });
  }
}

/**
 * The Plan handler's span. A runner-made plan already carries the run's traceparent: the span hangs
 * under it. A plan made here (an S3-triggered run) is `adopt`ed: the run's trace starts with it
 * (recorded in plan.json), and this span is emitted under it once the plan is written.
 */
export async function tracePlan<T>(store: ObjectStore, runId: string | undefined, fn: (adopt: (plan: RunPlan) => void) => Promise<T>): Promise<T> {
  if (!telemetryEnabled()) return fn(() => undefined);
  const existing = runId ? await planOf(store, runId) : null;
  if (existing?.traceparent) return traced('fanout.plan', store, runId, {}, () => fn(() => undefined));
  const start = Date.now();
  let adopted: RunPlan | null = null;
  let result: T;
  let error: unknown;
  try {
    result = await fn((plan) => {
      startPlannedTrace(plan);
      adopted = plan;
    });
  } catch (e) {
    error = e;
  }
  const plan = adopted as (RunPlan & { traceparent?: string }) | null;
  const self = plan?.traceparent ? derivedTraceparent(plan.traceparent, 'plan') : null;
  if (plan && self) {
    const attributes = { 'fanout.run_id': plan.runId, 'fanout.partitions': plan.sources.length, 'fanout.stages': plan.stages.length };
    await emitSpan({
      name: 'fanout.plan',
      self,
      parent: plan.traceparent ?? null,
      attributes,
      start,
      end: Date.now(),
      ...(error === undefined ? {} : { error }),
    });
  } else if (error !== undefined) {
    // Failed before there was a plan: a span of its own says so.
    const span = await startSpan('fanout.plan', runId ? { 'fanout.run_id': runId } : {});
    await endSpan(span, error);
  }
  await flushTelemetry();
  if (error !== undefined) throw error;
  return result!;
}

/** The AWS runner's run span (the caller's side): its traceparent goes into plan.json. */
export async function traceAwsRun<T extends RunSummaryLike>(run: (traceparent: string | null) => Promise<T>): Promise<T> {
  const span = await startSpan('fanout.run', { 'fanout.runner': 'aws' });
  let summary: T;
  try {
    summary = await run(span?.traceparent ?? null);
  } catch (e) {
    const runId = (e as { runId?: unknown }).runId;
    if (typeof runId === 'string') span?.setAttributes({ 'fanout.run_id': runId });
    await endSpan(span, e);
    throw e;
  }
  span?.setAttributes({ 'fanout.run_id': summary.runId, 'fanout.rows_out': summary.rows });
  await endSpan(span);
  return summary;
}

interface RunSummaryLike {
  runId: string;
  rows: number;
}

// The AWS runner: an action plans the run here, writes the plan to the work bucket, starts a Step
// Functions execution (the same generic state machine in AWS and in the local harness), shows
// progress from the shards' completion markers, and reads the committed result.
import type * as arrow from 'apache-arrow';
// Type-only: the client is imported when a run starts, so `import 'fanout'` does not load the SDK.
import type { DescribeExecutionCommandOutput, SFNClient } from '@aws-sdk/client-sfn';
import {
  checkRunId,
  DEFAULT_AWS_PARTITION_BYTES,
  hasMemorySource,
  keys,
  planRun,
  recordFailure,
  type RunOutput,
  type RunPlan,
  type RunSummary,
} from '../aws/run.ts';
import { checkTolerance, toleranceText, type FailureTolerance } from '../aws/tolerance.ts';
import { expectationOf, PlanMismatchError, planDifferences } from '../aws/resume.ts';
import type { ProgressListener } from '../progress.ts';
import { getJson, NotFoundError, putJson, S3Store, type ObjectStore } from '../io/store/index.ts';
import { AbortError } from '../executor.ts';
import { readParquetBatches } from '../io/parquet/index.ts';
import { forgetObjectBytes, noteObjectBytes, noteS3Files } from '../io/s3/index.ts';
import type { WrittenFile } from '../io/writer.ts';
import { planSchema, type PlanNode } from '../plan.ts';
import { progressEnabled, startProgress } from '../progress.ts';
import { mergeMetrics, type RunMetrics } from '../udf-exec.ts';
import { recordCancel } from '../aws/history.ts';
import { MarkerWatcher, type MarkerInfo } from '../aws/markers.ts';
import { AWS_MIN_PARTITIONS, buildPhysicalPlan, physicalPlanToString, udfsOf } from '../physical.ts';
import type { CostOptions } from '../aws/cost.ts';
import { requestOf, splitStages, stagesToString } from '../aws/stages.ts';
import { deployedClasses } from '../aws/placement.ts';
import { listUdfs } from '../udf.ts';
import { describePlan, EmbeddedRunner, type ResolvedEmbeddedOptions } from './embedded.ts';
import type { ActionContext, DatasetSinkSpec, ExplainRequest, ResultPartition, Runner } from './runner.ts';
import { emitRunSpans, traceAwsRun } from '../telemetry/aws.ts';
import { endsInRelational } from '../aws/shuffle-plan.ts';
import { describeRelationalRun } from '../aws/shuffle-explain.ts';

export interface AwsRunnerOptions {
  stateMachineArn: string;
  workBucket: string;
  region?: string;
  /** Step Functions endpoint (local harness, LocalStack); S3 endpoints come from AWS_ENDPOINT_URL_S3. */
  endpoint?: string;
  /** Module(s) that register the pipeline's UDFs, for workers that import by URL (local runs). */
  pipeline?: string | string[];
  /** Row-group packing target per partition (uncompressed bytes). Default 128 MiB, about one Lambda's worth. */
  targetPartitionBytes?: number;
  /** With UDFs in the plan, split the input into at least this many partitions (Lambda fan-out). Default 32. */
  minPartitions?: number;
  /** Rows per batch the stages read (and hand to UDFs). Default: the readers' 65,536. */
  batchSize?: number;
  pollIntervalMs?: number;
  /** Give up waiting (the execution keeps its own timeouts). Default 24 h. */
  timeoutMs?: number;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** explain()'s cost estimate: price table (default: built-in for `region`, else us-east-1) and assumptions. */
  cost?: CostOptions;
  /**
   * Partitions that may fail, in percent of the run's (0-100), while the run still commits the rest:
   * the action resolves, a warning says what failed, and the `_SUCCESS` manifest says `complete: false`.
   */
  toleratedFailurePercentage?: number;
  /** Partitions that may fail, as a count (with toleratedFailurePercentage, a run fails past either). */
  toleratedFailureCount?: number;
  /** Partitions of the hash and range exchanges of groupBy / distinct / join / sort. Default: the widest input's partition count, at most 32. */
  shufflePartitions?: number;
  /** A join's right side estimated under this many bytes is broadcast to the left side's partitions (no shuffle). Default 32 MiB. */
  broadcastJoinBytes?: number;
}

export interface ResumeOptions {
  /** Stops the resumed execution (StopExecution); nothing is committed. */
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** The pipeline as it is now: a stored plan with other UDFs or another output is refused (PlanMismatchError). */
  pipeline?: { readonly plan: PlanNode };
  /** The output the resumed run must commit to: refused when the stored plan names another. */
  output?: string | null;
}

/**
 * Margin for the workers' clocks against Step Functions' when error records are dated: none, since a
 * partition's record is written well after its execution started, while a resume may start within
 * a second of the attempt it follows (whose records must not count).
 */
const CLOCK_SKEW_MS = 0;

/** A failed partition: stage, partition, its input (file, row groups), the failing UDF and the original message. */
export interface FailedPartition {
  stage: number;
  partition: number;
  /** The partition's input: file and row groups / row range. */
  source: string | null;
  udf: string | null;
  message: string;
}

function failedPartitionsOf(summary: RunSummary | null): FailedPartition[] {
  if (!summary) return [];
  const out: FailedPartition[] = [];
  const seen = new Set<number>();
  for (const e of summary.partitionErrors ?? []) {
    seen.add(e.partition);
    out.push({ stage: e.stage, partition: e.partition, source: e.source ?? null, udf: e.udf ?? null, message: e.error });
  }
  // Partitions whose worker left no error record (stopped, timed out) are still named.
  const first = new Map<number, number>();
  for (const f of summary.failedPartitions ?? []) for (const p of f.partitions) if (!first.has(p)) first.set(p, f.stage);
  for (const [partition, stage] of first) if (!seen.has(partition)) out.push({ stage, partition, source: null, udf: null, message: 'no error recorded' });
  return out.sort((a, b) => a.partition - b.partition);
}

/** What a run with tolerated failures left out, as one warning line. */
function partialWarning(summary: RunSummary, tolerance: FailureTolerance | undefined): string {
  const failed = failedPartitionsOf(summary);
  const shown = failed.slice(0, 5).map((f: FailedPartition) => `partition ${f.partition}${f.source ? ` (${f.source})` : ''}: ${f.message}`);
  return (
    `fanout: run ${summary.runId} committed without ${failed.length} failed partition(s) (${toleranceText(tolerance)}): ${shown.join('; ')}` +
    `${failed.length > shown.length ? '; …' : ''}; the output's _SUCCESS manifest says complete: false`
  );
}

export class RunFailedError extends Error {
  /** The failed partitions with their input, UDF and message (from the run's failure record). */
  readonly failedPartitions: FailedPartition[];
  constructor(
    message: string,
    readonly runId: string,
    readonly summary: RunSummary | null,
  ) {
    super(message);
    this.name = 'RunFailedError';
    this.failedPartitions = failedPartitionsOf(summary);
  }
}

function modulesOf(plan: RunPlan): string[] {
  const urls = new Set<string>();
  for (const s of plan.stages) for (const u of udfsOf(s.ops)) if (u.moduleUrl) urls.add(u.moduleUrl);
  return [...urls];
}

/**
 * Runs a plan on the state machine; resolves with the run's summary once its output is committed.
 * An abort stops the execution (StopExecution) and rejects with an AbortError.
 */
async function runOnAws(
  logical: PlanNode,
  opts: AwsRunnerOptions,
  output: RunOutput | null,
  ctx: Pick<ActionContext, 'signal' | 'onProgress' | 'onMetrics'> & { traceparent?: string } = {},
): Promise<RunSummary> {
  const plan = planFor(logical, opts, output);
  if (ctx.traceparent) plan.traceparent = ctx.traceparent; // every handler continues the caller's trace
  const store: ObjectStore = new S3Store(opts.workBucket);
  if (ctx.signal?.aborted) throw new AbortError(`aborted before run ${plan.runId} started`, { cause: ctx.signal.reason });
  await putJson(store, keys.plan(plan.runId), plan);
  return executeRun(plan, opts, { runId: plan.runId, workBucket: opts.workBucket, output: output?.uri ?? null }, plan.runId, ctx);
}

/** The run plan of an action on this runner: its partitioning, batch size, tolerance and the modules workers import. */
export function planFor(logical: PlanNode, opts: AwsRunnerOptions, output: RunOutput | null): RunPlan {
  const planOpts: Parameters<typeof planRun>[1] = { pipeline: null, output };
  if (opts.targetPartitionBytes) planOpts.targetPartitionBytes = opts.targetPartitionBytes;
  if (opts.minPartitions !== undefined) planOpts.minPartitions = opts.minPartitions;
  if (opts.batchSize !== undefined) planOpts.batchSize = opts.batchSize;
  if (opts.shufflePartitions !== undefined) planOpts.shufflePartitions = opts.shufflePartitions;
  if (opts.broadcastJoinBytes !== undefined) planOpts.broadcastJoinBytes = opts.broadcastJoinBytes;
  const tolerance = runnerTolerance(opts);
  if (tolerance) planOpts.tolerance = tolerance;
  const plan = planRun(logical, planOpts);
  const mods = opts.pipeline ?? modulesOf(plan);
  plan.pipeline = Array.isArray(mods) && mods.length === 0 ? null : mods;
  return plan;
}

/** The runner's tolerated failures, checked (setRunner checks them too). */
export function runnerTolerance(opts: AwsRunnerOptions): FailureTolerance | undefined {
  const t: FailureTolerance = {};
  if (opts.toleratedFailurePercentage !== undefined) t.toleratedFailurePercentage = opts.toleratedFailurePercentage;
  if (opts.toleratedFailureCount !== undefined) t.toleratedFailureCount = opts.toleratedFailureCount;
  return checkTolerance(t, "setRunner('aws', options)");
}

/**
 * Starts an execution named `name` with `input` for the stored `plan`, follows it (progress from the
 * completion markers; an abort stops it) and resolves with the committed run's summary. A failed run
 * rejects with a RunFailedError; its failure record is rewritten whole here (the state machine fails
 * a stage without a recording step, so that a redrive can re-enter it).
 */
export async function executeRun(
  plan: RunPlan,
  opts: AwsRunnerOptions,
  input: Record<string, unknown>,
  name: string,
  ctx: Pick<ActionContext, 'signal' | 'onProgress' | 'onMetrics'> = {},
): Promise<RunSummary> {
  const signal = ctx.signal;
  const store: ObjectStore = new S3Store(opts.workBucket);

  const { DescribeExecutionCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } = await import('@aws-sdk/client-sfn');
  const sfnConfig: ConstructorParameters<typeof SFNClient>[0] = { region: opts.region ?? process.env['AWS_REGION'] ?? 'us-east-1' };
  if (opts.endpoint) sfnConfig.endpoint = opts.endpoint;
  if (opts.credentials) sfnConfig.credentials = opts.credentials;
  const sfn = new SFNClient(sfnConfig);
  const region = sfnConfig.region as string;
  const sfnEndpoint = opts.endpoint ?? `https://states.${region}.amazonaws.com`;
  const s3Endpoint = process.env['AWS_ENDPOINT_URL_S3'] ?? process.env['AWS_ENDPOINT_URL'] ?? `https://s3.${region}.amazonaws.com`;
  // A bare "connect ECONNREFUSED 127.0.0.1:42751" says neither which run nor which service went away.
  const lost = (what: string, endpoint: string, e: unknown): RunFailedError =>
    Object.assign(new RunFailedError(`run ${plan.runId}: ${what} (endpoint ${endpoint}): ${e instanceof Error ? e.message : String(e)}`, plan.runId, null), {
      cause: e,
    });
  let arn: string;
  let startedAt = Date.now();
  try {
    const started = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: opts.stateMachineArn,
        name,
        input: JSON.stringify(input),
      }),
    );
    arn = started.executionArn!;
    startedAt = started.startDate?.getTime() ?? Date.now();
  } catch (e) {
    throw lost(`could not start the execution on ${opts.stateMachineArn}`, sfnEndpoint, e);
  }

  // Live progress from the completion markers: each finished partition's rows and UDF metrics reach
  // the bar, ctx.onProgress and ctx.onMetrics (df.metrics) while the run goes on. A batched Stage
  // invocation's markers come from its marker batch (one GET per invocation instead of one per
  // partition) when it appears within 3 polls (at most 30 s); later, each marker is read itself.
  const poll = opts.pollIntervalMs ?? (opts.endpoint ? 200 : 2000);
  const watcher = new MarkerWatcher(store, plan, 16, Math.min(3 * poll, 30_000));
  const progress = startProgress(
    `fanout aws ${plan.runId}`,
    watcher.total,
    plan.stages.flatMap((s) => s.udfs),
    progressEnabled(),
    ctx.onProgress,
  );
  const live: RunMetrics = {};
  const lastStage = plan.stages.length - 1;
  const readMarkers = async (final = false): Promise<void> => {
    let fresh: MarkerInfo[];
    try {
      fresh = await watcher.poll(final);
    } catch (e) {
      throw lost(`lost the work bucket s3://${opts.workBucket} while waiting for execution ${arn}`, s3Endpoint, e);
    }
    for (const m of fresh) {
      // A small result in its marker: the read-back takes it from here when a listing names that version.
      if (m.result && m.stage === lastStage)
        noteObjectBytes(store.uri(keys.result(plan.runId, m.partition)), m.result.etag, Buffer.from(m.result.data, 'base64'));
      mergeMetrics(live, m.metrics);
      progress.rows(m.rows);
      progress.udfs(live);
      progress.partitionDone();
    }
    if (fresh.length && Object.keys(live).length) ctx.onMetrics?.(structuredClone(live));
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 24 * 3600_000);
  let status = 'RUNNING';
  let described: { error?: string; cause?: string } | null = null;
  try {
    while (status === 'RUNNING') {
      if (signal?.aborted) {
        // The execution stops; Finalize never runs, so nothing is committed.
        try {
          await sfn.send(new StopExecutionCommand({ executionArn: arn, error: 'AbortError', cause: 'aborted by the caller' }));
        } catch (e) {
          throw lost(`aborted, but could not stop execution ${arn}`, sfnEndpoint, e);
        }
        // The run history (fanout runs, the dashboard) shows it cancelled, not running (best effort).
        await recordCancel(`s3://${opts.workBucket}`, plan.runId, 'aborted by the caller').catch(() => undefined);
        throw new AbortError(`aborted (run ${plan.runId}, ${arn})`, { cause: signal.reason });
      }
      if (Date.now() > deadline) throw new RunFailedError(`run ${plan.runId} still running after ${opts.timeoutMs} ms (${arn})`, plan.runId, null);
      await sleep(poll, signal);
      let d: DescribeExecutionCommandOutput;
      try {
        d = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
      } catch (e) {
        throw lost(`lost the Step Functions endpoint while waiting for execution ${arn}`, sfnEndpoint, e);
      }
      described = d;
      status = d.status ?? 'RUNNING';
      await readMarkers();
    }
    // The markers written between the last poll and the end, so the last event is the whole run.
    if (status === 'SUCCEEDED') await readMarkers(true);
  } finally {
    progress.stop();
    sfn.destroy();
    // Failed, aborted or timed out: nothing reads this run's results back, so their noted bytes go now.
    if (status !== 'SUCCEEDED') forgetObjectBytes(store.uri(keys.resultPrefix(plan.runId)));
  }
  if (status !== 'SUCCEEDED') {
    let summary: RunSummary | null = null;
    let unread = '';
    const smError = described?.error ? `${described.error}${described.cause ? `: ${causeText(described.cause)}` : ''}` : `execution ${status}`;
    try {
      // Whole: every failed partition's error and the state machine's (best effort: the read below still runs).
      // Partition errors older than this execution (a resume's earlier attempts) are not its failure's.
      await recordFailure(store, plan.runId, smError, new Date(startedAt - CLOCK_SKEW_MS)).catch(() => undefined);
      // A failing stage ends the execution in its Map (no Failure step runs, so that a redrive can
      // re-enter it): its stage spans are emitted here, from the markers, with the error.
      await emitRunSpans(store, plan.runId, new Error(smError)).catch(() => undefined);
      summary = await getJson<RunSummary>(store, keys.failure(plan.runId));
    } catch (e) {
      // The state machine's own error still says what happened.
      if (!(e instanceof NotFoundError))
        unread = `; its failure record was not readable from s3://${opts.workBucket} (endpoint ${s3Endpoint}): ${e instanceof Error ? e.message : String(e)}`;
    }
    const d = described as { error?: string; cause?: string } | null;
    const parts = summary?.failedPartitions?.map((f) => `stage ${f.stage}: partitions ${f.partitions.join(', ')}`).join('; ');
    // The failed partition's own error (UDF, partition, input, message) when its worker recorded one.
    const reason = summary?.partitionErrors?.length
      ? summary.error
      : `${d?.error ?? summary?.error ?? 'unknown error'}${d?.cause ? ` (${causeText(d.cause)})` : ''}`;
    throw new RunFailedError(`run ${plan.runId} ${status.toLowerCase()}: ${reason}${parts ? `; failed ${parts}` : ''}${unread}`, plan.runId, summary);
  }
  const summary = await getJson<RunSummary>(store, keys.summary(plan.runId));
  if (summary.complete === false) process.emitWarning(partialWarning(summary, plan.tolerance), { code: 'FANOUT_PARTIAL_RUN' });
  return summary;
}

/** A failed task's cause, readable: a Lambda error document's type and message, an ECS task's stop reason. */
function causeText(cause: string): string {
  try {
    const doc = JSON.parse(cause) as { errorType?: unknown; errorMessage?: unknown; StoppedReason?: unknown };
    if (typeof doc.errorMessage === 'string') return `${typeof doc.errorType === 'string' ? `${doc.errorType}: ` : ''}${doc.errorMessage}`.slice(0, 2000);
    if (typeof doc.StoppedReason === 'string') return doc.StoppedReason.slice(0, 2000);
  } catch {
    // Not JSON: shown as it is.
  }
  return cause.slice(0, 500);
}

/** Waits `ms`, or less when `signal` aborts (the caller checks it next). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Reads committed result files with the embedded readers. */
async function* readCommitted(files: readonly WrittenFile[], plan: PlanNode): AsyncGenerator<arrow.RecordBatch> {
  const schema = planSchema(plan);
  // One listing vouches for every file: the first read fetches all their footers in one parallel round.
  await noteS3Files(files.map((f) => f.path));
  for (const f of files) yield* readParquetBatches(f.path, { schema });
}

/**
 * The serverless runner: plans run as Step Functions executions; results are read back from the
 * committed files. Plans over in-memory data run on the embedded runner (they cannot be shipped).
 */
export class AwsRunner implements Runner {
  readonly name: string = 'aws';
  private readonly local: EmbeddedRunner;

  constructor(
    readonly aws: AwsRunnerOptions,
    readonly options: ResolvedEmbeddedOptions,
  ) {
    this.local = new EmbeddedRunner(options);
  }

  private async run(plan: PlanNode, output: RunOutput | null, ctx: ActionContext): Promise<RunSummary> {
    const summary = await traceAwsRun((traceparent) => runOnAws(plan, this.aws, output, traceparent ? { ...ctx, traceparent } : ctx));
    ctx.onMetrics?.(summary.metrics);
    return summary;
  }

  stream(plan: PlanNode, ctx: ActionContext): AsyncIterable<arrow.RecordBatch> {
    if (hasMemorySource(plan)) return this.local.stream(plan, ctx);
    const self = this;
    // The cluster computes the result; it streams back from the committed files, one at a time.
    return (async function* () {
      const summary = await self.run(plan, null, ctx);
      yield* readCommitted(summary.files, plan);
    })();
  }

  async *partitions(plan: PlanNode, ctx: ActionContext): AsyncGenerator<ResultPartition> {
    if (hasMemorySource(plan)) {
      yield* this.local.partitions(plan, ctx);
      return;
    }
    const summary = await this.run(plan, null, ctx);
    await noteS3Files(summary.files.map((f) => f.path));
    for (const [index, f] of summary.files.entries()) yield { index, batches: readCommitted([f], plan) };
  }

  async write(plan: PlanNode, sink: DatasetSinkSpec, ctx: ActionContext): Promise<WrittenFile[]> {
    if (hasMemorySource(plan)) return this.local.write(plan, sink, ctx);
    // Writer options travel in the run plan's output spec to the stages that write the result files.
    return (await this.run(plan, sink, ctx)).files;
  }

  /**
   * Resumes run `runId` (see resumeRun): its stored plan, every finished partition reused, only the
   * partitions without a completion marker run, and the output is committed once.
   */
  async resume(runId: string, opts: ResumeOptions = {}): Promise<RunSummary> {
    checkRunId(runId, 'resumeRun: run id');
    const store: ObjectStore = new S3Store(this.aws.workBucket);
    let plan: RunPlan;
    try {
      plan = await getJson<RunPlan>(store, keys.plan(runId));
    } catch (e) {
      if (e instanceof NotFoundError)
        throw new Error(`resumeRun: run ${runId} has no plan at s3://${this.aws.workBucket}/${keys.plan(runId)}: nothing to resume`);
      throw e;
    }
    const input: Record<string, unknown> = { runId, workBucket: this.aws.workBucket, resume: true };
    if (opts.pipeline) {
      // Refused here already when the caller's pipeline plans other UDFs or another output.
      const now = expectationOf(planFor(opts.pipeline.plan, this.aws, plan.output));
      if (opts.output !== undefined) now.output = opts.output;
      const diffs = planDifferences(expectationOf(plan), now);
      if (diffs.length) throw new PlanMismatchError(runId, diffs);
      input['expect'] = now;
    }
    if (opts.output !== undefined) input['output'] = opts.output;
    if (opts.signal?.aborted) throw new AbortError(`aborted before run ${runId} was resumed`, { cause: opts.signal.reason });
    // A new execution of the same run: its name must be new (Step Functions keeps names for 90 days).
    const name = `${runId.slice(0, 60)}-resume-${Date.now().toString(36)}`;
    const ctx: Pick<ActionContext, 'signal' | 'onProgress' | 'onMetrics'> = {};
    if (opts.signal) ctx.signal = opts.signal;
    if (opts.onProgress) ctx.onProgress = opts.onProgress;
    return executeRun(plan, this.aws, input, name, ctx);
  }

  describe(optimized: PlanNode, _req?: ExplainRequest): string {
    // Always with the stages (they are what runs), priced with this runner's region and cost options.
    const cost: CostOptions = { ...this.aws.cost };
    cost.region ??= this.aws.region ?? process.env['AWS_REGION'] ?? 'us-east-1';
    if (this.aws.pollIntervalMs !== undefined) cost.pollIntervalMs ??= this.aws.pollIntervalMs;
    const sizing = {
      targetPartitionBytes: this.aws.targetPartitionBytes ?? DEFAULT_AWS_PARTITION_BYTES,
      minPartitions: this.aws.minPartitions ?? AWS_MIN_PARTITIONS,
    };
    if (endsInRelational(optimized)) {
      // Each input as this runner partitions it; the stage list below numbers the stages.
      const input = (p: PlanNode): string => {
        const physical = buildPhysicalPlan(p, sizing);
        return physicalPlanToString(physical, { parallelism: physical.partitions.length, where: 'aws' }).replace(/^(\s*\* )Stage 0: /m, '$1Input: ');
      };
      return describeRelationalRun(optimized, planFor(optimized, this.aws, null), input, { options: cost, sizing });
    }
    const run = buildPhysicalPlan(optimized, sizing);
    // What FanoutPipeline deploys for the registered UDFs (its default `udfs`): the function or task definition of each stage.
    const deployment = deployedClasses(listUdfs().map(requestOf));
    return `${describePlan(optimized, this.options, null)}\n\n${stagesToString(run, splitStages(run), cost, deployment)}`;
  }
}

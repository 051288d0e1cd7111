// The AWS runner: an action plans the run here, writes the plan to the work bucket, starts a Step
// Functions execution (the same generic state machine in AWS and in the local harness), shows
// progress from the shards' completion markers, and reads the committed result.
import type * as arrow from 'apache-arrow';
// Type-only: the client is imported when a run starts, so `import 'fanout'` does not load the SDK.
import type { DescribeExecutionCommandOutput, SFNClient } from '@aws-sdk/client-sfn';
import { hasMemorySource, keys, planRun, type RunOutput, type RunPlan, type RunSummary } from '../aws/run.ts';
import { getJson, NotFoundError, putJson, S3Store, type ObjectStore } from '../io/store/index.ts';
import { AbortError } from '../executor.ts';
import { readParquetBatches } from '../io/parquet/index.ts';
import type { WrittenFile } from '../io/writer.ts';
import { planSchema, type PlanNode } from '../plan.ts';
import { progressEnabled, startProgress } from '../progress.ts';
import { mergeMetrics, type RunMetrics } from '../udf-exec.ts';
import { MarkerWatcher, type MarkerInfo } from '../aws/markers.ts';
import { buildPhysicalPlan, udfsOf } from '../physical.ts';
import type { CostOptions } from '../aws/cost.ts';
import { splitStages, stagesToString } from '../aws/stages.ts';
import { describePlan, EmbeddedRunner, type ResolvedEmbeddedOptions } from './embedded.ts';
import type { ActionContext, DatasetSinkSpec, ExplainRequest, ResultPartition, Runner } from './runner.ts';
import { traceAwsRun } from '../telemetry/aws.ts';

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
  /** Rows per batch the stages read (and hand to UDFs). Default: the readers' 65,536. */
  batchSize?: number;
  pollIntervalMs?: number;
  /** Give up waiting (the execution keeps its own timeouts). Default 24 h. */
  timeoutMs?: number;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** explain()'s cost estimate: price table (default: built-in for `region`, else us-east-1) and assumptions. */
  cost?: CostOptions;
}

export class RunFailedError extends Error {
  constructor(
    message: string,
    readonly runId: string,
    readonly summary: RunSummary | null,
  ) {
    super(message);
    this.name = 'RunFailedError';
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
  const signal = ctx.signal;
  const planOpts: Parameters<typeof planRun>[1] = { pipeline: null, output };
  if (opts.targetPartitionBytes) planOpts.targetPartitionBytes = opts.targetPartitionBytes;
  if (opts.batchSize !== undefined) planOpts.batchSize = opts.batchSize;
  const plan = planRun(logical, planOpts);
  if (ctx.traceparent) plan.traceparent = ctx.traceparent; // every handler continues the caller's trace
  const mods = opts.pipeline ?? modulesOf(plan);
  plan.pipeline = Array.isArray(mods) && mods.length === 0 ? null : mods;
  const store: ObjectStore = new S3Store(opts.workBucket);
  if (signal?.aborted) throw new AbortError(`aborted before run ${plan.runId} started`, { cause: signal.reason });
  await putJson(store, keys.plan(plan.runId), plan);

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
  try {
    const started = await sfn.send(
      new StartExecutionCommand({
        stateMachineArn: opts.stateMachineArn,
        name: plan.runId,
        input: JSON.stringify({ runId: plan.runId, workBucket: opts.workBucket, output: output?.uri ?? null }),
      }),
    );
    arn = started.executionArn!;
  } catch (e) {
    throw lost(`could not start the execution on ${opts.stateMachineArn}`, sfnEndpoint, e);
  }

  // Live progress from the completion markers: each finished partition's rows and UDF metrics reach
  // the bar, ctx.onProgress and ctx.onMetrics (df.metrics) while the run goes on.
  const watcher = new MarkerWatcher(store, plan);
  const progress = startProgress(
    `fanout aws ${plan.runId}`,
    watcher.total,
    plan.stages.flatMap((s) => s.udfs),
    progressEnabled(),
    ctx.onProgress,
  );
  const live: RunMetrics = {};
  const readMarkers = async (): Promise<void> => {
    let fresh: MarkerInfo[];
    try {
      fresh = await watcher.poll();
    } catch (e) {
      throw lost(`lost the work bucket s3://${opts.workBucket} while waiting for execution ${arn}`, s3Endpoint, e);
    }
    for (const m of fresh) {
      mergeMetrics(live, m.metrics);
      progress.rows(m.rows);
      progress.udfs(live);
      progress.partitionDone();
    }
    if (fresh.length && Object.keys(live).length) ctx.onMetrics?.(structuredClone(live));
  };
  const poll = opts.pollIntervalMs ?? (opts.endpoint ? 200 : 2000);
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
    if (status === 'SUCCEEDED') await readMarkers();
  } finally {
    progress.stop();
    sfn.destroy();
  }
  if (status !== 'SUCCEEDED') {
    let summary: RunSummary | null = null;
    let unread = '';
    try {
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
  return getJson<RunSummary>(store, keys.summary(plan.runId));
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
    for (const [index, f] of summary.files.entries()) yield { index, batches: readCommitted([f], plan) };
  }

  async write(plan: PlanNode, sink: DatasetSinkSpec, ctx: ActionContext): Promise<WrittenFile[]> {
    if (hasMemorySource(plan)) return this.local.write(plan, sink, ctx);
    return (await this.run(plan, sink, ctx)).files;
  }

  describe(optimized: PlanNode, _req?: ExplainRequest): string {
    // Always with the stages (they are what runs), priced with this runner's region and cost options.
    const cost: CostOptions = { ...this.aws.cost };
    cost.region ??= this.aws.region ?? process.env['AWS_REGION'] ?? 'us-east-1';
    if (this.aws.pollIntervalMs !== undefined) cost.pollIntervalMs ??= this.aws.pollIntervalMs;
    const run = buildPhysicalPlan(optimized, { targetPartitionBytes: this.aws.targetPartitionBytes ?? 128 << 20 });
    return `${describePlan(optimized, this.options, null)}\n\n${stagesToString(run, splitStages(run), cost)}`;
  }
}

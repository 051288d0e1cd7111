// The AWS runner: an action plans the run here, writes the plan to the work bucket, starts a Step
// Functions execution (the same generic state machine in AWS and in the local harness), shows
// progress from the shards' completion markers, and reads the committed result.
import type * as arrow from 'apache-arrow';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { hasMemorySource, keys, planRun, type RunOutput, type RunPlan, type RunSummary } from '../aws/run.ts';
import { S3Store } from '../aws/s3-store.ts';
import { getJson, NotFoundError, putJson, type ObjectStore } from '../aws/store.ts';
import { AbortError } from '../executor.ts';
import { readParquetBatches } from '../io/parquet.ts';
import type { WrittenFile } from '../io/writer.ts';
import { planSchema, type PlanNode } from '../plan.ts';
import { startProgress } from '../progress.ts';
import { udfsOf } from '../physical.ts';
import { describePlan, EmbeddedRunner, type ResolvedEmbeddedOptions } from './embedded.ts';
import type { ActionContext, DatasetSinkSpec, ExplainRequest, ResultPartition, Runner } from './runner.ts';

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
}

export class RunFailedError extends Error {
  constructor(message: string, readonly runId: string, readonly summary: RunSummary | null) {
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
export async function runOnAws(logical: PlanNode, opts: AwsRunnerOptions, output: RunOutput | null, signal?: AbortSignal): Promise<RunSummary> {
  const planOpts: Parameters<typeof planRun>[1] = { pipeline: null, output };
  if (opts.targetPartitionBytes) planOpts.targetPartitionBytes = opts.targetPartitionBytes;
  if (opts.batchSize !== undefined) planOpts.batchSize = opts.batchSize;
  const plan = planRun(logical, planOpts);
  const mods = opts.pipeline ?? modulesOf(plan);
  plan.pipeline = Array.isArray(mods) && mods.length === 0 ? null : mods;
  const store: ObjectStore = new S3Store(opts.workBucket);
  if (signal?.aborted) throw new AbortError(`aborted before run ${plan.runId} started`, { cause: signal.reason });
  await putJson(store, keys.plan(plan.runId), plan);

  const sfnConfig: ConstructorParameters<typeof SFNClient>[0] = { region: opts.region ?? process.env['AWS_REGION'] ?? 'us-east-1' };
  if (opts.endpoint) sfnConfig.endpoint = opts.endpoint;
  if (opts.credentials) sfnConfig.credentials = opts.credentials;
  const sfn = new SFNClient(sfnConfig);
  const started = await sfn.send(new StartExecutionCommand({
    stateMachineArn: opts.stateMachineArn,
    name: plan.runId,
    input: JSON.stringify({ runId: plan.runId, workBucket: opts.workBucket, output: output?.uri ?? null }),
  }));
  const arn = started.executionArn!;

  const partitions = plan.sources.length;
  const progress = startProgress(`fanout aws ${plan.runId}`, partitions * plan.stages.length, plan.stages.flatMap((s) => s.udfs));
  const poll = opts.pollIntervalMs ?? (opts.endpoint ? 200 : 2000);
  const deadline = Date.now() + (opts.timeoutMs ?? 24 * 3600_000);
  let status = 'RUNNING';
  let described: { error?: string; cause?: string } | null = null;
  let done = 0;
  try {
    while (status === 'RUNNING') {
      if (signal?.aborted) {
        // The execution stops; Finalize never runs, so nothing is committed.
        await sfn.send(new StopExecutionCommand({ executionArn: arn, error: 'AbortError', cause: 'aborted by the caller' }));
        throw new AbortError(`aborted (run ${plan.runId}, ${arn})`, { cause: signal.reason });
      }
      if (Date.now() > deadline) throw new RunFailedError(`run ${plan.runId} still running after ${opts.timeoutMs} ms (${arn})`, plan.runId, null);
      await sleep(poll, signal);
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
      described = d;
      status = d.status ?? 'RUNNING';
      // Progress: completion markers written next to each shard.
      let markers = 0;
      for (const s of plan.stages) markers += (await store.list(keys.stagePrefix(plan.runId, s.index))).filter((k) => k.includes('/metrics-')).length;
      for (; done < markers; done++) progress.partitionDone();
    }
  } finally {
    progress.stop();
  }
  if (status !== 'SUCCEEDED') {
    let summary: RunSummary | null = null;
    try {
      summary = await getJson<RunSummary>(store, keys.failure(plan.runId));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    const d = described as { error?: string; cause?: string } | null;
    const parts = summary?.failedPartitions?.map((f) => `stage ${f.stage}: partitions ${f.partitions.join(', ')}`).join('; ');
    throw new RunFailedError(
      `run ${plan.runId} ${status.toLowerCase()}: ${d?.error ?? summary?.error ?? 'unknown error'}${d?.cause ? ` (${d.cause.slice(0, 500)})` : ''}${parts ? `; failed ${parts}` : ''}`,
      plan.runId, summary,
    );
  }
  return getJson<RunSummary>(store, keys.summary(plan.runId));
}

/** Where a run without an output committed its result. */
export function resultUri(opts: AwsRunnerOptions, runId: string): string {
  return `s3://${opts.workBucket}/${keys.output(runId)}`;
}

/** Waits `ms`, or less when `signal` aborts (the caller checks it next). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); };
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

  constructor(readonly aws: AwsRunnerOptions, readonly options: ResolvedEmbeddedOptions) {
    this.local = new EmbeddedRunner(options);
  }

  private async run(plan: PlanNode, output: RunOutput | null, ctx: ActionContext): Promise<RunSummary> {
    const summary = await runOnAws(plan, this.aws, output, ctx.signal);
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
    // Always with the stages: they are what runs.
    return describePlan(optimized, this.options, this.aws.targetPartitionBytes ?? 128 << 20);
  }
}

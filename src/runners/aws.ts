// The AWS runner: an action plans the run here, writes the plan to the work bucket, starts a Step
// Functions execution (the same generic state machine in AWS and in the local harness), shows
// progress from the shards' completion markers, and reads the committed result.
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { DataFrame } from '../dataframe.ts';
import { keys, planRun, type RunOutput, type RunPlan, type RunSummary } from '../aws/run.ts';
import { getJson, NotFoundError, putJson, S3Store, type ObjectStore } from '../io/store/index.ts';
import { startProgress } from '../progress.ts';
import { udfsOf } from '../physical.ts';

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

/** Runs `df` on the state machine; resolves with the run's summary once its output is committed. */
export async function runOnAws(df: DataFrame<object>, opts: AwsRunnerOptions, output: RunOutput | null): Promise<RunSummary> {
  const storeOpts: { targetPartitionBytes?: number } = {};
  if (opts.targetPartitionBytes) storeOpts.targetPartitionBytes = opts.targetPartitionBytes;
  const plan = planRun(df, { pipeline: null, output, ...storeOpts });
  const mods = opts.pipeline ?? modulesOf(plan);
  plan.pipeline = Array.isArray(mods) && mods.length === 0 ? null : mods;
  const store: ObjectStore = new S3Store(opts.workBucket);
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
      if (Date.now() > deadline) throw new RunFailedError(`run ${plan.runId} still running after ${opts.timeoutMs} ms (${arn})`, plan.runId, null);
      await new Promise((r) => setTimeout(r, poll));
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

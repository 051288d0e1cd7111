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
  const region = sfnConfig.region as string;
  const sfnEndpoint = opts.endpoint ?? `https://states.${region}.amazonaws.com`;
  const s3Endpoint = process.env['AWS_ENDPOINT_URL_S3'] ?? process.env['AWS_ENDPOINT_URL'] ?? `https://s3.${region}.amazonaws.com`;
  // A bare "connect ECONNREFUSED 127.0.0.1:42751" says neither which run nor which service went away.
  const lost = (what: string, endpoint: string, e: unknown): RunFailedError =>
    Object.assign(new RunFailedError(`run ${plan.runId}: ${what} (endpoint ${endpoint}): ${e instanceof Error ? e.message : String(e)}`, plan.runId, null), { cause: e });
  let arn: string;
  try {
    const started = await sfn.send(new StartExecutionCommand({
      stateMachineArn: opts.stateMachineArn,
      name: plan.runId,
      input: JSON.stringify({ runId: plan.runId, workBucket: opts.workBucket, output: output?.uri ?? null }),
    }));
    arn = started.executionArn!;
  } catch (e) {
    throw lost(`could not start the execution on ${opts.stateMachineArn}`, sfnEndpoint, e);
  }

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
      let d;
      try {
        d = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
      } catch (e) {
        throw lost(`lost the Step Functions endpoint while waiting for execution ${arn}`, sfnEndpoint, e);
      }
      described = d;
      status = d.status ?? 'RUNNING';
      // Progress: completion markers written next to each shard.
      let markers = 0;
      try {
        for (const s of plan.stages) markers += (await store.list(keys.stagePrefix(plan.runId, s.index))).filter((k) => k.includes('/metrics-')).length;
      } catch (e) {
        throw lost(`lost the work bucket s3://${opts.workBucket} while waiting for execution ${arn}`, s3Endpoint, e);
      }
      for (; done < markers; done++) progress.partitionDone();
    }
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
      if (!(e instanceof NotFoundError)) unread = `; its failure record was not readable from s3://${opts.workBucket} (endpoint ${s3Endpoint}): ${e instanceof Error ? e.message : String(e)}`;
    }
    const d = described as { error?: string; cause?: string } | null;
    const parts = summary?.failedPartitions?.map((f) => `stage ${f.stage}: partitions ${f.partitions.join(', ')}`).join('; ');
    // The failed partition's own error (UDF, partition, input, message) when its worker recorded one.
    const reason = summary?.partitionErrors?.length
      ? summary.error
      : `${d?.error ?? summary?.error ?? 'unknown error'}${d?.cause ? ` (${causeText(d.cause)})` : ''}`;
    throw new RunFailedError(
      `run ${plan.runId} ${status.toLowerCase()}: ${reason}${parts ? `; failed ${parts}` : ''}${unread}`,
      plan.runId, summary,
    );
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

/** Where a run without an output committed its result. */
export function resultUri(opts: AwsRunnerOptions, runId: string): string {
  return `s3://${opts.workBucket}/${keys.output(runId)}`;
}

// A local S3 server, an input folder and one-stage runs whose stage partitions all ran, for tests of
// what Finalize and the runner do with staged results (aws-finalize-s3, aws-inline-result).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { col, readParquet, setRunner } from 'fanout';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import { planRun, preparePlan, runStagePartition, type RunPlan } from '../src/aws/run.ts';
import type { S3Store } from '../src/io/store/index.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir } from './helpers.ts';

const pipelineModule = new URL('./fixtures/udfs.ts', import.meta.url).href;

export interface StagedS3 {
  server: S3Server;
  /** The input folder `writeInput` filled. */
  input: string;
}

/** Starts the server with `buckets` (and points the SDK at it) before the file's tests; stops it after. */
export function useStagedS3(buckets: string[], writeInput: (dir: string) => Promise<void>): StagedS3 {
  const ctx = {} as StagedS3;
  const saved: Record<string, string | undefined> = {};
  before(async () => {
    ctx.server = await startS3Server({ buckets });
    for (const [k, v] of Object.entries({
      AWS_ENDPOINT_URL_S3: ctx.server.endpoint,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    })) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    ctx.input = tempDir();
    await writeInput(ctx.input);
    setRunner('native', { workers: false });
  });
  after(async () => {
    await ctx.server.stop();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  return ctx;
}

/** A one-stage run (one partition per row group of the input, `y` = double(x)) whose stage partitions all ran. */
export async function stagedRun(ctx: StagedS3, store: S3Store, work: string, output: string | null, partitions: number): Promise<RunPlan> {
  const df = readParquet(ctx.input)
    .withColumn('y', double(col('x')))
    .select('id', 'y');
  const opts: Parameters<typeof planRun>[1] = { pipeline: pipelineModule, targetPartitionBytes: 1 };
  if (output) opts.output = { uri: output, format: 'parquet', mode: 'overwrite' };
  const plan = planRun(df.plan, opts);
  assert.equal(plan.sources.length, partitions);
  await preparePlan(store, plan, work);
  for (let p = 0; p < plan.sources.length; p++) await runStagePartition(store, plan.runId, 0, p);
  return plan;
}

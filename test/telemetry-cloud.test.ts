// OpenTelemetry through the local cloud: an AWS run is ONE trace from the runner through the state
// machine into the Plan, Stage and Finalize Lambdas and the ECS tasks; a run started without a
// caller (as the S3 trigger starts one) gets its root span from the Plan handler.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { putS3Object } from '../src/io/s3/index.ts';
import pipeline, { cpuOnly } from './fixtures/cloud-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';
import { OtlpReceiver, type ReceivedSpan } from './telemetry-helpers.ts';

let cloud: LocalCloud;
let receiver: OtlpReceiver;
let input: string;
const failingPipeline = join(import.meta.dirname, 'fixtures', 'cloud-failing-pipeline.ts');

before(async () => {
  receiver = await OtlpReceiver.start();
  // Before the harness starts: its Lambda threads and ECS children take the environment from here.
  process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
  process.env['OTEL_SERVICE_NAME'] = 'fanout-cloud-test';
  process.env['FANOUT_TEST_FAIL_ID'] = '1234'; // cpuOnly fails on this row, always
  // A second pipeline the deployment may plan (an S3-triggered run of it fails in its stage).
  process.env['FANOUT_PIPELINE_ALLOW'] = failingPipeline;
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
  const local = tempDir();
  for (let i = 0; i < 2; i++) {
    const f = join(local, `part-${i}.parquet`);
    await writeSample(f, i * 2000, 2000, 1000);
    await putS3Object(`s3://${cloud.inputBucket}/otel/part-${i}.parquet`, readFileSync(f));
  }
  input = `s3://${cloud.inputBucket}/otel/`;
});

after(async () => {
  delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  delete process.env['FANOUT_PIPELINE_ALLOW'];
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
  await receiver?.stop();
});

function tree(spans: ReceivedSpan[], runId: string): { mine: ReceivedSpan[]; byName: (n: string) => ReceivedSpan[] } {
  const run = spans.filter((s) => s.name === 'fanout.run' && s.attrs['fanout.run_id'] === runId);
  assert.equal(run.length, 1, `one run span for ${runId}`);
  const mine = spans.filter((s) => s.traceId === run[0]!.traceId);
  return { mine, byName: (n) => mine.filter((s) => s.name === n) };
}

function checkShape(mine: ReceivedSpan[], byName: (n: string) => ReceivedSpan[], partitions: number): void {
  const ids = new Map(mine.map((s) => [s.spanId, s]));
  const run = byName('fanout.run')[0]!;
  assert.equal(run.parentSpanId, '');
  for (const n of ['fanout.plan', 'fanout.finalize']) {
    assert.equal(byName(n).length, 1, n);
    assert.equal(byName(n)[0]!.parentSpanId, run.spanId, `${n} is the run's child`);
  }
  const stages = byName('fanout.stage');
  assert.deepEqual(stages.map((s) => s.attrs['fanout.stage']).sort(), [0, 1]);
  for (const s of stages) assert.equal(s.parentSpanId, run.spanId);
  assert.deepEqual(stages.map((s) => s.attrs['fanout.executor']).sort(), ['ecs-gpu', 'lambda']);
  const parts = byName('fanout.partition');
  assert.equal(parts.length, partitions * 2, 'each partition of each stage');
  for (const p of parts) {
    const task = ids.get(p.parentSpanId);
    assert.equal(task?.name, 'fanout.stage.task');
    const stage = ids.get(task!.parentSpanId);
    assert.equal(stage?.name, 'fanout.stage', 'stage -> task -> partition');
    assert.equal(stage?.attrs['fanout.stage'], p.attrs['fanout.stage']);
  }
  const first = parts.filter((p) => p.attrs['fanout.stage'] === 0);
  for (const p of first) {
    const files = (p.attrs['fanout.source.files'] as string[] | undefined) ?? [String(p.attrs['fanout.source.file'])];
    assert.ok(files.length && files.every((f) => f.startsWith(input)), `stage 0 partitions name their input files: ${JSON.stringify(p.attrs)}`);
  }
  for (const p of parts.filter((x) => x.attrs['fanout.stage'] === 1)) assert.match(String(p.attrs['fanout.source.shard']), /stage-0+\/part-\d+\.arrow$/);
  const udfs = byName('fanout.udf');
  for (const u of udfs) assert.equal(ids.get(u.parentSpanId)?.name, 'fanout.partition');
  const label = udfs.filter((u) => u.attrs['fanout.udf.name'] === 'cloud.cpuLabel');
  const score = udfs.filter((u) => u.attrs['fanout.udf.name'] === 'cloud.gpuScore');
  assert.equal(label.length, partitions);
  assert.equal(score.length, partitions);
  assert.equal(
    label.reduce((n, u) => n + Number(u.attrs['fanout.udf.rows_in']), 0),
    score.reduce((n, u) => n + Number(u.attrs['fanout.udf.rows_in']), 0),
  );
  const services = new Set(mine.map((s) => s.service));
  assert.deepEqual([...services], ['fanout-cloud-test']);
}

describe('OpenTelemetry through the local cloud', () => {
  it('a runner-started AWS run is one trace: runner, plan, stages (Lambda and ECS), partitions, UDFs, finalize', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const df = await pipeline({ uri: input }).collect();
    const rows = (await df.toRows()).length;
    assert.ok(rows > 0);
    const spans = receiver.spans();
    const runs = spans.filter((s) => s.name === 'fanout.run' && s.attrs['fanout.runner'] === 'aws');
    assert.equal(runs.length, 1);
    const runId = String(runs[0]!.attrs['fanout.run_id']);
    const { mine, byName } = tree(spans, runId);
    checkShape(mine, byName, 4);
    assert.equal(byName('fanout.finalize')[0]!.attrs['fanout.rows_out'], rows);
    // Metrics from the Lambdas too: the UDF calls of every partition.
    const calls = receiver
      .points()
      .filter((p) => p.name === 'fanout.udf.calls' && p.attrs['fanout.udf.name'] === 'cloud.cpuLabel')
      .reduce((n, p) => n + p.value, 0);
    assert.equal(calls, Number(df.metrics['cloud.cpuLabel']!.calls));
  });

  it('a run started without a caller (the S3 trigger) gets its root span from the Plan handler', async () => {
    receiver.bodies.length = 0;
    const runId = 'otel-triggered-1';
    const out = `s3://${cloud.inputBucket}/otel-out/`;
    const d = await startWithoutCaller({ runId, input: { uri: input }, output: out });
    assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);
    const spans = receiver.spans();
    const { mine, byName } = tree(spans, runId);
    assert.equal(byName('fanout.run')[0]!.attrs['fanout.trigger'], 'plan');
    // The default partitioning of the deployment: one partition per file here.
    const parts = byName('fanout.partition').filter((p) => p.attrs['fanout.stage'] === 0).length;
    assert.ok(parts >= 1);
    checkShape(mine, byName, parts);
  });

  it('a failed run: the failing partition, the stage and the run have error status, in one trace', async () => {
    receiver.bodies.length = 0;
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    await assert.rejects(cpuOnly({ uri: input }).collect(), /row 1234 always fails/);
    const spans = receiver.spans();
    const run = spans.find((s) => s.name === 'fanout.run' && s.attrs['fanout.runner'] === 'aws');
    assert.ok(run, 'the runner exported its run span');
    assert.equal(run.status.code, 2);
    const runId = String(run.attrs['fanout.run_id']);
    const { byName } = tree(spans, runId);
    const failed = byName('fanout.partition').filter((p) => p.status.code === 2);
    // The state machine retries a failed Stage task: each attempt is a failed partition span.
    assert.ok(failed.length >= 1);
    for (const f of failed) {
      assert.match(String(f.status.message), /row 1234 always fails/);
      assert.ok(String(f.attrs['fanout.source.file']).startsWith(input));
      assert.equal(f.attrs['fanout.partition'], failed[0]!.attrs['fanout.partition']);
    }
    // A failing stage fails the execution inside its Map (redrive re-enters it), so no Failure step
    // runs: the runner records the failure and emits the stage spans under its run span.
    assert.equal(byName('fanout.failure').length, 0);
    const stage = byName('fanout.stage');
    assert.equal(stage.length, 1);
    assert.equal(stage[0]!.status.code, 2);
    assert.equal(stage[0]!.parentSpanId, run.spanId);
    assert.equal(byName('fanout.finalize').length, 0);
  });

  it('an S3-triggered run whose stage fails is still one trace: its run and stage spans come from the failing Stage invocation', async () => {
    receiver.bodies.length = 0;
    const runId = 'otel-triggered-fails-1';
    // What the S3 trigger's rule sends (cdk/trigger.ts), naming the deployment's failing pipeline.
    const d = await startWithoutCaller({
      runId,
      input: { uri: `${input}part-0.parquet`, literal: true },
      output: `s3://${cloud.inputBucket}/otel-out-fails/`,
      pipeline: failingPipeline,
    });
    // The stage fails inside the Stages Map: no Failure step, no runner.
    assert.equal(d.status, 'FAILED');
    assert.match(String(d.cause), /row 1234 always fails/);
    const spans = receiver.spans();
    const { mine, byName } = tree(spans, runId);
    const run = byName('fanout.run')[0]!;
    assert.equal(run.parentSpanId, '');
    assert.equal(run.attrs['fanout.trigger'], 'plan');
    assert.equal(run.status.code, 2, 'the run has error status');
    assert.match(String(run.status.message), /row 1234 always fails/);
    assert.equal(byName('fanout.plan').length, 1);
    assert.equal(byName('fanout.plan')[0]!.parentSpanId, run.spanId);
    const stages = byName('fanout.stage');
    assert.equal(stages.length, 1, 'one stage span (the pipeline has one stage), emitted once');
    assert.equal(stages[0]!.parentSpanId, run.spanId);
    assert.equal(stages[0]!.status.code, 2);
    assert.equal(stages[0]!.attrs['fanout.run_id'], runId);
    const ids = new Map(mine.map((s) => [s.spanId, s]));
    const failed = byName('fanout.partition').filter((p) => p.status.code === 2);
    assert.equal(failed.length, 1, 'the failing partition (a UDF error is not retried)');
    assert.match(String(failed[0]!.status.message), /row 1234 always fails/);
    const task = ids.get(failed[0]!.parentSpanId);
    assert.equal(task?.name, 'fanout.stage.task');
    assert.equal(ids.get(task!.parentSpanId)?.spanId, stages[0]!.spanId, 'stage -> task -> partition');
    assert.ok(stages[0]!.startMs <= failed[0]!.startMs + 1 && stages[0]!.endMs >= failed[0]!.startMs, 'the stage span covers its failed partition');
    for (const s of byName('fanout.partition')) assert.ok(ids.has(s.parentSpanId), `${s.name} hangs in the trace`);
    assert.equal(byName('fanout.finalize').length + byName('fanout.failure').length, 0);
  });
});

/** Starts an execution as the S3 trigger does (no runner) and waits for its end. */
async function startWithoutCaller(input: Record<string, unknown>): Promise<{ status?: string; error?: string; cause?: string }> {
  const sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  try {
    const started = await sfn.send(new StartExecutionCommand({ stateMachineArn: cloud.stateMachineArn, input: JSON.stringify(input) }));
    const deadline = Date.now() + 120_000;
    for (;;) {
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: started.executionArn! }));
      if (d.status !== 'RUNNING') return d;
      assert.ok(Date.now() < deadline, 'execution still running after 120 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    sfn.destroy();
  }
}

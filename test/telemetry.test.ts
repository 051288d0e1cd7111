// OpenTelemetry export of an embedded run (worker threads) to a local OTLP/HTTP receiver, and that
// with OTEL_* unset nothing is sent and the SDK is not even loaded.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, DataType, flushTelemetry, func, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { double, tagged } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';
import { derivedTraceparent, telemetryEnabled } from '../src/telemetry/index.ts';
import { OtlpReceiver } from './telemetry-helpers.ts';
import { ECS_TASK_RETRIES, LAMBDA_STAGE_RETRIES, startPlannedTrace, tracePartitions, type RetryPolicy } from '../src/telemetry/aws.ts';
import { keys, planRun } from '../src/aws/run.ts';
import { buildStateMachineDefinition, ECS_RUN_TASK_SYNC, LAMBDA_INVOKE, type AslState } from '../src/aws/state-machine.ts';
import { LocalStore, putJson } from '../src/io/store/index.ts';
import { UdfError } from '../src/udf/errors.ts';

let receiver: OtlpReceiver;
const dir = tempDir();
const files = [join(dir, 'a.parquet'), join(dir, 'b.parquet')];

before(async () => {
  // Export only when flushed (the SDK loads on this file's first traced action and reads these then):
  // what reaches the receiver before a flush is what an action waited for.
  process.env['OTEL_BSP_SCHEDULE_DELAY'] = '600000';
  process.env['OTEL_METRIC_EXPORT_INTERVAL'] = '600000';
  receiver = await OtlpReceiver.start();
  await writeSample(files[0]!, 0, 2000, 500);
  await writeSample(files[1]!, 2000, 2000, 500);
});

after(async () => {
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_METRIC_EXPORT_INTERVAL']) delete process.env[k];
  setRunner('native');
  await shutdownWorkers();
  await receiver.stop();
});

describe('OpenTelemetry', () => {
  it('is switched by the standard OTEL_* variables', () => {
    assert.equal(telemetryEnabled({}), false);
    assert.equal(telemetryEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
    assert.equal(telemetryEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }), true);
    assert.equal(telemetryEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'TRUE' }), false);
    assert.equal(telemetryEnabled({ OTEL_TRACES_EXPORTER: 'none' }), false);
    assert.equal(telemetryEnabled({ OTEL_TRACES_EXPORTER: 'console' }), true);
    // A stage span's id is the same in every process that derives it, and differs per stage.
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    assert.equal(derivedTraceparent(tp, 'stage-0'), derivedTraceparent(tp, 'stage-0'));
    assert.notEqual(derivedTraceparent(tp, 'stage-0'), derivedTraceparent(tp, 'stage-1'));
    assert.match(derivedTraceparent(tp, 'stage-0')!, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    assert.equal(derivedTraceparent('garbage', 'stage-0'), null);
  });

  it('an embedded run on worker threads is one trace: run -> stage -> partition -> UDF, with attributes and metrics', async () => {
    process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
    process.env['OTEL_SERVICE_NAME'] = 'fanout-test';
    setRunner('native', { workers: true, targetPartitionBytes: 1 });
    const df = await readParquet(join(dir, '*.parquet'))
      .withColumn('t', tagged(col('category')))
      .withColumn('d', double(col('x')))
      .collect();
    assert.equal((await df.toRows()).length, 4000);
    // The action did not wait for an OTLP export (a fixed cost per action): nothing was sent yet.
    assert.equal(receiver.bodies.length, 0, "no export on the action's path");
    // flushTelemetry() (or shutdownWorkers(), or the process's exit) sends what was recorded.
    await flushTelemetry();
    const spans = receiver.spans().filter((s) => s.attrs['fanout.runner'] === 'embedded' || s.name !== 'fanout.run');
    const run = spans.filter((s) => s.name === 'fanout.run');
    assert.equal(run.length, 1, 'one run span');
    assert.equal(run[0]!.service, 'fanout-test');
    assert.equal(run[0]!.parentSpanId, '');
    const traceIds = new Set(spans.map((s) => s.traceId));
    assert.deepEqual([...traceIds], [run[0]!.traceId], 'one trace id');
    const stage = spans.filter((s) => s.name === 'fanout.stage');
    assert.equal(stage.length, 1);
    assert.equal(stage[0]!.parentSpanId, run[0]!.spanId);
    const parts = spans.filter((s) => s.name === 'fanout.partition');
    assert.ok(parts.length >= 2, `several partitions (got ${parts.length})`);
    assert.equal(stage[0]!.attrs['fanout.partitions'], parts.length);
    for (const p of parts) {
      assert.equal(p.parentSpanId, stage[0]!.spanId);
      assert.ok(files.includes(String(p.attrs['fanout.source.file'])), `partition names its file: ${JSON.stringify(p.attrs)}`);
      assert.ok(p.endMs >= p.startMs && p.startMs >= stage[0]!.startMs - 5);
    }
    assert.ok(
      parts.some((p) => Array.isArray(p.attrs['fanout.source.row_groups'])),
      'row-group slices name their row groups',
    );
    assert.equal(
      parts.reduce((n, p) => n + Number(p.attrs['fanout.rows_out']), 0),
      4000,
    );
    const udfs = spans.filter((s) => s.name === 'fanout.udf');
    assert.equal(udfs.length, parts.length * 2, 'one span per UDF per partition, never per row or batch');
    const byId = new Map(parts.map((p) => [p.spanId, p]));
    for (const u of udfs) assert.ok(byId.has(u.parentSpanId), 'UDF spans hang under their partition');
    const tagSpans = udfs.filter((u) => u.attrs['fanout.udf.name'] === 'fixtures.tagged');
    assert.equal(
      tagSpans.reduce((n, u) => n + Number(u.attrs['fanout.udf.rows_in']), 0),
      4000,
    );
    assert.equal(
      tagSpans.reduce((n, u) => n + Number(u.attrs['fanout.udf.counter.seen']), 0),
      4000,
    );
    for (const u of tagSpans) assert.equal(u.attrs['fanout.udf.errors'], 0);

    const points = receiver.points();
    const sum = (name: string, pred: (a: Record<string, unknown>) => boolean = () => true): number =>
      points.filter((p) => p.name === name && pred(p.attrs)).reduce((n, p) => n + p.value, 0);
    assert.equal(sum('fanout.partition.rows'), 4000);
    assert.equal(
      sum('fanout.udf.calls', (a) => a['fanout.udf.name'] === 'fixtures.tagged'),
      4000,
    );
    assert.equal(
      sum('fanout.udf.counter', (a) => a['fanout.udf.name'] === 'fixtures.tagged' && a['fanout.counter'] === 'seen'),
      4000,
    );
    assert.ok(points.some((p) => p.name === 'fanout.udf.duration'));
  });

  it('a failing partition gets error status with the message, and so does the run', async () => {
    process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
    receiver.bodies.length = 0;
    const boom = func(
      (x: number): number => {
        throw new Error(`boom at ${x >= 0 ? 'a row' : 'a negative row'}`);
      },
      { returnDtype: DataType.float64(), name: 'otel.boom' },
    );
    setRunner('native', { workers: false, targetPartitionBytes: 1 });
    await assert.rejects(
      readParquet(files[0]!)
        .withColumn('b', boom(col('x')))
        .collect(),
      /boom at/,
    );
    await shutdownWorkers(); // flushes the telemetry too
    const spans = receiver.spans();
    const failed = spans.filter((s) => s.name === 'fanout.partition' && s.status.code === 2);
    assert.equal(failed.length, 1);
    assert.match(String(failed[0]!.status.message), /boom at a row/);
    const udf = spans.find((s) => s.name === 'fanout.udf' && s.parentSpanId === failed[0]!.spanId);
    assert.equal(udf?.attrs['fanout.udf.name'], 'otel.boom');
    assert.ok(Number(udf?.attrs['fanout.udf.errors']) >= 1);
    assert.equal(udf?.status.code, 2);
    const run = spans.find((s) => s.name === 'fanout.run');
    assert.equal(run?.status.code, 2);
    assert.equal(run?.traceId, failed[0]!.traceId);
  });

  it('with OTEL_* unset nothing is sent and the SDK is not loaded', async () => {
    receiver.bodies.length = 0;
    const script = [
      "import { createRequire } from 'node:module';",
      "import { col, DataType, flushTelemetry, func, readParquet, setRunner, shutdownWorkers } from 'fanout';",
      `import { double } from ${JSON.stringify(join(import.meta.dirname, 'fixtures', 'udfs.ts'))};`,
      "setRunner('native', { workers: true, targetPartitionBytes: 1 });",
      `const rows = await readParquet(${JSON.stringify(files[0])}).withColumn('d', double(col('x'))).toRows();`,
      'await shutdownWorkers();',
      "const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@opentelemetry'));",
      'console.log(JSON.stringify({ rows: rows.length, loaded }));',
    ].join('\n');
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('OTEL_')) delete env[k];
    delete env['NODE_TEST_CONTEXT']; // the child is a plain script, not a test file
    // The receiver's URL is in an unrelated variable only: an accidental default would not find it anyway.
    // Asynchronously: the receiver in this process must be able to answer the child.
    const run = promisify(execFile);
    const { stdout: out } = await run(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], {
      env,
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { rows: number; loaded: string[] };
    assert.equal(r.rows, 2000);
    assert.deepEqual(r.loaded, []);
    assert.equal(receiver.bodies.length, 0);
    // The same check has teeth: with an endpoint set, the SDK is loaded.
    const { stdout: on } = await run(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
    });
    assert.ok((JSON.parse(on.trim().split('\n').pop()!) as { loaded: string[] }).loaded.length > 0);
    assert.ok(receiver.bodies.length > 0);
  });

  it('a program that simply ends still exports what its actions recorded (no flush, no shutdownWorkers)', async () => {
    receiver.bodies.length = 0;
    const script = [
      "import { col, readParquet, setRunner } from 'fanout';",
      `import { double } from ${JSON.stringify(join(import.meta.dirname, 'fixtures', 'udfs.ts'))};`,
      "setRunner('native', { workers: false, targetPartitionBytes: 1 });",
      `const rows = await readParquet(${JSON.stringify(files[0])}).withColumn('d', double(col('x'))).toRows();`,
      'console.log(JSON.stringify({ rows: rows.length }));',
    ].join('\n');
    const env: NodeJS.ProcessEnv = { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'fanout-exit-test' };
    delete env['NODE_TEST_CONTEXT'];
    // Far beyond the script's life: only the exit hook can send (the SDK's timers are unref'd).
    env['OTEL_BSP_SCHEDULE_DELAY'] = '600000';
    env['OTEL_METRIC_EXPORT_INTERVAL'] = '600000';
    const { stdout } = await promisify(execFile)(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], {
      env,
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
    });
    assert.equal((JSON.parse(stdout.trim().split('\n').pop()!) as { rows: number }).rows, 2000);
    const spans = receiver.spans().filter((s) => s.service === 'fanout-exit-test');
    const run = spans.filter((s) => s.name === 'fanout.run');
    assert.equal(run.length, 1, 'the run span reached the receiver at exit');
    assert.equal(
      spans.filter((s) => s.name === 'fanout.partition').reduce((n, p) => n + Number(p.attrs['fanout.rows_out']), 0),
      2000,
    );
    assert.equal(
      receiver
        .points()
        .filter((p) => p.name === 'fanout.partition.rows')
        .reduce((n, p) => n + p.value, 0),
      2000,
      'and its metrics',
    );
  });

  it("an S3-triggered run's Stage invocation that fails for the last time emits the run and stage spans, once", async () => {
    process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
    receiver.bodies.length = 0;
    const store = new LocalStore(tempDir());
    const planned = async (runId: string, tolerance?: { toleratedFailureCount: number }) => {
      const plan = planRun(readParquet(files[0]!).withColumn('d', double(col('x'))).plan, { pipeline: null, runId, ...(tolerance ? { tolerance } : {}) });
      startPlannedTrace(plan); // as the Plan handler does for a run nobody started (the S3 trigger)
      await putJson(store, keys.plan(runId), plan);
      return plan;
    };
    const attempt = (runId: string, error: Error, policy: RetryPolicy = LAMBDA_STAGE_RETRIES) =>
      assert.rejects(
        tracePartitions(store, runId, 0, [0, 1], Date.now(), () => Promise.reject(error), {}, policy),
        (e) => e === error,
      );
    const named = (runId: string, name: string) => receiver.spans().filter((s) => s.name === name && s.attrs['fanout.run_id'] === runId);

    // A handler error the state machine retries (States.TaskFailed, twice): only the third failure ends the run.
    await planned('otel-unit-flaky');
    const flaky = new Error('flaky read');
    await attempt('otel-unit-flaky', flaky);
    await attempt('otel-unit-flaky', flaky);
    assert.equal(named('otel-unit-flaky', 'fanout.run').length, 0, 'a retried failure does not end the run');
    assert.equal(named('otel-unit-flaky', 'fanout.partition').length, 2, 'each attempt has its failed partition span');
    await attempt('otel-unit-flaky', flaky);
    const run = named('otel-unit-flaky', 'fanout.run');
    assert.equal(run.length, 1);
    assert.equal(run[0]!.parentSpanId, '');
    assert.equal(run[0]!.status.code, 2);
    assert.match(String(run[0]!.status.message), /flaky read/);
    const stage = named('otel-unit-flaky', 'fanout.stage');
    assert.equal(stage.length, 1);
    assert.equal(stage[0]!.parentSpanId, run[0]!.spanId);
    assert.equal(stage[0]!.status.code, 2);
    const task = named('otel-unit-flaky', 'fanout.stage.task');
    assert.ok(task.length === 3 && task.every((t) => t.parentSpanId === stage[0]!.spanId && t.traceId === run[0]!.traceId));
    // Another invocation failing too (a partition beside it, a redrive): the spans stay once.
    await attempt('otel-unit-flaky', flaky);
    assert.equal(named('otel-unit-flaky', 'fanout.run').length, 1);
    assert.equal(named('otel-unit-flaky', 'fanout.stage').length, 1);

    // A UDF's error is not retried: its first failure ends the run.
    await planned('otel-unit-udf');
    await attempt('otel-unit-udf', new UdfError('bad row', 'otel.boom'));
    assert.equal(named('otel-unit-udf', 'fanout.run').length, 1);
    // An ECS task is retried once, whatever failed in it.
    await planned('otel-unit-ecs');
    const gpu = new UdfError('bad row', 'otel.gpu');
    await attempt('otel-unit-ecs', gpu, ECS_TASK_RETRIES);
    assert.equal(named('otel-unit-ecs', 'fanout.run').length, 0);
    await attempt('otel-unit-ecs', gpu, ECS_TASK_RETRIES);
    assert.equal(named('otel-unit-ecs', 'fanout.run').length, 1);
    // A run that tolerates failed partitions may still succeed: Finalize emits its spans then.
    await planned('otel-unit-tolerant', { toleratedFailureCount: 1 });
    await attempt('otel-unit-tolerant', new UdfError('bad row', 'otel.boom'));
    assert.equal(named('otel-unit-tolerant', 'fanout.run').length, 0);
  });

  it("the retry policies match the state machine's Retry lists", () => {
    const fargate = {
      clusterArn: 'arn:aws:ecs:us-east-1:1:cluster/c',
      containerName: 'w',
      subnets: ['s'],
      securityGroups: ['g'],
      assignPublicIp: false,
      taskDefinitions: { small: 'arn:aws:ecs:us-east-1:1:task-definition/f:1' },
      timeoutSeconds: 600,
    };
    const ecs = {
      clusterArn: 'arn:aws:ecs:us-east-1:1:cluster/c',
      taskDefinitionArn: 'arn:aws:ecs:us-east-1:1:task-definition/g:1',
      containerName: 'w',
      subnets: ['s'],
      securityGroups: ['g'],
    };
    const fn = (n: string) => `arn:aws:lambda:us-east-1:1:function:${n}`;
    const seen = { stage: 0, ecs: 0 };
    for (const distributed of [false, true]) {
      const def = buildStateMachineDefinition({
        planFunctionArn: fn('plan'),
        stageFunctionArn: fn('stage'),
        finalizeFunctionArn: fn('finalize'),
        failureFunctionArn: fn('failure'),
        ecs,
        fargate,
        distributed,
      });
      const walk = (v: unknown): void => {
        if (Array.isArray(v)) {
          for (const x of v) walk(x);
          return;
        }
        if (!v || typeof v !== 'object') return;
        const st = v as AslState & Record<string, unknown>;
        if (st.Type === 'Task' && st.Retry?.some((r) => r.ErrorEquals.includes('States.TaskFailed'))) {
          const retries = st.Retry.find((r) => r.ErrorEquals.includes('States.TaskFailed'))!.MaxAttempts ?? 3;
          const unretried = st.Retry.filter((r) => r.MaxAttempts === 0).flatMap((r) => r.ErrorEquals);
          if (st.Resource === LAMBDA_INVOKE) {
            seen.stage++;
            assert.equal(retries + 1, LAMBDA_STAGE_RETRIES.attempts, 'RunPartition attempts');
            for (const e of LAMBDA_STAGE_RETRIES.unretried!) assert.ok(unretried.includes(e), `${e} is not retried`);
          } else if (String(st.Resource).startsWith(ECS_RUN_TASK_SYNC.replace('.sync', ''))) {
            seen.ecs++;
            assert.equal(retries + 1, ECS_TASK_RETRIES.attempts, `${String(st.Resource)} attempts`);
            assert.ok(!st.Retry.some((r) => r.MaxAttempts === 0 && !r.ErrorEquals.includes('States.Timeout')), 'an ECS task retries every failure');
          } else assert.fail(`a Task state retries States.TaskFailed that no policy covers: ${String(st.Resource)}`);
        }
        for (const x of Object.values(st)) walk(x);
      };
      walk(def);
    }
    assert.ok(seen.stage >= 2 && seen.ecs >= 2, JSON.stringify(seen));
  });
});

// Issue 8, security items 1-3: an execution input (or a plan.json in the work bucket) never chooses
// the code a deployment imports or where it writes; run ids cannot leave runs/<id>/; the harness's S3
// server keeps every key inside its directory; an uploaded key's glob characters are not expanded.
// The state-machine cases drive the offline harness through the Step Functions API.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { CopyObjectCommand, DeleteObjectsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { col, readCsv, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { startEventBridgeBridge, type LocalRule } from '../localstack/eventbridge.ts';
import { objectCreatedPattern } from '../cdk/fanout-pipeline.ts';
import pipeline from '../examples/pipeline.ts';
import { checkOutput, handleEcsTask, handleFailure, handleFinalize, handlePlan, handleStage, setStoreFactory } from '../src/aws/handlers.ts';
import { checkRunId, keys, newRunId, planRun, preparePlan, runStagePartition } from '../src/aws/run.ts';
import { LocalStore, putJson, S3Store } from '../src/io/store/index.ts';
import { getS3ObjectOrNull, putS3Object, s3Client } from '../src/io/s3/index.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'pipeline.ts');
const BAD_IDS = ['a/../../b', '../x', 'a b', '', 'x'.repeat(81), 'a.b', 'ü'];

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Runs `fn` with these environment variables (undefined: unset), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('run ids', () => {
  it('newRunId() and EventBridge event ids (UUIDs) are valid; anything that could change a path is not', () => {
    assert.doesNotThrow(() => checkRunId(newRunId()));
    assert.doesNotThrow(() => checkRunId('6a7e8f1c-1f2b-4c3d-9e8f-0a1b2c3d4e5f'));
    assert.doesNotThrow(() => checkRunId('x'.repeat(80)));
    for (const id of BAD_IDS) {
      assert.throws(
        () => checkRunId(id),
        (e: Error) => e.message.includes(`invalid run id ${JSON.stringify(id)}`),
        id,
      );
      assert.throws(() => keys.plan(id), /invalid run id/, `keys.plan(${id})`);
      assert.throws(() => keys.shard(id, 0, 0), /invalid run id/);
      assert.throws(() => keys.failure(id), /invalid run id/);
    }
    assert.throws(() => keys.shard('ok', -1, 0), /invalid stage -1/);
    assert.throws(() => keys.metrics('ok', 0, 1.5), /invalid partition 1.5/);
  });

  it('planRun refuses a bad run id', () => {
    const dir = tempDir();
    return writeSample(join(dir, 'a.parquet'), 0, 10, 10).then(() => {
      assert.throws(() => planRun(readParquet(dir).plan, { pipeline: null, runId: 'a/../../b' }), /invalid run id "a\/\.\.\/\.\.\/b"/);
    });
  });

  it('every handler refuses a bad run id, naming it', async () => {
    await withEnv({ FANOUT_WORK_BUCKET: 'fanout-work', FANOUT_PIPELINE: undefined, FANOUT_PIPELINE_ALLOW: undefined }, async () => {
      const id = 'a/../../b';
      const named = (e: Error): boolean => e.message.includes('invalid') && e.message.includes(JSON.stringify(id));
      await assert.rejects(() => handlePlan({ runId: id }), named);
      await assert.rejects(() => handleStage({ runId: id, stage: 0, partition: 0 }), named);
      await assert.rejects(() => handleFinalize({ runId: id }), named);
      await assert.rejects(() => handleFailure({ runId: id, error: 'x' }), named);
      await assert.rejects(
        () => handleEcsTask({ FANOUT_RUN_ID: id, FANOUT_WORK_BUCKET: 'fanout-work', FANOUT_STAGE: '0', FANOUT_SLOT: '0', FANOUT_SLOTS: '1' }),
        (e: Error) => named(e) && e.message.includes('FANOUT_RUN_ID'),
      );
      // A Failure after a Plan that had no run id: nothing to record, and nothing written as runs/null/.
      await assert.rejects(() => handleFailure({ runId: null as unknown as string, error: 'x' }), /invalid run id of the failed run null/);
    });
  });

  it('LocalStore refuses keys that resolve outside its root', async () => {
    const parent = tempDir();
    const store = new LocalStore(join(parent, 'store'));
    for (const key of ['../x', 'runs/a/../../../x', '/etc/passwd', '', '.']) {
      await assert.rejects(() => store.put(key, 'x'), /is not a path inside the store/, key);
      await assert.rejects(() => store.get(key), /is not a path inside the store/, key);
    }
    await store.put('runs/a/../b/ok.json', '{}'); // stays inside: allowed
    assert.deepEqual(filesUnder(parent), ['store/runs/b/ok.json']);
  });
});

describe('what a run may import and where it may write (handlers)', () => {
  it('output: under FANOUT_OUTPUT_PREFIX only, never with . or .. segments', () => {
    const env = { FANOUT_OUTPUT_PREFIX: 's3://out/results/, s3://other/x' };
    assert.equal(checkOutput('s3://out/results/run1/', 'test', env), 's3://out/results/run1/');
    assert.equal(checkOutput('s3://other/x/y', 'test', env), 's3://other/x/y');
    assert.equal(checkOutput(null, 'test', env), null);
    for (const bad of ['s3://out/results/', 's3://out/resultsx/a', 's3://work/runs/a/', 's3://out/other/', '/tmp/out', 's3://other/xy/z']) {
      assert.throws(
        () => checkOutput(bad, 'test', env),
        (e: Error) => e.message.includes(bad) && e.message.includes('FANOUT_OUTPUT_PREFIX'),
        bad,
      );
    }
    assert.throws(() => checkOutput('s3://out/results/../evil/', 'test', env), /'\.' or '\.\.' segment/);
    assert.throws(() => checkOutput('s3://any/a/../b', 'test', {}), /'\.' or '\.\.' segment/, 'even without a prefix');
    assert.equal(checkOutput('s3://any/where/', 'test', {}), 's3://any/where/', 'unset: IAM decides');
    assert.throws(() => checkOutput('s3://out/results/a/', 'test', { FANOUT_OUTPUT_PREFIX: '' }), /keeps results in its work bucket/);
  });

  it('a plan naming a data: module is refused where no deployment names the pipeline; nothing runs', async () => {
    const input = tempDir();
    await writeSample(join(input, 'a.parquet'), 0, 100, 100);
    const marker = join(tempDir(), 'pwned');
    const store = new LocalStore(tempDir());
    const plan = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, { pipeline: null, runId: 'planted' });
    for (const evil of [
      `data:text/javascript,import('node:fs').then((f) => f.writeFileSync(${JSON.stringify(marker)}, 'x'))`,
      'https://example.com/p.mjs',
      'some-package',
    ]) {
      plan.pipeline = [new URL('./fixtures/udfs.ts', import.meta.url).href, evil];
      await withEnv({ FANOUT_PIPELINE: undefined, FANOUT_PIPELINE_ALLOW: undefined }, async () => {
        // A fresh run id each time: plans are cached per process.
        const id = `planted-${Math.random().toString(36).slice(2, 8)}`;
        await putJson(store, keys.plan(id), { ...plan, runId: id });
        await assert.rejects(
          () => runStagePartition(store, id, 0, 0),
          (e: Error) => e.message.includes(`run ${id}: plan: pipeline module`) && e.message.includes('not a file path or file: URL'),
        );
      });
    }
    assert.equal(existsSync(marker), false);
  });

  it('a deployment imports only FANOUT_PIPELINE / FANOUT_PIPELINE_ALLOW, whatever the input says', async () => {
    const marker = join(tempDir(), 'pwned');
    const evil = `data:text/javascript,import('node:fs').then((f) => f.writeFileSync(${JSON.stringify(marker)}, 'x'))`;
    await withEnv({ FANOUT_PIPELINE: EXAMPLE, FANOUT_PIPELINE_ALLOW: undefined, FANOUT_WORK_BUCKET: 'fanout-work' }, async () => {
      await assert.rejects(
        () => handlePlan({ pipeline: evil, input: { uri: '/nonexistent' } }),
        (e: Error) => e.message.includes('this deployment imports only') && e.message.includes('FANOUT_PIPELINE'),
      );
      await assert.rejects(() => handlePlan({ pipeline: './test/fixtures/udfs.ts', input: {} }), /this deployment imports only/);
      await assert.rejects(
        () => handlePlan({ workBucket: 'another-bucket', input: {} }),
        /names work bucket "another-bucket", but this deployment's work bucket is 'fanout-work'/,
      );
    });
    await withEnv({ FANOUT_PIPELINE: undefined, FANOUT_PIPELINE_ALLOW: undefined, FANOUT_WORK_BUCKET: 'fanout-work' }, async () => {
      await assert.rejects(() => handlePlan({ pipeline: evil, input: {} }), /not a file path or file: URL/);
    });
    assert.equal(existsSync(marker), false);
  });
});

describe('FANOUT_PIPELINE_ALLOW', () => {
  it('an input may pick an allowed module; Plan imports it and records it, and workers import it too', async () => {
    const input = tempDir();
    await writeSample(join(input, 'a.parquet'), 0, 200, 100);
    const allowed = join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts');
    const work = tempDir();
    setStoreFactory(() => new LocalStore(work));
    try {
      await withEnv(
        { FANOUT_PIPELINE: EXAMPLE, FANOUT_PIPELINE_ALLOW: ` ${allowed} ,`, FANOUT_WORK_BUCKET: 'fanout-work', FANOUT_OUTPUT_PREFIX: undefined },
        async () => {
          const summary = await handlePlan({ runId: 'allowed-1', pipeline: allowed, input: { uri: join(input, 'a.parquet') } });
          assert.equal(summary.runId, 'allowed-1');
          const plan = JSON.parse(readFileSync(join(work, keys.plan('allowed-1')), 'utf8')) as { pipeline: string };
          assert.equal(plan.pipeline, pathToFileURL(allowed).href);
          const r = await handleStage({ runId: 'allowed-1', stage: 0, partition: 0 });
          assert.ok(r.rows > 0);
        },
      );
    } finally {
      setStoreFactory((b) => new S3Store(b));
    }
  });
});

describe('readParquet / readCsv { literal: true }', () => {
  it('locally, glob characters are part of the name', async () => {
    const dir = tempDir();
    await writeSample(join(dir, 'a.parquet'), 0, 10, 10);
    assert.equal(await readParquet(join(dir, '?.parquet')).count(), 10, 'a glob without literal');
    assert.throws(() => readParquet(join(dir, '?.parquet'), { literal: true }), /parquet file not found: .*\?\.parquet \(read literally/);
    assert.equal(await readParquet(join(dir, 'a.parquet'), { literal: true }).count(), 10);
  });
});

describe('the offline harness with malicious inputs (Step Functions API -> Plan Lambda ...)', () => {
  let cloud: LocalCloud;
  let sfn: SFNClient;
  let top: string;
  let s3Dir: string;
  let marker: string;
  let local: string;
  const uploaded = 'incoming/*.parquet';

  before(async () => {
    top = tempDir('fanout-sec-');
    s3Dir = join(top, 'data', 's3');
    marker = join(top, 'pwned');
    cloud = await startLocalCloud({ pipeline: EXAMPLE, s3Dir, lambdaConcurrency: 2, env: { FANOUT_OUTPUT_PREFIX: 's3://fanout-input/results/' } });
    sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    local = tempDir();
    await writeSample(join(local, 'mine.parquet'), 0, 300, 100);
    await writeSample(join(local, 'other.parquet'), 100_000, 500, 100);
    // Another tenant's file under the same prefix; it is there before the harness's EventBridge starts.
    await putS3Object(`s3://${cloud.inputBucket}/incoming/other.parquet`, readFileSync(join(local, 'other.parquet')));
  });

  after(async () => {
    setRunner('native');
    await shutdownWorkers();
    await cloud?.stop();
  });

  async function run(input: unknown): Promise<{ status: string; error: string; cause: string }> {
    const started = await sfn.send(new StartExecutionCommand({ stateMachineArn: cloud.stateMachineArn, input: JSON.stringify(input) }));
    return waitFor(started.executionArn!);
  }

  async function waitFor(arn: string): Promise<{ status: string; error: string; cause: string }> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
      if (d.status !== 'RUNNING') return { status: d.status ?? '', error: d.error ?? '', cause: d.cause ?? '' };
      if (Date.now() > deadline) throw new Error(`execution ${arn} still running after 120 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Nothing was written outside the S3 server's directory, and no key left runs/<valid id>/. */
  function assertContained(): void {
    assert.deepEqual(readdirSync(top).sort(), ['data']);
    assert.deepEqual(readdirSync(join(top, 'data')), ['s3']);
    for (const f of filesUnder(s3Dir)) {
      if (f.startsWith('fanout-work/runs/')) assert.match(f, /^fanout-work\/runs\/[A-Za-z0-9_-]+\//, f);
    }
    assert.equal(existsSync(marker), false, 'the injected module never ran');
  }

  it('{"runId":"a/../../b"} fails the run with an error naming the run id; nothing is written outside', async () => {
    const r = await run({ runId: 'a/../../b', input: { uri: `s3://${cloud.inputBucket}/incoming/other.parquet` } });
    assert.equal(r.status, 'FAILED');
    assert.ok(r.cause.includes('invalid run id in the execution input') && r.cause.includes('a/../../b'), r.cause);
    assertContained();
    assert.ok(!filesUnder(s3Dir).some((f) => f.includes('plan.json')), 'no plan written anywhere');
  });

  it('{"pipeline":"data:..."} fails the run: the deployment imports only its own pipeline', async () => {
    const evil = `data:text/javascript,import('node:fs').then((f) => f.writeFileSync(${JSON.stringify(marker)}, 'x'));export default () => { throw new Error('ran') }`;
    const r = await run({ pipeline: evil, input: { uri: `s3://${cloud.inputBucket}/incoming/other.parquet` } });
    assert.equal(r.status, 'FAILED');
    assert.ok(r.cause.includes('this deployment imports only') && r.cause.includes('FANOUT_PIPELINE'), r.cause);
    await new Promise((res) => setTimeout(res, 200));
    assertContained();
  });

  it('another work bucket or an output outside FANOUT_OUTPUT_PREFIX fails the run', async () => {
    const uri = `s3://${cloud.inputBucket}/incoming/other.parquet`;
    let r = await run({ workBucket: cloud.inputBucket, input: { uri } });
    assert.equal(r.status, 'FAILED');
    assert.ok(r.cause.includes(`names work bucket \\"${cloud.inputBucket}\\"`), r.cause);
    for (const output of [`s3://${cloud.workBucket}/runs/someone-else/output/`, 's3://fanout-input/results/../incoming/', 's3://fanout-input/results/']) {
      r = await run({ output, input: { uri } });
      assert.equal(r.status, 'FAILED', output);
      assert.ok(r.cause.includes(output) && /FANOUT_OUTPUT_PREFIX|segment/.test(r.cause), r.cause);
    }
    assertContained();
  });

  it('a plan.json planted in the work bucket cannot make the workers import its modules or write elsewhere', async () => {
    const input = `s3://${cloud.inputBucket}/incoming/other.parquet`;
    const plan = planRun(pipeline({ uri: input }).plan, { pipeline: null, runId: 'planted-1' });
    plan.pipeline = [`data:text/javascript,import('node:fs').then((f) => f.writeFileSync(${JSON.stringify(marker)}, 'x'))`];
    await preparePlan(new S3Store(cloud.workBucket), plan, cloud.workBucket);
    // The workers import only FANOUT_PIPELINE (which registers the UDFs): the run succeeds, the data: URL never runs.
    const r = await run({ runId: 'planted-1' });
    assert.equal(r.status, 'SUCCEEDED', r.cause);
    assertContained();

    // The same with an output outside the deployment's prefix: refused, nothing committed there.
    const plan2 = {
      ...plan,
      runId: 'planted-2',
      pipeline: null,
      output: { uri: `s3://${cloud.inputBucket}/incoming/hijack/`, format: 'parquet' as const, mode: 'overwrite' as const },
    };
    await preparePlan(new S3Store(cloud.workBucket), plan2, cloud.workBucket);
    const r2 = await run({ runId: 'planted-2' });
    assert.equal(r2.status, 'FAILED');
    assert.ok(r2.cause.includes('the plan') && r2.cause.includes('FANOUT_OUTPUT_PREFIX'), r2.cause);
    assert.equal(await getS3ObjectOrNull(`s3://${cloud.inputBucket}/incoming/hijack/_SUCCESS`), null);
  });

  it('the S3 server refuses keys with . or .. segments (PUT, CopySource, DeleteObjects)', async () => {
    const s3 = await s3Client();
    const refused = (e: Error): boolean => e.name === 'InvalidArgument' && /'\.' or '\.\.' segment/.test(e.message);
    await assert.rejects(() => s3.send(new PutObjectCommand({ Bucket: cloud.workBucket, Key: '../../escaped', Body: 'x' })), refused);
    await assert.rejects(() => s3.send(new PutObjectCommand({ Bucket: cloud.workBucket, Key: 'runs/a/../../../../escaped', Body: 'x' })), refused);
    await assert.rejects(
      () => s3.send(new CopyObjectCommand({ Bucket: cloud.workBucket, Key: 'copied', CopySource: `${cloud.workBucket}/../../../pwned` })),
      refused,
    );
    await assert.rejects(() => s3.send(new DeleteObjectsCommand({ Bucket: cloud.workBucket, Delete: { Objects: [{ Key: '../../../data' }] } })), refused);
    // Ordinary keys, glob characters included, still work; DeleteObjects still reads its body.
    await s3.send(new PutObjectCommand({ Bucket: cloud.workBucket, Key: 'probe/a*b?.txt', Body: 'x' }));
    await s3.send(new DeleteObjectsCommand({ Bucket: cloud.workBucket, Delete: { Objects: [{ Key: 'probe/a*b?.txt' }] } }));
    assert.equal(await getS3ObjectOrNull(`s3://${cloud.workBucket}/probe/a*b?.txt`), null);
    assertContained();
    assert.ok(statSync(s3Dir).isDirectory());
  });

  it(`an upload named ${uploaded} next to another object: the triggered run reads exactly the uploaded object`, async () => {
    // The rule as the construct deploys it (cdk/fanout-pipeline.ts), with literal: true in the input.
    const rule: LocalRule = {
      name: 'sec-input',
      arn: 'arn:aws:events:us-east-1:000000000000:rule/sec-input',
      pattern: objectCreatedPattern(cloud.inputBucket, 'incoming/', '.parquet'),
      targets: [
        {
          arn: cloud.stateMachineArn,
          inputTransformer: {
            InputPathsMap: { bucket: '$.detail.bucket.name', key: '$.detail.object.key', id: '$.id' },
            InputTemplate: '{"input":{"uri":"s3://<bucket>/<key>","literal":true},"output":"s3://fanout-input/results/<id>/","runId":<id>}',
          },
        },
      ],
    };
    const bridge = await startEventBridgeBridge({
      buckets: [cloud.inputBucket],
      rules: [rule],
      sfnEndpoint: cloud.sfnEndpoint,
      stateMachineArn: cloud.stateMachineArn,
      pollIntervalMs: 100,
    });
    try {
      const next = bridge.nextExecution(30_000);
      await putS3Object(`s3://${cloud.inputBucket}/${uploaded}`, readFileSync(join(local, 'mine.parquet')));
      const ex = await next;
      const sent = JSON.parse(ex.input) as { input: { uri: string; literal: boolean }; output: string };
      assert.deepEqual(sent.input, { uri: `s3://${cloud.inputBucket}/${uploaded}`, literal: true });
      const r = await waitFor(ex.executionArn);
      assert.equal(r.status, 'SUCCEEDED', r.cause);
      setRunner('native', { workers: false });
      const got = await readParquet(sent.output).toRows();
      const want = await pipeline({ uri: join(local, 'mine.parquet') }).toRows();
      assert.ok(want.length > 0);
      assert.deepEqual(got, want, "only the uploaded object's rows");
      assert.ok(
        got.every((row) => (row as { id: bigint }).id < 100_000n),
        'no row of the other object',
      );
      // Without literal the same URI is a glob over incoming/: both objects (what the trigger used to read).
      assert.equal(await readParquet(`s3://${cloud.inputBucket}/${uploaded}`).count(), 800);
      assert.equal(await readParquet(`s3://${cloud.inputBucket}/${uploaded}`, { literal: true }).count(), 300);
      assert.throws(
        () => readParquet(`s3://${cloud.inputBucket}/incoming/?ther.parquet`, { literal: true }),
        /not found: .*\(read literally: exactly this object\)/,
      );
      assert.throws(() => readParquet(`s3://${cloud.inputBucket}/incoming`, { literal: true }), /not found/, 'a key is one object, never a prefix');
    } finally {
      await bridge.stop();
    }
  });

  it('readCsv { literal: true } reads exactly the named S3 object', async () => {
    await putS3Object(`s3://${cloud.inputBucket}/csv/[ab].csv`, 'id,v\n1,a\n');
    await putS3Object(`s3://${cloud.inputBucket}/csv/a.csv`, 'id,v\n2,b\n3,c\n');
    assert.equal(await readCsv(`s3://${cloud.inputBucket}/csv/[ab].csv`, { literal: true }).count(), 1);
    assert.deepEqual(await readCsv(`s3://${cloud.inputBucket}/csv/[ab].csv`, { literal: true }).toRows(), [{ id: 1n, v: 'a' }]);
  });
});

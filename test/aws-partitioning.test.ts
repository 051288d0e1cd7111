// Partitioning on the serverless runner: many tiny partitions share a Stage invocation (Distributed
// Map ItemBatcher, or the inline Map's stepped range), through the offline harness; a pipeline
// module's planOptions set the partition size the Plan Lambda uses (S3-triggered runs).
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readParquet, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { handlePlan, setStoreFactory } from '../src/aws/handlers.ts';
import { loadPlan, planRun } from '../src/aws/run.ts';
import { partitionsPerInvocation } from '../src/aws/stages.ts';
import { buildStateMachineDefinition, validateStateMachineDefinition } from '../src/aws/state-machine.ts';
import { LocalStore } from '../src/io/store/index.ts';
import { putS3Object } from '../src/io/s3/index.ts';
import { tempDir, writeSample } from './helpers.ts';

const pipelineFile = join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts');
let local: string;

before(async () => {
  local = join(tempDir(), 'small.parquet');
  await writeSample(local, 0, 3000, 1000);
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

describe('partitions per invocation', () => {
  it('batches only tiny partitions, and never below the fan-out', () => {
    assert.equal(partitionsPerInvocation(32, 1000), 1, 'few partitions: one each');
    assert.equal(partitionsPerInvocation(100, 100 * 1024), 3, 'tiny: as many as keep 32 invocations');
    assert.equal(partitionsPerInvocation(10_000, 10_000 * 1024), 312);
    assert.equal(partitionsPerInvocation(10_000, 10_000 * (16 << 20)), 2, 'bounded by about 32 MiB per invocation');
    assert.equal(partitionsPerInvocation(10_000, 10_000 * (64 << 20)), 1);
  });

  it('the definition batches a Distributed Map with ItemBatcher, and steps an inline Map', () => {
    const arns = { planFunctionArn: 'p', stageFunctionArn: 's', finalizeFunctionArn: 'f', failureFunctionArn: 'x' };
    const dist = buildStateMachineDefinition({ ...arns, distributed: true });
    const map = dist.States.Stages!.ItemProcessor!.States.Partitions!;
    assert.deepEqual(map.ItemBatcher, { MaxItemsPerBatchPath: '$.stage.partitionsPerInvocation' });
    assert.deepEqual(validateStateMachineDefinition(dist), []);
    const inline = buildStateMachineDefinition({ ...arns, distributed: false });
    const stage = inline.States.Stages!.ItemProcessor!.States;
    assert.equal(stage.Partitions!.ItemBatcher, undefined);
    assert.equal(stage.Partitions!.ItemSelector!['count.$'], '$.stage.partitionsPerInvocation');
    assert.deepEqual(validateStateMachineDefinition(inline), []);
    // ItemBatcher is a Distributed Map field: the validator says so.
    const bad = buildStateMachineDefinition({ ...arns, distributed: false });
    bad.States.Stages!.ItemProcessor!.States.Partitions!.ItemBatcher = { MaxItemsPerBatch: 2 };
    assert.match(validateStateMachineDefinition(bad).join('\n'), /Partitions: ItemBatcher needs ProcessorConfig.Mode DISTRIBUTED/);
  });
});

for (const distributed of [true, false]) {
  describe(`tiny partitions through the harness (${distributed ? 'Distributed Map + ItemBatcher' : 'inline Map, stepped range'})`, () => {
    let cloud: LocalCloud;
    let input: string;
    before(async () => {
      cloud = await startLocalCloud({ pipeline: pipelineFile, lambdaConcurrency: 2, distributed });
      input = `s3://${cloud.inputBucket}/small/data.parquet`;
      await putS3Object(input, readFileSync(local));
    });
    after(async () => {
      await cloud?.stop();
    });

    it('100 partitions run in 34 Stage invocations and equal the embedded result', async () => {
      setRunner('native', { workers: false });
      const df = () => readParquet(input).select('id', 'x').intoPartitions(100);
      const want = await df().toRows();
      setRunner('aws', cloud.runnerOptions);
      assert.match(await df().explain(), /Stage 0: lambda, 100 partition\(s\) \(3 per invocation\)/);
      const before = cloud.stats()['stage']!;
      const got = await df().toRows();
      assert.equal(cloud.stats()['stage']! - before, 34, 'ceil(100 / 3) invocations');
      assert.deepEqual(got, want);
      setRunner('native', { workers: false });
    });
  });
}

describe("a pipeline module's planOptions", () => {
  it('set the partition size the Plan handler uses', async () => {
    const work = tempDir();
    setStoreFactory(() => new LocalStore(work));
    const planned = join(import.meta.dirname, 'fixtures', 'planned-pipeline.ts');
    const summary = await handlePlan({ runId: 'planopts-1', pipeline: planned, input: { uri: local }, workBucket: 'work-bucket' });
    assert.equal(summary.stages[0]!.partitions, 3, 'targetPartitionBytes: 1 gives one partition per row group');
    const plan = await loadPlan(new LocalStore(work), 'planopts-1');
    assert.equal(plan.sources.length, 3);
    // The same DataFrame planned with the defaults (128 MiB): one partition.
    assert.equal(planRun(readParquet(local).select('id', 'x').plan, { pipeline: null }).sources.length, 1);
  });

  it('set the exchange width of a pipeline with a groupBy (shufflePartitions)', async () => {
    const work = tempDir();
    setStoreFactory(() => new LocalStore(work));
    const planned = join(import.meta.dirname, 'fixtures', 'planned-shuffle-pipeline.ts');
    const summary = await handlePlan({ runId: 'planopts-2', pipeline: planned, input: { uri: local }, workBucket: 'work-bucket' });
    assert.deepEqual(
      summary.stages.map((s) => s.partitions),
      [3, 2],
      'three map partitions (one per row group), two reduce partitions',
    );
    const plan = await loadPlan(new LocalStore(work), 'planopts-2');
    const exchange = plan.stages[0]!.exchange;
    assert.ok(exchange?.kind === 'hash');
    assert.deepEqual([exchange.keys, exchange.partitions, exchange.partial?.aggs.map((a) => [a.fn, a.name])], [['category'], 2, [['sum', 'sx']]]);
    assert.equal(plan.stages[1]!.input?.kind, 'aggregate');
    assert.deepEqual(plan.shuffle, { partitions: 2, broadcastJoinBytes: 0 });
  });
});

describe('the Plan step of a run that is already planned', () => {
  it('reads plan.json and does not write it again', async () => {
    const work = tempDir();
    setStoreFactory(() => new LocalStore(work));
    const planned = join(import.meta.dirname, 'fixtures', 'planned-pipeline.ts');
    const first = await handlePlan({ runId: 'planned-once', pipeline: planned, input: { uri: local }, workBucket: 'work-bucket' });
    const file = join(work, 'runs', 'planned-once', 'plan.json');
    const before = { text: readFileSync(file, 'utf8'), mtime: statSync(file).mtimeMs };
    await new Promise((r) => setTimeout(r, 30));
    // The runner's path: the plan is in the work bucket, the execution names its run id.
    const again = await handlePlan({ runId: 'planned-once', workBucket: 'work-bucket' });
    assert.deepEqual(again, first);
    assert.deepEqual({ text: readFileSync(file, 'utf8'), mtime: statSync(file).mtimeMs }, before);
  });
});

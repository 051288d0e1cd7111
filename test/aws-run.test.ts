// The serverless run lifecycle (plan → stage partitions → finalize) over a directory-backed object
// store: the same functions the Lambda and ECS entrypoints call, without any AWS service.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { col, readParquet, setRunner } from 'fanout';
import { handleStage, setStoreFactory } from '../src/aws/handlers.ts';
import { finalizeRun, keys, planRun, preparePlan, recordFailure, runGpuSlot, runStagePartition } from '../src/aws/run.ts';
import { splitStages } from '../src/aws/stages.ts';
import { LocalStore } from '../src/io/store/index.ts';
import { double, gpuScore, tagged } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

let input: string;
const pipelineModule = new URL('./fixtures/udfs.ts', import.meta.url).href;

before(async () => {
  input = tempDir();
  for (let i = 0; i < 3; i++) await writeSample(join(input, `f${i}.parquet`), i * 3000, 3000, 1000);
  setRunner('native', { workers: false });
});

function pipeline() {
  return readParquet(input)
    .where(col('x').gt(0.2))
    .withColumns({ y: double(col('x')), t: tagged(col('category')) })
    .withColumn('g', gpuScore(col('y')))
    .select('id', 'y', 't', 'g');
}

describe('serverless run lifecycle', () => {
  it('splits stages at the GPU boundary', () => {
    const plan = planRun(pipeline().plan, { pipeline: pipelineModule, targetPartitionBytes: 1 });
    assert.deepEqual(
      plan.stages.map((s) => s.executor),
      ['lambda', 'ecs-gpu'],
    );
    assert.equal(plan.sources.length, 9, 'one partition per row group');
    assert.deepEqual(plan.stages[1]!.udfs, ['fixtures.gpuScore']);
    assert.equal(JSON.parse(JSON.stringify(plan)).stages.length, 2, 'plans are JSON');
  });

  it('runs every partition of every stage and commits the same result as the embedded runner', async () => {
    const work = new LocalStore(tempDir());
    const out = join(tempDir(), 'out');
    const plan = planRun(pipeline().plan, { pipeline: pipelineModule, targetPartitionBytes: 1, output: { uri: out, format: 'parquet', mode: 'error' } });
    const summary = await preparePlan(work, plan, 'work-bucket');
    assert.ok(JSON.stringify(summary).length < 2048, 'the state machine payload stays small');
    for (const p of Array.from({ length: 9 }, (_, i) => i)) await runStagePartition(work, plan.runId, 0, p);
    // GPU stage: two worker slots share the partitions.
    await Promise.all([0, 1].map((slot) => runGpuSlot(work, plan.runId, 1, slot, 2)));
    // A retried partition overwrites its shard (deterministic keys): run one again.
    await runStagePartition(work, plan.runId, 1, 4);
    const result = await finalizeRun(work, plan.runId);
    assert.equal(result.status, 'SUCCEEDED');
    assert.ok(existsSync(join(out, '_SUCCESS')));
    const got = await readParquet(out).toRows();
    const want = await pipeline().toRows();
    assert.deepEqual(got, want);
    assert.equal(result.rows, want.length);
    assert.equal(result.metrics['fixtures.tagged']!.counters['seen'], want.length);
    // Partition 4 ran twice, but its marker was overwritten: metrics count each partition once.
    assert.equal(result.metrics['fixtures.gpuScore']!.rowsIn, want.length);
    assert.ok(await work.exists(keys.summary(plan.runId)));
  });

  it("the runner's batchSize reaches the stages: a stage reads and calls its UDFs batch by batch", async () => {
    const callsWith = async (batchSize: number | undefined): Promise<number> => {
      const work = new LocalStore(tempDir());
      const opts: Parameters<typeof planRun>[1] = { pipeline: pipelineModule, targetPartitionBytes: 1 };
      if (batchSize !== undefined) opts.batchSize = batchSize;
      const plan = planRun(readParquet(input).withColumn('g', gpuScore(col('x'))).plan, opts);
      assert.equal(plan.batchSize, batchSize);
      await preparePlan(work, plan, 'work-bucket');
      for (const stage of plan.stages) {
        if (stage.executor === 'lambda') for (let p = 0; p < plan.sources.length; p++) await runStagePartition(work, plan.runId, stage.index, p);
        else await runGpuSlot(work, plan.runId, stage.index, 0, 1);
      }
      const result = await finalizeRun(work, plan.runId);
      assert.equal(result.rows, 9000);
      // Each completion marker carries the partition's time in the driver.
      const marker = JSON.parse(Buffer.from(await work.get(keys.metrics(plan.runId, 0, 0))).toString('utf8')) as { elapsedMs?: unknown };
      assert.equal(typeof marker.elapsedMs, 'number');
      return result.metrics['fixtures.gpuScore']!.calls;
    };
    // 9 row groups of 1000 rows: one call per row group by default, ten with 100-row batches.
    assert.equal(await callsWith(undefined), 9);
    assert.equal(await callsWith(100), 90);
    assert.throws(() => planRun(readParquet(input).plan, { pipeline: null, batchSize: 0 }), /batchSize must be a positive integer, got 0/);
  });

  it('finalize copies result shards side by side and reads each completion marker once', async () => {
    // Finalize's time used to grow with the partition count: one copy after another, and every
    // marker fetched twice (for the part sizes, then again for the metrics).
    class CountingStore extends LocalStore {
      markerGets = 0;
      inFlight = 0;
      maxInFlight = 0;
      override async get(key: string): Promise<Uint8Array> {
        if (/\/metrics-\d+\.json$/.test(key)) this.markerGets++;
        return super.get(key);
      }
      override async copy(from: string, toUri: string): Promise<void> {
        this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
        try {
          await new Promise((r) => setTimeout(r, 5)); // a server-side copy takes a round trip
          await super.copy(from, toUri);
        } finally {
          this.inFlight--;
        }
      }
    }
    const work = new CountingStore(tempDir());
    // An output: a run without one names its results in place and copies nothing.
    const out = join(tempDir(), 'out');
    const plan = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, {
      pipeline: pipelineModule,
      targetPartitionBytes: 1,
      output: { uri: out, format: 'parquet', mode: 'error' },
    });
    assert.equal(plan.stages.length, 1);
    await preparePlan(work, plan, 'work-bucket');
    for (let p = 0; p < plan.sources.length; p++) await runStagePartition(work, plan.runId, 0, p);
    work.markerGets = 0;
    const result = await finalizeRun(work, plan.runId);
    assert.equal(result.rows, 9000);
    assert.equal(work.markerGets, plan.sources.length, 'each marker is read once');
    assert.ok(work.maxInFlight > 1, `copies ran one at a time (${work.maxInFlight} in flight at most)`);
    // The committed parts keep partition order.
    const got = await readParquet(out).select('id').toRows();
    assert.deepEqual(
      got.map((r) => r['id']),
      Array.from({ length: 9000 }, (_, i) => BigInt(i)),
    );
  });

  it("a batched Stage invocation checks its partitions' markers with one listing, not a GET each; finished ones are still skipped", async () => {
    class CountingStore extends LocalStore {
      markerGets = 0;
      lists: string[] = [];
      override async get(key: string): Promise<Uint8Array> {
        if (/\/metrics-\d+\.json$/.test(key)) this.markerGets++;
        return super.get(key);
      }
      override async list(prefix: string): Promise<string[]> {
        this.lists.push(prefix);
        return super.list(prefix);
      }
    }
    const work = new CountingStore(tempDir());
    setStoreFactory(() => work);
    const plan = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, { pipeline: pipelineModule, targetPartitionBytes: 1 });
    await preparePlan(work, plan, 'work-bucket');
    const batch = (ps: number[]) => ({ Items: ps.map((partition) => ({ runId: plan.runId, workBucket: 'work-bucket', stage: 0, partition })) });
    work.lists = [];
    const first = await handleStage(batch([3, 4, 5]));
    assert.deepEqual(first.partitions, [3, 4, 5]);
    assert.equal(work.markerGets, 0, 'no GET of a marker that the listing showed missing');
    assert.deepEqual(work.lists, [keys.metrics(plan.runId, 0, 3).replace(/\d\.json$/, '')], "one listing of the batch's common key prefix");
    // A redrive of a wider batch: the finished partitions are read (their marker) and skipped, the rest run.
    const before = JSON.parse(Buffer.from(await work.get(keys.metrics(plan.runId, 0, 4))).toString()) as { finishedAt: string };
    work.markerGets = 0;
    const again = await handleStage(batch([2, 3, 4, 5, 6]));
    assert.equal(work.markerGets, 3, 'only the three finished markers are read');
    const after = JSON.parse(Buffer.from(await work.get(keys.metrics(plan.runId, 0, 4))).toString()) as { finishedAt: string };
    assert.equal(after.finishedAt, before.finishedAt, 'a finished partition is not run again');
    assert.equal(again.rows, first.rows + 2000);
  });

  it("finalize reads a batched invocation's markers from its one marker batch, not one GET per partition; a partition without its own marker is not taken from a batch", async () => {
    class CountingStore extends LocalStore {
      markerGets = 0;
      batchGets = 0;
      override async get(key: string): Promise<Uint8Array> {
        if (/\/metrics-\d+\.json$/.test(key)) this.markerGets++;
        if (/\/markers-\d+-\d+\.json$/.test(key)) this.batchGets++;
        return super.get(key);
      }
    }
    const work = new CountingStore(tempDir());
    setStoreFactory(() => work);
    const plan = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, { pipeline: pipelineModule, targetPartitionBytes: 1 });
    await preparePlan(work, plan, 'work-bucket');
    const batch = (ps: number[]) => ({ Items: ps.map((partition) => ({ runId: plan.runId, workBucket: 'work-bucket', stage: 0, partition })) });
    // Three invocations of 3 partitions each (as the Map's ItemBatcher sends them).
    for (const ps of [
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
    ])
      await handleStage(batch(ps));
    assert.ok(await work.exists(keys.markerBatch(plan.runId, 0, 3, 5)), 'each invocation wrote its marker batch');
    work.markerGets = 0;
    const result = await finalizeRun(work, plan.runId);
    assert.equal(result.rows, 9000);
    assert.equal(result.metrics['fixtures.double']!.rowsIn, 9000, 'the metrics of every partition, from the batches');
    assert.equal(work.markerGets, 0, 'no marker read one by one');
    assert.equal(work.batchGets, 3, 'one GET per invocation');
    const manifest = JSON.parse(Buffer.from(await work.get(`${keys.output(plan.runId)}/_SUCCESS`)).toString()) as { files: { rows: number }[] };
    assert.deepEqual(
      manifest.files.map((f) => f.rows),
      Array.from({ length: 9 }, () => 1000),
      "each part's rows, from the batches",
    );

    // A partition whose own marker is gone has not finished, whatever a batch says: with a tolerated
    // failure the run commits without it, and neither its rows nor its metrics count.
    const work2 = new CountingStore(tempDir());
    setStoreFactory(() => work2);
    const plan2 = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, {
      pipeline: pipelineModule,
      targetPartitionBytes: 1,
      tolerance: { toleratedFailureCount: 1 },
    });
    await preparePlan(work2, plan2, 'work-bucket');
    const batch2 = (ps: number[]) => ({ Items: ps.map((partition) => ({ runId: plan2.runId, workBucket: 'work-bucket', stage: 0, partition })) });
    await handleStage(batch2([0, 1, 2, 3, 4]));
    await handleStage(batch2([5, 6, 7, 8]));
    await work2.delete([keys.metrics(plan2.runId, 0, 6)]);
    const partial = await finalizeRun(work2, plan2.runId);
    assert.equal(partial.complete, false);
    assert.equal(partial.rows, 8000);
    assert.equal(partial.metrics['fixtures.double']!.rowsIn, 8000, "the batch's copy of partition 6's marker is not counted");

    // A marker written again after its batch (the partition run again) is read itself, not taken from the batch.
    const work3 = new CountingStore(tempDir());
    setStoreFactory(() => work3);
    const plan3 = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, { pipeline: pipelineModule, targetPartitionBytes: 1 });
    await preparePlan(work3, plan3, 'work-bucket');
    await handleStage({ Items: Array.from({ length: 9 }, (_, partition) => ({ runId: plan3.runId, workBucket: 'work-bucket', stage: 0, partition })) });
    const old = JSON.parse(Buffer.from(await work3.get(keys.metrics(plan3.runId, 0, 4))).toString()) as { rows: number };
    await new Promise((r) => setTimeout(r, 20));
    await work3.put(keys.metrics(plan3.runId, 0, 4), JSON.stringify({ ...old, rows: 999 }));
    work3.markerGets = 0;
    const rerun = await finalizeRun(work3, plan3.runId);
    assert.equal(work3.markerGets, 1, 'only the newer marker is read');
    assert.equal(rerun.rows, 8999, "partition 4's rows come from its newer marker");
  });

  it('finalize refuses an incomplete run and commits nothing; the failure names the partitions', async () => {
    const work = new LocalStore(tempDir());
    const out = join(tempDir(), 'out');
    const plan = planRun(pipeline().plan, { pipeline: pipelineModule, targetPartitionBytes: 1, output: { uri: out, format: 'parquet', mode: 'error' } });
    await preparePlan(work, plan, 'work-bucket');
    for (let p = 0; p < 9; p++) if (p !== 5) await runStagePartition(work, plan.runId, 0, p);
    await assert.rejects(() => finalizeRun(work, plan.runId), /stage 0: partitions 5/);
    assert.ok(!existsSync(join(out, '_SUCCESS')));
    const failure = await recordFailure(work, plan.runId, 'partition 5 failed');
    assert.deepEqual(failure.failedPartitions?.[0], { stage: 0, partitions: [5] });
  });

  it('a pipeline without GPU UDFs is one lambda stage; a GPU-first pipeline reads its input on the GPU tasks', () => {
    const cpu = planRun(readParquet(input).withColumn('y', double(col('x'))).plan, { pipeline: null });
    assert.deepEqual(
      cpu.stages.map((s) => s.executor),
      ['lambda'],
    );
    const gpu = planRun(readParquet(input).withColumn('g', gpuScore(col('x'))).plan, { pipeline: null });
    assert.deepEqual(
      gpu.stages.map((s) => s.executor),
      ['ecs-gpu'],
    );
    void splitStages;
  });

  it('a projection after a global limit runs in finalize; finalize twice commits once', async () => {
    const work = new LocalStore(tempDir());
    const out = join(tempDir(), 'out');
    const df = readParquet(input).limit(3).withColumn('y', col('id').mul(2));
    const plan = planRun(df.plan, { pipeline: pipelineModule, targetPartitionBytes: 1, output: { uri: out, format: 'parquet', mode: 'append' } });
    await preparePlan(work, plan, 'work-bucket');
    for (let p = 0; p < plan.sources.length; p++) await runStagePartition(work, plan.runId, 0, p);
    const first = await finalizeRun(work, plan.runId);
    const again = await finalizeRun(work, plan.runId);
    assert.deepEqual(again, first);
    const rows = await readParquet(out).toRows();
    assert.deepEqual(
      rows.map((r) => [r.id, r.y]),
      [
        [0n, 0n],
        [1n, 2n],
        [2n, 4n],
      ],
    );
  });
});

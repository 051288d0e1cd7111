// Issue 8 item 9: columns that share one buffer must survive Arrow IPC (worker results, Parquet and
// CSV writers), and an error while handling a worker's message fails the action, not the process.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, readCsv, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { finalizeRun, planRun, preparePlan, runGpuSlot, runStagePartition } from '../src/aws/run.ts';
import { LocalStore } from '../src/io/store/index.ts';
import { aliasedColumns, unaliasBatch } from '../src/ipc-alias.ts';
import { batchFromIPC, batchToIPC } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { sameValues } from './fixtures/alias-udfs.ts';
import { double, gpuScore } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

async function sampleDir(): Promise<string> {
  const dir = tempDir();
  for (let i = 0; i < 4; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
  return dir;
}

const cases = {
  'select(col(x), col(x).alias(x2))': (dir: string) => readParquet(dir).select(col('x'), col('x').alias('x2')),
  'batch UDF returning v.toArray() of its input': (dir: string) => readParquet(dir).select(col('x'), sameValues(col('x')).alias('x2')),
};

function checkRows(rows: Record<string, unknown>[]): void {
  assert.equal(rows.length, 80_000);
  for (const r of rows) assert.equal(r['x2'], r['x']);
}

describe('columns sharing one buffer', () => {
  it('unaliasBatch copies nothing when no buffers overlap, and only the aliasing column when they do', () => {
    const x = arrow.makeVector(Float64Array.from({ length: 1000 }, (_, i) => i / 7));
    const y = arrow.makeVector(Float64Array.from({ length: 1000 }, (_, i) => -i));
    const plain = new arrow.Table({ x, y }).batches[0]!;
    assert.equal(unaliasBatch(plain), plain);
    const shared = new arrow.Table({ x, y, x2: x }).batches[0]!;
    assert.deepEqual(aliasedColumns(shared), [2]);
    const fixed = unaliasBatch(shared);
    assert.equal(fixed.getChildAt(0)!.data[0], shared.getChildAt(0)!.data[0]); // not copied
    assert.notEqual(fixed.getChildAt(2)!.data[0]!.values.buffer, x.data[0]!.values.buffer);
    assert.deepEqual(aliasedColumns(fixed), []);
    // A partial overlap (two slices of one array) counts too.
    const big = arrow.makeVector(Float64Array.from({ length: 2000 }, (_, i) => i));
    const overlapping = new arrow.Table({ a: big.slice(0, 1000), b: big.slice(500, 1500) }).batches[0]!;
    assert.deepEqual(aliasedColumns(overlapping), [1]);
    const back = batchFromIPC(batchToIPC(overlapping));
    assert.deepEqual([...back.getChildAt(1)!.toArray()], [...big.slice(500, 1500).toArray()]);
  });

  it('a batch with the same Data twice round-trips through the worker IPC codec', () => {
    const x = arrow.makeVector(Float64Array.from({ length: 65_536 }, (_, i) => i * 0.5));
    const batch = new arrow.Table({ x, x2: x }).batches[0]!;
    const back = batchFromIPC(batchToIPC(batch));
    assert.deepEqual([...back.getChild('x2')!.toArray()], [...x.toArray()]);
  });

  for (const [name, build] of Object.entries(cases)) {
    for (const workers of [false, true]) {
      describe(`${name}, ${workers ? 'worker threads' : 'in-process'}`, () => {
        it('collects, writes Parquet and CSV, and reads back equal', async () => {
          const dir = await sampleDir();
          setRunner('native', { workers, parallelism: 2, targetPartitionBytes: 1 });
          try {
            checkRows(await build(dir).toRows());
            const pq = join(tempDir(), 'pq');
            await build(dir).writeParquet(pq);
            checkRows(await readParquet(pq).toRows());
            const csv = join(tempDir(), 'csv');
            await build(dir).writeCsv(csv);
            checkRows(await readCsv(csv).toRows());
          } finally {
            setRunner('native', { workers: false });
          }
        });
      });
    }
  }
});

describe('serverless shards', () => {
  it('a stage shard (Arrow IPC between stages) with aliased columns reads back equal', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    setRunner('native', { workers: false });
    // The GPU UDF starts a second stage, so stage 0's output (x and x2 sharing one buffer) is an IPC shard.
    const pipeline = () =>
      readParquet(dir)
        .withColumn('x', double(col('x')))
        .select(col('id'), col('x'), col('x').alias('x2'))
        .withColumn('g', gpuScore(col('x2')));
    const work = new LocalStore(tempDir());
    const out = join(tempDir(), 'out');
    const plan = planRun(pipeline().plan, {
      pipeline: new URL('./fixtures/udfs.ts', import.meta.url).href,
      targetPartitionBytes: 1,
      output: { uri: out, format: 'parquet', mode: 'error' },
    });
    assert.deepEqual(
      plan.stages.map((s) => s.executor),
      ['lambda', 'ecs-gpu'],
    );
    await preparePlan(work, plan, 'work-bucket');
    for (let p = 0; p < plan.sources.length; p++) await runStagePartition(work, plan.runId, 0, p);
    await runGpuSlot(work, plan.runId, 1, 0, 1);
    assert.equal((await finalizeRun(work, plan.runId)).status, 'SUCCEEDED');
    const got = await readParquet(out).toRows();
    assert.equal(got.length, 40_000);
    for (const r of got) assert.equal(r['x2'], r['x']);
    assert.deepEqual(got, await pipeline().toRows());
  });
});

describe('errors while handling worker messages', () => {
  it('a throw in the pool message handler rejects the action; the process and the pool carry on', { timeout: 120_000 }, async () => {
    const dir = await sampleDir();
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    let failOn: string | null = null;
    poolTestHooks.onMessage = (m) => {
      if (m.type === failOn) {
        failOn = null;
        throw new Error('injected message failure');
      }
    };
    try {
      // Several failures in a row: a slot left busy by a failed task would soon leave no free worker,
      // and the next action would hang (and time out).
      for (let i = 0; i < 3; i++) {
        failOn = 'batch';
        await assert.rejects(
          () => readParquet(dir).select('id', 'x').toRows(),
          /injected message failure \(handling a 'batch' message from the worker running/,
        );
        // A worker-side write reports with one 'sink' message; its slot must still be freed.
        failOn = 'sink';
        const out = join(tempDir(), 'o');
        await assert.rejects(() => readParquet(dir).select('id', 'x').writeParquet(out), /injected message failure \(handling a 'sink' message/);
        assert.equal(failOn, null);
      }
    } finally {
      poolTestHooks.onMessage = undefined;
    }
    // The same pool still serves the next action.
    const rows = await readParquet(dir).select('id').toRows();
    assert.equal(rows.length, 80_000);
    const out = join(tempDir(), 'after');
    await readParquet(dir).select('id').writeParquet(out);
    assert.equal((await readParquet(out).toRows()).length, 80_000);
    setRunner('native', { workers: false });
  });
});

// A scan without UDFs on 2 worker threads: the consuming thread decodes every other partition
// itself and one worker decodes the others ahead of it, so the half it decodes is never
// transferred, and no more threads compete for 2 cores than there are cores. With a UDF, or with
// more than 2 threads, every partition still runs on the workers.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { batchFromWire } from '../src/runners/transfer.ts';
import { double } from './fixtures/udfs.ts';
import { sampleRows, tempDir, writeSample } from './helpers.ts';

let dir: string;
before(async () => {
  dir = tempDir();
  // Four files of 6 000 rows: one partition each (targetPartitionBytes: 1).
  for (let k = 0; k < 4; k++) await writeSample(join(dir, `p${k}.parquet`), k * 6000, 6000, 6000);
});

after(async () => {
  poolTestHooks.onMessage = undefined;
  setRunner('native');
  await shutdownWorkers();
});

/** The partitions whose batches came from a worker, and the most worker tasks that ran at once. */
async function onWorkers(run: () => Promise<unknown>): Promise<{ parts: Set<number>; maxRunning: number }> {
  const parts = new Set<number>();
  const running = new Set<number>();
  let maxRunning = 0;
  poolTestHooks.onMessage = (m: FromWorker) => {
    if (m.type === 'batch') {
      running.add(m.taskId);
      maxRunning = Math.max(maxRunning, running.size);
      parts.add(Math.floor(Number(batchFromWire(m.wire).getChild('id')!.get(0) as bigint) / 6000));
    } else if (m.type === 'done' || m.type === 'error') {
      running.delete(m.taskId);
    }
  };
  try {
    await run();
  } finally {
    poolTestHooks.onMessage = undefined;
  }
  return { parts, maxRunning };
}

const ids = (rows: unknown[]): bigint[] => (rows as { id: bigint }[]).map((r) => r.id);

describe('shared decoding on 2 threads', () => {
  it('partitions 0 and 2 are decoded in this thread, 1 and 3 on one worker at a time; rows stay in order', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const df = () => readParquet(dir).select('id', 'x');
    let rows: unknown[] = [];
    const seen = await onWorkers(async () => {
      rows = await df().toRows();
    });
    assert.deepEqual(ids(rows), ids(sampleRows(0, 24_000)));
    assert.deepEqual([...seen.parts].sort(), [1, 3]);
    assert.equal(seen.maxRunning, 1, 'one worker decodes while this thread does');
    // A filter and arithmetic (no user code) share the same way, and return what one thread does.
    const filtered = () => readParquet(dir).where(col('x').gt(0.5)).select('id', col('x').mul(2).add(1).alias('y'));
    let got: unknown[] = [];
    const f = await onWorkers(async () => {
      got = await filtered().toRows();
    });
    assert.deepEqual([...f.parts].sort(), [1, 3]);
    setRunner('native', { workers: false });
    assert.deepEqual(got, await filtered().toRows());
  });

  it('a consumer that stops early cancels the worker ahead of it, and the next action runs normally', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const want = ids(sampleRows(0, 24_000));
    // 7 000 rows: all of partition 0 (here) and the first batch of partition 1 (the worker).
    assert.deepEqual(ids(await readParquet(dir).select('id', 'x').limit(7000).toRows()), want.slice(0, 7000));
    let n = 0;
    for await (const b of readParquet(dir).select('id').stream()) {
      n += b.numRows;
      if (n >= 13_000) break; // inside partition 2, decoded here, while partition 3 runs on the worker
    }
    assert.deepEqual(ids(await readParquet(dir).select('id', 'x').toRows()), want);
  });

  it('with a UDF, or with more than 2 threads, every partition runs on the workers', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const udf = await onWorkers(() =>
      readParquet(dir)
        .select('id', double(col('x')).alias('y'))
        .toRows(),
    );
    assert.deepEqual([...udf.parts].sort(), [0, 1, 2, 3]);
    setRunner('native', { workers: true, parallelism: 3, targetPartitionBytes: 1, batchSize: 1000 });
    const three = await onWorkers(() => readParquet(dir).select('id', 'x').toRows());
    assert.deepEqual([...three.parts].sort(), [0, 1, 2, 3]);
  });
});

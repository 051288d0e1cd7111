// A plan on 2 worker threads: the consuming thread decodes every other partition itself and one
// worker decodes the others ahead of it, so the half it decodes is never transferred, and no more
// threads compete for 2 cores than there are cores. Plain-function UDFs run where their partition
// runs; with a cls, a UDF with timeoutMs, or more than 2 threads, every partition runs on the workers.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { batchFromWire } from '../src/runners/transfer.ts';
import { scanTuning } from '../src/runners/embedded.ts';
import { CounterUdf, double } from './fixtures/udfs.ts';
import { failAt13000, nullAt13000, threadOf, threadOfTimed, ThreadTagUdf } from './fixtures/thread-udfs.ts';
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

  it('a plan whose UDFs are plain functions shares too: partitions 0 and 2 call the UDF in this thread, 1 and 3 on the worker, with the same rows and metrics', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const df = () => readParquet(dir).select('id', threadOf(col('x')).alias('t'), double(col('x')).alias('y'));
    const shared = df();
    let rows: { id: bigint; t: number; y: number }[] = [];
    const seen = await onWorkers(async () => {
      rows = (await shared.toRows()) as typeof rows;
    });
    assert.deepEqual([...seen.parts].sort(), [1, 3]);
    assert.equal(seen.maxRunning, 1);
    // The UDF ran where its partition ran: threadId 0 is this (the main) thread.
    const threadsOf = (k: number): Set<number> => new Set(rows.filter((r) => Number(r.id) / 6000 >= k && Number(r.id) / 6000 < k + 1).map((r) => r.t));
    assert.deepEqual([...threadsOf(0)], [0]);
    assert.deepEqual([...threadsOf(2)], [0]);
    for (const k of [1, 3]) {
      const t = [...threadsOf(k)];
      assert.equal(t.length, 1);
      assert.notEqual(t[0], 0, `partition ${k} on a worker`);
    }
    assert.deepEqual(ids(rows), ids(sampleRows(0, 24_000)));
    // Rows and UDF metrics (calls, rows, counters) as on workers alone and in one thread.
    const counts = (m: Record<string, { rowsIn: number; rowsOut: number; calls: number; retries: number; errors: number; counters: Record<string, number> }>) =>
      Object.fromEntries(
        Object.entries(m).map(([k, v]) => [
          k,
          { rowsIn: v.rowsIn, rowsOut: v.rowsOut, calls: v.calls, retries: v.retries, errors: v.errors, counters: v.counters },
        ]),
      );
    assert.equal(shared.metrics['fixtures.threadOf']!.counters['batches'], 24);
    scanTuning.sharedDecoding = false;
    const remote = df();
    let remoteRows: typeof rows = [];
    try {
      const all = await onWorkers(async () => {
        remoteRows = (await remote.toRows()) as typeof rows;
      });
      assert.deepEqual([...all.parts].sort(), [0, 1, 2, 3]);
    } finally {
      scanTuning.sharedDecoding = true;
    }
    setRunner('native', { workers: false, targetPartitionBytes: 1, batchSize: 1000 });
    const local = df();
    const localRows = (await local.toRows()) as typeof rows;
    const strip = (r: typeof rows) => r.map(({ id, y }) => ({ id, y }));
    assert.deepEqual(strip(rows), strip(localRows));
    assert.deepEqual(strip(remoteRows), strip(localRows));
    assert.deepEqual(counts(shared.metrics), counts(local.metrics));
    assert.deepEqual(counts(shared.metrics), counts(remote.metrics));
  });

  it('a UDF that fails in a partition this thread runs: the same error, retries and null counts as on the workers', async () => {
    const outcome = async (): Promise<{ message: string; counts: unknown }> => {
      let message = '';
      await readParquet(dir)
        .select('id', failAt13000(col('id')).alias('f'))
        .toRows()
        .catch((e: unknown) => {
          message = e instanceof Error ? e.message : String(e);
        });
      const df = readParquet(dir).select('id', nullAt13000(col('id')).alias('f'));
      const rows = (await df.toRows()) as { f: number | null }[];
      const s = df.metrics['fixtures.nullAt13000']!;
      return { message, counts: { nulls: rows.filter((r) => r.f === null).length, errors: s.errors, retries: s.retries, calls: s.calls, rowsIn: s.rowsIn } };
    };
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const shared = await outcome();
    assert.match(shared.message, /bad row 13000/);
    assert.match(shared.message, /partition 2/, 'the error names the partition that failed');
    scanTuning.sharedDecoding = false;
    let remote: typeof shared;
    try {
      remote = await outcome();
    } finally {
      scanTuning.sharedDecoding = true;
    }
    assert.deepEqual(shared, remote);
    assert.deepEqual((shared.counts as { nulls: number }).nulls, 1);
  });

  it('a cls (per-thread instance or actor pool), a UDF with timeoutMs, or more than 2 threads: every partition runs on the workers', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    const timed = await onWorkers(() =>
      readParquet(dir)
        .select('id', threadOfTimed(col('x')).alias('t'))
        .toRows(),
    );
    assert.deepEqual([...timed.parts].sort(), [0, 1, 2, 3]);
    const tag = new ThreadTagUdf();
    let tagged: { t: number }[] = [];
    const perThread = await onWorkers(async () => {
      tagged = (await readParquet(dir)
        .select('id', tag.tag(col('x')).alias('t'))
        .toRows()) as typeof tagged;
    });
    assert.deepEqual([...perThread.parts].sort(), [0, 1, 2, 3]);
    assert.ok(
      tagged.every((r) => r.t !== 0),
      'no instance in this thread',
    );
    const log = join(tempDir(), 'inits.log');
    writeFileSync(log, '');
    const counter = new CounterUdf(log);
    const actors = await onWorkers(() =>
      readParquet(dir)
        .select('id', counter.add(col('x')).alias('y'))
        .toRows(),
    );
    assert.deepEqual([...actors.parts].sort(), [0, 1, 2, 3]);
    setRunner('native', { workers: true, parallelism: 3, targetPartitionBytes: 1, batchSize: 1000 });
    const three = await onWorkers(() => readParquet(dir).select('id', 'x').toRows());
    assert.deepEqual([...three.parts].sort(), [0, 1, 2, 3]);
  });
});

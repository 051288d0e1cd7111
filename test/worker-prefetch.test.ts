// The embedded runner's prefetch on worker threads: a partition not yet consumed runs ahead of the
// consumer up to its share of a byte budget (prefetchBytes), not only `prefetch` batches, so the
// second worker does not stall; collect() still returns rows in input order; and what is held for
// a slow consumer stays within the budget.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { batchFromWire } from '../src/runners/transfer.ts';
import { sampleRows, tempDir, writeSample } from './helpers.ts';

let dir: string;
before(async () => {
  dir = tempDir();
  // Alternating big (30 batches of 1 000 rows) and small (6 batches) partitions, one file each.
  await writeSample(join(dir, 'a.parquet'), 0, 30_000, 30_000);
  await writeSample(join(dir, 'b.parquet'), 30_000, 6_000, 6_000);
  await writeSample(join(dir, 'c.parquet'), 36_000, 30_000, 30_000);
  await writeSample(join(dir, 'd.parquet'), 66_000, 6_000, 6_000);
});

after(async () => {
  poolTestHooks.onMessage = undefined;
  setRunner('native');
  await shutdownWorkers();
});

/** The partition a worker's message belongs to, by the first id of its batches (files above). */
function partitionOf(firstId: bigint): number {
  return firstId < 30_000n ? 0 : firstId < 36_000n ? 1 : firstId < 66_000n ? 2 : 3;
}

/** Records, per worker task, its batches' partition and when it reported done. */
function recordMessages(): { events: { task: number; kind: 'batch' | 'done'; part?: number; rows?: number }[]; stop(): void } {
  const events: { task: number; kind: 'batch' | 'done'; part?: number; rows?: number }[] = [];
  poolTestHooks.onMessage = (m: FromWorker) => {
    if (m.type === 'batch') {
      const b = batchFromWire(m.wire);
      const id = b.getChild('id')!.get(0) as bigint;
      events.push({ task: m.taskId, kind: 'batch', part: partitionOf(id), rows: b.numRows });
    } else if (m.type === 'done') {
      events.push({ task: m.taskId, kind: 'done' });
    }
  };
  return {
    events,
    stop: () => {
      poolTestHooks.onMessage = undefined;
    },
  };
}

describe('worker prefetch by bytes', () => {
  it('a later partition runs to its end before the consumer reaches it, and collect() keeps input order', async () => {
    const df = () => readParquet(dir).select('id', 'x', col('x').mul(2).alias('y'));
    const want = sampleRows(0, 72_000).map((r) => r.id);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000, prefetch: 2 });
    // Both workers started and warm, so the partitions start together.
    assert.deepEqual(
      ((await df().toRows()) as { id: bigint }[]).map((r) => r.id),
      want,
      'collect() returns rows in input order',
    );
    const rec = recordMessages();
    const ids: bigint[] = [];
    let arrivedBeforeReached = -1;
    try {
      for await (const b of df().stream()) {
        const first = b.getChild('id')!.get(0) as bigint;
        if (partitionOf(first) === 1 && arrivedBeforeReached < 0) arrivedBeforeReached = rec.events.filter((e) => e.kind === 'batch' && e.part === 1).length;
        // A slow consumer of partition 0: 30 batches, 10 ms each.
        if (partitionOf(first) === 0) await new Promise((r) => setTimeout(r, 10));
        ids.push(...(b.getChild('id')!.toArray() as BigInt64Array));
      }
    } finally {
      rec.stop();
    }
    assert.deepEqual(ids, want, 'streamed in input order');
    // Partition 1 has 6 batches, more than `prefetch` (2): all had arrived when the consumer got to it.
    assert.equal(arrivedBeforeReached, 6);
  });

  it('a stalled consumer holds at most its budget: the workers stop once their share is queued', async () => {
    // id and x: 16 000 bytes a batch. A budget of 20 batches over 2 partitions: 10 batches each.
    const perBatch = 16_000;
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000, prefetch: 1, prefetchBytes: 20 * perBatch });
    const rec = recordMessages();
    const it = readParquet(dir).select('id', 'x').stream()[Symbol.asyncIterator]();
    try {
      const first = await it.next();
      assert.equal(first.value?.numRows, 1000);
      // Wait until the workers stop sending (nothing new for 500 ms).
      let seen = -1;
      while (seen !== rec.events.length) {
        seen = rec.events.length;
        await new Promise((r) => setTimeout(r, 500));
      }
      const batches = (p: number): number => rec.events.filter((e) => e.kind === 'batch' && e.part === p).length;
      // Partition 0: the one consumed (1) + 10 queued + 1 in flight at most; partition 1 the same
      // without the consumed one. Before the byte budget partition 1 stopped at `prefetch` (1).
      assert.ok(batches(0) <= 12, `partition 0 sent ${batches(0)} batches`);
      assert.ok(batches(1) >= 6 && batches(1) <= 6, `partition 1 (6 batches) ran to its end: ${batches(1)}`);
      assert.equal(batches(2) + batches(3), 0, 'no third partition starts while two are held');
      // The rest still streams, in order, once the consumer pulls again.
      let rows = first.value!.numRows;
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        rows += r.value.numRows;
      }
      assert.equal(rows, 72_000);
    } finally {
      rec.stop();
      await it.return?.(undefined);
    }
  });

  it('a partition bigger than its share stops at the share while it waits to be consumed', async () => {
    const perBatch = 16_000;
    // Partitions 0 and 1 swapped in size: read c.parquet (30 batches) after b.parquet (6 batches).
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000, prefetch: 1, prefetchBytes: 20 * perBatch });
    const rec = recordMessages();
    const it = readParquet([join(dir, 'b.parquet'), join(dir, 'c.parquet')])
      .select('id', 'x')
      .stream()
      [Symbol.asyncIterator]();
    try {
      await it.next();
      let seen = -1;
      while (seen !== rec.events.length) {
        seen = rec.events.length;
        await new Promise((r) => setTimeout(r, 500));
      }
      const big = rec.events.filter((e) => e.kind === 'batch' && e.part === 2).length;
      assert.ok(big >= 10 && big <= 11, `the waiting 30-batch partition sent ${big} batches: its share (10) plus one in flight`);
    } finally {
      rec.stop();
      await it.return?.(undefined);
    }
  });
});

// Where the embedded runner writes a dataset under `workers: 'auto'` (session 4): a write encodes every
// decoded byte, so it is placed by its decoded bytes, where a read is placed by the bytes it fetches.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { inspectParquet } from '../src/io/parquet/index.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import type { FromWorker } from '../src/runners/protocol.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

describe("writes under workers: 'auto'", () => {
  it('a write whose decoded bytes reach workerThresholdBytes runs its parts on worker threads, though its compressed bytes (what a read weighs) do not', {
    timeout: 120_000,
  }, async () => {
    const dir = tempDir();
    const src = join(dir, 'src.parquet');
    // PLAIN pages of a periodic x compress well: the read is small, the decoded data is not.
    await writeSample(src, 0, 40_000, 10_000, { encoding: 'plain' });
    let compressed = 0;
    let uncompressed = 0;
    for (const rg of inspectParquet(src).rowGroups) {
      for (const c of ['id', 'x']) {
        compressed += rg.columnBytes[c]!.compressed;
        uncompressed += rg.columnBytes[c]!.uncompressed;
      }
    }
    assert.ok(compressed * 1.5 < uncompressed, `compressed ${compressed} vs uncompressed ${uncompressed}`);
    const threshold = Math.ceil((compressed + uncompressed) / 2);
    const df = () => readParquet(src).select('id', double(col('x')).alias('y'));
    setRunner('native', { workers: false });
    const expected = await df().toRows();

    setRunner('native', { workers: 'auto', parallelism: 2, workerThresholdBytes: threshold });
    assert.match(await df().explain(), /2 partition\(s\), parallelism 1 \(in-process\)/, 'a read of the same plan stays in-process');
    const sinks: FromWorker[] = [];
    poolTestHooks.onMessage = (m) => {
      if (m.type === 'sink') sinks.push(m);
    };
    const out = join(dir, 'out');
    try {
      await df().writeParquet(out);
    } finally {
      poolTestHooks.onMessage = undefined;
    }
    assert.equal(sinks.length, 2, 'both parts were written on worker threads');
    const byId = (a: Record<string, unknown>, b: Record<string, unknown>): number => Number((a['id'] as bigint) - (b['id'] as bigint));
    assert.deepEqual((await readParquet(out).toRows()).sort(byId), expected.sort(byId));

    // Under the threshold by both measures: in-process, as before.
    setRunner('native', { workers: 'auto', parallelism: 2, workerThresholdBytes: uncompressed + 1 });
    sinks.length = 0;
    poolTestHooks.onMessage = (m) => {
      if (m.type === 'sink') sinks.push(m);
    };
    try {
      await df().writeParquet(join(dir, 'out2'));
    } finally {
      poolTestHooks.onMessage = undefined;
    }
    assert.equal(sinks.length, 0, 'written in-process');
  });
});

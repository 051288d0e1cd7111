import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { col, readParquet, setRunner, type ProgressEvent } from 'fanout';
import { estimateEtaMs, progressEnabled } from '../src/progress.ts';
import { tagged } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

const script = join(import.meta.dirname, 'fixtures', 'progress-run.ts');

function run(env: Record<string, string | undefined>): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...process.execArgv, script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr };
}

describe('progress', () => {
  it('is off when not a TTY, in CI, or with FANOUT_PROGRESS=0', () => {
    const saved = { ...process.env };
    try {
      process.env['FANOUT_PROGRESS'] = '0';
      assert.equal(progressEnabled(), false);
      delete process.env['FANOUT_PROGRESS'];
      process.env['CI'] = 'true';
      assert.equal(progressEnabled(), false);
    } finally {
      process.env = saved;
    }
    const quiet = run({ CI: 'true', FANOUT_PROGRESS: undefined });
    assert.match(quiet.stdout, /rows=5000/);
    assert.doesNotMatch(quiet.stderr, /partitions/);
  });

  it('shows partitions, rows and UDF counters when forced on', () => {
    const loud = run({ FANOUT_PROGRESS: '1' });
    assert.match(loud.stdout, /rows=5000/);
    assert.match(loud.stderr, /1\/1 partitions/);
    assert.match(loud.stderr, /udf fixtures\.tagged: in 5000 out 5000/);
    assert.match(loud.stderr, /seen=5000/);
  });

  it('calls onProgress after each partition with rows, UDF counters and an ETA (embedded runner)', async () => {
    const f = join(tempDir(), 'progress.parquet');
    await writeSample(f, 0, 400, 100); // 4 row groups
    setRunner('native', { workers: false, targetPartitionBytes: 1 });
    try {
      const events: ProgressEvent[] = [];
      const df = readParquet(f).withColumn('t', tagged(col('category')));
      const rows = await df.toRows({ onProgress: (e) => events.push(e) });
      assert.equal(rows.length, 400);
      assert.deepEqual(
        events.map((e) => e.partitionsDone),
        [1, 2, 3, 4],
      );
      for (const e of events) assert.equal(e.partitionsTotal, 4);
      // Each event carries the counters of exactly the partitions finished so far.
      assert.deepEqual(
        events.map((e) => e.metrics['fixtures.tagged']?.counters['seen']),
        [100, 200, 300, 400],
      );
      assert.deepEqual(
        events.map((e) => e.rows),
        [100, 200, 300, 400],
      );
      assert.equal(events[3]!.etaMs, 0);
      assert.deepEqual(df.metrics['fixtures.tagged']!.counters, events[3]!.metrics['fixtures.tagged']!.counters);
      await assert.rejects(() => df.toRows({ onProgress: 5 as unknown as () => void }), /action option 'onProgress' must be a function/);
    } finally {
      setRunner('native');
    }
  });

  it('estimates the time left from the finished partitions', () => {
    assert.equal(estimateEtaMs(0, 10, 5000), null);
    assert.equal(estimateEtaMs(2, 10, 5000), 20_000);
    assert.equal(estimateEtaMs(10, 10, 5000), 0);
  });
});

// GPU placement without GPUs: FANOUT_NUM_GPUS pretends the machine has four, and each GPU UDF
// instance (a child process) reports the CUDA_VISIBLE_DEVICES it was started with.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, fromArrow, fromColumns, lit, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { countNvidiaSmiGpus, gpuSlots } from '../src/resources.ts';
import { BrokenUdf, cheapStamp, PickyUdf, Probe1, ProbeHalf, ProbeHalf2, SlowOne } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

let dir: string;
before(async () => {
  dir = tempDir();
  for (let i = 0; i < 8; i++) await writeSample(join(dir, `p${i}.parquet`), i * 200, 200, 200);
});
after(async () => {
  delete process.env['FANOUT_NUM_GPUS'];
  setRunner('native');
  await shutdownWorkers();
});

function devicesSeen(log: string): string[] {
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(':')[1]!)
    .sort();
}

describe('GPU instances', () => {
  it('counts GPUs from nvidia-smi -L (output captured on an H200 machine)', () => {
    assert.equal(countNvidiaSmiGpus('GPU 0: NVIDIA H200 (UUID: GPU-be3a0879-9b47-e22c-1f5f-876346ffb4b4)\n'), 1);
    assert.equal(countNvidiaSmiGpus('GPU 0: A (UUID: x)\nGPU 1: A (UUID: y)\n  MIG 1g.10gb Device 0: (UUID: z)\n'), 2);
    assert.equal(countNvidiaSmiGpus(''), 0);
  });

  it('slot planning: whole GPUs are distinct, fractions pack onto a device', () => {
    assert.deepEqual(gpuSlots(1, 4), ['0', '1', '2', '3']);
    assert.deepEqual(gpuSlots(2, 4), ['0,1', '2,3']);
    assert.deepEqual(gpuSlots(0.5, 2), ['0', '0', '1', '1']);
    assert.deepEqual(gpuSlots(0.25, 1, 3), ['0', '0', '0']);
    assert.throws(() => gpuSlots(8, 4), /numGpus 8/);
  });

  it('four numGpus: 1 instances each see a distinct device', async () => {
    process.env['FANOUT_NUM_GPUS'] = '4';
    setRunner('native', { workers: 'auto', targetPartitionBytes: 1 }); // one partition per file: work for every instance
    const log = join(tempDir(), 'probe1.log');
    writeFileSync(log, '');
    const p = new Probe1(log);
    const df = readParquet(dir)
      .withColumn('d', p.probe(col('x')))
      .select('id', 'd');
    // Actor pool: the UDF's 4 instances on 4 devices serve every partition (partitions no longer run in GPU processes).
    assert.match(await df.explain(), /actor pool Probe1\.probe: 4 GPU processes on 4 device\(s\) \(CUDA_VISIBLE_DEVICES 0\|1\|2\|3\)/);
    assert.match(await df.explain(), /UDF Probe1\.probe: cls async, returns utf8, concurrency 4, maxConcurrency 16, numCpus 1, numGpus 1/);
    const rows = await df.toRows();
    assert.equal(rows.length, 1600);
    const seen = devicesSeen(log);
    assert.deepEqual([...new Set(seen)], ['0', '1', '2', '3']);
    assert.equal(seen.length, 4, 'one instance per device');
    assert.ok(rows.every((r) => /^[0-3]:ok$/.test(String(r.d))));
    await shutdownWorkers();
  });

  it('numGpus: 0.5 packs two instances per device', async () => {
    process.env['FANOUT_NUM_GPUS'] = '4';
    const log = join(tempDir(), 'half.log');
    writeFileSync(log, '');
    const p = new ProbeHalf(log);
    await readParquet(dir)
      .withColumn('d', p.probe(col('x')))
      .toRows();
    const seen = devicesSeen(log);
    assert.deepEqual(seen, ['0', '0', '1', '1', '2', '2', '3', '3']);
    await shutdownWorkers();
  });

  it('no GPU: runs on CPU with a warning, or fails with strictResources', async () => {
    process.env['FANOUT_NUM_GPUS'] = '0';
    const log = join(tempDir(), 'cpu.log');
    writeFileSync(log, '');
    const p = new Probe1(log);
    const orig = console.warn;
    const warnings: string[] = [];
    console.warn = (m: string) => {
      warnings.push(m);
    };
    try {
      const rows = await readParquet(dir)
        .withColumn('d', p.probe(col('x')))
        .limit(3)
        .toRows();
      assert.equal(rows.length, 3);
    } finally {
      console.warn = orig;
    }
    assert.ok(warnings.some((w) => /no GPU/.test(w) && /Probe1\.probe/.test(w)));
    setRunner('native', { strictResources: true });
    await assert.rejects(
      () =>
        readParquet(dir)
          .withColumn('d', p.probe(col('x')))
          .toRows(),
      /Probe1\.probe.*GPU/,
    );
  });

  describe('concurrency is an actor pool: N instances serve the whole input', () => {
    async function fourDevices(df: () => ReturnType<typeof readParquet>, rowsWanted: number, spread = true): Promise<void> {
      await shutdownWorkers(); // fresh actors: a clean instance log
      process.env['FANOUT_NUM_GPUS'] = '4';
      const log = join(tempDir(), 'actors.log');
      writeFileSync(log, '');
      const p = new Probe1(log);
      const rows = await df()
        .withColumn('d', p.probe(col('x')))
        .toRows();
      assert.equal(rows.length, rowsWanted);
      const seen = devicesSeen(log);
      assert.deepEqual(seen, ['0', '1', '2', '3'], 'four instances, on four distinct devices');
      // Batches of the one partition went to more than one instance.
      const used = new Set(rows.map((r) => String(r.d).split(':')[0]));
      if (spread) assert.ok(used.size >= 2, `batches served by instances on devices ${[...used].join(',')}`);
      assert.ok([...used].every((d) => ['0', '1', '2', '3'].includes(d!)));
      await shutdownWorkers();
    }

    it('a one-partition Parquet input gets 4 instances on 4 distinct devices', async () => {
      const one = tempDir();
      await writeSample(join(one, 'one.parquet'), 0, 800, 800); // one file, one row group: one partition
      setRunner('native', { batchSize: 50 });
      const df = () => readParquet(one);
      assert.match(
        await df()
          .withColumn('d', new Probe1('/dev/null').probe(col('x')))
          .explain(),
        /Stage 0: 1 partition\(s\)/,
      );
      await fourDevices(df, 800);
    });

    it('an in-memory fromColumns input gets 4 instances on 4 distinct devices', async () => {
      setRunner('native', { batchSize: 50 });
      const xs = Array.from({ length: 800 }, (_, i) => i / 10);
      // fromColumns itself (one batch: one call, one instance used; the four still start, on four devices)...
      await fourDevices(() => fromColumns({ x: xs }) as unknown as ReturnType<typeof readParquet>, 800, false);
      // ... and an in-memory table of 16 batches, spread over the instances.
      const table = new arrow.Table(
        Array.from({ length: 16 }, (_, k) => new arrow.Table({ x: arrow.vectorFromArray(xs.slice(k * 50, k * 50 + 50), new arrow.Float64()) }).batches[0]!),
      );
      await fourDevices(() => fromArrow(table) as unknown as ReturnType<typeof readParquet>, 800, true);
    });

    it('concurrency 2 with numGpus 0.5 puts both instances on one device', async () => {
      await shutdownWorkers();
      process.env['FANOUT_NUM_GPUS'] = '4';
      setRunner('native', {});
      const log = join(tempDir(), 'half2.log');
      writeFileSync(log, '');
      const p = new ProbeHalf2(log);
      const df = readParquet(dir).withColumn('d', p.probe(col('x')));
      assert.match(await df.explain(), /actor pool ProbeHalf2\.probe: 2 GPU processes on 1 device\(s\) \(CUDA_VISIBLE_DEVICES 0\|0\)/);
      const rows = await df.toRows();
      assert.equal(rows.length, 1600);
      assert.deepEqual(devicesSeen(log), ['0', '0']);
      assert.ok(rows.every((r) => String(r.d).startsWith('0:')));
      await shutdownWorkers();
    });

    it('a slow concurrency 1 UDF does not throttle its stage: partitions run at once', async () => {
      delete process.env['FANOUT_NUM_GPUS'];
      const parts = tempDir();
      for (let i = 0; i < 2; i++) await writeSample(join(parts, `s${i}.parquet`), i * 1000, 100, 100);
      setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
      // Warm the partition workers first, so their start-up does not stagger the partitions.
      await readParquet(parts).withColumn('y', col('x')).toRows();
      const log = join(tempDir(), 'stamps.log');
      writeFileSync(log, '');
      const slow = new SlowOne(log, 800);
      const df = readParquet(parts)
        .withColumn('c', cheapStamp(col('id'), lit(log)))
        .withColumn('s', slow.score(col('id')));
      assert.match(await df.explain(), /Stage 0: 2 partition\(s\), parallelism 2 \(worker threads; actor pool SlowOne\.score: 1 worker thread\(s\)\)/);
      const rows = await df.toRows();
      assert.equal(rows.length, 200);
      const lines = readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '));
      const cheap = lines.filter((l) => l[0] === 'cheap').map((l) => Number(l[2]));
      const slowCalls = lines
        .filter((l) => l[0] === 'slow')
        .map((l) => ({ start: Number(l[2]), end: Number(l[3]) }))
        .sort((a, b) => a.start - b.start);
      assert.equal(cheap.length, 2);
      assert.equal(slowCalls.length, 2);
      // One instance: its calls never overlap.
      for (let k = 1; k < slowCalls.length; k++) assert.ok(slowCalls[k]!.start >= slowCalls[k - 1]!.end);
      // Every partition's cheap operator ran before the slow UDF finished its first batch: the
      // partitions ran at once (bounded by concurrency 1, each would wait for the previous one).
      assert.ok(Math.max(...cheap) < slowCalls[0]!.end, `cheap at ${cheap.join(',')}; first slow call ended ${slowCalls[0]!.end}`);
      assert.equal(df.metrics['SlowOne.score']!.rowsIn, 200);
      assert.equal(df.metrics['SlowOne.score']!.calls, 2);
      setRunner('native', { workers: false });
      await shutdownWorkers();
    });

    it('errors from an actor name the UDF, the partition and the row; a failing constructor fails the action', async () => {
      delete process.env['FANOUT_NUM_GPUS'];
      const d = tempDir();
      for (let i = 0; i < 2; i++) await writeSample(join(d, `e${i}.parquet`), i * 200, 200, 200);
      for (const workers of [false, true] as const) {
        // workers: 'auto' (in-process partitions, thread actors) and true (partition threads relay to the actors).
        setRunner('native', { workers: workers ? true : 'auto', parallelism: 2, targetPartitionBytes: 1, batchSize: 50 });
        const df = readParquet(d).withColumn('y', new PickyUdf(360).check(col('id')));
        assert.match(await df.explain(), /actor pool Picky\.check: 2 worker thread\(s\)/);
        await assert.rejects(
          () => df.toRows(),
          (e: Error) => {
            assert.match(e.message, /UDF 'Picky\.check' failed on 1 row\(s\); first at row 160: Error: picky about 360/);
            assert.match(e.message, /partition 1: .*e1\.parquet/);
            return true;
          },
        );
        const okDf = readParquet(d).withColumn('y', new PickyUdf(-1).check(col('id')));
        const ok = await okDf.toRows();
        assert.deepEqual(
          ok.map((r) => r.y),
          ok.map((r) => Number(r.id)),
        );
        // The actors' counts sum into the action's metrics (8 batches of 50 rows, from both partitions).
        assert.equal(okDf.metrics['Picky.check']!.rowsIn, 400);
        assert.equal(okDf.metrics['Picky.check']!.rowsOut, 400);
        await assert.rejects(
          () =>
            readParquet(d)
              .withColumn('y', new BrokenUdf().run(col('x')))
              .toRows(),
          /constructing UDF class for 'Broken\.run': model file missing/,
        );
      }
      setRunner('native', { workers: false });
      await shutdownWorkers();
    });
  });
});

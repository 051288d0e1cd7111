// GPU placement without GPUs: FANOUT_NUM_GPUS pretends the machine has four, and each GPU UDF
// instance (a child process) reports the CUDA_VISIBLE_DEVICES it was started with.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { countNvidiaSmiGpus, gpuSlots } from '../src/resources.ts';
import { Probe1, ProbeHalf } from './fixtures/udfs.ts';
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
  return readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(':')[1]!).sort();
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
    const df = readParquet(dir).withColumn('d', p.probe(col('x'))).select('id', 'd');
    assert.match(await df.explain(), /parallelism 4 \(GPU processes on 4 device\(s\)\)/);
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
    await readParquet(dir).withColumn('d', p.probe(col('x'))).toRows();
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
    console.warn = (m: string) => { warnings.push(m); };
    try {
      const rows = await readParquet(dir).withColumn('d', p.probe(col('x'))).limit(3).toRows();
      assert.equal(rows.length, 3);
    } finally {
      console.warn = orig;
    }
    assert.ok(warnings.some((w) => /no GPU/.test(w) && /Probe1\.probe/.test(w)));
    setRunner('native', { strictResources: true });
    await assert.rejects(() => readParquet(dir).withColumn('d', p.probe(col('x'))).toRows(), /Probe1\.probe.*GPU/);
  });
});

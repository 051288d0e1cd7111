import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, lit, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { slowLogged } from './fixtures/abort-udfs.ts';
import { readStats } from '../src/io/parquet/index.ts';
import { sampleRows, tempDir, writeSample } from './helpers.ts';

let dir: string;
let files: string[];
const PER_FILE = 20_000;

before(async () => {
  dir = tempDir();
  files = [join(dir, 'p0.parquet'), join(dir, 'p1.parquet'), join(dir, 'p2.parquet')];
  for (let i = 0; i < files.length; i++) await writeSample(files[i]!, i * PER_FILE, PER_FILE, 4000);
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

describe('streaming executor', () => {
  it('iterRows yields the first row before the whole input is read', async () => {
    setRunner('native', { workers: false, batchSize: 1000 });
    const before = readStats.rowGroupsRead;
    const it = readParquet(dir).iterRows()[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value?.id, 0n);
    const readSoFar = readStats.rowGroupsRead - before;
    assert.ok(readSoFar <= 1, `only the first row group should have been decoded, saw ${readSoFar}`);
    await it.return?.(undefined);
    assert.ok(readStats.rowGroupsRead - before <= 1, 'stopping early reads nothing more');
  });

  it('worker threads give the same rows, in input order, as in-process execution', async () => {
    const pipeline = () => readParquet(dir).where(col('x').gt(0.3)).withColumn('y', col('x').mul(2).add(1)).select('id', 'y', 'category');
    setRunner('native', { workers: false });
    const local = await pipeline().toRows();
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, prefetch: 2 });
    const parallel = await pipeline().toRows();
    assert.equal(parallel.length, local.length);
    assert.deepEqual(parallel, local);
    const want = sampleRows(0, PER_FILE * 3)
      .filter((r) => r.x > 0.3)
      .map((r) => r.id);
    assert.deepEqual(
      parallel.map((r) => r.id),
      want,
    );
  });

  it('preserveOrder: false gives the same rows, in any order, in-process and on workers', async () => {
    const want = sampleRows(0, PER_FILE * 3)
      .filter((r) => r.x > 0.7)
      .map((r) => r.id);
    for (const workers of [false, true]) {
      setRunner('native', { workers, parallelism: 2, targetPartitionBytes: 1, preserveOrder: false });
      const got = (await readParquet(dir).where(col('x').gt(0.7)).select('id').toRows()).map((r) => r.id as bigint);
      assert.deepEqual(
        [...got].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
        want,
      );
      const limited = await readParquet(dir).select('id').limit(10).toRows();
      assert.equal(limited.length, 10);
    }
  });

  it('a global limit stops the workers early and returns exactly n rows', async () => {
    // A limit one batch covers runs in-process even under workers: true; batches of 5 rows keep
    // limit(7) on the workers this test is about.
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 5 });
    const limited = () => readParquet(dir).where(col('category').eq('gamma')).select('id').limit(7);
    assert.match(await limited().explain(), /worker threads/);
    const rows = await limited().toRows();
    assert.deepEqual(
      rows.map((r) => r.id),
      [2n, 6n, 10n, 14n, 18n, 22n, 26n],
    );
  });

  it('parallel writeParquet writes one file per partition and reads back identically', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    const out = join(tempDir(), 'out');
    const written = await readParquet(dir).where(col('id').lt(30_000n)).select('id', 'x').writeParquet(out);
    const parts = await written.toRows();
    assert.ok(parts.length > 1, 'several part files');
    const back = await readParquet(out).toRows();
    assert.deepEqual(
      back.map((r) => r.id),
      sampleRows(0, 30_000).map((r) => r.id),
    );
  });

  it('an error in a worker names the file and rejects the action', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    const bad = join(tempDir(), 'broken.parquet');
    const bytes = Buffer.from(readFileSync(files[0]!));
    bytes.fill(0, 100, Math.floor(bytes.length * 0.6));
    writeFileSync(bad, bytes);
    await assert.rejects(() => readParquet([files[1]!, bad]).collect(), /broken\.parquet/);
  });
});

const lines = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(f: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !f(); i++) await sleep(10);
  assert.ok(f(), `timed out waiting for ${what}`);
}

describe('abort on worker threads', () => {
  it('an aborted action rejects at once and its workers stop calling UDFs', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 100 });
    const log = join(dir, 'worker-calls.log');
    writeFileSync(log, '');
    const ac = new AbortController();
    const pending = readParquet(dir)
      .withColumn('y', slowLogged(col('x'), lit(log)))
      .collect({ signal: ac.signal });
    await until(() => lines(log) >= 6, 'six UDF calls');
    ac.abort();
    const atAbort = lines(log);
    const t0 = Date.now();
    await assert.rejects(pending, (e: Error) => e.name === 'AbortError' && /partition \d+: .*p\d\.parquet/.test(e.message));
    assert.ok(Date.now() - t0 < 1000, 'rejects without waiting for the partitions to finish');
    await sleep(400);
    // At most the call in flight on each of the two workers; 600 batches would follow unaborted.
    assert.ok(lines(log) <= atAbort + 2, `calls after the abort: ${lines(log) - atAbort}`);
    // The pool is usable afterwards: the cancelled tasks freed their workers.
    const n = await readParquet(dir).where(col('x').gt(0.5)).count();
    assert.ok(n > 0);
  });

  it('an aborted parallel write stops its workers and commits nothing', async () => {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 100 });
    const log = join(dir, 'worker-write-calls.log');
    writeFileSync(log, '');
    const out = join(tempDir(), 'out');
    const ac = new AbortController();
    const pending = readParquet(dir)
      .withColumn('y', slowLogged(col('x'), lit(log)))
      .writeParquet(out, { signal: ac.signal });
    await until(() => lines(log) >= 6, 'six UDF calls');
    ac.abort();
    const atAbort = lines(log);
    await assert.rejects(pending, { name: 'AbortError' });
    await sleep(400);
    assert.ok(lines(log) <= atAbort + 2, `calls after the abort: ${lines(log) - atAbort}`);
    assert.equal(existsSync(out), false, 'nothing committed: the output directory is removed again');
  });
});

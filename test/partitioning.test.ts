// Partitioning control: row-range reads below a row group, repartition(n) / intoPartitions(n),
// partition sizes from the projected columns, UDF plans split to the parallelism, and no worker
// threads for a small pushed limit.
import assert from 'node:assert/strict';
import * as arrow from 'apache-arrow';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { col, DataType, fromColumns, readCsv, readParquet, setRunner } from 'fanout';
import { planRun } from '../src/aws/run.ts';
import { inspectParquet, readParquetBatches, readStats, writeParquetFile } from '../src/io/parquet/index.ts';
import { buildPhysicalPlan } from '../src/physical.ts';
import { optimize } from '../src/optimizer.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

let dir: string;
let threeGroups: string; // 3000 rows, row groups of 1000
let oneGroup: string; // 200k rows in one row group
let wide: string; // id + a wide text column, one row group

before(async () => {
  dir = tempDir();
  threeGroups = join(dir, 'three.parquet');
  await writeSample(threeGroups, 0, 3000, 1000);
  oneGroup = join(dir, 'one.parquet');
  // Every column dictionary-encoded (the writer's default before issue 12): the sizes below assume the
  // unique id column is wide; 'auto' would delta-encode it to almost nothing.
  await writeSample(oneGroup, 0, 200_000, 200_000, { encoding: 'dictionary' });
  wide = join(dir, 'wide.parquet');
  const n = 20_000;
  const id = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
  // Incompressible-ish text so the text column dominates the row group's bytes.
  const text = Array.from({ length: n }, (_, i) => `${i.toString(36)}-${(i * 2654435761).toString(16)}-${'abcdefghij'.repeat(20)}-${(i * 40503) % 9973}`);
  const table = new arrow.Table({ id: arrow.makeVector(id), text: arrow.vectorFromArray(text, new arrow.Utf8()) });
  await writeParquetFile(wide, table.batches, { rowGroupSize: n, compression: 'none' });
});

async function ids(path: string, opts: Parameters<typeof readParquetBatches>[1]): Promise<bigint[]> {
  const out: bigint[] = [];
  for await (const b of readParquetBatches(path, opts)) out.push(...(b.getChild('id')!.toArray() as BigInt64Array));
  return out;
}

async function partitionRows<R extends object>(df: { iterPartitions(): AsyncGenerator<{ toRows(): Promise<R[]> }> }): Promise<R[][]> {
  const parts: R[][] = [];
  for await (const p of df.iterPartitions()) parts.push(await p.toRows());
  return parts;
}

describe('row-range reads below a row group', () => {
  it('decodes only rows [start, end) of one row group', async () => {
    const got = await ids(threeGroups, { rowGroups: [1], rows: { start: 10, end: 15 }, columns: ['id'] });
    assert.deepEqual(got, [1010n, 1011n, 1012n, 1013n, 1014n]);
    const before = readStats.rowsRead;
    const tail = await ids(oneGroup, { rowGroups: [0], rows: { start: 199_990, end: 200_000 }, columns: ['id', 'x'] });
    assert.deepEqual(
      tail,
      Array.from({ length: 10 }, (_, i) => BigInt(199_990 + i)),
    );
    assert.equal(readStats.rowsRead - before, 10, 'only the range is imported');
    // No columns (count): the range's row count.
    let rows = 0;
    for await (const b of readParquetBatches(threeGroups, { rowGroups: [2], rows: { start: 0, end: 7 }, columns: [] })) rows += b.numRows;
    assert.equal(rows, 7);
  });

  it('refuses a range outside its row groups, naming the file; a range may span the selected row groups', async () => {
    await assert.rejects(
      ids(threeGroups, { rowGroups: [0], rows: { start: 5, end: 1001 } }),
      /row range \[5, 1001\) out of range for row group 0 of .*three\.parquet \(1000 rows\)/,
    );
    await assert.rejects(
      ids(threeGroups, { rowGroups: [0, 1], rows: { start: 0, end: 2001 } }),
      /row range \[0, 2001\) out of range for row groups 0,1 of .*three\.parquet \(2000 rows\)/,
    );
    // Rows counted over the selected row groups in order: 995..1004 crosses from group 0 into group 1.
    assert.equal((await ids(threeGroups, { rowGroups: [0, 1], rows: { start: 995, end: 1005 } })).length, 10);
  });
});

describe('repartition(n) / intoPartitions(n)', () => {
  before(() => setRunner('native', { workers: false }));

  it('splits below a row group into n partitions of contiguous rows, in order', async () => {
    const all = await readParquet(threeGroups).select('id').toRows();
    const parts = await partitionRows(readParquet(threeGroups).select('id').intoPartitions(4));
    assert.deepEqual(
      parts.map((p) => p.length),
      [750, 750, 750, 750],
    );
    assert.deepEqual(parts.flat(), all, 'order preserved');
    const seven = await partitionRows(readParquet(threeGroups).select('id').repartition(7));
    assert.deepEqual(
      seven.map((p) => p.length),
      [428, 429, 428, 429, 428, 429, 429],
    );
    assert.deepEqual(seven.flat(), all);
  });

  it('merges row groups into fewer partitions', async () => {
    const other = join(dir, 'other.parquet');
    await writeSample(other, 3000, 3000, 1000);
    const parts = await partitionRows(readParquet([threeGroups, other]).select('id').intoPartitions(2));
    assert.deepEqual(
      parts.map((p) => p.length),
      [3000, 3000],
    );
    const one = await partitionRows(readParquet(threeGroups).select('id').repartition(1));
    assert.deepEqual(
      one.map((p) => p.length),
      [3000],
    );
  });

  it('gives exactly n partitions even with fewer rows, and the rows of a filter below', async () => {
    const three = await readParquet(threeGroups).limit(3).collect();
    const parts = await partitionRows(three.intoPartitions(5));
    assert.deepEqual(
      parts.map((p) => p.length),
      [0, 1, 0, 1, 1],
    );
    // A filter above intoPartitions is pushed below it (into the scan): partitions hold the kept rows.
    const kept = await partitionRows(readParquet(threeGroups).intoPartitions(3).where(col('n').eq(1)).select('id'));
    assert.equal(kept.length, 3);
    assert.deepEqual(kept.flat(), await readParquet(threeGroups).where(col('n').eq(1)).select('id').toRows());
  });

  it('splits in-memory data by row ranges', async () => {
    const df = fromColumns({ v: Float64Array.from({ length: 10 }, (_, i) => i) });
    const parts = await partitionRows(df.repartition(3));
    assert.deepEqual(
      parts.map((p) => p.map((r) => r.v)),
      [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8, 9],
      ],
    );
  });

  it('runs UDFs over the partitions and equals the unsplit result', async () => {
    const df = readParquet(oneGroup)
      .withColumn('y', double(col('x')))
      .select('id', 'y');
    const want = await df.toRows();
    const parts = await partitionRows(df.intoPartitions(3));
    assert.equal(parts.length, 3);
    assert.deepEqual(parts.flat(), want);
  });

  it('refuses bad arguments clearly', () => {
    const df = readParquet(threeGroups);
    assert.throws(() => df.intoPartitions(0), /intoPartitions\(n\) needs a positive integer, got 0/);
    assert.throws(() => df.repartition(2.5), /repartition\(n\) needs a positive integer, got 2.5/);
    // With keys it is the hash exchange (test/relational.test.ts), not a row-range split.
    assert.equal(df.repartition(4, 'category').plan.type, 'repartition');
    assert.equal(df.repartition(4).plan.type, 'intoPartitions');
    assert.throws(
      () => buildPhysicalPlan(optimize(df.limit(5).repartition(2).plan), { targetPartitionBytes: 1 << 20 }),
      /repartition\(2\) after limit\(\) is not supported/,
    );
  });

  it('groups CSV files (never splits them) and says so when asked for more partitions than files', async () => {
    const csv = join(dir, 'a.csv');
    await fromColumns({ v: Float64Array.from([1, 2, 3]) }).writeCsv(join(dir, 'csvout'));
    void csv;
    const df = readCsv(join(dir, 'csvout'));
    const files = (await import('node:fs')).readdirSync(join(dir, 'csvout')).filter((f) => f.endsWith('.csv')).length;
    assert.equal((await partitionRows(df.intoPartitions(1))).length, 1);
    await assert.rejects(
      partitionRows(df.intoPartitions(files + 1)),
      new RegExp(`repartition\\(${files + 1}\\) over ${files} CSV file\\(s\\): CSV sources split by file only`),
    );
  });
});

describe('partition sizes from the projected columns', () => {
  it("explain's bytes to read are the projected columns', not the whole row group's", async () => {
    setRunner('native', { workers: false });
    const whole = /([\d.]+) (KiB|MiB) to read/.exec(await readParquet(wide).explain())!;
    const one = /([\d.]+) (KiB|MiB) to read/.exec(await readParquet(wide).select('id').explain())!;
    const kib = (m: RegExpExecArray): number => Number(m[1]) * (m[2] === 'MiB' ? 1024 : 1);
    // id: 20k int64 (plain, uncompressed): about 160 KiB; the text column is ~4 MiB.
    assert.ok(kib(one) < 200, `one narrow column reads ${one[0]}`);
    assert.ok(kib(whole) > 10 * kib(one), `all columns read ${whole[0]}, the id column ${one[0]}`);
  });

  it('packs partitions by projected bytes: a narrow read is one partition, the whole rows split below the row group', () => {
    const rg = inspectParquet(oneGroup).rowGroups[0]!;
    const xBytes = rg.columnBytes['x']!.uncompressed;
    assert.ok(rg.uncompressedBytes > 3 * xBytes, 'the x column is a small part of the row group');
    const target = Math.ceil(xBytes * 1.5);
    const narrow = buildPhysicalPlan(optimize(readParquet(oneGroup).select('x').plan), { targetPartitionBytes: target });
    const all = buildPhysicalPlan(optimize(readParquet(oneGroup).plan), { targetPartitionBytes: target });
    assert.equal(narrow.partitions.length, 1);
    assert.ok(all.partitions.length >= 2, `whole rows split below the row group: ${all.partitions.length} partitions`);
    const src = all.partitions[1]!.source;
    assert.ok(src.kind === 'parquet' && src.rows && src.rows.start > 0, 'a partition is a row range of the row group');
  });
});

describe('UDF plans get at least as many partitions as there is parallelism', () => {
  it('a single-row-group 200k-row file with a UDF splits (embedded and AWS planning) and its output equals the unsplit run', async () => {
    const df = () =>
      readParquet(oneGroup)
        .withColumn('y', double(col('x')))
        .select('id', 'y');
    setRunner('native', { workers: false });
    const unsplit = await df().toRows();
    assert.match(await df().explain(), /Stage 0: 1 partition\(s\)/);

    setRunner('native', { parallelism: 2, workers: 'auto' });
    assert.match(await df().explain(), /Stage 0: 2 partition\(s\)/);
    assert.equal(await countPartitions(df()), 2);
    assert.deepEqual(await df().toRows(), unsplit);
    // Without UDFs nothing is split for parallelism's sake.
    assert.match(await readParquet(oneGroup).select('id', 'x').explain(), /Stage 0: 1 partition\(s\)/);

    const plan = planRun(df().plan, { pipeline: null });
    assert.ok(plan.sources.length >= 2, `AWS planning: ${plan.sources.length} partitions`);
    assert.equal(planRun(readParquet(oneGroup).select('id').plan, { pipeline: null }).sources.length, 1);
  });
  it('row groups of uneven size split into exactly `parallelism` partitions when whole groups balance (not n + 1 greedy ones)', async () => {
    // 8 one-group files of 1000 and 1100 rows: packing greedily to half the bytes made 3 partitions
    // (3100, 3200 and 2000 rows), so on 2 workers one ran 5/8 of the work. Split by bytes: 4200 / 4100.
    const uneven = join(dir, 'uneven');
    mkdirSync(uneven);
    const sizes = [1000, 1100, 1000, 1100, 1000, 1100, 1000, 1000];
    let start = 0;
    for (const [i, n] of sizes.entries()) {
      await writeSample(join(uneven, `f${i}.parquet`), start, n, n);
      start += n;
    }
    const df = () => readParquet(uneven).select('id', double(col('x')).alias('y'));
    setRunner('native', { workers: false });
    const unsplit = await df().toRows();
    setRunner('native', { parallelism: 2, workers: 'auto' });
    assert.match(await df().explain(), /Stage 0: 2 partition\(s\)/);
    const parts = await partitionRows(df());
    assert.deepEqual(
      parts.map((p) => p.length),
      [4200, 4100],
    );
    assert.deepEqual(parts.flat(), unsplit);
    setRunner('native', { workers: false });
  });
});

async function countPartitions(df: { iterPartitions(): AsyncGenerator<unknown> }): Promise<number> {
  let n = 0;
  for await (const _ of df.iterPartitions()) n++;
  return n;
}

describe('a small pushed limit runs without worker threads', () => {
  it('limit(1) stays in-process where the scan alone would start workers', async () => {
    setRunner('native', { parallelism: 2, workers: 'auto', workerThresholdBytes: 1, targetPartitionBytes: 1 });
    const df = readParquet(threeGroups, { columns: ['id', 'x'] });
    assert.match(await df.explain(), /worker threads/, 'the whole scan uses workers');
    const limited = df.limit(1);
    assert.match(await limited.explain(), /parallelism 1 \(in-process\)/);
    const before = readStats.rowGroupsRead;
    assert.deepEqual(await limited.toRows(), [{ id: 0n, x: 0 }]);
    assert.equal(readStats.rowGroupsRead - before, 1, 'one row group decoded, in this thread');
    setRunner('native', { workers: false });
  });
});

void DataType;

describe('plans without UDFs are split for worker threads when big enough to repay the hand-off', () => {
  let big: string; // id + x, 600k rows (~9.6 MB of projected pages), 4 row groups
  let small: string; // the same columns, 100k rows (~1.6 MB)
  const write = async (path: string, n: number, group: number): Promise<void> => {
    const id = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
    // Distinct values: no dictionary, so the pages are 16 bytes a row.
    const x = Float64Array.from({ length: n }, (_, i) => (i * 0.6180339887) % 1);
    const table = new arrow.Table({ id: arrow.makeVector(id), x: arrow.makeVector(x) });
    // Dictionary-encoded like the fixtures above: partition sizes come from the chunks' uncompressed
    // bytes, and 'auto' would delta-encode the sorted id column to a fraction of its decoded size.
    await writeParquetFile(path, table.batches, { rowGroupSize: group, encoding: 'dictionary' });
  };
  before(async () => {
    big = join(dir, 'big-idx.parquet');
    await write(big, 600_000, 150_000);
    small = join(dir, 'small-idx.parquet');
    await write(small, 100_000, 25_000);
  });

  it('workers: true splits a one-partition scan into `parallelism` partitions of whole row groups, and keeps the rows in order', async () => {
    const df = () => readParquet(big).where(col('x').gt(0.5)).select('id', col('x').mul(2).add(1).alias('y'));
    setRunner('native', { workers: false });
    assert.match(await df().explain(), /Stage 0: 1 partition\(s\), parallelism 1 \(in-process\)/);
    const expected = await df().toRows();
    setRunner('native', { workers: true, parallelism: 2 });
    assert.match(await df().explain(), /Stage 0: 2 partition\(s\), parallelism 2 \(worker threads\)/);
    assert.equal(await countPartitions(df()), 2);
    assert.deepEqual(await df().toRows(), expected);
    // The same under 'auto' once the scan passes the worker threshold, and not below it.
    setRunner('native', { workers: 'auto', parallelism: 2, workerThresholdBytes: 1 });
    assert.match(await df().explain(), /Stage 0: 2 partition\(s\), parallelism 2 \(worker threads\)/);
    setRunner('native', { workers: 'auto', parallelism: 2, workerThresholdBytes: 1 << 30 });
    assert.match(await df().explain(), /Stage 0: 1 partition\(s\), parallelism 1 \(in-process\)/);
    setRunner('native', { workers: false });
  });

  it('each split partition carries at least 4 MiB: more parallelism does not cut smaller pieces, a small scan stays whole', async () => {
    setRunner('native', { workers: true, parallelism: 8 });
    // ~9.6 MB: two partitions of at least 4 MiB, not eight.
    assert.match(await readParquet(big).select('id', 'x').explain(), /Stage 0: 2 partition\(s\), parallelism 2 \(worker threads\)/);
    assert.match(await readParquet(small).select('id', 'x').explain(), /Stage 0: 1 partition\(s\), parallelism 1 \(in-process\)/);
    // A pushed limit reads few rows: nothing to split.
    assert.match(await readParquet(big).select('id', 'x').limit(100_000).explain(), /Stage 0: 1 partition\(s\)/);
    setRunner('native', { workers: false });
  });
});

describe('a small pushed limit runs without worker threads even under workers: true', () => {
  it('limit(1) with workers: true plans and runs in-process, decoding one row group', async () => {
    setRunner('native', { parallelism: 2, workers: true, targetPartitionBytes: 1 });
    const df = readParquet(threeGroups, { columns: ['id', 'x'] });
    assert.match(await df.explain(), /3 partition\(s\), parallelism 2 \(worker threads\)/, 'the whole scan uses workers');
    const limited = df.limit(1);
    assert.match(await limited.explain(), /parallelism 1 \(in-process\)/);
    const before = readStats.rowGroupsRead;
    assert.deepEqual(await limited.toRows(), [{ id: 0n, x: 0 }]);
    // readStats counts this thread's reads only: a worker's decode would not show here.
    assert.equal(readStats.rowGroupsRead - before, 1, 'one row group decoded, in this thread');
    // A limit past one batch still uses the workers.
    assert.match(await df.limit(70_000).explain(), /parallelism 2 \(worker threads\)/);
    setRunner('native', { workers: false });
  });
});

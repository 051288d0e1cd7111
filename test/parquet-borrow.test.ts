// Phase one of an aggregation over borrowed views of parquet-wasm's memory (readParquetBorrowed,
// borrowedPhaseOne) instead of copies. A view is valid only until the next call into parquet-wasm
// (memory.grow detaches it) or the free of its stream (the memory is reused), so these tests grow
// wasm memory after every borrowed batch (borrowTuning.growPagesAfterVisit): anything that read a
// view after its visit would read a detached buffer (no values) and the results would differ from
// DuckDB's. They also pin which plans take the borrowed path and which fall back to copies.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { col, DataType, Field, fromRecords, func, readParquet, Schema, setRunner, type DataFrame } from 'fanout';
import { readParquetBatches, readStats } from '../src/io/parquet/index.ts';
import { borrowTuning, readParquetBorrowed } from '../src/io/parquet/read.ts';
import { getWasm } from '../src/io/parquet/wasm.ts';
import { FileBlob } from '../src/io/store/file-blob.ts';
import { phaseOneTuning } from '../src/aggregate/operator.ts';
import { tempDir } from './helpers.ts';
import { seededRandom } from './random.ts';
import { canonRows } from './canon-rows.ts';
import { openDuckDb, type DuckDb } from './duckdb.ts';

let duckDb: DuckDb | undefined;
let dir: string;
const N = 40_000;

const canon = (rows: readonly Record<string, unknown>[]): string[] => canonRows(rows, { sortLists: true });

function duck(sql: string): Promise<Record<string, unknown>[]> {
  return duckDb!.query(sql);
}
const facts = (): string => `read_parquet('${join(dir, 'facts')}/*.parquet')`;
const F = (): DataFrame => readParquet(join(dir, 'facts'));
const ONE_THREAD = { workers: false, parallelism: 1, batchSize: 4096 } as const;

before(async () => {
  dir = tempDir('fanout-borrow-');
  const { rnd, ri, maybe, pick } = seededRandom(29);
  const words = Array.from({ length: 300 }, (_, i) => `w${i}`);
  const rows = Array.from({ length: N }, (_, r) => ({
    k: rnd() < 0.3 ? 'hot' : maybe(() => pick(words), 0.05),
    g: maybe(() => ri(0, 40), 0.1),
    g8: ri(0, 7),
    v: maybe(() => Math.round(rnd() * 1e6) / 100, 0.15),
    w: rnd(),
    i: maybe(() => BigInt(ri(-1e6, 1e6)), 0.1),
    s: maybe(() => pick(words), 0.2),
    b: maybe(() => rnd() < 0.5, 0.1),
    u: r,
  }));
  const schema = new Schema([
    new Field('k', DataType.utf8(), true),
    new Field('g', DataType.int32(), true),
    new Field('g8', DataType.int32(), false),
    new Field('v', DataType.float64(), true),
    new Field('w', DataType.float64(), false),
    new Field('i', DataType.int64(), true),
    new Field('s', DataType.utf8(), true),
    new Field('b', DataType.bool(), true),
    new Field('u', DataType.int32(), false),
  ]);
  setRunner('native', ONE_THREAD);
  // Two files of one row group each; batches of 4096 rows: ~10 batches per row group.
  for (let p = 0; p < 2; p++) await fromRecords(rows.slice((p * N) / 2, ((p + 1) * N) / 2), schema).writeParquet(join(dir, 'facts'), { mode: 'append' });
  await fromRecords(rows, schema).writeParquet(join(dir, 'hive'), { partitionBy: ['g8'] });
  duckDb = await openDuckDb();
});

afterEach(() => {
  borrowTuning.growPagesAfterVisit = 0;
  phaseOneTuning.borrowViews = true;
  setRunner('native', ONE_THREAD);
});

after(() => {
  duckDb?.close();
  setRunner('native');
});

/** Rows of a batch as JSON (bigints as strings), read while the batch is valid. */
function rowsOf(b: arrow.RecordBatch): string[] {
  return b.toArray().map((r) => JSON.stringify(r.toJSON(), (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
}

describe('readParquetBorrowed', () => {
  it('hands over views of wasm memory, valid through the visit: every type reads as the copying reader, with memory grown after each batch', async () => {
    const path = join(dir, 'facts', (await import('node:fs')).readdirSync(join(dir, 'facts')).find((f) => f.endsWith('.parquet'))!);
    const want: string[] = [];
    for await (const b of readParquetBatches(path, { batchSize: 1000 })) want.push(...rowsOf(b));
    const inst = await getWasm();
    borrowTuning.growPagesAfterVisit = 1;
    const got: string[] = [];
    const kept: arrow.RecordBatch[] = [];
    let views = 0;
    let visits = 0;
    let yields = 0;
    const pagesBefore = inst.pw.wasmMemory().buffer.byteLength >> 16;
    for await (const _ of readParquetBorrowed(
      path,
      { batchSize: 1000 },
      (b, borrowed) => {
        visits++;
        assert.equal(borrowed, true);
        // The float column without nulls is a view of the decoder's memory, not a copy.
        if (b.getChild('w')!.data[0]!.values.buffer === inst.pw.wasmMemory().buffer) views++;
        got.push(...rowsOf(b));
        kept.push(b);
      },
      { borrow: true },
    ))
      yields++;
    assert.equal(visits, 20);
    assert.equal(views, 20, 'every batch borrowed its float column');
    assert.equal(yields, 1, 'one yield per row group');
    assert.deepEqual(got, want);
    assert.ok(inst.pw.wasmMemory().buffer.byteLength >> 16 >= pagesBefore + 20, 'memory grew after each batch');
    // What the growth guards against: a view kept past its visit no longer holds the values.
    assert.equal(kept[0]!.getChild('w')!.data[0]!.values.length, 0, 'a kept view is detached');
  });

  it('a row range (a partition smaller than a row group) borrows exactly its rows', async () => {
    const path = join(dir, 'facts', (await import('node:fs')).readdirSync(join(dir, 'facts')).find((f) => f.endsWith('.parquet'))!);
    const opts = { batchSize: 1000, rows: { start: 1234, end: 15_001 }, columns: ['u', 'k', 'v'] };
    const want: string[] = [];
    for await (const b of readParquetBatches(path, opts)) want.push(...rowsOf(b));
    borrowTuning.growPagesAfterVisit = 1;
    const got: string[] = [];
    let borrowedBatches = 0;
    for await (const _ of readParquetBorrowed(
      path,
      opts,
      (b, borrowed) => {
        if (borrowed) borrowedBatches++;
        got.push(...rowsOf(b));
      },
      { borrow: true },
    )) {
      // nothing to hand on
    }
    assert.equal(got.length, 15_001 - 1234);
    assert.ok(borrowedBatches >= 10);
    assert.deepEqual(got, want);
  });

  it('mode.borrow cleared by the visitor: the next batches are owned copies that outlive the read', async () => {
    const path = join(dir, 'facts', (await import('node:fs')).readdirSync(join(dir, 'facts')).find((f) => f.endsWith('.parquet'))!);
    borrowTuning.growPagesAfterVisit = 1;
    const mode = { borrow: true };
    const kinds: boolean[] = [];
    const kept: arrow.RecordBatch[] = [];
    const want: string[] = [];
    for await (const b of readParquetBatches(path, { batchSize: 5000, columns: ['w', 'k'] })) want.push(...rowsOf(b));
    for await (const _ of readParquetBorrowed(
      path,
      { batchSize: 5000, columns: ['w', 'k'] },
      (b, borrowed) => {
        kinds.push(borrowed);
        if (!borrowed) kept.push(b);
        mode.borrow = false;
      },
      mode,
    )) {
      // nothing to hand on
    }
    assert.deepEqual(kinds, [true, false, false, false]);
    assert.deepEqual(kept.flatMap(rowsOf), want.slice(5000), 'copies read back after the read (and after memory grew) hold their rows');
  });
});

describe('FileBlob reads into unzeroed buffers', () => {
  it('a read, and slices of a prefetched range, hand over exactly their bytes as plain arrays and exact ArrayBuffers', async () => {
    const { writeFileSync } = await import('node:fs');
    const path = join(dir, 'blob.bin');
    const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7 + 3) & 0xff);
    writeFileSync(path, bytes);
    const blob = new FileBlob(path, bytes.length);
    try {
      const whole = await blob.slice(1000, 201_000).bytes();
      assert.equal(whole.constructor, Uint8Array, 'a plain Uint8Array (a Buffer slices as a view)');
      assert.deepEqual(whole, bytes.subarray(1000, 201_000));
      blob.prefetch([[10_000, 250_000]], 'p');
      // A slice inside the prefetched range: its own ArrayBuffer with exactly its bytes (parquet-wasm copies it).
      const ab = await blob.slice(20_000, 20_100).arrayBuffer();
      assert.equal(ab.byteLength, 100);
      assert.deepEqual(new Uint8Array(ab), bytes.subarray(20_000, 20_100));
      const across = await blob.slice(5_000, 260_000).arrayBuffer();
      assert.deepEqual(new Uint8Array(across), bytes.subarray(5_000, 260_000));
    } finally {
      await blob.close();
    }
  });
});

/** A query with and without borrowed views, memory grown after every borrowed batch. */
async function both(q: () => DataFrame): Promise<{ on: Record<string, unknown>[]; off: Record<string, unknown>[]; borrowed: number }> {
  borrowTuning.growPagesAfterVisit = 1;
  phaseOneTuning.borrowViews = false;
  const off = await q().toRows();
  phaseOneTuning.borrowViews = true;
  const before = readStats.batchesBorrowed;
  const on = await q().toRows();
  return { on, off, borrowed: readStats.batchesBorrowed - before };
}

describe('phase one over borrowed batches', () => {
  it('one int32 key (the fused path): sum, mean, min, max, count; rows identical to the copying path and DuckDB’s', async () => {
    const q = (): DataFrame =>
      F()
        .groupBy('g8')
        .agg(
          col('w').sum().alias('sw'),
          col('w').mean().alias('mw'),
          col('w').min().alias('lo'),
          col('w').max().alias('hi'),
          col('v').count().alias('cv'),
          col('v').sum().alias('sv'),
        );
    const { on, off, borrowed } = await both(q);
    assert.ok(borrowed >= 10, `phase one borrowed its batches (${borrowed})`);
    assert.deepEqual(on, off, 'bit-identical to the copying path');
    const want = await duck(`SELECT g8, sum(w) sw, avg(w) mw, min(w) lo, max(w) hi, count(v) cv, sum(v) sv FROM ${facts()} GROUP BY g8`);
    assert.deepEqual(canon(on), canon(want));
  });

  it('a string key with nulls; strings, bools, int64 and countDistinct as aggregates', async () => {
    const q = (): DataFrame =>
      F()
        .groupBy('k')
        .agg(
          col('v').sum().alias('sv'),
          col('i').sum().alias('si'),
          col('s').min().alias('mins'),
          col('s').max().alias('maxs'),
          col('s').countDistinct().alias('cds'),
          col('b').max().alias('maxb'),
          col('g').count().alias('cg'),
        );
    const { on, off, borrowed } = await both(q);
    assert.ok(borrowed >= 10, `phase one borrowed its batches (${borrowed})`);
    assert.deepEqual(on, off);
    const want = await duck(
      `SELECT k, sum(v) sv, sum(i) si, min(s) mins, max(s) maxs, count(DISTINCT s) cds, max(b) maxb, count(g) cg FROM ${facts()} GROUP BY k`,
    );
    assert.deepEqual(canon(on), canon(want));
  });

  it('a filter and a computed column before the groupBy (two keys), a whole-frame agg, and distinct', async () => {
    const grouped = (): DataFrame =>
      F().where(col('w').gt(0.3)).withColumn('w2', col('w').mul(2)).groupBy('g', 'k').agg(col('w2').sum().alias('s'), col('i').min().alias('mi'));
    let r = await both(grouped);
    assert.ok(r.borrowed >= 10, `borrowed (${r.borrowed})`);
    assert.deepEqual(r.on, r.off);
    assert.deepEqual(canon(r.on), canon(await duck(`SELECT g, k, sum(w * 2) s, min(i) mi FROM ${facts()} WHERE w > 0.3 GROUP BY g, k`)));

    r = await both(() => F().agg(col('v').sum().alias('s'), col('k').count().alias('c'), col('s').countDistinct().alias('d')));
    assert.ok(r.borrowed >= 10);
    assert.deepEqual(r.on, r.off);
    assert.deepEqual(canon(r.on), canon(await duck(`SELECT sum(v) s, count(k) c, count(DISTINCT s) d FROM ${facts()}`)));

    // Distinct over every column it keeps: keys alone, no aggregate.
    r = await both(() => F().select('g8', 'k').distinct());
    assert.ok(r.borrowed >= 10, `distinct borrowed (${r.borrowed})`);
    assert.deepEqual(canon(r.on), canon(r.off));
    assert.deepEqual(canon(r.on), canon(await duck(`SELECT DISTINCT g8, k FROM ${facts()}`)));
  });

  it('mostly distinct keys: phase one passes rows on as copies (the reader stops borrowing); exact', async () => {
    const q = (): DataFrame => F().groupBy('u').agg(col('w').sum().alias('s'), col('k').max().alias('mk'));
    const { on, off, borrowed } = await both(q);
    assert.ok(borrowed >= 1 && borrowed < 10, `borrowed only until the keys showed mostly distinct (${borrowed})`);
    assert.deepEqual(canon(on), canon(off));
    assert.deepEqual(canon(on), canon(await duck(`SELECT u, sum(w) s, max(k) mk FROM ${facts()} GROUP BY u`)));
  });

  it('falls back to copies: list and first (they keep their input), a UDF before the groupBy, hive partition columns, a limit', async () => {
    const bucket = func((k: string | null) => (k === null ? 'none' : k.slice(0, 2)), { returnDtype: DataType.utf8(), name: 'borrow_bucket' });
    const cases: [string, () => DataFrame, string][] = [
      [
        'list, first',
        () => F().withColumn('f', col('g8').mul(3)).groupBy('g8').agg(col('g').list().alias('lg'), col('f').first().alias('ff')),
        `SELECT g8, list(g) lg, first(g8 * 3) ff FROM ${facts()} GROUP BY g8`,
      ],
      [
        // The other columns' first row of each key: first() keeps gathered rows.
        'distinct on a subset',
        () => F().select('g8', 'k', 'w').withColumn('w', col('g8').mul(5)).distinct('g8', 'k'),
        `SELECT DISTINCT g8, k, g8 * 5 w FROM ${facts()}`,
      ],
      [
        'UDF',
        () =>
          F()
            .withColumn('kb', bucket(col('k')))
            .groupBy('kb')
            .agg(col('w').sum().alias('s')),
        `SELECT CASE WHEN k IS NULL THEN 'none' ELSE k[1:2] END kb, sum(w) s FROM ${facts()} GROUP BY kb`,
      ],
      ['hive', () => readParquet(join(dir, 'hive')).groupBy('g8').agg(col('w').sum().alias('s')), `SELECT g8, sum(w) s FROM ${facts()} GROUP BY g8`],
    ];
    for (const [name, q, sql] of cases) {
      const { on, off, borrowed } = await both(q);
      assert.equal(borrowed, 0, `${name}: no borrowed batch`);
      assert.deepEqual(canon(on), canon(off), name);
      assert.deepEqual(canon(on), canon(await duck(sql)), name);
    }
    const limited = await both(() => F().limit(5000).groupBy('g8').agg(col('w').sum().alias('s')));
    assert.equal(limited.borrowed, 0, 'limit: no borrowed batch');
    assert.deepEqual(limited.on, limited.off);
  });

  it('several small files packed into one partition borrow too', async () => {
    setRunner('native', { ...ONE_THREAD, targetPartitionBytes: 64 << 20 });
    const q = (): DataFrame => F().groupBy('g8').agg(col('w').sum().alias('s'), col('k').countDistinct().alias('d'));
    const plan = await q().explain();
    assert.match(plan, /Stage 0: 1 partition/, plan);
    assert.match(plan, /ScanParquet: 2 file/, plan);
    const { on, off, borrowed } = await both(q);
    assert.ok(borrowed >= 10, `borrowed (${borrowed})`);
    assert.deepEqual(on, off);
    assert.deepEqual(canon(on), canon(await duck(`SELECT g8, sum(w) s, count(DISTINCT k) d FROM ${facts()} GROUP BY g8`)));
  });

  it('on 2 threads (phase one shared with this thread): this thread borrows; the result is DuckDB’s', async () => {
    setRunner('native', { workers: true, parallelism: 2, batchSize: 4096 });
    const { on, off, borrowed } = await both(() => F().groupBy('g8').agg(col('w').sum().alias('s'), col('v').count().alias('c')));
    assert.ok(borrowed >= 1, `this thread borrowed (${borrowed})`);
    assert.deepEqual(canon(on), canon(off));
    assert.deepEqual(canon(on), canon(await duck(`SELECT g8, sum(w) s, count(v) c FROM ${facts()} GROUP BY g8`)));
  });
});

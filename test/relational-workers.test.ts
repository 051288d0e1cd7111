// Two-phase aggregation across worker threads: phase one (partial aggregation) runs in each input
// partition on its worker, and only partial states cross to the calling thread, which merges them.
// Results are compared with DuckDB and with the in-process run; where phase one ran is read from
// relationalStats(), whose counters are per thread (the calling thread never counts a worker's rows).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, DataType, Field, fromRecords, readParquet, relationalStats, resetRelationalStats, Schema, setRunner, type DataFrame } from 'fanout';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { tempDir } from './helpers.ts';
import { seededRandom } from './random.ts';
import { aggregateTuning } from '../src/runners/embedded.ts';
import { canonRows as canon } from './canon-rows.ts';
import { openDuckDb, type DuckDb } from './duckdb.ts';

let duckDb: DuckDb | undefined;
let dir: string;
const N = 40_000;
// The wide file: WIDE rows in row groups of GROUP rows (one partition each).
const WIDE = 200_000;
const GROUP = 50_000;
const WIDE_PARTS = WIDE / GROUP;
const R = 10_000;
const wideU = new Int32Array(WIDE);
const wideR = new Int32Array(WIDE);
const wideV = new Float64Array(WIDE);

const WORKERS = { workers: true, parallelism: 2, targetPartitionBytes: 64 << 10, batchSize: 4096 } as const;
const IN_PROCESS = { workers: false, targetPartitionBytes: 64 << 10, batchSize: 4096 } as const;

function duck(sql: string): Promise<Record<string, unknown>[]> {
  return duckDb!.query(sql);
}

const facts = (): string => `read_parquet('${join(dir, 'facts')}/*.parquet')`;
const wide = (): string => `read_parquet('${join(dir, 'wide.parquet')}')`;
const F = (): DataFrame => readParquet(join(dir, 'facts'));
const W = (): DataFrame => readParquet(join(dir, 'wide.parquet'));

before(async () => {
  dir = tempDir('fanout-relational-workers-');
  const { rnd, ri, maybe, pick } = seededRandom(29);
  const words = Array.from({ length: 500 }, (_, i) => `w${i}`);
  const rows = Array.from({ length: N }, (_, n) => ({
    k: rnd() < 0.3 ? 'hot' : maybe(() => pick(words), 0.05),
    g: maybe(() => ri(0, 40), 0.1),
    v: maybe(() => Math.round(rnd() * 1e6) / 100, 0.15),
    i: maybe(() => BigInt(ri(-1e6, 1e6)), 0.1),
    s: maybe(() => pick(words), 0.2),
    b: maybe(() => rnd() < 0.5, 0.1),
    n,
  }));
  const schema = new Schema([
    new Field('k', DataType.utf8(), true),
    new Field('g', DataType.int32(), true),
    new Field('v', DataType.float64(), true),
    new Field('i', DataType.int64(), true),
    new Field('s', DataType.utf8(), true),
    new Field('b', DataType.bool(), true),
    new Field('n', DataType.int32(), false),
  ]);
  setRunner('native', IN_PROCESS);
  for (let p = 0; p < 2; p++) await fromRecords(rows.slice((p * N) / 2, ((p + 1) * N) / 2), schema).writeParquet(join(dir, 'facts'), { mode: 'append' });
  // u: a distinct key per row; r: R keys, each about WIDE / R times in every partition.
  for (let i = 0; i < WIDE; i++) {
    wideU[i] = i;
    wideR[i] = (i * 7919) % R;
    wideV[i] = (i % 97) / 4;
  }
  function* batches(): Generator<arrow.RecordBatch> {
    for (let s = 0; s < WIDE; s += 25_000) {
      const e = s + 25_000;
      yield new arrow.Table({
        u: arrow.makeVector(wideU.subarray(s, e)),
        r: arrow.makeVector(wideR.subarray(s, e)),
        v: arrow.makeVector(wideV.subarray(s, e)),
      }).batches[0]!;
    }
  }
  await writeParquetFile(join(dir, 'wide.parquet'), batches(), { rowGroupSize: GROUP });
  duckDb = await openDuckDb();
});

after(() => {
  duckDb?.close();
  setRunner('native');
});

const everyAggregate = (df: DataFrame): DataFrame =>
  df
    .groupBy('g')
    .agg(
      col('v').sum().alias('sv'),
      col('i').sum().alias('si'),
      col('v').mean().alias('mv'),
      col('v').min().alias('minv'),
      col('i').max().alias('maxi'),
      col('s').min().alias('mins'),
      col('s').max().alias('maxs'),
      col('v').count().alias('cv'),
      col('s').countDistinct().alias('cds'),
      col('b').max().alias('maxb'),
      col('n').first().alias('fn'),
      col('n').list().alias('ln'),
    );

/** Each group's list(n) is in input order (n grows with the row), across partitions. */
function assertListsInInputOrder(got: Record<string, unknown>[]): void {
  for (const r of got) {
    const ns = (r.ln as number[]).map(Number);
    assert.deepEqual(
      ns,
      [...ns].sort((a, b) => a - b),
      `list() keeps input order across partitions (group ${String(r.g)})`,
    );
  }
}

describe('phase one of an aggregation runs in the worker threads', () => {
  // On 2 threads the calling thread runs every other partition's phase one by default (tested
  // below); these tests pin the path where every partition runs on the workers.
  before(() => {
    aggregateTuning.sharedPhaseOne = false;
  });
  after(() => {
    aggregateTuning.sharedPhaseOne = true;
  });

  it('groupBy, every aggregate: only partial states reach the calling thread; the result is DuckDB’s', async () => {
    setRunner('native', WORKERS);
    resetRelationalStats();
    const got = await everyAggregate(F()).toRows();
    const st = relationalStats();
    assert.equal(st.partialRowsAggregated, 0, `the calling thread ran no phase one (${JSON.stringify(st)})`);
    assert.equal(st.rawRowsAggregated, 0, 'no raw row reached the calling thread');
    assert.ok(st.stateRowsMerged > 0, 'partial states were merged');
    // 42 groups (41 values and null) per partial state: far fewer rows crossed than the N input rows.
    assert.ok(st.stateRowsMerged < N / 20, `${st.stateRowsMerged} state rows crossed for ${N} input rows`);
    const want = await duck(
      `SELECT g, sum(v) sv, sum(i) si, avg(v) mv, min(v) minv, max(i) maxi, min(s) mins, max(s) maxs, count(v) cv, count(DISTINCT s) cds, max(b) maxb, min(n) fn, list(n) ln FROM ${facts()} GROUP BY g`,
    );
    // first(n) of each group is its smallest n (n is the row number, files read in order).
    assert.deepEqual(canon(got, { sortLists: true }), canon(want, { sortLists: true }));

    // In-process, phase one runs on this thread over every row; the result is the same, lists in the same order.
    setRunner('native', IN_PROCESS);
    resetRelationalStats();
    const local = await everyAggregate(F()).toRows();
    assert.equal(relationalStats().partialRowsAggregated, N, 'in-process: phase one here, over every row');
    assert.deepEqual(canon(got), canon(local), 'workers and in-process agree, lists in input order');
    assertListsInInputOrder(got);
  });

  it('distinct: phase one in the workers, first row of each key kept', async () => {
    setRunner('native', WORKERS);
    resetRelationalStats();
    const pairs = await F().select('k', 'g').distinct().toRows();
    const byG = await F().distinct('g').toRows();
    const st = relationalStats();
    assert.equal(st.partialRowsAggregated, 0, `no phase one here (${JSON.stringify(st)})`);
    assert.equal(st.rawRowsAggregated, 0);
    assert.ok(st.stateRowsMerged > 0 && st.stateRowsMerged < (2 * N) / 3, `${st.stateRowsMerged} state rows`);
    assert.deepEqual(canon(pairs), canon(await duck(`SELECT DISTINCT k, g FROM ${facts()}`)));
    // The kept row of each g is its first in input order: the one with the smallest n.
    const firstRows = await duck(`SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY g ORDER BY n) rn FROM ${facts()}) WHERE rn = 1`);
    assert.deepEqual(canon(byG), canon(firstRows));
  });

  it('mostly distinct keys: a partition passes its rows on after a sample; results stay right and in order', async () => {
    setRunner('native', WORKERS);
    resetRelationalStats();
    const got = await W().groupBy('u').agg(col('v').sum().alias('s'), col('v').first().alias('f'), col('u').count().alias('c')).toRows();
    const st = relationalStats();
    assert.equal(got.length, WIDE);
    assert.equal(st.partialRowsAggregated, 0);
    // Each partition aggregates a sample (the first 32k-odd rows), sees mostly distinct keys and sends the rest as rows.
    assert.ok(st.rawRowsAggregated > 0 && st.rawRowsAggregated < WIDE, `raw rows ${st.rawRowsAggregated}`);
    assert.equal(st.rawRowsAggregated + st.stateRowsMerged, WIDE, 'every row crossed once, as a state or as itself');
    for (const r of got) {
      const u = r.u as number;
      assert.equal(r.s, wideV[u]);
      assert.equal(r.f, wideV[u]);
      assert.equal(Number(r.c), 1);
    }
  });

  it("workers 'auto': an aggregation's input takes the worker threads once big enough decoded, unless statistics show mostly distinct keys", async () => {
    setRunner('native', { workerThresholdBytes: 256 << 10, parallelism: 2, batchSize: 4096 });
    try {
      // r: R values in WIDE rows (statistics bound the groups to R), 3.2 MB decoded, 200 KB-odd encoded.
      const byR = W().groupBy('r').agg(col('v').sum().alias('s'));
      assert.match(await byR.explain(), /Stage 0: 2 partition\(s\), parallelism 2 \(worker threads\)/);
      resetRelationalStats();
      assert.equal((await byR.toRows()).length, R);
      let st = relationalStats();
      assert.equal(st.partialRowsAggregated, 0, 'phase one ran in the workers');
      assert.ok(st.stateRowsMerged > 0 && st.stateRowsMerged <= 2 * R, `${st.stateRowsMerged} state rows`);
      // u: statistics say WIDE distinct values in WIDE rows: nothing to reduce, so no threads to feed every row to.
      const byU = W().groupBy('u').agg(col('v').sum().alias('s'));
      assert.match(await byU.explain(), /Stage 0: 1 partition\(s\), parallelism 1 \(in-process\)/);
      resetRelationalStats();
      assert.equal((await byU.toRows()).length, WIDE);
      st = relationalStats();
      assert.ok(st.partialRowsAggregated > 0, 'phase one ran on this thread');
    } finally {
      setRunner('native', WORKERS);
    }
  });

  it('a worker’s partial table is flushed at its share of the memory budget; the merge is still exact', async () => {
    const budget = 2 << 20; // 2 workers: each partial table flushes at 256 KiB
    setRunner('native', { ...WORKERS, memoryBudgetBytes: budget });
    try {
      resetRelationalStats();
      const got = await W()
        .groupBy('r')
        .agg(col('v').sum().alias('s'), col('v').count().alias('c'), col('u').first().alias('f'), col('u').list().alias('l'))
        .toRows();
      const st = relationalStats();
      assert.equal(got.length, R);
      assert.equal(st.partialRowsAggregated, 0);
      assert.equal(st.rawRowsAggregated, 0, 'repeated keys: phase one kept aggregating');
      // Without flushes each partition would send at most R states.
      assert.ok(st.stateRowsMerged > R * WIDE_PARTS, `flushed: ${st.stateRowsMerged} state rows > ${R * WIDE_PARTS}`);
      const want = new Map<number, { s: number; c: number; l: number[] }>();
      for (let i = 0; i < WIDE; i++) {
        let w = want.get(wideR[i]!);
        if (!w) want.set(wideR[i]!, (w = { s: 0, c: 0, l: [] }));
        w.s += wideV[i]!;
        w.c++;
        w.l.push(i);
      }
      for (const r of got) {
        const w = want.get(r.r as number)!;
        assert.ok(Math.abs((r.s as number) - w.s) < 1e-6, `sum of key ${String(r.r)}`);
        assert.equal(Number(r.c), w.c);
        assert.equal(r.f, w.l[0], 'first() across flushes and partitions');
        assert.deepEqual(r.l, w.l, 'list() in input order across flushes and partitions');
      }
      const duckSum = await duck(`SELECT sum(v) s FROM ${wide()}`);
      assert.ok(Math.abs(got.reduce((n, r) => n + (r.s as number), 0) - Number(duckSum[0]!.s)) < 1e-3);
    } finally {
      setRunner('native', WORKERS);
    }
  });
});

describe('phase one shared with the calling thread on 2 threads', () => {
  it('groupBy, every aggregate: this thread runs some partitions’ phase one, a worker the others; rows identical to workers alone and to DuckDB', async () => {
    setRunner('native', WORKERS);
    const plan = everyAggregate(F());
    const parts = Number(/Stage 0: (\d+) partition\(s\), parallelism 2 \(worker threads\)/.exec(await plan.explain())?.[1]);
    assert.ok(parts >= 2, `at least 2 partitions (${parts})`);
    aggregateTuning.sharedPhaseOne = false;
    const alone = await plan.toRows();
    aggregateTuning.sharedPhaseOne = true;
    resetRelationalStats();
    const got = await plan.toRows();
    const st = relationalStats();
    // Partitions 0, 2, ... here: some but not all rows went through a partial table on this thread.
    assert.ok(st.partialRowsAggregated > 0 && st.partialRowsAggregated < N, `phase one here over ${st.partialRowsAggregated} of ${N} rows`);
    assert.equal(st.rawRowsAggregated, 0, 'no raw row reached the final table');
    assert.ok(st.stateRowsMerged > 0 && st.stateRowsMerged < N / 20, `${st.stateRowsMerged} state rows merged for ${N} input rows`);
    // Same partitions, same merge order: the same rows bit for bit (float sums, first(), list() order).
    const byG = (rows: Record<string, unknown>[]): Record<string, unknown>[] => [...rows].sort((a, b) => Number(a.g ?? -1) - Number(b.g ?? -1));
    assert.deepEqual(byG(got), byG(alone));
    const want = await duck(
      `SELECT g, sum(v) sv, sum(i) si, avg(v) mv, min(v) minv, max(i) maxi, min(s) mins, max(s) maxs, count(v) cv, count(DISTINCT s) cds, max(b) maxb, min(n) fn, list(n) ln FROM ${facts()} GROUP BY g`,
    );
    assert.deepEqual(canon(got, { sortLists: true }), canon(want, { sortLists: true }));
    assertListsInInputOrder(got);
  });

  it('distinct: phase one on both threads, the first row of each key kept', async () => {
    setRunner('native', WORKERS);
    resetRelationalStats();
    const pairs = await F().select('k', 'g').distinct().toRows();
    const byG = await F().distinct('g').toRows();
    const st = relationalStats();
    assert.ok(st.partialRowsAggregated > 0 && st.partialRowsAggregated < 2 * N, `phase one here over ${st.partialRowsAggregated} rows`);
    assert.equal(st.rawRowsAggregated, 0);
    assert.deepEqual(canon(pairs), canon(await duck(`SELECT DISTINCT k, g FROM ${facts()}`)));
    const firstRows = await duck(`SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY g ORDER BY n) rn FROM ${facts()}) WHERE rn = 1`);
    assert.deepEqual(canon(byG), canon(firstRows));
  });

  it('keys that statistics show mostly distinct: phase one stays on the workers (this thread merges what they pass on)', async () => {
    setRunner('native', WORKERS);
    resetRelationalStats();
    const got = await W().groupBy('u').agg(col('v').sum().alias('s')).toRows();
    const st = relationalStats();
    assert.equal(got.length, WIDE);
    assert.equal(st.partialRowsAggregated, 0, `no phase one here (${JSON.stringify(st)})`);
    assert.equal(st.rawRowsAggregated + st.stateRowsMerged, WIDE, 'every row crossed once, as a state or as itself');
    for (const r of got) assert.equal(r.s, wideV[r.u as number]);
  });

  it('a whole-frame agg and a flushed partial table: exact, and phase one ran on both threads', async () => {
    setRunner('native', { ...WORKERS, memoryBudgetBytes: 2 << 20 });
    try {
      resetRelationalStats();
      const [total] = await W().agg(col('v').sum().alias('s'), col('u').count().alias('c'), col('u').first().alias('f')).toRows();
      let st = relationalStats();
      assert.ok(st.partialRowsAggregated > 0 && st.partialRowsAggregated < WIDE, `phase one here over ${st.partialRowsAggregated} of ${WIDE} rows`);
      let sum = 0;
      for (let i = 0; i < WIDE; i++) sum += wideV[i]!;
      assert.ok(Math.abs((total!.s as number) - sum) < 1e-6);
      assert.equal(Number(total!.c), WIDE);
      assert.equal(total!.f, 0);
      resetRelationalStats();
      const got = await W().groupBy('r').agg(col('v').count().alias('c'), col('u').list().alias('l')).toRows();
      st = relationalStats();
      assert.equal(got.length, R);
      assert.equal(st.rawRowsAggregated, 0);
      assert.ok(st.partialRowsAggregated > 0 && st.partialRowsAggregated < WIDE, `phase one here over ${st.partialRowsAggregated} rows`);
      // Without flushes each partition would send at most R states.
      assert.ok(st.stateRowsMerged > R * WIDE_PARTS, `flushed: ${st.stateRowsMerged} state rows > ${R * WIDE_PARTS}`);
      const want = new Map<number, number[]>();
      for (let i = 0; i < WIDE; i++) {
        const l = want.get(wideR[i]!) ?? [];
        l.push(i);
        want.set(wideR[i]!, l);
      }
      for (const r of got) {
        const l = want.get(r.r as number)!;
        assert.equal(Number(r.c), l.length);
        assert.deepEqual(r.l, l, 'list() in input order across flushes and partitions');
      }
    } finally {
      setRunner('native', WORKERS);
    }
  });
});

// Issue 13's "Done when", checked three ways on ONE generated data set (nulls in every column, a
// skewed key, a key with 1499 distinct values): each query runs on the embedded runner, through the
// offline harness (Step Functions, Lambda handlers, S3 shuffle) and in DuckDB, and all three must
// give the same rows. test/relational.test.ts compares the embedded runner with DuckDB and
// test/relational-cloud.test.ts the harness with the embedded runner, on different data; this file
// closes the gaps between them: every aggregate (first() and string min/max included) by a skewed key
// and by many keys, every aggregate over the whole frame, distinct, multi-key sorts, the six join
// kinds partitioned and broadcast, and concat, all against DuckDB through the harness too.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, type DataFrame, DataType, Field, fromRecords, readParquet, Schema, setRunner, shutdownWorkers } from 'fanout';
import { type LocalCloud, startLocalCloud } from 'fanout/local';
import { tableFromIPC } from 'apache-arrow';
import { getS3Object, listS3 } from '../src/io/s3/index.ts';
import { tempDir } from './helpers.ts';
import { seededRandom } from './random.ts';
import { openDuckDb, type DuckDb } from './duckdb.ts';

let duckDb: DuckDb | undefined;
let cloud: LocalCloud;
let dir: string;
const N = 4000;

/** Rows normalised for comparison: bigints as numbers, lists sorted (as JSON), keys in name order. */
function normalise(rows: readonly Record<string, unknown>[]): [string, unknown][][] {
  const norm = (v: unknown): unknown => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'bigint') return Number(v);
    if (Array.isArray(v))
      return v
        .map(norm)
        .map((x) => JSON.stringify(x))
        .sort();
    return v;
  };
  return rows.map((r) =>
    Object.keys(r)
      .sort()
      .map((k): [string, unknown] => [k, norm(r[k])]),
  );
}

/** Sort key of a normalised row: floats rounded, so rows that differ only in a sum's last bits sort alike. */
const sortKey = (r: [string, unknown][]): string =>
  JSON.stringify(r.map(([k, v]) => [k, typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v]));

/**
 * Asserts equal rows (in order when `ordered`): floats within 1e-9 relative (sums and means over
 * other partitionings differ in the last bits), everything else exactly.
 */
function assertSameRows(got: readonly Record<string, unknown>[], want: readonly Record<string, unknown>[], ordered: boolean, what: string): void {
  assert.equal(got.length, want.length, `${what}: row count`);
  const g = normalise(got);
  const w = normalise(want);
  if (!ordered) {
    g.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
    w.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
  }
  for (let i = 0; i < g.length; i++) {
    const a = g[i]!;
    const b = w[i]!;
    const close =
      a.length === b.length &&
      a.every(([k, v], j) => {
        const [k2, v2] = b[j]!;
        if (k !== k2) return false;
        if (typeof v === 'number' && typeof v2 === 'number') return v === v2 || Math.abs(v - v2) <= 1e-9 * Math.max(1, Math.abs(v), Math.abs(v2));
        return JSON.stringify(v) === JSON.stringify(v2);
      });
    if (!close) assert.fail(`${what}: row ${i} differs\n  got  ${JSON.stringify(a)}\n  want ${JSON.stringify(b)}`);
  }
}

const facts = (): string => `read_parquet('${join(dir, 'facts')}/*.parquet')`;
const dims = (): string => `read_parquet('${join(dir, 'dims')}/*.parquet')`;
const F = (): DataFrame => readParquet(join(dir, 'facts'));
const D = (): DataFrame => readParquet(join(dir, 'dims'));

before(async () => {
  dir = tempDir('fanout-three-way-');
  const { rnd, ri, maybe, pick } = seededRandom(1313);
  const words = Array.from({ length: 400 }, (_, i) => `w${i}`);
  const rows = Array.from({ length: N }, (_, n) => ({
    id: BigInt(n),
    // Skew: 30% of the rows share 'hot'; 5% null.
    k: rnd() < 0.3 ? 'hot' : maybe(() => pick(words), 0.05),
    // Many keys: 1499 distinct values, each in rows far apart (other partitions), 10% null.
    kk: maybe(() => BigInt((n * 37) % 1499), 0.1),
    g: maybe(() => ri(0, 30), 0.1),
    v: maybe(() => Math.round(rnd() * 1e6) / 100, 0.15),
    i: maybe(() => BigInt(ri(-1e6, 1e6)), 0.1),
    s: maybe(() => pick(words), 0.2),
    b: maybe(() => rnd() < 0.5, 0.1),
  }));
  const schema = new Schema([
    new Field('id', DataType.int64(), false),
    new Field('k', DataType.utf8(), true),
    new Field('kk', DataType.int64(), true),
    new Field('g', DataType.int32(), true),
    new Field('v', DataType.float64(), true),
    new Field('i', DataType.int64(), true),
    new Field('s', DataType.utf8(), true),
    new Field('b', DataType.bool(), true),
  ]);
  setRunner('native', { workers: false, targetPartitionBytes: 16 << 10 });
  for (let p = 0; p < 2; p++)
    await fromRecords(rows.slice((p * N) / 2, ((p + 1) * N) / 2), schema).writeParquet(join(dir, 'facts'), { mode: 'append', parquet: { rowGroupSize: 400 } });
  const dimRows = Array.from({ length: 300 }, (_, j) => ({ k: j % 37 === 0 ? null : `w${j + 200}`, g: maybe(() => ri(0, 40), 0.1), label: `L${j}` }));
  dimRows.push({ k: 'hot', g: 1, label: 'hot1' }, { k: 'hot', g: 2, label: 'hot2' });
  await fromRecords(
    dimRows,
    new Schema([new Field('k', DataType.utf8(), true), new Field('g', DataType.int32(), true), new Field('label', DataType.utf8(), true)]),
  ).writeParquet(join(dir, 'dims'));
  duckDb = await openDuckDb();
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
});

after(async () => {
  duckDb?.close();
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

/**
 * The query's rows on the embedded runner (workers on, small partitions: two-phase), through the
 * harness (several map partitions, 3 reduce partitions) and from DuckDB; asserts all three agree.
 */
async function threeWay(q: () => DataFrame, sql: string, opts: { ordered?: boolean; aws?: Record<string, number> } = {}): Promise<Record<string, unknown>[]> {
  setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 16 << 10 });
  let embedded: Record<string, unknown>[];
  try {
    embedded = await q().toRows();
  } finally {
    setRunner('native', { workers: false });
  }
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 6 << 10, shufflePartitions: 3, ...opts.aws });
  let serverless: Record<string, unknown>[];
  try {
    serverless = await q().toRows();
  } finally {
    setRunner('native', { workers: false });
  }
  const duck = await duckDb!.query(sql);
  assertSameRows(embedded, duck, opts.ordered === true, `embedded = DuckDB (${sql})`);
  assertSameRows(serverless, duck, opts.ordered === true, `harness = DuckDB (${sql})`);
  return duck;
}

/** The harness's explain() of a query (with the same settings as threeWay). */
async function awsExplain(q: () => DataFrame, aws: Record<string, number> = {}): Promise<string> {
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 6 << 10, shufflePartitions: 3, ...aws });
  try {
    return await q().explain();
  } finally {
    setRunner('native', { workers: false });
  }
}

describe('groupBy / agg: embedded = harness = DuckDB', () => {
  it('the harness runs these as a shuffle over several map partitions', async () => {
    const text = await awsExplain(() => F().groupBy('k').agg(col('v').sum().alias('sv')));
    const maps = Number(/Stage 0: lambda, (\d+) partition\(s\)/.exec(text)?.[1]);
    assert.ok(maps >= 3, text);
    assert.match(text, /Stage 1: lambda, 3 partition\(s\)[\s\S]*reads: bucket p of stage 0's \d+ map partition\(s\), HashAggregate \(final\)/, text);
  });

  it('the map side aggregates partially: its bucket files hold one row per key per map partition, not the input rows', async () => {
    const runs = async (): Promise<Set<string>> =>
      new Set((await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/`)).objects.map((o) => o.key.split('/')[1]!));
    const before = await runs();
    const groups = await threeWay(
      () => F().groupBy('k').agg(col('v').sum().alias('sv'), col('v').mean().alias('mv'), col('s').countDistinct().alias('cds')),
      `SELECT k, sum(v) sv, avg(v) mv, count(DISTINCT s) cds FROM ${facts()} GROUP BY k`,
    );
    const fresh = [...(await runs())].filter((id) => !before.has(id));
    assert.equal(fresh.length, 1);
    const buckets = (await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/${fresh[0]}/stage-0/shuffle/`)).objects.filter((o) => o.key.endsWith('.arrow'));
    const perMap = new Map<string, number>();
    for (const o of buckets) {
      const t = tableFromIPC(await getS3Object(`s3://${cloud.runnerOptions.workBucket}/${o.key}`));
      const m = o.key.split('/').at(-2)!;
      perMap.set(m, (perMap.get(m) ?? 0) + t.numRows);
      // Partial states, not rows: the key, then each aggregate's state (a mean's sum and count).
      assert.ok(!t.schema.fields.some((f) => f.name === 'id' || f.name === 'g'), t.schema.fields.map((f) => f.name).join(', '));
    }
    assert.ok(perMap.size >= 3, `${perMap.size} map partitions`);
    let total = 0;
    for (const n of perMap.values()) {
      assert.ok(n <= groups.length, `a map partition wrote ${n} rows for ${groups.length} keys`);
      total += n;
    }
    assert.ok(total < N / 2, `${total} partial rows for ${N} input rows`);
  });

  it('every aggregate (string and bool min/max too) by a skewed string key with nulls', async () => {
    const rows = await threeWay(
      () =>
        F()
          .groupBy('k')
          .agg(
            col('v').sum().alias('sv'),
            col('g').sum().alias('sg'),
            col('i').sum().alias('si'),
            col('v').mean().alias('mv'),
            col('v').min().alias('minv'),
            col('i').max().alias('maxi'),
            col('s').min().alias('mins'),
            col('s').max().alias('maxs'),
            col('b').min().alias('minb'),
            col('b').max().alias('maxb'),
            col('v').count().alias('cv'),
            col('s').countDistinct().alias('cds'),
            col('g').list().alias('lg'),
            col('id').first().alias('fid'),
          ),
      // Rows are in id order in the files, so first(id) in row order is the group's smallest id.
      `SELECT k, sum(v) sv, sum(g) sg, sum(i) si, avg(v) mv, min(v) minv, max(i) maxi, min(s) mins, max(s) maxs, min(b) minb, max(b) maxb, count(v) cv, count(DISTINCT s) cds, list(g) lg, min(id) fid FROM ${facts()} GROUP BY k`,
    );
    assert.ok(rows.length > 300, `${rows.length} groups`);
    assert.ok(
      rows.some((r) => r['k'] === null),
      'a null key is a group',
    );
  });

  it('every aggregate by a key with 1499 distinct values (nulls too), and first() of a value fixed per group', async () => {
    const rows = await threeWay(
      () =>
        F()
          .withColumn('kk2', col('kk').mul(2))
          .groupBy('kk')
          .agg(
            col('v').sum().alias('sv'),
            col('v').mean().alias('mv'),
            col('i').min().alias('mi'),
            col('s').max().alias('ms'),
            col('id').count().alias('n'),
            col('k').countDistinct().alias('ck'),
            col('g').list().alias('lg'),
            col('kk2').first().alias('f2'),
          ),
      `SELECT kk, sum(v) sv, avg(v) mv, min(i) mi, max(s) ms, count(id) n, count(DISTINCT k) ck, list(g) lg, first(kk * 2) f2 FROM ${facts()} GROUP BY kk`,
    );
    assert.ok(rows.length > 1400, `${rows.length} groups`);
  });

  it('several keys (int and string, both with nulls)', async () => {
    await threeWay(
      () => F().groupBy('g', 'k').agg(col('v').count().alias('n'), col('i').min().alias('mi'), col('s').first().alias('fs'), col('b').max().alias('mb')),
      // first(s) in row order: DuckDB's first() over the rows ordered by id (the files' order).
      `SELECT g, k, count(v) n, min(i) mi, first(s ORDER BY id) fs, max(b) mb FROM ${facts()} GROUP BY g, k`,
    );
  });

  it('df.agg over the whole frame: every aggregate, and over no rows', async () => {
    await threeWay(
      () =>
        F().agg(
          col('v').sum().alias('sv'),
          col('i').sum().alias('si'),
          col('v').mean().alias('mv'),
          col('v').min().alias('minv'),
          col('v').max().alias('maxv'),
          col('s').min().alias('mins'),
          col('s').max().alias('maxs'),
          col('v').count().alias('cv'),
          col('k').count().alias('ck'),
          col('s').countDistinct().alias('cds'),
          col('id').first().alias('fid'),
          col('g').list().alias('lg'),
        ),
      `SELECT sum(v) sv, sum(i) si, avg(v) mv, min(v) minv, max(v) maxv, min(s) mins, max(s) maxs, count(v) cv, count(k) ck, count(DISTINCT s) cds, min(id) fid, list(g) lg FROM ${facts()}`,
    );
    await threeWay(
      () => F().where(col('g').gt(1000)).agg(col('v').sum().alias('s'), col('v').count().alias('c'), col('v').min().alias('m'), col('v').first().alias('f')),
      `SELECT sum(v) s, count(v) c, min(v) m, first(v) f FROM ${facts()} WHERE g > 1000`,
    );
  });
});

describe('distinct, sort, concat: embedded = harness = DuckDB', () => {
  it('distinct over a subset and over whole rows', async () => {
    await threeWay(() => F().select('k', 'g').distinct(), `SELECT DISTINCT k, g FROM ${facts()}`);
    await threeWay(() => F().select('kk', 'b').distinct(), `SELECT DISTINCT kk, b FROM ${facts()}`);
  });

  it('sorts: multi-key, desc, nulls first and last (row by row)', async () => {
    await threeWay(
      () =>
        F()
          .select('id', 'g', 's', 'v')
          .sort(['g', 's', 'id'], { desc: [true, false, false], nullsFirst: [true, false, false] }),
      `SELECT id, g, s, v FROM ${facts()} ORDER BY g DESC NULLS FIRST, s ASC NULLS LAST, id ASC`,
      { ordered: true },
    );
    await threeWay(
      () =>
        F()
          .select('id', 'k', 'v')
          .sort(['v', 'k', 'id'], { desc: [true, true, false], nullsFirst: [false, true, false] }),
      `SELECT id, k, v FROM ${facts()} ORDER BY v DESC NULLS LAST, k DESC NULLS FIRST, id ASC`,
      { ordered: true },
    );
  });

  it('the harness sorts by sampled range boundaries: each of the 3 ranges holds a share of the rows, in order', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 6 << 10, shufflePartitions: 3 });
    const out = `s3://${cloud.inputBucket}/three-way-sorted/`;
    let files: { path: string; rows: bigint }[];
    try {
      files = await (await F().select('id', 'v').sort(['v', 'id']).writeParquet(out)).toRows();
    } finally {
      setRunner('native', { workers: false });
    }
    assert.equal(files.length, 3);
    const counts = files.map((f) => Number(f.rows));
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      N,
    );
    // v is spread evenly; its nulls (15%) sort last. Boundaries from a sample split the rest in about thirds.
    for (const c of counts) assert.ok(c >= N / 6 && c <= N / 2, `rows per range: ${counts.join(', ')}`);
    const back = await readParquet(out).toRows();
    const duck = await duckDb!.query(`SELECT id, v FROM ${facts()} ORDER BY v ASC NULLS LAST, id`);
    assertSameRows(back, duck, true, 'the committed files, read in order');
  });

  it('concat of two inputs, then a groupBy', async () => {
    await threeWay(
      () => (F().select('k', 'g') as DataFrame).concat(D().select('k', 'g')).groupBy('k').agg(col('g').sum().alias('sg'), col('g').count().alias('n')),
      `SELECT k, sum(g) sg, count(g) n FROM (SELECT k, g FROM ${facts()} UNION ALL SELECT k, g FROM ${dims()}) GROUP BY k`,
    );
  });
});

describe('joins: embedded = harness = DuckDB', () => {
  const sqlHow = { inner: 'INNER', left: 'LEFT', right: 'RIGHT', outer: 'FULL OUTER', semi: 'SEMI', anti: 'ANTI' } as const;
  for (const how of ['inner', 'left', 'right', 'outer', 'semi', 'anti'] as const) {
    it(`${how} join on a skewed string key with nulls (partitioned, and broadcast where it may be)`, async () => {
      const sql =
        how === 'semi' || how === 'anti'
          ? `SELECT id, k, v FROM ${facts()} f ${sqlHow[how]} JOIN ${dims()} d USING (k)`
          : `SELECT id, k, v, d.g AS g, label FROM (SELECT id, k, v FROM ${facts()}) f ${sqlHow[how]} JOIN ${dims()} d USING (k)`;
      const q = () => F().select('id', 'k', 'v').join(D(), { on: 'k', how });
      assert.match(await awsExplain(q, { broadcastJoinBytes: 0 }), new RegExp(`HashJoin \\(partitioned\\): ${how} on k`));
      const rows = await threeWay(q, sql, { aws: { broadcastJoinBytes: 0 } });
      assert.ok(rows.length > 0);
      // By default the small side is broadcast, except for right and outer joins (never broadcast).
      const strategy = how === 'right' || how === 'outer' ? 'partitioned' : 'broadcast';
      assert.match(await awsExplain(q), new RegExp(`HashJoin \\(${strategy}\\): ${how} on k`));
      await threeWay(q, sql);
    });
  }
});

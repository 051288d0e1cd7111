// groupBy/agg, distinct, sort, join and concat on the embedded runner, compared with DuckDB on the
// same generated Parquet data (nulls, many keys, a skewed key), plus spill under a memory budget
// and the errors bad input gets.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, DataType, Field, fromRecords, func, readParquet, relationalStats, resetRelationalStats, Schema, setRunner, type DataFrame } from 'fanout';
import { tempDir } from './helpers.ts';
import { seededRandom } from './random.ts';
import { canonRows as canon } from './canon-rows.ts';
import { openDuckDb, type DuckDb } from './duckdb.ts';

let duckDb: DuckDb | undefined;
let dir: string;
const N = 30000;

function duck(sql: string): Promise<Record<string, unknown>[]> {
  return duckDb!.query(sql);
}

function facts(): string {
  return `read_parquet('${join(dir, 'facts')}/*.parquet')`;
}
function dims(): string {
  return `read_parquet('${join(dir, 'dims')}/*.parquet')`;
}

before(async () => {
  dir = tempDir('fanout-relational-');
  const { rnd, ri, maybe, pick } = seededRandom(13);
  const words = Array.from({ length: 700 }, (_, i) => `w${i}`);
  const rows = Array.from({ length: N }, () => ({
    // Skew: a third of the rows share key 'hot'.
    k: rnd() < 0.33 ? 'hot' : maybe(() => pick(words), 0.05),
    g: maybe(() => ri(0, 40), 0.1),
    v: maybe(() => Math.round(rnd() * 1e6) / 100, 0.15),
    i: maybe(() => BigInt(ri(-1e6, 1e6)), 0.1),
    s: maybe(() => pick(words), 0.2),
    b: maybe(() => rnd() < 0.5, 0.1),
  }));
  const schema = new Schema([
    new Field('k', DataType.utf8(), true),
    new Field('g', DataType.int32(), true),
    new Field('v', DataType.float64(), true),
    new Field('i', DataType.int64(), true),
    new Field('s', DataType.utf8(), true),
    new Field('b', DataType.bool(), true),
  ]);
  // Several files and small row groups: many partitions, so aggregation is two-phase.
  setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096 });
  for (let p = 0; p < 3; p++) {
    await fromRecords(rows.slice((p * N) / 3, ((p + 1) * N) / 3), schema).writeParquet(join(dir, 'facts'), { mode: 'append' });
  }
  const dimRows = Array.from({ length: 600 }, (_, j) => ({ k: j % 50 === 0 ? null : `w${j + 100}`, g: maybe(() => ri(0, 60), 0.1), label: `L${j}` }));
  dimRows.push({ k: 'hot', g: 1, label: 'hot1' }, { k: 'hot', g: 2, label: 'hot2' });
  await fromRecords(
    dimRows,
    new Schema([new Field('k', DataType.utf8(), true), new Field('g', DataType.int32(), true), new Field('label', DataType.utf8(), true)]),
  ).writeParquet(join(dir, 'dims'));
  duckDb = await openDuckDb();
});

after(() => {
  duckDb?.close();
  setRunner('native');
});

const F = (): DataFrame => readParquet(join(dir, 'facts'));
const D = (): DataFrame => readParquet(join(dir, 'dims'));

describe('groupBy / agg against DuckDB', () => {
  it('every aggregate, by a skewed string key with nulls', async () => {
    const got = await F()
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
        col('v').count().alias('cv'),
        col('s').countDistinct().alias('cds'),
        col('g').list().alias('lg'),
        col('b').max().alias('maxb'),
      )
      .toRows();
    const want = await duck(
      `SELECT k, sum(v) sv, sum(g) sg, sum(i) si, avg(v) mv, min(v) minv, max(i) maxi, min(s) mins, max(s) maxs, count(v) cv, count(DISTINCT s) cds, list(g) lg, max(b) maxb FROM ${facts()} GROUP BY k`,
    );
    assert.equal(got.length, want.length);
    assert.deepEqual(canon(got, { sortLists: true }), canon(want, { sortLists: true }));
  });

  it('several keys (int and string, both with nulls), and first() against a value fixed per group', async () => {
    const got = await F()
      .withColumn('k2', col('g').mul(2))
      .groupBy('g', 'k')
      .agg(col('k2').first().alias('f'), col('v').count().alias('n'), col('i').min().alias('mi'))
      .toRows();
    const want = await duck(`SELECT g, k, first(g * 2) f, count(v) n, min(i) mi FROM ${facts()} GROUP BY g, k`);
    assert.deepEqual(canon(got), canon(want));
  });

  it('df.agg over the whole frame, and over no rows (count 0, sum null)', async () => {
    const got = await F().agg(col('v').sum().alias('s'), col('k').count().alias('c'), col('s').countDistinct().alias('d'), col('v').mean().alias('m')).toRows();
    const want = await duck(`SELECT sum(v) s, count(k) c, count(DISTINCT s) d, avg(v) m FROM ${facts()}`);
    assert.deepEqual(canon(got), canon(want));
    const empty = await F().where(col('g').gt(1000)).agg(col('v').sum().alias('s'), col('v').count().alias('c'), col('v').first().alias('f')).toRows();
    assert.deepEqual(empty, [{ s: null, c: 0n, f: null }]);
  });

  it('the same result on worker threads (partials in parallel partitions)', async () => {
    setRunner('native', { targetPartitionBytes: 64 << 10, workers: true, parallelism: 2 });
    try {
      const got = await F().groupBy('g').agg(col('v').sum().alias('s'), col('i').count().alias('c')).toRows();
      const want = await duck(`SELECT g, sum(v) s, count(i) c FROM ${facts()} GROUP BY g`);
      assert.deepEqual(canon(got), canon(want));
    } finally {
      setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096 });
    }
  });
});

describe('distinct, sort, concat against DuckDB', () => {
  it('distinct over all columns and over a subset', async () => {
    const all = await F().select('k', 'g').distinct().toRows();
    assert.deepEqual(canon(all), canon(await duck(`SELECT DISTINCT k, g FROM ${facts()}`)));
    const sub = await F().distinct('g').toRows();
    assert.equal(sub.length, (await duck(`SELECT DISTINCT g FROM ${facts()}`)).length);
    assert.deepEqual(Object.keys(sub[0]!), ['k', 'g', 'v', 'i', 's', 'b'], 'every column, in order');
  });

  it('sort: multi-key, desc, nulls first/last (order compared row by row)', async () => {
    const cases: [string[], { desc?: boolean[]; nullsFirst?: boolean[] }, string][] = [
      [['v'], {}, 'v ASC NULLS LAST'],
      [['g', 'i'], { desc: [true, false], nullsFirst: [true, false] }, 'g DESC NULLS FIRST, i ASC NULLS LAST'],
      [['s', 'k', 'i'], { desc: [false, true, true] }, 's ASC NULLS LAST, k DESC NULLS LAST, i DESC NULLS LAST'],
      [['b', 'v'], { nullsFirst: [true, true] }, 'b ASC NULLS FIRST, v ASC NULLS FIRST'],
    ];
    for (const [by, opts, sql] of cases) {
      const got = await F()
        .select(...by)
        .sort(by, opts)
        .toRows();
      const want = await duck(`SELECT ${by.join(', ')} FROM ${facts()} ORDER BY ${sql}`);
      assert.deepEqual(canon(got, { ordered: true }), canon(want, { ordered: true }), `sort by ${sql}`);
    }
  });

  it('concat, then aggregate over both', async () => {
    const df = F().select('k', 'v').concat(F().select('k', 'v'));
    assert.equal(await df.count(), 2 * N);
    const got = await df.groupBy('k').agg(col('v').count().alias('c')).toRows();
    const want = await duck(`SELECT k, count(v) c FROM (SELECT k, v FROM ${facts()} UNION ALL SELECT k, v FROM ${facts()}) GROUP BY k`);
    assert.deepEqual(canon(got), canon(want));
  });
});

describe('join against DuckDB', () => {
  const sqlHow = { inner: 'INNER', left: 'LEFT', right: 'RIGHT', outer: 'FULL OUTER' } as const;
  for (const how of ['inner', 'left', 'right', 'outer'] as const) {
    it(`${how} join on a string key (nulls never match) and on two keys`, async () => {
      const got = await F().select('k', 'g', 'v').join(D(), { on: 'k', how }).toRows();
      const want = await duck(`SELECT k, f.g, v, d.g AS g_right, label FROM (SELECT k, g, v FROM ${facts()}) f ${sqlHow[how]} JOIN ${dims()} d USING (k)`);
      assert.equal(got.length, want.length);
      assert.deepEqual(canon(got), canon(want));
      const two = await F()
        .select('k', 'g', 'v')
        .join(D(), { on: ['k', 'g'], how })
        .toRows();
      const want2 = await duck(`SELECT k, g, v, label FROM (SELECT k, g, v FROM ${facts()}) f ${sqlHow[how]} JOIN ${dims()} d USING (k, g)`);
      assert.deepEqual(canon(two), canon(want2));
    });
  }
  for (const how of ['semi', 'anti'] as const) {
    it(`${how} join`, async () => {
      const got = await F().select('k', 'v').join(D(), { on: 'k', how }).toRows();
      const want = await duck(`SELECT k, v FROM ${facts()} f ${how.toUpperCase()} JOIN ${dims()} d USING (k)`);
      assert.deepEqual(canon(got), canon(want));
    });
  }
  it('leftOn/rightOn keeps both key columns, suffixes clashes; a UDF-free expression on the output', async () => {
    const got = await F()
      .select('k', 'g')
      .join(D().select('k', 'g', 'label'), { leftOn: 'g', rightOn: 'g', how: 'inner', suffix: '_d' })
      .where(col('label').eq('L7'))
      .toRows();
    const want = await duck(`SELECT f.k, f.g, d.k AS k_d, d.g AS g_d, d.label FROM ${facts()} f JOIN ${dims()} d ON f.g = d.g WHERE d.label = 'L7'`);
    assert.deepEqual(canon(got), canon(want));
  });
});

describe('spill under a memory budget', () => {
  it('a groupBy over data 4x the budget completes within the budget, spilling', async () => {
    const budget = 2 << 20;
    const rows = 800_000;
    const key = new Int32Array(rows);
    const val = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      key[i] = (i * 7919) % 200_000;
      val[i] = i % 10;
    }
    const { fromColumns } = await import('fanout');
    const df = fromColumns({ key, val });
    // 800k rows x 12 bytes = 9.6 MB of columns, over 4x the budget; the 200k-key table alone needs more than the budget.
    setRunner('native', { memoryBudgetBytes: budget, batchSize: 8192 });
    try {
      resetRelationalStats();
      const got = await df.groupBy('key').agg(col('val').sum().alias('s'), col('val').count().alias('c')).toRows();
      const st = relationalStats();
      assert.equal(got.length, 200_000);
      let total = 0;
      for (const r of got) total += Number(r.c);
      assert.equal(total, rows);
      assert.ok(st.spillFiles > 0, `spilled (${JSON.stringify(st)})`);
      assert.ok(st.peakBytesHeld <= budget, `held at most the budget: ${st.peakBytesHeld} <= ${budget}`);
      // The sort spills sorted runs and merges them.
      resetRelationalStats();
      const top = await df
        .sort(['key', 'val'], { desc: [true, false] })
        .limit(6)
        .toRows();
      const want: [number, number][] = [];
      for (let i = 0; i < rows; i++) if (key[i]! >= 199_990) want.push([key[i]!, val[i]!]);
      want.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      assert.deepEqual(
        top.map((r) => [r.key, r.val]),
        want.slice(0, 6),
      );
      const sst = relationalStats();
      assert.ok(sst.spillFiles > 0, 'the sort spilled');
      assert.ok(sst.peakBytesHeld <= budget, `the sort held at most the budget: ${sst.peakBytesHeld}`);
    } finally {
      setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096 });
    }
  });
});

describe('spill keeps every aggregate right', () => {
  it('all aggregates and a string key: the same result spilled (small budget) as in memory', async () => {
    const query = (): DataFrame =>
      F()
        .groupBy('s', 'g')
        .agg(
          col('v').sum().alias('sv'),
          col('v').mean().alias('mv'),
          col('i').min().alias('mi'),
          col('k').max().alias('mk'),
          col('v').count().alias('cv'),
          col('k').countDistinct().alias('ck'),
          col('g').first().alias('fg'),
          col('b').list().alias('lb'),
        );
    const inMemory = await query().toRows();
    setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096, memoryBudgetBytes: 256 << 10 });
    try {
      resetRelationalStats();
      const spilled = await query().toRows();
      assert.ok(relationalStats().spillFiles > 0, 'spilled');
      assert.deepEqual(canon(spilled, { sortLists: true }), canon(inMemory, { sortLists: true }));
      const want = await duck(
        `SELECT s, g, sum(v) sv, avg(v) mv, min(i) mi, max(k) mk, count(v) cv, count(DISTINCT k) ck, first(g) fg, list(b) lb FROM ${facts()} GROUP BY s, g`,
      );
      assert.deepEqual(canon(spilled, { sortLists: true }), canon(want, { sortLists: true }));
    } finally {
      setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096 });
    }
  });
});

describe('clear errors', () => {
  it('sum of a string, join on different types, missing columns: each names the column', () => {
    assert.throws(() => F().groupBy('k').agg(col('s').sum()), /sum: column 's' is utf8, expected a numeric column/);
    assert.throws(() => F().agg(col('k').mean()), /mean: column 'k' is utf8/);
    assert.throws(() => F().join(D(), { leftOn: 'g', rightOn: 'k' }), /join: key column 'g' is int32 on the left but 'k' is utf8 on the right/);
    assert.throws(() => F().groupBy('nope' as never), /column 'nope' not found in groupBy/);
    assert.throws(() => F().sort('nope' as never), /column 'nope' not found in sort/);
    assert.throws(() => F().join(D(), { on: 'v' }), /column 'v' not found in join \(right side\)/);
    assert.throws(() => F().groupBy('k').agg(col('zz').sum()), /zz/);
    assert.throws(() => F().concat(D() as never), /concat: column/);
  });
});

describe('plans, explain, UDFs, repartition', () => {
  const bucketOf = func((k: string | null) => (k === null ? 'none' : k.slice(0, 2)), { returnDtype: DataType.utf8(), name: 'rel_bucket_of' });
  const tag = func((label: string | null, total: number | null) => `${label ?? '-'}:${total ?? 0}`, { returnDtype: DataType.utf8(), name: 'rel_tag' });

  it('explain shows the exchanges with partition counts; the plan is JSON', async () => {
    setRunner('native', { targetPartitionBytes: 64 << 10, parallelism: 3 });
    try {
      const agg = F().groupBy('k').agg(col('v').sum().alias('s'));
      const text = await agg.explain();
      assert.match(text, /HashAggregate \(final\): keys \[k\], sum as s/);
      assert.match(text, /Exchange: hash \[k\], 3 partition\(s\)/);
      assert.match(text, /HashAggregate \(partial\)/);
      assert.match(text, /ScanParquet: 3 file\(s\).*columns \[k, v\]/, 'projection pushed below the aggregate into the scan');
      assert.match(
        await F()
          .sort(['g', 'v'], { desc: [true, false] })
          .explain(),
        /Exchange: range \[g desc, v asc\], 3 partition\(s\)/,
      );
      assert.match(
        await F().join(D(), { on: 'k' }).explain(),
        /HashJoin \(broadcast\): inner on k[\s\S]*Exchange: broadcast \(est\. [\d.]+ KiB\), 1 partition, read by every probe partition/,
      );
      assert.match(await F().agg(col('v').max()).explain(), /Exchange: gather, 1 partition/);
      assert.match(await F().repartition(5, 'g').explain(), /Exchange: hash \[g\], 5 partition\(s\)/);
      assert.match(await F().select('k').concat(D().select('k')).explain({ showAll: true }), /Concat: 2 inputs/);
      const plan = F().join(D(), { on: 'k', how: 'left' }).groupBy('label').agg(col('v').mean()).sort('label').plan;
      assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan, 'plain JSON');
    } finally {
      setRunner('native', { targetPartitionBytes: 64 << 10, batchSize: 4096 });
    }
  });

  it('a UDF before a groupBy and a UDF on a join output', async () => {
    const got = await F()
      .withColumn('bk', bucketOf(col('k')))
      .groupBy('bk')
      .agg(col('v').count().alias('n'))
      .toRows();
    const want = await duck(`SELECT coalesce(left(k, 2), 'none') bk, count(v) n FROM ${facts()} GROUP BY bk`);
    assert.deepEqual(canon(got), canon(want));
    const joined = await F()
      .groupBy('k')
      .agg(col('g').sum().alias('total'))
      .join(D().select('k', 'label'), { on: 'k' })
      .withColumn('t', tag(col('label'), col('total')))
      .select('t')
      .toRows();
    const want2 = await duck(
      `SELECT coalesce(label, '-') || ':' || coalesce(total, 0)::VARCHAR t FROM (SELECT k, sum(g) total FROM ${facts()} GROUP BY k) a JOIN ${dims()} d USING (k)`,
    );
    assert.deepEqual(canon(joined), canon(want2));
  });

  it('repartition(n, ...keys): n partitions, each key in exactly one', async () => {
    const where = new Map<unknown, number>();
    let parts = 0;
    let rows = 0;
    for await (const p of F().select('g', 'v').repartition(4, 'g').iterPartitions()) {
      for (const r of await p.toRows()) {
        const prev = where.get(r.g);
        assert.ok(prev === undefined || prev === parts, `key ${String(r.g)} in partitions ${prev} and ${parts}`);
        where.set(r.g, parts);
        rows++;
      }
      parts++;
    }
    assert.equal(parts, 4);
    assert.equal(rows, N);
    // Without keys: contiguous row ranges (test/partitioning.test.ts), not a hash exchange.
    assert.equal(F().repartition(4).plan.type, 'intoPartitions');
  });
});

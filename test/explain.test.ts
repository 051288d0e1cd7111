import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { col, fromRecords, readParquet, setRunner } from 'fanout';
import { optimize } from '../src/optimizer.ts';
import type { PlanNode } from '../src/plan.ts';
import { tempDir, writeSample } from './helpers.ts';

let file: string;

before(async () => {
  file = join(tempDir(), 'ten-groups.parquet');
  await writeSample(file, 0, 8000, 1000); // 8 row groups, id sorted
  setRunner('native', { workers: false });
});

function scanOf(p: PlanNode): Extract<PlanNode, { type: 'scan' }> {
  let n = p;
  while ('input' in n) n = n.input;
  assert.equal(n.type, 'scan');
  return n as Extract<PlanNode, { type: 'scan' }>;
}

describe('optimizer', () => {
  it('pushes predicates into the scan and prunes row groups by statistics', async () => {
    const df = readParquet(file)
      .where(col('id').ge(2000).and(col('id').lt(5000)))
      .select('id', 'x');
    const text = await df.explain({ showAll: true });
    assert.match(text, /== Unoptimized Logical Plan ==/);
    assert.match(text, /== Optimized Logical Plan ==/);
    assert.match(text, /== Physical Plan ==/);
    assert.match(text, /row groups 3\/8/);
    const scan = scanOf(optimize(df.plan));
    assert.ok(scan.pushdowns.filter, 'filter pushed into scan');
    assert.deepEqual(scan.pushdowns.columns, ['id', 'x']);
    // Nothing is left above the scan: the filter went into it and the projection became its column list.
    assert.equal(optimize(df.plan).type, 'scan');
    assert.equal((await df.toRows()).length, 3000);
  });

  it('projection pushdown decodes only the needed columns', async () => {
    const df = readParquet(file).withColumn('y', col('x').mul(2)).select('y');
    assert.deepEqual(scanOf(optimize(df.plan)).pushdowns.columns, ['x']);
    const text = await df.explain();
    assert.match(text, /columns \[x\]/);
  });

  it('fuses filters and pushes through projections by substitution', async () => {
    const df = readParquet(file).withColumn('y', col('x').mul(2)).where(col('y').gt(1)).where(col('category').eq('beta'));
    const scan = scanOf(optimize(df.plan));
    const f = JSON.stringify(scan.pushdowns.filter);
    assert.match(f, /"fn":"and"/);
    assert.match(f, /"fn":"mul"/, 'y was substituted by its definition');
    const text = await df.explain({ showAll: true });
    const optimized = text.split('== Optimized Logical Plan ==')[1]!.split('== Physical Plan ==')[0]!;
    assert.doesNotMatch(optimized, /\* Filter/, 'no separate filter node remains');
    assert.match(optimized, /filter .*col\(x\) \* lit\(2\).*> lit\(1\)/);
    const rows = await df.toRows();
    assert.ok(rows.length > 0 && rows.every((r) => (r.x as number) * 2 > 1 && r.category === 'beta'));
  });

  it('pushes limits into the scan and keeps a global limit', async () => {
    const df = readParquet(file).select('id').limit(5);
    const scan = scanOf(optimize(df.plan));
    assert.equal(scan.pushdowns.limit, 5);
    const text = await df.explain();
    assert.match(text, /Limit: 5\s+\[global\]/);
    assert.match(text, /limit 5/);
    assert.deepEqual(
      (await df.toRows()).map((r) => r.id),
      [0n, 1n, 2n, 3n, 4n],
    );
  });

  it('does not push filters on exploded columns below the explode', async () => {
    const df = readParquet(file)
      .explode('tags')
      .where(col('tags').eq('t1').and(col('id').lt(100)));
    const opt = optimize(df.plan);
    const scan = scanOf(opt);
    assert.match(JSON.stringify(scan.pushdowns.filter), /"name":"id"/);
    assert.doesNotMatch(JSON.stringify(scan.pushdowns.filter), /"name":"tags"/);
    const rows = await df.toRows();
    assert.ok(rows.length > 0 && rows.every((r) => r.tags === 't1' && (r.id as bigint) < 100n));
  });

  it('fuses chains of withColumn into one projection when no work is duplicated', async () => {
    const df = fromRecords([{ a: 1 }])
      .withColumn('b', col('a').add(1))
      .withColumn('c', col('a').mul(2))
      .select('b', 'c');
    const opt = optimize(df.plan);
    assert.equal(opt.type, 'project');
    assert.equal((opt as { input: PlanNode }).input.type, 'in_memory');
    assert.deepEqual(await df.toRows(), [{ b: 2, c: 2 }]);
    // b is used twice above its definition: kept as its own projection rather than computed twice.
    const twice = fromRecords([{ a: 1 }])
      .withColumn('b', col('a').add(1))
      .withColumn('c', col('b').mul(col('b')));
    assert.equal((optimize(twice.plan) as { input: PlanNode }).input.type, 'project');
    assert.deepEqual(await twice.toRows(), [{ a: 1, b: 2, c: 4 }]);
  });

  it('plans serialize to JSON and back unchanged', () => {
    const df = readParquet(file)
      .where(col('x').isIn([0.5, 0.25]))
      .withColumn('s', col('category').str.upper())
      .limit(3);
    const json = JSON.stringify(optimize(df.plan));
    assert.deepEqual(JSON.parse(json), optimize(df.plan));
  });

  it('an equality outside every row group prunes everything', async () => {
    const df = readParquet(file).where(col('id').eq(99_999n));
    assert.match(await df.explain(), /row groups 0\/8/);
    assert.deepEqual(await df.toRows(), []);
  });

  it('packs small files into one partition and splits big ones at row groups', async () => {
    const d = tempDir();
    for (let i = 0; i < 5; i++) await writeSample(join(d, `small-${i}.parquet`), i * 100, 100, 50);
    const df = readParquet(d).select('id');
    assert.match(await df.explain(), /Stage 0: 1 partition\(s\)/);
    assert.deepEqual(
      (await df.toRows()).map((r) => r.id),
      Array.from({ length: 500 }, (_, i) => BigInt(i)),
    );
    assert.deepEqual((await df.limit(120).toRows()).length, 120);
    setRunner('native', { workers: false, targetPartitionBytes: 1 });
    try {
      assert.match(await df.explain(), /Stage 0: 10 partition\(s\)/);
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

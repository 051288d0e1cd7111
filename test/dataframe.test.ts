import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, DataType, fromArrow, fromColumns, fromRecords, func, lit, readCsv, readParquet, setRunner } from 'fanout';
import { sampleRows, tempDir, writeSample } from './helpers.ts';

const ROWS = 10_000;
let dir: string;
let file: string;

before(async () => {
  dir = tempDir();
  file = join(dir, 'sample.parquet');
  await writeSample(file, 0, ROWS, 1000); // 10 row groups
  setRunner('native', { workers: false });
});

describe('sources and schema', () => {
  it('readParquet exposes the file schema without reading data', () => {
    const df = readParquet(file);
    assert.deepEqual(df.columns, ['id', 'x', 'category', 'n', 'tags']);
    assert.equal(df.schema.field('id').type.toString(), 'int64');
    assert.equal(df.schema.field('tags').type.toString(), 'list<utf8>');
  });

  it('fromRecords infers types and round-trips through toRows', async () => {
    const rows = [
      { a: 1, b: 'x', c: true },
      { a: 2, b: null, c: false },
    ];
    const df = fromRecords(rows);
    // JS numbers are doubles: float64, and they come back as the numbers that went in.
    assert.equal(df.schema.field('a').type.kind, 'float64');
    assert.deepEqual(await df.toRows(), [
      { a: 1, b: 'x', c: true },
      { a: 2, b: null, c: false },
    ]);
    const big = fromRecords([{ a: 1n }, { a: 2n }]);
    assert.equal(big.schema.field('a').type.kind, 'int64');
    assert.deepEqual(await big.toRows(), [{ a: 1n }, { a: 2n }]);
    assert.throws(() => fromRecords([{ a: 1n }, { a: 2 }]), /column 'a'.*mixes bigints and numbers/);
  });

  it('a (x: number) UDF runs on fromColumns / fromRecords of JS numbers (they stay numbers, not 1n)', async () => {
    const twice = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'df.twiceNumbers' });
    const cols = fromColumns({ x: [1, 2, 3] });
    assert.equal(cols.schema.field('x').type.kind, 'float64');
    assert.deepEqual(await cols.withColumn('y', twice(cols.col('x'))).toRows(), [
      { x: 1, y: 2 },
      { x: 2, y: 4 },
      { x: 3, y: 6 },
    ]);
    const recs = fromRecords([{ x: 1 }, { x: 2 }]);
    assert.deepEqual(await recs.withColumn('y', twice(recs.col('x'))).toRows(), [
      { x: 1, y: 2 },
      { x: 2, y: 4 },
    ]);
    // bigint columns are int64 and stay bigints; typed arrays keep their Arrow type.
    const typed = fromColumns({ b: [1n, 2n], i: Int32Array.of(1, 2), u: Uint16Array.of(1, 2), f: Float32Array.of(1, 2), l: BigInt64Array.of(1n, 2n) });
    assert.deepEqual(
      typed.schema.fields.map((f) => f.type.toString()),
      ['int64', 'int32', 'uint16', 'float32', 'int64'],
    );
    assert.deepEqual((await typed.toRows())[1], { b: 2n, i: 2, u: 2, f: 2, l: 2n });
    assert.throws(() => fromColumns({ m: [1, 2n] }), /column 'm'.*mixes bigints and numbers/);
  });

  it('fromColumns and fromArrow', async () => {
    const df = fromColumns({ x: new Float64Array([1, 2, 3]), s: ['a', 'b', 'c'] });
    assert.equal(await df.count(), 3);
    const t = await df.toArrow();
    const back = fromArrow(t);
    assert.deepEqual(await back.select('s').toRows(), [{ s: 'a' }, { s: 'b' }, { s: 'c' }]);
  });

  it('fromArrow accepts dictionary-encoded and large-offset columns (converted once)', async () => {
    const t = new arrow.Table({
      s: arrow.vectorFromArray(['a', 'b', null, 'a'], new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32())),
      l: arrow.vectorFromArray(['x', 'yy', 'zzz', ''], new arrow.LargeUtf8()),
    });
    const df = fromArrow(t);
    assert.equal(df.schema.field('s').type.toString(), 'utf8');
    assert.deepEqual(await df.where(col('s').eq('a')).withColumn('n', col('l').str.length()).toRows(), [
      { s: 'a', l: 'x', n: 1 },
      { s: 'a', l: '', n: 0 },
    ]);
    assert.deepEqual(
      (await df.toRows()).map((r) => r.s),
      ['a', 'b', null, 'a'],
    );
  });

  it('readCsv reads and infers', async () => {
    const p = join(dir, 'small.csv');
    writeFileSync(p, 'a,b,c\n1,hello,2.5\n2,,3.5\n');
    const df = readCsv(p);
    assert.deepEqual(df.schema.names, ['a', 'b', 'c']);
    const rows = await df.where(col('a').gt(1)).toRows();
    assert.deepEqual(rows, [{ a: 2n, b: null, c: 3.5 }]);
  });
});

describe('transforms', () => {
  it('select / withColumn / where / exclude / limit compose like their reference', async () => {
    const df = readParquet(file).where(col('x').gt(0.5)).withColumn('y', col('x').mul(2).add(1)).select('id', 'y', 'category').limit(25);
    const got = await df.toRows();
    const want = sampleRows(0, ROWS)
      .filter((r) => r.x > 0.5)
      .slice(0, 25)
      .map((r) => ({ id: r.id, y: r.x * 2 + 1, category: r.category }));
    assert.deepEqual(got, want);
  });

  it('withColumn replaces a column in place and withColumns adds several', async () => {
    const df = fromRecords([{ a: 1, b: 2 }]);
    const r = await df
      .withColumn('a', col('a').mul(10))
      .withColumns({ c: col('b').add(1), d: lit('k') })
      .toRows();
    assert.deepEqual(r, [{ a: 10, b: 2, c: 3, d: 'k' }]);
    assert.deepEqual(df.withColumn('a', col('a').mul(10)).columns, ['a', 'b']);
  });

  it('select accepts expressions with aliases; exclude drops', async () => {
    const df = fromRecords([{ a: 1.5, b: 'q' }]);
    assert.deepEqual(await df.select(col('a').mul(2).alias('a2'), 'b').toRows(), [{ a2: 3, b: 'q' }]);
    assert.deepEqual(await df.exclude('a').toRows(), [{ b: 'q' }]);
  });

  it('filter is an alias of where; null predicate rows are dropped', async () => {
    const df = fromRecords([{ a: 1 }, { a: null }, { a: 3 }]);
    assert.deepEqual(await df.filter(col('a').gt(1)).toRows(), [{ a: 3 }]);
  });

  it('explode repeats other columns; null and empty lists give one null row', async () => {
    const df = fromRecords([
      { k: 1, l: ['a', 'b'] },
      { k: 2, l: [] },
      { k: 3, l: null },
    ]);
    assert.deepEqual(await df.explode('l').toRows(), [
      { k: 1, l: 'a' },
      { k: 1, l: 'b' },
      { k: 2, l: null },
      { k: 3, l: null },
    ]);
  });

  it('explode over a parquet list column matches the reference', async () => {
    const got = await readParquet(file).explode('tags').select('id', 'tags').limit(50).toRows();
    const want = sampleRows(0, ROWS)
      .flatMap((r): { id: bigint; tags: string | null }[] => (r.tags?.length ? r.tags.map((t) => ({ id: r.id, tags: t })) : [{ id: r.id, tags: null }]))
      .slice(0, 50);
    assert.deepEqual(got, want);
  });

  it('string, list and struct namespaces work in a pipeline', async () => {
    const df = fromRecords([{ s: 'Hello World', l: [1, 2, 3], st: { a: 1, b: 'z' } }]);
    const r = await df
      .select(
        col('s').str.upper().alias('u'),
        col('s').str.length().alias('len'),
        col('s').str.split(' ').list.get(1).alias('w'),
        col('l').list.length().alias('ll'),
        col('st').struct.get('b').alias('b'),
      )
      .toRows();
    assert.deepEqual(r, [{ u: 'HELLO WORLD', len: 11, w: 'World', ll: 3, b: 'z' }]);
  });

  it('limit(0) gives an empty result with the schema', async () => {
    const df = readParquet(file).limit(0);
    assert.deepEqual(await df.toRows(), []);
    const t = await df.toArrow();
    assert.equal(t.numRows, 0);
    assert.deepEqual(
      t.schema.fields.map((f) => f.name),
      ['id', 'x', 'category', 'n', 'tags'],
    );
  });
});

describe('plan-time errors', () => {
  it('type errors name both columns and their types before reading data', () => {
    const df = fromRecords([{ price: 1.5, name: 'a' }]);
    assert.throws(
      () => df.withColumn('bad', col('price').add(col('name'))),
      (e: Error) => /price/.test(e.message) && /name/.test(e.message) && /float64/.test(e.message) && /utf8/.test(e.message),
    );
  });

  it('a missing column is named, with the available ones', () => {
    const df = readParquet(file);
    assert.throws(() => df.select('nope'), /nope.*id/s);
    assert.throws(() => df.where(col('nope').gt(1)), /nope/);
  });

  it('where needs a boolean', () => {
    assert.throws(() => readParquet(file).where(col('x').add(1)), /bool/);
  });

  it('explode needs a list column', () => {
    assert.throws(() => readParquet(file).explode('x' as never), /x.*not a list/);
  });

  it('missing file, bad glob and corrupt file name the path', async () => {
    assert.throws(() => readParquet(join(dir, 'missing.parquet')), /missing\.parquet/);
    assert.throws(() => readParquet(join(dir, 'nothing-*.parquet')), /nothing-\*\.parquet/);
    const bad = join(dir, 'bad.parquet');
    writeFileSync(bad, 'this is not parquet at all, not even close');
    assert.throws(() => readParquet(bad), /bad\.parquet/);
  });

  it('a truncated file fails during execution naming the file, not with a partial result', async () => {
    const cut = join(dir, 'cut.parquet');
    const bytes = readFileSync(file);
    // Keep the footer but zero the middle: metadata parses, data pages are corrupt.
    const damaged = Buffer.from(bytes);
    damaged.fill(0, 200, Math.floor(bytes.length / 2));
    writeFileSync(cut, damaged);
    let err: unknown;
    try {
      await readParquet(cut).collect();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof Error, 'expected an error');
    assert.match((err as Error).message, /cut\.parquet/);
  });

  it('schemas that differ across the files of a glob are an error naming both files', async () => {
    const d = tempDir();
    await writeSample(join(d, 'a.parquet'), 0, 10, 10);
    await fromRecords([{ id: 'x' }]).writeParquet(join(d, 'sub'));
    const other = readdirSync(join(d, 'sub')).find((f) => f.endsWith('.parquet'))!;
    const files = [join(d, 'a.parquet'), join(d, 'sub', other)];
    assert.throws(
      () => readParquet(files),
      (e: Error) => /id/.test(e.message) && e.message.includes('a.parquet') && e.message.includes(other),
    );
  });
});

describe('actions', () => {
  it('collect materializes and caches', async () => {
    const df = readParquet(file).where(col('id').lt(100));
    const c1 = await df.collect();
    const c2 = await df.collect();
    assert.equal(c1, c2);
    assert.equal(await c1.count(), 100);
    assert.equal(c1.plan.type, 'in_memory');
  });

  it('count uses metadata for a bare scan and executes otherwise', async () => {
    assert.equal(await readParquet(file).count(), ROWS);
    assert.equal(await readParquet(file).where(col('category').eq('beta')).count(), ROWS / 4);
    assert.equal(
      await readParquet(file).explode('tags').count(),
      sampleRows(0, ROWS).reduce((n, r) => n + Math.max(1, r.tags?.length ?? 0), 0),
    );
  });

  it('show prints an aligned table and returns it', async () => {
    const text = await fromRecords([
      { a: 1, b: 'x' },
      { a: 2, b: 'y' },
      { a: 3, b: 'z' },
    ]).show(2);
    assert.match(text, /a/);
    assert.match(text, /float64/);
    assert.match(text, /Showing first 2/);
    assert.doesNotMatch(text, /\bz\b/);
  });

  it('iterPartitions yields one materialized DataFrame per row-group partition', async () => {
    setRunner('native', { workers: false, targetPartitionBytes: 1 });
    try {
      const parts: number[] = [];
      for await (const p of readParquet(file).select('id').iterPartitions()) parts.push(await p.count());
      assert.equal(parts.length, 10);
      assert.ok(parts.every((n) => n === 1000));
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('writeParquet commits atomically with a manifest; DuckDB-free read back matches', async () => {
    const out = join(tempDir(), 'out');
    const written = await readParquet(file).where(col('x').lt(0.25)).select('id', 'x', 'category').writeParquet(out);
    const files = await written.toRows();
    assert.ok(files.length >= 1);
    assert.ok(existsSync(join(out, '_SUCCESS')));
    assert.ok(!readdirSync(out).some((f) => f === '_temporary' && readdirSync(join(out, f)).length));
    const back = await readParquet(out).toRows();
    const want = sampleRows(0, ROWS)
      .filter((r) => r.x < 0.25)
      .map((r) => ({ id: r.id, x: r.x, category: r.category }));
    assert.deepEqual(back, want);
    assert.equal(
      files.reduce((n, f) => n + Number(f.rows), 0),
      want.length,
    );
    await assert.rejects(() => readParquet(file).writeParquet(out), /out/);
  });

  it('writeCsv writes a header and rows', async () => {
    const out = join(tempDir(), 'csv');
    await fromRecords([
      { a: 1, b: 'x,y' },
      { a: 2, b: null },
    ]).writeCsv(out);
    const f = readdirSync(out).find((n) => n.endsWith('.csv'))!;
    const text = readFileSync(join(out, f), 'utf8');
    assert.match(text, /^a,b\n1,"x,y"\n2,\n?$/);
  });

  it('a write that fails mid-way leaves no committed output', async () => {
    const out = join(tempDir(), 'failing');
    const bad = join(dir, 'bad-data.parquet');
    const damaged = Buffer.from(readFileSync(file));
    damaged.fill(0, 200, Math.floor(damaged.length / 2));
    writeFileSync(bad, damaged);
    await assert.rejects(() => readParquet(bad).writeParquet(out), /bad-data\.parquet/);
    assert.ok(!existsSync(join(out, '_SUCCESS')));
    const leftovers = existsSync(out) ? readdirSync(out).filter((f) => f.endsWith('.parquet')) : [];
    assert.deepEqual(leftovers, []);
  });

  it('toArrow returns an arrow Table with the plan schema', async () => {
    const t = await readParquet(file).select('id', 'x').limit(3).toArrow();
    assert.ok(t instanceof arrow.Table);
    assert.equal(t.numRows, 3);
    assert.equal(String(t.schema.fields[0]!.type), 'Int64');
  });

  it('casts and fillNull work end to end', async () => {
    const r = await readParquet(file).select(col('n').fillNull(-1).cast(DataType.float64()).alias('nf')).limit(4).toRows();
    assert.deepEqual(r, [{ nf: 0 }, { nf: 1 }, { nf: 2 }, { nf: -1 }]);
  });
});

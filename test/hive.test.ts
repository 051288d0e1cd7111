// Hive-partitioned layouts on local directories: partition columns read as typed columns (they were
// silently dropped before), pruned by filters before files are opened (visible in explain), written
// by partitionBy in one atomic commit, 'overwrite-partitions' replacing only what it writes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, DataType, Field, fromRecords, lit, readCsv, readParquet, Schema, setRunner, shutdownWorkers } from 'fanout';
import { inspectParquet, writeParquetFile } from '../src/io/parquet/index.ts';
import { sampleBatch, tempDir } from './helpers.ts';

const SCHEMA = new Schema([
  new Field('id', DataType.int64()),
  new Field('v', DataType.float64()),
  new Field('dt', DataType.date()),
  new Field('region', DataType.utf8()),
  new Field('ok', DataType.bool()),
]);
const REGIONS = ['eu', 'us/west', null, 'ap 100%'];

function records(n: number, from = 0): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return { id: BigInt(i), v: i * 0.5, dt: new Date(Date.UTC(2026, 10, 1 + (i % 3))), region: REGIONS[i % 4], ok: i % 5 === 0 };
  });
}
const byId = (rows: Record<string, unknown>[]): Record<string, unknown>[] => [...rows].sort((a, b) => Number(a['id']) - Number(b['id']));
const ordered = (rows: Record<string, unknown>[]): Record<string, unknown>[] =>
  byId(rows).map((r) => ({ id: r['id'], v: r['v'], dt: r['dt'], region: r['region'], ok: r['ok'] }));

before(() => setRunner('native', { workers: false }));
after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

describe('hive partitioning: write partitionBy, read back', () => {
  it('round-trips a two-level layout with typed partition columns, one manifest listing every file, no partition column inside the files', async () => {
    const out = join(tempDir(), 'lake');
    const df = fromRecords(records(120), SCHEMA);
    const written = await df.writeParquet(out, { partitionBy: ['dt', 'region'] });
    const files = (await written.toRows()).map((r) => r.path);
    assert.equal(files.length, 12, '3 dates x 4 regions');
    // Values are URL-encoded path segments; null is Hive's default partition.
    const dirs = new Set(files.map((f) => f.slice(out.length + 1, f.lastIndexOf('/'))));
    assert.ok(dirs.has('dt=2026-11-01/region=eu'));
    assert.ok(dirs.has('dt=2026-11-02/region=us%2Fwest'), [...dirs].join(' '));
    assert.ok(dirs.has('dt=2026-11-03/region=ap%20100%25'));
    assert.ok(dirs.has('dt=2026-11-01/region=__HIVE_DEFAULT_PARTITION__'));
    const manifest = JSON.parse(fs.readFileSync(join(out, '_SUCCESS'), 'utf8')) as { files: { path: string }[]; rows: number };
    assert.equal(manifest.rows, 120);
    assert.deepEqual(manifest.files.map((f) => join(out, f.path)).sort(), [...files].sort());
    assert.deepEqual(inspectParquet(files[0]!).schema.names, ['id', 'v', 'ok'], 'partition columns are not repeated in the files');
    assert.ok(!fs.existsSync(join(out, '_temporary')));

    const back = readParquet(out);
    assert.deepEqual(back.schema.names, ['id', 'v', 'ok', 'dt', 'region']);
    assert.equal(String(back.schema.field('dt').type), String(DataType.date()));
    assert.equal(String(back.schema.field('region').type), String(DataType.utf8()));
    assert.deepEqual(ordered(await back.toRows()), ordered(await df.toRows()));
  });

  it('prunes partitions by a filter before reading their row groups, and explain() shows it', async () => {
    const out = join(tempDir(), 'lake');
    const df = fromRecords(records(120), SCHEMA);
    await df.writeParquet(out, { partitionBy: ['dt', 'region'] });
    const pred = col('dt')
      .ge(lit(new Date(Date.UTC(2026, 10, 2)), DataType.date()))
      .and(col('region').eq('eu'));
    const q = readParquet(out).where(pred);
    const text = await q.explain();
    assert.match(text, /hive partitions \[dt, region\]: 2 of 12 after/, text);
    assert.match(text, /ScanParquet: 2 file\(s\)/);
    assert.match(text, /files read \(2\): .*dt=2026-11-02\/region=eu\/part-.*dt=2026-11-03\/region=eu\/part-/);
    const want = (await df.where(pred).toRows()).length;
    assert.ok(want > 0);
    assert.deepEqual(ordered(await q.toRows()), ordered(await df.where(pred).toRows()));
    // Null partition values: is_null prunes to the default partition, and == never matches null.
    const nulls = readParquet(out).where(col('region').isNull());
    assert.match(await nulls.explain(), /hive partitions \[dt, region\]: 3 of 12 after/);
    assert.equal((await nulls.toRows()).length, 30);
    // A filter on file columns only prunes nothing.
    assert.match(await readParquet(out).where(col('v').gt(3)).explain(), /hive partitions \[dt, region\]: 12 of 12 \(no filter on partition columns\)/);
    // Only partition columns: each file still gives its row count.
    assert.equal(await readParquet(out).select('region').count(), 120);
    assert.deepEqual(
      (await readParquet(out).where(col('region').eq('ap 100%')).select('region').toRows()).map((r) => r['region']),
      Array(30).fill('ap 100%'),
    );
  });

  it("'overwrite-partitions' replaces only the partitions written, atomically, and leaves the others untouched", async () => {
    const out = join(tempDir(), 'lake');
    await fromRecords(records(120), SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'] });
    const before = new Map(
      (JSON.parse(fs.readFileSync(join(out, '_SUCCESS'), 'utf8')) as { files: { path: string }[] }).files.map((f) => [
        f.path,
        fs.readFileSync(join(out, f.path)),
      ]),
    );
    // Replace dt=2026-11-01/region=eu with 2 new rows.
    const fresh = [
      { id: 1000n, v: 1, dt: new Date(Date.UTC(2026, 10, 1)), region: 'eu', ok: true },
      { id: 1001n, v: 2, dt: new Date(Date.UTC(2026, 10, 1)), region: 'eu', ok: false },
    ];
    await fromRecords(fresh, SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'], mode: 'overwrite-partitions' });
    const manifest = JSON.parse(fs.readFileSync(join(out, '_SUCCESS'), 'utf8')) as { files: { path: string }[]; rows: number };
    assert.equal(manifest.files.length, 12);
    let untouched = 0;
    for (const [p, bytes] of before) {
      if (p.startsWith('dt=2026-11-01/region=eu/')) {
        assert.ok(!fs.existsSync(join(out, p)), `the replaced file ${p} is gone`);
        continue;
      }
      assert.deepEqual(fs.readFileSync(join(out, p)), bytes, `${p} is untouched`);
      assert.ok(manifest.files.some((f) => f.path === p));
      untouched++;
    }
    assert.equal(untouched, 11);
    const rows = await readParquet(out).toRows();
    const eu1 = rows.filter((r) => r['region'] === 'eu' && (r['dt'] as Date).getTime() === Date.UTC(2026, 10, 1));
    assert.deepEqual(eu1.map((r) => r['id']).sort(), [1000n, 1001n]);
    assert.equal(rows.length, 120 - 10 + 2);
    assert.equal(manifest.rows, rows.length);

    // A write that fails midway (a value that cannot be a directory, after other partitions were
    // written) commits nothing: the dataset reads exactly as before.
    const snapshot = fs.readFileSync(join(out, '_SUCCESS'), 'utf8');
    const bad = [...records(50, 2000), { id: 9n, v: 0, dt: new Date(Date.UTC(2026, 10, 9)), region: '', ok: true }];
    await assert.rejects(
      fromRecords(bad, SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'], mode: 'overwrite-partitions' }),
      /partitionBy column 'region' has an empty string, which cannot be a partition directory/,
    );
    assert.equal(fs.readFileSync(join(out, '_SUCCESS'), 'utf8'), snapshot);
    assert.equal((await readParquet(out).toRows()).length, 112);
    assert.ok(!fs.existsSync(join(out, 'dt=2026-11-09')));
  });

  it('writeCsv partitionBy round-trips through readCsv, and worker threads read partition columns too', async () => {
    const out = join(tempDir(), 'csv-lake');
    const df = fromRecords(records(40), SCHEMA);
    await df.writeCsv(out, { partitionBy: ['region'] });
    // Per-file CSV type inference can disagree across files (v = 5 vs 5.5): give the file columns' types.
    const back = readCsv(out, { schema: { id: DataType.int64(), v: DataType.float64(), dt: DataType.date(), ok: DataType.bool() } });
    assert.deepEqual(back.schema.names.slice(-1), ['region']);
    const got = byId(await back.toRows());
    assert.deepEqual(
      got.map((r) => r['region']),
      byId(await df.toRows()).map((r) => r['region']),
    );
    const pq = join(tempDir(), 'lake');
    await df.writeParquet(pq, { partitionBy: ['dt'] });
    setRunner('native', { workers: true, parallelism: 2 });
    try {
      const rows = await readParquet(pq)
        .where(col('dt').eq(lit(new Date(Date.UTC(2026, 10, 3)), DataType.date())))
        .toRows();
      assert.equal(rows.length, 13);
      assert.ok(rows.every((r) => (r['dt'] as Date).getTime() === Date.UTC(2026, 10, 3)));
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

describe('hive partitioning: empty writes', () => {
  it('a partitioned write of no rows stays readable (one empty file keeps the schema); overwrite-partitions of no rows replaces nothing', async () => {
    const out = join(tempDir(), 'empty');
    const none = fromRecords(records(10), SCHEMA).where(col('v').gt(1000));
    await none.writeParquet(out, { partitionBy: ['region'] });
    const back = readParquet(out);
    assert.deepEqual(back.schema.names, ['id', 'v', 'dt', 'ok', 'region']);
    assert.equal(await back.count(), 0);
    const full = join(tempDir(), 'full');
    await fromRecords(records(10), SCHEMA).writeParquet(full, { partitionBy: ['region'] });
    const snapshot = (JSON.parse(fs.readFileSync(join(full, '_SUCCESS'), 'utf8')) as { files: unknown[] }).files;
    await none.writeParquet(full, { partitionBy: ['region'], mode: 'overwrite-partitions' });
    assert.deepEqual((JSON.parse(fs.readFileSync(join(full, '_SUCCESS'), 'utf8')) as { files: unknown[] }).files, snapshot);
    assert.equal(await readParquet(full).count(), 10);
  });
});

describe('hive partitioning: a partitioned commit that crashes', () => {
  it('is refused by readers, and the next commit removes what it had moved into the partition directories', async () => {
    const out = join(tempDir(), 'lake');
    await fromRecords(records(120), SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'] });
    const good = fs.readFileSync(join(out, '_SUCCESS'), 'utf8');
    // A child process rewrites every partition and SIGKILLs itself after moving 3 of 12 files in.
    const child = join(tempDir(), 'crash.mts');
    const src = new URL('../src/index.ts', import.meta.url).href;
    fs.writeFileSync(
      child,
      `import { DataType, Field, fromRecords, Schema } from ${JSON.stringify(src)};
const schema = new Schema([new Field('id', DataType.int64()), new Field('v', DataType.float64()), new Field('dt', DataType.date()), new Field('region', DataType.utf8()), new Field('ok', DataType.bool())]);
const regions = ['eu', 'us/west', null, 'ap 100%'];
const rows = Array.from({ length: 120 }, (_, i) => ({ id: BigInt(i + 5000), v: 0, dt: new Date(Date.UTC(2026, 10, 1 + (i % 3))), region: regions[i % 4], ok: true }));
await fromRecords(rows, schema).writeParquet(${JSON.stringify(out)}, { partitionBy: ['dt', 'region'], mode: 'overwrite-partitions' });
`,
    );
    const r = spawnSync(process.execPath, ['--conditions=development', '--import', 'tsx', child], {
      env: { ...process.env, FANOUT_TEST_CRASH_AFTER_RENAMES: '3' },
      encoding: 'utf8',
    });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.equal(fs.readFileSync(join(out, '_SUCCESS'), 'utf8'), good, 'the manifest was not replaced');
    const moved = (fs.readdirSync(out, { recursive: true }) as string[]).filter((p) => p.endsWith('.parquet') && !p.startsWith('_') && !good.includes(p));
    assert.equal(moved.length, 3, 'three new files sit in partition directories');
    assert.throws(() => readParquet(out), /is not a complete dataset: the commit of run .* was interrupted/);
    // The next commit (of one partition) undoes the interrupted one everywhere.
    const one = [{ id: 9000n, v: 1, dt: new Date(Date.UTC(2026, 10, 3)), region: 'eu', ok: true }];
    await fromRecords(one, SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'], mode: 'overwrite-partitions' });
    for (const p of moved) assert.ok(!fs.existsSync(join(out, p)), `${p} was removed`);
    const rows = await readParquet(out).toRows();
    assert.equal(rows.length, 120 - 10 + 1);
    assert.ok(!rows.some((x) => (x['id'] as bigint) >= 5000n && (x['id'] as bigint) < 9000n));
  });
});

describe('hive partitioning: reading layouts written elsewhere', () => {
  let root: string;
  before(async () => {
    // As Spark/pyarrow lay it out: year=int, score=float, day=date, flag=bool, name=URL-encoded string, a null.
    root = join(tempDir(), 'ext');
    const layout = [
      ['year=2025', 'score=0.5', 'day=2025-01-02', 'flag=true', 'name=a%2Fb'],
      ['year=2026', 'score=1', 'day=2026-03-04', 'flag=false', 'name=__HIVE_DEFAULT_PARTITION__'],
    ];
    for (const [i, segs] of layout.entries()) {
      fs.mkdirSync(join(root, ...segs), { recursive: true });
      await writeParquetFile(join(root, ...segs, 'data.parquet'), [sampleBatch(i * 10, 10)]);
    }
  });

  it('infers int64, float64, date, bool and string, URL-decodes values and reads the default partition as null', async () => {
    const df = readParquet(root);
    const types = Object.fromEntries(df.schema.fields.map((f) => [f.name, String(f.type)]));
    assert.deepEqual(
      { year: types['year'], score: types['score'], day: types['day'], flag: types['flag'], name: types['name'] },
      {
        year: String(DataType.int64()),
        score: String(DataType.float64()),
        day: String(DataType.date()),
        flag: String(DataType.bool()),
        name: String(DataType.utf8()),
      },
    );
    const rows = byId(await df.toRows());
    assert.equal(rows.length, 20);
    assert.deepEqual(
      { year: rows[0]!['year'], score: rows[0]!['score'], day: rows[0]!['day'], flag: rows[0]!['flag'], name: rows[0]!['name'] },
      { year: 2025n, score: 0.5, day: new Date(Date.UTC(2025, 0, 2)), flag: true, name: 'a/b' },
    );
    assert.equal(rows[15]!['name'], null);
    assert.equal(rows[15]!['score'], 1);
    // Pruned by an int64 key compared with a plain number literal.
    const q = df.where(col('year').eq(2026));
    assert.match(await q.explain(), /hive partitions \[year, score, day, flag, name\]: 1 of 2 after/);
    assert.equal((await q.toRows()).length, 10);
  });

  it('a declared schema types the keys; hivePartitioning: false reads the files alone', async () => {
    const df = readParquet(root, { hivePartitioning: { schema: { year: DataType.int32(), score: DataType.float32(), name: DataType.utf8() } } });
    assert.equal(String(df.schema.field('year').type), String(DataType.int32()));
    assert.equal(String(df.schema.field('score').type), String(DataType.float32()));
    assert.equal(String(df.schema.field('day').type), String(DataType.date()), 'undeclared keys are still inferred');
    assert.equal(byId(await df.toRows())[0]!['year'], 2025);
    const off = readParquet(root, { hivePartitioning: false });
    assert.deepEqual(off.schema.names, ['id', 'x', 'category', 'n', 'tags']);
    assert.throws(
      () => readParquet(root, { hivePartitioning: { schema: { flag: DataType.int32() } } }),
      /hive partition value 'true' of column 'flag' \(int32\) in .*flag=true.*: expected an integer/,
    );
    assert.throws(() => readParquet(root, { hivePartitioning: { schema: { nope: DataType.int32() } } }), /declares 'nope', which is not a partition key/);
  });
});

describe('hive partitioning: clear errors', () => {
  const df = fromRecords(records(10), SCHEMA);
  it('partitionBy a missing column, an unsupported type, every column, a bad name; overwrite-partitions without partitionBy', async () => {
    const out = join(tempDir(), 'x');
    await assert.rejects(
      df.writeParquet(out, { partitionBy: ['nope'] }),
      /writeParquet\(".*"\): partitionBy column 'nope' is not a column of the data \(columns: id, v, dt, region, ok\)/,
    );
    const ts = fromRecords([{ t: new Date(0), a: 1 }]);
    await assert.rejects(
      ts.writeParquet(out, { partitionBy: ['t'] }),
      /partitionBy column 't' is timestamp.*partition values must be bool, integers, floats, utf8 or date/,
    );
    await assert.rejects(fromRecords([{ a: 1 }]).writeParquet(out, { partitionBy: ['a'] }), /partitionBy names every column/);
    await assert.rejects(fromRecords([{ _a: 1, b: 2 }]).writeParquet(out, { partitionBy: ['_a'] }), /partitionBy column '_a' cannot name a directory/);
    await assert.rejects(df.writeParquet(out, { mode: 'overwrite-partitions' }), /mode 'overwrite-partitions' needs partitionBy/);
    await assert.rejects(fromRecords([{ a: Number.NaN, b: 1 }]).writeParquet(out, { partitionBy: ['a'] }), /partitionBy column 'a' has the value NaN/);
    assert.ok(!fs.existsSync(join(out, '_SUCCESS')));
  });

  it('files with different keys, or a partition column also inside the files, are refused naming them', async () => {
    const mixed = join(tempDir(), 'mixed');
    fs.mkdirSync(join(mixed, 'a=1'), { recursive: true });
    fs.mkdirSync(join(mixed, 'b=2'), { recursive: true });
    await writeParquetFile(join(mixed, 'a=1', 'f.parquet'), [sampleBatch(0, 3)]);
    await writeParquetFile(join(mixed, 'b=2', 'g.parquet'), [sampleBatch(3, 3)]);
    assert.throws(() => readParquet(mixed), /files have different partition keys: .*a=1.* has \[a\] but .*b=2.* has \[b\]; pass hivePartitioning: false/);
    assert.equal((await readParquet(mixed, { hivePartitioning: false }).toRows()).length, 6);
    const dup = join(tempDir(), 'dup');
    fs.mkdirSync(join(dup, 'category=x'), { recursive: true });
    await writeParquetFile(join(dup, 'category=x', 'f.parquet'), [sampleBatch(0, 3)]);
    assert.throws(() => readParquet(dup), /hive partition column 'category' is also a column of .*f\.parquet; pass hivePartitioning: false/);
  });
});

describe('hive partitioning: partitions pruned before listing', () => {
  // dt=2026-11-0{1,2,3}/region={eu,us}: the pruned partitions hold traps that fail any listing
  // (a deeper key=value level) or footer read (a corrupt .parquet) that reaches them.
  let root: string;
  const dts = ['2026-11-01', '2026-11-02', '2026-11-03'];
  before(async () => {
    root = join(tempDir(), 'lazy');
    let i = 0;
    for (const dt of dts) {
      for (const region of ['eu', 'us']) {
        const dir = join(root, `dt=${dt}`, `region=${region}`);
        fs.mkdirSync(dir, { recursive: true });
        await writeParquetFile(join(dir, 'part-0.parquet'), [sampleBatch(i * 10, 10)]);
        i++;
      }
    }
    const trap = join(root, 'dt=2026-11-03', 'region=us');
    fs.writeFileSync(join(trap, 'corrupt.parquet'), 'not a parquet file');
    fs.mkdirSync(join(trap, 'extra=1'));
    await writeParquetFile(join(trap, 'extra=1', 'deeper.parquet'), [sampleBatch(0, 1)]);
  });

  it('building the DataFrame reads one footer; planning lists and reads only the surviving partitions', async () => {
    const df = readParquet(root);
    assert.deepEqual(df.schema.names.slice(-2), ['dt', 'region']);
    const q = df.where(
      col('dt')
        .eq(lit(new Date(Date.UTC(2026, 10, 1)), DataType.date()))
        .and(col('region').eq('eu')),
    );
    const text = await q.explain();
    assert.match(text, /hive partitions \[dt, region\]: 1 of 6 after/, text);
    assert.match(text, /partition directories listed: 1, pruned unlisted: 5; footers read at planning: 1/, text);
    assert.match(text, /files read \(1\): .*dt=2026-11-01.region=eu.part-0\.parquet/, text);
    const rows = await q.toRows();
    assert.deepEqual(
      rows.map((r) => r['id']),
      Array.from({ length: 10 }, (_, k) => BigInt(k)),
    );
    assert.ok(rows.every((r) => r['region'] === 'eu'));
    // Filters on other columns prune nothing: every partition is listed, and the traps are hit.
    await assert.rejects(readParquet(root).where(col('id').gt(0n)).toRows(), /different partition keys: .*region=us.* adds 'extra'/);
  });

  it('with every key declared, the walk prunes level by level: a pruned dt directory is never listed', async () => {
    // A directory that would fail the walk if the pruned dt=2026-11-02 level were listed.
    fs.mkdirSync(join(root, 'dt=2026-11-02', 'not-a-key'));
    const df = readParquet(root, { hivePartitioning: { schema: { dt: DataType.date(), region: DataType.utf8() } } });
    const q = df.where(col('dt').eq(lit(new Date(Date.UTC(2026, 10, 1)), DataType.date())));
    const text = await q.explain();
    // root + dt=2026-11-01 + its two leaves listed; the other two dt directories pruned unlisted.
    assert.match(text, /hive partitions \[dt, region\]: 2 of 2 seen after/, text);
    assert.match(text, /partition directories listed: 4, pruned unlisted: 2; footers read at planning: 2/, text);
    assert.equal((await q.toRows()).length, 20);
    await assert.rejects(df.where(col('region').eq('eu')).toRows(), /different partition keys: .*not-a-key/);
  });

  it('a committed (manifest) layout reads the footers of surviving files only', async () => {
    const out = join(tempDir(), 'committed');
    await fromRecords(records(60), SCHEMA).writeParquet(out, { partitionBy: ['dt', 'region'] });
    const victim = fs.readdirSync(join(out, 'dt=2026-11-03', 'region=eu')).find((f) => f.endsWith('.parquet'))!;
    fs.writeFileSync(join(out, 'dt=2026-11-03', 'region=eu', victim), 'corrupt after the commit');
    const q = readParquet(out).where(col('dt').eq(lit(new Date(Date.UTC(2026, 10, 1)), DataType.date())));
    assert.match(
      await q.explain(),
      /hive partitions \[dt, region\]: 4 of 12 after .*\n.*files listed when the DataFrame was created \(manifest, glob or list\); footers read at planning: 4/,
    );
    assert.equal((await q.toRows()).length, 20);
    await assert.rejects(readParquet(out).toRows(), new RegExp(victim.replace('.', '\\.')));
  });
});

describe('hive partitioning: CSV layouts listed at planning', () => {
  it('reads one header when built, and only the surviving partitions at planning', async () => {
    const root = join(tempDir(), 'csv-lazy');
    for (const [i, region] of ['eu', 'us', 'ap'].entries()) {
      fs.mkdirSync(join(root, `region=${region}`), { recursive: true });
      fs.writeFileSync(join(root, `region=${region}`, 'a.csv'), `id,v\n${i * 2},1.5\n${i * 2 + 1},2.5\n`);
    }
    // A header that would fail the schema check, in a partition the filter prunes.
    fs.writeFileSync(join(root, 'region=us', 'b.csv'), 'other\nx\n');
    const df = readCsv(root);
    assert.deepEqual(df.schema.names, ['id', 'v', 'region']);
    const q = df.where(col('region').isIn(['eu', 'ap']));
    assert.match(
      await q.explain(),
      /hive partitions \[region\]: 2 of 3 after .*\n.*partition directories listed: 2, pruned unlisted: 1; footers read at planning: 2/,
    );
    assert.deepEqual(
      byId(await q.toRows()).map((r) => [r['id'], r['region']]),
      [
        [0n, 'eu'],
        [1n, 'eu'],
        [4n, 'ap'],
        [5n, 'ap'],
      ],
    );
    await assert.rejects(readCsv(root).toRows(), /schema mismatch across input files: .*region=us.b\.csv/);
  });
});

describe('hive partitioning: partitioned writes by the partitions themselves', () => {
  it('worker threads each write their own files into the same hive partitions; one commit lists them all', async () => {
    const src = join(tempDir(), 'src');
    fs.mkdirSync(src);
    for (let k = 0; k < 4; k++) await writeParquetFile(join(src, `f${k}.parquet`), [sampleBatch(k * 50, 50)]);
    const want = byId(await readParquet(src).toRows());
    const out = join(tempDir(), 'by-cat');
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    try {
      assert.match(await readParquet(src).explain(), /Stage 0: 4 partition\(s\), parallelism 2 \(worker threads\)/);
      const written = (await (await readParquet(src).writeParquet(out, { partitionBy: ['category'] })).toRows()).map((r) => String(r['path']));
      const manifest = JSON.parse(fs.readFileSync(join(out, '_SUCCESS'), 'utf8')) as { files: { path: string; rows: number }[]; rows: number };
      assert.deepEqual(manifest.files.map((f) => join(out, f.path)).sort(), [...written].sort());
      const byDir = new Map<string, string[]>();
      for (const f of manifest.files) {
        const [dir, name] = f.path.split('/');
        byDir.set(dir!, [...(byDir.get(dir!) ?? []), name!]);
      }
      assert.ok(byDir.size > 1);
      // Each of the 4 task partitions holds every category: 4 files (part indexes 0..3) per directory.
      for (const [dir, names] of byDir) {
        assert.equal(new Set(names.map((n) => n.match(/^part-(\d+)/)![1])).size, 4, `${dir}: ${names.join(', ')}`);
        assert.ok(
          fs.readdirSync(join(out, dir)).every((n) => names.includes(n)),
          `${dir} holds only committed files`,
        );
      }
      assert.equal(manifest.rows, 200);
      const back = byId(await readParquet(out).toRows());
      assert.deepEqual(
        back.map((r) => [r['id'], r['category'], r['x']]),
        want.map((r) => [r['id'], r['category'], r['x']]),
      );

      // overwrite-partitions through the same path replaces only the categories written.
      const one = readParquet(src).where(col('category').eq(String(want[0]!['category'])));
      await one.writeParquet(out, { partitionBy: ['category'], mode: 'overwrite-partitions' });
      assert.equal(await readParquet(out).count(), 200);
      const after = JSON.parse(fs.readFileSync(join(out, '_SUCCESS'), 'utf8')) as { files: { path: string }[] };
      assert.equal(after.files.length, manifest.files.length - 4 + 4);
      // A filter that leaves no row writes one empty file (for the schema) when not overwriting partitions.
      const none = join(tempDir(), 'none');
      await readParquet(src)
        .where(col('id').lt(0n))
        .writeParquet(none, { partitionBy: ['category'] });
      assert.equal(await readParquet(none).count(), 0);
      assert.ok(fs.existsSync(join(none, 'category=__HIVE_DEFAULT_PARTITION__')));
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

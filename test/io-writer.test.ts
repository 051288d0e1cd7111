// Dataset commit protocol (DatasetWriter, _SUCCESS manifests) and path expansion.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { DataType, Field, Schema } from '../src/datatypes.ts';
import { inspectParquet, readParquetBatches } from '../src/io/parquet/index.ts';
import { expandPaths } from '../src/io/paths.ts';
import { DatasetWriter, readManifest } from '../src/io/writer.ts';

let root: string;
before(() => {
  root = fs.mkdtempSync(join(tmpdir(), 'fanout-io-writer-'));
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

let k = 0;
const fresh = (): string => join(root, `ds${k++}`);

const SCHEMA = new Schema([new Field('id', DataType.int64()), new Field('name', DataType.utf8())]);

function batch(start: number, n: number): arrow.RecordBatch {
  const as = SCHEMA.toArrow();
  return new arrow.RecordBatch(
    as,
    new arrow.Data(new arrow.Struct(as.fields), 0, n, 0, undefined, [
      arrow.makeVector(BigInt64Array.from({ length: n }, (_, i) => BigInt(start + i))).data[0]!,
      arrow.vectorFromArray(
        Array.from({ length: n }, (_, i) => `n${start + i}`),
        new arrow.Utf8(),
      ).data[0]!,
    ]) as arrow.Data<arrow.Struct>,
  );
}

/** Every file below dir (relative, sorted), to check what a reader could stumble on. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => fs.statSync(join(dir, p)).isFile())
    .map((p) => p.split('\\').join('/'))
    .sort();
}

async function ids(files: string[]): Promise<bigint[]> {
  const out: bigint[] = [];
  for (const f of files) for await (const b of readParquetBatches(f, { columns: ['id'] })) out.push(...(b.getChildAt(0)!.toArray() as BigInt64Array));
  return out;
}

describe('DatasetWriter', () => {
  it('commit renames parts into dir and writes _SUCCESS last with the exact file list', async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    assert.match(w.partPath(7), /_temporary[/\\][^/\\]+[/\\]part-00007-[^/\\]+\.parquet$/);
    assert.ok(w.partPath(7).endsWith(`part-00007-${w.runId}.parquet`));
    const p0 = await w.writePart(0, [batch(0, 10)], { schema: SCHEMA });
    const p1 = await w.writePart(
      1,
      (async function* () {
        yield batch(10, 5);
        yield batch(15, 5);
      })(),
      { schema: SCHEMA },
    );
    assert.deepEqual([p0.rows, p1.rows], [10, 10]);
    assert.equal(readManifest(dir), null, 'nothing committed yet');
    assert.throws(() => expandPaths(dir, 'parquet'), /no parquet files/, 'uncommitted parts are invisible');

    const files = await w.commit([p0, p1]);
    assert.deepEqual(
      files.map((f) => relative(dir, f.path)),
      [`part-00000-${w.runId}.parquet`, `part-00001-${w.runId}.parquet`],
    );
    assert.deepEqual(tree(dir), ['_SUCCESS', ...files.map((f) => relative(dir, f.path))], 'no _temporary left');

    const m = JSON.parse(fs.readFileSync(join(dir, '_SUCCESS'), 'utf8'));
    assert.equal(m.format, 'parquet');
    assert.equal(m.rows, 20);
    assert.ok(!Number.isNaN(Date.parse(m.committedAt)));
    assert.deepEqual(
      m.files,
      files.map((f) => ({ path: relative(dir, f.path), rows: f.rows, bytes: fs.statSync(f.path).size })),
    );
    assert.deepEqual(readManifest(dir)?.files, m.files);
    const doneAt = fs.statSync(join(dir, '_SUCCESS'), { bigint: true }).mtimeNs;
    for (const f of files) assert.ok(fs.statSync(f.path, { bigint: true }).mtimeNs <= doneAt, '_SUCCESS is written after every part');

    assert.deepEqual(
      expandPaths(dir, 'parquet'),
      files.map((f) => f.path),
    );
    assert.deepEqual(
      await ids(expandPaths(dir, 'parquet')),
      Array.from({ length: 20 }, (_, i) => BigInt(i)),
    );
    await assert.rejects(w.writePart(2, [batch(0, 1)]), /already committed/);
  });

  it('a directory with a manifest yields exactly the listed files, ignoring strays and _temporary', async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    const files = await w.commit([await w.writePart(0, [batch(0, 3)])]);
    fs.copyFileSync(files[0]!.path, join(dir, 'stray.parquet'));
    fs.mkdirSync(join(dir, '_temporary', 'other-run'), { recursive: true });
    fs.copyFileSync(files[0]!.path, join(dir, '_temporary', 'other-run', 'part-00000-x.parquet'));
    assert.deepEqual(expandPaths(dir, 'parquet'), [files[0]!.path]);
    fs.rmSync(files[0]!.path);
    assert.throws(
      () => expandPaths(dir, 'parquet'),
      (e: Error) => e.message.includes(files[0]!.path) && /missing/.test(e.message),
    );
  });

  it('abort removes temp files and leaves nothing that looks like output', async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'csv' });
    await w.writePart(0, [batch(0, 4)], { schema: SCHEMA });
    assert.equal(tree(dir).length, 1);
    await w.abort();
    assert.equal(fs.existsSync(dir), false, 'a directory begin() created is removed again');
    await w.abort(); // idempotent

    const existing = fresh();
    fs.mkdirSync(existing);
    const w2 = await DatasetWriter.begin(existing, { format: 'parquet' });
    await w2.writePart(0, [batch(0, 4)]);
    await w2.abort();
    assert.deepEqual(fs.readdirSync(existing), []);
  });

  it("mode 'error' refuses a directory that already holds output, naming it", async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    await w.commit([await w.writePart(0, [batch(0, 2)])]);
    await assert.rejects(DatasetWriter.begin(dir, { format: 'parquet' }), (e: Error) => e.message.includes(dir) && /already holds data/.test(e.message));
    const loose = fresh();
    fs.mkdirSync(loose);
    fs.writeFileSync(join(loose, 'data.csv'), 'a\n1\n');
    await assert.rejects(DatasetWriter.begin(loose, { format: 'csv' }), (e: Error) => e.message.includes(loose));
    const file = join(root, 'plain-file');
    fs.writeFileSync(file, 'x');
    await assert.rejects(DatasetWriter.begin(file, { format: 'csv' }), /not a directory/);
  });

  it('a failure mid-write leaves no committed-looking output', async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    const ok = await w.writePart(0, [batch(0, 5)]);
    async function* failing(): AsyncGenerator<arrow.RecordBatch> {
      yield batch(5, 5);
      throw new Error('task crashed');
    }
    await assert.rejects(w.writePart(1, failing(), { schema: SCHEMA }), /task crashed/);
    assert.equal(fs.existsSync(w.partPath(1)), false, 'the failed part file is removed');
    assert.equal(fs.existsSync(ok.path), true);
    assert.equal(readManifest(dir), null);
    assert.throws(() => expandPaths(dir, 'parquet'), /no parquet files/);
    await w.abort();
    assert.deepEqual(tree(dir), []);
    await assert.rejects(w.commit([ok]), /already aborted/);

    // A commit that fails half-way (second rename blocked) takes back the parts it had moved.
    const w2 = await DatasetWriter.begin(dir, { format: 'parquet' });
    const parts = [await w2.writePart(0, [batch(0, 2)]), await w2.writePart(1, [batch(2, 2)])];
    const blocker = join(dir, `part-00001-${w2.runId}.parquet`);
    fs.mkdirSync(blocker);
    fs.writeFileSync(join(blocker, 'keep.txt'), 'x');
    await assert.rejects(w2.commit(parts));
    assert.equal(readManifest(dir), null);
    assert.equal(fs.existsSync(join(dir, `part-00000-${w2.runId}.parquet`)), false);
    await w2.abort();
    assert.deepEqual(tree(dir), [`part-00001-${w2.runId}.parquet/keep.txt`]);
  });

  it("mode 'overwrite' replaces committed files only at commit time", async () => {
    const dir = fresh();
    const w1 = await DatasetWriter.begin(dir, { format: 'parquet' });
    const old = await w1.commit([await w1.writePart(0, [batch(0, 3)]), await w1.writePart(1, [batch(3, 3)])]);
    fs.writeFileSync(join(dir, 'README.txt'), 'not ours');

    const w2 = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'overwrite' });
    const part = await w2.writePart(0, [batch(100, 2)]);
    assert.deepEqual(
      expandPaths(dir, 'parquet'),
      old.map((f) => f.path),
      'readers still see the old dataset before commit',
    );
    const now = await w2.commit([part]);
    assert.deepEqual(
      expandPaths(dir, 'parquet'),
      now.map((f) => f.path),
    );
    for (const f of old) assert.equal(fs.existsSync(f.path), false);
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), [100n, 101n]);
    assert.ok(fs.existsSync(join(dir, 'README.txt')), 'unrelated files are left alone');
  });

  it("mode 'append' keeps committed files and lists old and new", async () => {
    const dir = fresh();
    const w1 = await DatasetWriter.begin(dir, { format: 'parquet' });
    const a = await w1.commit([await w1.writePart(0, [batch(0, 3)])]);
    const w2 = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    const b = await w2.commit([await w2.writePart(0, [batch(3, 2)])]);
    const m = readManifest(dir)!;
    assert.deepEqual(
      m.files.map((f) => f.path),
      [...a, ...b].map((f) => relative(dir, f.path)),
    );
    assert.equal(m.rows, 5);
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), [0n, 1n, 2n, 3n, 4n]);
    await assert.rejects(DatasetWriter.begin(dir, { format: 'csv', mode: 'append' }), /cannot append csv/);
  });

  it('readManifest: null without one, null for an empty Hadoop-style _SUCCESS, an error naming a corrupt one', () => {
    const dir = fresh();
    fs.mkdirSync(dir);
    assert.equal(readManifest(dir), null);
    fs.writeFileSync(join(dir, '_SUCCESS'), '');
    assert.equal(readManifest(dir), null);
    fs.writeFileSync(join(dir, '_SUCCESS'), '{"format": "parquet", "files": [{"path": 1}]}');
    assert.throws(
      () => readManifest(dir),
      (e: Error) => e.message.includes(join(dir, '_SUCCESS')),
    );
  });
});

describe('expandPaths', () => {
  let data: string;
  before(async () => {
    data = join(root, 'tree');
    fs.mkdirSync(join(data, 'a', 'deep'), { recursive: true });
    fs.mkdirSync(join(data, 'b'));
    fs.mkdirSync(join(data, '_temporary', 'x'), { recursive: true });
    fs.mkdirSync(join(data, '.hidden'));
    for (const p of [
      'a/1.parquet',
      'a/deep/2.parquet',
      'b/3.parquet',
      'b/notes.txt',
      'b/4.csv',
      '_temporary/x/5.parquet',
      '.hidden/6.parquet',
      'a/_meta.parquet',
    ]) {
      fs.writeFileSync(join(data, p), 'x');
    }
  });

  it('directories are listed recursively and sorted, skipping _ and . entries and other extensions', () => {
    assert.deepEqual(
      expandPaths(data, 'parquet'),
      ['a/1.parquet', 'a/deep/2.parquet', 'b/3.parquet'].map((p) => join(data, p)),
    );
    assert.deepEqual(expandPaths(data, 'csv'), [join(data, 'b/4.csv')]);
  });

  it('globs, lists and files are expanded, sorted and deduplicated', () => {
    assert.deepEqual(
      expandPaths(join(data, '**/*.parquet'), 'parquet'),
      ['a/1.parquet', 'a/_meta.parquet', 'a/deep/2.parquet', 'b/3.parquet'].map((p) => join(data, p)),
    );
    assert.deepEqual(
      expandPaths([join(data, 'b/3.parquet'), join(data, 'a/*.parquet'), join(data, 'b/3.parquet')], 'parquet'),
      ['a/1.parquet', 'a/_meta.parquet', 'b/3.parquet'].map((p) => join(data, p)),
    );
    assert.deepEqual(expandPaths(`file://${join(data, 'b/3.parquet')}`, 'parquet'), [join(data, 'b/3.parquet')]);
  });

  it('errors name the path or glob that matched nothing; unknown remote schemes are refused', () => {
    assert.throws(
      () => expandPaths(join(data, 'zz.parquet'), 'parquet'),
      (e: Error) => e.message.includes(join(data, 'zz.parquet')) && /not found/.test(e.message),
    );
    assert.throws(
      () => expandPaths(join(data, '*.nope'), 'parquet'),
      (e: Error) => e.message.includes('*.nope'),
    );
    const empty = join(root, 'empty-dir');
    fs.mkdirSync(empty, { recursive: true });
    assert.throws(
      () => expandPaths(empty, 'csv'),
      (e: Error) => e.message.includes(empty) && /no csv files/.test(e.message),
    );
    assert.throws(() => expandPaths('gs://bucket/data/*.parquet', 'parquet'), /not supported.*gs:\/\/bucket/);
    assert.throws(() => expandPaths([], 'parquet'), /no parquet paths/);
  });

  it('works on a real committed dataset (footers readable)', async () => {
    const dir = fresh();
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    await w.commit([await w.writePart(3, [batch(0, 7)])]);
    const [only] = expandPaths(dir, 'parquet');
    assert.equal(inspectParquet(only!).numRows, 7);
  });

  it("concurrent appends to one directory keep every writer's files", async () => {
    const dir = fresh();
    const first = await DatasetWriter.begin(dir, { format: 'parquet' });
    await first.commit([await first.writePart(0, [batch(0, 1)])]);
    const a = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    const b = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    const pa = await a.writePart(0, [batch(10, 2)]);
    const pb = await b.writePart(0, [batch(20, 3)]);
    await Promise.all([a.commit([pa]), b.commit([pb])]);
    const m = readManifest(dir)!;
    assert.equal(m.files.length, 3);
    assert.equal(
      m.files.reduce((n, f) => n + f.rows, 0),
      6,
    );
    assert.ok(!fs.existsSync(join(dir, '_SUCCESS.lock')));
  });
});

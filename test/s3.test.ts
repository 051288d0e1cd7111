// s3:// reads and writes against a local s3rver (a child process): the same results as local
// paths, only the needed byte ranges fetched, the manifest commit protocol, clear errors.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readCsv, readParquet, setRunner } from 'fanout';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import * as arrow from 'apache-arrow';
import { readParquetBatches, writeParquetFile } from '../src/io/parquet/index.ts';
import {
  S3Blob,
  createS3WriteStream,
  fetchParquetTails,
  getS3Object,
  getS3ObjectOrNull,
  headS3,
  keyGlobMatcher,
  listS3,
  noteS3Files,
  putS3Object,
  resetS3Stats,
  s3Stats,
} from '../src/io/s3/index.ts';
import { DatasetWriter } from '../src/io/writer.ts';
import { sampleBatch, sampleRows, tempDir, writeSample } from './helpers.ts';

const BUCKET = 'fanout-test';
const S3 = `s3://${BUCKET}`;
const ENV_KEYS = [
  'AWS_ENDPOINT_URL_S3',
  'AWS_ENDPOINT_URL',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
];
const savedEnv: Record<string, string | undefined> = {};

let server: S3Server;
let local: string; // a local tree mirrored under s3://fanout-test/data/
let big: string; // one larger file (4 row groups) at s3://fanout-test/big.parquet

/** Upload every file below `dir` to `prefixUri`, keeping relative paths. */
async function mirror(dir: string, prefixUri: string): Promise<void> {
  const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => fs.statSync(join(dir, p)).isFile());
  await Promise.all(files.map((p) => putS3Object(`${prefixUri}/${p.split('\\').join('/')}`, fs.readFileSync(join(dir, p)))));
}

const byId = <T>(rows: T[]): T[] => [...rows].sort((a, b) => Number((a as { id: bigint }).id) - Number((b as { id: bigint }).id));

before(async () => {
  for (const k of ENV_KEYS) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  server = await startS3Server({ buckets: [BUCKET] });
  process.env.AWS_ENDPOINT_URL_S3 = server.endpoint; // no credentials: the local fallback applies
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // Node 20 is this project's floor
  setRunner('native', { workers: false });

  local = tempDir('fanout-s3-src-');
  fs.mkdirSync(join(local, 'sub'));
  await writeSample(join(local, 'a.parquet'), 0, 3000, 1000);
  await writeSample(join(local, 'b.parquet'), 3000, 2000, 1000);
  await writeSample(join(local, 'sub', 'c.parquet'), 5000, 1000, 500);
  await writeSample(join(local, '_meta.parquet'), 90_000, 10, 10); // never data in a directory read
  fs.writeFileSync(join(local, 'notes.txt'), 'not data');
  fs.writeFileSync(join(local, 'rows.csv'), 'id,name,score\n1,one,1.5\n2,"t,wo",\n3,three,3.25\n');
  await mirror(local, `${S3}/data`);

  big = join(tempDir('fanout-s3-big-'), 'big.parquet');
  // Every column dictionary-encoded (the writer's default before issue 12): the projection test below
  // assumes the other columns dwarf 'category'; 'auto' would delta-encode the unique ids to almost nothing.
  await writeSample(big, 0, 200_000, 50_000, { encoding: 'dictionary' });
  await putS3Object(`${S3}/big.parquet`, fs.readFileSync(big));
});

after(async () => {
  await server?.stop();
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

describe('local S3 server', () => {
  it('runs as a child process on a free port and stops without leaving it behind', async () => {
    assert.ok(server.port > 0);
    assert.equal(server.endpoint, `http://127.0.0.1:${server.port}`);
    const s = await startS3Server({ buckets: ['second-bucket'] });
    assert.notEqual(s.port, server.port);
    process.kill(s.pid, 0); // alive
    await s.stop();
    assert.throws(() => process.kill(s.pid, 0), /ESRCH/);
    await s.stop(); // idempotent
  });
});

describe('reading s3://', () => {
  it('prefix, prefix without slash, globs, lists and single objects read like the local paths', async () => {
    const want = byId(await readParquet(local).toRows());
    assert.equal(want.length, 6000);
    assert.deepEqual(byId(await readParquet(`${S3}/data/`).toRows()), want);
    assert.deepEqual(byId(await readParquet(`${S3}/data`).toRows()), want);
    assert.deepEqual(byId(await readParquet(`${S3}/data/**/*.parquet`).toRows()), byId(await readParquet(join(local, '**/*.parquet')).toRows()));
    assert.deepEqual(byId(await readParquet(`${S3}/data/*.parquet`).toRows()), byId(await readParquet(join(local, '*.parquet')).toRows()));
    assert.deepEqual(
      byId(await readParquet([`${S3}/data/b.parquet`, `${S3}/data/sub/c.parquet`]).toRows()),
      byId(await readParquet([join(local, 'b.parquet'), join(local, 'sub/c.parquet')]).toRows()),
    );
    const df = readParquet(`${S3}/data/a.parquet`, { columns: ['id', 'category'] });
    assert.deepEqual(df.columns, ['id', 'category']);
    assert.equal(await df.count(), 3000);
    // Mixed local and S3 inputs in one scan.
    assert.equal(await readParquet([join(local, 'a.parquet'), `${S3}/data/b.parquet`]).count(), 5000);
  });

  it('footers of a listing are fetched in one parallel round, then cached by ETag', async () => {
    const dir = tempDir('fanout-s3-many-');
    for (let i = 0; i < 10; i++) await writeSample(join(dir, `f${i}.parquet`), i * 100, 100, 100);
    await mirror(dir, `${S3}/many`);
    resetS3Stats();
    const df = readParquet(`${S3}/many/`);
    assert.equal(s3Stats.syncCalls, 2, 'one listing + one batch of footers');
    assert.equal(await df.count(), 1000);
    assert.equal(s3Stats.syncCalls, 2, 'planning and counting reuse the cached footers');
    // Listings are paginated (s3rver needs --openssl-legacy-provider for its continuation tokens).
    resetS3Stats();
    const paged = await listS3(`${S3}/many/`, { pageSize: 3 });
    assert.equal(s3Stats.listRequests, 4);
    assert.deepEqual(
      paged.objects.map((o) => o.key),
      (await listS3(`${S3}/many/`)).objects.map((o) => o.key),
    );
    assert.equal(paged.objects.length, 10);
    // A list of object URIs: one round of listings, one of footers.
    for (let i = 0; i < 10; i++) await putS3Object(`${S3}/many2/f${i}.parquet`, fs.readFileSync(join(dir, `f${i}.parquet`)));
    resetS3Stats();
    assert.equal(await readParquet(Array.from({ length: 10 }, (_, i) => `${S3}/many2/f${i}.parquet`)).count(), 1000);
    assert.equal(s3Stats.syncCalls, 2);
  });

  it("files read back by URI (a run's committed files): one listing vouches for all, their footers come in one round, no HEAD each", async () => {
    const dir = tempDir('fanout-s3-committed-');
    const uris: string[] = [];
    for (let i = 0; i < 6; i++) {
      await writeSample(join(dir, `part-${i}.parquet`), i * 50, 50, 50);
      uris.push(`${S3}/committed/part-${i}.parquet`);
      await putS3Object(uris[i]!, fs.readFileSync(join(dir, `part-${i}.parquet`)));
    }
    await putS3Object(`${S3}/committed/_SUCCESS`, '{}');
    resetS3Stats();
    await noteS3Files(uris);
    let rows = 0;
    for (const u of uris) for await (const b of readParquetBatches(u)) rows += b.numRows;
    assert.equal(rows, 300);
    assert.equal(s3Stats.listRequests, 1, 'one listing of the directory');
    assert.equal(s3Stats.headRequests, 0, 'sizes and ETags come from the listing');
    assert.equal(s3Stats.syncCalls, 1, 'every footer in one blocking round');
  });

  it('a Parquet tail of an object of unknown size is one suffix GET (no HEAD); an empty or missing object still answers as before', async () => {
    const whole = fs.readFileSync(big);
    await putS3Object(`${S3}/tails/small.parquet`, whole.subarray(0, 1000));
    await putS3Object(`${S3}/tails/empty`, new Uint8Array(0));
    resetS3Stats();
    const [b, s, e, m] = await fetchParquetTails([
      { uri: `${S3}/big.parquet` },
      { uri: `${S3}/tails/small.parquet` },
      { uri: `${S3}/tails/empty` },
      { uri: `${S3}/tails/missing` },
    ]);
    // One suffix GET each (the small one's head, for the magic check, comes from the same bytes).
    assert.equal(s3Stats.headRequests, 0);
    assert.equal(s3Stats.getRequests, 4);
    assert.ok(b && !('error' in b) && s && !('error' in s) && e && !('error' in e) && m && 'error' in m);
    assert.ok(whole.length > 64 << 10);
    assert.equal(b.size, whole.length);
    assert.equal(b.offset, whole.length - (64 << 10));
    assert.deepEqual(Buffer.from(b.bytes), whole.subarray(whole.length - (64 << 10)));
    assert.equal(b.etag, (await headS3(`${S3}/big.parquet`)).etag);
    assert.equal(s.size, 1000);
    assert.equal(s.offset, 0);
    assert.deepEqual(Buffer.from(s.bytes), whole.subarray(0, 1000));
    assert.equal(e.size, 0);
    assert.equal(m.error.code, 'NoSuchKey');
    assert.match(m.error.message, /tails\/missing/);
  });

  it('an input opened once per partition fetches the page indexes before its footer tail once per object version', async () => {
    // 200 row groups: the footer and the page indexes before it do not fit in the first 64 KiB tail read.
    const write = async (file: string, scale: number): Promise<void> => {
      function* batches(): Generator<arrow.RecordBatch> {
        for (let p = 0; p < 200; p++) {
          const id = BigInt64Array.from({ length: 50 }, (_, i) => BigInt(p * 50 + i));
          const x = Float64Array.from({ length: 50 }, (_, i) => i * scale);
          yield new arrow.Table({ id: arrow.makeVector(id), x: arrow.makeVector(x) }).batches[0]!;
        }
      }
      await writeParquetFile(file, batches(), { rowGroupSize: 50 });
    };
    const file = join(tempDir('fanout-s3-pageindex-'), 'many.parquet');
    await write(file, 1);
    const uri = `${S3}/pageindex/many.parquet`;
    await putS3Object(uri, fs.readFileSync(file));
    const group = async (g: number): Promise<number[]> => {
      const xs: number[] = [];
      for await (const b of readParquetBatches(uri, { rowGroups: [g] })) xs.push(...(b.getChild('x')!.toArray() as Float64Array));
      return xs;
    };
    assert.equal((await group(5)).length, 50);
    resetS3Stats();
    assert.deepEqual((await group(6)).slice(0, 3), [0, 1, 2]);
    assert.equal(s3Stats.getRequests, 1, "only the row group's column chunks");
    // A new version of the object is read as itself, never from the grown tail of the old one.
    await write(file, 10);
    await putS3Object(uri, fs.readFileSync(file));
    const again = await group(6).catch((e: unknown) => {
      assert.match(String(e), /changed/); // a reader holding the old footer says so; the next read sees the new version
      return group(6);
    });
    assert.deepEqual(again.slice(0, 3), [0, 10, 20]);
  });

  it('projection fetches only the needed column chunks', async () => {
    const size = fs.statSync(big).size;
    resetS3Stats();
    let rows = 0;
    for await (const b of readParquetBatches(`${S3}/big.parquet`, { columns: ['category'] })) rows += b.numRows;
    assert.equal(rows, 200_000);
    assert.ok(s3Stats.bytesRead < size * 0.2, `read ${s3Stats.bytesRead} of ${size} bytes`);
    const cats = await readParquet(`${S3}/big.parquet`).select('category').limit(3).toRows();
    assert.deepEqual(
      cats.map((r) => r.category),
      ['alpha', 'beta', 'gamma'],
    );
  });

  it('row groups are pruned by statistics, and explain shows it', async () => {
    const df = readParquet(`${S3}/big.parquet`).where(col('id').lt(1000n)).select('id', 'x');
    assert.match(await df.explain(), /row groups 1\/4/);
    resetS3Stats();
    const rows = await df.toRows();
    assert.deepEqual(
      rows,
      sampleRows(0, 1000).map((r) => ({ id: r.id, x: r.x })),
    );
    assert.ok(s3Stats.bytesRead < fs.statSync(big).size / 3, `read ${s3Stats.bytesRead} bytes`);
  });

  it('S3Blob serves byte-exact slices (parallel ranged GETs for large ones)', async () => {
    const bytes = fs.readFileSync(big);
    const h = await headS3(`${S3}/big.parquet`);
    const blob = new S3Blob(`${S3}/big.parquet`, h.size, { etag: h.etag });
    assert.equal(blob.size, bytes.length);
    const part = blob.slice(100, 5000);
    assert.equal(part.size, 4900);
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), new Uint8Array(bytes.subarray(100, 5000)));
    assert.deepEqual(new Uint8Array(await blob.slice(-8).arrayBuffer()), new Uint8Array(bytes.subarray(bytes.length - 8)));
    blob.prefetch(
      [
        [1000, 2000],
        [3000, 4000],
      ],
      't',
    );
    assert.deepEqual(new Uint8Array(await blob.slice(1500, 3500).arrayBuffer()), new Uint8Array(bytes.subarray(1500, 3500)));
  });

  it('errors name the URI: missing object, missing bucket, changed object', async () => {
    assert.throws(
      () => readParquet(`${S3}/nope/missing.parquet`),
      (e: Error) => e.message.includes(`${S3}/nope/missing.parquet`) && /not found/.test(e.message),
    );
    assert.throws(
      () => readParquet(`${S3}/data/*.nope`),
      (e: Error) => e.message.includes(`${S3}/data/*.nope`),
    );
    assert.throws(
      () => readParquet('s3://no-such-bucket-x/a.parquet'),
      (e: Error) => /s3:\/\/no-such-bucket-x\/a\.parquet/.test(e.message) && /NoSuchBucket/.test(e.message),
    );
    assert.throws(
      () => readCsv(`${S3}/nope.csv`),
      (e: Error) => e.message.includes(`${S3}/nope.csv`),
    );
    await putS3Object(`${S3}/junk.parquet`, 'not parquet at all');
    assert.throws(
      () => readParquet(`${S3}/junk.parquet`),
      (e: Error) => e.message.includes(`${S3}/junk.parquet`) && /not a Parquet file/.test(e.message),
    );
    // Planned, then replaced: the read fails naming the object instead of mixing versions.
    // (Objects smaller than the footer read are fetched whole at planning: those read as planned.)
    await putS3Object(`${S3}/moving.parquet`, fs.readFileSync(big));
    const df = readParquet(`${S3}/moving.parquet`);
    await putS3Object(`${S3}/moving.parquet`, fs.readFileSync(join(local, 'b.parquet')));
    await assert.rejects(
      () => df.toRows(),
      (e: Error) => e.message.includes(`${S3}/moving.parquet`) && /changed/.test(e.message),
    );
    assert.equal(await readParquet(`${S3}/moving.parquet`).count(), 2000, 'a new plan sees the new object');
    await assert.rejects(() => getS3Object(`${S3}/nope.bin`), /S3 GetObject s3:\/\/fanout-test\/nope\.bin: no such object \(NoSuchKey\)/);
  });
});

describe('writing s3://', () => {
  it('writeParquet commits a manifest listing exactly its files; readers of the prefix read exactly those', async () => {
    const out = `${S3}/out/pq`;
    const written = await readParquet(`${S3}/data/`).where(col('x').lt(0.5)).select('id', 'x', 'category').writeParquet(out);
    const files = (await written.toRows()).map((r) => r.path as string).sort();
    assert.ok(files.length >= 1 && files.every((f) => f.startsWith(`${out}/part-`)));
    const manifest = JSON.parse(Buffer.from(await getS3Object(`${out}/_SUCCESS`)).toString('utf8'));
    assert.equal(manifest.format, 'parquet');
    assert.deepEqual(manifest.files.map((f: { path: string }) => `${out}/${f.path}`).sort(), files);
    const keys = (await listS3(`${out}/`)).objects.map((o) => o.uri).sort();
    assert.deepEqual(keys, [...files, `${out}/_SUCCESS`].sort(), 'no _temporary keys left');

    const want = byId(
      sampleRows(0, 6000)
        .filter((r) => r.x < 0.5)
        .map((r) => ({ id: r.id, x: r.x, category: r.category })),
    );
    assert.deepEqual(byId(await readParquet(out).toRows()), want);
    // A stray (uncommitted) file under the prefix is not part of the dataset.
    await putS3Object(`${out}/part-99999-stray.parquet`, fs.readFileSync(join(local, 'a.parquet')));
    assert.deepEqual(byId(await readParquet(`${out}/`).toRows()), want);
    await assert.rejects(() => readParquet(`${S3}/data/a.parquet`).writeParquet(out), /already holds data/);

    // overwrite replaces the committed files (and old parts); append adds to them.
    await readParquet(`${S3}/data/a.parquet`).select('id').writeParquet(out, { mode: 'overwrite' });
    assert.equal(await readParquet(out).count(), 3000);
    const after = (await listS3(`${out}/`)).objects.map((o) => o.key);
    assert.ok(!after.some((k) => files.includes(`${S3}/${k}`)), 'replaced files deleted');
    await readParquet(`${S3}/data/b.parquet`).select('id').writeParquet(out, { mode: 'append' });
    assert.equal(await readParquet(out).count(), 5000);
  });

  it('a write that fails mid-way leaves no manifest and no visible part keys', async () => {
    const bad = Buffer.from(fs.readFileSync(join(local, 'a.parquet')));
    bad.fill(0, 200, Math.floor(bad.length / 2));
    await putS3Object(`${S3}/bad/bad-data.parquet`, bad);
    const out = `${S3}/out/failing`;
    await assert.rejects(() => readParquet(`${S3}/bad/bad-data.parquet`).writeParquet(out), /bad-data\.parquet/);
    assert.equal(await getS3ObjectOrNull(`${out}/_SUCCESS`), null);
    assert.deepEqual(
      (await listS3(`${out}/`)).objects.map((o) => o.key),
      [],
    );

    // The writer on its own: a source that throws half-way, then abort().
    const w = await DatasetWriter.begin(`${S3}/out/aborted/`, { format: 'parquet' });
    assert.match(w.partPath(3), /^s3:\/\/fanout-test\/out\/aborted\/_temporary\/[^/]+\/part-00003-.+\.parquet$/);
    const ok = await w.writePart(0, [sampleBatch(0, 100)]);
    assert.equal((await headS3(ok.path)).size, ok.bytes);
    await assert.rejects(
      () =>
        w.writePart(
          1,
          (async function* () {
            yield sampleBatch(0, 10);
            throw new Error('source broke');
          })(),
        ),
      /source broke/,
    );
    await w.abort();
    assert.deepEqual((await listS3(`${S3}/out/aborted/`)).objects, []);
  });

  it('a write stream that stays under a part is one plain PutObject at close: nothing visible before, content type kept; abort sends nothing', async () => {
    await server.requests(true);
    const w = await createS3WriteStream(`${S3}/small/a.bin`, { contentType: 'application/x-test' });
    const chunk = Buffer.from('abc');
    await w.write(chunk);
    chunk.fill(0); // the stream copied it
    await w.write(new Uint8Array(0));
    await w.write(Buffer.from('def'));
    assert.equal(await getS3ObjectOrNull(`${S3}/small/a.bin`), null);
    const r = await w.close();
    assert.equal(r.bytes, 6);
    assert.equal(Buffer.from(await getS3Object(`${S3}/small/a.bin`)).toString(), 'abcdef');
    const h = await headS3(`${S3}/small/a.bin`);
    assert.equal(r.etag, h.etag);
    const empty = await createS3WriteStream(`${S3}/small/empty.bin`);
    assert.equal((await empty.close()).bytes, 0);
    assert.equal((await headS3(`${S3}/small/empty.bin`)).size, 0);
    const gone = await createS3WriteStream(`${S3}/small/gone.bin`);
    await gone.write(Buffer.from('x'));
    await gone.abort();
    assert.equal(await getS3ObjectOrNull(`${S3}/small/gone.bin`), null);
    const counts = await server.requests(true);
    assert.equal(counts['PutObject'], 2, 'one PutObject per closed stream');
    assert.equal(Object.keys(counts).filter((k) => k.includes('multipart')).length, 0);
  });

  it('multipart uploads (> 5 MiB) round-trip byte-exact', async () => {
    const data = randomBytes(12 << 20);
    const up = await createS3WriteStream(`${S3}/multi.bin`, { partSize: 5 << 20 });
    for (let o = 0; o < data.length; ) {
      const n = Math.min(data.length - o, 700_001); // chunk sizes unaligned with parts
      await up.write(data.subarray(o, o + n));
      o += n;
    }
    const r = await up.close();
    assert.equal(r.bytes, data.length);
    const back = await getS3Object(`${S3}/multi.bin`);
    assert.ok(Buffer.from(back).equals(data));
    const h = await headS3(`${S3}/multi.bin`);
    const blob = new S3Blob(`${S3}/multi.bin`, h.size, { etag: h.etag });
    assert.ok(Buffer.from(await blob.slice(1, data.length - 1).arrayBuffer()).equals(data.subarray(1, data.length - 1)));
  });

  it('CSV reads and writes like local files', async () => {
    const want = await readCsv(join(local, 'rows.csv')).toRows();
    assert.deepEqual(await readCsv(`${S3}/data/rows.csv`).toRows(), want);
    assert.equal(readCsv(`${S3}/data/`).schema.toString(), readCsv(local).schema.toString());
    const out = `${S3}/out/csv`;
    await readParquet(`${S3}/data/a.parquet`).select('id', 'x', 'category').writeCsv(out);
    const back = await readCsv(`${out}/`).toRows();
    assert.deepEqual(
      byId(back),
      sampleRows(0, 3000).map((r) => ({ id: r.id, x: r.x, category: r.category })),
    );
    const m = JSON.parse(Buffer.from(await getS3Object(`${out}/_SUCCESS`)).toString('utf8'));
    assert.equal(m.format, 'csv');
    assert.equal(m.rows, 3000);
  });
});

describe('key globs', () => {
  it('match like picomatch: * within a segment, ** across, braces, classes, no dot files', () => {
    const m = keyGlobMatcher('data/**/*.{parquet,pq}');
    assert.ok(m('data/a.parquet') && m('data/x/y/b.pq'));
    assert.ok(!m('data/a.csv') && !m('data/.hidden/a.parquet') && !m('data/.a.parquet') && !m('other/a.parquet'));
    const one = keyGlobMatcher('data/part-[0-9]?.csv');
    assert.ok(one('data/part-12.csv') && !one('data/part-x2.csv') && !one('data/sub/part-12.csv'));
    assert.ok(keyGlobMatcher('data/*')('data/_SUCCESS') && !keyGlobMatcher('data/*')('data/sub/x'));
  });
});

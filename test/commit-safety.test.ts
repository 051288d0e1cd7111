// Commit safety (issue 8, items 5-7): concurrent S3 appends from separate processes keep every
// row (conditional manifest writes, which the local S3 harness now honours); a commit killed with
// SIGKILL part-way never reads as a complete dataset and the next commit recovers; a lock left by
// a dead writer is broken at once while a live writer's lock still serializes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { readParquet, setRunner } from 'fanout';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import { expandPaths } from '../src/io/paths.ts';
import { readParquetBatches } from '../src/io/parquet/index.ts';
import { getS3Object, listS3, putS3Object } from '../src/io/s3/index.ts';
import { DatasetWriter, readManifest, readManifestS3 } from '../src/io/writer.ts';
import { tempDir } from './helpers.ts';

const BUCKET = 'commit-safety';
const S3 = `s3://${BUCKET}`;
const CHILD = new URL('./fixtures/commit-child.ts', import.meta.url).pathname;
const ENV_KEYS = [
  'AWS_ENDPOINT_URL_S3',
  'AWS_ENDPOINT_URL',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
  'FANOUT_TEST_CRASH_AFTER_RENAMES',
];
const savedEnv: Record<string, string | undefined> = {};
let server: S3Server;
let root: string;

before(async () => {
  for (const k of ENV_KEYS) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  server = await startS3Server({ buckets: [BUCKET] });
  process.env.AWS_ENDPOINT_URL_S3 = server.endpoint;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  setRunner('native', { workers: false });
  root = tempDir('fanout-commit-safety-');
});

after(async () => {
  await server?.stop();
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run test/fixtures/commit-child.ts in its own node process with `job` (and extra env). */
function runChild(job: object, env: Record<string, string> = {}, onLine?: (line: string) => void): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', CHILD], {
      env: { ...process.env, NODE_OPTIONS: '', FANOUT_CHILD: JSON.stringify(job), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      const before = stdout;
      stdout += s;
      if (onLine) for (const l of stdout.split('\n').slice(before.split('\n').length - 1, -1)) onLine(l);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function ids(files: string[]): Promise<bigint[]> {
  const out: bigint[] = [];
  for (const f of files) for await (const b of readParquetBatches(f, { columns: ['id'] })) out.push(...(b.getChildAt(0)!.toArray() as BigInt64Array));
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const range = (from: number, n: number): bigint[] => Array.from({ length: n }, (_, k) => BigInt(from + k));

function idBatch(from: number, n: number): arrow.RecordBatch {
  return new arrow.Table({ id: arrow.makeVector(BigInt64Array.from(range(from, n))) }).batches[0]!;
}

describe('the local S3 harness honours conditional PUTs', () => {
  it('answers 412 PreconditionFailed (AWS XML body) for a failed If-Match and for If-None-Match: * on an existing key', async () => {
    const uri = `${S3}/cond/key.txt`;
    const first = await putS3Object(uri, 'one', { ifNoneMatch: '*' });
    const url = `${server.endpoint}/${BUCKET}/cond/key.txt`;

    const exists = await fetch(url, { method: 'PUT', body: 'two', headers: { 'if-none-match': '*' } });
    assert.equal(exists.status, 412);
    const body = await exists.text();
    assert.match(
      body,
      /<Error><Code>PreconditionFailed<\/Code><Message>At least one of the pre-conditions you specified did not hold<\/Message><Condition>If-None-Match<\/Condition>/,
    );
    assert.match(exists.headers.get('content-type') ?? '', /application\/xml/);

    const stale = await fetch(url, { method: 'PUT', body: 'three', headers: { 'if-match': '"0123456789abcdef0123456789abcdef"' } });
    assert.equal(stale.status, 412);
    assert.match(await stale.text(), /<Code>PreconditionFailed<\/Code>.*<Condition>If-Match<\/Condition>/);
    assert.equal(Buffer.from(await getS3Object(uri)).toString(), 'one', 'a failed condition leaves the object alone');

    // Through the SDK: the error code callers branch on; a matching ETag replaces.
    await assert.rejects(
      putS3Object(uri, 'x', { ifMatch: '"ffffffffffffffffffffffffffffffff"' }),
      (e: Error & { code?: string }) => e.code === 'PreconditionFailed' && /HTTP 412/.test(e.message),
    );
    await assert.rejects(putS3Object(uri, 'x', { ifNoneMatch: '*' }), (e: Error & { code?: string }) => e.code === 'PreconditionFailed');
    await putS3Object(uri, 'four', { ifMatch: first.etag });
    assert.equal(Buffer.from(await getS3Object(uri)).toString(), 'four');
    await assert.rejects(putS3Object(`${S3}/cond/missing.txt`, 'x', { ifMatch: first.etag }), (e: Error & { code?: string }) => e.code === 'NoSuchKey');

    // Conditional writes to one key are serialized: of 8 racing creates exactly one wins.
    const racing = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => putS3Object(`${S3}/cond/race.txt`, `w${i}`, { ifNoneMatch: '*' })));
    assert.equal(racing.filter((r) => r.status === 'fulfilled').length, 1);
  });

  it('answers a PUT only once the object is written: a GET right after serves the whole object at its ETag', async () => {
    // s3rver 3.7.1 answered PUTs before its write stream had written (or even opened) the file, so a
    // GET right after could serve the new ETag with an empty body; under load an appending writer
    // read its manifest that way, took it for "no manifest" and dropped other writers' entries.
    // A FIFO where the object's file goes makes "not written yet" deterministic: s3rver's own write
    // blocks opening it until a reader comes, while a store that writes the file whole replaces it.
    const dir = join(root, 's3-written');
    const slow = await startS3Server({ dir, buckets: ['written'] });
    try {
      const file = join(dir, 'written', 'm', '_SUCCESS._S3rver_object');
      fs.mkdirSync(join(dir, 'written', 'm'), { recursive: true });
      const made = spawnSync('mkfifo', [file]);
      assert.equal(made.status, 0, `mkfifo ${file}: ${made.stderr}`);
      const body = JSON.stringify({ format: 'parquet', files: Array.from({ length: 50 }, (_, i) => ({ path: `part-${i}.parquet`, rows: 1, bytes: 1 })) });
      const url = `${slow.endpoint}/written/m/_SUCCESS`;
      const put = await fetch(url, { method: 'PUT', body, signal: AbortSignal.timeout(10_000) });
      assert.equal(put.status, 200);
      const etag = put.headers.get('etag');
      const got = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('etag'), etag);
      const bytes = Buffer.from(await got.arrayBuffer());
      assert.equal(bytes.toString(), body, 'the GET after the PUT serves the object written');
      assert.equal(`"${createHash('md5').update(bytes).digest('hex')}"`, etag);
      assert.ok(fs.statSync(file).isFile());
    } finally {
      await slow.stop();
    }
  });
});

describe('concurrent S3 appends (conditional manifest writes)', () => {
  it('two processes each appending 10 x 500 rows to one prefix keep all 10,000 rows, in 5 trials', { timeout: 600_000 }, async () => {
    for (let trial = 0; trial < 5; trial++) {
      const uri = `${S3}/appends/trial-${trial}`;
      const go = join(root, `go-${trial}`);
      let ready = 0;
      let release!: () => void;
      const bothReady = new Promise<void>((r) => {
        release = r;
      });
      const onLine = (l: string): void => {
        if (l === 'ready' && ++ready === 2) release();
      };
      const runs = [0, 100_000].map((base) => runChild({ op: 'appends', uri, writes: 10, rows: 500, base, go }, {}, onLine));
      await Promise.race([bothReady, Promise.all(runs)]);
      fs.writeFileSync(go, ''); // both start appending at once
      for (const r of await Promise.all(runs)) assert.equal(r.code, 0, `trial ${trial}: a writer failed:\n${r.stderr}`);

      const manifest = (await readManifestS3(uri))!;
      assert.equal(manifest.files.length, 20, `trial ${trial}: manifest lists ${manifest.files.length} of 20 files`);
      assert.equal(manifest.rows, 10_000);
      assert.equal(await readParquet(uri).count(), 10_000);
      assert.deepEqual(await ids(expandPaths(uri, 'parquet')), [...range(0, 5000), ...range(100_000, 5000)]);
      const keys = (await listS3(`${uri}/`)).objects.map((o) => o.key);
      assert.ok(!keys.some((k) => k.includes('/_temporary/')), `trial ${trial}: temp keys left: ${keys.filter((k) => k.includes('/_temporary/')).join(', ')}`);
    }
  });

  it("mode 'error': of two writers racing to create one prefix, one commits and the other fails clearly, keeping nothing", async () => {
    const uri = `${S3}/create-race`;
    const a = await DatasetWriter.begin(uri, { format: 'parquet' });
    const b = await DatasetWriter.begin(uri, { format: 'parquet' }); // both see an empty prefix
    const pa = await a.writePart(0, [idBatch(0, 10)]);
    const pb = await b.writePart(0, [idBatch(100, 20)]);
    const [ra, rb] = await Promise.allSettled([a.commit([pa]), b.commit([pb])]);
    const won = [ra, rb].filter((r) => r.status === 'fulfilled');
    const lost = [ra, rb].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.match((lost[0]!.reason as Error).message, /create-race\/ was committed by another writer.*mode 'error' lost the race/);
    await (ra.status === 'rejected' ? a : b).abort();
    const want = ra.status === 'fulfilled' ? range(0, 10) : range(100, 20);
    assert.deepEqual(await ids(expandPaths(uri, 'parquet')), want);
    const keys = (await listS3(`${uri}/`)).objects.map((o) => o.key.slice(`create-race/`.length));
    assert.equal(keys.length, 2, `only the winner's part and _SUCCESS remain: ${keys.join(', ')}`);
  });

  it("mode 'overwrite' racing overwrites and appends: the result is one writer's data, or an overwrite followed by appends; never a missing file", async () => {
    const uri = `${S3}/overwrite-race`;
    const w0 = await DatasetWriter.begin(uri, { format: 'parquet' });
    await w0.commit([await w0.writePart(0, [idBatch(0, 5)])]);
    for (let round = 0; round < 3; round++) {
      const o1 = await DatasetWriter.begin(uri, { format: 'parquet', mode: 'overwrite' });
      const o2 = await DatasetWriter.begin(uri, { format: 'parquet', mode: 'overwrite' });
      const ap = await DatasetWriter.begin(uri, { format: 'parquet', mode: 'append' });
      const parts = [await o1.writePart(0, [idBatch(1000, 3)]), await o2.writePart(0, [idBatch(2000, 4)]), await ap.writePart(0, [idBatch(3000, 2)])];
      await Promise.all([o1.commit([parts[0]!]), o2.commit([parts[1]!]), ap.commit([parts[2]!])]);
      const got = await ids(expandPaths(uri, 'parquet')); // every listed file exists
      const o1Rows = range(1000, 3);
      const o2Rows = range(2000, 4);
      const apRows = range(3000, 2);
      const allowed = [o1Rows, o2Rows, [...o1Rows, ...apRows], [...o2Rows, ...apRows]].map((r) => JSON.stringify(r.map(String)));
      assert.ok(allowed.includes(JSON.stringify(got.map(String))), `round ${round}: unexpected result ${got.join(',')}`);
    }
  });
});

describe('a commit killed part-way (local directory)', () => {
  it('a new directory with 13 of 20 parts moved in refuses to read, naming it and the interrupted run; the next overwrite recovers', {
    timeout: 120_000,
  }, async () => {
    const dir = join(root, 'crash-new');
    let runId = '';
    const r = await runChild({ op: 'parts', dir, mode: 'error', parts: 20, rows: 1000, base: 0 }, { FANOUT_TEST_CRASH_AFTER_RENAMES: '13' }, (l) => {
      if (l.startsWith('{')) runId = (JSON.parse(l) as { runId: string }).runId;
    });
    assert.equal(r.signal, 'SIGKILL', `the child should have been killed mid-commit:\n${r.stderr}`);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.parquet')).length, 13, 'the crash left 13 parts in place');
    assert.equal(readManifest(dir), null);

    const refused = (e: Error): boolean =>
      e.message.includes(dir) && e.message.includes(runId) && /was interrupted/.test(e.message) && /no _SUCCESS/.test(e.message);
    assert.throws(() => expandPaths(dir, 'parquet'), refused);
    assert.throws(() => readParquet(dir), refused); // the fanout API refuses when the scan is built

    // The dead writer's lock is broken at once (not after 120 s), its parts and temp dir removed.
    const lock = JSON.parse(fs.readFileSync(join(dir, '_SUCCESS.lock'), 'utf8')) as { pid: number; host: string };
    assert.equal(lock.host, hostname());
    const t0 = Date.now();
    const w = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'overwrite' });
    await w.commit([await w.writePart(0, [idBatch(50_000, 7)])]);
    assert.ok(Date.now() - t0 < 10_000, `recovery took ${Date.now() - t0} ms`);
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), range(50_000, 7));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['_SUCCESS', `part-00000-${w.runId}.parquet`].sort(), 'no crashed parts, marker, lock or _temporary left');
  });

  it('an interrupted append refuses to read; the manifest still lists only the earlier files; the next append recovers', { timeout: 120_000 }, async () => {
    const dir = join(root, 'crash-append');
    const w1 = await DatasetWriter.begin(dir, { format: 'parquet' });
    const first = await w1.commit([await w1.writePart(0, [idBatch(0, 100)]), await w1.writePart(1, [idBatch(100, 100)])]);
    const before = readManifest(dir)!;

    let runId = '';
    const r = await runChild({ op: 'parts', dir, mode: 'append', parts: 6, rows: 50, base: 10_000 }, { FANOUT_TEST_CRASH_AFTER_RENAMES: '3' }, (l) => {
      if (l.startsWith('{')) runId = (JSON.parse(l) as { runId: string }).runId;
    });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.deepEqual(readManifest(dir), before, 'the crash did not touch the committed manifest');
    assert.equal(fs.readdirSync(dir).filter((n) => n.includes(runId)).length, 3);
    assert.throws(
      () => expandPaths(dir, 'parquet'),
      (e: Error) => e.message.includes(dir) && e.message.includes(runId) && /was interrupted/.test(e.message) && /earlier run/.test(e.message),
    );

    const w2 = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    const added = await w2.commit([await w2.writePart(0, [idBatch(20_000, 10)])]);
    assert.deepEqual(
      readManifest(dir)!.files.map((f) => f.path),
      [...first, ...added].map((f) => f.path.slice(dir.length + 1)),
    );
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), [...range(0, 200), ...range(20_000, 10)]);
    assert.equal(fs.readdirSync(dir).filter((n) => n.includes(runId)).length, 0, 'the crashed parts were removed');
    assert.ok(!fs.existsSync(join(dir, '_COMMITTING')) && !fs.existsSync(join(dir, '_temporary')) && !fs.existsSync(join(dir, '_SUCCESS.lock')));
  });

  it('a crash right after the marker (nothing moved yet) also refuses; a plain directory of parquet files still reads', { timeout: 60_000 }, async () => {
    const dir = join(root, 'crash-zero');
    const r = await runChild({ op: 'parts', dir, mode: 'error', parts: 2, rows: 10, base: 0 }, { FANOUT_TEST_CRASH_AFTER_RENAMES: '0' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.throws(
      () => expandPaths(dir, 'parquet'),
      (e: Error) => e.message.includes(dir) && /was interrupted/.test(e.message),
    );

    const plain = join(root, 'plain');
    const w = await DatasetWriter.begin(plain, { format: 'parquet' });
    await w.commit([await w.writePart(0, [idBatch(0, 4)])]);
    fs.rmSync(join(plain, '_SUCCESS')); // as if written by another tool: no manifest, no marker
    assert.deepEqual(await ids(expandPaths(plain, 'parquet')), range(0, 4));
  });

  it('a commit still in progress (live owner): the previous manifest is read; without one the directory refuses', async () => {
    const marker = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), runId: '20990101T000000000Z-00000000' };
    const dir = join(root, 'in-progress');
    fs.mkdirSync(dir);
    fs.writeFileSync(join(dir, '_COMMITTING'), JSON.stringify(marker));
    fs.writeFileSync(join(dir, 'part-00000-20990101T000000000Z-00000000.parquet'), 'x');
    assert.throws(
      () => expandPaths(dir, 'parquet'),
      (e: Error) => e.message.includes(dir) && /still in progress/.test(e.message),
    );

    const committed = join(root, 'in-progress-append');
    const w = await DatasetWriter.begin(committed, { format: 'parquet' });
    const files = await w.commit([await w.writePart(0, [idBatch(0, 3)])]);
    fs.writeFileSync(join(committed, '_COMMITTING'), JSON.stringify(marker));
    fs.writeFileSync(join(committed, 'part-00000-20990101T000000000Z-00000000.parquet'), 'x');
    assert.deepEqual(
      expandPaths(committed, 'parquet'),
      files.map((f) => f.path),
      "exactly the previous manifest's files",
    );
  });
});

describe('a commit killed part-way (S3 prefix)', () => {
  it('a new prefix with some parts copied refuses to read; after an append crash the previous manifest still reads; the next commit recovers', {
    timeout: 120_000,
  }, async () => {
    const uri = `${S3}/crash/new`;
    const r = await runChild({ op: 'parts', dir: uri, mode: 'error', parts: 6, rows: 100, base: 0 }, { FANOUT_TEST_CRASH_AFTER_RENAMES: '2' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const copied = (await listS3(`${uri}/`, { delimiter: '/' })).objects.filter((o) => o.key.endsWith('.parquet'));
    assert.ok(copied.length >= 2, `the crash left ${copied.length} copies in place`);
    assert.throws(
      () => expandPaths(uri, 'parquet'),
      (e: Error) => e.message.includes(`${uri}/`) && /_COMMITTING is present/.test(e.message) && /no _SUCCESS/.test(e.message),
    );
    assert.throws(() => readParquet(`${uri}/`), /not a complete dataset/);

    const w = await DatasetWriter.begin(uri, { format: 'parquet', mode: 'overwrite' });
    await w.commit([await w.writePart(0, [idBatch(9000, 5)])]);
    assert.deepEqual(await ids(expandPaths(uri, 'parquet')), range(9000, 5));

    const r2 = await runChild({ op: 'parts', dir: uri, mode: 'append', parts: 4, rows: 10, base: 500 }, { FANOUT_TEST_CRASH_AFTER_RENAMES: '1' });
    assert.equal(r2.signal, 'SIGKILL', r2.stderr);
    assert.deepEqual(await ids(expandPaths(uri, 'parquet')), range(9000, 5), "the manifest (S3's atomic commit point) is untouched");
    const w2 = await DatasetWriter.begin(uri, { format: 'parquet', mode: 'append' });
    await w2.commit([await w2.writePart(0, [idBatch(9100, 2)])]);
    assert.deepEqual(await ids(expandPaths(uri, 'parquet')), [...range(9000, 5), ...range(9100, 2)], 'the crashed copies are not adopted');
  });
});

describe('the commit lock', () => {
  it("a live owner's lock serializes; once that process dies the lock is broken without waiting out a timeout", { timeout: 60_000 }, async () => {
    const dir = join(root, 'lock-live');
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    const part = await w.writePart(0, [idBatch(0, 3)]);
    const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(join(dir, '_SUCCESS.lock'), JSON.stringify({ pid: holder.pid, host: hostname(), startedAt: new Date().toISOString(), runId: 'holder' }));
      let done = false;
      const committing = w.commit([part]).then((r) => {
        done = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(done, false, 'the commit waits while the lock owner is alive');
      assert.equal(readManifest(dir), null);
      const killedAt = Date.now();
      holder.kill('SIGKILL');
      await committing;
      assert.ok(Date.now() - killedAt < 5000);
      assert.deepEqual(await ids(expandPaths(dir, 'parquet')), range(0, 3));
      assert.ok(!fs.existsSync(join(dir, '_SUCCESS.lock')));
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a lock from another host is broken only after its documented age (10 minutes)', { timeout: 60_000 }, async () => {
    const dir = join(root, 'lock-foreign');
    const w = await DatasetWriter.begin(dir, { format: 'parquet' });
    const part = await w.writePart(0, [idBatch(0, 2)]);
    const old = new Date(Date.now() - 11 * 60_000).toISOString();
    fs.writeFileSync(join(dir, '_SUCCESS.lock'), JSON.stringify({ pid: 1, host: 'some-other-host.example', startedAt: old, runId: 'x' }));
    await w.commit([part]); // broken at once: older than 10 minutes
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), range(0, 2));

    const w2 = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    const p2 = await w2.writePart(0, [idBatch(10, 2)]);
    fs.writeFileSync(join(dir, '_SUCCESS.lock'), JSON.stringify({ pid: 1, host: 'some-other-host.example', startedAt: new Date().toISOString(), runId: 'y' }));
    let done = false;
    const committing = w2.commit([p2]).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(done, false, 'a young lock from another host is respected');
    fs.rmSync(join(dir, '_SUCCESS.lock'));
    await committing;
    assert.deepEqual(await ids(expandPaths(dir, 'parquet')), [...range(0, 2), ...range(10, 2)]);
  });

  it("a crashed writer's _temporary dir is removed by the next commit; a live writer's is kept", { timeout: 60_000 }, async () => {
    const dir = join(root, 'temps');
    const w0 = await DatasetWriter.begin(dir, { format: 'parquet' });
    await w0.commit([await w0.writePart(0, [idBatch(0, 1)])]);
    // A writer that died before committing (parts written, never moved in).
    const dead = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((r) => dead.on('exit', r));
    const deadTemp = join(dir, '_temporary', `20200101T000000000Z-deadbeef.pid${dead.pid}.${hostname().replace(/[^A-Za-z0-9-]/g, '_')}`);
    fs.mkdirSync(deadTemp, { recursive: true });
    fs.writeFileSync(join(deadTemp, 'part-00000-20200101T000000000Z-deadbeef.parquet'), 'x');
    const live = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    await live.writePart(0, [idBatch(5, 1)]);

    const w1 = await DatasetWriter.begin(dir, { format: 'parquet', mode: 'append' });
    await w1.commit([await w1.writePart(0, [idBatch(1, 1)])]);
    assert.equal(fs.existsSync(deadTemp), false, "the dead writer's temp dir is gone");
    assert.equal(fs.existsSync(live.tempDir), true, "the live writer's temp dir is kept");
    await live.abort();
  });
});

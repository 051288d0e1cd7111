// The storage layer (src/io/store/): one function maps a URI to its store, and a directory store
// honours the same contract as S3 (conditional puts, writes that appear whole, listings).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { keyGlobMatcher } from '../src/io/s3/index.ts';
import { isBelowPrefix, isConditionFailure, LocalStore, PreconditionFailedError, S3Store, storeFor } from '../src/io/store/index.ts';
import { tempDir } from './helpers.ts';

describe('storeFor', () => {
  it('maps s3:// URIs to a bucket store and paths to the local store', () => {
    const s3 = storeFor('s3://my-bucket/a/b.parquet');
    assert.ok(s3.store instanceof S3Store);
    assert.equal(s3.key, 'a/b.parquet');
    assert.equal(s3.container, 'my-bucket');
    assert.equal(s3.store.uri(s3.key), 's3://my-bucket/a/b.parquet');
    assert.equal(storeFor('s3://my-bucket/x').store, s3.store, 'one store per bucket');
    const local = storeFor('some/dir/f.csv');
    assert.ok(local.store instanceof LocalStore);
    assert.equal(local.store.uri(local.key), resolve('some/dir/f.csv'));
    assert.equal(storeFor(`file://${resolve('x.csv')}`).store.uri(storeFor(`file://${resolve('x.csv')}`).key), resolve('x.csv'));
  });

  it('refuses other schemes with an error naming the URI', () => {
    assert.throws(() => storeFor('gs://b/k'), /remote paths other than s3:\/\/ are not supported \(gs:\/\/b\/k\)/);
    assert.throws(() => storeFor('http://h/k', 'remote output paths'), /remote output paths other than s3:\/\/ are not supported/);
    assert.throws(() => storeFor('s3://x/k'), /invalid bucket name 'x'/);
  });

  it('isBelowPrefix: strictly below, same bucket; null for a prefix that is not an object-store URI', () => {
    assert.equal(isBelowPrefix('s3://bk/out/run1/', 's3://bk/out/'), true);
    assert.equal(isBelowPrefix('s3://bk/out/', 's3://bk/out/'), false);
    assert.equal(isBelowPrefix('s3://bk/outside/x', 's3://bk/out'), false);
    assert.equal(isBelowPrefix('s3://ck/out/x', 's3://bk/out/'), false);
    assert.equal(isBelowPrefix('/tmp/out/x', 's3://bk/out/'), false);
    assert.equal(isBelowPrefix('s3://bk/out/x', '/tmp/out'), null);
  });
});

describe('LocalStore', () => {
  it('conditional puts: If-None-Match creates once, If-Match needs the current version', async () => {
    const store = new LocalStore(tempDir());
    const first = await store.put('d/_SUCCESS', 'one', { ifNoneMatch: '*' });
    const again = await store.put('d/_SUCCESS', 'two', { ifNoneMatch: '*' }).catch((e: unknown) => e);
    assert.ok(again instanceof PreconditionFailedError && isConditionFailure(again), String(again));
    assert.equal(Buffer.from(await store.get('d/_SUCCESS')).toString(), 'one');
    const second = await store.put('d/_SUCCESS', 'three', { ifMatch: first.etag });
    assert.equal(Buffer.from(await store.get('d/_SUCCESS')).toString(), 'three');
    const stale = await store.put('d/_SUCCESS', 'four', { ifMatch: first.etag === second.etag ? '"stale"' : first.etag }).catch((e: unknown) => e);
    assert.ok(isConditionFailure(stale), String(stale));
    assert.equal(Buffer.from(await store.get('d/_SUCCESS')).toString(), 'three');
    assert.deepEqual(readdirSync(join(store.root, 'd')), ['_SUCCESS'], 'no temp files left behind');
    assert.equal((await store.getOrNull('d/_SUCCESS'))?.etag, second.etag);
    assert.equal(await store.getOrNull('d/missing'), null);
  });

  it('streamed writes appear whole on close; abort leaves nothing', async () => {
    const store = new LocalStore(tempDir());
    const w = await store.openWriter('a.bin');
    await w.write(new Uint8Array([1, 2, 3]));
    assert.equal(existsSync(store.uri('a.bin')), false, 'not visible before close');
    assert.equal((await w.close()).bytes, 3);
    assert.deepEqual([...readFileSync(store.uri('a.bin'))], [1, 2, 3]);
    const dropped = await store.openWriter('b.bin');
    await dropped.write(new Uint8Array([9]));
    await dropped.abort();
    assert.deepEqual(readdirSync(store.root), ['a.bin']);
  });

  it('lists by prefix (with a delimiter: sub-prefixes), heads, ranges and deletes', async () => {
    const store = new LocalStore(tempDir());
    for (const k of ['p/a.csv', 'p/b.csv', 'p/sub/c.csv', 'q/d.csv']) await store.put(k, k);
    assert.deepEqual(await store.list('p/'), ['p/a.csv', 'p/b.csv', 'p/sub/c.csv']);
    const top = await store.listObjects('p/', { delimiter: '/' });
    assert.deepEqual(
      top.objects.map((o) => o.key),
      ['p/a.csv', 'p/b.csv'],
    );
    assert.deepEqual(top.prefixes, [store.uri('p/sub/')]);
    assert.deepEqual(
      store.sync.list('p/s').objects.map((o) => o.key),
      ['p/sub/c.csv'],
    );
    assert.equal((await store.head('p/a.csv'))?.size, 'p/a.csv'.length);
    assert.equal(await store.head('p/none'), null);
    assert.equal(Buffer.from(store.sync.range('q/d.csv', 2, 100)).toString(), 'd.csv');
    assert.equal(await store.deletePrefix('p/'), 3);
    assert.deepEqual(await store.list(''), ['q/d.csv']);
    await assert.rejects(store.get('../outside'), /is not a path inside the store/);
  });

  it('a local Parquet write leaves only the finished file', async () => {
    const dir = tempDir();
    const file = join(dir, 'x.parquet');
    const batch = arrow.tableFromArrays({ a: Int32Array.from([1, 2, 3]) }).batches[0]!;
    const r = await writeParquetFile(file, [batch]);
    assert.equal(r.rows, 3);
    assert.deepEqual(readdirSync(dir), ['x.parquet']);
  });
});

describe('S3 key globs (picomatch)', () => {
  it('keep the matcher semantics: negated classes, escapes, braces, hidden segments', () => {
    const neg = keyGlobMatcher('d/[!a]*.csv');
    assert.ok(neg('d/b1.csv') && !neg('d/a1.csv'));
    const esc = keyGlobMatcher('d/x\\*.csv');
    assert.ok(esc('d/x*.csv') && !esc('d/xy.csv'));
    const alt = keyGlobMatcher('d/{2024,2025}/**/*.parquet');
    assert.ok(alt('d/2024/a.parquet') && alt('d/2025/m/b.parquet') && !alt('d/2023/a.parquet'));
    assert.ok(!alt('d/2024/.tmp/a.parquet') && !alt('d/2024/_x/.a.parquet'));
  });
});

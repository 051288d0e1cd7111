// Hive layouts on S3 (the harness's S3 server) and through the serverless runner (the offline
// harness: Step Functions, Lambda handlers, Finalize): the same partition columns, pruning and
// one-commit partitioned writes as on local directories.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, DataType, Field, fromRecords, lit, readParquet, Schema, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import * as fs from 'node:fs';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { getS3Object, listS3, putS3Object, s3Stats } from '../src/io/s3/index.ts';
import { sampleBatch, tempDir } from './helpers.ts';
import { cpuLabel } from './fixtures/cloud-pipeline.ts';

let cloud: LocalCloud;
const SCHEMA = new Schema([
  new Field('id', DataType.int64()),
  new Field('x', DataType.float64()),
  new Field('category', DataType.utf8()),
  new Field('dt', DataType.date()),
  new Field('region', DataType.utf8()),
]);
const REGIONS = ['eu', 'us/west', null, 'ap'];
function records(n: number, from = 0): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return { id: BigInt(i), x: (i % 10) / 10, category: i % 2 ? 'a' : 'b', dt: new Date(Date.UTC(2026, 10, 1 + (i % 3))), region: REGIONS[i % 4] };
  });
}
const byId = (rows: Record<string, unknown>[]): Record<string, unknown>[] => [...rows].sort((a, b) => Number(a['id']) - Number(b['id']));
const sameOrder = (rows: Record<string, unknown>[], names: string[]): Record<string, unknown>[] =>
  byId(rows).map((r) => Object.fromEntries(names.map((n) => [n, r[n]])));

before(async () => {
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
  setRunner('native', { workers: false });
});
after(async () => {
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

describe('hive partitioning on S3', () => {
  it('writes a partitioned layout in one commit, reads it back typed, prunes in explain, and overwrite-partitions keeps the other partitions', async () => {
    const lake = `s3://${cloud.inputBucket}/lake`;
    const df = fromRecords(records(120), SCHEMA);
    const written = await df.writeParquet(lake, { partitionBy: ['dt', 'region'] });
    assert.equal((await written.toRows()).length, 12);
    const keys = (await listS3(`${lake}/`)).objects.map((o) => o.key);
    assert.ok(keys.includes('lake/_SUCCESS'));
    assert.ok(!keys.some((k) => k.includes('_temporary')), keys.join(' '));
    assert.ok(keys.some((k) => k.startsWith('lake/dt=2026-11-02/region=us%2Fwest/part-')));
    assert.ok(keys.some((k) => k.startsWith('lake/dt=2026-11-01/region=__HIVE_DEFAULT_PARTITION__/part-')));
    const manifest = JSON.parse(Buffer.from(await getS3Object(`${lake}/_SUCCESS`)).toString('utf8')) as { files: { path: string }[] };
    assert.equal(manifest.files.length, 12);

    const back = readParquet(`${lake}/`);
    assert.deepEqual(back.schema.names, ['id', 'x', 'category', 'dt', 'region']);
    assert.deepEqual(sameOrder(await back.toRows(), SCHEMA.names), sameOrder(await df.toRows(), SCHEMA.names));
    const pred = col('dt')
      .eq(lit(new Date(Date.UTC(2026, 10, 3)), DataType.date()))
      .and(col('region').isIn(['eu', 'ap']));
    const q = readParquet(`${lake}/`).where(pred);
    assert.match(await q.explain(), /hive partitions \[dt, region\]: 2 of 12 after/);
    assert.deepEqual(sameOrder(await q.toRows(), SCHEMA.names), sameOrder(await df.where(pred).toRows(), SCHEMA.names));

    const etags = new Map((await listS3(`${lake}/`)).objects.map((o) => [o.key, o.etag]));
    const fresh = [{ id: 5000n, x: 0.5, category: 'z', dt: new Date(Date.UTC(2026, 10, 2)), region: 'eu' }];
    await fromRecords(fresh, SCHEMA).writeParquet(lake, { partitionBy: ['dt', 'region'], mode: 'overwrite-partitions' });
    const after = new Map((await listS3(`${lake}/`)).objects.map((o) => [o.key, o.etag]));
    for (const [k, etag] of etags) {
      if (k === 'lake/_SUCCESS') continue;
      if (k.startsWith('lake/dt=2026-11-02/region=eu/')) assert.ok(!after.has(k), `${k} was replaced`);
      else assert.equal(after.get(k), etag, `${k} is untouched`);
    }
    const rows = await readParquet(`${lake}/`).toRows();
    const replaced = rows.filter((r) => r['region'] === 'eu' && (r['dt'] as Date).getTime() === Date.UTC(2026, 10, 2));
    assert.deepEqual(
      replaced.map((r) => r['id']),
      [5000n],
    );
    assert.equal(rows.length, 120 - 10 + 1);
  });
});

describe('hive partitioning on S3: partitions pruned before listing', () => {
  it('lists only the surviving partitions (delimiter listings) and never opens a pruned one', async () => {
    const root = `s3://${cloud.inputBucket}/lazy-lake/`;
    const local = join(tempDir(), 'part.parquet');
    let i = 0;
    for (const dt of ['2026-11-01', '2026-11-02', '2026-11-03']) {
      for (const region of ['eu', 'us']) {
        await writeParquetFile(local, [sampleBatch(i * 10, 10)]);
        await putS3Object(`${root}dt=${dt}/region=${region}/part-0.parquet`, new Uint8Array(fs.readFileSync(local)));
        i++;
      }
    }
    // Traps in pruned partitions: listing dt=2026-11-03/region=us finds a deeper key level, reading it a corrupt footer.
    await putS3Object(`${root}dt=2026-11-03/region=us/corrupt.parquet`, 'not a parquet file');
    await putS3Object(`${root}dt=2026-11-03/region=us/extra=1/deeper.parquet`, new Uint8Array(fs.readFileSync(local)));
    await putS3Object(`${root}dt=2026-11-02/not-a-key/x.parquet`, new Uint8Array(fs.readFileSync(local)));

    // The harness S3 rolls keys two levels down up into common prefixes, as S3 does (s3rver did not).
    assert.deepEqual(
      (await listS3(root, { delimiter: '/' })).prefixes,
      ['2026-11-01', '2026-11-02', '2026-11-03'].map((d) => `${root}dt=${d}/`),
    );
    const dt1 = col('dt').eq(lit(new Date(Date.UTC(2026, 10, 1)), DataType.date()));
    const declared = { hivePartitioning: { schema: { dt: DataType.date(), region: DataType.utf8() } } };
    const before = s3Stats.listRequests;
    const df = readParquet(root, declared);
    // Built from the root listing and one depth-first path: three delimiter listings.
    assert.equal(s3Stats.listRequests - before, 3);
    assert.deepEqual(df.schema.names.slice(-2), ['dt', 'region']);
    const atPlan = s3Stats.listRequests;
    const text = await df.where(dt1).explain();
    assert.match(text, /partition directories listed: 4, pruned unlisted: 2; footers read at planning: 2/, text);
    assert.equal(s3Stats.listRequests - atPlan, 4, 'root, dt=2026-11-01 and its two leaves');
    assert.equal((await df.where(dt1).toRows()).length, 20);
    const eu1 = await readParquet(root, declared)
      .where(dt1.and(col('region').eq('eu')))
      .toRows();
    assert.deepEqual(
      eu1.map((r) => r['id']),
      Array.from({ length: 10 }, (_, k) => BigInt(k)),
    );
    // Nothing pruned: the walk reaches the traps.
    await assert.rejects(readParquet(root, declared).where(col('id').gt(0n)).toRows(), /different partition keys: .*not-a-key/);
  });
});

describe('hive partitioning through the serverless runner (offline harness)', () => {
  it('the AWS planner reads the partition columns with pruning, and Finalize commits a partitioned output', async () => {
    const lake = `s3://${cloud.inputBucket}/aws-lake`;
    await fromRecords(records(200), SCHEMA).writeParquet(lake, { partitionBy: ['dt', 'region'] });
    const pipeline = () =>
      readParquet(`${lake}/`)
        .where(col('dt').ge(lit(new Date(Date.UTC(2026, 10, 2)), DataType.date())))
        .withColumn('label', cpuLabel(col('category'), col('x')));
    const want = await pipeline().toRows();
    assert.ok(want.length > 0);

    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    try {
      const text = await pipeline().explain();
      assert.match(text, /Stage 0: lambda, 8 partition\(s\)/, text);
      assert.match(text, /hive partitions \[dt, region\]: 8 of 12 after/);
      const out = `s3://${cloud.inputBucket}/aws-out/`;
      const written = await pipeline().writeParquet(out, { partitionBy: ['region'] });
      // The last stage's 8 partitions each wrote their own file per region they hold (Finalize only
      // copied them in): every region, nulls included, has files from several partitions, and the
      // manifest lists each of them.
      const files = (await written.toRows()).map((r) => String(r['path']));
      const perRegion = new Map<string, number>();
      for (const f of files) {
        const region = f.split('/').find((seg) => seg.startsWith('region='))!;
        perRegion.set(region, (perRegion.get(region) ?? 0) + 1);
      }
      assert.equal(perRegion.size, 4, 'every region, nulls included');
      assert.ok(
        [...perRegion.values()].every((n) => n > 1),
        JSON.stringify([...perRegion]),
      );
      const firstManifest = JSON.parse(Buffer.from(await getS3Object(`${out}_SUCCESS`)).toString('utf8')) as { files: { path: string }[] };
      assert.equal(firstManifest.files.length, files.length);
      assert.deepEqual(firstManifest.files.map((f) => f.path).sort(), files.map((f) => f.slice(out.length)).sort());
      // Another run replaces only region=eu.
      const eu = () => pipeline().where(col('region').eq('eu')).where(col('id').lt(100));
      await eu().writeParquet(out, { partitionBy: ['region'], mode: 'overwrite-partitions' });
      setRunner('native', { workers: false });
      const keys = (await listS3(out)).objects.map((o) => o.key).filter((k) => k.endsWith('.parquet'));
      assert.deepEqual([...new Set(keys.map((k) => k.split('/')[1]))].sort(), [
        'region=__HIVE_DEFAULT_PARTITION__',
        'region=ap',
        'region=eu',
        'region=us%2Fwest',
      ]);
      const got = await readParquet(out).toRows();
      const names = ['id', 'x', 'category', 'dt', 'label', 'region'];
      const expected = [...want.filter((r) => r['region'] !== 'eu'), ...want.filter((r) => r['region'] === 'eu' && (r['id'] as bigint) < 100n)];
      assert.deepEqual(sameOrder(got, names), sameOrder(expected, names));
    } finally {
      setRunner('native', { workers: false });
    }
  });
  it('after a global limit, Finalize still splits the one ordered result into partitions (one file each)', async () => {
    const src = `s3://${cloud.inputBucket}/limit-src/`;
    await fromRecords(records(60), SCHEMA).writeParquet(src);
    const pipeline = () =>
      readParquet(src)
        .withColumn('label', cpuLabel(col('category'), col('x')))
        .limit(25);
    const want = await pipeline().toRows();
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    try {
      const out = `s3://${cloud.inputBucket}/limit-out/`;
      const written = await pipeline().writeParquet(out, { partitionBy: ['region'] });
      const paths = (await written.toRows()).map((r) => String(r['path']));
      assert.equal(paths.length, new Set(paths.map((f) => f.split('/').find((seg) => seg.startsWith('region=')))).size, 'one file per region');
      setRunner('native', { workers: false });
      const names = ['id', 'x', 'category', 'dt', 'label', 'region'];
      assert.deepEqual(sameOrder(await readParquet(out).toRows(), names), sameOrder(want, names));
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

// Issue 13 item 4 for CSV, local and on S3 (test/hive.test.ts and hive-cloud.test.ts cover Parquet
// and a string-keyed local CSV layout): writeCsv(partitionBy) writes the layout in one commit,
// readCsv reads typed partition columns (inferred, or declared with hivePartitioning: { schema }),
// prunes by a filter on them (visible in explain()), 'overwrite-partitions' replaces only the
// partitions written, and partitionBy a missing column is refused naming it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, DataType, Field, fromRecords, lit, readCsv, Schema, setRunner } from 'fanout';
import { type S3Server, startS3Server } from '../localstack/s3-server.ts';
import { getS3Object, listS3 } from '../src/io/s3/index.ts';
import * as fs from 'node:fs';
import { tempDir } from './helpers.ts';

const BUCKET = 'fanout-hive-csv';
const ENV_KEYS = ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE'];
const savedEnv: Record<string, string | undefined> = {};
let server: S3Server;

const SCHEMA = new Schema([
  new Field('id', DataType.int64()),
  new Field('v', DataType.float64()),
  new Field('dt', DataType.date()),
  new Field('n', DataType.int32()),
  new Field('region', DataType.utf8(), true),
]);
const REGIONS = ['eu', 'us/west', null];
function records(count: number, from = 0): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    return { id: BigInt(i), v: i + 0.5, dt: new Date(Date.UTC(2026, 10, 1 + (i % 2))), n: i % 3, region: REGIONS[i % 3] };
  });
}
// Per-file CSV inference can disagree across files: the file columns' types are given.
const FILE_TYPES = { id: DataType.int64(), v: DataType.float64(), region: DataType.utf8() };
const byId = (rows: Record<string, unknown>[]): Record<string, unknown>[] => [...rows].sort((a, b) => Number(a['id']) - Number(b['id']));
const pick = (rows: Record<string, unknown>[], names: string[]): Record<string, unknown>[] =>
  byId(rows).map((r) => Object.fromEntries(names.map((n) => [n, r[n]])));

before(async () => {
  for (const k of ENV_KEYS) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  server = await startS3Server({ buckets: [BUCKET] });
  process.env['AWS_ENDPOINT_URL_S3'] = server.endpoint;
  setRunner('native', { workers: false });
});

after(async () => {
  await server?.stop();
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  setRunner('native');
});

async function files(root: string): Promise<Map<string, string>> {
  if (root.startsWith('s3://'))
    return new Map((await listS3(`${root}/`)).objects.map((o) => [o.key.slice(root.length - `s3://${BUCKET}/`.length + 1), o.etag ?? '']));
  const out = new Map<string, string>();
  for (const p of fs.readdirSync(root, { recursive: true }) as string[]) {
    const full = join(root, p);
    if (fs.statSync(full).isFile()) out.set(p.split('\\').join('/'), String(fs.statSync(full).mtimeMs) + fs.readFileSync(full, 'utf8'));
  }
  return out;
}

async function readText(root: string, rel: string): Promise<string> {
  return root.startsWith('s3://') ? Buffer.from(await getS3Object(`${root}/${rel}`)).toString('utf8') : fs.readFileSync(join(root, rel), 'utf8');
}

for (const where of ['local', 'S3'] as const) {
  describe(`hive partitioning of CSV (${where})`, () => {
    const root = (name: string): string => (where === 'local' ? join(tempDir(), name) : `s3://${BUCKET}/${name}`);

    it('writeCsv partitionBy [dt, n] round-trips through readCsv with typed partition columns, pruned in explain()', async () => {
      const lake = root('lake');
      const df = fromRecords(records(60), SCHEMA);
      const written = await df.writeCsv(lake, { partitionBy: ['dt', 'n'] });
      assert.equal((await written.toRows()).length, 6);
      const listed = [...(await files(lake)).keys()];
      assert.ok(listed.includes('_SUCCESS'), listed.join(' '));
      assert.ok(
        listed.some((k) => /^dt=2026-11-02\/n=1\/part-.*\.csv$/.test(k)),
        listed.join(' '),
      );
      const manifest = JSON.parse(await readText(lake, '_SUCCESS')) as { files: unknown[] };
      assert.equal(manifest.files.length, 6, 'one commit lists every file');
      // No partition column inside the files.
      const one = listed.find((k) => k.endsWith('.csv'))!;
      assert.deepEqual((await readText(lake, one)).split('\n')[0]!.split(','), ['id', 'v', 'region']);

      const back = readCsv(lake, { schema: FILE_TYPES });
      const types = Object.fromEntries(back.schema.fields.map((f) => [f.name, String(f.type)]));
      assert.deepEqual([types['dt'], types['n']], [String(DataType.date()), String(DataType.int64())], 'inferred: date and int64');
      assert.deepEqual(pick(await back.toRows(), ['id', 'v', 'dt', 'region']), pick(await df.toRows(), ['id', 'v', 'dt', 'region']));
      assert.deepEqual(
        byId(await back.toRows()).map((r) => r['n']),
        byId(await df.toRows()).map((r) => BigInt(r['n'] as number)),
      );

      const pred = col('dt')
        .eq(lit(new Date(Date.UTC(2026, 10, 2)), DataType.date()))
        .and(col('n').eq(1));
      const q = readCsv(lake, { schema: FILE_TYPES }).where(pred);
      assert.match(await q.explain(), /hive partitions \[dt, n\]: 1 of 6 after/);
      const rows = await q.toRows();
      assert.equal(rows.length, 10);
      assert.ok(rows.every((r) => r['n'] === 1n && (r['dt'] as Date).getTime() === Date.UTC(2026, 10, 2)));

      // Declared: the keys take the declared types.
      const declared = readCsv(lake, { schema: FILE_TYPES, hivePartitioning: { schema: { n: DataType.int32(), dt: DataType.utf8() } } });
      assert.equal(String(declared.schema.field('n').type), String(DataType.int32()));
      assert.equal(String(declared.schema.field('dt').type), String(DataType.utf8()));
      const d = byId(await declared.where(col('n').eq(2)).toRows());
      assert.equal(d.length, 20);
      assert.deepEqual([d[0]!['n'], d[0]!['dt']], [2, '2026-11-01']);
    });

    it("'overwrite-partitions' replaces only the partitions written; partitionBy a missing column is refused", async () => {
      const lake = root('lake2');
      await fromRecords(records(60), SCHEMA).writeCsv(lake, { partitionBy: ['n'] });
      const before = await files(lake);
      const fresh = [{ id: 1000n, v: 0.25, dt: new Date(Date.UTC(2026, 10, 5)), n: 1, region: 'eu' }];
      await fromRecords(fresh, SCHEMA).writeCsv(lake, { partitionBy: ['n'], mode: 'overwrite-partitions' });
      const after = await files(lake);
      for (const [k, sig] of before) {
        if (k === '_SUCCESS') continue;
        if (k.startsWith('n=1/')) assert.ok(!after.has(k), `${k} was replaced`);
        else assert.equal(after.get(k), sig, `${k} is untouched`);
      }
      const rows = await readCsv(lake, { schema: { ...FILE_TYPES, dt: DataType.date() } }).toRows();
      assert.equal(rows.length, 60 - 20 + 1);
      assert.deepEqual(
        rows.filter((r) => r['n'] === 1n).map((r) => r['id']),
        [1000n],
      );
      await assert.rejects(
        fromRecords(records(3), SCHEMA).writeCsv(root('bad'), { partitionBy: ['nope'] }),
        /writeCsv\(".*"\): partitionBy column 'nope' is not a column of the data \(columns: id, v, dt, n, region\)/,
      );
    });
  });
}

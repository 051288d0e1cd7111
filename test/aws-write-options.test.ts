// Parquet writer options on the serverless runner: they travel in the run plan's output spec to the
// Lambda stages and ECS GPU tasks that write the result files (flat, hive layout, and Finalize's
// rewrite after a global limit), checked when the plan is made; plans without them are unchanged.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parquetMetadata } from 'hyparquet';
import { col, DataType, Field, fromRecords, readParquet, Schema, setRunner, shutdownWorkers, type DataFrame } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { keys, planRun, type RunPlan } from '../src/aws/run.ts';
import { getJson, S3Store } from '../src/io/store/index.ts';
import { getS3Object, listS3 } from '../src/io/s3/index.ts';
import { cpuLabel, gpuScore } from './fixtures/cloud-pipeline.ts';
import { tempDir } from './helpers.ts';

let cloud: LocalCloud;
let dir: string;
const N = 4000;

before(async () => {
  dir = tempDir('fanout-aws-write-options-');
  const rows = Array.from({ length: N }, (_, n) => ({
    id: BigInt(n),
    x: ((n * 7919) % 1000) / 1000,
    category: ['a', 'b', 'c'][n % 3]!,
    v: n % 11 === 0 ? null : (n * 37) % 1013,
  }));
  const schema = new Schema([
    new Field('id', DataType.int64(), false),
    new Field('x', DataType.float64(), false),
    new Field('category', DataType.utf8(), false),
    new Field('v', DataType.float64(), true),
  ]);
  setRunner('native', { workers: false });
  for (let p = 0; p < 2; p++) await fromRecords(rows.slice((p * N) / 2, ((p + 1) * N) / 2), schema).writeParquet(join(dir, 'in'), { mode: 'append' });
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

const IN = (): DataFrame => readParquet(join(dir, 'in'));

/** Each result file's column encodings (row group 0), by file key. */
async function encodingsUnder(prefix: string): Promise<Map<string, Record<string, string[]>>> {
  const out = new Map<string, Record<string, string[]>>();
  for (const o of (await listS3(prefix)).objects) {
    if (!o.key.endsWith('.parquet')) continue;
    const buf = await getS3Object(`s3://${cloud.inputBucket}/${o.key}`);
    const md = parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
    const enc: Record<string, string[]> = {};
    for (const c of md.row_groups[0]?.columns ?? []) enc[c.meta_data!.path_in_schema[0]!] ??= [...c.meta_data!.encodings].sort();
    out.set(o.key, enc);
  }
  return out;
}

/** The plan of the newest run in the work bucket that `before` did not hold. */
async function newPlan(before: Set<string>): Promise<RunPlan> {
  const ids = [...new Set((await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/`)).objects.map((o) => o.key.split('/')[1]!))].filter(
    (id) => !before.has(id),
  );
  assert.equal(ids.length, 1, ids.join(' '));
  return getJson<RunPlan>(new S3Store(cloud.runnerOptions.workBucket), keys.plan(ids[0]!));
}
const runIds = async (): Promise<Set<string>> =>
  new Set((await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/`)).objects.map((o) => o.key.split('/')[1]!));

const dictionary = (e: string[] | undefined): boolean => !!e?.includes('RLE_DICTIONARY');

describe('serverless runner: Parquet writer options', () => {
  it('Lambda and ECS GPU stages write their result files with the options; the plan carries them', async () => {
    const q = () =>
      IN()
        .withColumn('label', cpuLabel(col('category'), col('x')))
        .withColumn('score', gpuScore(col('x')))
        .select('id', 'label', 'score');
    setRunner('native', { workers: false });
    const want = await q().toRows();
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const out = `s3://${cloud.inputBucket}/opts-gpu/`;
    const seen = await runIds();
    try {
      await q().writeParquet(out, { parquet: { encoding: 'plain', columnEncoding: { id: 'delta' }, compression: 'zstd' } });
    } finally {
      setRunner('native', { workers: false });
    }
    const plan = await newPlan(seen);
    assert.deepEqual(plan.output?.parquet, { encoding: 'plain', columnEncoding: { id: 'delta' }, compression: 'zstd' });
    assert.ok(plan.stages.at(-1)?.executor === 'ecs-gpu', 'the result is written by the ECS GPU stage');
    const files = await encodingsUnder(out);
    assert.ok(files.size >= 2, `${files.size} files`);
    for (const [f, e] of files) {
      assert.deepEqual(e['id'], ['DELTA_BINARY_PACKED', 'RLE'], `${f}: ${JSON.stringify(e)}`);
      assert.ok(!dictionary(e['label']) && !dictionary(e['score']), `${f}: ${JSON.stringify(e)}`);
    }
    assert.deepEqual(await readParquet(out).toRows(), want);
  });

  it('without options the plan has no writer options and the files keep the defaults (auto: a dictionary on a low-cardinality string)', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const out = `s3://${cloud.inputBucket}/opts-none/`;
    const seen = await runIds();
    try {
      await IN().select('id', 'category').writeParquet(out);
    } finally {
      setRunner('native', { workers: false });
    }
    const plan = await newPlan(seen);
    assert.ok(plan.output && !('parquet' in plan.output), JSON.stringify(plan.output));
    for (const [f, e] of await encodingsUnder(out)) assert.ok(dictionary(e['category']), `${f}: ${JSON.stringify(e)}`);
  });

  it('a hive layout, a groupBy (shuffle) and Finalize after a limit all write with the options', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 16 << 10, shufflePartitions: 2 });
    const hive = `s3://${cloud.inputBucket}/opts-hive/`;
    const grouped = `s3://${cloud.inputBucket}/opts-grouped/`;
    const limited = `s3://${cloud.inputBucket}/opts-limited/`;
    try {
      await IN()
        .select('id', 'category', 'v')
        .writeParquet(hive, { partitionBy: ['category'], parquet: { encoding: 'plain', columnEncoding: { id: 'delta' } } });
      await IN()
        .groupBy('category')
        .agg(col('v').sum().alias('sv'), col('id').count().alias('n'))
        .writeParquet(grouped, { parquet: { encoding: 'plain', columnEncoding: { n: 'delta' } } });
      await IN()
        .select('id', 'category')
        .limit(500)
        .writeParquet(limited, { parquet: { encoding: 'plain', columnEncoding: { id: 'delta' } } });
    } finally {
      setRunner('native', { workers: false });
    }
    const hiveFiles = await encodingsUnder(hive);
    assert.ok(hiveFiles.size >= 3, `${hiveFiles.size} hive files`);
    for (const [f, e] of hiveFiles) {
      assert.match(f, /category=[abc]\//);
      assert.deepEqual(e, { id: ['DELTA_BINARY_PACKED', 'RLE'], v: ['PLAIN', 'RLE'] }, f);
    }
    const groupedFiles = [...(await encodingsUnder(grouped)).values()].filter((e) => Object.keys(e).length && e['category']);
    assert.ok(groupedFiles.length >= 1);
    for (const e of groupedFiles) assert.deepEqual(e, { category: ['PLAIN', 'RLE'], sv: ['PLAIN', 'RLE'], n: ['DELTA_BINARY_PACKED', 'RLE'] });
    const limitedFiles = await encodingsUnder(limited);
    assert.equal(limitedFiles.size, 1);
    for (const e of limitedFiles.values()) assert.deepEqual(e, { id: ['DELTA_BINARY_PACKED', 'RLE'], category: ['PLAIN', 'RLE'] });
    assert.equal(await readParquet(hive).count(), N);
    assert.equal(await readParquet(limited).count(), 500);
    assert.deepEqual(
      (await readParquet(grouped).sort('category').toRows()).map((r) => Number(r['n'])),
      [1334, 1333, 1333],
    );
  });

  it('planRun checks writer options against the result schema when the plan is made', () => {
    const plan = IN().select('id', 'category').plan;
    const output = { uri: 's3://out/x/', format: 'parquet' as const, mode: 'overwrite' as const };
    assert.throws(() => planRun(plan, { pipeline: null, output: { ...output, parquet: { columnEncoding: { x: 'plain' } } } }), /'x'/);
    assert.throws(
      () => planRun(plan, { pipeline: null, output: { ...output, parquet: { columnEncoding: { category: 'delta' } } } }),
      /columnEncoding\['category'\] = 'delta' needs an integer/,
    );
    assert.throws(
      () => planRun(plan, { pipeline: null, output: { ...output, format: 'csv', parquet: { encoding: 'plain' } } }),
      /writing s3:\/\/out\/x\/: Parquet writer options given for a csv output/,
    );
    const ok = planRun(plan, { pipeline: null, output: { ...output, parquet: { encoding: 'plain' } } });
    assert.deepEqual(ok.output, { ...output, parquet: { encoding: 'plain' } });
    // An empty options object stores nothing: the plan equals one without options.
    assert.deepEqual(planRun(plan, { pipeline: null, output: { ...output, parquet: {} } }).output, output);
  });
});

// The serverless shuffle through the offline harness (Step Functions, Lambda handlers, S3): groupBy/
// agg, distinct, keyed repartition, every join kind, broadcast join, sort and UDFs around them give
// the embedded runner's results (which test/relational.test.ts compares with DuckDB). Small data,
// a few partitions: each run takes the harness a few seconds.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListMapRunsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { col, DataType, Field, fromRecords, readParquet, Schema, setRunner, shutdownWorkers, type DataFrame } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { getJson, S3Store } from '../src/io/store/index.ts';
import { keys, type RunPlan } from '../src/aws/run.ts';
import { listS3 } from '../src/io/s3/index.ts';
import { tempDir } from './helpers.ts';
import { seededRandom } from './random.ts';
import { cpuLabel, gpuScore } from './fixtures/cloud-pipeline.ts';

let cloud: LocalCloud;
let dir: string;
const N = 3000;

/** An order-free (or, with `ordered`, ordered) canonical form of rows: bigints as numbers, floats rounded, lists sorted. */
function canon(rows: readonly Record<string, unknown>[], ordered = false): string[] {
  const norm = (v: unknown): unknown => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'bigint') return Number(v);
    if (typeof v === 'number') return Number.isInteger(v) ? v : Number(v.toPrecision(7));
    if (Array.isArray(v))
      return v
        .map(norm)
        .map((x) => JSON.stringify(x))
        .sort();
    if (v instanceof Date) return v.toISOString();
    return v;
  };
  const out = rows.map((r) => JSON.stringify(Object.keys(r).map((k) => [k, norm(r[k])])));
  return ordered ? out : out.sort();
}

before(async () => {
  dir = tempDir('fanout-relational-cloud-');
  const { rnd, ri, maybe, pick } = seededRandom(31);
  const words = Array.from({ length: 60 }, (_, i) => `w${i}`);
  const rows = Array.from({ length: N }, (_, n) => ({
    id: BigInt(n),
    // Skew: a third of the rows share key 'hot'; some keys are null.
    k: rnd() < 0.33 ? 'hot' : maybe(() => pick(words), 0.05),
    g: maybe(() => ri(0, 12), 0.1),
    v: maybe(() => Math.round(rnd() * 1e5) / 100, 0.15),
    i: maybe(() => BigInt(ri(-1e5, 1e5)), 0.1),
    x: rnd(),
    category: pick(['a', 'b', 'c']),
  }));
  const schema = new Schema([
    new Field('id', DataType.int64(), false),
    new Field('k', DataType.utf8(), true),
    new Field('g', DataType.int32(), true),
    new Field('v', DataType.float64(), true),
    new Field('i', DataType.int64(), true),
    new Field('x', DataType.float64(), false),
    new Field('category', DataType.utf8(), false),
  ]);
  setRunner('native', { workers: false, targetPartitionBytes: 16 << 10 });
  for (let p = 0; p < 2; p++) await fromRecords(rows.slice((p * N) / 2, ((p + 1) * N) / 2), schema).writeParquet(join(dir, 'facts'), { mode: 'append' });
  const dimRows = Array.from({ length: 40 }, (_, j) => ({ k: j % 13 === 0 ? null : `w${j + 30}`, g: maybe(() => ri(0, 20), 0.1), label: `L${j}` }));
  dimRows.push({ k: 'hot', g: 1, label: 'hot1' }, { k: 'hot', g: 2, label: 'hot2' });
  await fromRecords(
    dimRows,
    new Schema([new Field('k', DataType.utf8(), true), new Field('g', DataType.int32(), true), new Field('label', DataType.utf8(), true)]),
  ).writeParquet(join(dir, 'dims'));
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

const F = (): DataFrame => readParquet(join(dir, 'facts'));
const D = (): DataFrame => readParquet(join(dir, 'dims'));

/** Rows of a pipeline on the embedded runner and through the harness (a few map partitions, 3 reduce partitions). */
async function both(df: () => DataFrame, aws: Record<string, number> = {}): Promise<{ want: Record<string, unknown>[]; got: Record<string, unknown>[] }> {
  setRunner('native', { workers: false });
  const want = await df().toRows();
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3, ...aws });
  try {
    const got = await df().toRows();
    return { want, got };
  } finally {
    setRunner('native', { workers: false });
  }
}

describe('serverless shuffle: groupBy / agg / distinct / repartition', () => {
  it('groupBy with several aggregates over a skewed string key with nulls equals the embedded runner', async () => {
    const q = () =>
      F()
        .groupBy('k')
        .agg(
          col('v').sum().alias('sv'),
          col('i').sum().alias('si'),
          col('v').mean().alias('mv'),
          col('v').min().alias('minv'),
          col('i').max().alias('maxi'),
          col('v').count().alias('cv'),
          col('g').countDistinct().alias('cdg'),
          col('g').list().alias('lg'),
        );
    const { want, got } = await both(q);
    assert.ok(want.length > 50);
    assert.deepEqual(canon(got), canon(want));
  });

  it('distinct, a whole-frame agg, and a groupBy over no rows', async () => {
    const d = await both(() => F().distinct('k', 'g'));
    assert.ok(d.want.length > 100);
    assert.deepEqual(canon(d.got), canon(d.want));
    const whole = await both(() =>
      F().agg(col('v').sum().alias('s'), col('k').count().alias('c'), col('k').countDistinct().alias('d'), col('v').mean().alias('m')),
    );
    assert.equal(whole.got.length, 1);
    assert.deepEqual(canon(whole.got), canon(whole.want));
    const none = await both(() => F().where(col('g').gt(1000)).groupBy('k').agg(col('v').sum().alias('s')));
    assert.deepEqual(none.got, []);
    assert.deepEqual(none.want, []);
  });

  it('a UDF before and a UDF after a groupBy, with several keys (string and int, both with nulls)', async () => {
    const q = () =>
      F()
        .withColumn('label', cpuLabel(col('category'), col('x')))
        .groupBy('label', 'g')
        .agg(col('v').sum().alias('sv'), col('id').count().alias('n'))
        .withColumn('tag', cpuLabel(col('label'), col('sv').div(10000)));
    const { want, got } = await both(q);
    assert.ok(want.length > 40);
    assert.deepEqual(canon(got), canon(want));
  });

  it('keyed repartition: every row once, equal keys in one partition, at most n partitions', async () => {
    const q = () => F().repartition(4, 'k').select('id', 'k');
    const { want, got } = await both(q);
    assert.deepEqual(canon(got), canon(want));
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10 });
    try {
      const where = new Map<string, number>();
      let parts = 0;
      for await (const part of q().iterPartitions()) {
        for (const r of await part.toRows()) {
          const k = String(r['k']);
          assert.equal(where.get(k) ?? parts, parts, `key ${k} is in partitions ${where.get(k)} and ${parts}`);
          where.set(k, parts);
        }
        parts++;
      }
      assert.ok(parts >= 2 && parts <= 4, `${parts} partitions`);
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('plans the exchange as a stage boundary: explain shows it, the map stage writes buckets under the run prefix', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      const q = F().groupBy('k').agg(col('v').sum().alias('sv'));
      const text = await q.explain();
      assert.match(text, /HashAggregate \(final\)[\s\S]*Exchange: hash \[k\], 3 partition\(s\)[\s\S]*HashAggregate \(partial\)/, text);
      assert.match(
        text,
        /Stage 0: lambda, \d+ partition\(s\)[\s\S]*writes: Exchange: hash \[k\], 3 partition\(s\) \(partial aggregation first\), as bucket files/,
        text,
      );
      assert.match(text, /Stage 1: lambda, 3 partition\(s\)[\s\S]*reads: bucket p of stage 0's \d+ map partition\(s\), HashAggregate \(final\)/, text);
      const before = new Set((await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/`)).objects.map((o) => o.key.split('/')[1]));
      const invocations = cloud.stats()['stage']!;
      await q.toRows();
      const runIds = [...new Set((await listS3(`s3://${cloud.runnerOptions.workBucket}/runs/`)).objects.map((o) => o.key.split('/')[1]))].filter(
        (id) => !before.has(id),
      );
      assert.equal(runIds.length, 1);
      const runId = runIds[0]!;
      const store = new S3Store(cloud.runnerOptions.workBucket);
      const plan = await getJson<RunPlan>(store, keys.plan(runId));
      assert.equal(plan.stages.length, 2);
      const [map, reduce] = plan.stages;
      assert.equal(map!.exchange?.kind, 'hash');
      assert.equal(reduce!.partitions, 3);
      assert.equal(reduce!.input?.kind, 'aggregate');
      const files = (await store.list(`runs/${runId}/stage-0/shuffle/`)).filter((k) => k.endsWith('.arrow'));
      assert.ok(files.length >= 3, files.join(' '));
      for (const f of files) assert.match(f, new RegExp(`^runs/${runId}/stage-0/shuffle/\\d{5}/0000[0-2]\\.arrow$`));
      const marker = await getJson<{ buckets: number[] }>(store, keys.metrics(runId, 0, 0));
      assert.ok(marker.buckets.length >= 1);
      // The state machine fanned out both stages: every map partition, then the 3 reduce partitions,
      // each stage as a Map Run of its own.
      assert.equal(cloud.stats()['stage']! - invocations, map!.partitions! + 3);
      const sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
      try {
        const executionArn = `${cloud.stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}`;
        assert.equal((await sfn.send(new ListMapRunsCommand({ executionArn }))).mapRuns?.length, 2);
      } finally {
        sfn.destroy();
      }
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

describe('serverless shuffle: joins', () => {
  for (const how of ['inner', 'left', 'right', 'outer', 'semi', 'anti'] as const) {
    it(`${how} join, partitioned (both sides hash-partitioned into the same buckets)`, async () => {
      const q = () => F().select('id', 'k', 'v').join(D(), { on: 'k', how });
      const { want, got } = await both(q, { broadcastJoinBytes: 0 });
      assert.ok(want.length > 0);
      assert.deepEqual(canon(got), canon(want));
    });
  }

  it('two keys with leftOn/rightOn, a suffix, and a UDF on the output', async () => {
    const q = () =>
      F()
        .select('id', 'k', 'g', 'x', 'category')
        .join(D().select(col('k').alias('dk'), 'g', 'label'), { leftOn: ['k', 'g'], rightOn: ['dk', 'g'], how: 'left', suffix: '_d' })
        .withColumn('lab', cpuLabel(col('category'), col('x')));
    const { want, got } = await both(q, { broadcastJoinBytes: 0 });
    assert.deepEqual(canon(got), canon(want));
  });

  it('broadcast join: the small side is not shuffled; each left partition builds from all its shards', async () => {
    const q = () => F().select('id', 'k', 'v').join(D(), { on: 'k', how: 'left' });
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    let text: string;
    try {
      text = await q().explain();
    } finally {
      setRunner('native', { workers: false });
    }
    assert.match(text, /HashJoin \(broadcast\): left on k[\s\S]*Exchange: broadcast/, text);
    // Fused: the big side's scan slices probe directly (no stage of their own, no shuffle).
    assert.match(
      text,
      /Stage 1: lambda, \d+ partition\(s\)[\s\S]*reads: HashJoin \(broadcast, left\): scan, \d+ slice\(s\)(?: through [a-z, ]+)?, slice p probes a table built from all 1 shard\(s\) of stage 0/,
      text,
    );
    assert.doesNotMatch(text, /Stage 2/, text);
    assert.doesNotMatch(text, /bucket files/, text);
    const { want, got } = await both(q);
    assert.deepEqual(canon(got), canon(want));
    // right and outer joins need every unmatched right row once: never broadcast.
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      assert.match(await F().join(D(), { on: 'k', how: 'outer' }).explain(), /HashJoin \(partitioned\): outer/);
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('broadcast join after a UDF on the big side (not fused: the join reads its shards), semi and anti', async () => {
    const q = () =>
      F()
        .where(col('g').gt(2))
        .withColumn('lab', cpuLabel(col('category'), col('x')))
        .join(D(), { on: 'k', how: 'inner' });
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      assert.match(await q().explain(), /reads: HashJoin \(broadcast, inner\): stage 1's shard p probes a table built from all 1 shard\(s\) of stage 0/);
    } finally {
      setRunner('native', { workers: false });
    }
    const { want, got } = await both(q);
    assert.ok(want.length > 0);
    assert.deepEqual(canon(got), canon(want));
    for (const how of ['semi', 'anti'] as const) {
      const r = await both(() => F().select('id', 'k').join(D(), { on: 'k', how }));
      assert.deepEqual(canon(r.got), canon(r.want));
    }
  });

  it('a groupBy over a join (an exchange above another one)', async () => {
    const q = () => F().join(D(), { on: 'k', how: 'inner' }).groupBy('label').agg(col('v').sum().alias('sv'), col('id').count().alias('n'));
    const { want, got } = await both(q, { broadcastJoinBytes: 0 });
    assert.ok(want.length > 0);
    assert.deepEqual(canon(got), canon(want));
  });
});

describe('serverless shuffle: sort (sampled range boundaries)', () => {
  it('multi-key sort, desc and nulls first/last: the result read in bucket order is globally sorted, as embedded', async () => {
    const q = () =>
      F()
        .select('id', 'k', 'g', 'v')
        .sort(['g', 'k', 'id'], { desc: [true, false, false], nullsFirst: [true, false, false] });
    const { want, got } = await both(q);
    assert.equal(got.length, N);
    assert.deepEqual(canon(got, true), canon(want, true));
    // The ranges really split the rows: several result files, each a sorted run, in bucket order.
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    const out = `s3://${cloud.inputBucket}/sorted/`;
    try {
      const files = (await q().writeParquet(out)).toRows();
      assert.equal((await files).length, 3);
    } finally {
      setRunner('native', { workers: false });
    }
    assert.deepEqual(canon(await readParquet(out).toRows(), true), canon(want, true));
  });

  it('a string key descending with nulls last, then a limit; explain shows the range exchange and the boundaries step', async () => {
    const q = () => F().select('id', 'k', 'v').sort(['v', 'id'], { desc: true }).limit(100);
    const { want, got } = await both(q);
    assert.equal(got.length, 100);
    assert.deepEqual(canon(got, true), canon(want, true));
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      const text = await F().sort('k').explain();
      assert.match(text, /Sort \(external merge\): k asc nulls last[\s\S]*Exchange: range \[k asc\], 3 partition\(s\), sampled boundaries/, text);
      assert.match(text, /writes: a shard per partition and a sample of its sort keys/, text);
      assert.match(text, /Stage 1: lambda, 1 partition\(s\)[\s\S]*picks 2 range boundaries/, text);
      assert.match(text, /Stage 3: lambda, 3 partition\(s\)[\s\S]*Sort \(external merge\)/, text);
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('a sort after a groupBy with a UDF, over a string key', async () => {
    const q = () =>
      F()
        .groupBy('k')
        .agg(col('v').sum().alias('sv'))
        .withColumn('tag', cpuLabel(col('k'), col('sv').div(20000)))
        .sort('k', { nullsFirst: true });
    const { want, got } = await both(q);
    assert.deepEqual(canon(got, true), canon(want, true));
  });
});

describe('serverless shuffle: more plans', () => {
  it('concat of two inputs, then a groupBy over it', async () => {
    const q = () =>
      (F().select('k', 'v') as DataFrame)
        .concat(D().select('k', col('g').cast(DataType.float64()).alias('v')))
        .groupBy('k')
        .agg(col('v').sum().alias('sv'), col('v').count().alias('n'));
    const { want, got } = await both(q);
    assert.deepEqual(canon(got), canon(want));
    const plain = await both(() => D().select('k', 'label').concat(D().select('k', 'label')));
    assert.deepEqual(canon(plain.got), canon(plain.want));
  });

  it('a GPU UDF after a groupBy: the reduce runs in the ECS GPU stage', async () => {
    const q = () =>
      F()
        .groupBy('category')
        .agg(col('x').mean().alias('mx'), col('id').count().alias('n'))
        .withColumn('score', gpuScore(col('mx')));
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      // The merge has no UDF: the GPU stage's tasks read the buckets themselves (no extra shard round trip).
      assert.match(
        await q().explain(),
        /Stage 1: ecs-gpu, 3 partition\(s\) over \d task\(s\)[\s\S]*reads: bucket p of stage 0's \d map partition\(s\), HashAggregate \(final\)/,
      );
    } finally {
      setRunner('native', { workers: false });
    }
    const { want, got } = await both(q);
    assert.equal(got.length, 3);
    assert.deepEqual(canon(got), canon(want));
  });

  it('a GPU UDF before a groupBy: the map side runs in the ECS GPU stage and writes the (partially aggregated) buckets', async () => {
    const q = () =>
      F()
        .withColumn('score', gpuScore(col('x')))
        .groupBy('category', 'g')
        .agg(col('score').sum().alias('ss'), col('score').max().alias('mx'), col('id').count().alias('n'));
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      assert.match(
        await q().explain(),
        /Stage \d: ecs-gpu, (\d+) partition\(s\) over \d task\(s\)[\s\S]*writes: Exchange: hash \[category, g\], 3 partition\(s\) \(partial aggregation first\), as bucket files\nStage \d: lambda, 3 partition\(s\)[\s\S]*reads: bucket p of stage \d's \1 map partition\(s\), HashAggregate \(final\)/,
      );
    } finally {
      setRunner('native', { workers: false });
    }
    const tasks = cloud.stats()['ecsTasks'] ?? 0;
    const { want, got } = await both(q);
    assert.ok(want.length > 20);
    assert.deepEqual(canon(got), canon(want));
    assert.ok((cloud.stats()['ecsTasks'] ?? 0) > tasks, 'the GPU stage ran as ECS tasks');
  });

  it('in-memory inputs run on the embedded runner; a limit below the operator runs (see the limit tests below)', async () => {
    const mem = fromRecords([
      { k: 'a', v: 1 },
      { k: 'a', v: 2 },
      { k: 'b', v: 3 },
    ]);
    setRunner('aws', { ...cloud.runnerOptions });
    try {
      const before = cloud.stats()['plan'] ?? 0;
      const rows = await mem.groupBy('k').agg(col('v').sum().alias('s')).sort('k').toRows();
      assert.deepEqual(rows, [
        { k: 'a', s: 3 },
        { k: 'b', s: 3 },
      ]);
      assert.equal(cloud.stats()['plan'] ?? 0, before, 'no serverless run');
    } finally {
      setRunner('native', { workers: false });
    }
    const { want, got } = await both(() => F().limit(10).groupBy('k').agg(col('v').sum().alias('s')));
    assert.ok(want.length >= 1);
    assert.deepEqual(canon(got), canon(want));
  });
});

describe('serverless shuffle: a global limit below an operator (a gather stage)', () => {
  it('limit then groupBy: each map partition keeps n rows, one partition keeps the first n in order; explain shows the gather', async () => {
    const q = () =>
      F()
        // A filter first: the limit is not pushed into the scan, so several map partitions each stop at 1000.
        .where(col('x').gt(0.2))
        .limit(1000)
        .groupBy('k')
        .agg(col('v').sum().alias('sv'), col('id').count().alias('n'), col('id').min().alias('first'));
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 24 << 10, shufflePartitions: 3 });
    try {
      const text = await q().explain();
      assert.match(
        text,
        /Stage 0: lambda, (\d+) partition\(s\)[\s\S]*limit\n {2}writes: a shard per partition\nStage 1: lambda, 1 partition\(s\)[\s\S]*reads: all \1 shard\(s\) of stage 0 in partition order\n {2}limit\n( {2}project\n)? {2}writes: Exchange: hash \[k\], 3 partition\(s\)/,
        text,
      );
      assert.ok(Number(/Stage 0: lambda, (\d+) partition/.exec(text)![1]) >= 2, text);
    } finally {
      setRunner('native', { workers: false });
    }
    const { want, got } = await both(q);
    assert.equal(
      got.reduce((a, r) => a + Number(r['n']), 0),
      1000,
    );
    assert.deepEqual(canon(got), canon(want));
  });

  it('a limit with a UDF after it, below a groupBy; a limit over a sort below a join; a limit on each side of a concat', async () => {
    const udf = await both(() =>
      F()
        .where(col('g').gt(3))
        .limit(700)
        .withColumn('label', cpuLabel(col('category'), col('x')))
        .groupBy('label')
        .agg(col('id').count().alias('n'), col('v').sum().alias('sv')),
    );
    assert.deepEqual(canon(udf.got), canon(udf.want));
    assert.equal(
      udf.got.reduce((a, r) => a + Number(r['n']), 0),
      700,
    );
    const sorted = await both(() => F().select('id', 'k', 'v').sort(['v', 'id'], { desc: true }).limit(40).join(D(), { on: 'k', how: 'left' }), {
      broadcastJoinBytes: 0,
    });
    assert.ok(sorted.want.length >= 40);
    assert.deepEqual(canon(sorted.got), canon(sorted.want));
    const cat = await both(() => (F().select('k', 'id').limit(5) as DataFrame).concat(F().where(col('g').eq(2)).select('k', 'id').limit(7)).distinct());
    assert.equal(cat.got.length, cat.want.length);
    assert.deepEqual(canon(cat.got), canon(cat.want));
  });
});

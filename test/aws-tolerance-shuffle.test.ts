// Tolerated failed partitions in a run with a shuffle (offline harness). The embedded runner fails
// each of these plans on the UDF's error. Serverless, with a tolerance:
// - a stage that needs EVERY partition of an earlier one (a gather below a global limit, a broadcast
//   join's build side, an exchange's reduce side) cannot leave a failed one out: that would be a wrong
//   result, not a partial one. The run fails, as embedded, and its error says why the tolerance did not
//   apply, naming the run, the stage that could not run and the failed partition (it used to be a bare
//   "object not found: …/part-00003.arrow" deep in the state machine's error);
// - a stage partition that reads ONE earlier partition (a concat's, a broadcast join's probe side) is
//   left out with it, as in a linear run: the run commits the rest and its report names the cause.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, type DataFrame, readParquet, RunFailedError, type RunSummary, setRunner, shutdownWorkers } from 'fanout';
import { type LocalCloud, startLocalCloud } from 'fanout/local';
import { keys } from '../src/aws/run.ts';
import { getS3Object, putS3Object } from '../src/io/s3/index.ts';
import { poison as poisonUdf } from './fixtures/resume-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

const pipelineFile = join(import.meta.dirname, 'fixtures', 'resume-pipeline.ts');

let cloud: LocalCloud;
let input: string;
let localInput: string;
let poisonFile: string;

// ids 0..999 in 10 row groups of 100 (one partition each): ids 341 and 342 are in partition 3.
const F = (uri: string): DataFrame => readParquet(uri);
const P = (uri: string): DataFrame => F(uri).withColumn('y', poisonUdf(col('id'), col('x')));
const json = async <T>(uri: string): Promise<T> => JSON.parse(Buffer.from(await getS3Object(uri)).toString()) as T;

function aws(): void {
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1, shufflePartitions: 3, toleratedFailurePercentage: 20 });
}

async function embeddedError(q: (uri: string) => DataFrame): Promise<Error> {
  setRunner('native', { workers: false });
  try {
    return await q(localInput)
      .toRows()
      .then(
        () => assert.fail('the embedded runner fails this plan'),
        (e: unknown) => e as Error,
      );
  } finally {
    aws();
  }
}

async function embeddedRows(q: (uri: string) => DataFrame): Promise<Record<string, unknown>[]> {
  setRunner('native', { workers: false });
  try {
    return await q(localInput).toRows();
  } finally {
    aws();
  }
}

before(async () => {
  const dir = tempDir();
  localInput = join(dir, 'ids.parquet');
  poisonFile = join(dir, 'poison.txt');
  // The embedded runs in this process read the same poison list as the harness's Lambdas.
  process.env['RESUME_POISON_FILE'] = poisonFile;
  await writeSample(localInput, 0, 1000, 100);
  cloud = await startLocalCloud({ pipeline: pipelineFile, lambdaConcurrency: 2, env: { RESUME_POISON_FILE: poisonFile } });
  await putS3Object(`s3://${cloud.inputBucket}/ids/ids.parquet`, readFileSync(localInput));
  input = `s3://${cloud.inputBucket}/ids/`;
  writeFileSync(poisonFile, '341\n342');
  aws();
});

after(async () => {
  rmSync(poisonFile, { force: true });
  delete process.env['RESUME_POISON_FILE'];
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

describe('a tolerated failed partition before a stage that needs every partition: the run fails, saying why', () => {
  const cases: { name: string; q: (uri: string) => DataFrame; stage: number; needs: RegExp }[] = [
    {
      name: 'a gather (a global limit below a groupBy)',
      q: (uri) => P(uri).where(col('x').gt(0.1)).limit(500).groupBy('category').agg(col('y').sum().alias('s')),
      stage: 1,
      needs: /a gather \(a global limit below an operator\) needs every partition of stage 0/,
    },
    {
      name: "a broadcast join's build side",
      q: (uri) => F(uri).join(P(uri).where(col('n').eq(1)).select('id', 'y'), { on: 'id', how: 'inner' }),
      stage: 1,
      needs: /a broadcast join's build side needs every partition of stage 0/,
    },
    {
      name: "a hash exchange's reduce side (groupBy)",
      q: (uri) => P(uri).groupBy('category').agg(col('y').sum().alias('s')),
      stage: 1,
      needs: /an exchange's reduce side needs every partition of stage 0/,
    },
    {
      name: "a sort's boundaries step",
      q: (uri) => P(uri).sort('y'),
      stage: 1,
      needs: /the sort's boundaries step needs every partition of stage 0/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const embedded = await embeddedError(c.q);
      assert.match(embedded.message, /poisoned id 341/);
      const out = `s3://${cloud.workBucket}/outputs/tolerance-${c.name.replace(/\W+/g, '-')}/`;
      const err = await c
        .q(input)
        .writeParquet(out)
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof RunFailedError, `a RunFailedError, got ${String(err)}`);
      const { runId } = err;
      // The failed partition's own error first (as before), then why the tolerance could not apply.
      assert.match(err.message, /poisoned id 341/);
      assert.match(err.message, c.needs, err.message);
      assert.match(err.message, new RegExp(`run ${runId}: partition 3 of stage 0 failed \\(a failure this run tolerates\\)`), err.message);
      assert.match(err.message, new RegExp(`\\(run ${runId}, stage ${c.stage} \\(lambda\\), partition 0: `), err.message);
      assert.doesNotMatch(err.message, /object not found/);
      assert.deepEqual(
        err.failedPartitions.map((f) => [f.stage, f.partition, f.udf]),
        [[0, 3, 'resume.poison']],
      );
      const summary = await json<RunSummary>(`s3://${cloud.workBucket}/${keys.failure(runId)}`);
      assert.doesNotMatch(summary.stateMachineError ?? '', /object not found/, summary.stateMachineError);
      await assert.rejects(getS3Object(`${out}_SUCCESS`), 'nothing was committed');
    });
  }
});

describe('a tolerated failed partition before a stage partition that reads only it: left out with it', () => {
  it('concat: the concat partition of the failed one is left out; the report names the UDF error, not a missing shard', async () => {
    const q = (uri: string) =>
      (P(uri).select('id', 'y') as DataFrame).concat(
        F(uri)
          .where(col('n').eq(2))
          .withColumn('y', poisonUdf(col('id'), col('x')))
          .select('id', 'y'),
      );
    await embeddedError(q);
    writeFileSync(poisonFile, '');
    const all = await embeddedRows(q);
    writeFileSync(poisonFile, '341\n342');
    const out = `s3://${cloud.workBucket}/outputs/tolerance-concat/`;
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      await q(input).writeParquet(out);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    const rows = await readParquet(out).toRows();
    // Partition 3 of each side (ids 300..399) is left out, nothing else.
    const want = all.filter((r) => !(Number(r['id']) >= 300 && Number(r['id']) < 400));
    assert.equal(rows.length, want.length);
    const manifest = await json<{ complete?: boolean; failedPartitions: { stage: number; partition: number; udf?: string; error: string }[] }>(
      `${out}_SUCCESS`,
    );
    assert.equal(manifest.complete, false);
    // Concat partition 3 reads stage 0's partition 3 (the same number: its error is that partition's);
    // concat partition 13 reads stage 1's partition 3: its record names that input and its error.
    assert.deepEqual(
      manifest.failedPartitions.map((f) => [f.stage, f.partition]),
      [
        [0, 3],
        [2, 13],
      ],
    );
    for (const f of manifest.failedPartitions) {
      assert.match(f.error, /poisoned id 34[12]/, f.error);
      assert.doesNotMatch(f.error, /object not found/, f.error);
    }
    assert.match(manifest.failedPartitions[1]!.error, /its input, partition 3 of stage 1, failed/);
    const w = warnings.find((x) => (x as { code?: string }).code === 'FANOUT_PARTIAL_RUN');
    assert.ok(w, 'a warning says the result is partial');
    assert.doesNotMatch(w.message, /object not found/, w.message);
  });

  it("a broadcast join's probe side: the failed partition's rows are left out", async () => {
    const q = (uri: string) => P(uri).join(F(uri).where(col('n').eq(1)).select('id', col('x').alias('x2')), { on: 'id', how: 'left' });
    await embeddedError(q);
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1, shufflePartitions: 3, toleratedFailurePercentage: 20 });
    assert.match(await q(input).explain(), /HashJoin \(broadcast, left\): stage 1's shard p probes a table built from all 10 shard\(s\) of stage 0/);
    const out = `s3://${cloud.workBucket}/outputs/tolerance-probe/`;
    await q(input).writeParquet(out);
    const rows = await readParquet(out).toRows();
    assert.equal(rows.length, 900);
    assert.ok(!rows.some((r) => Number(r['id']) >= 300 && Number(r['id']) < 400));
    const manifest = await json<{ failedPartitions: { stage: number; partition: number; error: string }[] }>(`${out}_SUCCESS`);
    assert.deepEqual(
      manifest.failedPartitions.map((f) => [f.stage, f.partition]),
      [[1, 3]],
    );
    assert.match(manifest.failedPartitions[0]!.error, /poisoned id 341/);
  });
});

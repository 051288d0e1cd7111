// Issue 11 items 1, 2 and 4 through the offline harness: a run with a failing partition fails; once
// the cause is gone, resumeRun (or RedriveExecution of the failed execution) re-runs only that
// partition and commits the same output as the embedded runner; a run with 1 of 10 partitions
// failing and toleratedFailurePercentage 20 commits 9 and says so in the manifest, the summary and a
// warning; a resume whose plan no longer matches the pipeline is refused, naming what changed.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DescribeExecutionCommand, RedriveExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { parquetMetadata } from 'hyparquet';
import { col, readParquet, resumeRun, RunFailedError, setRunner, shutdownWorkers, type DataFrame, type RunSummary } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { keys } from '../src/aws/run.ts';
import { getS3Object, listS3, putS3Object } from '../src/io/s3/index.ts';
import { changed, pipeline, poison as poisonUdf } from './fixtures/resume-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

const pipelineFile = join(import.meta.dirname, 'fixtures', 'resume-pipeline.ts');
// ids 0..999 in 10 row groups of 100: id 942 is in partition 9 (the last), id 342 in partition 3.
const LAST_PARTITION_ID = 942n;
const MIDDLE_PARTITION_ID = 342n;

let cloud: LocalCloud;
let input: string;
let localInput: string;
let poisonFile: string;
let sfn: SFNClient;

const poison = (...ids: bigint[]): void => writeFileSync(poisonFile, ids.map(String).join('\n'));
const cure = (): void => rmSync(poisonFile, { force: true });
const json = async <T>(uri: string): Promise<T> => JSON.parse(Buffer.from(await getS3Object(uri)).toString()) as T;

async function expected(): Promise<Record<string, unknown>[]> {
  setRunner('native', { workers: false });
  try {
    return await pipeline({ uri: localInput }).toRows();
  } finally {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
  }
}

async function failedRun(out: string): Promise<RunFailedError> {
  const err = await pipeline({ uri: input })
    .writeParquet(out)
    .then(
      () => null,
      (e: unknown) => e,
    );
  assert.ok(err instanceof RunFailedError, `a RunFailedError, got ${String(err)}`);
  return err;
}

function sorted(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return [...rows].sort((a, b) => Number(a['id']) - Number(b['id']));
}

before(async () => {
  const dir = tempDir();
  localInput = join(dir, 'ids.parquet');
  poisonFile = join(dir, 'poison.txt');
  await writeSample(localInput, 0, 1000, 100);
  cloud = await startLocalCloud({ pipeline: pipelineFile, lambdaConcurrency: 2, env: { RESUME_POISON_FILE: poisonFile } });
  await putS3Object(`s3://${cloud.inputBucket}/ids/ids.parquet`, readFileSync(localInput));
  input = `s3://${cloud.inputBucket}/ids/`;
  sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
});

after(async () => {
  setRunner('native');
  sfn?.destroy();
  await shutdownWorkers();
  await cloud?.stop();
});

describe('resume and redrive (local cloud)', () => {
  it('a failed run names its failed partition; resumeRun re-runs only it and commits the embedded result once', async () => {
    const out = `s3://${cloud.workBucket}/outputs/resume/`;
    poison(LAST_PARTITION_ID);
    const before = cloud.stats();
    const err = await failedRun(out);
    const afterFail = cloud.stats();
    assert.equal(afterFail['stage']! - before['stage']!, 10, 'every partition ran once: the UdfError was not retried');
    assert.deepEqual(
      err.failedPartitions.map((f) => [f.stage, f.partition, f.udf]),
      [[0, 9, 'resume.poison']],
    );
    const f = err.failedPartitions[0]!;
    assert.match(f.source!, /ids\.parquet row groups 9$/);
    assert.match(f.message, /UDF 'resume\.poison'/);
    assert.match(f.message, /poisoned id 942/);
    const failure = await json<RunSummary>(`s3://${cloud.workBucket}/${keys.failure(err.runId)}`);
    assert.equal(failure.status, 'FAILED');
    assert.match(failure.error!, /poisoned id 942/);
    assert.match(failure.stateMachineError!, /poisoned id 942/);
    assert.equal(failure.partitionErrors?.[0]?.udf, 'resume.poison');
    await assert.rejects(getS3Object(`${out}_SUCCESS`), 'nothing was committed');

    cure();
    const summary = await resumeRun(err.runId);
    assert.equal(cloud.stats()['stage']! - afterFail['stage']!, 1, 'only the failed partition ran again');
    assert.equal(summary.status, 'SUCCEEDED');
    assert.equal(summary.runId, err.runId);
    assert.equal(summary.rows, 1000);
    assert.notEqual(summary.complete, false);
    assert.ok(summary.metrics['resume.poison'], 'the summary carries the metrics of every partition');
    assert.deepEqual(sorted(await readParquet(out).toRows()), sorted(await expected()));
    const manifest = await json<{ runId: string; complete?: boolean }>(`${out}_SUCCESS`);
    assert.equal(manifest.complete, undefined, 'a whole result');
    await assert.rejects(getS3Object(`s3://${cloud.workBucket}/${keys.failure(err.runId)}`), 'the old failure record is gone');
    // Exactly once: resuming a committed run commits nothing again and returns the same summary.
    const again = await resumeRun(err.runId);
    assert.equal(again.finishedAt, summary.finishedAt);
    assert.equal((await json<{ runId: string }>(`${out}_SUCCESS`)).runId, manifest.runId);
  });

  it("a resume writes with the stored plan's Parquet writer options (a resume cannot change them: the plan keeps them)", async () => {
    const out = `s3://${cloud.workBucket}/outputs/resume-writer-options/`;
    poison(MIDDLE_PARTITION_ID);
    const err = await pipeline({ uri: input })
      .writeParquet(out, { parquet: { encoding: 'plain', columnEncoding: { id: 'delta' } } })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err instanceof RunFailedError, `a RunFailedError, got ${String(err)}`);
    const plan = await json<{ output: { parquet?: unknown } }>(`s3://${cloud.workBucket}/${keys.plan(err.runId)}`);
    assert.deepEqual(plan.output.parquet, { encoding: 'plain', columnEncoding: { id: 'delta' } });
    cure();
    const summary = await resumeRun(err.runId);
    assert.equal(summary.rows, 1000);
    assert.equal(summary.files.length, 10);
    for (const f of summary.files) {
      const buf = await getS3Object(f.path);
      const md = parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
      const enc = Object.fromEntries(md.row_groups[0]!.columns.map((c) => [c.meta_data!.path_in_schema[0]!, [...c.meta_data!.encodings].sort()]));
      assert.deepEqual(enc, { id: ['DELTA_BINARY_PACKED', 'RLE'], x: ['PLAIN', 'RLE'], y: ['PLAIN', 'RLE'] }, f.path);
    }
    assert.deepEqual(sorted(await readParquet(out).toRows()), sorted(await expected()));
  });

  it('RedriveExecution of the failed execution re-runs only the failed partition and commits the same output', async () => {
    const out = `s3://${cloud.workBucket}/outputs/redrive/`;
    poison(LAST_PARTITION_ID);
    const err = await failedRun(out);
    const afterFail = cloud.stats();
    const executionArn = `${cloud.stateMachineArn.replace(':stateMachine:', ':execution:')}:${err.runId}`;
    assert.equal((await sfn.send(new DescribeExecutionCommand({ executionArn }))).status, 'FAILED');
    cure();
    await sfn.send(new RedriveExecutionCommand({ executionArn }));
    let status = 'RUNNING';
    for (let i = 0; i < 600 && status === 'RUNNING'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await sfn.send(new DescribeExecutionCommand({ executionArn }))).status ?? 'RUNNING';
    }
    assert.equal(status, 'SUCCEEDED');
    const stats = cloud.stats();
    assert.equal(stats['stage']! - afterFail['stage']!, 1, 'only the failed partition ran again');
    assert.equal(stats['plan']! - afterFail['plan']!, 0, 'the Plan step succeeded before: not run again');
    assert.equal(stats['finalize']! - afterFail['finalize']!, 1);
    assert.deepEqual(sorted(await readParquet(out).toRows()), sorted(await expected()));
    // A succeeded execution cannot be redriven.
    await assert.rejects(sfn.send(new RedriveExecutionCommand({ executionArn })), /ExecutionNotRedrivable|cannot be redriven/);
  });

  it('a resume whose plan no longer matches the pipeline is refused, naming what changed', async () => {
    const out = `s3://${cloud.workBucket}/outputs/mismatch/`;
    poison(LAST_PARTITION_ID);
    const err = await failedRun(out);
    cure();
    const before = cloud.stats();
    await assert.rejects(resumeRun(err.runId, { pipeline: changed({ uri: input }) }), (e: Error) => {
      assert.equal(e.name, 'PlanMismatchError');
      assert.match(e.message, new RegExp(`run ${err.runId} cannot be resumed`));
      assert.match(e.message, /UDF 'resume\.poison' \(stage 0\) is no longer in the pipeline/);
      assert.match(e.message, /UDF 'resume\.other' \(stage 0\) was added to the pipeline/);
      return true;
    });
    // Another output: refused by the Plan step of the resumed execution.
    await assert.rejects(resumeRun(err.runId, { output: `s3://${cloud.workBucket}/outputs/elsewhere/` }), (e: Error) => {
      assert.ok(e instanceof RunFailedError, String(e));
      assert.match(e.message, /PlanMismatchError/);
      assert.match(e.message, /the output changed from s3:\/\/fanout-work\/outputs\/mismatch\/ to s3:\/\/fanout-work\/outputs\/elsewhere\//);
      return true;
    });
    assert.equal(cloud.stats()['stage']! - before['stage']!, 0, 'nothing ran');
    await assert.rejects(resumeRun('no-such-run'), /run no-such-run has no plan/);
  });

  it('a resumed run that fails again names the UDF, the partition and the message, in the error and failure.json', async () => {
    const out = `s3://${cloud.workBucket}/outputs/again/`;
    poison(LAST_PARTITION_ID);
    const first = await failedRun(out);
    const before = cloud.stats();
    const err = await resumeRun(first.runId).then(
      () => null,
      (e: unknown) => e,
    );
    cure();
    assert.ok(err instanceof RunFailedError, String(err));
    assert.equal(cloud.stats()['stage']! - before['stage']!, 1, 'the resume ran only the failed partition');
    assert.equal(err.runId, first.runId);
    assert.match(err.message, /UDF 'resume\.poison'.*poisoned id 942.*partition 9: s3:\/\/fanout-input\/ids\/ids\.parquet row groups 9/s);
    assert.deepEqual(
      err.failedPartitions.map((f) => [f.partition, f.udf]),
      [[9, 'resume.poison']],
    );
    const failure = await json<RunSummary>(`s3://${cloud.workBucket}/${keys.failure(first.runId)}`);
    assert.match(failure.error!, /UDF 'resume\.poison'.*poisoned id 942/s);
    assert.equal(failure.partitionErrors?.[0]?.partition, 9);
    await assert.rejects(getS3Object(`${out}_SUCCESS`), 'nothing was committed');
  });
});

describe('tolerated failures (local cloud)', () => {
  it('1 of 10 partitions failing with toleratedFailurePercentage 20 commits 9, and the manifest, summary and a warning say so', async () => {
    const out = `s3://${cloud.workBucket}/outputs/tolerated/`;
    poison(MIDDLE_PARTITION_ID);
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1, toleratedFailurePercentage: 20 });
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const written = await pipeline({ uri: input })
        .writeParquet(out)
        .then((df) => df.toRows());
      assert.equal(written.length, 9, 'nine partition files');
      await new Promise((r) => setImmediate(r));
      const w = warnings.find((x) => (x as { code?: string }).code === 'FANOUT_PARTIAL_RUN');
      assert.ok(w, 'a warning says the result is partial');
      assert.match(w.message, /committed without 1 failed partition\(s\) \(toleratedFailurePercentage 20\)/);
      assert.match(w.message, /partition 3 \(s3:\/\/fanout-input\/ids\/ids\.parquet row groups 3\): UdfError: .*poisoned id 342/);
      const runId = /run (\S+) committed/.exec(w.message)![1]!;

      const manifest = await json<{
        complete?: boolean;
        rows: number;
        files: unknown[];
        failedPartitions: { partition: number; stage: number; udf?: string; source?: string; error: string }[];
      }>(`${out}_SUCCESS`);
      assert.equal(manifest.complete, false);
      assert.equal(manifest.rows, 900);
      assert.equal(manifest.files.length, 9);
      assert.deepEqual(
        manifest.failedPartitions.map((f) => [f.stage, f.partition, f.udf]),
        [[0, 3, 'resume.poison']],
      );
      assert.match(manifest.failedPartitions[0]!.error, /poisoned id 342/);
      assert.match(manifest.failedPartitions[0]!.source!, /ids\.parquet row groups 3$/);

      const summary = await json<RunSummary>(`s3://${cloud.workBucket}/${keys.summary(runId)}`);
      assert.equal(summary.status, 'SUCCEEDED');
      assert.equal(summary.complete, false);
      assert.equal(summary.rows, 900);
      assert.deepEqual(summary.failedPartitions, [{ stage: 0, partitions: [3] }]);
      assert.match(summary.partitionErrors![0]!.error, /UDF 'resume\.poison'.*poisoned id 342/s);

      const rows = await readParquet(out).toRows();
      assert.equal(rows.length, 900);
      assert.ok(!rows.some((r) => Number(r['id']) >= 300 && Number(r['id']) < 400), 'partition 3 is left out');
    } finally {
      process.off('warning', onWarning);
      setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
      cure();
    }
  });

  it('past the tolerance the run fails and commits nothing', async () => {
    const out = `s3://${cloud.workBucket}/outputs/intolerable/`;
    poison(MIDDLE_PARTITION_ID, LAST_PARTITION_ID, 42n);
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1, toleratedFailureCount: 2 });
    try {
      const err = await failedRun(out);
      assert.match(err.message, /States\.ExceedToleratedFailureThreshold|poisoned id/);
      assert.deepEqual(
        err.failedPartitions.map((f) => f.partition),
        [0, 3, 9],
      );
      for (const f of err.failedPartitions) assert.equal(f.udf, 'resume.poison');
      await assert.rejects(getS3Object(`${out}_SUCCESS`), 'nothing was committed');
    } finally {
      setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
      cure();
    }
  });

  it('setRunner refuses a bad tolerance, naming the option', () => {
    assert.throws(
      () => setRunner('aws', { ...cloud.runnerOptions, toleratedFailurePercentage: 120 }),
      /toleratedFailurePercentage must be a number from 0 to 100, got 120/,
    );
    assert.throws(
      () => setRunner('aws', { ...cloud.runnerOptions, toleratedFailureCount: 1.5 }),
      /toleratedFailureCount must be a non-negative integer, got 1\.5/,
    );
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
  });
});

describe('resume of a run with a shuffle (local cloud)', () => {
  /** Embedded rows, the failed AWS run, then a resume: returns the Stage invocations the resume added. */
  async function failThenResume(
    q: () => DataFrame,
    out: string,
    failingStage: number,
    beforeResume: (failed: RunFailedError) => Promise<void> = async () => undefined,
  ): Promise<{ failed: RunFailedError; resumeStages: number; summary: RunSummary }> {
    setRunner('native', { workers: false });
    const want = await q().toRows();
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1, shufflePartitions: 3 });
    const failed = await q()
      .writeParquet(out)
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(failed instanceof RunFailedError, `a RunFailedError, got ${String(failed)}`);
    assert.deepEqual([...new Set(failed.failedPartitions.map((f) => f.stage))], [failingStage]);
    await assert.rejects(getS3Object(`${out}_SUCCESS`), 'nothing was committed');
    await beforeResume(failed);
    cure();
    const before = cloud.stats()['stage']!;
    const summary = await resumeRun(failed.runId);
    const resumeStages = cloud.stats()['stage']! - before;
    setRunner('native', { workers: false });
    // Sums over another partitioning differ in the last bits.
    const key = (r: Record<string, unknown>): string => JSON.stringify(Object.values(r).map((v) => (typeof v === 'number' ? v.toPrecision(9) : String(v))));
    assert.deepEqual((await readParquet(out).toRows()).map(key).sort(), want.map(key).sort());
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    return { failed, resumeStages, summary };
  }

  it('a map partition fails (a UDF before the groupBy): it wrote no buckets; the resume runs it and the reduce stage, not the finished map partitions', async () => {
    poison(LAST_PARTITION_ID);
    const q = () =>
      readParquet(input)
        .withColumn('y', poisonUdf(col('id'), col('x')))
        .groupBy('category')
        .agg(col('y').sum().alias('s'), col('id').count().alias('c'));
    const { failed, resumeStages } = await failThenResume(q, `s3://${cloud.workBucket}/outputs/shuffle-map/`, 0, async (f) => {
      const shuffled = (await listS3(`s3://${cloud.workBucket}/runs/${f.runId}/stage-0/shuffle/`)).objects.map((o) => o.key);
      assert.ok(shuffled.length > 0);
      assert.ok(!shuffled.some((k) => k.includes('/shuffle/00009/')), 'the failed map partition left no bucket');
      const reduce = (await listS3(`s3://${cloud.workBucket}/runs/${f.runId}/stage-1/`)).objects.map((o) => o.key);
      assert.deepEqual(reduce, [`runs/${f.runId}/stage-1/items.json`], 'the reduce stage never started');
    });
    assert.deepEqual(
      failed.failedPartitions.map((f) => f.partition),
      [9],
    );
    assert.equal(resumeStages, 1 + 3, 'the failed map partition, then the 3 reduce partitions');
  });

  it('a reduce partition fails (a UDF after the groupBy): the resume runs only the unfinished reduce partitions', async () => {
    poison(MIDDLE_PARTITION_ID);
    const q = () =>
      readParquet(input)
        .groupBy('id')
        .agg(col('x').sum().alias('x'))
        .withColumn('y', poisonUdf(col('id'), col('x')));
    const out = `s3://${cloud.workBucket}/outputs/shuffle-reduce/`;
    const reduceMarkers = async (runId: string): Promise<number> =>
      (await listS3(`s3://${cloud.workBucket}/runs/${runId}/stage-1/`)).objects.filter((o) => /metrics-\d+\.json$/.test(o.key)).length;
    let finishedBefore = -1;
    const { failed, resumeStages, summary } = await failThenResume(q, out, 1, async (f) => {
      finishedBefore = await reduceMarkers(f.runId);
    });
    assert.deepEqual(
      failed.failedPartitions.map((f) => [f.stage, f.udf]),
      [[1, 'resume.poison']],
    );
    assert.match(failed.failedPartitions[0]!.source!, /aggregate: bucket \d of every map partition of stage 0/);
    assert.ok(finishedBefore >= 0 && finishedBefore < 3);
    assert.equal(resumeStages, 3 - finishedBefore, 'only the unfinished reduce partitions ran again; no map partition');
    assert.equal(await reduceMarkers(failed.runId), 3);
    assert.equal(summary.rows, 1000);
  });
});

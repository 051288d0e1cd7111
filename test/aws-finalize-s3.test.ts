// Finalize on S3 (the local harness's S3 server): each partition's result is copied once, straight
// from the run's result key to its committed key (it used to be copied under the writer's
// _temporary first, then again by the commit), and the commit stays all-or-nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readParquet } from 'fanout';
import { finalizeRun, keys, type RunPlan } from '../src/aws/run.ts';
import { listS3 } from '../src/io/s3/index.ts';
import { S3Store } from '../src/io/store/index.ts';
import { writeSample } from './helpers.ts';
import { stagedRun as stagedRunOf, useStagedS3 } from './staged-s3.ts';

const WORK = 'fin-work';
const OUT = 'fin-out';
const ctx = useStagedS3([WORK, OUT], async (dir) => {
  for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 3000, 3000, 1000);
});
const stagedRun = (store: S3Store, output: string | null): Promise<RunPlan> => stagedRunOf(ctx, store, WORK, output, 6);

const ids = async (uri: string): Promise<bigint[]> => (await readParquet(uri).select('id').toRows()).map((r) => r['id'] as bigint);
const range = (n: number): bigint[] => Array.from({ length: n }, (_, i) => BigInt(i));

describe('Finalize on S3', () => {
  it('copies each result once, straight to its committed key, with an output', async () => {
    const store = new S3Store(WORK);
    const output = `s3://${OUT}/scored/`;
    const plan = await stagedRun(store, output);
    await ctx.server.requests(true);
    const summary = await finalizeRun(store, plan.runId);
    const requests = await ctx.server.requests();
    assert.equal(summary.rows, 6000);
    assert.equal(requests['CopyObject'], 6, `one CopyObject per partition, got ${requests['CopyObject']}`);
    assert.deepEqual(await ids(output), range(6000), 'the committed parts keep partition order');
    const left = (await listS3(output)).objects.map((o) => o.key);
    assert.ok(!left.some((k) => k.includes('/_temporary/')), `temp keys left: ${left.join(', ')}`);
    assert.equal(left.filter((k) => k.endsWith('.parquet')).length, 6);
  });

  it('without an output, commits one manifest that names the results where they are: no copy, no commit marker', async () => {
    const store = new S3Store(WORK);
    const plan = await stagedRun(store, null);
    await ctx.server.requests(true);
    const summary = await finalizeRun(store, plan.runId);
    const requests = await ctx.server.requests();
    assert.equal(summary.rows, 6000);
    assert.equal(requests['CopyObject'] ?? 0, 0, `no CopyObject, got ${requests['CopyObject']}`);
    const results = Array.from({ length: 6 }, (_, p) => store.uri(keys.result(plan.runId, p)));
    assert.deepEqual(
      summary.files.map((f) => f.path),
      results,
      "the summary's files are the results in place, in partition order",
    );
    assert.deepEqual(
      summary.files.map((f) => f.rows),
      Array.from({ length: 6 }, () => 1000),
    );
    // The run's output prefix holds the manifest alone, and a reader of it follows the manifest.
    const target = store.uri(keys.output(plan.runId));
    assert.deepEqual(
      (await listS3(target)).objects.map((o) => o.key),
      [`${keys.output(plan.runId)}/_SUCCESS`],
    );
    await ctx.server.requests(true);
    assert.deepEqual(await ids(target), range(6000), 'the output reads as the results in partition order');
    const reads = await ctx.server.requests();
    // The results' folder is listed once, not one HEAD per result.
    assert.equal(reads['HeadObject'] ?? 0, 0, `HEADs while reading the output: ${JSON.stringify(reads)}`);
    // A retried Finalize returns the first commit's summary.
    assert.deepEqual(await finalizeRun(store, plan.runId), summary);
  });

  it('commits nothing when a result cannot be copied, and a later Finalize commits it whole', async () => {
    const store = new S3Store(WORK);
    const output = `s3://${OUT}/broken/`;
    const plan = await stagedRun(store, output);
    const result3 = await store.get(keys.result(plan.runId, 3));
    await store.delete([keys.result(plan.runId, 3)]);
    await assert.rejects(finalizeRun(store, plan.runId), /NoSuchKey|no such object/);
    const left = (await listS3(output)).objects.map((o) => o.key);
    assert.ok(!left.some((k) => k.endsWith('_SUCCESS')), 'no manifest');
    assert.deepEqual(
      left.filter((k) => k.endsWith('.parquet')),
      [],
      `the copies made before the failure were taken back: ${left.join(', ')}`,
    );
    await store.put(keys.result(plan.runId, 3), result3);
    const summary = await finalizeRun(store, plan.runId);
    assert.equal(summary.rows, 6000);
    assert.deepEqual(await ids(output), range(6000));
  });
});

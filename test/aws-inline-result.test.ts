// A small result committed in place travels in its completion marker (ETag and bytes), so the
// runner reads it back without a GET; a listing must vouch for that very version, else it is read
// from S3 as before.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { col, readParquet } from 'fanout';
import { keys, type RunPlan } from '../src/aws/run.ts';
import { getJson, S3Store } from '../src/io/store/index.ts';
import { headS3, noteObjectBytes, noteS3Files, putS3Object } from '../src/io/s3/index.ts';
import { forgetObjectBytes, knownTail } from '../src/io/s3/blob.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';
import { stagedRun as stagedRunOf, useStagedS3 } from './staged-s3.ts';

const WORK = 'inline-work';
const OUT = 'inline-out';
const ctx = useStagedS3([WORK, OUT], async (dir) => {
  await writeSample(join(dir, 'f0.parquet'), 0, 3000, 1000);
});
const stagedRun = (store: S3Store, output: string | null): Promise<RunPlan> => stagedRunOf(ctx, store, WORK, output, 3);

interface InlineMarker {
  rows: number;
  result?: { etag: string; data: string };
}

/** GetObject requests (ranged or not) of result objects, from the server's per-key counts. */
const resultGets = (requests: Record<string, number>): number =>
  Object.entries(requests)
    .filter(([k]) => k.startsWith('GetObject') && k.includes('/result/'))
    .reduce((n, [, v]) => n + v, 0);

describe('small results in their completion markers', () => {
  it('a run without an output: each marker carries its result’s ETag and exact bytes; with an output, none', async () => {
    const store = new S3Store(WORK);
    const plan = await stagedRun(store, null);
    for (let p = 0; p < 3; p++) {
      const m = await getJson<InlineMarker>(store, keys.metrics(plan.runId, 0, p));
      assert.ok(m.result, `partition ${p}'s marker has its result`);
      const uri = store.uri(keys.result(plan.runId, p));
      assert.equal(m.result.etag, (await headS3(uri)).etag, 'the ETag of the object as written');
      assert.deepEqual(Buffer.from(m.result.data, 'base64'), Buffer.from(await store.get(keys.result(plan.runId, p))));
    }
    const withOutput = await stagedRun(store, `s3://${OUT}/out/`);
    const m = await getJson<InlineMarker>(store, keys.metrics(withOutput.runId, 0, 0));
    assert.equal(m.result, undefined, 'results copied to an output are not read back by the runner');
  });

  it('noted bytes answer the read of the version a listing names, with no GET; another version is read from S3', async () => {
    const store = new S3Store(WORK);
    const plan = await stagedRun(store, null);
    const uris = [0, 1, 2].map((p) => store.uri(keys.result(plan.runId, p)));
    // Not read from the results: that would cache their footers and tails.
    const want = await readParquet(ctx.input)
      .withColumn('y', double(col('x')))
      .select('id', 'y')
      .toRows();
    for (let p = 0; p < 3; p++) {
      const m = await getJson<InlineMarker>(store, keys.metrics(plan.runId, 0, p));
      noteObjectBytes(uris[p]!, m.result!.etag, Buffer.from(m.result!.data, 'base64'));
    }
    await noteS3Files(uris);
    await ctx.server.requests(true);
    const got = await readParquet(uris).toRows();
    assert.deepEqual(got, want);
    const reads = await ctx.server.requests();
    assert.equal(resultGets(reads), 0, `no GET of a result: ${JSON.stringify(reads)}`);

    // Noted bytes of an older version are not used: partition 1's object is replaced.
    const m1 = await getJson<InlineMarker>(store, keys.metrics(plan.runId, 0, 1));
    const other = join(tempDir(), 'other.parquet');
    await writeSample(other, 9000, 1000, 1000);
    const otherBytes = readFileSync(other);
    await putS3Object(uris[1]!, otherBytes);
    noteObjectBytes(uris[1]!, m1.result!.etag, Buffer.from(m1.result!.data, 'base64'));
    await noteS3Files(uris);
    const rows = await readParquet(uris[1]!).select('id').toRows();
    assert.equal(rows[0]!['id'], 9000n, 'the current version is read, not the noted one');
  });

  it('a failed run drops the bytes noted for its results (forgetObjectBytes), and only those', () => {
    const bytes = (n: number): Uint8Array => new Uint8Array(n).fill(7);
    const run = 's3://work/runs/failed-run/result/';
    noteObjectBytes(`${run}part-00000.parquet`, 'e0', bytes(16));
    noteObjectBytes(`${run}part-00001.parquet`, 'e1', bytes(16));
    noteObjectBytes('s3://work/runs/other-run/result/part-00000.parquet', 'e2', bytes(16));
    forgetObjectBytes(run);
    assert.equal(knownTail({ uri: `${run}part-00000.parquet`, etag: 'e0', size: 16 }), null);
    assert.equal(knownTail({ uri: `${run}part-00001.parquet`, etag: 'e1', size: 16 }), null);
    const kept = knownTail({ uri: 's3://work/runs/other-run/result/part-00000.parquet', etag: 'e2', size: 16 });
    assert.ok(kept && 'bytes' in kept && kept.bytes.length === 16, 'another run keeps its noted bytes');
  });
});

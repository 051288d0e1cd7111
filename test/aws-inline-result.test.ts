// A small result committed in place travels in its completion marker (ETag and bytes), so the
// runner reads it back without a GET; a listing must vouch for that very version, else it is read
// from S3 as before.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, readParquet, setRunner } from 'fanout';
import { startS3Server, type S3Server } from '../localstack/s3-server.ts';
import { keys, planRun, preparePlan, runStagePartition, type RunPlan } from '../src/aws/run.ts';
import { getJson, S3Store } from '../src/io/store/index.ts';
import { headS3, noteObjectBytes, noteS3Files, putS3Object } from '../src/io/s3/index.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

const WORK = 'inline-work';
const OUT = 'inline-out';
const pipelineModule = new URL('./fixtures/udfs.ts', import.meta.url).href;
let server: S3Server;
let input: string;
const saved: Record<string, string | undefined> = {};

before(async () => {
  server = await startS3Server({ buckets: [WORK, OUT] });
  for (const [k, v] of Object.entries({
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  input = tempDir();
  await writeSample(join(input, 'f0.parquet'), 0, 3000, 1000);
  setRunner('native', { workers: false });
});

after(async () => {
  await server.stop();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

/** A one-stage run of 3 partitions whose stage partitions all ran. */
async function stagedRun(store: S3Store, output: string | null): Promise<RunPlan> {
  const df = readParquet(input)
    .withColumn('y', double(col('x')))
    .select('id', 'y');
  const opts: Parameters<typeof planRun>[1] = { pipeline: pipelineModule, targetPartitionBytes: 1 };
  if (output) opts.output = { uri: output, format: 'parquet', mode: 'overwrite' };
  const plan = planRun(df.plan, opts);
  assert.equal(plan.sources.length, 3);
  await preparePlan(store, plan, WORK);
  for (let p = 0; p < plan.sources.length; p++) await runStagePartition(store, plan.runId, 0, p);
  return plan;
}

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
    const want = await readParquet(input)
      .withColumn('y', double(col('x')))
      .select('id', 'y')
      .toRows();
    for (let p = 0; p < 3; p++) {
      const m = await getJson<InlineMarker>(store, keys.metrics(plan.runId, 0, p));
      noteObjectBytes(uris[p]!, m.result!.etag, Buffer.from(m.result!.data, 'base64'));
    }
    await noteS3Files(uris);
    await server.requests(true);
    const got = await readParquet(uris).toRows();
    assert.deepEqual(got, want);
    const reads = await server.requests();
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
});

// The AWS runner's progress reads: each poll lists only the first unfinished stage's markers and
// GETs only the markers it has not read yet, at most `concurrency` at a time.
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { describe, it } from 'node:test';
import { startS3Server } from '../localstack/s3-server.ts';
import { MarkerWatcher } from '../src/aws/markers.ts';
import { keys, type RunPlan } from '../src/aws/run.ts';
import { LocalStore, putJson, S3Store, type ObjectStore } from '../src/io/store/index.ts';
import { tempDir } from './helpers.ts';

const RUN = 'markers-test';
const plan = {
  runId: RUN,
  sources: [{}, {}, {}, {}],
  stages: [{ index: 0 }, { index: 1 }],
} as unknown as RunPlan;

function counting(store: LocalStore) {
  const calls = { list: [] as string[], get: [] as string[], inFlight: 0, maxInFlight: 0 };
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'list')
        return async (prefix: string) => {
          calls.list.push(prefix);
          return target.list(prefix);
        };
      if (prop === 'listObjects')
        return async (prefix: string) => {
          calls.list.push(prefix);
          return target.listObjects(prefix);
        };
      if (prop === 'get') {
        return async (key: string) => {
          calls.get.push(key);
          calls.inFlight++;
          calls.maxInFlight = Math.max(calls.maxInFlight, calls.inFlight);
          try {
            await new Promise((r) => setTimeout(r, 5));
            return await target.get(key);
          } finally {
            calls.inFlight--;
          }
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  }) as ObjectStore;
  return { store: wrapped, calls };
}

const marker = (rows: number) => ({
  rows,
  bytes: rows * 8,
  metrics: { u: { rowsIn: rows, rowsOut: rows, calls: 1, retries: 0, errors: 0, timeMs: 1, counters: { seen: rows } } },
  elapsedMs: 3,
});

describe('MarkerWatcher (AWS live progress)', () => {
  it('reads each marker once, lists only the running stage, and bounds concurrent GETs', async () => {
    const local = new LocalStore(tempDir());
    const { store, calls } = counting(local);
    // A shard and an error file next to the markers are neither listed as markers nor read.
    await putJson(local, keys.items(RUN, 0), [0, 1, 2, 3]);
    await local.put(keys.shard(RUN, 0, 1), 'arrow bytes');
    await putJson(local, keys.error(RUN, 0, 2), { message: 'a failed attempt' });
    const w = new MarkerWatcher(store, plan, 2);
    assert.equal(w.total, 8);
    assert.deepEqual(await w.poll(), []);

    await putJson(local, keys.metrics(RUN, 0, 1), marker(10));
    await putJson(local, keys.metrics(RUN, 0, 3), marker(30));
    const first = await w.poll();
    assert.deepEqual(first.map((m) => [m.stage, m.partition, m.rows]).sort(), [
      [0, 1, 10],
      [0, 3, 30],
    ]);
    assert.equal(first[0]!.metrics['u']!.counters['seen'], first[0]!.rows);

    calls.get.length = 0;
    assert.deepEqual(await w.poll(), [], 'nothing new, nothing read');
    assert.equal(calls.get.length, 0);

    await putJson(local, keys.metrics(RUN, 0, 0), marker(1));
    await putJson(local, keys.metrics(RUN, 0, 2), marker(2));
    await putJson(local, keys.metrics(RUN, 1, 0), marker(5));
    calls.list.length = 0;
    const second = await w.poll();
    // Stage 0 finished in this poll, so stage 1 was listed next in the same poll.
    assert.deepEqual(second.map((m) => `${m.stage}/${m.partition}`).sort(), ['0/0', '0/2', '1/0']);
    assert.deepEqual(calls.get.map((k) => k.replace(/^.*\/(stage-\d)\/(metrics-\d+)\.json$/, '$1/$2')).sort(), [
      'stage-0/metrics-00000',
      'stage-0/metrics-00002',
      'stage-1/metrics-00000',
    ]);
    assert.deepEqual(calls.list, [`${keys.stagePrefix(RUN, 0)}metrics-`, `${keys.stagePrefix(RUN, 1)}metrics-`]);

    // Later polls never list the finished stage again.
    calls.list.length = 0;
    for (const p of [1, 2, 3]) await putJson(local, keys.metrics(RUN, 1, p), marker(p));
    assert.equal((await w.poll()).length, 3);
    assert.deepEqual(calls.list, [`${keys.stagePrefix(RUN, 1)}metrics-`]);
    calls.list.length = 0;
    assert.deepEqual(await w.poll(), []);
    assert.deepEqual(calls.list, [], 'all stages read: no more listing');
    assert.ok(calls.maxInFlight <= 2, `at most 2 GETs at once, saw ${calls.maxInFlight}`);
  });
});

describe('MarkerWatcher with marker batches (batched Stage invocations)', () => {
  it("reads a batched stage's markers from its invocations' batches, one GET per batch, and each marker itself only when no batch comes in time or the run ended", async () => {
    const local = new LocalStore(tempDir());
    const { store, calls } = counting(local);
    const batchedPlan = {
      runId: RUN,
      sources: Array.from({ length: 6 }, () => ({})),
      stages: [{ index: 0, partitionsPerInvocation: 3 }],
    } as unknown as RunPlan;
    const w = new MarkerWatcher(store, batchedPlan, 16, 60_000);
    const batch = (ms: Record<number, number>) => ({ markers: Object.fromEntries(Object.entries(ms).map(([p, rows]) => [p, marker(rows)])) });
    const got = (ms: { partition: number; rows: number }[]) => ms.map((m) => [m.partition, m.rows]).sort((a, b) => a[0]! - b[0]!);
    const gets = () => calls.get.splice(0).map((k) => k.replace(/^.*\//, ''));

    // An invocation's markers appear one by one; the watcher waits for its batch instead of reading them.
    await putJson(local, keys.metrics(RUN, 0, 0), marker(10));
    await putJson(local, keys.metrics(RUN, 0, 1), marker(11));
    assert.deepEqual(await w.poll(), []);
    assert.deepEqual(gets(), [], 'no marker read while its batch may still come');
    await putJson(local, keys.metrics(RUN, 0, 2), marker(12));
    await putJson(local, keys.markerBatch(RUN, 0, 0, 2), batch({ 0: 10, 1: 11, 2: 12 }));
    calls.list.length = 0;
    assert.deepEqual(await w.poll(), [], 'none due yet');
    assert.deepEqual(calls.list, [`${keys.stagePrefix(RUN, 0)}metrics-`], 'batches are not listed before a marker is due');
    // The execution ended: the batch is read.
    assert.deepEqual(got(await w.poll(true)), [
      [0, 10],
      [1, 11],
      [2, 12],
    ]);
    assert.deepEqual(gets(), ['markers-00000-00002.json'], 'one GET for the three partitions');
    assert.deepEqual(await w.poll(), []);
    assert.deepEqual(gets(), []);

    // Partition 4's marker was written again after its batch (it ran again): that marker is read, not the batch's copy.
    await putJson(local, keys.metrics(RUN, 0, 3), marker(13));
    await putJson(local, keys.metrics(RUN, 0, 5), marker(15));
    await putJson(local, keys.markerBatch(RUN, 0, 3, 5), batch({ 3: 13, 4: 999, 5: 15 }));
    await new Promise((r) => setTimeout(r, 30));
    await putJson(local, keys.metrics(RUN, 0, 4), marker(14));
    assert.deepEqual(got(await w.poll(true)), [
      [3, 13],
      [4, 14],
      [5, 15],
    ]);
    assert.deepEqual(gets().sort(), ['markers-00003-00005.json', 'metrics-00004.json'], 'the rewritten marker is read itself');
    assert.deepEqual(await w.poll(true), []);
  });

  it('reads a marker itself once it waited deferMs for a batch, and never defers an unbatched stage', async () => {
    const local = new LocalStore(tempDir());
    const { store, calls } = counting(local);
    const batchedPlan = {
      runId: RUN,
      sources: [{}, {}],
      stages: [
        { index: 0, partitionsPerInvocation: 2 },
        { index: 1, partitionsPerInvocation: 1 },
      ],
    } as unknown as RunPlan;
    const w = new MarkerWatcher(store, batchedPlan, 16, 40);
    await putJson(local, keys.metrics(RUN, 0, 0), marker(1));
    assert.deepEqual(await w.poll(), []);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      (await w.poll()).map((m) => m.partition),
      [0],
    );
    assert.deepEqual(
      calls.get.splice(0).map((k) => k.replace(/^.*\//, '')),
      ['metrics-00000.json'],
    );
    await putJson(local, keys.metrics(RUN, 0, 1), marker(2));
    await putJson(local, keys.metrics(RUN, 1, 0), marker(3));
    await putJson(local, keys.metrics(RUN, 1, 1), marker(4));
    assert.deepEqual(await w.poll(), [], 'stage 0 is not read yet, so stage 1 is not either');
    await new Promise((r) => setTimeout(r, 50));
    // Stage 1 runs one partition per invocation: its markers are read as soon as they are listed.
    assert.deepEqual((await w.poll()).map((m) => `${m.stage}/${m.partition}`).sort(), ['0/1', '1/0', '1/1']);
  });
});

describe('MarkerWatcher on S3', () => {
  it('lists only the markers after those it has read in partition order (StartAfter), and still finds one written behind', async () => {
    const server = await startS3Server({ buckets: ['markers-work'] });
    const saved = { ep: process.env['AWS_ENDPOINT_URL_S3'], warn: process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] };
    process.env['AWS_ENDPOINT_URL_S3'] = server.endpoint;
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
    const listings: string[] = [];
    const onRequest = (m: unknown): void => {
      const path = (m as { request: ClientRequest }).request.path;
      if (path.includes('list-type=2')) listings.push(decodeURIComponent(new URL(path, 'http://x').searchParams.get('start-after') ?? ''));
    };
    dc.subscribe('http.client.request.start', onRequest);
    try {
      const store = new S3Store('markers-work');
      const big = { runId: RUN, sources: Array.from({ length: 12 }, () => ({})), stages: [{ index: 0 }] } as unknown as RunPlan;
      const w = new MarkerWatcher(store, big);
      for (const p of [0, 1, 2, 3, 4]) await putJson(store, keys.metrics(RUN, 0, p), marker(p));
      assert.equal((await w.poll()).length, 5);
      await putJson(store, keys.metrics(RUN, 0, 6), marker(6));
      assert.deepEqual(
        (await w.poll()).map((m) => m.partition),
        [6],
      );
      await putJson(store, keys.metrics(RUN, 0, 5), marker(5));
      assert.deepEqual(
        (await w.poll()).map((m) => m.partition),
        [5],
        'a marker behind the newest one read is still found',
      );
      for (let p = 7; p < 12; p++) await putJson(store, keys.metrics(RUN, 0, p), marker(p));
      assert.equal((await w.poll()).length, 5);
      assert.deepEqual(await w.poll(), []);
      assert.deepEqual(listings, ['', keys.metrics(RUN, 0, 4), keys.metrics(RUN, 0, 4), keys.metrics(RUN, 0, 6)]);
    } finally {
      dc.unsubscribe('http.client.request.start', onRequest);
      await server.stop();
      for (const [k, v] of [
        ['AWS_ENDPOINT_URL_S3', saved.ep],
        ['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', saved.warn],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

// A worker pool retired by another action's settings closes once the actions streaming from it are
// done. An action whose iterator is dropped without return() (a few rows read, then let go) never
// runs its `finally`: it used to keep the retired pool (and its threads, each task waiting for
// credits) open for the life of the process. Now the stream's garbage collection ends its use.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { scanTuning } from '../src/runners/embedded.ts';
import { poolTestHooks, type WorkerPool } from '../src/runners/pool.ts';
import { double } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string;
const closed: WorkerPool[] = [];
const OLD = { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 100, prefetch: 1 } as const;
const NEW = { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 200 } as const;

before(async () => {
  dir = tempDir();
  // 8 partitions of 500 rows: the dropped action has partitions started ahead and some never started.
  for (let i = 0; i < 8; i++) await writeSample(join(dir, `r${i}.parquet`), i * 500, 500, 250);
  poolTestHooks.onClose = (p) => closed.push(p);
});

after(async () => {
  poolTestHooks.onClose = undefined;
  scanTuning.sharedDecoding = true;
  setRunner('native');
  await shutdownWorkers();
});

const query = () => readParquet(dir).withColumn('y', double(col('x')));

/** Collects garbage until `done()` or about 3 s have passed. */
async function collectUntil(done: () => boolean): Promise<void> {
  for (let k = 0; k < 30 && !done(); k++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Reads one row of the query on the OLD settings, then drops the iterator without return(). */
async function readOneAndDrop(): Promise<void> {
  const it = query().iterRows()[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false);
}

describe('a retired worker pool', () => {
  for (const shared of [true, false]) {
    it(`closes after an action dropped without closing its iterator is collected (${shared ? 'decoding shared with this thread' : 'every partition on the workers'})`, async () => {
      scanTuning.sharedDecoding = shared;
      await shutdownWorkers();
      setRunner('native', OLD);
      closed.length = 0;
      await readOneAndDrop();
      // Other settings: a new pool; the old one retires and must close once nothing uses it.
      setRunner('native', NEW);
      assert.equal((await query().toRows()).length, 4000, 'the new pool runs the next action');
      await collectUntil(() => closed.length > 0);
      assert.equal(closed.length, 1, 'the retired pool closed');
    });
  }

  it('stays open while a started action still holds its iterator, and that action reads every row', async () => {
    scanTuning.sharedDecoding = true;
    await shutdownWorkers();
    setRunner('native', OLD);
    closed.length = 0;
    const it = query().iterRows()[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);
    setRunner('native', NEW);
    assert.equal((await query().toRows()).length, 4000);
    await collectUntil(() => closed.length > 0);
    assert.equal(closed.length, 0, 'not closed under a running action');
    let n = 1;
    while (!(await it.next()).done) n++;
    assert.equal(n, 4000, 'every row, none lost to the collection');
    await collectUntil(() => closed.length > 0);
    assert.equal(closed.length, 1, 'closed once the action ended');
  });
});

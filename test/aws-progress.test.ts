// Live progress of an AWS run through the offline harness: each finished partition's rows and UDF
// counters reach onProgress and df.metrics while the execution is still running.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DescribeExecutionCommand, ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { setRunner, shutdownWorkers, type ProgressEvent, type RunMetrics } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { putS3Object } from '../src/io/s3/index.ts';
import pipeline from './fixtures/progress-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

let cloud: LocalCloud;
let input: string;
const PARTITIONS = 6;
const ROWS_PER_PARTITION = 250;

before(async () => {
  cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'progress-pipeline.ts'), lambdaConcurrency: 1 });
  const f = join(tempDir(), 'rows.parquet');
  await writeSample(f, 0, PARTITIONS * ROWS_PER_PARTITION, ROWS_PER_PARTITION); // one row group per partition
  await putS3Object(`s3://${cloud.inputBucket}/progress/rows.parquet`, readFileSync(f));
  input = `s3://${cloud.inputBucket}/progress/`;
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
  await cloud?.stop();
});

describe('AWS runner live progress (local cloud)', () => {
  it('reports rows and UDF counters per finished partition before the run ends; the final metrics are their sum', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const sfn = new SFNClient({ region: 'us-east-1', endpoint: cloud.runnerOptions.endpoint!, credentials: cloud.runnerOptions.credentials! });
    const events: (ProgressEvent & { execution: string | undefined })[] = [];
    const liveMetrics: RunMetrics[] = [];
    const df = pipeline({ uri: input });
    const pending: Promise<void>[] = [];
    const collected = df.collect({
      onProgress: (e) => {
        // What the execution was doing when the event arrived: RUNNING for all but the last poll.
        pending.push(
          (async () => {
            const list = await sfn.send(new ListExecutionsCommand({ stateMachineArn: cloud.runnerOptions.stateMachineArn }));
            const newest = list.executions?.sort((a, b) => +b.startDate! - +a.startDate!)[0];
            const d = newest ? await sfn.send(new DescribeExecutionCommand({ executionArn: newest.executionArn })) : undefined;
            events.push({ ...e, execution: d?.status });
          })(),
        );
        liveMetrics.push(structuredClone(df.metrics));
      },
    });
    const result = await collected;
    await Promise.all(pending);
    sfn.destroy();

    assert.equal(await result.count(), PARTITIONS * ROWS_PER_PARTITION);
    assert.ok(events.length >= 2, `${events.length} progress events`);
    const total = PARTITIONS;
    for (const e of events) assert.equal(e.partitionsTotal, total);
    // Monotonic: partitions, rows and the UDF counter only grow.
    for (let i = 1; i < events.length; i++) {
      assert.ok(events[i]!.partitionsDone > events[i - 1]!.partitionsDone);
      assert.ok(events[i]!.rows >= events[i - 1]!.rows);
      assert.ok((events[i]!.metrics['progress.slowCount']?.counters['seen'] ?? 0) >= (events[i - 1]!.metrics['progress.slowCount']?.counters['seen'] ?? 0));
    }
    // Seen mid-run: some partitions done, rows and the counter above 0, the execution still running.
    const mid = events.find((e) => e.partitionsDone > 0 && e.partitionsDone < total && e.execution === 'RUNNING');
    assert.ok(mid, `an event while running: ${JSON.stringify(events.map((e) => [e.partitionsDone, e.execution]))}`);
    assert.ok(mid.rows > 0 && mid.rows < total * ROWS_PER_PARTITION);
    const midSeen = mid.metrics['progress.slowCount']!.counters['seen']!;
    assert.equal(midSeen, mid.partitionsDone * ROWS_PER_PARTITION, 'the counter of exactly the finished partitions');
    assert.ok(mid.etaMs !== null && mid.etaMs > 0, 'an ETA while partitions remain');
    // df.metrics followed during the run, not only at the end.
    assert.ok(
      liveMetrics.some((m) => (m['progress.slowCount']?.counters['seen'] ?? 0) > 0 && m['progress.slowCount']!.counters['seen']! < total * ROWS_PER_PARTITION),
      'df.metrics updated mid-run',
    );
    // The last event is the whole run, and equals the summary's metrics (df.metrics).
    const last = events[events.length - 1]!;
    assert.equal(last.partitionsDone, total);
    assert.equal(last.rows, total * ROWS_PER_PARTITION);
    assert.equal(last.etaMs, 0);
    assert.equal(result.metrics['progress.slowCount']!.counters['seen'], total * ROWS_PER_PARTITION);
    assert.deepEqual(last.metrics['progress.slowCount']!.counters, result.metrics['progress.slowCount']!.counters);
    assert.equal(last.metrics['progress.slowCount']!.rowsIn, result.metrics['progress.slowCount']!.rowsIn);
    assert.equal(last.metrics['progress.slowCount']!.calls, result.metrics['progress.slowCount']!.calls);
  });
});

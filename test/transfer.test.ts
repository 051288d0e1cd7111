// Worker results cross threads as one packed, transferred buffer (src/runners/transfer.ts) instead of
// Arrow IPC (issue 12 item 3): every type round-trips, aliased columns survive, the packed buffer is
// moved (not cloned) while the worker's own batch stays readable, and worker runs use it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { after, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { batchFromWire, batchToWire, type WireBatch } from '../src/runners/transfer.ts';
import { sampleBatch, tempDir, writeSample } from './helpers.ts';

after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

/** Values as JSON-able strings, column by column (bigints and nested values included). */
function dump(b: arrow.RecordBatch): string {
  return JSON.stringify(
    b.toArray().map((r) => r.toJSON()),
    (_k, v) => (typeof v === 'bigint' ? `${v}n` : v),
  );
}

function wideBatch(): arrow.RecordBatch {
  const base = sampleBatch(0, 1000); // int64, float64, utf8, int32 with nulls, list<utf8> with nulls
  const n = base.numRows;
  const dict = arrow.vectorFromArray(
    Array.from({ length: n }, (_, i) => (i % 11 === 0 ? null : ['red', 'green', 'blue'][i % 3]!)),
    new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32()),
  );
  const flags = arrow.vectorFromArray(
    Array.from({ length: n }, (_, i) => (i % 5 === 0 ? null : i % 2 === 0)),
    new arrow.Bool(),
  );
  const ts = arrow.vectorFromArray(
    Array.from({ length: n }, (_, i) => i * 1000),
    new arrow.TimestampMillisecond(),
  );
  const struct = arrow.vectorFromArray(
    Array.from({ length: n }, (_, i) => (i % 7 === 0 ? null : { a: i, b: `s${i}` })),
    new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true), new arrow.Field('b', new arrow.Utf8(), true)]),
  );
  const large = arrow.vectorFromArray(
    Array.from({ length: n }, (_, i) => `large ${i}`),
    new arrow.LargeUtf8(),
  );
  const cols: Record<string, arrow.Vector> = {};
  for (const f of base.schema.fields) cols[f.name] = base.getChild(f.name)!;
  return new arrow.Table({ ...cols, dict, flags, ts, struct, large }).batches[0]!;
}

function send(wire: WireBatch): WireBatch {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(wire, [wire.bytes]);
  const got = receiveMessageOnPort(port2)!.message as WireBatch;
  port1.close();
  return got;
}

describe('packed batch transfer', () => {
  it('round-trips every column type, whole and sliced, through a MessagePort', () => {
    const batch = wideBatch();
    for (const b of [batch, batch.slice(3, 997), batch.slice(500, 500)]) {
      const back = batchFromWire(send(batchToWire(b)));
      assert.equal(back.numRows, b.numRows);
      assert.deepEqual(
        back.schema.fields.map((f) => `${f.name}:${f.type}`),
        b.schema.fields.map((f) => `${f.name}:${f.type}`),
      );
      assert.equal(dump(back), dump(b));
    }
  });

  it('moves the packed buffer and leaves the batch it came from readable', () => {
    const batch = sampleBatch(0, 5000);
    const before = dump(batch);
    const wire = batchToWire(batch);
    const back = batchFromWire(send(wire));
    assert.equal(wire.bytes.byteLength, 0, 'the packed buffer was transferred (detached here), not cloned');
    assert.equal(dump(batch), before, "the sender's batch is intact");
    assert.equal(dump(back), before);
  });

  it('columns sharing one buffer are packed as separate copies', () => {
    const x = arrow.makeVector(Float64Array.from({ length: 1000 }, (_, i) => i / 7));
    const shared = x.data[0]!;
    const fields = [new arrow.Field('x', shared.type, true), new arrow.Field('x2', shared.type, true), new arrow.Field('tail', shared.type, true)];
    const tail = shared.slice(10, 990);
    const batch = new arrow.RecordBatch(
      new arrow.Schema(fields),
      arrow.makeData({ type: new arrow.Struct(fields), length: 980, nullCount: 0, children: [shared.slice(0, 980), shared.slice(0, 980), tail] }),
    );
    const back = batchFromWire(send(batchToWire(batch)));
    assert.deepEqual([...back.getChild('x')!], [...back.getChild('x2')!]);
    assert.deepEqual([...back.getChild('tail')!], [...x].slice(10, 990));
  });
});

describe('worker runs send packed batches', () => {
  it('results from worker threads arrive as transferred wire batches, equal to the in-process run', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const df = () => readParquet(dir).select('id', 'category', 'tags', col('x').mul(2).alias('y'), col('x').alias('x2'), 'x');
    setRunner('native', { workers: false });
    const expected = await df().toRows();
    const seen: FromWorker[] = [];
    poolTestHooks.onMessage = (m) => {
      if (m.type === 'batch') seen.push(m);
    };
    try {
      setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
      const got = await df().toRows();
      assert.deepEqual(got, expected);
    } finally {
      poolTestHooks.onMessage = undefined;
    }
    assert.ok(seen.length > 0, 'the workers sent batches');
    for (const m of seen) {
      assert.ok(m.type === 'batch' && m.wire.bytes instanceof ArrayBuffer, 'a batch message carries a packed buffer');
    }
  });
});

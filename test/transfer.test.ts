// Worker results cross threads as one packed, transferred buffer (src/runners/transfer.ts) instead of
// Arrow IPC (issue 12 item 3): every type round-trips, aliased columns survive, the packed buffer is
// moved (not cloned) while the worker's own batch stays readable, and worker runs use it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { after, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, lit, readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { filterBatch } from '../src/eval.ts';
import { readParquetBatches } from '../src/io/parquet/index.ts';
import { batchFromWire, batchToWire, type WireBatch } from '../src/runners/transfer.ts';
import { double, keeper } from './fixtures/udfs.ts';
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
  port1.postMessage(wire, [wire.bytes, ...(wire.owned ?? [])]);
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

  it("equal schemas on new Schema objects (a partition's every batch) share one encoding; any difference gets its own", () => {
    const make = (fields: arrow.Field[], metadata?: Map<string, string>): arrow.RecordBatch => {
      const x = arrow.makeVector(Float64Array.from({ length: 10 }, (_, i) => i)).data[0]!;
      const children = fields.map((f) =>
        f.type instanceof arrow.Float64
          ? x
          : arrow.vectorFromArray(
              Array.from({ length: 10 }, () => null),
              f.type,
            ).data[0]!,
      );
      return new arrow.RecordBatch(new arrow.Schema(fields, metadata), arrow.makeData({ type: new arrow.Struct(fields), length: 10, nullCount: 0, children }));
    };
    const y = () => new arrow.Field('y', new arrow.Float64(), true);
    const a = batchToWire(make([y()]));
    const b = batchToWire(make([y()]));
    assert.equal(a.schema, b.schema, "the second batch reuses the first one's encoded schema");
    // What the encoding depends on: name, nullability, type parameters, metadata, dictionary ids.
    const variants = [
      make([new arrow.Field('z', new arrow.Float64(), true)]),
      make([new arrow.Field('y', new arrow.Float64(), false)]),
      make([new arrow.Field('y', new arrow.Float64(), true, new Map([['k', 'v']]))]),
      make([y()], new Map([['k', 'v']])),
      make([y(), new arrow.Field('t', new arrow.Timestamp(arrow.TimeUnit.MILLISECOND, 'UTC'), true)]),
      make([y(), new arrow.Field('t', new arrow.Timestamp(arrow.TimeUnit.MILLISECOND, 'Europe/Paris'), true)]),
      make([y(), new arrow.Field('d', new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32(), 7), true)]),
      make([y(), new arrow.Field('d', new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32(), 8), true)]),
      make([y(), new arrow.Field('l', new arrow.List(new arrow.Field('item', new arrow.Int32(), true)), true)]),
      make([y(), new arrow.Field('l', new arrow.List(new arrow.Field('element', new arrow.Int32(), true)), true)]),
    ];
    const seen = new Set<Uint8Array>([a.schema]);
    for (const v of variants) {
      const w = batchToWire(v);
      assert.ok(!seen.has(w.schema), `its own encoding: ${v.schema.fields.map(String).join(', ')}`);
      seen.add(w.schema);
      const back = batchFromWire(send(w)).schema;
      assert.deepEqual(
        back.fields.map((f) => [f.name, f.nullable, String(f.type), [...f.metadata]]),
        v.schema.fields.map((f) => [f.name, f.nullable, String(f.type), [...f.metadata]]),
      );
      assert.deepEqual([...back.metadata], [...v.schema.metadata]);
    }
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

/** The first batch of a Parquet file written from sampleBatch (int64, float64, utf8, int32 with nulls, list<utf8>). */
async function decodedBatch(): Promise<arrow.RecordBatch> {
  const path = join(tempDir(), 'moved.parquet');
  await writeSample(path, 0, 3000, 3000);
  for await (const b of readParquetBatches(path)) return b;
  throw new Error('no batch');
}

const bufferBytes = (b: arrow.RecordBatch): number[] =>
  b.data.children.flatMap((c) => [c.values, c.valueOffsets, c.nullBitmap].filter((v) => v !== undefined && v !== null).map((v) => v.byteLength));

describe("the reader's decoded buffers (issue 12: no second copy in workers)", () => {
  it("are moved, not copied, when asked: the receiver sees the same values, the sender's views are detached", async () => {
    const batch = await decodedBatch();
    const before = dump(batch);
    const sizes = bufferBytes(batch);
    const wire = batchToWire(batch, true);
    assert.ok(wire.owned && wire.owned.length > 0, 'decoded buffers travel as they are');
    const moved = wire.owned.reduce((n, b) => n + b.byteLength, 0);
    assert.ok(wire.bytes.byteLength < moved / 4, `little is copied into the packed buffer (${wire.bytes.byteLength} bytes packed, ${moved} moved)`);
    const back = batchFromWire(send(wire));
    assert.equal(dump(back), before);
    assert.ok(
      bufferBytes(batch).some((n, i) => n === 0 && sizes[i]! > 0),
      "the sender's buffers were transferred (detached), not cloned",
    );
  });

  it('posting a batch whose buffers were moved fails loudly instead of sending detached (empty) views', async () => {
    const batch = await decodedBatch();
    send(batchToWire(batch, true));
    assert.throws(() => batchToWire(batch, true), /already moved to another thread/);
    assert.throws(() => batchToWire(batch), /already moved to another thread/);
  });

  it("a filter's gathered columns are moved too; the batch it filtered, built in JS, is left intact", () => {
    const input = sampleBatch(0, 4000);
    const before = dump(input);
    const kept = filterBatch(input, col('x').gt(0.5).node);
    assert.ok(kept.numRows > 0 && kept.numRows < input.numRows);
    const expected = dump(kept);
    const wire = batchToWire(kept, true);
    assert.ok(wire.owned && wire.owned.length > 0, 'gathered buffers travel as they are');
    assert.equal(dump(batchFromWire(send(wire))), expected);
    assert.equal(dump(input), before, 'the input batch still reads the same');
    // Every row kept: filterBatch returns its input, whose JS-built buffers are packed, not moved.
    const all = filterBatch(input, col('x').gt(-1).node);
    assert.equal(all, input);
    assert.equal(batchToWire(all, true).owned, undefined);
  });

  it('are copied when not asked, and buffers the reader did not allocate are always copied', async () => {
    const batch = await decodedBatch();
    const before = dump(batch);
    const wire = batchToWire(batch);
    assert.equal(wire.owned, undefined);
    assert.equal(dump(batchFromWire(send(wire))), before);
    assert.equal(dump(batch), before, "the sender's batch is intact");
    const made = sampleBatch(0, 1000);
    const made0 = dump(made);
    const w2 = batchToWire(made, true);
    assert.equal(w2.owned, undefined, 'a batch built in JS is packed, never moved');
    assert.equal(dump(batchFromWire(send(w2))), made0);
    assert.equal(dump(made), made0);
  });
});

/** Runs `df` in-process, then on 2 workers (one partition per file), asserts equal rows, and returns the batch messages the workers sent. */
async function batchesFromWorkers(df: () => ReturnType<typeof readParquet>): Promise<FromWorker[]> {
  setRunner('native', { workers: false });
  const expected = await df().toRows();
  const seen: FromWorker[] = [];
  poolTestHooks.onMessage = (m) => {
    if (m.type === 'batch') seen.push(m);
  };
  try {
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    assert.deepEqual(await df().toRows(), expected);
  } finally {
    poolTestHooks.onMessage = undefined;
  }
  return seen;
}

describe('worker runs send packed batches', () => {
  it('results from worker threads arrive as transferred wire batches, equal to the in-process run', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const df = () => readParquet(dir).select('id', 'category', 'tags', col('x').mul(2).alias('y'), col('x').alias('x2'), 'x');
    const seen = await batchesFromWorkers(df);
    assert.ok(seen.length > 0, 'the workers sent batches');
    for (const m of seen) {
      assert.ok(m.type === 'batch' && m.wire.bytes instanceof ArrayBuffer, 'a batch message carries a packed buffer');
    }
    // No UDF in the plan: the decoded columns (x twice: one moved buffer, viewed by both) are moved.
    assert.ok(
      seen.some((m) => m.type === 'batch' && (m.wire.owned?.length ?? 0) > 0),
      'the workers moved the decoded buffers instead of copying them',
    );
  });

  it('a filtered scan on workers moves its gathered columns and returns the in-process rows', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const df = () => readParquet(dir).where(col('x').gt(0.5)).select('id', 'category', col('x').mul(2).add(1).alias('y'));
    const seen = await batchesFromWorkers(df);
    assert.ok(seen.length > 0 && seen.every((m) => m.type === 'batch' && (m.wire.owned?.length ?? 0) > 0), 'every batch moved its gathered columns');
  });

  it('limits (sliced batches) and explode on workers, with moved buffers, return the in-process rows', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const plans = [
      () => readParquet(dir).limit(15_003),
      () => readParquet(dir).where(col('x').gt(0.25)).limit(12_345),
      () => readParquet(dir).select('id', 'tags').explode('tags'),
    ];
    for (const df of plans) {
      setRunner('native', { workers: false });
      const expected = await df().toRows();
      // Batches under the limits' sizes: a limit one batch covers would run in-process.
      setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 4096 });
      assert.match(await df().explain(), /worker threads/);
      assert.deepEqual(await df().toRows(), expected);
    }
  });

  it("with a UDF in the task, what the UDF was given is never moved (it may keep it); other decoded columns and a row-wise UDF's output are", {
    timeout: 120_000,
  }, async () => {
    // Session 4: moves are decided per buffer (a UDF's arguments are disowned when it is called), no
    // longer per task. Before, nothing at all was moved from a task with a UDF.
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const df = () => readParquet(dir).select('id', 'x', double(col('x')).alias('d'));
    const seen = await batchesFromWorkers(df);
    assert.ok(seen.length > 0, 'the workers sent batches');
    for (const m of seen) {
      assert.ok(m.type === 'batch');
      // buffers[1] is the values view; its 4th element names a moved buffer (0 / absent: packed).
      const movedAt = (c: number): number => m.wire.columns[c]!.buffers[1]?.[3] ?? 0;
      assert.equal(movedAt(1), 0, 'x, which the UDF was given, was packed (copied), not moved');
      assert.ok(movedAt(0) > 0, 'id, which no UDF saw, was moved');
      assert.ok(movedAt(2) > 0, "the row-wise UDF's output (engine-allocated) was moved");
    }
  });

  it('a UDF that keeps its inputs still reads them after their batches were sent, and rows match', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 5_000);
    // x goes out as a column too: were its buffer moved when its batch was sent, the UDF's kept
    // vector would be detached and the next call would return -1s.
    const df = () => readParquet(dir).select('x', keeper(col('x')).alias('k'));
    setRunner('native', { workers: false });
    const expected = await df().toRows();
    assert.ok(expected.every((r) => r['k'] === r['x']));
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    assert.deepEqual(await df().toRows(), expected);
  });

  it('a projection on workers moves its arithmetic column (x*2+1) instead of packing a copy', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `f${i}.parquet`), i * 20_000, 20_000, 10_000);
    const df = () => readParquet(dir).select('id', col('x').mul(2).add(1).alias('y'), col('id').sub(col('id')).alias('zero'));
    const seen = await batchesFromWorkers(df);
    assert.ok(seen.length > 0, 'the workers sent batches');
    for (const m of seen) {
      assert.ok(m.type === 'batch');
      // buffers[1] is the values view; its 4th element names a moved buffer (0 / absent: packed).
      for (const c of [1, 2]) assert.ok((m.wire.columns[c]!.buffers[1]?.[3] ?? 0) > 0, `column ${c}'s values were moved`);
    }
  });

  it('a constant-folded one-row result is never moved: every one-row batch of a partition carries it', { timeout: 120_000 }, async () => {
    const dir = tempDir();
    await writeSample(join(dir, 'f.parquet'), 0, 20_000, 10_000);
    // One row out of each 1 000-row batch: several one-row batches per partition, each with the
    // folded constant 2*3 as its column (a one-row result is not broadcast, it is used as is).
    const df = () =>
      readParquet(dir)
        .where(col('id').mod(1000).eq(0))
        .select('id', lit(2).mul(lit(3)).alias('c'), col('x').mul(2).alias('y'));
    setRunner('native', { workers: false });
    const expected = await df().toRows();
    assert.equal(expected.length, 20);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 1000 });
    assert.deepEqual(await df().toRows(), expected);
  });
});

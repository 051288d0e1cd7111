import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { cls, col, DataType, fromRecords, func, metrics, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { CounterUdf, double, exitWorker, tagged } from './fixtures/udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

before(() => setRunner('native', { workers: false }));
after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

describe('func (row-wise)', () => {
  it('sync: values in, values out, constants pass through', async () => {
    const scale = func((x: number, k: number) => x * k, { returnDtype: DataType.float64(), name: 'scale' });
    const df = fromRecords([{ x: 1.5 }, { x: null }, { x: 3 }]);
    const rows = await df.withColumn('y', scale(col('x'), 2)).toRows();
    // null reaches the function as null (null * 2 is 0 in JS): the UDF decides what null means.
    assert.deepEqual(
      rows.map((r) => r.y),
      [3, 0, 6],
    );
  });

  it('null inputs reach the function as null', async () => {
    const seen: unknown[] = [];
    const spy = func(
      (x: number | null) => {
        seen.push(x);
        return x === null ? -1 : x;
      },
      { returnDtype: DataType.float64(), name: 'spy' },
    );
    await fromRecords([{ x: 1.5 }, { x: null }])
      .select(spy(col('x')).alias('r'))
      .toRows();
    assert.deepEqual(seen, [1.5, null]);
  });

  it('int64 arrives as bigint, lists as arrays, structs as objects', async () => {
    const describeRow = func((id: bigint, l: unknown[], s: { a: number }) => `${typeof id}:${l.length}:${s.a}`, {
      returnDtype: DataType.utf8(),
      name: 'describeRow',
    });
    const rows = await fromRecords([{ id: 5n, l: [1, 2], s: { a: 7 } }])
      .select(describeRow(col('id'), col('l'), col('s')).alias('d'))
      .toRows();
    assert.deepEqual(rows, [{ d: 'bigint:2:7' }]);
  });

  it('async: many calls in flight, capped per call by maxConcurrency', async () => {
    let inflight = 0;
    let max = 0;
    const slow = func(
      async (x: number) => {
        inflight++;
        max = Math.max(max, inflight);
        await new Promise((r) => setTimeout(r, 5));
        inflight--;
        return x + 1;
      },
      { returnDtype: DataType.float64(), maxConcurrency: 3, name: 'slowAsync' },
    );
    const df = fromRecords(Array.from({ length: 40 }, (_, i) => ({ x: i + 0.5 })));
    const rows = await df.withColumn('y', slow(col('x'))).toRows();
    assert.deepEqual(
      rows.map((r) => r.y),
      Array.from({ length: 40 }, (_, i) => i + 1.5),
    );
    assert.equal(max, 3, `max in flight was ${max}`);
  });

  it('generator: zero or many outputs per row, other columns repeated, in order; a row yielding nothing keeps a null (onEmpty default)', async () => {
    const repeat = func(
      function* (s: string, n: bigint) {
        for (let i = 0; i < Number(n); i++) yield `${s}${i}`;
      },
      { returnDtype: DataType.utf8(), name: 'repeatGen' },
    );
    const df = fromRecords([
      { s: 'a', n: 2n, k: 1 },
      { s: 'b', n: 0n, k: 2 },
      { s: 'c', n: 3n, k: 3 },
    ]);
    const rows = await df
      .withColumn('out', repeat(col('s'), col('n')))
      .select('k', 'out')
      .toRows();
    assert.deepEqual(rows, [
      { k: 1, out: 'a0' },
      { k: 1, out: 'a1' },
      { k: 2, out: null },
      { k: 3, out: 'c0' },
      { k: 3, out: 'c1' },
      { k: 3, out: 'c2' },
    ]);
    // onEmpty 'drop' (the behaviour before issue 10 item 5) drops that row.
    const repDrop = func(
      function* (s: string, n: bigint) {
        for (let i = 0; i < Number(n); i++) yield `${s}${i}`;
      },
      { returnDtype: DataType.utf8(), name: 'repeatGenDrop', onEmpty: 'drop' },
    );
    assert.deepEqual(
      await df
        .withColumn('out', repDrop(col('s'), col('n')))
        .select('k', 'out')
        .toRows(),
      [
        { k: 1, out: 'a0' },
        { k: 1, out: 'a1' },
        { k: 3, out: 'c0' },
        { k: 3, out: 'c1' },
        { k: 3, out: 'c2' },
      ],
    );
  });

  it('a generator decides the row count even when its column is not selected', async () => {
    const rep = func(
      function* (n: bigint) {
        for (let i = 0; i < Number(n); i++) yield i;
      },
      { returnDtype: DataType.int32(), name: 'repCount' },
    );
    const df = fromRecords([
      { k: 'a', n: 2n },
      { k: 'b', n: 3n },
    ]).withColumn('g', rep(col('n')));
    assert.deepEqual(
      (await df.select('k').toRows()).map((r) => r.k),
      ['a', 'a', 'b', 'b', 'b'],
    );
    assert.equal(await df.count(), 5);
    assert.equal(await df.exclude('g').count(), 5);
  });

  it('retries: a row that fails once succeeds on the second try', async () => {
    const attempts = new Map<number, number>();
    const flaky = func(
      (x: number) => {
        const n = (attempts.get(x) ?? 0) + 1;
        attempts.set(x, n);
        if (n === 1 && x === 2) throw new Error('transient');
        return x * 10;
      },
      { returnDtype: DataType.float64(), maxRetries: 2, name: 'flaky' },
    );
    const df = fromRecords([{ x: 1.5 }, { x: 2 }, { x: 3.5 }]);
    const out = df.withColumn('y', flaky(col('x')));
    const rows = await out.toRows();
    assert.deepEqual(
      rows.map((r) => r.y),
      [15, 20, 35],
    );
    assert.equal(attempts.get(2), 2);
    assert.equal(out.metrics['flaky']!.retries, 1);
  });

  it('onError: raise names the UDF and the row; null and log give null', async () => {
    const boom = (x: number): number => {
      if (x > 2) throw new Error(`too big: ${x}`);
      return x;
    };
    const df = fromRecords([{ x: 1.5 }, { x: 2.5 }]);
    const raising = func(boom, { returnDtype: DataType.float64(), name: 'boomRaise' });
    await assert.rejects(
      () => df.withColumn('y', raising(col('x'))).toRows(),
      (e: Error) => /boomRaise/.test(e.message) && /row 1/.test(e.message) && /too big: 2.5/.test(e.message),
    );
    const nulling = func(boom, { returnDtype: DataType.float64(), onError: 'null', name: 'boomNull' });
    assert.deepEqual(
      (await df.withColumn('y', nulling(col('x'))).toRows()).map((r) => r.y),
      [1.5, null],
    );
    const warnings: string[] = [];
    const orig = console.warn;
    console.warn = (m: string) => {
      warnings.push(m);
    };
    try {
      const logging = func(boom, { returnDtype: DataType.float64(), onError: 'log', name: 'boomLog' });
      assert.deepEqual(
        (await df.withColumn('y', logging(col('x'))).toRows()).map((r) => r.y),
        [1.5, null],
      );
    } finally {
      console.warn = orig;
    }
    assert.ok(warnings.some((w) => /boomLog/.test(w) && /too big/.test(w)));
  });

  it('deadLetter writes failed rows with their error text as Parquet', async () => {
    const dl = tempDir();
    const picky = func(
      (s: string) => {
        if (s.startsWith('bad')) throw new Error(`rejected ${s}`);
        return s.length;
      },
      {
        returnDtype: DataType.int32(),
        onError: 'null',
        deadLetter: dl,
        name: 'picky',
      },
    );
    const rows = await fromRecords([{ s: 'ok' }, { s: 'bad1' }, { s: 'fine' }, { s: 'bad2' }])
      .withColumn('n', picky(col('s')))
      .toRows();
    assert.deepEqual(
      rows.map((r) => r.n),
      [2, null, 4, null],
    );
    const files = readdirSync(dl).filter((f) => f.endsWith('.parquet'));
    assert.equal(files.length, 1);
    const dead = await readParquet(join(dl, files[0]!)).toRows();
    assert.deepEqual(
      dead.map((r) => [r.udf, r.row, r.arg0]),
      [
        ['picky', 1n, 'bad1'],
        ['picky', 3n, 'bad2'],
      ],
    );
    assert.match(String(dead[0]!.error), /rejected bad1/);
  });

  it('wrong return type is a clear error naming the UDF', async () => {
    const liar = func((x: number) => (x > 1 ? ('str' as unknown as number) : x), { returnDtype: DataType.float64(), name: 'liar' });
    await assert.rejects(
      () =>
        fromRecords([{ x: 0.5 }, { x: 2.5 }])
          .withColumn('y', liar(col('x')))
          .toRows(),
      /liar/,
    );
  });

  it('a UDF predicate only sees rows an earlier filter kept', async () => {
    const model = func(
      (x: number) => {
        if (x === 0) throw new Error('called on a removed row');
        return x > 1;
      },
      { returnDtype: DataType.bool(), name: 'guardedModel' },
    );
    const rows = await fromRecords([{ x: 0 }, { x: 2.5 }, { x: 0.5 }])
      .where(col('x').neq(0))
      .where(model(col('x')))
      .toRows();
    assert.deepEqual(rows, [{ x: 2.5 }]);
  });

  it('a promise-returning function is retried like an async one', async () => {
    let calls = 0;
    const flakyPromise = func((x: number) => (++calls === 1 ? Promise.reject(new Error('transient')) : Promise.resolve(x + 1)), {
      returnDtype: DataType.float64(),
      maxRetries: 2,
      name: 'flakyPromise',
    });
    assert.deepEqual(
      await fromRecords([{ x: 1.5 }])
        .withColumn('y', flakyPromise(col('x')))
        .toRows(),
      [{ x: 1.5, y: 2.5 }],
    );
  });

  it('an action stopped early keeps its metrics; the next action starts from zero', async () => {
    const counted = func((x: number) => x, { returnDtype: DataType.float64(), name: 'countedEarly' });
    const df = fromRecords(Array.from({ length: 10 }, (_, i) => ({ x: i + 0.5 }))).withColumn('y', counted(col('x')));
    for await (const r of df.iterRows()) {
      void r;
      break;
    }
    const full = df.withColumn('z', col('y'));
    await full.toRows();
    assert.equal(full.metrics['countedEarly']!.rowsIn, 10);
  });

  it('a UDF in where()', async () => {
    const isEven = func((n: bigint) => n % 2n === 0n, { returnDtype: DataType.bool(), name: 'isEven' });
    const rows = await fromRecords([{ n: 1n }, { n: 2n }, { n: 4n }])
      .where(isEven(col('n')))
      .toRows();
    assert.deepEqual(rows, [{ n: 2n }, { n: 4n }]);
  });

  it('struct return with unnest spreads fields into columns, calling the UDF once per row', async () => {
    let calls = 0;
    const parse = func(
      (s: string) => {
        calls++;
        const [a, b] = s.split('=');
        return { key: a!, value: Number(b) };
      },
      {
        returnDtype: DataType.struct({ key: DataType.utf8(), value: DataType.float64() }),
        unnest: true,
        name: 'parseKv',
      },
    );
    const df = fromRecords([{ s: 'a=1' }, { s: 'b=2.5' }]).withColumn('kv', parse(col('s')));
    assert.deepEqual(df.columns, ['s', 'key', 'value']);
    assert.deepEqual(await df.toRows(), [
      { s: 'a=1', key: 'a', value: 1 },
      { s: 'b=2.5', key: 'b', value: 2.5 },
    ]);
    assert.equal(calls, 2);
  });

  it('empty batches never reach a UDF', async () => {
    let calls = 0;
    const count = func(
      (x: number) => {
        calls++;
        return x;
      },
      { returnDtype: DataType.float64(), name: 'countCalls' },
    );
    const rows = await fromRecords([{ x: 1.5 }])
      .where(col('x').gt(10))
      .withColumn('y', count(col('x')))
      .toRows();
    assert.deepEqual(rows, []);
    assert.equal(calls, 0);
  });
});

describe('func.batch', () => {
  it('receives vectors, returns typed arrays, vectors or arrays, in batches of batchSize', async () => {
    const sizes: number[] = [];
    const plusOne = func.batch(
      (v: arrow.Vector) => {
        sizes.push(v.length);
        const src = v.toArray() as Float64Array;
        return Float64Array.from(src, (x) => x + 1);
      },
      { returnDtype: DataType.float64(), batchSize: 4, name: 'plusOne' },
    );
    const df = fromRecords(Array.from({ length: 10 }, (_, i) => ({ x: i + 0.5 })));
    const rows = await df.withColumn('y', plusOne(col('x'))).toRows();
    assert.deepEqual(
      rows.map((r) => r.y),
      Array.from({ length: 10 }, (_, i) => i + 1.5),
    );
    assert.deepEqual(sizes, [4, 4, 2]);
  });

  it('a wrong-length result is a clear error', async () => {
    const short = func.batch((v: arrow.Vector) => new Float64Array(v.length - 1), { returnDtype: DataType.float64(), name: 'shortBatch' });
    await assert.rejects(
      () =>
        fromRecords([{ x: 1.5 }, { x: 2.5 }])
          .withColumn('y', short(col('x')))
          .toRows(),
      /shortBatch.*returned 1 values for a batch of 2/,
    );
  });
});

describe('cls', () => {
  it('constructs once per worker and keeps state across batches', async () => {
    let constructed = 0;
    class Acc {
      total = 0;
      constructor(readonly step: number) {
        constructed++;
      }
      add(x: number): number {
        this.total += this.step;
        return x + this.total;
      }
    }
    const AccUdf = cls(Acc, { methods: { add: { returnDtype: DataType.float64() } } });
    const acc = new AccUdf(1);
    const rows = await fromRecords(Array.from({ length: 5 }, () => ({ x: 0.5 })))
      .withColumn('y', acc.add(col('x')))
      .toRows();
    assert.deepEqual(
      rows.map((r) => r.y),
      [1.5, 2.5, 3.5, 4.5, 5.5],
    );
    assert.equal(constructed, 1);
  });

  it('batch methods receive vectors; per-method options override the class', () => {
    class Emb {
      embed(v: arrow.Vector): Float32Array {
        return new Float32Array(v.length);
      }
    }
    const E = cls(Emb, { concurrency: 2, maxRetries: 1, methods: { embed: { returnDtype: DataType.float32(), batch: true, batchSize: 256, maxRetries: 3 } } });
    const e = new E();
    const node = e.embed(col('x')).node;
    assert.equal(node.op, 'udf');
    const def = (e.embed as unknown as { definition: { kind: string; options: { batchSize: number; maxRetries: number; concurrency: number } } }).definition;
    assert.equal(def.kind, 'batch');
    assert.equal(def.options.batchSize, 256);
    assert.equal(def.options.maxRetries, 3);
    assert.equal(def.options.concurrency, 2);
  });

  it('constructor arguments must be plain values; unknown methods are rejected', () => {
    class K {
      m(x: number): number {
        return x;
      }
    }
    assert.throws(() => cls(K, { methods: { nope: {} } as never }), /nope/);
  });
});

describe('definitions and planning', () => {
  it('options are validated when the UDF is defined', () => {
    const f = (x: number) => x;
    assert.throws(() => func(f, { returnDtype: DataType.float64(), numGpus: 1.5 }), /numGpus/);
    assert.throws(() => func(f, { returnDtype: DataType.float64(), batchSize: 0 }), /batchSize/);
    assert.throws(() => func(f, { returnDtype: DataType.float64(), onError: 'explode' as never }), /onError/);
    assert.throws(() => func(f, {} as never), /returnDtype/);
    assert.throws(() => func((x: number) => x, { returnDtype: DataType.float64() }), /name/, 'anonymous function without name');
  });

  it('duplicate names from different modules are an error', async () => {
    // The fixture module registered 'fixtures.double'; this module may not reuse it.
    assert.throws(() => func((x: number) => x, { returnDtype: DataType.float64(), name: 'fixtures.double' }), /duplicate UDF name/);
  });

  it('explain shows each UDF with kind, batch size, concurrency, resources and error policy', async () => {
    const emb = func.batch((v: arrow.Vector) => v, {
      returnDtype: DataType.float64(),
      batchSize: 128,
      concurrency: 2,
      numGpus: 0.5,
      onError: 'null',
      name: 'explainMe',
    });
    const text = await fromRecords([{ x: 1.5 }])
      .withColumn('y', emb(col('x')))
      .explain();
    assert.match(text, /UDF explainMe: batch, returns float64, batchSize 128, concurrency 2, numCpus 1, numGpus 0.5, onError null/);
  });

  it('an impossible resource request fails at plan time', async () => {
    const greedy = func((x: number) => x, { returnDtype: DataType.float64(), numCpus: 4096, name: 'greedy' });
    await assert.rejects(
      () =>
        fromRecords([{ x: 1.5 }])
          .withColumn('y', greedy(col('x')))
          .toRows(),
      /numCpus 4096/,
    );
  });

  it('metrics.increment outside a UDF warns and does not crash', () => {
    const orig = console.warn;
    let warned = '';
    console.warn = (m: string) => {
      warned = m;
    };
    try {
      metrics.increment('nowhere');
    } finally {
      console.warn = orig;
    }
    assert.match(warned, /outside a UDF/);
  });
});

describe('workers resolve UDFs by name', () => {
  it('module-defined UDFs run in worker threads; metrics and counters are summed', async () => {
    const dir = tempDir();
    for (let i = 0; i < 4; i++) await writeSample(join(dir, `f${i}.parquet`), i * 1000, 1000, 500);
    const pipeline = () =>
      readParquet(dir)
        .withColumns({ y: double(col('x')), t: tagged(col('category')) })
        .select('id', 'y', 't');
    setRunner('native', { workers: false });
    const local = await pipeline().toRows();
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    const df = pipeline();
    const rows = await df.toRows();
    assert.deepEqual(rows, local);
    assert.equal(df.metrics['fixtures.tagged']!.counters['seen'], 4000);
    assert.equal(df.metrics['fixtures.double']!.rowsIn, 4000);
    setRunner('native', { workers: false });
  });

  it('a worker thread that dies fails the write (no hang) and commits nothing', async () => {
    const dir = tempDir();
    for (let i = 0; i < 4; i++) await writeSample(join(dir, `c${i}.parquet`), i * 100, 100, 50);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    const out = join(tempDir(), 'crashed');
    await assert.rejects(
      () =>
        readParquet(dir)
          .withColumn('y', exitWorker(col('x')))
          .writeParquet(out),
      /worker thread/,
    );
    assert.ok(!existsSync(join(out, '_SUCCESS')));
    setRunner('native', { workers: false });
  });

  it('actions with different runner settings can interleave (the old pool retires when done)', async () => {
    const dir = tempDir();
    for (let i = 0; i < 4; i++) await writeSample(join(dir, `r${i}.parquet`), i * 1000, 1000, 250);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 100, prefetch: 1 });
    const it = readParquet(dir)
      .withColumn('y', double(col('x')))
      .iterRows()
      [Symbol.asyncIterator]();
    await it.next();
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1, batchSize: 200 });
    assert.equal(
      (
        await readParquet(dir)
          .withColumn('y', double(col('x')))
          .toRows()
      ).length,
      4000,
    );
    let n = 1;
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      n++;
    }
    assert.equal(n, 4000);
    setRunner('native', { workers: false });
  });

  it('a cls with concurrency 2 is constructed at most once per worker', async () => {
    const dir = tempDir();
    for (let i = 0; i < 4; i++) await writeSample(join(dir, `g${i}.parquet`), i * 100, 100, 50);
    const log = join(tempDir(), 'inits.log');
    writeFileSync(log, '');
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    await shutdownWorkers(); // fresh workers: a clean count
    const c = new CounterUdf(log);
    const rows = await readParquet(dir)
      .withColumn('y', c.add(col('x')))
      .toRows();
    assert.equal(rows.length, 400);
    const inits = readFileSync(log, 'utf8').trim().split('\n').length;
    assert.ok(inits >= 1 && inits <= 2, `constructed ${inits} times`);
    setRunner('native', { workers: false });
  });
});

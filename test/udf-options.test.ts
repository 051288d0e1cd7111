// Issue 10, items 5 and 7: what a generator UDF that yields nothing produces (onEmpty), and retry
// backoff options (retryBackoffMs, retryBackoffMaxMs) honouring an error's retryAfterMs.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { cls, col, DataType, fromRecords, func, parseRetryAfter, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { getUdf } from '../src/udf.ts';
import { retryDelayMs, setRetrySleepForTests } from '../src/udf-exec.ts';
import { tagsDrop, tagsKeep, throttled, throttledCapped } from './fixtures/udf-options.ts';
import { sampleRows, tempDir, writeSample } from './helpers.ts';

before(() => setRunner('native', { workers: false }));
after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

/** Records the waits between retries instead of sleeping, while `f` runs. */
async function recordingWaits<T>(f: () => Promise<T>): Promise<{ value: T; waits: number[] }> {
  const waits: number[] = [];
  setRetrySleepForTests(async (ms) => {
    waits.push(ms);
  });
  try {
    return { value: await f(), waits };
  } finally {
    setRetrySleepForTests(null);
  }
}

describe('generator UDFs that yield nothing (onEmpty, item 5)', () => {
  // bigint values: int64 columns whatever the inference of JS numbers.
  const df = fromRecords([
    { k: 1n, n: 2n },
    { k: 2n, n: 0n },
    { k: 3n, n: 1n },
  ]);

  it("default 'null': the row stays, with a null output (as in Daft)", async () => {
    const rep = func(
      function* (n: bigint) {
        for (let i = 0n; i < n; i++) yield `v${i}`;
      },
      { returnDtype: DataType.utf8(), name: 'empty.default' },
    );
    assert.equal(getUdf('empty.default').options.onEmpty, 'null');
    const rows = await df
      .withColumn('out', rep(col('n')))
      .select('k', 'out')
      .toRows();
    assert.deepEqual(rows, [
      { k: 1n, out: 'v0' },
      { k: 1n, out: 'v1' },
      { k: 2n, out: null },
      { k: 3n, out: 'v0' },
    ]);
  });

  it("'drop': the row goes (sync and async generators, and cls generator methods)", async () => {
    const rep = func(
      function* (n: bigint) {
        for (let i = 0n; i < n; i++) yield `v${i}`;
      },
      { returnDtype: DataType.utf8(), name: 'empty.drop', onEmpty: 'drop' },
    );
    const arep = func(
      async function* (n: bigint) {
        for (let i = 0n; i < n; i++) yield `v${i}`;
      },
      { returnDtype: DataType.utf8(), name: 'empty.dropAsync', onEmpty: 'drop' },
    );
    const expected = [
      { k: 1n, out: 'v0' },
      { k: 1n, out: 'v1' },
      { k: 3n, out: 'v0' },
    ];
    assert.deepEqual(
      await df
        .withColumn('out', rep(col('n')))
        .select('k', 'out')
        .toRows(),
      expected,
    );
    assert.deepEqual(
      await df
        .withColumn('out', arep(col('n')))
        .select('k', 'out')
        .toRows(),
      expected,
    );
    const Splitter = cls(
      class {
        *split(n: bigint): Generator<string> {
          for (let i = 0n; i < n; i++) yield `v${i}`;
        }
        *keep(n: bigint): Generator<string> {
          for (let i = 0n; i < n; i++) yield `v${i}`;
        }
      },
      { name: 'EmptySplitter', onEmpty: 'drop', methods: { split: { returnDtype: DataType.utf8() }, keep: { returnDtype: DataType.utf8(), onEmpty: 'null' } } },
    );
    const s = new Splitter();
    assert.deepEqual(
      await df
        .withColumn('out', s.split(col('n')))
        .select('k', 'out')
        .toRows(),
      expected,
    );
    assert.deepEqual(
      (
        await df
          .withColumn('out', s.keep(col('n')))
          .select('k', 'out')
          .toRows()
      ).map((r) => r.out),
      ['v0', 'v1', null, 'v0'],
    );
  });

  it('a failing row under onError null still gives one null row, whatever onEmpty', async () => {
    const g = func(
      function* (n: bigint) {
        if (n === 0n) throw new Error('bad');
        yield Number(n);
      },
      { returnDtype: DataType.float64(), name: 'empty.fails', onEmpty: 'drop', onError: 'null' },
    );
    assert.deepEqual(
      await df
        .withColumn('out', g(col('n')))
        .select('k', 'out')
        .toRows(),
      [
        { k: 1n, out: 2 },
        { k: 2n, out: null },
        { k: 3n, out: 1 },
      ],
    );
  });

  it('is validated at definition: a bad value, or any UDF that is not a generator, fails naming the option and UDF', () => {
    const gen = function* (n: number) {
      yield n;
    };
    assert.throws(
      () => func(gen, { returnDtype: DataType.float64(), name: 'empty.bad', onEmpty: 'skip' as never }),
      /UDF 'empty\.bad': option 'onEmpty' must be 'null' or 'drop', got skip/,
    );
    assert.throws(
      () => func((x: number) => x, { returnDtype: DataType.float64(), name: 'empty.row', onEmpty: 'drop' }),
      /UDF 'empty\.row': option 'onEmpty' applies to generator UDFs only.*row UDF/,
    );
    assert.throws(
      () => func(async (x: number) => x, { returnDtype: DataType.float64(), name: 'empty.async', onEmpty: 'null' }),
      /UDF 'empty\.async': option 'onEmpty'.*async UDF/,
    );
    assert.throws(
      () => func.batch((v: arrow.Vector) => v, { returnDtype: DataType.float64(), name: 'empty.batch', onEmpty: 'drop' }),
      /UDF 'empty\.batch': option 'onEmpty'.*batch UDF/,
    );
    class Plain {
      f(x: number): number {
        return x;
      }
      *g(x: number): Generator<number> {
        yield x;
      }
    }
    assert.throws(
      () => cls(Plain, { name: 'EmptyPlain', methods: { f: { returnDtype: DataType.float64(), onEmpty: 'drop' } } }),
      /UDF 'EmptyPlain\.f': option 'onEmpty' applies to generator UDFs only/,
    );
    assert.throws(
      () => cls(Plain, { name: 'EmptyPlain2', onEmpty: 'drop', methods: { f: { returnDtype: DataType.float64() } } }),
      /cls 'EmptyPlain2': option 'onEmpty' applies to generator methods only, and none of f is one/,
    );
    // A class-level default with a generator among the methods is fine (the others ignore it).
    cls(Plain, { name: 'EmptyPlain3', onEmpty: 'drop', returnDtype: DataType.float64() });
    assert.equal(getUdf('EmptyPlain3.g').options.onEmpty, 'drop');
  });

  it('explain lists onEmpty for generators', async () => {
    const text = await fromRecords([{ t: ['a'] }])
      .withColumns({ a: tagsKeep(col('t')), b: tagsDrop(col('t')) })
      .explain();
    assert.match(text, /UDF opts\.tagsKeep: generator, returns utf8, numCpus 1, onError raise, onEmpty null/);
    assert.match(text, /UDF opts\.tagsDrop: generator, returns utf8, numCpus 1, onError raise, onEmpty drop/);
  });

  it('works on worker threads: empty and null lists keep a null row, or are dropped', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `p${i}.parquet`), i * 10, 10, 10);
    const keep: { id: bigint; t: string | null }[] = [];
    for (const r of sampleRows(0, 20)) {
      if (r.tags?.length) for (const t of r.tags) keep.push({ id: r.id, t });
      else keep.push({ id: r.id, t: null });
    }
    assert.ok(keep.some((r) => r.t === null) && keep.some((r) => r.t !== null));
    const byId = (a: { id: unknown; t: unknown }, b: { id: unknown; t: unknown }): number =>
      Number(a.id as bigint) - Number(b.id as bigint) || String(a.t).localeCompare(String(b.t));
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    try {
      const src = readParquet(dir);
      assert.match(await src.withColumn('t', tagsKeep(col('tags'))).explain(), /worker thread/);
      const kept = (
        await src
          .withColumn('t', tagsKeep(col('tags')))
          .select('id', 't')
          .toRows()
      ).sort(byId);
      assert.deepEqual(kept, [...keep].sort(byId));
      const dropped = (
        await src
          .withColumn('t', tagsDrop(col('tags')))
          .select('id', 't')
          .toRows()
      ).sort(byId);
      assert.deepEqual(dropped, keep.filter((r) => r.t !== null).sort(byId));
    } finally {
      setRunner('native', { workers: false });
    }
  });
});

describe('retry backoff (item 7)', () => {
  it('defaults: first wait up to 20 ms, doubling, capped at 2 s; explain lists them', async () => {
    const f = func((x: number) => x, { returnDtype: DataType.float64(), name: 'retry.defaults', maxRetries: 3 });
    const o = f.definition.options;
    assert.deepEqual([o.retryBackoffMs, o.retryBackoffMaxMs], [20, 2000]);
    for (let a = 0; a < 12; a++) {
      const d = retryDelayMs(f.definition, a, new Error('x'));
      assert.ok(d >= 0 && d <= Math.min(2000, 20 * 2 ** a), `attempt ${a}: ${d}`);
    }
    assert.match(
      await fromRecords([{ x: 1.5 }])
        .withColumn('y', f(col('x')))
        .explain(),
      /UDF retry\.defaults: row, .*maxRetries 3, retryBackoffMs 20, retryBackoffMaxMs 2000/,
    );
  });

  it('validated at definition, naming the option and the UDF', () => {
    const f = (x: number): number => x;
    const def = (o: object, name: string) => func(f, { returnDtype: DataType.float64(), name, ...o });
    assert.throws(() => def({ retryBackoffMs: -1 }, 'rb.neg'), /UDF 'rb\.neg': option 'retryBackoffMs' must be a non-negative number of milliseconds/);
    assert.throws(() => def({ retryBackoffMs: '5' }, 'rb.str'), /UDF 'rb\.str': option 'retryBackoffMs'/);
    assert.throws(() => def({ retryBackoffMaxMs: Infinity }, 'rb.inf'), /UDF 'rb\.inf': option 'retryBackoffMaxMs'/);
    assert.throws(() => def({ retryBackoffMaxMs: 2 ** 31 }, 'rb.big'), /UDF 'rb\.big': option 'retryBackoffMaxMs'.*at most 2\^31-1/);
    assert.throws(
      () => def({ retryBackoffMs: 100, retryBackoffMaxMs: 50 }, 'rb.order'),
      /UDF 'rb\.order': option 'retryBackoffMaxMs' must be >= retryBackoffMs \(100\), got 50/,
    );
    assert.throws(
      () => def({ retryBackoffMs: 5000 }, 'rb.overDefault'),
      /UDF 'rb\.overDefault': option 'retryBackoffMs' must be <= retryBackoffMaxMs \(2000, the default\), got 5000/,
    );
    // Merged with the class level: a method may raise one of the pair.
    class C {
      m(x: number): number {
        return x;
      }
    }
    assert.throws(
      () => cls(C, { name: 'RbCls', retryBackoffMaxMs: 100, methods: { m: { returnDtype: DataType.float64(), retryBackoffMs: 500 } } }),
      /UDF 'RbCls\.m': option 'retryBackoffMs' must be <= retryBackoffMaxMs \(100\), got 500/,
    );
    cls(C, { name: 'RbCls2', retryBackoffMs: 500, methods: { m: { returnDtype: DataType.float64(), retryBackoffMaxMs: 800 } } });
    assert.deepEqual([getUdf('RbCls2.m').options.retryBackoffMs, getUdf('RbCls2.m').options.retryBackoffMaxMs], [500, 800]);
    def({ retryBackoffMs: 0, retryBackoffMaxMs: 0 }, 'rb.zero');
  });

  it('waits grow exponentially with full jitter under the configured start and cap (row, async, generator and batch UDFs)', async () => {
    const failing = { returnDtype: DataType.float64(), maxRetries: 6, retryBackoffMs: 100, retryBackoffMaxMs: 700, onError: 'null' as const };
    const udfs = [
      func(
        (x: number): number => {
          throw new Error(`no ${x}`);
        },
        { ...failing, name: 'rb.row' },
      ),
      func(
        async (x: number): Promise<number> => {
          throw new Error(`no ${x}`);
        },
        { ...failing, name: 'rb.async' },
      ),
      func(
        function* (x: number): Generator<number> {
          if (x > 0) throw new Error(`no ${x}`);
          yield x;
        },
        { ...failing, name: 'rb.gen' },
      ),
      func.batch(
        (v: arrow.Vector): Float64Array => {
          throw new Error(`no ${v.length}`);
        },
        { ...failing, name: 'rb.batch' },
      ),
    ];
    for (const u of udfs) {
      const { value, waits } = await recordingWaits(() =>
        fromRecords([{ x: 1.5 }])
          .withColumn('y', u(col('x')))
          .toRows(),
      );
      assert.deepEqual(value, [{ x: 1.5, y: null }]);
      assert.equal(waits.length, 6, u.udfName);
      for (const [a, w] of waits.entries()) assert.ok(w >= 0 && w <= Math.min(700, 100 * 2 ** a), `${u.udfName} wait ${a}: ${w}`);
    }
    // Full jitter: over many draws the waits spread over [0, cap], not all at the cap.
    const draws = Array.from({ length: 200 }, () => retryDelayMs(udfs[0]!.definition, 10, null));
    assert.ok(Math.min(...draws) < 350 && Math.max(...draws) > 350 && Math.max(...draws) <= 700);
  });

  it("an error's retryAfterMs is a lower bound on the next wait, capped by retryBackoffMaxMs", async () => {
    let n = 0;
    const limited = func(
      (x: number) => {
        n++;
        // A 503 asking for 300 ms, then a 429 asking for 10 s (over the cap), then success.
        if (n === 1) throw Object.assign(new Error('HTTP 503'), { retryAfterMs: 300 });
        if (n === 2) throw Object.assign(new Error('HTTP 429'), { retryAfterMs: 10_000 });
        return x;
      },
      { returnDtype: DataType.float64(), name: 'rb.after', maxRetries: 3, retryBackoffMs: 1, retryBackoffMaxMs: 1000 },
    );
    const { value, waits } = await recordingWaits(() =>
      fromRecords([{ x: 2.5 }])
        .withColumn('y', limited(col('x')))
        .toRows(),
    );
    assert.deepEqual(value, [{ x: 2.5, y: 2.5 }]);
    assert.equal(waits.length, 2);
    assert.ok(waits[0]! >= 300 && waits[0]! <= 1000, `first wait ${waits[0]}`);
    assert.equal(waits[1], 1000);
    // Not a positive finite number: ignored (plain backoff).
    for (const bad of [-5, Number.NaN, Infinity, '2000', null]) {
      assert.ok(retryDelayMs(limited.definition, 0, Object.assign(new Error('x'), { retryAfterMs: bad })) <= 1);
    }
  });

  it('really waits (in-process): the retry comes at least retryAfterMs later, and timeoutMs bounds each attempt, not the wait', async () => {
    const first = new Map<number, number>();
    const gap = func(
      async (x: number): Promise<number> => {
        const t = first.get(x);
        if (t === undefined) {
          first.set(x, performance.now());
          throw Object.assign(new Error('HTTP 429'), { retryAfterMs: 150 });
        }
        return performance.now() - t;
      },
      { returnDtype: DataType.float64(), name: 'rb.realWait', maxRetries: 1, retryBackoffMs: 1, retryBackoffMaxMs: 1000, timeoutMs: 50 },
    );
    const rows = await fromRecords([{ x: 1.5 }, { x: 2.5 }])
      .withColumn('g', gap(col('x')))
      .toRows();
    for (const r of rows) assert.ok((r.g as number) >= 145 && (r.g as number) < 5000, `gap ${r.g}`);
  });

  it('works on worker threads: waits honour retryAfterMs and the cap', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `r${i}.parquet`), i * 5, 5, 5);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    try {
      const df = readParquet(dir).withColumns({ a: throttled(col('id')), b: throttledCapped(col('id')) });
      assert.match(await df.explain(), /worker thread/);
      const rows = await df.toRows();
      assert.equal(rows.length, 10);
      for (const r of rows) {
        assert.ok((r.a as number) >= 115 && (r.a as number) < 5000, `retryAfterMs 120: gap ${r.a}`);
        // retryAfterMs 10 s, capped at 150 ms.
        assert.ok((r.b as number) >= 145 && (r.b as number) < 5000, `capped: gap ${r.b}`);
      }
      assert.equal(df.metrics['opts.throttled']!.retries, 10);
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('parseRetryAfter turns a Retry-After header into milliseconds', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-1', now), undefined);
  });
});

// Issue 8, items 8, 11, 13, 15, 16: UDF timeouts and stall warnings, one registry across copies of
// the package, name clashes, batch return-type contract, and what failed actions leave behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { cls, col, DataType, fromRecords, func, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { getUdf } from '../src/udf.ts';
import { getRunner } from '../src/runner.ts';
import { hangs, hangsBatch, hangsOnce, hangsOnGpu, hangsToNull, spins, StuckUdf } from './fixtures/hang-udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

before(() => setRunner('native', { workers: false }));
after(async () => {
  setRunner('native');
  await shutdownWorkers();
});

/** Captures console.warn while `f` runs. */
async function warnings<T>(f: () => Promise<T>): Promise<{ value: T; warned: string[] }> {
  const warned: string[] = [];
  const orig = console.warn;
  console.warn = (m: unknown) => {
    warned.push(String(m));
  };
  try {
    return { value: await f(), warned };
  } finally {
    console.warn = orig;
  }
}

describe('timeoutMs (item 8)', () => {
  it('is validated when the UDF is defined', () => {
    const f = (x: number): number => x;
    assert.throws(() => func(f, { returnDtype: DataType.float64(), timeoutMs: 0, name: 't.zero' }), /'t.zero'.*timeoutMs/);
    assert.throws(() => func(f, { returnDtype: DataType.float64(), timeoutMs: -5, name: 't.neg' }), /timeoutMs/);
    assert.throws(() => func(f, { returnDtype: DataType.float64(), timeoutMs: '10' as never, name: 't.str' }), /timeoutMs/);
    assert.throws(() => func(f, { returnDtype: DataType.float64(), timeoutMs: Infinity, name: 't.inf' }), /timeoutMs/);
    class C {
      m(x: number): number {
        return x;
      }
    }
    assert.throws(() => cls(C, { name: 't.C', methods: { m: { returnDtype: DataType.float64(), timeoutMs: NaN } } }), /t\.C\.m.*timeoutMs/);
  });

  it('a call that never settles fails with an error naming the UDF, the timeout, the row and the partition', async () => {
    const t0 = Date.now();
    await assert.rejects(
      () =>
        fromRecords([{ x: 1.5 }, { x: 2.5 }])
          .withColumn('y', hangs(col('x')))
          .toRows(),
      (e: Error) => {
        assert.match(e.message, /UDF 'hang\.forever' failed on 2 row\(s\); first at row 0/);
        assert.match(e.message, /timed out after 150 ms \(timeoutMs\)/);
        assert.match(e.message, /partition 0: in-memory batches/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 5000);
  });

  it("onError 'null' turns timed-out rows into nulls; retries retry a timed-out call", async () => {
    const df = fromRecords([{ x: 1.5 }, { x: 2.5 }, { x: 3.5 }]);
    const nulled = df.withColumn('y', hangsToNull(col('x')));
    assert.deepEqual(
      (await nulled.toRows()).map((r) => r.y),
      [null, null, null],
    );
    assert.equal(nulled.metrics['hang.toNull']!.errors, 3);
    const retried = df.withColumn('y', hangsOnce(col('x')));
    assert.deepEqual(
      (await retried.toRows()).map((r) => r.y),
      [15, 25, 35],
    );
    assert.equal(retried.metrics['hang.once']!.retries, 3);
  });

  it('applies per batch call for batch UDFs and per method for cls', async () => {
    const df = fromRecords(Array.from({ length: 6 }, (_, i) => ({ x: i + 0.5 })));
    await assert.rejects(() => df.withColumn('y', hangsBatch(col('x'))).toRows(), /UDF 'hang\.batch'.*rows 0\.\.5.*timed out after 100 ms/);
    const s = new StuckUdf();
    const rows = await df.withColumns({ a: s.slow(col('x')), b: s.fast(col('x')) }).toRows();
    assert.deepEqual(
      rows.map((r) => [r.a, r.b]),
      [0.5, 1.5, 2.5, 3.5, 4.5, 5.5].map((x) => [null, x + 1]),
    );
  });

  it('works on worker threads: the error names the UDF, the timeout and the partition file', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `h${i}.parquet`), i * 10, 10, 10);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    try {
      await assert.rejects(
        () =>
          readParquet(dir)
            .withColumn('y', hangs(col('x')))
            .toRows(),
        (e: Error) => {
          assert.match(e.message, /UDF 'hang\.forever' failed on 10 row\(s\); first at row 0/);
          assert.match(e.message, /timed out after 150 ms/);
          assert.match(e.message, /partition \d: .*h\d\.parquet/);
          return true;
        },
      );
      const df = readParquet(dir).withColumns({ y: hangsToNull(col('x')), z: hangsOnce(col('x')) });
      const rows = await df.toRows();
      assert.ok(rows.every((r) => r.y === null));
      assert.deepEqual(
        rows.map((r) => r.z),
        rows.map((r) => (r.x as number) * 10),
      );
      assert.equal(df.metrics['hang.once']!.retries, 20);
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('works in GPU child processes: a timed-out batch fails naming the UDF, the timeout and the partition', async () => {
    const dir = tempDir();
    await writeSample(join(dir, 'g.parquet'), 0, 10, 10);
    process.env['FANOUT_NUM_GPUS'] = '1';
    setRunner('native', { targetPartitionBytes: 1 });
    try {
      const df = readParquet(dir).withColumn('y', hangsOnGpu(col('x')));
      assert.match(await df.explain(), /GPU processes on 1 device/);
      await assert.rejects(
        () => df.toRows(),
        (e: Error) => {
          assert.match(e.message, /UDF 'hang\.gpu' failed on 10 row\(s\); first at rows 0\.\.9: TimeoutError: UDF 'hang\.gpu' call timed out after 150 ms/);
          assert.match(e.message, /partition 0: .*g\.parquet/);
          return true;
        },
      );
    } finally {
      delete process.env['FANOUT_NUM_GPUS'];
      setRunner('native', { workers: false });
      await shutdownWorkers();
    }
  });

  it('a synchronous call stuck past timeoutMs on a worker thread: the thread is terminated and the action fails', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) await writeSample(join(dir, `s${i}.parquet`), i * 10, 10, 10);
    setRunner('native', { workers: true, parallelism: 2, targetPartitionBytes: 1 });
    try {
      const t0 = Date.now();
      await assert.rejects(
        () =>
          readParquet(dir)
            .withColumn('y', spins(col('x')))
            .toRows(),
        (e: Error) => {
          assert.match(e.message, /partition \d: .*s\d\.parquet/);
          assert.match(e.message, /UDF 'hang\.spin' made a synchronous call that did not return within its timeoutMs \(200 ms\)/);
          return true;
        },
      );
      assert.ok(Date.now() - t0 < 20_000);
      // The pool replaced the terminated threads.
      assert.equal(
        (
          await readParquet(dir)
            .withColumn('y', hangsOnce(col('x')))
            .toRows()
        ).length,
        20,
      );
    } finally {
      setRunner('native', { workers: false });
    }
  });

  it('a script awaiting a never-settling UDF stays alive and warns that it is stalled (no silent exit)', async () => {
    const script = fileURLToPath(new URL('./fixtures/stall-script.ts', import.meta.url));
    const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', script], {
      env: { ...process.env, FANOUT_STALL_WARN_MS: '300', FANOUT_PROGRESS: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    const deadline = Date.now() + 60_000;
    // Two warnings: it keeps warning while the call stays stalled.
    while ((err.match(/has not returned/g) ?? []).length < 2 && child.exitCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const stillRunning = child.exitCode === null;
    child.kill('SIGKILL');
    const { signal } = await exited;
    assert.ok(stillRunning, `the script exited on its own (code ${child.exitCode}); stdout: ${out}; stderr: ${err}`);
    assert.equal(signal, 'SIGKILL');
    assert.match(out, /started/);
    assert.doesNotMatch(out, /finished/);
    assert.match(err, /UDF 'stall\.forever' has not returned for \d+ s \(partition 0: in-memory batches, rows 0\.\.1\)/);
  });
});

describe('two copies of the package (item 11)', () => {
  it('a UDF defined through one copy of udf.ts is resolved and run by the other; metrics and runner settings are shared', async () => {
    const copy = (await import(new URL('../src/udf.ts?copy=2', import.meta.url).href)) as typeof import('../src/udf.ts');
    const execCopy = (await import(new URL('../src/udf-exec.ts?copy=2', import.meta.url).href)) as typeof import('../src/udf-exec.ts');
    const runnerCopy = (await import(new URL('../src/runner.ts?copy=2', import.meta.url).href)) as typeof import('../src/runner.ts');
    assert.notEqual(copy.func, func, 'two module instances');
    const twice = copy.func(
      (x: number) => {
        execCopy.metrics.increment('seen');
        return x * 2;
      },
      { returnDtype: DataType.float64(), name: 'copies.twice' },
    );
    assert.equal(getUdf('copies.twice'), twice.definition);
    assert.equal(copy.getUdf('copies.twice'), twice.definition);
    const df = fromRecords([{ x: 1.5 }, { x: 2 }]).withColumn('y', twice(col('x')));
    assert.deepEqual(
      (await df.toRows()).map((r) => r.y),
      [3, 4],
    );
    assert.equal(df.metrics['copies.twice']!.counters['seen'], 2);
    // The counters' store lives in src/udf/metrics.ts (udf-exec.ts re-exports it): a second copy of that module shares it too.
    const metricsCopy = (await import(new URL('../src/udf/metrics.ts?copy=2', import.meta.url).href)) as typeof import('../src/udf/metrics.ts');
    assert.notEqual(metricsCopy.metrics, execCopy.metrics, 'two instances of the metrics module');
    const counted = copy.func(
      (x: number) => {
        metricsCopy.metrics.increment('seen');
        return x + 1;
      },
      { returnDtype: DataType.float64(), name: 'copies.counted' },
    );
    const dfCounted = fromRecords([{ x: 1.5 }, { x: 2.5 }, { x: 3.5 }]).withColumn('y', counted(col('x')));
    assert.deepEqual(
      (await dfCounted.toRows()).map((r) => r.y),
      [2.5, 3.5, 4.5],
    );
    assert.equal(dfCounted.metrics['copies.counted']!.counters['seen'], 3);
    // A DataType made by another copy of datatypes.ts is accepted as the descriptor it is.
    const typesCopy = (await import(new URL('../src/datatypes.ts?copy=2', import.meta.url).href)) as typeof import('../src/datatypes.ts');
    assert.ok(!(typesCopy.DataType.utf8() instanceof DataType));
    const label = func((x: number) => `#${x}`, { returnDtype: typesCopy.DataType.utf8(), name: 'copies.label' });
    assert.deepEqual(
      (
        await fromRecords([{ x: 1.5 }])
          .withColumn('y', label(col('x')))
          .toRows()
      ).map((r) => r.y),
      ['#1.5'],
    );
    // An expression built by another copy of expressions.ts is an expression here, not a literal.
    const exprCopy = (await import(new URL('../src/expressions.ts?copy=2', import.meta.url).href)) as typeof import('../src/expressions.ts');
    assert.notEqual(exprCopy.col, col);
    const viaCopy = fromRecords([{ x: 1.5 }, { x: 3 }])
      .where(exprCopy.col('x').gt(2))
      .withColumn('z', exprCopy.col('x').mul(2));
    assert.deepEqual(await viaCopy.toRows(), [{ x: 3, z: 6 }]);
    runnerCopy.setRunner('native', { workers: false, batchSize: 123 });
    assert.equal(getRunner().options.batchSize, 123);
    setRunner('native', { workers: false });
    assert.equal(runnerCopy.getRunner().options.batchSize, 65536);
  });
});

describe('UDF name clashes (item 13)', () => {
  it('two definitions with one name in one module are an error naming both sites', () => {
    const double = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'clash.double' });
    assert.throws(
      () => func((x: number) => -x, { returnDtype: DataType.float64(), name: 'clash.double' }),
      (e: Error) => {
        assert.match(e.message, /duplicate UDF name 'clash\.double'/);
        const sites = [...e.message.matchAll(/udf-safety\.test\.ts:(\d+):\d+/g)].map((m) => Number(m[1]));
        assert.ok(new Set(sites).size >= 2, `both definition lines in: ${e.message}`);
        return true;
      },
    );
    assert.equal(getUdf('clash.double'), double.definition, 'the first definition stays');
    class A {
      f(x: number): number {
        return x;
      }
    }
    cls(A, { name: 'clashA', methods: { f: { returnDtype: DataType.float64() } } });
    assert.throws(() => cls(A, { name: 'clashA', methods: { f: { returnDtype: DataType.float64() } } }), /duplicate UDF name 'clashA\.f'/);
  });

  it('a helper that defines UDFs clashes when called twice with one name', () => {
    const make = (k: number) => func((x: number) => x * k, { returnDtype: DataType.float64(), name: 'clash.scaled' });
    make(2);
    assert.throws(() => make(3), /duplicate UDF name 'clash\.scaled'/);
  });

  it('the same definition evaluated again (same module, name and site) replaces itself', async () => {
    const defs = [];
    for (let i = 0; i < 2; i++) defs.push(func((x: number) => x + 1, { returnDtype: DataType.float64(), name: 'clash.again' }));
    assert.equal(getUdf('clash.again'), defs[1]!.definition);
    assert.deepEqual(
      (
        await fromRecords([{ x: 1.5 }])
          .withColumn('y', defs[0]!(col('x')))
          .toRows()
      ).map((r) => r.y),
      [2.5],
    );
  });
});

describe('batch UDF return types (item 15)', () => {
  for (const onError of ['null', 'log'] as const) {
    it(`a batch UDF returning the wrong type is a contract error, also with onError '${onError}'`, async () => {
      // The cast stands for a UDF whose declared type lies (e.g. untyped JS or an `any`).
      const wrong = func.batch((v: arrow.Vector) => Array.from({ length: v.length }, () => 'nope') as unknown as number[], {
        returnDtype: DataType.float64(),
        onError,
        name: `contract.${onError}`,
      });
      const { warned } = await warnings(() =>
        assert.rejects(
          () =>
            fromRecords([{ x: 1.5 }, { x: 2.5 }])
              .withColumn('y', wrong(col('x')))
              .toRows(),
          (e: Error) => {
            assert.equal(e.name, 'UdfError');
            assert.match(e.message, new RegExp(`UDF 'contract\\.${onError}' returned a value that is not float64 for rows 0\\.\\.1`));
            return true;
          },
        ),
      );
      assert.deepEqual(warned, []);
    });
  }
});

describe('failed actions and error reports (item 16)', () => {
  it("a failed action's UDF metrics do not reach the next action", async () => {
    const dir = tempDir();
    await writeSample(join(dir, 'm.parquet'), 0, 20, 10);
    const failing = func(
      (x: number) => {
        if (x > -1) throw new Error('no');
        return x;
      },
      { returnDtype: DataType.float64(), name: 'leak.failing' },
    );
    const fine = func((x: number) => x, { returnDtype: DataType.float64(), name: 'leak.fine' });
    const out = join(tempDir(), 'o');
    await assert.rejects(
      () =>
        readParquet(dir)
          .withColumn('y', failing(col('x')))
          .writeParquet(out),
      /leak\.failing/,
    );
    assert.ok(!existsSync(join(out, '_SUCCESS')));
    const next = readParquet(dir).withColumn('y', fine(col('x')));
    await next.toRows();
    assert.deepEqual(Object.keys(next.metrics), ['leak.fine']);
    // iterPartitions collects no metrics: its counts must not wait for the next action either.
    for await (const p of readParquet(dir)
      .withColumn('y', fine(col('x')))
      .iterPartitions())
      void p;
    const after = readParquet(dir).withColumn('z', fine(col('x')));
    await after.toRows();
    assert.equal(after.metrics['leak.fine']!.rowsIn, 20);
  });

  it('"first at row N" names the first failing row, not the first whose retries ended', async () => {
    // Row 0 fails slowly, row 3 fast: row 3's retries end first.
    const slowFail = func(
      async (x: number) => {
        await new Promise((r) => setTimeout(r, x === 0.5 ? 80 : 1));
        if (x === 0.5 || x === 3.5) throw new Error(`bad ${x}`);
        return x;
      },
      { returnDtype: DataType.float64(), maxRetries: 1, name: 'order.slowFail' },
    );
    await assert.rejects(
      () =>
        fromRecords([0.5, 1.5, 2.5, 3.5].map((x) => ({ x })))
          .withColumn('y', slowFail(col('x')))
          .toRows(),
      /failed on 2 row\(s\); first at row 0: Error: bad 0\.5/,
    );
  });

  it('in-process errors name the partition and file, as worker errors do', async () => {
    const dir = tempDir();
    await writeSample(join(dir, 'p.parquet'), 0, 20, 10);
    const boom = func(
      (x: number) => {
        if (x >= 0) throw new Error('kaput');
        return x;
      },
      { returnDtype: DataType.float64(), name: 'where.boom' },
    );
    const file = join(dir, 'p.parquet').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await assert.rejects(
      () =>
        readParquet(dir)
          .withColumn('y', boom(col('x')))
          .toRows(),
      (e: Error) => {
        assert.equal(e.name, 'UdfError');
        assert.match(e.message, new RegExp(`UDF 'where\\.boom' failed on 10 row\\(s\\); first at row 0: Error: kaput \\(partition 0: ${file}`));
        return true;
      },
    );
    await assert.rejects(
      () =>
        readParquet(dir)
          .withColumn('y', boom(col('x')))
          .writeParquet(join(tempDir(), 'w')),
      new RegExp(`kaput \\(partition 0: ${file}`),
    );
  });
});

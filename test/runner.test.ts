// The runner seam: DataFrame talks to a Runner object only (a third runner is one object), src/
// has no import cycles, and actions honour an AbortSignal (reads and UDF calls stop, writes commit nothing).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import ts from 'typescript';
import { col, fromRecords, lit, readParquet, setRunner } from 'fanout';
import { getRunner, type ActionContext, type DatasetSinkSpec, type ExplainRequest, type ResultPartition, type Runner } from '../src/runner.ts';
import type { SchemaJSON } from '../src/datatypes.ts';
import { runPartition } from '../src/executor.ts';
import { optimize } from '../src/optimizer.ts';
import { buildPhysicalPlan, type PartitionTask } from '../src/physical.ts';
import type { PlanNode } from '../src/plan.ts';
import { slowLogged } from './fixtures/abort-udfs.ts';
import { tempDir, writeSample } from './helpers.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Import edges among src/ files (static imports and re-exports; `import type` included: tsc resolves those too). */
function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) graph.set(p, []);
    }
  };
  walk(dir);
  for (const [file, deps] of graph) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, false);
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) continue;
      const target = resolve(dirname(file), ref.fileName);
      if (graph.has(target)) deps.push(target);
    }
  }
  return graph;
}

/** Every cycle's path (as relative names), found by depth-first search. */
function cycles(graph: Map<string, string[]>): string[][] {
  const out: string[][] = [];
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'active');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 'active') out.push([...stack.slice(stack.indexOf(d)), d].map((p) => relative(root, p)));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return out;
}

describe('runner seam', () => {
  it('src/ has no import cycles (e.g. aws/run -> dataframe -> runners/aws -> aws/run)', () => {
    const graph = importGraph(join(root, 'src'));
    assert.ok(graph.size > 20, `found the sources (${graph.size} files)`);
    // The detector finds a cycle when there is one.
    const probe = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
    ]);
    assert.equal(cycles(probe).length, 1);
    assert.deepEqual(cycles(graph), []);
  });

  it('dataframe.ts names no runner', () => {
    const text = readFileSync(join(root, 'src/dataframe.ts'), 'utf8');
    assert.doesNotMatch(text, /'aws'|'native'|runners\/|getRunner\(\)\.name/);
  });

  it('a third runner is one object: DataFrame calls its methods with the plan', async () => {
    const calls: string[] = [];
    const inner = getRunner();
    // Counts calls and delegates to the embedded runner.
    const counting: Runner = {
      name: 'counting',
      options: inner.options,
      stream(plan: PlanNode, ctx: ActionContext) {
        calls.push(`stream:${plan.type}`);
        return inner.stream(plan, ctx);
      },
      partitions(plan: PlanNode, ctx: ActionContext): AsyncIterable<ResultPartition> {
        calls.push(`partitions:${plan.type}`);
        return inner.partitions(plan, ctx);
      },
      write(plan: PlanNode, sink: DatasetSinkSpec, ctx: ActionContext) {
        calls.push(`write:${sink.format}`);
        return inner.write(plan, sink, ctx);
      },
      describe(plan: PlanNode, req?: ExplainRequest) {
        calls.push('describe');
        return `counted\n${inner.describe(plan, req)}`;
      },
    };
    setRunner(counting);
    try {
      const df = fromRecords([{ a: 1 }, { a: 2 }, { a: 3 }]).withColumn('b', col('a').mul(2));
      assert.deepEqual(
        (await df.toRows()).map((r) => Number(r.b)),
        [2, 4, 6],
      );
      let parts = 0;
      for await (const p of df.iterPartitions()) parts += await p.count();
      assert.equal(parts, 3);
      const out = join(tempDir(), 'out');
      await df.writeCsv(out);
      assert.match(await df.explain(), /== Physical Plan ==\ncounted\n/);
      assert.deepEqual(
        calls.filter((c) => c !== 'stream:in_memory'),
        ['stream:project', 'partitions:project', 'write:csv', 'describe'],
      );
    } finally {
      setRunner('native', { workers: false });
    }
    assert.throws(() => setRunner({ name: 'half' } as unknown as Runner), /needs options and the methods stream, partitions, write and describe/);
  });
});

let input: string;
before(async () => {
  input = join(tempDir(), 'in.parquet');
  await writeSample(input, 0, 20_000, 20_000);
});
after(() => setRunner('native', { workers: false }));

const lines = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(f: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !f(); i++) await sleep(10);
  assert.ok(f(), `timed out waiting for ${what}`);
}

describe('abort (in-process)', () => {
  it('an aborted action stops calling UDFs and rejects with an AbortError naming the partition', async () => {
    setRunner('native', { workers: false, batchSize: 100 });
    const log = join(tempDir(), 'calls.log');
    writeFileSync(log, '');
    const ac = new AbortController();
    const pending = readParquet(input)
      .withColumn('y', slowLogged(col('x'), lit(log)))
      .toRows({ signal: ac.signal });
    await until(() => lines(log) >= 3, 'three UDF calls');
    ac.abort();
    const atAbort = lines(log);
    await assert.rejects(pending, (e: Error) => e.name === 'AbortError' && /partition 0: .*in\.parquet/.test(e.message));
    await sleep(200);
    // At most the call already in flight when the signal fired; 200 batches would follow unaborted.
    assert.ok(lines(log) <= atAbort + 1, `calls after the abort: ${lines(log) - atAbort}`);
  });

  it('an already aborted signal runs nothing', async () => {
    setRunner('native', { workers: false, batchSize: 100 });
    const log = join(tempDir(), 'calls.log');
    await assert.rejects(
      readParquet(input)
        .withColumn('y', slowLogged(col('x'), lit(log)))
        .count({ signal: AbortSignal.abort() }),
      { name: 'AbortError' },
    );
    assert.equal(lines(log), 0);
  });

  it('an aborted write commits nothing', async () => {
    setRunner('native', { workers: false, batchSize: 100, targetPartitionBytes: 1 });
    const log = join(tempDir(), 'calls.log');
    writeFileSync(log, '');
    const out = join(tempDir(), 'out');
    const ac = new AbortController();
    const pending = readParquet(input)
      .withColumn('y', slowLogged(col('x'), lit(log)))
      .writeParquet(out, { signal: ac.signal });
    await until(() => lines(log) >= 3, 'three UDF calls');
    ac.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    assert.equal(existsSync(out), false, 'no output directory (begin() made it, abort removed it)');
  });
});

describe('partition driver', () => {
  const task = (): PartitionTask => {
    const physical = buildPhysicalPlan(optimize(readParquet(input).withColumn('y', slowLogged(col('x'), lit(join(tempDir(), 'calls.log')))).plan), {
      targetPartitionBytes: 1,
    });
    return physical.partitions[0]!;
  };

  it('each run counts into its own forked runtime and reports rows, bytes and time with the result', async () => {
    const t = task();
    const stream = runPartition(t, { batchSize: 5000 });
    let rows = 0;
    for await (const b of stream) rows += b.numRows;
    const o = stream.outcome();
    assert.equal(o.rows, rows);
    assert.equal(o.rows, 20_000);
    assert.equal(o.metrics['abort.slowLogged']!.calls, 4, 'four 5000-row batches');
    assert.ok(o.elapsedMs > 0);
    // A second run of the same task starts from zero: metrics are never shared between runs.
    const file = join(tempDir(), 'p.parquet');
    const r = await runPartition(t, { batchSize: 10_000 }, { kind: 'file', format: 'parquet', path: file, schema: planSchemaOf(t) });
    assert.equal(r.metrics['abort.slowLogged']!.calls, 2);
    assert.equal(r.path, file);
    assert.ok(r.bytes > 0 && existsSync(file));
  });

  it('the shard sink writes one Arrow IPC stream that a shard source reads back', async () => {
    const t = task();
    const uploaded = new Map<string, Uint8Array>();
    const store = {
      async upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
        const chunks: Uint8Array[] = [];
        for await (const c of body) chunks.push(c);
        const all = Buffer.concat(chunks);
        uploaded.set(key, all);
        return all.length;
      },
    };
    const r = await runPartition(t, { batchSize: 10_000 }, { kind: 'shard', store, key: 'stage-0/part-0.arrow', schema: planSchemaOf(t) });
    assert.equal(r.bytes, uploaded.get('stage-0/part-0.arrow')!.length);
    const shards = (key: string) => arrow.RecordBatchReader.from(uploaded.get(key)!) as unknown as AsyncIterable<arrow.RecordBatch>;
    const back = runPartition({ index: 0, source: { kind: 'shard', key: 'stage-0/part-0.arrow' }, ops: [] }, { shards });
    let rows = 0;
    for await (const b of back) rows += b.numRows;
    assert.equal(rows, 20_000);
  });

  it('the ipc sink posts one batch per credit and stops quietly when the credits stop', async () => {
    const posted: number[] = [];
    let credits = 2;
    const r = await runPartition(
      task(),
      { batchSize: 1000 },
      {
        kind: 'ipc',
        credit: async () => credits-- > 0,
        post: (b) => {
          posted.push(b.numRows);
        },
      },
    );
    assert.deepEqual(posted, [1000, 1000]);
    // The third batch was computed (it waited for a credit), no further one.
    assert.equal(r.metrics['abort.slowLogged']!.calls, 3);
  });
});

function planSchemaOf(t: PartitionTask): SchemaJSON {
  const last = [...t.ops].reverse().find((o) => o.type === 'project');
  assert.ok(last && last.type === 'project');
  return last.schema;
}

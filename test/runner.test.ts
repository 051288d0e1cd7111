// The runner seam: DataFrame talks to a Runner object only (a third runner is one object), src/
// has no import cycles, and actions honour an AbortSignal (reads and UDF calls stop, writes commit nothing).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import ts from 'typescript';
import { col, fromRecords, lit, readParquet, setRunner } from 'fanout';
import { getRunner, type ActionContext, type DatasetSinkSpec, type ExplainRequest, type ResultPartition, type Runner } from '../src/runner.ts';
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
    const probe = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]);
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
      stream(plan: PlanNode, ctx: ActionContext) { calls.push(`stream:${plan.type}`); return inner.stream(plan, ctx); },
      partitions(plan: PlanNode, ctx: ActionContext): AsyncIterable<ResultPartition> { calls.push(`partitions:${plan.type}`); return inner.partitions(plan, ctx); },
      write(plan: PlanNode, sink: DatasetSinkSpec, ctx: ActionContext) { calls.push(`write:${sink.format}`); return inner.write(plan, sink, ctx); },
      describe(plan: PlanNode, req?: ExplainRequest) { calls.push('describe'); return `counted\n${inner.describe(plan, req)}`; },
    };
    setRunner(counting);
    try {
      const df = fromRecords([{ a: 1 }, { a: 2 }, { a: 3 }]).withColumn('b', col('a').mul(2));
      assert.deepEqual((await df.toRows()).map((r) => Number(r.b)), [2, 4, 6]);
      let parts = 0;
      for await (const p of df.iterPartitions()) parts += (await p.count());
      assert.equal(parts, 3);
      const out = join(tempDir(), 'out');
      await df.writeCsv(out);
      assert.match(await df.explain(), /== Physical Plan ==\ncounted\n/);
      assert.deepEqual(calls.filter((c) => c !== 'stream:in_memory'), ['stream:project', 'partitions:project', 'write:csv', 'describe']);
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
    const pending = readParquet(input).withColumn('y', slowLogged(col('x'), lit(log))).toRows({ signal: ac.signal });
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
    await assert.rejects(readParquet(input).withColumn('y', slowLogged(col('x'), lit(log))).count({ signal: AbortSignal.abort() }), { name: 'AbortError' });
    assert.equal(lines(log), 0);
  });

  it('an aborted write commits nothing', async () => {
    setRunner('native', { workers: false, batchSize: 100, targetPartitionBytes: 1 });
    const log = join(tempDir(), 'calls.log');
    writeFileSync(log, '');
    const out = join(tempDir(), 'out');
    const ac = new AbortController();
    const pending = readParquet(input).withColumn('y', slowLogged(col('x'), lit(log))).writeParquet(out, { signal: ac.signal });
    await until(() => lines(log) >= 3, 'three UDF calls');
    ac.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    assert.equal(existsSync(out), false, 'no output directory (begin() made it, abort removed it)');
  });
});

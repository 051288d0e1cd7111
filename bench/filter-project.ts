// Filter + project A/B (issue 12's peers case): the fused operator and compiled float64 loops
// (`evalTuning` on) against the general per-kernel path (off), alternated in one process; CPU time
// (user + system, all threads) and wall medians. BENCH_ROUNDS rounds; BENCH_WORKERS=1 runs on 2
// threads, where the switch reaches only this (the consuming) thread, not the worker's modules.
// `tsx --conditions=development bench/filter-project.ts`
import { join } from 'node:path';
import { loadavg } from 'node:os';
import type * as arrow from 'apache-arrow';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { warmParquet } from '../src/io/parquet/index.ts';
import { evalTuning, FilterProject, filterBatch, projectBatch } from '../src/eval.ts';
import { DataType, Field, Schema } from '../src/datatypes.ts';

const file = process.env['BENCH_FILE'] ?? join(import.meta.dirname, 'data', 'bench-2000000.parquet');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 9);
const set = (on: boolean): void => {
  evalTuning.fusedArithmetic = on;
  evalTuning.fusedFilterProject = on;
};

async function drain(df: { stream(): AsyncIterable<{ numRows: number }> }): Promise<number> {
  let n = 0;
  for await (const b of df.stream()) n += b.numRows;
  return n;
}

await warmParquet();
setRunner('native', process.env['BENCH_WORKERS'] ? { workers: true, parallelism: 2 } : { workers: false });
const pred = col('x').gt(0.5);
const y = col('x').mul(2).add(1).alias('y');
// Kernels alone: the decoded id, x batches held in memory.
const batches: arrow.RecordBatch[] = [];
for await (const b of readParquet(file).select('id', 'x').stream()) batches.push(b);
const exprs = [col('id').node, y.node];
const outSchema = new Schema([new Field('id', DataType.int64(), true), new Field('y', DataType.float64(), true)]);
let sink: unknown[] = [];
const cases: [string, () => Promise<unknown>][] = [
  ['scan id, x', () => drain(readParquet(file).select('id', 'x'))],
  ['filter only', () => drain(readParquet(file).where(pred).select('id', 'x'))],
  ['project only', () => drain(readParquet(file).select('id', y))],
  ['filter + project', () => drain(readParquet(file).where(pred).select('id', y))],
  [
    'kernels: filter + project',
    async () => {
      sink = [];
      if (!evalTuning.fusedFilterProject) for (const b of batches) sink.push(projectBatch(filterBatch(b, pred.node), exprs, outSchema));
      else {
        const fp = new FilterProject(pred.node, { exprs, schema: outSchema });
        for (const b of batches) sink.push(fp.apply(b));
      }
    },
  ],
];
const samples = new Map<string, [number[], number[]]>();
for (const on of [false, true]) {
  set(on);
  for (const [, fn] of cases) await fn(); // warm-up
}
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, fn] of cases) {
    for (const on of r % 2 ? [true, false] : [false, true]) {
      set(on);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      const key = `${name}\t${on ? 'fused' : 'general'}`;
      if (!samples.has(key)) samples.set(key, [[], []]);
      samples.get(key)![0].push((c.user + c.system) / 1000);
      samples.get(key)![1].push(wall);
    }
  }
}
set(true);
const mid = (a: number[]): number => a.sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
for (const [key, [cpu, wall]] of samples) console.log(`${key}\tcpu ${mid(cpu).toFixed(1)}\twall ${mid(wall).toFixed(1)}`);
console.log(`load average ${loadavg()[0]!.toFixed(1)}, ${ROUNDS} rounds`);
await shutdownWorkers();

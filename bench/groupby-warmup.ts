// How the 8-key groupBy (bench/relational.ts's first case) warms up in a fresh process: wall and CPU
// per thread of each run, run 0 being the first query of the process (it starts the worker pool).
// `npx tsx --conditions=development bench/groupby-warmup.ts`; BENCH_RUNS (default 5);
// BENCH_PREMAIN=k first runs k one-thread queries (warming this thread alone); BENCH_PREWORKER=k first
// runs k queries with every partition on the workers (warming them alone). Alternate fresh processes
// of the variants (the load falls on all alike) and compare per-thread CPU medians, not wall times.
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { threadCpus } from './thread-cpu.ts';
import { col, readParquet, setRunner } from 'fanout';
import { aggregateTuning } from '../src/runners/embedded.ts';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const dataDir = process.env['BENCH_DATA_DIR'] ?? join(import.meta.dirname, 'data');
const facts = join(dataDir, `rel-facts-v2-${Number(process.env['BENCH_ROWS'] ?? 2_000_000)}.parquet`);
const query = () => readParquet(facts).groupBy('k8').agg(col('v').sum()).toRows();
const main = String(process.pid);

const premain = Number(process.env['BENCH_PREMAIN'] ?? 0);
if (premain > 0) {
  setRunner('native', { parallelism: 1, workers: false });
  for (let i = 0; i < premain; i++) await query();
}
// Node 20 names every thread "node": threads that exist now are V8's platform threads (background
// compiles and GC), libuv's pool and Node's own; those started later are the pool's worker threads
// (and their loader-hook threads under tsx).
const early = threadCpus();
setRunner('native', {});
const preworker = Number(process.env['BENCH_PREWORKER'] ?? 0);
if (preworker > 0) {
  aggregateTuning.sharedPhaseOne = false;
  for (let i = 0; i < preworker; i++) await query();
  aggregateTuning.sharedPhaseOne = true;
}
const lines: string[] = [];
for (let r = 0; r < RUNS; r++) {
  const a = threadCpus();
  const t0 = performance.now();
  await query();
  const wall = performance.now() - t0;
  const b = threadCpus();
  let self = 0;
  let background = 0;
  const workers: number[] = [];
  for (const [tid, cpu] of b) {
    const d = cpu - (a.get(tid) ?? 0);
    if (tid === main) self = d;
    else if (early.has(tid)) background += d;
    else if (d >= 1) workers.push(d);
  }
  lines.push(
    `run ${r}: wall ${wall.toFixed(1)} ms; CPU: this thread ${self.toFixed(0)}, workers [${workers.map((d) => d.toFixed(0)).join(', ')}], V8/libuv threads ${background.toFixed(0)}`,
  );
}
console.log(`load ${loadavg()[0].toFixed(2)}; premain ${premain}, preworker ${preworker}`);
for (const l of lines) console.log(l);
process.exit(0);

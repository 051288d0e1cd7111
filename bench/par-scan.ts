// Scans on 2 threads, in-process A/B: every partition on 2 workers ("workers") against this thread
// decoding every other partition beside one worker ("shared", the default), and one thread. Variants
// alternate within each round, so the machine's other load falls on all alike. Prints the medians of
// wall, process CPU (all threads), this thread's CPU and the busiest pool thread's, in ms, and the
// load average. The UDF cases (`udf`: the peers' batch UDF x*2+1, `row`: its row-wise one) share
// since session 5 (plain-function UDFs run in this thread for its partitions).
// `tsx --conditions=development bench/par-scan.ts` (BENCH_ROUNDS, BENCH_CASES='all,idx,fp,pipe,udf,row').
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { scanTuning } from '../src/runners/embedded.ts';
import { batchUdf, rowUdf } from './peers/udfs.ts';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 2_000_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const file = process.env['BENCH_FILE'] ?? join(import.meta.dirname, 'data', `bench-${ROWS}.parquet`);

/** This thread's CPU ms (Linux: /proc/thread-self/schedstat; elsewhere the process's). */
function threadCpu(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  }
}
/** CPU ms of each thread of this process, by thread id (Linux; empty elsewhere). */
function taskCpu(): Map<string, number> {
  const m = new Map<string, number>();
  try {
    for (const t of readdirSync('/proc/self/task')) {
      try {
        m.set(t, Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
      } catch {
        // the thread ended
      }
    }
  } catch {
    // not Linux
  }
  return m;
}
async function drain(df: { stream(): AsyncIterable<{ numRows: number }> }): Promise<number> {
  let n = 0;
  for await (const b of df.stream()) n += b.numRows;
  return n;
}
const filtered = () => readParquet(file).where(col('x').gt(0.5)).select('id', col('x').mul(2).add(1).alias('y'));
const cases: Record<string, () => Promise<unknown>> = {
  all: () => readParquet(file).toArrow(),
  idx: () => readParquet(file).select('id', 'x').toArrow(),
  fp: () => filtered().toArrow(),
  pipe: () => drain(filtered()),
  udf: () =>
    readParquet(file)
      .select(batchUdf(col('x')).alias('y'))
      .toArrow(),
  row: () =>
    readParquet(file)
      .select(rowUdf(col('x')).alias('y'))
      .toArrow(),
};
const variants: Record<string, () => void> = {
  workers: () => {
    scanTuning.sharedDecoding = false;
    setRunner('native', { workers: true, parallelism: 2 });
  },
  shared: () => {
    scanTuning.sharedDecoding = true;
    setRunner('native', { workers: true, parallelism: 2 });
  },
  '1 thread': () => setRunner('native', { workers: false }),
};
const only = process.env['BENCH_CASES']?.split(',') ?? Object.keys(cases);
for (const c of only) if (!cases[c]) throw new Error(`unknown case '${c}' in BENCH_CASES (cases: ${Object.keys(cases).join(', ')})`);

// Warm-up: every variant runs every case twice (threads started, parquet-wasm compiled and tiered up).
const before = new Set(taskCpu().keys());
for (const v of Object.values(variants)) {
  v();
  for (const c of only) for (let k = 0; k < 2; k++) await cases[c]!();
}
// Threads started since: the pool's workers (V8's and libuv's threads existed before).
const pool = new Set([...taskCpu().keys()].filter((t) => !before.has(t)));
const samples = new Map<string, [number, number, number, number][]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const c of only) {
    for (const [name, v] of Object.entries(variants)) {
      v();
      const m0 = threadCpu();
      const p0 = taskCpu();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await cases[c]!();
      const wall = performance.now() - t0;
      const cpu = process.cpuUsage(c0);
      let busiest = 0;
      for (const [t, ms] of taskCpu()) if (pool.has(t)) busiest = Math.max(busiest, ms - (p0.get(t) ?? 0));
      const key = `${c} ${name}`;
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key)!.push([wall, (cpu.user + cpu.system) / 1000, threadCpu() - m0, busiest]);
    }
  }
}
scanTuning.sharedDecoding = true;
const median = (a: number[]): number => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
console.log(
  `${ROUNDS} rounds, medians in ms; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
for (const [key, s] of samples) {
  const [wall, cpu, main, worker] = [0, 1, 2, 3].map((k) => median(s.map((x) => x[k]!)));
  console.log(
    `${key.padEnd(18)} wall ${wall!.toFixed(0).padStart(5)}  cpu ${cpu!.toFixed(0).padStart(5)}  this thread ${main!.toFixed(0).padStart(5)}  busiest worker ${worker!.toFixed(0).padStart(5)}`,
  );
}
await shutdownWorkers();

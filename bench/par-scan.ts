// Scans on 2 threads, in-process A/B: every partition on 2 workers ("workers") against this thread
// decoding every other partition beside one worker ("shared", the default), and one thread. Variants
// alternate within each round, so the machine's other load falls on all alike. Prints the medians of
// wall, process CPU (all threads) and this thread's CPU, in ms, and the load average.
// `tsx --conditions=development bench/par-scan.ts` (BENCH_ROUNDS, BENCH_CASES='all,idx,fp,pipe').
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { scanTuning } from '../src/runners/embedded.ts';

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
for (const v of Object.values(variants)) {
  v();
  for (const c of only) for (let k = 0; k < 2; k++) await cases[c]!();
}
const samples = new Map<string, [number, number, number][]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const c of only) {
    for (const [name, v] of Object.entries(variants)) {
      v();
      const m0 = threadCpu();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await cases[c]!();
      const wall = performance.now() - t0;
      const cpu = process.cpuUsage(c0);
      const key = `${c} ${name}`;
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key)!.push([wall, (cpu.user + cpu.system) / 1000, threadCpu() - m0]);
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
  const [wall, cpu, main] = [0, 1, 2].map((k) => median(s.map((x) => x[k]!)));
  console.log(`${key.padEnd(18)} wall ${wall!.toFixed(0).padStart(5)}  cpu ${cpu!.toFixed(0).padStart(5)}  this thread ${main!.toFixed(0).padStart(5)}`);
}
await shutdownWorkers();

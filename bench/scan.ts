// Scan-only bench (item 1 of issue 12): alternated before/after runs compare one tree against another.
// `tsx --conditions=development bench/scan.ts` prints one line per case: median wall and CPU ms of
// BENCH_REPEAT runs after a warm-up (BENCH_CASES='scan all;limit 10' picks cases).
import { join } from 'node:path';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { warmParquet } from '../src/io/parquet/index.ts';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 2_000_000);
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 5);
const file = process.env['BENCH_FILE'] ?? join(import.meta.dirname, 'data', `bench-${ROWS}.parquet`);

async function drain(df: { stream(): AsyncIterable<{ numRows: number }> }): Promise<number> {
  let n = 0;
  for await (const b of df.stream()) n += b.numRows;
  return n;
}
/** Median wall and CPU (user + system, all threads) ms: on a shared machine CPU time is the steadier. */
async function median(fn: () => Promise<unknown>): Promise<[number, number]> {
  await fn(); // warm-up
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  const mid = (a: number[]): number => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  return [mid(wall), mid(cpu)];
}

await warmParquet();
const cases: [string, () => Promise<unknown>, { workers: boolean; parallelism?: number }?][] = [
  ['scan all', () => drain(readParquet(file))],
  ['scan id,x', () => drain(readParquet(file).select('id', 'x'))],
  ['filter+project', () => drain(readParquet(file).where(col('x').gt(0.5)).select('id', col('x').mul(2).add(1).alias('y')))],
  ['limit 10', () => drain(readParquet(file).limit(10))],
  // Worker threads: every result batch crosses to the main thread.
  ['2 workers: scan all', () => drain(readParquet(file)), { workers: true, parallelism: 2 }],
];
const only = process.env['BENCH_CASES']?.split(';');
for (const [name, fn, runner] of cases) {
  if (only && !only.includes(name)) continue;
  setRunner('native', runner ?? { workers: false });
  const [wall, cpu] = await median(fn);
  console.log(`${name}\twall ${wall.toFixed(1)}\tcpu ${cpu.toFixed(1)}`);
}
await shutdownWorkers();

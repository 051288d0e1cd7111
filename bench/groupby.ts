// groupBy-sum over 8 keys (bench/relational.ts's first case), in-process A/B of where phase one runs:
// every partition on 2 workers ("workers") against this thread running every other partition's phase
// one beside one worker ("shared", the default), optionally with smaller partitions
// (BENCH_PARTITION_MIB), or with phase one over copies of the decoded columns instead of borrowed
// views ("copies"). Variants alternate within each round, so the machine's other load falls on
// all alike. Prints medians of wall, process CPU, this thread's CPU and the busiest other thread's
// CPU (a worker), in ms, and the load average.
// `tsx --conditions=development bench/groupby.ts` (BENCH_ROUNDS, BENCH_WARMUP, BENCH_VARIANTS).
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { threadCpus } from './thread-cpu.ts';
import { col, readParquet, setRunner } from 'fanout';
import { aggregateTuning } from '../src/runners/embedded.ts';
import { phaseOneTuning } from '../src/aggregate/operator.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 15);
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 1);
const dataDir = process.env['BENCH_DATA_DIR'] ?? join(import.meta.dirname, 'data');
const facts = join(dataDir, `rel-facts-v2-${Number(process.env['BENCH_ROWS'] ?? 2_000_000)}.parquet`);
const smallMiB = Number(process.env['BENCH_PARTITION_MIB'] ?? 2);

const query = () => readParquet(facts).groupBy('k8').agg(col('v').sum());
const variants: Record<string, () => void> = {
  workers: () => {
    aggregateTuning.sharedPhaseOne = false;
    phaseOneTuning.borrowViews = true;
    setRunner('native', {});
  },
  shared: () => {
    aggregateTuning.sharedPhaseOne = true;
    phaseOneTuning.borrowViews = true;
    setRunner('native', {});
  },
  // Phase one over copies of the decoded columns (this thread's partitions only: a worker keeps its own default).
  copies: () => {
    aggregateTuning.sharedPhaseOne = true;
    phaseOneTuning.borrowViews = false;
    setRunner('native', {});
  },
  [`shared ${smallMiB} MiB`]: () => {
    aggregateTuning.sharedPhaseOne = true;
    phaseOneTuning.borrowViews = true;
    setRunner('native', { targetPartitionBytes: smallMiB << 20 });
  },
};
const only = process.env['BENCH_VARIANTS']?.split(',') ?? Object.keys(variants);
for (const v of only) if (!variants[v]) throw new Error(`unknown variant '${v}' in BENCH_VARIANTS (variants: ${Object.keys(variants).join(', ')})`);

// Each variant's rows must not change across runs (other partitions sum in another order: their
// float sums may differ in the last bits from another variant's).
const expected = new Map<string, string>();
for (const v of only) {
  variants[v]!();
  console.log(`${v}: ${/Stage 0: (.*)/.exec(await query().explain())?.[1]}`);
  expected.set(v, JSON.stringify(await query().toRows()));
  for (let k = 1; k < WARMUP; k++) await query().toRows();
}
if (expected.has('workers') && expected.has('shared') && expected.get('workers') !== expected.get('shared'))
  throw new Error('shared phase one gave other rows');
const main = String(process.pid);
const samples = new Map<string, number[][]>();
for (let r = 0; r < ROUNDS; r++) {
  // ABBA: odd rounds run the variants in reverse order.
  for (const v of r % 2 ? [...only].reverse() : only) {
    variants[v]!();
    const t0s = threadCpus();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const rows = await query().toRows();
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const t1s = threadCpus();
    if (JSON.stringify(rows) !== expected.get(v)) throw new Error(`variant ${v} gave other rows`);
    let other = 0;
    for (const [tid, t] of t1s) if (tid !== main) other = Math.max(other, t - (t0s.get(tid) ?? 0));
    if (!samples.has(v)) samples.set(v, []);
    samples.get(v)!.push([wall, (cpu.user + cpu.system) / 1000, t1s.get(main)! - t0s.get(main)!, other]);
  }
}
aggregateTuning.sharedPhaseOne = true;
phaseOneTuning.borrowViews = true;
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
console.log(
  `${ROUNDS} rounds after ${WARMUP} warm-up(s), medians in ms; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log('| variant | wall | process CPU | this thread | busiest other thread |');
console.log('|---|---|---|---|---|');
for (const [v, s] of samples) {
  const col = (i: number): string => median(s.map((x) => x[i]!)).toFixed(1);
  console.log(`| ${v} | ${col(0)} | ${col(1)} | ${col(2)} | ${col(3)} |`);
}
// Paired by round: how often each variant took less process CPU than the first one.
const [first, ...rest] = [...samples.keys()];
for (const v of rest) {
  const a = samples.get(first!)!;
  const b = samples.get(v)!;
  const lower = b.filter((x, r) => x[1]! < a[r]![1]!).length;
  console.log(`${v}: less process CPU than ${first} in ${lower} of ${b.length} rounds`);
}
process.exit(0);

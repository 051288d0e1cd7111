// `npm run bench` (relational part): groupBy-sum over 8 keys and over 1M keys, sort, and a 2M x 100k
// join, each timed against DuckDB on the same Parquet files in the same process and reported as a
// ratio; then the peak RSS of a groupBy run with a memory budget below the data size (it spills).
// Writes bench/relational-report.md. Inputs are generated once into bench/data/.
import { DuckDBInstance } from '@duckdb/node-api';
import * as arrow from 'apache-arrow';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { col, readParquet, relationalStats, resetRelationalStats, setRunner, type DataFrame } from 'fanout';
import { writeParquetFile } from '../src/io/parquet/index.ts';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 2_000_000);
const DIM = 100_000;
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);
// Untimed runs of each case first. The default (1) leaves V8 still compiling parquet-wasm's hot functions
// with TurboFan (dynamic tiering, on background threads that take a core from the decoding threads) in the
// first timed runs; after STEADY_WARMUP runs in all, a second measurement gives the steady state
// (docs/performance.md, "Session 7"). BENCH_WARMUP sets the first regime's warm-up runs.
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 1);
const STEADY_WARMUP = 8;
// BENCH_DATA_DIR: generate and read the inputs elsewhere (bench/data is shared between checkouts).
const dataDir = process.env['BENCH_DATA_DIR'] ?? join(import.meta.dirname, 'data');
// v2: keys from the generator's high bits (v1 multiplied in doubles, lost low bits: its "8 keys" had 3).
const facts = join(dataDir, `rel-facts-v2-${ROWS}.parquet`);
const dims = join(dataDir, `rel-dims-${DIM}.parquet`);

async function ensureData(): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(facts)) {
    function* batches(): Generator<arrow.RecordBatch> {
      let s = 7;
      for (let start = 0; start < ROWS; start += 65_536) {
        const n = Math.min(65_536, ROWS - start);
        const k8 = new Int32Array(n);
        const k1m = new Int32Array(n);
        const d = new Int32Array(n);
        const v = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          // 32-bit LCG in integer arithmetic; its low bits have short periods, so draw from the high ones.
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          const r = s >>> 8;
          k8[i] = r % 8;
          k1m[i] = (start + i) % 1_000_000;
          d[i] = r % (2 * DIM);
          v[i] = (r % 100_000) / 100;
        }
        yield new arrow.Table({ k8: arrow.makeVector(k8), k1m: arrow.makeVector(k1m), d: arrow.makeVector(d), v: arrow.makeVector(v) }).batches[0]!;
      }
    }
    await writeParquetFile(facts, batches(), { rowGroupSize: 250_000 });
  }
  if (!existsSync(dims)) {
    const id = Int32Array.from({ length: DIM }, (_, i) => i * 2);
    const w = Float64Array.from({ length: DIM }, (_, i) => i / 7);
    await writeParquetFile(dims, [new arrow.Table({ d: arrow.makeVector(id), w: arrow.makeVector(w) }).batches[0]!], {});
  }
}

/** Median wall and CPU ms (CPU: the whole process, worker threads and DuckDB's threads included). */
async function time(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
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
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { wall: median(wall), cpu: median(cpu) };
}

async function drain(df: DataFrame): Promise<number> {
  let n = 0;
  for await (const b of df.stream()) n += b.numRows;
  return n;
}

await ensureData();
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const F = `read_parquet('${facts}')`;
const D = `read_parquet('${dims}')`;
const duck = async (sql: string): Promise<void> => {
  await con.run(sql);
};

// Unbounded budget for the timed cases (spilling is measured separately below).
setRunner('native', {});
const cases: { name: string; plan?: DataFrame; fanout: () => Promise<unknown>; duckdb: () => Promise<unknown> }[] = [
  {
    name: 'groupBy 8 keys, sum',
    plan: readParquet(facts).groupBy('k8').agg(col('v').sum()),
    fanout: () => readParquet(facts).groupBy('k8').agg(col('v').sum()).toRows(),
    duckdb: () => duck(`CREATE OR REPLACE TEMP TABLE r AS SELECT k8, sum(v) FROM ${F} GROUP BY k8`),
  },
  {
    name: 'groupBy 1M keys, sum',
    plan: readParquet(facts).groupBy('k1m').agg(col('v').sum()),
    fanout: () => drain(readParquet(facts).groupBy('k1m').agg(col('v').sum())),
    duckdb: () => duck(`CREATE OR REPLACE TEMP TABLE r AS SELECT k1m, sum(v) FROM ${F} GROUP BY k1m`),
  },
  {
    name: 'sort by v (2 columns)',
    fanout: () => drain(readParquet(facts).select('k1m', 'v').sort('v')),
    duckdb: () => duck(`CREATE OR REPLACE TEMP TABLE r AS SELECT k1m, v FROM ${F} ORDER BY v`),
  },
  {
    name: `join ${ROWS / 1e6}M x ${DIM / 1000}k (inner)`,
    fanout: () => drain(readParquet(facts).join(readParquet(dims), { on: 'd' })),
    duckdb: () => duck(`CREATE OR REPLACE TEMP TABLE r AS SELECT * FROM ${F} AS f JOIN ${D} AS dd USING (d)`),
  },
];

const lines = [
  '# Relational bench',
  '',
  `${ROWS} fact rows (k8, k1m, d: int32; v: float64) and ${DIM} dimension rows, Parquet, median of ${REPEAT} after ${WARMUP} untimed run(s); DuckDB in the same process on the same files.`,
  'The ratio is of wall times; CPU ms (all threads of the process) says more on a busy machine.',
  '',
  `The last column repeats the measurement once each engine has run the case ${STEADY_WARMUP} times (the steady state).`,
  '',
  `| case | fanout ms | DuckDB ms | ratio | fanout CPU ms | DuckDB CPU ms | ratio after ${STEADY_WARMUP} runs |`,
  '|---|---|---|---|---|---|---|',
];
for (const c of cases) {
  for (let i = 0; i < WARMUP; i++) {
    await c.fanout();
    await c.duckdb();
  }
  const f = await time(c.fanout);
  const d = await time(c.duckdb);
  // The steady state: untimed runs up to STEADY_WARMUP in all (warm-ups and timed runs counted), timed again.
  for (let i = WARMUP + REPEAT; i < STEADY_WARMUP; i++) {
    await c.fanout();
    await c.duckdb();
  }
  const steady = (await time(c.fanout)).wall / (await time(c.duckdb)).wall;
  // Where the input stage ran (explain): partitions, in-process or worker threads.
  const stage = c.plan && /Stage 0: (.*)/.exec(await c.plan.explain())?.[1];
  const line = `| ${c.name}${stage ? ` [${stage}]` : ''} | ${f.wall.toFixed(0)} | ${d.wall.toFixed(0)} | ${(f.wall / d.wall).toFixed(2)}x | ${f.cpu.toFixed(0)} | ${d.cpu.toFixed(0)} | ${steady.toFixed(2)}x |`;
  console.log(line);
  lines.push(line);
}
con.closeSync();
db.closeSync();

// Peak RSS of a 1M-key groupBy under a budget below the data size (about 40 MB of columns).
const budget = 16 << 20;
setRunner('native', { memoryBudgetBytes: budget });
globalThis.gc?.();
const base = process.memoryUsage().rss;
let peak = base;
const timer = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 5);
resetRelationalStats();
const t0 = performance.now();
const n = await drain(readParquet(facts).groupBy('k1m').agg(col('v').sum()));
const ms = performance.now() - t0;
clearInterval(timer);
const st = relationalStats();
const mib = (b: number): string => `${(b / (1 << 20)).toFixed(1)} MiB`;
const within = st.peakBytesHeld <= budget ? 'within the budget' : 'OVER THE BUDGET';
const spillLine = `groupBy 1M keys with memoryBudgetBytes ${mib(budget)} (the input's columns take ${mib(ROWS * 12)} decoded): ${n} groups in ${ms.toFixed(0)} ms; operator bytes held at peak ${mib(st.peakBytesHeld)} (${within}); ${st.spillFiles} spill files (${mib(st.spilledBytes)}); process RSS ${mib(base)} before, peak ${mib(peak)} (+${mib(peak - base)})`;
console.log(spillLine);
lines.push('', spillLine, '');
writeFileSync(join(import.meta.dirname, 'relational-report.md'), lines.join('\n'));

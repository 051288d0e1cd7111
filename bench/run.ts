// `npm run bench`: fanout against references run in the same process — DuckDB (SQL over the same
// file) and hand-written typed-array loops — reported as ratios, never as pass/fail timings.
// Writes bench/report.md. The 2M-row input is generated once into bench/data/. Every case, the
// references included, is warmed up once before it is timed.
import { DuckDBInstance } from '@duckdb/node-api';
import * as arrow from 'apache-arrow';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { col, DataType, fromColumns, func, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { writeParquetFile, warmParquet } from '../src/io/parquet/index.ts';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 2_000_000);
const GROUP = 250_000;
const dataDir = join(import.meta.dirname, 'data');
const file = join(dataDir, `bench-${ROWS}.parquet`);
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);

function makeBatch(start: number, n: number): arrow.RecordBatch {
  const cats = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];
  const id = new BigInt64Array(n);
  const x = new Float64Array(n);
  const category: string[] = new Array(n);
  const text: string[] = new Array(n);
  let s = start + 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    id[i] = BigInt(start + i);
    x[i] = s / 2147483648;
    category[i] = cats[(start + i) % 8]!;
    text[i] = `row ${start + i} lorem ipsum dolor sit amet ${s.toString(36)}`;
  }
  return new arrow.Table({
    id: arrow.makeVector(id),
    x: arrow.makeVector(x),
    category: arrow.vectorFromArray(category, new arrow.Utf8()),
    text: arrow.vectorFromArray(text, new arrow.Utf8()),
  }).batches[0]!;
}

async function ensureData(): Promise<void> {
  if (existsSync(file)) return;
  mkdirSync(dataDir, { recursive: true });
  console.log(`generating ${ROWS} rows into ${file} ...`);
  function* batches(): Generator<arrow.RecordBatch> {
    for (let s = 0; s < ROWS; s += 65_536) yield makeBatch(s, Math.min(65_536, ROWS - s));
  }
  await writeParquetFile(file, batches(), { rowGroupSize: GROUP });
}

/** Median of REPEAT runs after one untimed warm-up run (for the references too: a cold hand loop is interpreted code). */
async function time(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function drain(df: { stream(): AsyncIterable<arrow.RecordBatch> }): Promise<number> {
  let n = 0;
  for await (const b of df.stream()) n += b.numRows;
  return n;
}

const rows: [string, string, string, string][] = [];
function report(what: string, ms: number, refMs: number | null, refName: string): void {
  const rate = `${(ROWS / 1e6 / (ms / 1000)).toFixed(1)} M rows/s`;
  const ratio = refMs === null ? '' : `${(ms / refMs).toFixed(2)}× ${refName}`;
  rows.push([what, `${ms.toFixed(0)} ms`, rate, ratio]);
  console.log(`${what.padEnd(60)} ${ms.toFixed(0).padStart(6)} ms  ${rate.padStart(16)}  ${ratio}`);
}

await ensureData();
await warmParquet();
const sizeMb = statSync(file).size / 2 ** 20;
console.log(`input: ${ROWS} rows, ${sizeMb.toFixed(1)} MiB, row groups of ${GROUP}\n`);

// --- DuckDB reference (same process, same file)
const duck = await DuckDBInstance.create(':memory:');
const conn = await duck.connect();
// Aggregate over both output columns so DuckDB must decode and compute what fanout streams out
// (id and y) without paying its slow conversion to JS values.
const sqlPipeline = `SELECT count(*) AS n, sum(y) AS s, sum(id) AS i FROM (SELECT id, x * 2 + 1 AS y FROM read_parquet('${file}') WHERE x > 0.5)`;
const duckMs = await time(() => conn.run(sqlPipeline));
const duckRows = Number((await (await conn.run(sqlPipeline)).getRows())[0]![0]);

// --- fanout: scan -> filter -> project -> x*2+1, all batches streamed
const pipeline = () => readParquet(file).where(col('x').gt(0.5)).select('id', col('x').mul(2).add(1).alias('y'));
for (const [label, opts] of [
  ['fanout pipeline, 1 thread', { workers: false }],
  ['fanout pipeline, 2 workers', { workers: true, parallelism: 2 }],
] as const) {
  setRunner('native', opts);
  const n = await drain(pipeline());
  if (n !== duckRows) throw new Error(`row count mismatch: fanout ${n}, duckdb ${duckRows}`);
  // Where it really ran: a plan whose projected columns fit one partition runs in-process even
  // when workers are allowed, and the label must not claim two threads then.
  const stage = /Stage 0: (.*)/.exec(await pipeline().explain())?.[1] ?? '?';
  report(`${label} [${stage}]`, await time(() => drain(pipeline())), duckMs, 'DuckDB');
}
report('DuckDB same query (2 threads)', duckMs, null, '');

// --- scan throughput: all columns vs two
setRunner('native', { workers: false });
const allMs = await time(() => drain(readParquet(file)));
const twoMs = await time(() => drain(readParquet(file).select('id', 'x')));
report('scan all 4 columns, 1 thread', allMs, null, '');
report('scan 2 of 4 columns (id, x), 1 thread', twoMs, allMs, 'all columns');

// --- memory: streaming the whole file keeps RSS near one partition's batches, not the file's size.
// On workers the partitions ahead of the consumer hold at most the prefetch budget (prefetchBytes).
for (const [where, opts] of [
  ['1 thread', { workers: false }],
  ['2 workers', { workers: true, parallelism: 2 }],
] as const) {
  setRunner('native', opts);
  await drain(readParquet(file).select('id')); // start the pool's threads (and their parquet-wasm) first
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  let decoded = 0;
  for await (const b of readParquet(file).stream()) {
    for (const c of b.data.children) decoded += c.byteLength;
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const mib = (x: number): string => `${(x / 2 ** 20).toFixed(0)} MiB`;
  const line = `streaming all columns (${where}): RSS grew ${mib(peak - base)} while ${mib(decoded)} of Arrow data passed through`;
  console.log(line);
  rows.push([`memory while streaming (${where})`, mib(peak - base), `${mib(decoded)} decoded`, `${((peak - base) / decoded).toFixed(2)}× decoded size`]);
}
setRunner('native', { workers: false });

// --- compute: x*2+1 in memory vs a hand-written loop
const xs = new Float64Array(ROWS);
for (let i = 0; i < ROWS; i++) xs[i] = (i % 1000) / 1000;
const handMs = await time(async () => {
  const out = new Float64Array(ROWS);
  for (let i = 0; i < ROWS; i++) out[i] = xs[i]! * 2 + 1;
  return out;
});
const mem = fromColumns({ x: xs });
report('hand loop x*2+1 (typed arrays)', handMs, null, '');
report('fanout expression x*2+1 (in memory)', await time(() => drain(mem.select(col('x').mul(2).add(1).alias('y')))), handMs, 'hand loop');

// --- UDFs: row-wise and batch vs the hand loop
const rowUdf = func((x: number) => x * 2 + 1, { returnDtype: DataType.float64(), name: 'bench.row' });
const batchUdf = func.batch(
  (v: arrow.Vector) => {
    const src = v.data.length === 1 ? (v.data[0]!.values as Float64Array) : (v.toArray() as Float64Array);
    const out = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = src[i]! * 2 + 1;
    return out;
  },
  { returnDtype: DataType.float64(), name: 'bench.batch' },
);
const chunked = fromColumns({ x: xs });
report('row-wise func x*2+1 (in memory)', await time(() => drain(chunked.select(rowUdf(col('x')).alias('y')))), handMs, 'hand loop');
report('func.batch x*2+1 (in memory)', await time(() => drain(chunked.select(batchUdf(col('x')).alias('y')))), handMs, 'hand loop');

// --- OpenTelemetry overhead: the same UDF pipeline over the file (one partition per row group),
// exporting spans and metrics to a local OTLP/HTTP receiver, against OTEL_* unset. Runs alternate
// off/on (the machine is shared), and the ratio of the medians is reported.
{
  const received = { requests: 0 };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.requests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  setRunner('native', { workers: false, targetPartitionBytes: 1 });
  const udfPipeline = () => readParquet(file).select('id', rowUdf(col('x')).alias('y'));
  const once = async (on: boolean): Promise<number> => {
    if (on) process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = endpoint;
    else delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
    const t0 = performance.now();
    await drain(udfPipeline());
    return performance.now() - t0;
  };
  await once(false);
  await once(true); // loads the SDK once, as the first traced action of a process does
  const off: number[] = [];
  const on: number[] = [];
  for (let i = 0; i < Math.max(REPEAT, 5); i++) {
    off.push(await once(false));
    on.push(await once(true));
  }
  delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  server.close();
  if (!received.requests) throw new Error('OTel bench: the receiver got nothing');
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  report('row-wise func pipeline, OTel off (1 thread)', median(off), null, '');
  report('row-wise func pipeline, OTel on (OTLP to 127.0.0.1)', median(on), median(off), 'OTel off');
}

await shutdownWorkers();
const md = [
  `# fanout bench — ${new Date().toISOString()}`,
  '',
  `Input: ${ROWS} rows (id int64, x float64, category utf8, text utf8), ${sizeMb.toFixed(1)} MiB snappy Parquet, row groups of ${GROUP}. Median of ${REPEAT} runs. Machine: ${process.arch}, Node ${process.version}.`,
  '',
  '| what | time | throughput | ratio |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
  '',
].join('\n');
writeFileSync(join(import.meta.dirname, 'report.md'), md);
console.log('\nwrote bench/report.md');

// `npm run bench`: fanout against references run in the same process — DuckDB (SQL over the same
// file) and hand-written typed-array loops — reported as ratios, never as pass/fail timings.
// Writes bench/report.md. The 2M-row input is generated once into bench/data/. Every case, the
// references included, is warmed up once before it is timed.
import { DuckDBInstance } from '@duckdb/node-api';
import * as arrow from 'apache-arrow';
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { col, DataType, flushTelemetry, fromColumns, func, readParquet, setRunner, shutdownWorkers } from 'fanout';
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
// The reference allocates its output, as fanout and the UDFs must: most of its time is the first
// touch of a fresh 16 MB array (one page fault per 4 KiB page, ~3 900 per run), not the arithmetic.
// The loop into a reused array is printed beside it as the arithmetic's floor, not as a reference.
const handMs = await time(async () => {
  const out = new Float64Array(ROWS);
  for (let i = 0; i < ROWS; i++) out[i] = xs[i]! * 2 + 1;
  return out;
});
const reusedOut = new Float64Array(ROWS);
const handReusedMs = await time(async () => {
  for (let i = 0; i < ROWS; i++) reusedOut[i] = xs[i]! * 2 + 1;
  return reusedOut;
});
const mem = fromColumns({ x: xs });
report('hand loop x*2+1 (typed arrays, fresh output array)', handMs, null, '');
report('hand loop x*2+1 into a reused array (arithmetic only)', handReusedMs, handMs, 'hand loop');
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

// --- OpenTelemetry overhead: the row-wise UDF pipeline over the file read OTEL_FILES times (one
// partition per row group: 8 per file), exporting spans and metrics to a local OTLP/HTTP receiver,
// against OTEL_* unset. Off and on alternate in one process, in ABBA order (drift and the machine's
// other load fall on both alike); each pair gives an on/off ratio, and the median and interquartile
// range of those ratios are reported. An "on" sample also awaits flushTelemetry() after the action,
// so the OTLP export it caused is counted in it (the worst case: nothing batched across actions);
// the action itself does not wait for its export. CPU time is reported beside wall time, since a
// shared machine's wall clock is noisy. BENCH_OTEL_FILES and BENCH_OTEL_PAIRS size the case.
{
  const OTEL_FILES = Number(process.env['BENCH_OTEL_FILES'] ?? 4);
  const PAIRS = Number(process.env['BENCH_OTEL_PAIRS'] ?? 16);
  // The receiver runs in a child process, as a collector would: its work is not this process's CPU time.
  const receiverJs = `const n={c:0};require('node:http').createServer((q,r)=>{q.resume();q.on('end',()=>{if(q.method==='POST')n.c++;r.writeHead(200,{'content-type':'application/json'}).end(q.method==='GET'?String(n.c):'{}')})}).listen(0,'127.0.0.1',function(){console.log(this.address().port)})`;
  const receiver = spawn(process.execPath, ['-e', receiverJs], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = (await once(receiver.stdout, 'data')) as [Buffer];
  const endpoint = `http://127.0.0.1:${String(port).trim()}`;
  setRunner('native', { workers: false, targetPartitionBytes: 1 });
  // The same file under OTEL_FILES names (symbolic links: readParquet reads each named file once).
  const files = Array.from({ length: OTEL_FILES }, (_, i) => {
    if (i === 0) return file;
    const link = join(dataDir, `otel-${i}-bench-${ROWS}.parquet`);
    if (!existsSync(link)) symlinkSync(file, link);
    return link;
  });
  const udfPipeline = () => readParquet(files).select('id', rowUdf(col('x')).alias('y'));
  interface Sample {
    action: number;
    total: number;
    cpu: number;
  }
  // CPU time of this (the main) thread, where spans and metrics are recorded and exported: on Linux
  // from /proc/thread-self/schedstat (ns on CPU), so the I/O and GC threads' time does not blur it;
  // elsewhere the process's.
  const schedstat = '/proc/thread-self/schedstat';
  const threadCpu = existsSync(schedstat);
  const cpuMs = (): number => {
    if (threadCpu) return Number(readFileSync(schedstat, 'utf8').split(' ')[0]) / 1e6;
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  };
  // Every sample starts from a collected heap: otherwise the pipeline's garbage (tens of ms of GC)
  // is collected in whichever sample happens to fill the heap.
  v8.setFlagsFromString('--expose-gc');
  const fullGc = vm.runInNewContext('gc') as () => void;
  // OTel's own work, accounted directly: the main-thread CPU spent inside span/metric recording
  // (the SDK side of fanout's TraceSpan) and in the export. Independent of the machine's other load.
  const own = { record: 0, export: 0 };
  const account = <T>(fn: () => T): T => {
    const t = cpuMs();
    try {
      return fn();
    } finally {
      own.record += cpuMs() - t;
    }
  };
  const sample = async (on: boolean): Promise<Sample> => {
    if (on) process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = endpoint;
    else delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
    fullGc();
    const c0 = cpuMs();
    const t0 = performance.now();
    const n = await drain(udfPipeline());
    const action = performance.now() - t0;
    if (on) {
      const f0 = cpuMs();
      await flushTelemetry();
      own.export += cpuMs() - f0;
    }
    const total = performance.now() - t0;
    const cpu = cpuMs() - c0;
    if (n !== ROWS * OTEL_FILES) throw new Error(`OTel bench: ${n} rows, expected ${ROWS * OTEL_FILES}`);
    return { action, total, cpu };
  };
  await sample(false);
  await sample(true); // loads the SDK once, as the first traced action of a process does
  const off: Sample[] = [];
  const on: Sample[] = [];
  for (let i = 0; i < PAIRS; i++) {
    if (i % 2 === 0) {
      off.push(await sample(false));
      on.push(await sample(true));
    } else {
      on.push(await sample(true));
      off.push(await sample(false));
    }
  }
  {
    // The SDK's span class (the same module instance the runner loaded), wrapped for the accounting.
    process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = endpoint;
    const probe = (await import('../src/telemetry/sdk.ts')).startSpan('bench.probe', {}, null);
    probe.end();
    const proto = Object.getPrototypeOf(probe) as Record<'partition' | 'end' | 'child', (...a: unknown[]) => unknown>;
    for (const m of ['partition', 'end', 'child'] as const) {
      const f = proto[m];
      proto[m] = function (this: unknown, ...a: unknown[]) {
        return account(() => f.apply(this, a));
      };
    }
  }
  // Apart from the timed pairs (the accounting itself costs a little).
  const ACCOUNTED = 4;
  own.record = own.export = 0;
  for (let i = 0; i < ACCOUNTED; i++) await sample(true);
  const ownPerAction = (own.record + own.export) / ACCOUNTED;
  if (!(ownPerAction > 0)) throw new Error('OTel bench: the accounting saw no OTel work (run with --conditions=development)');
  delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  await flushTelemetry();
  const requests = Number(await (await fetch(`${endpoint}/count`)).text());
  receiver.kill();
  if (!requests) throw new Error('OTel bench: the receiver got nothing');
  const quantile = (xs: number[], q: number): number => {
    const s = [...xs].sort((a, b) => a - b);
    const pos = (s.length - 1) * q;
    const lo = Math.floor(pos);
    return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (pos - lo);
  };
  const ratios = (f: (x: Sample) => number): string => {
    const r = on.map((x, i) => f(x) / f(off[i]!));
    return `${quantile(r, 0.5).toFixed(3)}× (IQR ${quantile(r, 0.25).toFixed(3)}–${quantile(r, 0.75).toFixed(3)})`;
  };
  const med = (xs: Sample[], f: (x: Sample) => number): number => quantile(xs.map(f), 0.5);
  const rows8 = ROWS * OTEL_FILES;
  const what = `row-wise func over ${rows8 / 1e6}M rows, ${8 * OTEL_FILES} partitions (1 thread), ${PAIRS} ABBA pairs`;
  const lines: [string, string, string, string][] = [
    [`${what}: OTel off`, `${med(off, (x) => x.total).toFixed(0)} ms`, `${threadCpu ? 'main-thread ' : ''}cpu ${med(off, (x) => x.cpu).toFixed(0)} ms`, ''],
    [
      'OTel on (OTLP to 127.0.0.1), action + its flushed export',
      `${med(on, (x) => x.total).toFixed(0)} ms`,
      `${threadCpu ? 'main-thread ' : ''}cpu ${med(on, (x) => x.cpu).toFixed(0)} ms`,
      `wall ${ratios((x) => x.total)}; cpu ${ratios((x) => x.cpu)} OTel off`,
    ],
    ['OTel on, the action alone (export in the background)', `${med(on, (x) => x.action).toFixed(0)} ms`, '', `${ratios((x) => x.action)} OTel off`],
    [
      "OTel's own main-thread CPU per action (recording + export)",
      `${ownPerAction.toFixed(1)} ms`,
      `recording ${(own.record / ACCOUNTED).toFixed(1)} ms, export ${(own.export / ACCOUNTED).toFixed(1)} ms`,
      `${((ownPerAction / med(off, (x) => x.cpu)) * 100).toFixed(2)}% of the OTel-off action's CPU`,
    ],
  ];
  for (const l of lines) {
    rows.push(l);
    console.log(l.filter(Boolean).join('  '));
  }
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

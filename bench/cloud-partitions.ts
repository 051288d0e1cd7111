// Harness bench: a serverless run of many small partitions (510 by default, one per row group)
// through the local harness (state machine interpreter + Step Functions API + Lambda workers +
// s3rver). It checks that every partition ran (each has its completion marker: the Map's ItemBatcher
// runs several partitions per Stage invocation) and every row came back, and reports the time per
// partition and per invocation, with the CPU time of this process and of the S3 child (steadier than
// wall time on a shared machine), the S3 requests per partition (BENCH_S3_DETAIL=1: by key shape)
// and the load average. Moved here from test/local-cloud.test.ts
// (which keeps a 40-partition run) because it takes minutes on a loaded machine. Appends to
// bench/report.md.
import * as arrow from 'apache-arrow';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud } from 'fanout/local';
import { listS3, putS3Object } from '../src/io/s3/index.ts';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { cpuMs } from './cloud-cpu.ts';
import pipeline from './cloud-pipeline.ts';

const PARTITIONS = Number(process.env['BENCH_MANY_PARTITIONS'] ?? 510);
const ROWS_PER = 8;
const dataDir = join(import.meta.dirname, 'data');
/** A Parquet file of `partitions` row groups of ROWS_PER rows (one partition each), written once. */
async function ensureFile(partitions: number): Promise<string> {
  const file = join(dataDir, `many-${partitions}.parquet`);
  if (existsSync(file)) return file;
  mkdirSync(dataDir, { recursive: true });
  function* batches(): Generator<arrow.RecordBatch> {
    for (let p = 0; p < partitions; p++) {
      const id = BigInt64Array.from({ length: ROWS_PER }, (_, i) => BigInt(p * ROWS_PER + i));
      const x = Float64Array.from({ length: ROWS_PER }, (_, i) => i / ROWS_PER);
      yield new arrow.Table({ id: arrow.makeVector(id), x: arrow.makeVector(x) }).batches[0]!;
    }
  }
  await writeParquetFile(file, batches(), { rowGroupSize: ROWS_PER });
  return file;
}
const file = await ensureFile(PARTITIONS);
const warmFile = await ensureFile(4);

/** Every run id with a plan in the work bucket. */
async function runIds(bucket: string): Promise<Set<string>> {
  const { objects } = await listS3(`s3://${bucket}/runs/`);
  return new Set(objects.map((o) => /^runs\/([^/]+)\/plan\.json$/.exec(o.key)?.[1]).filter((r): r is string => r !== undefined));
}

const cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
try {
  await putS3Object(`s3://${cloud.inputBucket}/many/many.parquet`, readFileSync(file));
  await putS3Object(`s3://${cloud.inputBucket}/warm/warm.parquet`, readFileSync(warmFile));
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
  await pipeline({ uri: `s3://${cloud.inputBucket}/warm/` }).collect(); // start both Lambda environments first
  const runsBefore = await runIds(cloud.workBucket);
  const before = cloud.stats()['stage'] ?? 0;
  await cloud.s3Requests(true);
  const c0 = cpuMs();
  const t0 = performance.now();
  const df = await pipeline({ uri: `s3://${cloud.inputBucket}/many/` }).collect();
  const ms = performance.now() - t0;
  const c1 = cpuMs();
  const requests = await cloud.s3Requests();
  // The Map's ItemBatcher packs several partitions into one invocation (the plan's
  // partitionsPerInvocation): every partition ran when every one has its completion marker.
  const invoked = (cloud.stats()['stage'] ?? 0) - before;
  const fresh = [...(await runIds(cloud.workBucket))].filter((r) => !runsBefore.has(r));
  if (fresh.length !== 1) throw new Error(`expected one new run in s3://${cloud.workBucket}/runs/, found ${fresh.length}`);
  const runId = fresh[0]!;
  const { objects } = await listS3(`s3://${cloud.workBucket}/runs/${runId}/stage-0/metrics-`);
  const done = new Set(objects.map((o) => Number(/metrics-(\d+)\.json$/.exec(o.key)?.[1])));
  const missing = Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => !done.has(p));
  if (missing.length)
    throw new Error(`run ${runId}: ${missing.length} of ${PARTITIONS} partitions have no completion marker (first: ${missing.slice(0, 10).join(', ')})`);
  if (invoked < 1 || invoked > PARTITIONS) throw new Error(`stage Lambda invoked ${invoked} times for ${PARTITIONS} partitions`);
  const rows = await df.count();
  if (rows !== PARTITIONS * ROWS_PER) throw new Error(`${rows} rows came back, expected ${PARTITIONS * ROWS_PER}`);
  const own = c1.own - c0.own;
  const children = c1.children - c0.children;
  const s3Total = Object.entries(requests)
    .filter(([k]) => !k.includes('/'))
    .reduce((n, [, v]) => n + v, 0);
  const byOp = Object.entries(requests)
    .filter(([k]) => !k.includes('/'))
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${(v / PARTITIONS).toFixed(2)}`)
    .join(', ');
  const line =
    `local harness: ${PARTITIONS} partitions of ${ROWS_PER} rows in ${(ms / 1000).toFixed(1)} s, ${(ms / PARTITIONS).toFixed(1)} ms per partition, ` +
    `${invoked} Stage invocations (${(PARTITIONS / invoked).toFixed(1)} partitions each, ${(ms / invoked).toFixed(0)} ms per invocation; 2 warm Lambda environments); ` +
    `CPU ${(own / PARTITIONS).toFixed(1)} ms per partition in this process + ${(children / PARTITIONS).toFixed(1)} in the S3 child ` +
    `(${(own / invoked).toFixed(0)} + ${(children / invoked).toFixed(0)} ms per invocation); ` +
    `S3 requests ${(s3Total / PARTITIONS).toFixed(1)} per partition (${byOp}); load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`;
  console.log(line);
  if (process.env['BENCH_S3_DETAIL']) {
    for (const [k, v] of Object.entries(requests)
      .filter(([k]) => k.includes('/'))
      .sort((a, b) => b[1] - a[1]))
      console.log(`  ${String(v).padStart(6)}  ${(v / PARTITIONS).toFixed(2).padStart(6)}/partition  ${k}`);
  }
  appendFileSync(join(import.meta.dirname, 'report.md'), `\n## Many partitions on the local harness\n\n${line}.\n`);
} finally {
  setRunner('native');
  await shutdownWorkers();
  await cloud.stop();
}

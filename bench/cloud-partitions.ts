// Harness bench: a serverless run of many small partitions (510 by default, one per row group)
// through the local harness (state machine interpreter + Step Functions API + Lambda workers +
// s3rver). It checks that every partition ran and every row came back, and reports the time per
// partition, with the CPU time per partition of this process and of the S3 child (steadier than
// wall time on a shared machine) and the load average. Moved here from test/local-cloud.test.ts
// (which keeps a 40-partition run) because it takes minutes on a loaded machine. Appends to
// bench/report.md.
import * as arrow from 'apache-arrow';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud } from 'fanout/local';
import { putS3Object } from '../src/io/s3/index.ts';
import { writeParquetFile } from '../src/io/parquet/index.ts';
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
/**
 * CPU ms used so far by this process (all threads) and its child processes (the s3rver child):
 * on a shared machine CPU time per partition is steadier than wall time. Children via /proc (Linux).
 */
function cpuMs(): { own: number; children: number } {
  const u = process.cpuUsage();
  let children = 0;
  try {
    for (const t of readdirSync(`/proc/${process.pid}/task`)) {
      for (const pid of readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean)) {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        children += ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in USER_HZ (100)
      }
    }
  } catch {
    children = Number.NaN; // not Linux
  }
  return { own: (u.user + u.system) / 1000, children };
}
const file = await ensureFile(PARTITIONS);
const warmFile = await ensureFile(4);

const cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
try {
  await putS3Object(`s3://${cloud.inputBucket}/many/many.parquet`, readFileSync(file));
  await putS3Object(`s3://${cloud.inputBucket}/warm/warm.parquet`, readFileSync(warmFile));
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
  await pipeline({ uri: `s3://${cloud.inputBucket}/warm/` }).collect(); // start both Lambda environments first
  const before = cloud.stats()['stage'] ?? 0;
  const c0 = cpuMs();
  const t0 = performance.now();
  const df = await pipeline({ uri: `s3://${cloud.inputBucket}/many/` }).collect();
  const ms = performance.now() - t0;
  const c1 = cpuMs();
  const invoked = (cloud.stats()['stage'] ?? 0) - before;
  if (invoked < PARTITIONS) throw new Error(`stage Lambda invoked ${invoked} times for ${PARTITIONS} partitions`);
  const rows = await df.count();
  if (rows !== PARTITIONS * ROWS_PER) throw new Error(`${rows} rows came back, expected ${PARTITIONS * ROWS_PER}`);
  const line = `local harness: ${PARTITIONS} partitions of ${ROWS_PER} rows in ${(ms / 1000).toFixed(1)} s, ${(ms / PARTITIONS).toFixed(1)} ms per partition (2 warm Lambda environments); CPU ${((c1.own - c0.own) / PARTITIONS).toFixed(1)} ms per partition in this process + ${((c1.children - c0.children) / PARTITIONS).toFixed(1)} in the S3 child; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`;
  console.log(line);
  appendFileSync(join(import.meta.dirname, 'report.md'), `\n## Many partitions on the local harness\n\n${line}.\n`);
} finally {
  setRunner('native');
  await shutdownWorkers();
  await cloud.stop();
}

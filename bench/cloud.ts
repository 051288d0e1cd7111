// Harness bench: orchestration overhead per partition of the serverless path on one machine
// (state machine interpreter + Step Functions API + Lambda workers + s3rver), against the embedded
// runner on the same input in the same process, in wall time and in CPU time (this process and the S3
// child: steadier than wall time on a shared machine). Appends to bench/report.md.
import * as arrow from 'apache-arrow';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud } from 'fanout/local';
import { putS3Object } from '../src/io/s3/index.ts';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { cpuMs } from './cloud-cpu.ts';
import pipeline from './cloud-pipeline.ts';

const PARTITIONS = Number(process.env['BENCH_PARTITIONS'] ?? 200);
const ROWS_PER = 500;
const file = join(import.meta.dirname, 'data', `cloud-${PARTITIONS}.parquet`);
if (!existsSync(file)) {
  function* batches(): Generator<arrow.RecordBatch> {
    for (let p = 0; p < PARTITIONS; p++) {
      const id = BigInt64Array.from({ length: ROWS_PER }, (_, i) => BigInt(p * ROWS_PER + i));
      const x = Float64Array.from({ length: ROWS_PER }, (_, i) => (i % 100) / 100);
      yield new arrow.Table({ id: arrow.makeVector(id), x: arrow.makeVector(x) }).batches[0]!;
    }
  }
  await writeParquetFile(file, batches(), { rowGroupSize: ROWS_PER });
}

const cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'cloud-pipeline.ts'), lambdaConcurrency: 2 });
try {
  await putS3Object(`s3://${cloud.inputBucket}/bench/in.parquet`, readFileSync(file));
  const uri = `s3://${cloud.inputBucket}/bench/`;
  setRunner('native', { workers: false });
  let c0 = cpuMs();
  let t0 = performance.now();
  const local = await pipeline({ uri }).collect();
  const embeddedMs = performance.now() - t0;
  let c1 = cpuMs();
  const embeddedCpu = c1.own - c0.own + (c1.children - c0.children);
  setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
  await pipeline({ uri }).limit(1).collect(); // warm the Lambda workers
  c0 = cpuMs();
  t0 = performance.now();
  const remote = await pipeline({ uri }).collect();
  const cloudMs = performance.now() - t0;
  c1 = cpuMs();
  const cloudCpu = c1.own - c0.own + (c1.children - c0.children);
  if ((await remote.count()) !== (await local.count())) throw new Error('row counts differ');
  const perPartition = (cloudMs - embeddedMs) / PARTITIONS;
  const line =
    `local harness: ${PARTITIONS} partitions of ${ROWS_PER} rows in ${(cloudMs / 1000).toFixed(1)} s with 2 Lambda environments; embedded runner ${(embeddedMs / 1000).toFixed(2)} s; orchestration overhead ≈ ${perPartition.toFixed(1)} ms per partition; ` +
    `CPU ${(cloudCpu / PARTITIONS).toFixed(1)} ms per partition (embedded ${(embeddedCpu / PARTITIONS).toFixed(1)}), overhead ≈ ${((cloudCpu - embeddedCpu) / PARTITIONS).toFixed(1)} ms CPU per partition; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`;
  console.log(line);
  appendFileSync(join(import.meta.dirname, 'report.md'), `\n## Serverless path on the local harness\n\n${line}.\n`);
} finally {
  setRunner('native');
  await shutdownWorkers();
  await cloud.stop();
}

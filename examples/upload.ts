// Generates a Parquet file shaped for examples/pipeline.ts (id int64, x float64, category utf8) and
// uploads it under the watched input prefix, which starts a run: on the local stack
// (`npm run local` prints the endpoint) or on AWS (the stack's InputBucketName output).
//
//   npx tsx --conditions=development examples/upload.ts --endpoint http://127.0.0.1:<port>
//   npx tsx --conditions=development examples/upload.ts --bucket <InputBucketName> --rows 1000000
//
// Options: --endpoint URL (default AWS_ENDPOINT_URL_S3, else AWS itself), --bucket (default
// FANOUT_INPUT_BUCKET or fanout-input), --prefix (default incoming/), --rows (default 20000),
// --row-group (rows per row group, default 5000), --name (default orders-<time>.parquet),
// --file PATH (upload this file instead of generating one), --wait STATE_MACHINE_ARN (then follow
// the run the upload started until it ends; Step Functions at AWS_ENDPOINT_URL_SFN or
// AWS_ENDPOINT_URL when set, e.g. the local stack's or LocalStack's).
import * as arrow from 'apache-arrow';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DescribeExecutionCommand, ListExecutionsCommand, SFNClient } from '@aws-sdk/client-sfn';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { putS3Object } from '../src/io/s3/index.ts';

const CATEGORIES = ['books', 'games', 'garden', 'music', 'tools'];

/** `rows` rows from `start`, deterministic: x in [0, 1). */
export function orderBatch(start: number, rows: number): arrow.RecordBatch {
  const id = new BigInt64Array(rows);
  const x = new Float64Array(rows);
  const category: string[] = [];
  for (let i = 0; i < rows; i++) {
    const k = start + i;
    id[i] = BigInt(k);
    x[i] = ((k * 7919) % 10007) / 10007;
    category.push(CATEGORIES[k % CATEGORIES.length]!);
  }
  return new arrow.Table({
    id: arrow.makeVector(id),
    x: arrow.makeVector(x),
    category: arrow.vectorFromArray(category, new arrow.Utf8()),
  }).batches[0]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      endpoint: { type: 'string' },
      bucket: { type: 'string' },
      prefix: { type: 'string' },
      rows: { type: 'string' },
      'row-group': { type: 'string' },
      name: { type: 'string' },
      file: { type: 'string' },
      wait: { type: 'string' },
    },
  });
  const endpoint = values.endpoint ?? process.env['AWS_ENDPOINT_URL_S3'];
  if (endpoint) {
    process.env['AWS_ENDPOINT_URL_S3'] = endpoint;
    // The local S3 accepts any credentials; AWS needs yours (the SDK's usual chain).
    if (/^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(endpoint) && !process.env['AWS_ACCESS_KEY_ID']) {
      process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
      process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
    }
    process.env['AWS_REGION'] ??= 'us-east-1';
  }
  const bucket = values.bucket ?? process.env['FANOUT_INPUT_BUCKET'] ?? 'fanout-input';
  const prefix = (values.prefix ?? 'incoming/').replace(/^\/+/, '');
  const name =
    values.name ??
    `orders-${new Date()
      .toISOString()
      .replace(/[-:.TZ]/g, '')
      .slice(0, 14)}.parquet`;
  const uri = `s3://${bucket}/${prefix}${prefix && !prefix.endsWith('/') ? '/' : ''}${name}`;

  let bytes: Uint8Array;
  let what: string;
  if (values.file) {
    bytes = readFileSync(values.file);
    what = values.file;
  } else {
    const rows = Number(values.rows ?? 20000);
    const group = Number(values['row-group'] ?? 5000);
    if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(group) && group > 0)) throw new Error('--rows and --row-group must be positive integers');
    const dir = mkdtempSync(join(tmpdir(), 'fanout-upload-'));
    try {
      const file = join(dir, name);
      const batches: arrow.RecordBatch[] = [];
      for (let s = 0; s < rows; s += group) batches.push(orderBatch(s, Math.min(group, rows - s)));
      await writeParquetFile(file, batches, { rowGroupSize: group });
      bytes = readFileSync(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    what = `${rows} rows (id, x, category) in row groups of ${group}`;
  }
  const t0 = new Date(Date.now() - 1000);
  await putS3Object(uri, bytes);
  console.log(`uploaded ${what} (${bytes.length} bytes) to ${uri}${endpoint ? ` via ${endpoint}` : ''}`);
  if (values.wait) await waitForRun(values.wait, uri, t0);
}

/** Finds the execution whose input names `uri` (started by the EventBridge rule) and waits for its end. */
async function waitForRun(stateMachineArn: string, uri: string, since: Date): Promise<void> {
  const sfn = new SFNClient({});
  const deadline = Date.now() + 6 * 3600_000;
  let arn: string | undefined;
  let input: { output?: string | null } = {};
  const t0 = Date.now();
  while (!arn) {
    if (Date.now() - t0 > 120_000)
      throw new Error(
        `no execution of ${stateMachineArn} for ${uri} within 2 minutes: is the input rule deployed and the bucket's EventBridge notification on?`,
      );
    const list = await sfn.send(new ListExecutionsCommand({ stateMachineArn, maxResults: 50 }));
    for (const e of list.executions ?? []) {
      if (!e.executionArn || (e.startDate && e.startDate < since)) continue;
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: e.executionArn }));
      if (d.input?.includes(uri)) {
        arn = e.executionArn;
        input = JSON.parse(d.input) as typeof input;
        break;
      }
    }
    if (!arn) await new Promise((r) => setTimeout(r, 2000));
  }
  console.log(`run started: ${arn}`);
  let status = 'RUNNING';
  let error = '';
  let printed = Date.now();
  const secs = () => Math.round((Date.now() - t0) / 1000);
  while (status === 'RUNNING' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2000));
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn: arn }));
    status = d.status ?? 'UNKNOWN';
    error = d.error ? `: ${d.error} ${d.cause ?? ''}` : '';
    if (status === 'RUNNING' && Date.now() - printed > 30_000) {
      console.log(`  running for ${secs()} s (GPU stages wait for an instance to start: a few minutes from zero)`);
      printed = Date.now();
    }
  }
  console.log(`  ${status} after ${secs()} s${error}`);
  if (status === 'SUCCEEDED' && input.output) console.log(`output: ${input.output} (read it when its _SUCCESS manifest is there)`);
  if (status !== 'SUCCEEDED') process.exitCode = 1;
}

if (process.argv[1] && /upload\.[cm]?[jt]s$/.test(process.argv[1])) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

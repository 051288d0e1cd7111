// `npm run test:unit`: the inner-loop tier. Every test/*.test.ts except the files listed in SLOW,
// which start servers, worker pools or child processes (the local cloud, S3, CDK synth, GPU and ONNX
// workers); `npm test` (CI) still runs every file. A new test file joins the unit tier unless it is
// added to SLOW here. Extra arguments pass through, e.g. `npm run test:unit -- --test-reporter=dot`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SLOW = new Set([
  'aws-partitioning.test.ts', // two local clouds (Distributed and inline Map), 100 partitions each
  'aws-run.test.ts', // Stage/ECS handlers over a local object store, UDFs loaded as modules
  'cdk.test.ts', // CDK synth and bundling (esbuild)
  'cdk-e2e.test.ts', // synthesizes the app and runs it on the local harness
  'docs-examples.test.ts', // typechecks the docs' examples (a whole-program tsc) and runs some in child processes
  'executor.test.ts', // worker-thread pool
  'gpu.test.ts', // worker slots per emulated GPU device
  'local-cloud.test.ts', // s3rver + Step Functions + Lambda workers + ECS child processes
  'onnx.test.ts', // onnxruntime sessions, the model builder as a child process
  'onnx-udf.test.ts', // onnxruntime on worker threads
  'parquet-corpus-s3.test.ts', // s3rver child process
  'progress.test.ts', // runs pipelines in child processes
  's3.test.ts', // s3rver child process
  'state-machine.test.ts', // aws-local-stepfunctions against the local harness
  'udf.test.ts', // worker-thread pools (module UDFs, dying workers, cls instances per worker)
]);

const dir = new URL('./', import.meta.url);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.ts') && !SLOW.has(f))
  .sort()
  .map((f) => `test/${f}`);
const args = ['--conditions=development', '--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: fileURLToPath(new URL('../', import.meta.url)) });
process.exit(r.status ?? 1);

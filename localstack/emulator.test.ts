// `npm run test:emulator`: the synthesized CDK app deployed for real to MiniStack (a
// LocalStack-compatible emulator from PyPI, run from localstack/.venv, which this test creates with
// localstack/scripts/python-venv.sh when it is missing) with the CDK CLI, and run end to end:
// a Parquet upload with the AWS SDK -> S3 -> EventBridge -> Step Functions -> Plan / Stage Lambdas
// (MiniStack's local Node processes) -> the GPU stage's ECS task (run by localstack/ecs-agent.ts:
// no Docker) -> Finalize; the committed output equals the embedded runner's. A broken upload must
// fail its execution through the Failure Lambda, which writes failure.json. Then everything is torn
// down and no process may be left (checked with pgrep).
//
// Not part of `npm test` (Node only): it needs Python 3.10+ and, on a clean machine, PyPI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SFNClient,
  type DescribeExecutionCommandOutput,
} from '@aws-sdk/client-sfn';
import { readParquet, setRunner, shutdownWorkers } from 'fanout';
import { EXAMPLE_ENTRY, INPUT_PREFIX, OUTPUT_PREFIX } from '../cdk/app.ts';
import pipeline from '../examples/pipeline.ts';
import { orderBatch } from '../examples/upload.ts';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { startEcsAgent, type EcsAgent } from './ecs-agent.ts';
import { deployApp, EMULATOR_REGION, emulatorEnv, ensurePythonVenv, startMiniStack, type MiniStack } from './ministack.ts';

const work = mkdtempSync(join(tmpdir(), 'fanout-emulator-'));
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
let ms: MiniStack | undefined;
let agent: EcsAgent | undefined;
let outputs: Record<string, string>;
let synthOutput: string;
let s3: S3Client;
let sfn: SFNClient;
const savedEnv = { ...process.env };

/** The execution the rule started for `key` (its input names the object), once it has ended. */
async function executionFor(key: string, timeoutMs: number): Promise<DescribeExecutionCommandOutput> {
  const arn = outputs['StateMachineArn']!;
  const deadline = Date.now() + timeoutMs;
  const inputs = new Map<string, string>();
  for (;;) {
    const list = await sfn.send(new ListExecutionsCommand({ stateMachineArn: arn }));
    for (const e of list.executions ?? []) {
      if (!inputs.has(e.executionArn!))
        inputs.set(e.executionArn!, (await sfn.send(new DescribeExecutionCommand({ executionArn: e.executionArn! }))).input ?? '');
      const input = JSON.parse(inputs.get(e.executionArn!) || '{}') as { input?: { uri?: string } };
      if (input.input?.uri === `s3://${outputs['InputBucketName']}/${key}`) {
        const d = await sfn.send(new DescribeExecutionCommand({ executionArn: e.executionArn! }));
        if (d.status !== 'RUNNING') return d;
      }
    }
    if (Date.now() > deadline) {
      throw new Error(
        `no execution for s3://${outputs['InputBucketName']}/${key} ended within ${timeoutMs} ms (executions: ${[...inputs.values()].join(' | ')})`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

before(async () => {
  const t0 = Date.now();
  const venv = ensurePythonVenv();
  ms = await startMiniStack({ venv, dir: join(work, 'ministack') });
  console.log(`MiniStack at ${ms.endpoint} (${((Date.now() - t0) / 1000).toFixed(1)} s with the venv)`);
  // This process's clients (the SDK here, fanout's readParquet('s3://…')) talk to the emulator.
  Object.assign(process.env, emulatorEnv(ms.endpoint));
  const t1 = Date.now();
  ({ outputs, synthOutput } = await deployApp({ endpoint: ms.endpoint, assembly: join(work, 'cdk.out') }));
  console.log(`synth + bootstrap + deploy: ${((Date.now() - t1) / 1000).toFixed(1)} s`);
  agent = startEcsAgent({ endpoint: ms.endpoint, pipeline: EXAMPLE_ENTRY, region: EMULATOR_REGION, log: () => {} });
  // Default client settings, as a user's code would have them: only the endpoint and test keys.
  s3 = new S3Client({ endpoint: ms.endpoint, region: EMULATOR_REGION, credentials });
  sfn = new SFNClient({ endpoint: ms.endpoint, region: EMULATOR_REGION, credentials });
});

after(async () => {
  setRunner('native');
  await shutdownWorkers();
  s3?.destroy();
  sfn?.destroy();
  await agent?.stop();
  const pgid = ms?.pgid;
  await ms?.stop();
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
  if (pgid !== undefined) {
    // pgrep exits 1 when nothing matches: no server, no Lambda process of its group, nothing in its temp dir.
    const left = (args: string[]): string => {
      try {
        return execFileSync('pgrep', ['-a', ...args], { encoding: 'utf8' });
      } catch (e) {
        if ((e as { status?: number }).status === 1) return '';
        throw e;
      }
    };
    for (let i = 0; i < 20 && left(['-g', String(pgid)]); i++) await new Promise((r) => setTimeout(r, 250));
    assert.equal(left(['-g', String(pgid)]), '', "processes left in MiniStack's group");
    assert.equal(left(['-f', work]), '', 'processes left that run from the test directory');
    for (const t of agent?.tasks() ?? []) assert.notEqual(t.exitCode, undefined, `ECS task ${t.taskArn} still running`);
  }
  rmSync(work, { recursive: true, force: true });
});

describe('the synthesized app on MiniStack (no Docker)', () => {
  it('emulator mode says what it leaves out and how GPU tasks run', () => {
    for (const note of [
      'AWS::EC2::FlowLog left out',
      'AWS::ECS::CapacityProvider left out',
      'AWS::ECS::ClusterCapacityProviderAssociations left out',
      'instead of the SSM public parameter of the ECS GPU-optimized AMI',
      'no GPU task image is built or published',
    ]) {
      assert.ok(synthOutput.includes(note), `cdk synth prints "${note}":\n${synthOutput.slice(-3000)}`);
    }
    for (const k of ['InputBucketName', 'OutputBucketName', 'WorkBucketName', 'StateMachineArn']) assert.ok(outputs[k], `stack output ${k}`);
  });

  it('an upload (AWS SDK, streamed) runs S3 -> EventBridge -> Step Functions -> Lambda + ECS stand-in; the output equals the embedded runner', async () => {
    const file = join(work, 'orders.parquet');
    const batches = [0, 1, 2, 3].map((i) => orderBatch(i * 3000, 3000));
    await writeParquetFile(file, batches, { rowGroupSize: 3000 });
    const key = `${INPUT_PREFIX}orders-${Date.now()}.parquet`;
    // A stream body: the SDK sends it aws-chunked with a trailing checksum by default.
    await s3.send(new PutObjectCommand({ Bucket: outputs['InputBucketName'], Key: key, Body: createReadStream(file), ContentLength: statSync(file).size }));
    const stored = await s3.send(new GetObjectCommand({ Bucket: outputs['InputBucketName'], Key: key }));
    assert.deepEqual(Buffer.from(await stored.Body!.transformToByteArray()), readFileSync(file), 'the emulator stored the bytes sent');

    const ex = await executionFor(key, 300_000);
    assert.equal(ex.status, 'SUCCEEDED', `${ex.error}: ${ex.cause}`);
    const input = JSON.parse(ex.input!) as { runId: string; output: string; input: { literal: boolean } };
    assert.equal(input.output, `s3://${outputs['OutputBucketName']}/${OUTPUT_PREFIX}${input.runId}/`);
    assert.equal(input.input.literal, true);
    const tasks = agent!.tasks();
    assert.ok(tasks.length >= 1, 'the GPU stage ran through the ECS stand-in');
    assert.ok(
      tasks.every((t) => t.exitCode === 0 && t.environment['FANOUT_RUN_ID'] === input.runId),
      JSON.stringify(tasks.map((t) => [t.exitCode, t.stopReason])),
    );

    setRunner('native', { workers: false });
    const byId = (a: Record<string, unknown>, b: Record<string, unknown>) => Number(a['id'] as bigint) - Number(b['id'] as bigint);
    const got = (await readParquet(input.output).toRows()).sort(byId);
    const want = (await pipeline({ uri: file }).toRows()).sort(byId);
    assert.ok(want.length > 1000, `${want.length} rows`);
    assert.deepEqual(got, want);
  });

  it('a broken upload fails its execution through the Failure Lambda, which records failure.json', async () => {
    const key = `${INPUT_PREFIX}broken-${Date.now()}.parquet`;
    await s3.send(new PutObjectCommand({ Bucket: outputs['InputBucketName'], Key: key, Body: 'this is not a parquet file' }));
    const ex = await executionFor(key, 180_000);
    assert.equal(ex.status, 'FAILED');
    const runId = (JSON.parse(ex.input!) as { runId: string }).runId;
    const history = await sfn.send(new GetExecutionHistoryCommand({ executionArn: ex.executionArn!, maxResults: 1000 }));
    const names = (history.events ?? []).map((e) => e.stateEnteredEventDetails?.name).filter(Boolean);
    assert.ok(names.includes('RecordFailure'), `the Failure Lambda's state ran: ${names.join(', ')}`);
    const failure = await s3.send(new GetObjectCommand({ Bucket: outputs['WorkBucketName'], Key: `runs/${runId}/failure.json` }));
    const summary = JSON.parse(await failure.Body!.transformToString()) as { runId: string; status: string; error: string };
    assert.equal(summary.runId, runId);
    assert.equal(summary.status, 'FAILED');
    // The error names the uploaded object and says what is wrong with it.
    assert.ok(summary.error.includes(key) && /not a Parquet file|magic/i.test(summary.error), `failure.json: ${summary.error.slice(0, 800)}`);
  });
});

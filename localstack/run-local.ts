// `npm run local`: a long-running local stack on 127.0.0.1 — no Docker, no AWS account, no network.
// S3 (s3rver), the state machine behind a local Step Functions API, the Lambda handlers in worker
// threads, GPU tasks as child processes, and an EventBridge stand-in that starts a run for every
// Parquet file uploaded under s3://fanout-input/incoming/, printing its progress. Ctrl-C stops it.
//
//   npm run local                        the example pipeline, handlers from source
//   npm run local -- --app [cdk.out]     the synthesized CDK app (`npm run synth` first): its
//                                        template, rule and Lambda bundles (localstack/app-harness.ts)
//   npm run local -- --s3-dir .tmp/s3    keep the S3 data between runs
//   npm run local -- --pipeline my.ts     another pipeline module (default examples/pipeline.ts)
// Ctrl-C stops every running execution (StopExecution: ABORTED, nothing committed), then the stack.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SFNClient,
  StopExecutionCommand,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import { objectCreatedPattern } from '../cdk/fanout-pipeline.ts';
import { getS3ObjectOrNull, s3Client } from '../src/io/s3/index.ts';
import { startDashboard } from '../src/dashboard/server.ts';
import { startAppHarness } from './app-harness.ts';
import { startEventBridgeBridge, type EventBridgeBridge, type LocalRule, type StartedExecution } from './eventbridge.ts';
import { startLocalCloud, type LocalCloud } from './index.ts';
import { RunProgress } from './run-progress.ts';

const INPUT_BUCKET = 'fanout-input';
const OUTPUT_BUCKET = 'fanout-output';
const WORK_BUCKET = 'fanout-work';
const INPUT_PREFIX = 'incoming/';
const OUTPUT_PREFIX = 'results/';
const EXAMPLE = fileURLToPath(new URL('../examples/pipeline.ts', import.meta.url));

interface Running {
  cloud: LocalCloud;
  bridge: EventBridgeBridge;
  input: { bucket: string; prefix: string };
  output: string;
  work: string;
  stop(): Promise<void>;
}

/** The same rule the CDK construct deploys: S3 Object Created under the prefix -> StartExecution with { input, output, runId }. */
function exampleRule(stateMachineArn: string): LocalRule {
  return {
    name: 'fanout-local-input',
    arn: 'arn:aws:events:us-east-1:000000000000:rule/fanout-local-input',
    pattern: objectCreatedPattern(INPUT_BUCKET, INPUT_PREFIX, '.parquet'),
    targets: [
      {
        arn: stateMachineArn,
        inputTransformer: {
          InputPathsMap: { bucket: '$.detail.bucket.name', key: '$.detail.object.key', id: '$.id' },
          // literal: the uploaded key is read as exactly that object, even with glob characters in it.
          InputTemplate: `{"input":{"uri":"s3://<bucket>/<key>","literal":true},"output":"s3://${OUTPUT_BUCKET}/${OUTPUT_PREFIX}<id>/","runId":<id>}`,
        },
      },
    ],
  };
}

async function startFromSources(s3Dir: string | undefined, pipeline: string, onExecution: (e: StartedExecution) => void): Promise<Running> {
  const cloud = await startLocalCloud({
    pipeline,
    inputBucket: INPUT_BUCKET,
    workBucket: WORK_BUCKET,
    lambdaConcurrency: 2,
    ...(s3Dir ? { s3Dir } : {}),
  });
  try {
    const s3 = await s3Client();
    await s3.send(new CreateBucketCommand({ Bucket: OUTPUT_BUCKET })).catch((e: unknown) => {
      if (!/BucketAlready/.test(String((e as Error).name))) throw e;
    });
    const bridge = await startEventBridgeBridge({
      buckets: [INPUT_BUCKET],
      rules: [exampleRule(cloud.stateMachineArn)],
      sfnEndpoint: cloud.sfnEndpoint,
      stateMachineArn: cloud.stateMachineArn,
      onExecution,
      onEvent: (e, matched) => {
        const key = (e['detail'] as { object: { key: string } }).object.key;
        if (matched.length === 0) console.log(`  (s3://${INPUT_BUCKET}/${key} matches no rule: not under ${INPUT_PREFIX} or not .parquet)`);
      },
    });
    return {
      cloud,
      bridge,
      input: { bucket: INPUT_BUCKET, prefix: INPUT_PREFIX },
      output: `s3://${OUTPUT_BUCKET}/${OUTPUT_PREFIX}<runId>/`,
      work: WORK_BUCKET,
      async stop() {
        await bridge.stop();
        await cloud.stop();
      },
    };
  } catch (e) {
    await cloud.stop();
    throw e;
  }
}

async function startFromApp(cdkOut: string, s3Dir: string | undefined, onExecution: (e: StartedExecution) => void): Promise<Running> {
  const h = await startAppHarness({ cdkOut, pipeline: EXAMPLE, onExecution, ...(s3Dir ? { s3Dir } : {}) });
  const pattern = h.rules[0]?.pattern as { detail?: { bucket?: { name?: string[] }; object?: { key?: Record<string, string>[] } } } | undefined;
  const bucket = pattern?.detail?.bucket?.name?.[0] ?? h.cloud.inputBucket;
  const key = pattern?.detail?.object?.key?.[0];
  const prefix = key?.['prefix'] ?? key?.['wildcard']?.split('*')[0] ?? '';
  const template = h.rules[0]?.targets[0]?.inputTransformer?.InputTemplate ?? '';
  const output = /"output":"([^"]*)"/.exec(template)?.[1]?.replace('<id>', '<runId>') ?? '(results stay in the work bucket)';
  return { cloud: h.cloud, bridge: h.bridge, input: { bucket, prefix }, output, work: h.workBucket, stop: () => h.stop() };
}

/** Follows one execution: its plan, each stage's progress, then the committed output. */
async function follow(sfn: SFNClient, e: StartedExecution): Promise<void> {
  const input = JSON.parse(e.input) as { runId?: string; output?: string | null; input?: { uri?: string } };
  const tag = `[run ${(input.runId ?? e.executionArn.split(':').pop() ?? '').slice(0, 8)}]`;
  const t0 = Date.now();
  console.log(`${tag} started for ${input.input?.uri ?? 'an upload'}`);
  let seen = 0;
  const progress = new RunProgress(tag);
  for (;;) {
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn: e.executionArn }));
    let token: string | undefined;
    const page: HistoryEvent[] = [];
    do {
      const h = await sfn.send(new GetExecutionHistoryCommand({ executionArn: e.executionArn, maxResults: 1000, ...(token ? { nextToken: token } : {}) }));
      page.push(...(h.events ?? []));
      token = h.nextToken;
    } while (token);
    for (const line of progress.onEvents(page.slice(seen))) console.log(line);
    seen = page.length;
    if (d.status !== 'RUNNING') {
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (d.status === 'SUCCEEDED' && input.output) {
        const m = await getS3ObjectOrNull(`${input.output}_SUCCESS`);
        const manifest = m ? (JSON.parse(new TextDecoder().decode(m.bytes)) as { rows?: number; files?: unknown[] }) : null;
        console.log(
          `${tag} SUCCEEDED in ${secs} s: ${manifest?.rows ?? '?'} rows in ${manifest?.files?.length ?? '?'} file(s) -> ${input.output} (_SUCCESS written last)`,
        );
      } else if (d.status === 'SUCCEEDED') {
        console.log(`${tag} SUCCEEDED in ${secs} s`);
      } else {
        console.log(`${tag} ${d.status} after ${secs} s: ${d.error ?? ''} ${(d.cause ?? '').slice(0, 400)}`);
      }
      return;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** StopExecution for every running execution, each reported with its final status. */
async function stopExecutions(sfn: SFNClient, stateMachineArn: string): Promise<void> {
  const running = await sfn.send(new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING' }));
  for (const e of running.executions ?? []) {
    const executionArn = e.executionArn!;
    await sfn.send(new StopExecutionCommand({ executionArn, error: 'Interrupted', cause: 'npm run local was stopped (Ctrl-C)' }));
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    console.log(`[run ${(e.name ?? '').slice(0, 8)}] ${d.status ?? 'UNKNOWN'}: stopped by Ctrl-C before its output was committed`);
  }
}

async function main(): Promise<void> {
  // A local developer tool: the SDK's Node-version notice is noise here.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const { values } = parseArgs({
    options: { app: { type: 'string' }, 's3-dir': { type: 'string' }, pipeline: { type: 'string' }, 'dashboard-port': { type: 'string' } },
    allowPositionals: true,
    strict: false,
  });
  const pipeline = typeof values['pipeline'] === 'string' ? resolve(values['pipeline']) : EXAMPLE;
  // The run dashboard beside the stack: 8787 by default, 0 for any free port, 'off' for none.
  const dashboardArg = typeof values['dashboard-port'] === 'string' ? values['dashboard-port'] : '8787';
  const dashboardPort = dashboardArg === 'off' ? null : Number(dashboardArg);
  if (dashboardPort !== null && !(Number.isInteger(dashboardPort) && dashboardPort >= 0 && dashboardPort < 65536)) {
    throw new Error(`--dashboard-port must be a port number, 0 (any free port) or 'off', got '${dashboardArg}'`);
  }
  // `--app` alone means the default cloud assembly.
  const appArg = process.argv.includes('--app') ? (typeof values['app'] === 'string' ? values['app'] : 'cdk.out') : null;
  const s3Dir = typeof values['s3-dir'] === 'string' ? resolve(values['s3-dir']) : undefined;
  const following = new Set<Promise<void>>();
  let sfn: SFNClient | undefined;
  const early: StartedExecution[] = [];
  const onExecution = (e: StartedExecution): void => {
    // An upload can start a run while the stack is still starting: follow it once the client exists.
    if (!sfn) {
      early.push(e);
      return;
    }
    const p = follow(sfn, e).catch((err: unknown) => console.error(`progress of ${e.executionArn}: ${(err as Error).message}`));
    following.add(p);
    void p.finally(() => following.delete(p));
  };
  const running = appArg ? await startFromApp(resolve(appArg), s3Dir, onExecution) : await startFromSources(s3Dir, pipeline, onExecution);
  sfn = new SFNClient({ endpoint: running.cloud.sfnEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  for (const e of early.splice(0)) onExecution(e);
  const ep = running.cloud.s3Endpoint;
  // It reads the work bucket through this process's S3 client, which startLocalCloud pointed at the local S3.
  const dashboard = dashboardPort === null ? null : await startDashboard({ work: `s3://${running.work}`, port: dashboardPort });
  const where = `s3://${running.input.bucket}/${running.input.prefix}`;
  console.log(
    [
      '',
      `fanout local stack (${appArg ? `the synthesized app in ${appArg}` : `${pipeline === EXAMPLE ? 'examples/pipeline.ts' : pipeline}, handlers from source`}): nothing leaves 127.0.0.1`,
      `  S3 endpoint      ${ep}   (region us-east-1; any access key and secret: test/test as on LocalStack, or the shell's own)`,
      `  watched input    ${where}  (each new *.parquet starts a run)`,
      `  output           ${running.output}`,
      `  work bucket      s3://${running.work}/runs/<runId>/`,
      `  Step Functions   ${running.cloud.sfnEndpoint}  ${running.cloud.stateMachineArn}`,
      ...(dashboard ? [`  run dashboard    ${dashboard.url}  (also: npm run fanout -- runs list --work s3://${running.work})`] : []),
      '',
      'Upload a generated file:',
      `  npx tsx --conditions=development examples/upload.ts --endpoint ${ep} --bucket ${running.input.bucket} --prefix ${running.input.prefix}`,
      'or your own, with the AWS CLI:',
      `  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws s3 cp data.parquet ${where} --endpoint-url ${ep} --region us-east-1`,
      'Read a result:',
      `  AWS_ENDPOINT_URL_S3=${ep} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test npx tsx --conditions=development -e "import('fanout').then(f => f.readParquet('${running.output.replace('<runId>', 'RUN_ID')}').show())"`,
      '',
      'Watching for uploads. Ctrl-C stops everything.',
    ].join('\n'),
  );

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping…');
    // Runs in flight stop first, through the API as a user's StopExecution would: they end ABORTED
    // before Finalize, so nothing is committed.
    if (sfn)
      await stopExecutions(sfn, running.cloud.stateMachineArn).catch((e: unknown) => console.error(`stopping the running executions: ${(e as Error).message}`));
    sfn?.destroy();
    await dashboard?.close();
    await running.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  // Keep the process alive: the servers' handles are unref'd by design.
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});

// `fanout/local`: the cloud path on one machine, with real protocols on 127.0.0.1 — an S3 server
// (s3rver, a child process), the generated state machine run by an Amazon States Language
// interpreter behind the Step Functions API, the real Lambda handlers in worker threads with their
// timeouts, and the real ECS entrypoint as a child process per task.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isAbsolute, resolve } from 'node:path';
import { ECS_FAILURE_PREFIX } from '../src/aws/run.ts';
import { buildStateMachineDefinition, type AslDefinition } from '../src/aws/state-machine.ts';
import type { AwsRunnerOptions } from '../src/runners/aws.ts';
import { childExecArgv } from '../src/runners/ts-worker.ts';
import { LocalLambda } from './lambda-runtime.ts';
import { startS3Server, type S3Server } from './s3-server.ts';
import { startLocalStepFunctions, type EcsTaskParams, type LocalStepFunctions } from './stepfunctions/index.ts';

export interface LocalCloudOptions {
  /** Path of the user's pipeline module (registers its UDFs when imported; default export builds the DataFrame). */
  pipeline: string;
  inputBucket?: string;
  workBucket?: string;
  /** Lambda execution environments per function (partitions in flight). Default 2. */
  lambdaConcurrency?: number;
  /** Stage Lambda timeout (s). Default 120. */
  stageTimeoutSeconds?: number;
  /** Use the Distributed Map form of the definition (as in AWS); the harness normalizes it. Default true. */
  distributed?: boolean;
  /** Directory for S3 data (kept); default a temp dir removed on stop. */
  s3Dir?: string;
  /** A definition to run instead of the generated one (e.g. the synthesized app's). */
  definition?: AslDefinition;
  /**
   * With a given definition: each function's ARN in it, and optionally the handler module to run
   * (e.g. a bundle from cdk.out; default lambdas/<name>).
   */
  functions?: Partial<Record<FunctionRole, { arn: string; file?: string; timeoutSeconds?: number }>>;
  /** The GPU task's entrypoint (default lambdas/ecs-task); e.g. the bundled image entry. */
  ecsEntry?: string;
  /** Extra environment for the Lambda and ECS workers. */
  env?: Record<string, string>;
}

export interface LocalCloud {
  s3Endpoint: string;
  inputBucket: string;
  workBucket: string;
  stateMachineArn: string;
  sfnEndpoint: string;
  /** For `setRunner('aws', cloud.runnerOptions)`. */
  runnerOptions: AwsRunnerOptions;
  /** Invocation counts per function (plan, stage, finalize, failure), ECS tasks started (fargateTasks: those launched on Fargate) and Lambda environments (threads) started. */
  stats(): Record<string, number>;
  /** S3 requests the local server answered, by operation and by operation + bucket/key shape; `reset` clears them. */
  s3Requests(reset?: boolean): Promise<Record<string, number>>;
  /** Ends everything: executions aborted, queued invocations rejected, threads and child processes ended (awaited). */
  stop(): Promise<void>;
}

type FunctionRole = 'plan' | 'stage' | 'finalize' | 'failure';

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const TEST_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export const LOCAL_ARNS = {
  plan: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:fanout-plan`,
  stage: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:fanout-stage`,
  finalize: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:fanout-finalize`,
  failure: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:fanout-failure`,
  cluster: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/fanout-local`,
  taskDefinition: `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/fanout-gpu:1`,
  fargateTaskDefinition: `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/fanout-fargate:1`,
};

/** lambdas/<name>.ts from the sources; in the built package (one flat directory, scripts/build.ts) the sibling <name>.js. */
function entry(name: string): string {
  const here = new URL(import.meta.url);
  return new URL(here.pathname.endsWith('.ts') ? `../lambdas/${name}.ts` : `./${name}.js`, here).href;
}

/** Starts the local cloud. `stop()` leaves no process behind. */
export async function startLocalCloud(opts: LocalCloudOptions): Promise<LocalCloud> {
  const inputBucket = opts.inputBucket ?? 'fanout-input';
  const workBucket = opts.workBucket ?? 'fanout-work';
  const pipeline = isAbsolute(opts.pipeline) ? opts.pipeline : resolve(opts.pipeline);
  const s3Opts: Parameters<typeof startS3Server>[0] = { buckets: [inputBucket, workBucket] };
  if (opts.s3Dir) s3Opts.dir = opts.s3Dir;
  const s3: S3Server = await startS3Server(s3Opts);

  // This process's S3 clients (the runner, readParquet('s3://…')) talk to the local server too.
  const saved: Record<string, string | undefined> = {};
  const setEnv = (k: string, v: string): void => {
    saved[k] = process.env[k];
    process.env[k] = v;
  };
  setEnv('AWS_ENDPOINT_URL_S3', s3.endpoint);
  if (!process.env['AWS_ACCESS_KEY_ID']) setEnv('AWS_ACCESS_KEY_ID', TEST_CREDENTIALS.accessKeyId);
  if (!process.env['AWS_SECRET_ACCESS_KEY']) setEnv('AWS_SECRET_ACCESS_KEY', TEST_CREDENTIALS.secretAccessKey);
  if (!process.env['AWS_REGION']) setEnv('AWS_REGION', REGION);

  const workerEnv: Record<string, string | undefined> = {
    ...process.env,
    FANOUT_WORK_BUCKET: workBucket,
    FANOUT_PIPELINE: pipeline,
    FANOUT_PROGRESS: '0',
    // Each worker would repeat the SDK's Node 20 notice; the parent process shows it once.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...opts.env,
  };
  const concurrency = opts.lambdaConcurrency ?? 2;
  const stageTimeout = opts.functions?.stage?.timeoutSeconds ?? opts.stageTimeoutSeconds ?? 120;
  const f = opts.functions ?? {};
  const timeouts: Record<FunctionRole, number> = {
    plan: f.plan?.timeoutSeconds ?? 120,
    stage: stageTimeout,
    finalize: f.finalize?.timeoutSeconds ?? 300,
    failure: f.failure?.timeoutSeconds ?? 60,
  };
  const lambda = (role: FunctionRole, n: number): LocalLambda =>
    new LocalLambda(`fanout-${role}`, f[role]?.file ?? entry(role), { timeoutSeconds: timeouts[role], concurrency: n, env: workerEnv });
  const fns = { plan: lambda('plan', 1), stage: lambda('stage', concurrency), finalize: lambda('finalize', 1), failure: lambda('failure', 1) };
  const arns = {
    ...LOCAL_ARNS,
    ...Object.fromEntries(Object.entries(f).map(([role, v]) => [role, v!.arn])),
  } as typeof LOCAL_ARNS;
  const definition =
    opts.definition ??
    buildStateMachineDefinition({
      planFunctionArn: arns.plan,
      stageFunctionArn: arns.stage,
      finalizeFunctionArn: arns.finalize,
      failureFunctionArn: arns.failure,
      ecs: {
        clusterArn: LOCAL_ARNS.cluster,
        taskDefinitionArn: LOCAL_ARNS.taskDefinition,
        containerName: 'fanout-gpu',
        subnets: ['subnet-local'],
        securityGroups: ['sg-local'],
      },
      // CPU stages beyond Lambda's limits: the same ECS entrypoint, one child process per partition.
      fargate: {
        clusterArn: LOCAL_ARNS.cluster,
        containerName: 'fanout-cpu',
        subnets: ['subnet-local'],
        securityGroups: ['sg-local'],
        assignPublicIp: false,
        taskDefinitions: {},
        fallbackTaskDefinitionArn: LOCAL_ARNS.fargateTaskDefinition,
        timeoutSeconds: Math.max(stageTimeout, 900),
      },
      distributed: opts.distributed ?? true,
      lambdaTimeoutSeconds: stageTimeout,
    });

  let ecsTasks = 0;
  let fargateTasks = 0;
  let stopped = false;
  // Each running ECS child and a promise of its exit, so stop() can wait for it to be gone.
  const children = new Map<import('node:child_process').ChildProcess, Promise<void>>();
  const runEcsTask = (p: EcsTaskParams): Promise<void> =>
    new Promise((resolveTask, rejectTask) => {
      if (stopped) {
        rejectTask(Object.assign(new Error('ECS task not started: the local cloud was stopped'), { name: 'States.TaskFailed' }));
        return;
      }
      ecsTasks++;
      if (p.launchType === 'FARGATE') fargateTasks++;
      // The real ECS entrypoint in its own process, the container overrides as its environment.
      const ecsFile = opts.ecsEntry ?? fileURLToPath(entry('ecs-task'));
      // The ECS task imports the user's pipeline: it needs the loader this process has (or tsx).
      const child = spawn(process.execPath, [...childExecArgv([pipeline, ecsFile]), ecsFile], {
        env: { ...workerEnv, ...p.environment },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.set(
        child,
        new Promise<void>((r) => {
          child.once('exit', () => r());
          child.once('error', () => r());
        }),
      );
      // The tail of stderr, and the error's own first line: a stack's last lines drop the message.
      let stderr = '';
      let partial = '';
      let errorLine = '';
      let errorLike = '';
      const scan = (line: string): void => {
        if (line.startsWith(ECS_FAILURE_PREFIX)) errorLine = line.slice(ECS_FAILURE_PREFIX.length);
        else if (!errorLike && /^[\w.]*(Error|Exception)\b/.test(line)) errorLike = line;
      };
      child.stderr!.on('data', (d: Buffer) => {
        const text = d.toString();
        stderr = (stderr + text).slice(-4000);
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        for (const l of lines) scan(l);
      });
      const onAbort = (): void => {
        child.kill('SIGKILL');
      };
      p.signal.addEventListener('abort', onAbort, { once: true });
      child.on('error', (e) => {
        children.delete(child);
        rejectTask(e);
      });
      child.on('exit', (code, signal) => {
        children.delete(child);
        p.signal.removeEventListener('abort', onAbort);
        if (code === 0) resolveTask();
        else {
          scan(partial);
          const first = errorLine || errorLike;
          const tail = stderr
            .trim()
            .split('\n')
            .slice(-5)
            .filter((l) => l !== first && !l.startsWith(ECS_FAILURE_PREFIX));
          const text = [first, ...tail].filter(Boolean).join(' | ');
          rejectTask(Object.assign(new Error(`ECS task exited with ${signal ?? `code ${code}`}: ${text}`), { name: 'States.TaskFailed' }));
        }
      });
    });

  let sfn: LocalStepFunctions;
  try {
    sfn = await startLocalStepFunctions({
      definition,
      handlers: {
        lambdas: {
          [arns.plan]: { handler: (e) => fns.plan.invoke(e), timeoutSeconds: timeouts.plan },
          [arns.stage]: { handler: (e) => fns.stage.invoke(e), timeoutSeconds: timeouts.stage },
          [arns.finalize]: { handler: (e) => fns.finalize.invoke(e), timeoutSeconds: timeouts.finalize },
          [arns.failure]: { handler: (e) => fns.failure.invoke(e), timeoutSeconds: timeouts.failure },
        },
        runEcsTask,
      },
    });
  } catch (e) {
    await Promise.all(Object.values(fns).map((f) => f.stop()));
    await s3.stop();
    throw e;
  }

  let stopping: Promise<void> | null = null;
  return {
    s3Endpoint: s3.endpoint,
    inputBucket,
    workBucket,
    stateMachineArn: sfn.stateMachineArn,
    sfnEndpoint: sfn.endpoint,
    runnerOptions: {
      stateMachineArn: sfn.stateMachineArn,
      workBucket,
      endpoint: sfn.endpoint,
      region: REGION,
      credentials: TEST_CREDENTIALS,
      pipeline: pathUrl(pipeline),
      pollIntervalMs: 100,
    },
    stats: () => ({
      plan: fns.plan.invocations,
      stage: fns.stage.invocations,
      finalize: fns.finalize.invocations,
      failure: fns.failure.invocations,
      ecsTasks,
      fargateTasks,
      lambdaEnvironments: Object.values(fns).reduce((n, f) => n + f.environmentsStarted, 0),
    }),
    s3Requests: (reset) => s3.requests(reset),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        // Executions first (aborted, the API closed), so no state starts another task; then the
        // Lambda runtimes reject what is queued and end what runs, and the ECS children are killed.
        await sfn.stop();
        await Promise.all(Object.values(fns).map((f) => f.stop()));
        for (const c of children.keys()) c.kill('SIGKILL');
        await Promise.all(children.values());
        await s3.stop();
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      })();
      return stopping;
    },
  };
}

function pathUrl(p: string): string {
  return new URL(`file://${p}`).href;
}

export { startS3Server } from './s3-server.ts';
export { startLocalStepFunctions } from './stepfunctions/index.ts';

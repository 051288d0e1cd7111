// An ECS stand-in for Docker-less emulators (MiniStack without Docker). It is NOT an ECS agent and
// runs no container: it polls the emulator's ECS API for RUNNING tasks, runs each task's fanout GPU
// command with the project's own ECS entrypoint (lambdas/ecs-task.ts) as a local Node process with
// the task's environment (task definition, then RunTask container overrides), and reports the exit
// through StopTask, which is how such an emulator's `ecs:runTask.sync` learns the task ended.
//
// What it does in place of the image: the task definition names an image that was never built
// (cdk/emulator.ts, EMULATOR_STANDIN_IMAGE); its FANOUT_PIPELINE (/app/dist/pipeline.js) is a path
// inside that image, so the stand-in points FANOUT_PIPELINE at the pipeline's source (`pipeline`),
// as the app harness does. A container `command` / `entryPoint` cannot be honoured: such a task is
// stopped at once with a reason that says so.
//
// Exit codes: StopTask carries a reason, not an exit code. MiniStack records exit code 0 and stop
// code UserInitiated for every StopTask, and its runTask.sync succeeds whatever the task did (AWS
// fails the state when the essential container exits non-zero). A failed task therefore shows here
// as a StopTask reason starting `fanout ecs task failed:` and, in the run, as the missing shards
// that Finalize (or the next stage) reports.
//
//   npx tsx --conditions=development localstack/ecs-agent.ts --endpoint http://127.0.0.1:4566 --pipeline examples/pipeline.ts
import { type ChildProcess, spawn } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type ContainerDefinition,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  type KeyValuePair,
  ListClustersCommand,
  ListTasksCommand,
  StopTaskCommand,
  type Task,
} from '@aws-sdk/client-ecs';
import { ECS_FAILURE_PREFIX } from '../src/aws/run.ts';
import { childExecArgv } from '../src/runners/ts-worker.ts';

export interface EcsAgentOptions {
  /** The emulator's endpoint (every service on one port). */
  endpoint: string;
  /** The pipeline's source module, imported by each task in place of the image's bundle. */
  pipeline: string;
  /** Clusters to watch (names or ARNs). @default every cluster ListClusters returns, on each poll */
  clusters?: readonly string[];
  /** Only tasks with a container of this name are run (others are left alone). @default 'fanout-gpu' */
  containerName?: string;
  /** @default lambdas/ecs-task.ts */
  entry?: string;
  /** @default 500 */
  pollIntervalMs?: number;
  /** @default us-east-1 */
  region?: string;
  /** @default test / test (the emulators' convention) */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Extra environment of every task process (after the task's own). */
  env?: Record<string, string>;
  /** One line per event (task started, stopped, a task's output). @default written to stderr */
  log?: (line: string) => void;
}

export interface EcsAgentTask {
  taskArn: string;
  /** The local process (undefined when the task was refused). */
  pid?: number;
  cluster: string;
  environment: Record<string, string>;
  startedAt: number;
  /** Set once the process ended. */
  exitCode?: number | null;
  signal?: NodeJS.Signals | null;
  /** The reason sent with StopTask. */
  stopReason?: string;
}

export interface EcsAgent {
  /** Every task this agent ran or is running, in start order. */
  tasks(): readonly EcsAgentTask[];
  /** Stops polling, kills the running task processes (process groups) and waits for them. */
  stop(): Promise<void>;
}

const DEFAULT_CONTAINER = 'fanout-gpu';
/** AWS's stop reason when the essential container ends by itself. */
const EXITED_REASON = 'Essential container in task exited';

/** lambdas/ecs-task.ts from the sources; in the built package (one flat directory, scripts/build.ts) the sibling ecs-task.js. */
function defaultEntry(): string {
  const here = new URL(import.meta.url);
  return fileURLToPath(new URL(here.pathname.endsWith('.ts') ? '../lambdas/ecs-task.ts' : './ecs-task.js', here));
}

const envRecord = (pairs: readonly KeyValuePair[] | undefined): Record<string, string> =>
  Object.fromEntries((pairs ?? []).filter((p) => p.name).map((p) => [p.name!, p.value ?? '']));

/** Starts polling `endpoint`'s ECS for RUNNING tasks and runs each one as a local process. */
export function startEcsAgent(opts: EcsAgentOptions): EcsAgent {
  const region = opts.region ?? 'us-east-1';
  const credentials = opts.credentials ?? { accessKeyId: 'test', secretAccessKey: 'test' };
  const ecs = new ECSClient({ endpoint: opts.endpoint, region, credentials, maxAttempts: 2 });
  const containerName = opts.containerName ?? DEFAULT_CONTAINER;
  const entry = opts.entry ?? defaultEntry();
  const pipeline = isAbsolute(opts.pipeline) ? opts.pipeline : resolve(opts.pipeline);
  const pollMs = opts.pollIntervalMs ?? 500;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const taskDefs = new Map<string, ContainerDefinition[]>();
  const all: EcsAgentTask[] = [];
  const seen = new Set<string>();
  const running = new Map<string, { child: ChildProcess; exited: Promise<void>; record: EcsAgentTask }>();
  let stopped = false;
  let lastError = '';

  const containersOf = async (taskDefinitionArn: string): Promise<ContainerDefinition[]> => {
    let defs = taskDefs.get(taskDefinitionArn);
    if (!defs) {
      const r = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: taskDefinitionArn }));
      defs = r.taskDefinition?.containerDefinitions ?? [];
      taskDefs.set(taskDefinitionArn, defs);
    }
    return defs;
  };

  const stopTask = async (cluster: string, taskArn: string, reason: string): Promise<void> => {
    // StopTask's reason is at most 255 characters.
    await ecs.send(new StopTaskCommand({ cluster, task: taskArn, reason: reason.slice(0, 255) }));
  };

  const start = async (cluster: string, task: Task): Promise<void> => {
    const taskArn = task.taskArn!;
    const defs = await containersOf(task.taskDefinitionArn!);
    const def = defs.find((d) => d.name === containerName);
    seen.add(taskArn);
    if (!def) return; // not a fanout task: some other agent's business
    const override = task.overrides?.containerOverrides?.find((o) => o.name === containerName);
    const command = override?.command ?? def.command;
    if ((command && command.length > 0) || (def.entryPoint && def.entryPoint.length > 0)) {
      const reason = `fanout ecs stand-in: cannot run container ${containerName}'s command/entryPoint (${JSON.stringify(command ?? def.entryPoint)}): it runs only the fanout ECS entrypoint`;
      log(`ecs-agent: ${taskArn}: ${reason}`);
      all.push({ taskArn, cluster, environment: {}, startedAt: Date.now(), exitCode: null, stopReason: reason });
      await stopTask(cluster, taskArn, reason);
      return;
    }
    const environment = { ...envRecord(def.environment), ...envRecord(override?.environment) };
    const record: EcsAgentTask = { taskArn, cluster, environment, startedAt: Date.now() };
    all.push(record);
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_ENDPOINT_URL: opts.endpoint,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_REGION: region,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...environment,
      // The image's bundle path means nothing here: the pipeline's source registers the same UDFs.
      FANOUT_PIPELINE: pipeline,
      ...opts.env,
    };
    // Its own process group, so stop() ends whatever the task started too.
    const child = spawn(process.execPath, [...childExecArgv([pipeline, entry]), entry], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) record.pid = child.pid;
    const id = taskArn.split('/').pop();
    log(`ecs-agent: task ${id} started (pid ${child.pid}): ${entry} with ${Object.keys(environment).join(', ')}`);
    let errorLine = '';
    let tail = '';
    const forward = (stream: NodeJS.ReadableStream): void => {
      let partial = '';
      stream.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop()!;
        for (const l of lines) {
          if (l.startsWith(ECS_FAILURE_PREFIX) && !errorLine) errorLine = l;
          tail = l || tail;
          log(`ecs-agent: task ${id}: ${l}`);
        }
      });
    };
    forward(child.stdout!);
    forward(child.stderr!);
    const exited = new Promise<void>((done) => {
      child.once('close', (code, signal) => {
        record.exitCode = code;
        record.signal = signal;
        const reason = code === 0 ? EXITED_REASON : errorLine || `${ECS_FAILURE_PREFIX}exited with ${signal ?? `code ${code}`}${tail ? `: ${tail}` : ''}`;
        record.stopReason = reason;
        log(`ecs-agent: task ${id} exited with ${signal ?? `code ${code}`}`);
        const report = stopped ? Promise.resolve() : stopTask(cluster, taskArn, reason);
        report
          .catch((e: unknown) => log(`ecs-agent: StopTask ${taskArn} failed: ${(e as Error).message}`))
          .finally(() => {
            running.delete(taskArn);
            done();
          });
      });
      child.once('error', (e) => log(`ecs-agent: task ${id} could not start: ${e.message}`));
    });
    running.set(taskArn, { child, exited, record });
  };

  const killGroup = (child: ChildProcess): void => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };

  const poll = async (): Promise<void> => {
    const clusters = opts.clusters ?? (await ecs.send(new ListClustersCommand({}))).clusterArns ?? [];
    for (const cluster of clusters) {
      const arns: string[] = [];
      let nextToken: string | undefined;
      do {
        const r = await ecs.send(new ListTasksCommand({ cluster, desiredStatus: 'RUNNING', ...(nextToken ? { nextToken } : {}) }));
        arns.push(...(r.taskArns ?? []));
        nextToken = r.nextToken;
      } while (nextToken);
      const fresh = arns.filter((a) => !seen.has(a));
      // Tasks this agent runs that ECS stopped (StopExecution, a state timeout): end their processes.
      const mine = [...running.keys()].filter((a) => running.get(a)!.record.cluster === cluster && !arns.includes(a));
      for (let i = 0; i < fresh.length; i += 100) {
        const r = await ecs.send(new DescribeTasksCommand({ cluster, tasks: fresh.slice(i, i + 100) }));
        for (const t of r.tasks ?? []) if (t.taskArn && t.lastStatus === 'RUNNING' && !stopped) await start(cluster, t);
      }
      for (const a of mine) {
        const r = running.get(a);
        if (r && r.record.exitCode === undefined) {
          log(`ecs-agent: task ${a.split('/').pop()} was stopped in ECS: killing its process`);
          killGroup(r.child);
        }
      }
    }
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        await poll();
        lastError = '';
      } catch (e) {
        // The emulator restarting or going away: say so once, keep polling until stop().
        const msg = (e as Error).message;
        if (msg !== lastError) log(`ecs-agent: polling ${opts.endpoint} failed: ${msg}`);
        lastError = msg;
      }
      if (!stopped) await new Promise((r) => setTimeout(r, pollMs));
    }
  })();

  let stopping: Promise<void> | null = null;
  return {
    tasks: () => all,
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await loop;
        for (const r of running.values()) killGroup(r.child);
        await Promise.all([...running.values()].map((r) => r.exited));
        ecs.destroy();
      })();
      return stopping;
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      endpoint: { type: 'string', default: process.env['AWS_ENDPOINT_URL'] ?? 'http://127.0.0.1:4566' },
      pipeline: { type: 'string', default: 'examples/pipeline.ts' },
      cluster: { type: 'string', multiple: true },
      region: { type: 'string', default: process.env['AWS_REGION'] ?? 'us-east-1' },
    },
  });
  const agent = startEcsAgent({
    endpoint: values.endpoint,
    pipeline: values.pipeline,
    region: values.region,
    ...(values.cluster ? { clusters: values.cluster } : {}),
  });
  const end = (): void => {
    agent.stop().then(() => process.exit(0));
  };
  // Before the line that says it is watching: a supervisor that signals on seeing it gets a clean stop.
  process.once('SIGINT', end);
  process.once('SIGTERM', end);
  console.error(`ecs-agent: watching ${values.endpoint} for RUNNING fanout tasks (Ctrl-C to stop)`);
}

// MiniStack (PyPI `ministack`, a LocalStack-compatible emulator: every service on one port, Node
// Lambdas as local processes, no Docker needed) from localstack/.venv, and the CDK app deployed to
// it (or to any LocalStack-compatible endpoint) with the CDK CLI. Used by localstack/emulator.test.ts
// (`npm run test:emulator`).
//
// Endpoint resolution without DNS tricks: every AWS SDK call of the CDK CLI goes to
// AWS_ENDPOINT_URL=http://127.0.0.1:<port>. With an IP address as the endpoint the SDK's S3 rules
// address buckets path-style (a virtual host `<bucket>.127.0.0.1` cannot exist), so asset
// publishing needs neither `*.localhost.localstack.cloud` nor a patched CLI (cdklocal).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EMULATOR_ACCOUNT = '000000000000';
export const EMULATOR_REGION = 'us-east-1';

/** localstack/.venv, created and filled by scripts/python-venv.sh when missing; its path. */
export function ensurePythonVenv(): string {
  try {
    const out = execFileSync('bash', [join(ROOT, 'localstack/scripts/python-venv.sh')], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
    return out.trim().split('\n').pop()!;
  } catch (e) {
    throw new Error(`localstack/scripts/python-venv.sh failed (see its message above): ${(e as Error).message}`);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}

export interface MiniStack {
  endpoint: string;
  /** MiniStack's process group: the server and the Lambda processes it starts. */
  pgid: number;
  /** Its temp dir (TMPDIR: Lambda code, logs) and log file. */
  dir: string;
  log: string;
  /** Ends the process group (SIGTERM, then SIGKILL after 5 s) and waits for the server to exit. */
  stop(): Promise<void>;
}

/** The environment that points the AWS CLI / SDK / CDK CLI at an emulator, without the caller's AWS settings. */
export function emulatorEnv(endpoint: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!/^(AWS_|CDK_)/.test(k)) env[k] = v;
  return {
    ...env,
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: EMULATOR_REGION,
    AWS_DEFAULT_REGION: EMULATOR_REGION,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    CDK_DEFAULT_ACCOUNT: EMULATOR_ACCOUNT,
    CDK_DEFAULT_REGION: EMULATOR_REGION,
    CDK_DISABLE_VERSION_CHECK: '1',
  };
}

/** Starts MiniStack from `venv` on a free 127.0.0.1 port, in its own process group; resolves once it answers. */
export async function startMiniStack(opts: { venv: string; dir: string; port?: number; readyTimeoutMs?: number }): Promise<MiniStack> {
  const python = join(opts.venv, 'bin', 'python');
  if (!existsSync(python)) throw new Error(`no Python in ${opts.venv}: run localstack/scripts/python-venv.sh`);
  const port = opts.port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${port}`;
  mkdirSync(opts.dir, { recursive: true });
  const log = join(opts.dir, 'ministack.log');
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(python, ['-m', 'ministack'], {
      env: { ...emulatorEnv(endpoint), GATEWAY_PORT: String(port), BIND_HOST: '127.0.0.1', TMPDIR: opts.dir, LOG_LEVEL: 'WARNING' },
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
  const pgid = child.pid!;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const stop = async (): Promise<void> => {
    const signal = (s: NodeJS.Signals): void => {
      try {
        process.kill(-pgid, s);
      } catch {
        // the group is gone
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    // The server is gone; its Lambda processes (same group) may outlive it by a moment.
    signal('SIGKILL');
  };
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (gone) throw new Error(`MiniStack exited at start; its log (${log}):\n${readFileSync(log, 'utf8').slice(-3000)}`);
    try {
      const r = await fetch(`${endpoint}/_ministack/ready`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `MiniStack did not answer at ${endpoint} within ${opts.readyTimeoutMs ?? 60_000} ms; its log (${log}):\n${readFileSync(log, 'utf8').slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { endpoint, pgid, dir: opts.dir, log, stop };
}

/** Runs a command in its own process group; rejects with its output's tail on a non-zero exit or after `timeoutMs` (the group killed). */
function runCommand(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string }): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    const take = (d: Buffer): void => {
      out += d.toString();
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, opts.timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveRun(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${signal ?? `code ${code}`}:\n${out.slice(-6000)}`));
    });
  });
}

export interface DeployedApp {
  /** The stack's outputs (InputBucketName, OutputBucketName, WorkBucketName, StateMachineArn, InputPrefix). */
  outputs: Record<string, string>;
  /** What `cdk synth` printed (the emulator-mode notes among it). */
  synthOutput: string;
}

/**
 * Synthesizes the app once with `-c fanout:emulator=true` into `assembly`, then bootstraps the
 * emulator's account and deploys the stack from that assembly with the CDK CLI.
 */
export async function deployApp(opts: { endpoint: string; assembly: string; stack?: string; context?: Record<string, string> }): Promise<DeployedApp> {
  const env = emulatorEnv(opts.endpoint);
  const ctx = Object.entries({ 'fanout:emulator': 'true', ...opts.context }).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const stack = opts.stack ?? 'FanoutExample';
  const minutes = 60_000;
  const synthOutput = await runCommand('npx', ['cdk', 'synth', stack, '--quiet', '--no-notices', '--output', opts.assembly, ...ctx], {
    env,
    timeoutMs: 5 * minutes,
  });
  await runCommand('npx', ['cdk', 'bootstrap', '--app', opts.assembly, '--no-notices', `aws://${EMULATOR_ACCOUNT}/${EMULATOR_REGION}`], {
    env,
    timeoutMs: 3 * minutes,
  });
  const outputsFile = join(opts.assembly, 'emulator-outputs.json');
  await runCommand('npx', ['cdk', 'deploy', stack, '--app', opts.assembly, '--require-approval', 'never', '--no-notices', '--outputs-file', outputsFile], {
    env,
    timeoutMs: 5 * minutes,
  });
  const all = JSON.parse(readFileSync(outputsFile, 'utf8')) as Record<string, Record<string, string>>;
  const outputs = all[stack];
  if (!outputs) throw new Error(`cdk deploy wrote no outputs for ${stack} to ${outputsFile}`);
  return { outputs, synthOutput };
}

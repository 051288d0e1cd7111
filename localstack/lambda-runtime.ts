// Runs a Lambda handler module locally the way Lambda does: each invocation in its own execution
// environment (a worker thread, reused warm, one invocation at a time), up to `concurrency` at
// once, with the function's timeout enforced by terminating the environment.
import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../src/runners/ts-worker.ts';

export class LambdaError extends Error {
  constructor(name: string, message: string, stack?: string) {
    super(message);
    this.name = name;
    if (stack) this.stack = stack;
  }
}

interface Env {
  worker: Worker;
  ready: Promise<void>;
  busy: boolean;
}

let nextId = 1;

function startWorker(file: string, env: Record<string, string | undefined>): Worker {
  const url = new URL(import.meta.url);
  // Built, every file of the package is in one directory (scripts/build.ts): lambda-worker.js is a sibling.
  const entry = new URL(`./lambda-worker${url.pathname.endsWith('.ts') ? '.ts' : '.js'}`, url);
  // The handler and the pipeline it imports are the user's modules: TypeScript ones need a loader.
  const modules = [file, env['FANOUT_PIPELINE']].filter((m): m is string => !!m);
  return startTsWorker(entry, { workerData: { file }, env, modules });
}

export class LocalLambda {
  private envs: Env[] = [];
  private waiting: { wake: () => void; fail: (e: Error) => void }[] = [];
  private stopped = false;
  invocations = 0;
  /** Execution environments (worker threads) started so far. */
  environmentsStarted = 0;

  constructor(
    readonly functionName: string,
    /** file URL or path of the handler module (exports `handler`). */
    readonly file: string,
    readonly opts: { timeoutSeconds: number; concurrency: number; env?: Record<string, string | undefined> },
  ) {}

  private stoppedError(): LambdaError {
    return new LambdaError('Lambda.ServiceException', `${this.functionName}: the local Lambda runtime was stopped`);
  }

  private spawn(): Env {
    // After stop() nothing may start: a stopped harness must leave no thread behind.
    if (this.stopped) throw this.stoppedError();
    this.environmentsStarted++;
    const worker = startWorker(this.file, { ...process.env, ...this.opts.env });
    let ready!: () => void;
    let failed!: (e: Error) => void;
    const env: Env = {
      worker,
      busy: true,
      ready: new Promise<void>((res, rej) => {
        ready = res;
        failed = rej;
      }),
    };
    const onReady = (m: { ready?: boolean }): void => {
      if (m.ready) {
        worker.off('message', onReady);
        ready();
      }
    };
    worker.on('message', onReady);
    worker.once('error', (e) => failed(e));
    // Terminated before it was ready (stop() during a cold start): its invocation must not wait forever.
    worker.once('exit', (code) => failed(new Error(`exited with code ${code} before it was ready`)));
    this.envs.push(env);
    return env;
  }

  private async acquire(): Promise<Env> {
    for (;;) {
      if (this.stopped) throw this.stoppedError();
      const free = this.envs.find((e) => !e.busy);
      if (free) {
        free.busy = true;
        return free;
      }
      if (this.envs.length < this.opts.concurrency) return this.spawn();
      await new Promise<void>((wake, fail) => this.waiting.push({ wake, fail }));
    }
  }

  private release(env: Env, dead: boolean): void {
    if (dead) this.envs = this.envs.filter((e) => e !== env);
    else env.busy = false;
    this.waiting.shift()?.wake();
  }

  /** Invokes the handler; rejects with the handler's error (name kept for Retry/Catch) or a timeout. */
  async invoke(event: unknown): Promise<unknown> {
    this.invocations++;
    const env = await this.acquire();
    try {
      await env.ready;
    } catch (e) {
      this.release(env, true);
      if (this.stopped) throw this.stoppedError();
      throw new LambdaError('Lambda.ServiceException', `${this.functionName}: could not start: ${(e as Error).message}`);
    }
    const id = nextId++;
    const timeoutMs = this.opts.timeoutSeconds * 1000;
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      const finish = (dead: boolean, f: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        env.worker.off('message', onMessage);
        env.worker.off('error', onError);
        env.worker.off('exit', onExit);
        if (dead) void env.worker.terminate();
        this.release(env, dead);
        f();
      };
      const onMessage = (m: { id?: number; ok?: boolean; result?: unknown; error?: { name: string; message: string; stack: string } }): void => {
        if (m.id !== id) return;
        if (m.ok) finish(false, () => resolve(m.result));
        else finish(false, () => reject(new LambdaError(m.error!.name, m.error!.message, m.error!.stack)));
      };
      const onError = (e: Error): void => finish(true, () => reject(new LambdaError('Lambda.Unknown', `${this.functionName} crashed: ${e.message}`)));
      const onExit = (code: number): void =>
        finish(true, () => reject(this.stopped ? this.stoppedError() : new LambdaError('Lambda.Unknown', `${this.functionName} exited with code ${code}`)));
      const timer = setTimeout(
        () => finish(true, () => reject(new LambdaError('States.Timeout', `${this.functionName} timed out after ${this.opts.timeoutSeconds} s`))),
        timeoutMs,
      );
      env.worker.on('message', onMessage);
      env.worker.once('error', onError);
      env.worker.once('exit', onExit);
      env.worker.postMessage({ id, event, functionName: this.functionName, deadline: Date.now() + timeoutMs });
    });
  }

  /**
   * Ends the runtime: queued and later invocations are rejected, running ones end with their
   * environment, and no environment starts again; resolves once every thread has exited.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiting.splice(0)) w.fail(this.stoppedError());
    const envs = this.envs;
    this.envs = [];
    await Promise.all(envs.map((e) => e.worker.terminate()));
  }
}

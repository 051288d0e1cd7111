// Starting a worker thread from TypeScript sources. Run under tsx (`--import tsx`), a worker thread
// on Node 20 does not inherit the loader hooks, and `--import tsx` in its execArgv does not take
// effect either; registering tsx's hooks (tsx/esm/api `register()`) inside the worker, before its
// entry is imported, does. Built JavaScript (dist/) starts its entry directly.
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** Is `entry` a TypeScript source, i.e. are we running from the repo under tsx? */
function isTs(entry: URL): boolean {
  return entry.pathname.endsWith('.ts');
}

/** A module that registers tsx's hooks in the thread that imports it. */
function tsxRegisterModule(): string {
  const api = import.meta.resolve('tsx/esm/api');
  return `data:text/javascript,import { register } from ${JSON.stringify(api)}; register();`;
}

/** Starts `entry` in a worker thread, registering tsx first when `entry` is a TypeScript source. */
export function startTsWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (!isTs(entry)) return new Worker(entry, options);
  const code = `import(${JSON.stringify(tsxRegisterModule())}).then(() => import(${JSON.stringify(entry.href)}));`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * For a worker another library starts (synckit): the execArgv that registers tsx in it, or null
 * when `entry` is built JavaScript and needs none.
 */
export function tsWorkerExecArgv(entry: URL): string[] | null {
  return isTs(entry) ? ['--import', tsxRegisterModule()] : null;
}

// Starting worker threads that load the user's modules the way the user's process does.
//
// A worker thread on Node 20 runs no `--import` preload of its execArgv, and tsx's own entry
// (`--import tsx`, or the tsx CLI's loader.mjs) deliberately does not register in a worker thread
// there; registering tsx's hooks through its API (tsx/esm/api, tsx/cjs/api) inside the worker,
// before anything else is imported, does. So a worker first replays the process's loader flags
// (tsx through its API, any other `--import` module as such, a `--loader` through module.register),
// and, when the process was given none (tsx registered programmatically, or fanout run from its
// sources), registers tsx when what it will import is TypeScript and tsx can be found.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const TS_EXT = /\.[mc]?ts$/;

/** Is this module URL or path a TypeScript source (.ts, .mts, .cts)? */
export function isTypeScriptModule(spec: string): boolean {
  let path = spec;
  if (spec.startsWith('file:')) path = new URL(spec).pathname;
  return TS_EXT.test(path.replace(/[?#].*$/, ''));
}

/** One loader flag of the process, in command-line order. */
type LoaderFlag = { kind: 'import' | 'loader'; spec: string };

/** Splits execArgv into its loader flags (--import, --loader, --experimental-loader) and the rest. */
export function splitLoaderFlags(execArgv: readonly string[]): { loaders: LoaderFlag[]; rest: string[] } {
  const loaders: LoaderFlag[] = [];
  const rest: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    const m = /^--(import|loader|experimental-loader)(?:=(.*))?$/s.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const spec = m[2] ?? execArgv[++i];
    if (spec === undefined) {
      rest.push(a);
      continue;
    }
    loaders.push({ kind: m[1] === 'import' ? 'import' : 'loader', spec });
  }
  return { loaders, rest };
}

/** Where a relative or bare `--import` specifier resolves from: the working directory, as node does. */
function cwdBase(): string {
  return join(process.cwd(), 'noop.js');
}

/** A relative `--import` specifier as the file URL node resolves it to (from the working directory). */
function cwdRelative(spec: string): string {
  return /^\.\.?[\\/]/.test(spec) ? pathToFileURL(resolve(process.cwd(), spec)).href : spec;
}

/**
 * The root of the tsx package that a loader flag loads, or null when it is not tsx: the bare `tsx`
 * (or `tsx/…`) resolved from the working directory, or a path / file URL inside a tsx package
 * (what the tsx CLI passes: `--import file:///…/node_modules/tsx/dist/loader.mjs`).
 */
function tsxRootOf(spec: string): string | null {
  if (spec === 'tsx' || spec.startsWith('tsx/')) {
    try {
      return packageRoot(createRequire(cwdBase()).resolve('tsx/package.json'));
    } catch {
      return null;
    }
  }
  const path = spec.startsWith('file:') ? fileURLToPath(spec) : spec;
  const m = /^(.*[\\/]node_modules[\\/]tsx)[\\/]/.exec(path);
  return m ? m[1]! : null;
}

function packageRoot(packageJson: string): string {
  return dirname(packageJson);
}

/** tsx's root as found from `base` (a file path), or null when tsx is not resolvable there. */
function findTsx(base: string): string | null {
  try {
    return packageRoot(createRequire(base).resolve('tsx/package.json'));
  } catch {
    return null;
  }
}

/** The file URL of an ESM entry of tsx (`./esm/api`, `./cjs/api`) from its package.json's exports. */
function tsxApiUrl(root: string, subpath: './esm/api' | './cjs/api'): string {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports?: Record<string, { import?: { default?: string } }> };
  const rel = pkg.exports?.[subpath]?.import?.default;
  if (!rel) throw new Error(`tsx at ${root} has no ESM export ${subpath} (tsx 4.9 or later is needed to load TypeScript modules in workers)`);
  return pathToFileURL(join(root, rel)).href;
}

/**
 * Statements (run first in a worker, in an async function) that register tsx's ESM and CJS hooks
 * from `root`, through its ES module API: its CommonJS API looks for its loader at a wrong path there.
 */
function registerTsxCode(root: string): string {
  const esm = tsxApiUrl(root, './esm/api');
  const cjs = tsxApiUrl(root, './cjs/api');
  return `(await import(${JSON.stringify(esm)})).register(); (await import(${JSON.stringify(cjs)})).register();`;
}

/** The file a module spec names, for finding tsx from the user's project (null for non-file URLs). */
function modulePath(spec: string): string | null {
  if (spec.startsWith('file:')) return fileURLToPath(spec);
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec)) return null;
  return spec;
}

/** tsx's root for TypeScript `modules`: found from the modules' own projects, the working directory, or fanout. */
function tsxFor(modules: readonly string[]): string | null {
  for (const m of modules) {
    const p = modulePath(m);
    const root = p ? findTsx(p) : null;
    if (root) return root;
  }
  return findTsx(cwdBase()) ?? findTsx(fileURLToPath(import.meta.url));
}

/**
 * CommonJS statements that make a new thread load modules as this process does: its loader flags
 * replayed, or else tsx registered when `needsTs` (its modules are TypeScript) and tsx is found.
 */
function loaderBootstrap(modules: readonly string[], needsTs: boolean): { code: string; execArgv: string[] } {
  const { loaders, rest } = splitLoaderFlags(process.execArgv);
  const lines: string[] = [];
  let tsxDone = false;
  for (const l of loaders) {
    const tsx = tsxRootOf(l.spec);
    if (tsx) {
      if (!tsxDone) lines.push(registerTsxCode(tsx));
      tsxDone = true;
    } else if (l.kind === 'import') {
      lines.push(`await import(${JSON.stringify(cwdRelative(l.spec))});`);
    } else {
      lines.push(`require('node:module').register(${JSON.stringify(l.spec)}, ${JSON.stringify(pathToFileURL(cwdBase()).href)});`);
    }
  }
  if (loaders.length === 0 && needsTs) {
    const root = tsxFor(modules);
    if (root) lines.push(registerTsxCode(root));
  }
  // A mark for importUserModule: this thread's loaders are in place, it must not add tsx again.
  if (loaders.length > 0 || lines.length > 0) lines.push('globalThis[Symbol.for("fanout.loaders")] = true;');
  return { code: lines.join('\n'), execArgv: rest };
}

export interface TsWorkerOptions extends WorkerOptions {
  /** Modules the worker will import (e.g. a pipeline): TypeScript ones make it register tsx when no loader flag is inherited. */
  modules?: string[];
}

/**
 * Starts `entry` in a worker thread that loads modules the way this process does (see the top of
 * this file); a TypeScript `entry` (fanout run from its sources) gets tsx when nothing else loads it.
 */
export function startTsWorker(entry: URL, options: TsWorkerOptions = {}): Worker {
  const { modules = [], ...workerOptions } = options;
  const all = [entry.href, ...modules];
  const boot = loaderBootstrap(all, all.some(isTypeScriptModule));
  if (!boot.code) return new Worker(entry, workerOptions);
  // Loader flags are replayed here rather than left in execArgv, where a later Node that honours
  // them in workers would register the same hooks twice.
  const code = `(async () => {\n${boot.code}\nawait import(${JSON.stringify(entry.href)});\n})().catch((e) => { throw e; });`;
  if (workerOptions.execArgv) return new Worker(code, { ...workerOptions, eval: true });
  try {
    return new Worker(code, { ...workerOptions, eval: true, execArgv: boot.execArgv });
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    return new Worker(code, { ...workerOptions, eval: true, execArgv: workerExecArgv(boot.execArgv) });
  }
}

const accepted = new Map<string, string[]>();

/**
 * The options of `argv` that a worker thread takes. Node refuses a worker's whole execArgv when it
 * holds one V8 or process-wide option (`--max-old-space-size`, `--expose-gc`, `--stack-size`,
 * `--title`), while those already apply to every thread of this process; so each option (with the
 * values that follow it) is tried alone, once per process, and the refused ones are dropped. Only
 * called after the whole list was refused, so a plain execArgv costs nothing.
 */
function workerExecArgv(argv: readonly string[]): string[] {
  const key = argv.join('\0');
  const known = accepted.get(key);
  if (known) return known;
  const groups: string[][] = [];
  for (const a of argv) {
    if (a.startsWith('-') || groups.length === 0) groups.push([a]);
    else groups[groups.length - 1]!.push(a);
  }
  const kept: string[] = [];
  for (const g of groups) {
    try {
      // A refused option throws here, before any thread starts; an accepted one starts an empty worker.
      void new Worker('', { eval: true, execArgv: g }).terminate();
      kept.push(...g);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    }
  }
  accepted.set(key, kept);
  return kept;
}

/**
 * For a worker another library starts (synckit) on one of fanout's own modules: the execArgv that
 * registers tsx in it, or null when `entry` is built JavaScript and needs none.
 */
export function tsWorkerExecArgv(entry: URL): string[] | null {
  if (!isTypeScriptModule(entry.href)) return null;
  const api = import.meta.resolve('tsx/esm/api');
  return ['--import', `data:text/javascript,import { register } from ${JSON.stringify(api)}; register();`];
}

/**
 * The execArgv for a child process that imports `modules`: this process's (a child process applies
 * its loader flags itself), plus tsx when there are none and a module is TypeScript.
 */
export function childExecArgv(modules: readonly string[]): string[] {
  const own = process.execArgv;
  if (splitLoaderFlags(own).loaders.length > 0 || !modules.some(isTypeScriptModule)) return [...own];
  const root = tsxFor(modules);
  if (!root) return [...own];
  return [...own, '--import', `data:text/javascript,${encodeURIComponent(registerTsxCode(root))}`];
}

let tsxRegisteredHere = false;

/**
 * Imports a user module in a worker thread or child process. When it is TypeScript and nothing in
 * this thread loads TypeScript yet (no loader was replayed or inherited: the user registered tsx
 * programmatically), registers tsx from the module's project first.
 */
export async function importUserModule(spec: string): Promise<unknown> {
  const marked = (globalThis as Record<symbol, unknown>)[Symbol.for('fanout.loaders')] === true;
  if (!marked && !tsxRegisteredHere && isTypeScriptModule(spec) && splitLoaderFlags(process.execArgv).loaders.length === 0) {
    const root = tsxFor([spec]);
    if (root) {
      ((await import(tsxApiUrl(root, './esm/api'))) as { register(): unknown }).register();
      ((await import(tsxApiUrl(root, './cjs/api'))) as { register(): unknown }).register();
      tsxRegisteredHere = true;
    }
  }
  return import(spec);
}

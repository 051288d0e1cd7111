// The parquet-wasm instance: loading with a panic guard, trap handling, the read lock, warm-up.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import * as vm from 'node:vm';
import { createRequire } from 'node:module';
import { workerData } from 'node:worker_threads';
import * as arrow from 'apache-arrow';
import type * as PW from 'parquet-wasm';

// ---------------------------------------------------------------------------------------------
// parquet-wasm instance management.
//
// parquet-wasm's async reader `.unwrap()`s inside futures, so corrupt data makes Rust panic inside
// a queueMicrotask callback: an uncaught exception that kills the whole process and leaves the
// pending promise unsettled forever. We therefore evaluate the package's own Node glue with a
// private `queueMicrotask` that catches such traps, rejects the operations in flight and retires
// the instance (a fresh one is created on next use).

type ParquetWasm = typeof PW;

export interface WasmInstance {
  pw: ParquetWasm;
  /** Why the instance is unusable, once it trapped. */
  dead: Error | null;
  listeners: Set<(e: Error) => void>;
}

// lib has no WebAssembly typings here (no DOM lib); the runtime always has it.
interface WasmApi {
  RuntimeError: ErrorConstructor;
  Module: abstract new (bytes: Uint8Array) => object;
  compile(bytes: Uint8Array): Promise<object>;
}
const WebAssemblyApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
const WasmRuntimeError = WebAssemblyApi.RuntimeError;
export const isWasmTrap = (e: unknown): boolean => e instanceof WasmRuntimeError;

let current: WasmInstance | null = null;
let loading: Promise<WasmInstance> | null = null;

function retire(inst: WasmInstance, err: unknown): void {
  if (inst.dead) return;
  inst.dead = err instanceof Error ? err : new Error(String(err));
  if (current === inst) current = null;
  for (const l of [...inst.listeners]) l(inst.dead);
  inst.listeners.clear();
}

const req = createRequire(import.meta.url);
const gluePath = req.resolve('parquet-wasm'); // the CommonJS Node build: instantiates synchronously
const wasmPath = nodePath.join(nodePath.dirname(gluePath), 'parquet_wasm_bg.wasm');

// The 4.9 MB module is compiled on V8's background threads from here, while the rest of
// `import 'fanout'` loads on the main thread: a cold process's first read then only instantiates it.
// (Compiling when a read first needs it, as the glue does, puts the compile on the read's path.)
// The bytes are read synchronously (~2 ms from the page cache): `fs.promises.readFile` reads in
// 512 KiB steps, each waiting for a turn of the event loop, which the ESM loader and then the
// caller's code hold, so the compile only started ~25 ms after `import 'fanout'` returned and a
// cold first read waited for it. A failed read or compile leaves the glue's own synchronous path.
// A worker thread of the pool is handed the compiled module (workerData `parquetWasm`: the module,
// or 'posted' when this process's compile was still running at the spawn: it follows in a message,
// `receiveParquetWasm`) and neither reads nor compiles the file: V8 would decode and validate the
// 5 MB again (~25 ms of CPU per thread) before its native-module cache maps it to the same code.
let compiled: Promise<object | null> | null = null;
let compiledModule: object | null = null;
let awaitingPosted: ((module: object | null) => void) | null = null;
/** Where this thread's module came from (reported in a pool worker's 'ready' message). */
let moduleSource: 'file' | 'workerData' | 'message' = 'file';

function compileFile(): Promise<object | null> {
  let bytes: Uint8Array | null = null;
  try {
    bytes = fs.readFileSync(wasmPath);
  } catch {
    // the glue's own path reports it
  }
  return bytes
    ? WebAssemblyApi.compile(bytes).then(
        (m) => (compiledModule = m),
        () => null,
      )
    : Promise.resolve(null);
}

function precompile(): Promise<object | null> {
  if (!compiled) {
    const given = (workerData as { parquetWasm?: unknown } | null)?.parquetWasm;
    if (given instanceof WebAssemblyApi.Module) {
      compiledModule = given;
      moduleSource = 'workerData';
      compiled = Promise.resolve(given);
    } else if (given === 'posted') {
      // The parent's compile failed if it posts none: this thread then compiles the file itself.
      compiled = new Promise<object | null>((resolve) => (awaitingPosted = resolve)).then((m) => m ?? compileFile());
    } else {
      compiled = compileFile();
    }
  }
  return compiled;
}
precompile();

/** A pool worker: the parent's compiled module (or null when its compile failed), posted after the spawn. */
export function receiveParquetWasm(module: unknown): void {
  const resolve = awaitingPosted;
  awaitingPosted = null;
  if (resolve && module instanceof WebAssemblyApi.Module) {
    compiledModule = module;
    moduleSource = 'message';
  }
  resolve?.(module instanceof WebAssemblyApi.Module ? module : null);
}

/** Where this thread's parquet-wasm module came from: its own compile of the file, or the parent's. */
export function parquetWasmSource(): 'file' | 'workerData' | 'message' {
  return moduleSource;
}

/** This process's compile of parquet-wasm (null when it failed), for handing to a worker thread. */
export function parquetWasmCompiled(): Promise<object | null> {
  return precompile();
}

/**
 * parquet-wasm's compiled module once its compile has finished (null before, or when it failed), for
 * the workerData of a worker thread: a WebAssembly.Module is cloned between threads of one process
 * without recompiling.
 */
export function parquetWasmModule(): object | null {
  return compiledModule;
}

function loadInstance(module: object | null): WasmInstance {
  const source = fs.readFileSync(gluePath, 'utf8');
  const inst: WasmInstance = { pw: undefined as unknown as ParquetWasm, dead: null, listeners: new Set() };
  const guardedQueueMicrotask = (cb: () => void): void => {
    queueMicrotask(() => {
      if (inst.dead) return; // never run Rust code on a trapped instance again
      try {
        cb();
      } catch (e) {
        retire(inst, e);
      }
    });
  };
  // With a compiled module, the glue's `readFileSync(wasmPath)` and `new WebAssembly.Module(bytes)`
  // get it instead of reading and compiling the file again.
  const wasmApi = module
    ? Object.create(WebAssemblyApi, {
        Module: {
          value: function Module() {
            return module; // `new` returns this object
          },
        },
      })
    : WebAssemblyApi;
  const fsApi = module ? Object.create(fs, { readFileSync: { value: (p: string) => (p === wasmPath ? new Uint8Array(0) : fs.readFileSync(p)) } }) : fs;
  const glueRequire = (id: string): unknown => (id === 'fs' ? fsApi : req(id));
  const fn = vm.compileFunction(source, ['exports', 'require', 'module', '__filename', '__dirname', 'queueMicrotask', 'WebAssembly'], { filename: gluePath });
  const mod = { exports: {} as Record<string, unknown> };
  fn.call(mod.exports, mod.exports, glueRequire, mod, gluePath, nodePath.dirname(gluePath), guardedQueueMicrotask, wasmApi);
  inst.pw = mod.exports as unknown as ParquetWasm;
  if (typeof inst.pw.ParquetFile !== 'function' || typeof inst.pw.wasmMemory !== 'function') {
    throw new Error('unexpected parquet-wasm module layout');
  }
  return inst;
}

export async function getWasm(): Promise<WasmInstance> {
  if (current && !current.dead) return current;
  if (!loading) {
    loading = (async () => {
      let inst: WasmInstance;
      try {
        // A compiled module is stateless: a retired instance's replacement reuses it.
        inst = loadInstance(await precompile());
      } catch {
        // Fallback: the plain package (no trap isolation) if its glue ever changes shape.
        const pw = (await import('parquet-wasm')) as unknown as ParquetWasm & { default?: ParquetWasm };
        inst = { pw: pw.ParquetFile ? pw : pw.default!, dead: null, listeners: new Set() };
      }
      current = inst;
      return inst;
    })().finally(() => {
      loading = null;
    });
  }
  return loading;
}

/** Settle with `p`, or reject if the instance traps first (then `p` would never settle). */
export function guarded<T>(inst: WasmInstance, p: Promise<T> | (() => Promise<T>)): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (inst.dead) {
      reject(inst.dead);
      return;
    }
    const onTrap = (e: Error): void => reject(e);
    inst.listeners.add(onTrap);
    let promise: Promise<T>;
    try {
      promise = typeof p === 'function' ? p() : p;
    } catch (e) {
      inst.listeners.delete(onTrap);
      if (isWasmTrap(e)) retire(inst, e);
      reject(e);
      return;
    }
    promise.then(
      (v) => {
        inst.listeners.delete(onTrap);
        resolve(v);
      },
      (e) => {
        inst.listeners.delete(onTrap);
        reject(e);
      },
    );
  });
}

/** Run sync wasm calls; a trap retires the instance. */
export function wasmSync<T>(inst: WasmInstance, fn: () => T): T {
  if (inst.dead) throw inst.dead;
  try {
    return fn();
  } catch (e) {
    if (isWasmTrap(e)) retire(inst, e);
    throw e;
  }
}

// Row-group decodes run one at a time so that a trap is attributed to the right file.
let readQueue: Promise<unknown> = Promise.resolve();
export function withReadLock<T>(fn: () => Promise<T>): Promise<T> {
  const run = readQueue.then(fn, fn);
  readQueue = run.catch(() => undefined);
  return run;
}

let warmed: Promise<void> | null = null;
/** Instantiate parquet-wasm and exercise its write/read paths once (idempotent). Workers call it at start. */
export function warmParquet(): Promise<void> {
  if (!warmed) {
    warmed = (async () => {
      const inst = await getWasm();
      // A tiny in-memory round trip, so the first real call does not pay for first-use setup.
      const t = arrow.tableFromArrays({ a: Float64Array.from([1, 2, 3]) });
      const bytes = wasmSync(inst, () => inst.pw.writeParquet(inst.pw.Table.fromIPCStream(arrow.tableToIPC(t, 'stream'))));
      wasmSync(inst, () => inst.pw.readParquet(bytes).free());
    })().catch((e) => {
      warmed = null;
      throw e;
    });
  }
  return warmed;
}

// Runs UDF calls over record batches: argument evaluation, the four call forms, retries with
// backoff, error policies, dead-letter files, per-worker class instances and metrics.
import * as arrow from 'apache-arrow';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { joinUri, prepareObject } from './io/store/index.ts';
import { DataType, Field, Schema } from './datatypes.ts';
import { dataToValues, valuesToData, type JsValue } from './convert/index.ts';
import { evaluate, filterBatch, projectBatch, takeBatch, type EvalContext } from './eval.ts';
import { decodeLiteral, udfCalls, type ExprNode, type UdfCallNode } from './expressions.ts';
import { writeParquetFile } from './io/parquet/index.ts';
import { getUdf, type UdfDefinition } from './udf.ts';
import { concatData } from './kernels/concat.ts';
import { arrayCtor, mkData, type TypedArray } from './kernels/data.ts';

// ------------------------------------------------------------------ metrics

export interface UdfStats {
  rowsIn: number;
  rowsOut: number;
  calls: number;
  retries: number;
  errors: number;
  timeMs: number;
  counters: Record<string, number>;
}

/** Per-UDF statistics of one run, summed across workers. */
export type RunMetrics = Record<string, UdfStats>;

export function emptyStats(): UdfStats {
  return { rowsIn: 0, rowsOut: 0, calls: 0, retries: 0, errors: 0, timeMs: 0, counters: {} };
}

export function mergeMetrics(into: RunMetrics, from: RunMetrics): RunMetrics {
  for (const [name, s] of Object.entries(from)) {
    const t = (into[name] ??= emptyStats());
    t.rowsIn += s.rowsIn; t.rowsOut += s.rowsOut; t.calls += s.calls; t.retries += s.retries; t.errors += s.errors; t.timeMs += s.timeMs;
    for (const [k, v] of Object.entries(s.counters)) t.counters[k] = (t.counters[k] ?? 0) + v;
  }
  return into;
}

// Shared through globalThis (like the UDF registry): a UDF module that imported `metrics` from
// another copy of fanout must still find the stats of the call that the executing copy runs.
const METRICS_KEY = Symbol.for('fanout.udf.metricsStore');
const current: AsyncLocalStorage<UdfStats> = ((globalThis as Record<symbol, unknown>)[METRICS_KEY] ??= new AsyncLocalStorage<UdfStats>()) as AsyncLocalStorage<UdfStats>;
let warnedOutside = false;

/** Custom counters, callable from inside a UDF (sync or async); summed per UDF in `df.metrics`. */
export const metrics = {
  increment(name: string, amount = 1): void {
    const s = current.getStore();
    if (!s) {
      if (!warnedOutside) console.warn(`fanout: metrics.increment('${name}') called outside a UDF; ignored`);
      warnedOutside = true;
      return;
    }
    s.counters[name] = (s.counters[name] ?? 0) + amount;
  },
};

/** What a UDF-running thread holds: class instances, in-flight caps; a fork per partition run counts its metrics. */
export class UdfRuntime {
  readonly metrics: RunMetrics = {};
  private instances = new Map<string, object>();
  private inflight = new Map<string, Semaphore>();
  constructorCalls = 0;
  /** What this runtime runs (e.g. `partition 3: /data/f.parquet`), for stall warnings and errors. */
  label: string | null = null;
  /** UDFs that run in an actor pool elsewhere (concurrency instances serving every partition). */
  remote: RemoteUdfs | null = null;

  /** A runtime with its own metrics that shares this one's class instances and in-flight caps. */
  fork(label: string | null = null): UdfRuntime {
    const f = new UdfRuntime();
    f.instances = this.instances;
    f.inflight = this.inflight;
    f.label = label;
    f.remote = this.remote;
    return f;
  }

  stats(name: string): UdfStats {
    return (this.metrics[name] ??= emptyStats());
  }

  /** One instance per (class, constructor arguments) in this thread/process. */
  instance(def: UdfDefinition, node: UdfCallNode): object {
    const key = `${def.name.split('.')[0]}\u0000${JSON.stringify(node.init ?? [])}`;
    let inst = this.instances.get(key);
    if (!inst) {
      const args = (node.init ?? []).map(decodeLiteral);
      const Ctor = def.cls!.ctor as unknown as new (...a: unknown[]) => object;
      try {
        inst = new Ctor(...args);
      } catch (err) {
        throw wrapError(err, `constructing UDF class for '${def.name}'`);
      }
      this.constructorCalls++;
      this.instances.set(key, inst);
    }
    return inst;
  }

  semaphore(def: UdfDefinition): Semaphore {
    let s = this.inflight.get(def.name);
    if (!s) this.inflight.set(def.name, (s = new Semaphore(def.options.maxConcurrency)));
    return s;
  }
}

/** One UDF call answered by an actor: the result column (and a generator's parents) plus the call's metrics. */
export interface RemoteCallResult {
  data: arrow.Data;
  parents?: Int32Array;
  metrics: RunMetrics;
}

/**
 * Routes calls of actor-pool UDFs (concurrency instances, GPU instances) away from this thread: the
 * batch's argument columns travel to a free actor, the result column comes back.
 */
export interface RemoteUdfs {
  /** Calls of `name` in flight at once from one partition (the pool's size); 0 when it runs here. */
  window(name: string): number;
  call(node: UdfCallNode, args: arrow.Data[], n: number, offset: number, label: string | null): Promise<RemoteCallResult>;
}

/** How many batches of one partition may be in UDF calls at once: an actor pool's size, else 1. */
export function udfWindow(exprs: readonly ExprNode[], rt: UdfRuntime): number {
  const remote = rt.remote;
  if (!remote) return 1;
  let w = 1;
  for (const e of exprs) for (const c of udfCalls(e)) w = Math.max(w, remote.window(c.name));
  return w;
}

/**
 * Constructs `node`'s class instance in `rt` now (an actor starting up), counting what the
 * constructor reports through `metrics` into `rt`'s stats of the UDF.
 */
export function constructInstance(def: UdfDefinition, node: UdfCallNode, rt: UdfRuntime): void {
  if (def.cls) current.run(rt.stats(def.name), () => rt.instance(def, node));
}

/** The runtime of this thread (worker threads and processes each have their own). */
export const runtime = new UdfRuntime();

/** Caps calls in flight: the cap is per call, shared by all batches of an instance. */
export class Semaphore {
  private active = 0;
  private queue: (() => void)[] = [];
  maxSeen = 0;
  constructor(readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    if (this.active > this.maxSeen) this.maxSeen = this.active;
  }
  release(): void {
    this.active--;
    this.queue.shift()?.();
  }
}

// ------------------------------------------------------------------ errors

export class UdfError extends Error {
  constructor(message: string, readonly udf: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'UdfError';
    if (cause instanceof Error && cause.stack) this.stack = `${this.name}: ${message}\n  caused by: ${cause.stack}`;
  }
}

function wrapError(err: unknown, what: string): Error {
  const msg = err instanceof Error ? err.message : String(err);
  const e = new Error(`${what}: ${msg}`);
  if (err instanceof Error && err.stack) e.stack = `${e.message}\n  caused by: ${err.stack}`;
  return e;
}

function errText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Bounds an asynchronous result by the UDF's `timeoutMs`: a call still pending then fails (and is
 * abandoned: JS cannot cancel it). The timer is ref'd, so a never-settling promise cannot let the
 * process exit before the timeout fires. Synchronous values pass through untouched.
 */
function timed<T>(def: UdfDefinition, v: T): T | Promise<Awaited<T>> {
  const ms = def.options.timeoutMs;
  if (ms === null || !isThenable(v)) return v;
  return new Promise<Awaited<T>>((resolve, reject) => {
    const timer = setTimeout(() => {
      const e = new Error(`UDF '${def.name}' call timed out after ${ms} ms (timeoutMs)`);
      e.name = 'TimeoutError';
      reject(e);
    }, ms);
    (v as PromiseLike<Awaited<T>>).then(
      (r) => { clearTimeout(timer); resolve(r); },
      (e: unknown) => { clearTimeout(timer); reject(e); },
    );
  });
}

// ------------------------------------------------------------------ stalled calls

interface InFlightCall {
  udf: string;
  where: string;
  since: number;
  warnedAt: number;
}

const inFlight = new Set<InFlightCall>();
let watchdog: ReturnType<typeof setInterval> | null = null;

/** How long a UDF call may be pending before a warning (and again after each such period). */
function stallWarnMs(): number {
  const v = Number(process.env['FANOUT_STALL_WARN_MS']);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

/**
 * Tracks a UDF call (one batch) while it runs. While any call is in flight a ref'd interval runs:
 * it keeps the process alive (a pending UDF promise holds no handle, so node would otherwise exit
 * silently with code 0, or 13 under top-level await) and warns about calls pending too long.
 */
function trackCall(call: InFlightCall): () => void {
  inFlight.add(call);
  if (!watchdog) {
    const period = stallWarnMs();
    watchdog = setInterval(() => {
      const now = Date.now();
      for (const c of inFlight) {
        if (now - (c.warnedAt || c.since) < period) continue;
        c.warnedAt = now;
        console.warn(`fanout: UDF '${c.udf}' has not returned for ${Math.round((now - c.since) / 1000)} s (${c.where}); still waiting (set the UDF's timeoutMs to fail such calls)`);
      }
    }, Math.max(10, Math.min(period, 1000)));
  }
  return () => {
    inFlight.delete(call);
    if (!inFlight.size && watchdog) {
      clearInterval(watchdog);
      watchdog = null;
    }
  };
}

/**
 * The wait before retry number `attempt` (0-based): exponential backoff with full jitter (a random
 * wait up to retryBackoffMs * 2^attempt), raised to the `retryAfterMs` the failed attempt's error
 * carries (a service's Retry-After), and never over retryBackoffMaxMs. The wait lies between attempts:
 * timeoutMs bounds each attempt, not the waits.
 */
export function retryDelayMs(def: UdfDefinition, attempt: number, err: unknown): number {
  const { retryBackoffMs, retryBackoffMaxMs } = def.options;
  const jittered = Math.random() * Math.min(retryBackoffMaxMs, retryBackoffMs * 2 ** Math.min(attempt, 52));
  return Math.min(retryBackoffMaxMs, Math.max(jittered, retryAfterMsOf(err)));
}

/** The `retryAfterMs` an error carries (a finite number > 0), else 0. */
function retryAfterMsOf(err: unknown): number {
  const v = typeof err === 'object' && err !== null ? (err as { retryAfterMs?: unknown }).retryAfterMs : undefined;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

let retrySleep: (ms: number) => Promise<void> = sleep;

/** Tests only: replaces the wait between retries (e.g. to record the delays); null restores it. */
export function setRetrySleepForTests(fn: ((ms: number) => Promise<void>) | null): void {
  retrySleep = fn ?? sleep;
}

// ------------------------------------------------------------------ calling

interface Failure {
  row: number;
  error: string;
  /** The original error, so a raised UdfError keeps its stack. */
  cause?: unknown;
}

interface CallResult {
  data: arrow.Data;
  /** Generators: the input row of each output row. */
  parents?: Int32Array;
}

/** Marks synchronous UDF calls with a deadline that another thread can watch (worker threads). */
export interface SyncGuard {
  arm(udf: string, timeoutMs: number): void;
  disarm(): void;
}

let syncGuard: SyncGuard | null = null;

/** Installed by a worker thread whose pool terminates it when a synchronous call outlives its timeoutMs. */
export function setSyncGuard(g: SyncGuard | null): void {
  syncGuard = g;
}

function fnOf(def: UdfDefinition, node: UdfCallNode, rt: UdfRuntime): (...args: unknown[]) => unknown {
  let f: (...args: unknown[]) => unknown;
  if (def.cls) {
    const inst = rt.instance(def, node) as Record<string, (...a: unknown[]) => unknown>;
    f = inst[def.cls.method]!.bind(inst);
  } else f = def.fn as (...args: unknown[]) => unknown;
  const g = syncGuard;
  const ms = def.options.timeoutMs;
  if (!g || ms === null) return f;
  // The synchronous part of each call runs under a deadline the pool watches.
  return (...a: unknown[]) => {
    g.arm(def.name, ms);
    try {
      return f(...a);
    } finally {
      g.disarm();
    }
  };
}

async function withRetries<T>(def: UdfDefinition, stats: UdfStats, call: () => T | Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      stats.calls++;
      return await call();
    } catch (err) {
      if (attempt >= def.options.maxRetries) throw err;
      stats.retries++;
      await retrySleep(retryDelayMs(def, attempt, err));
    }
  }
}

/** The remaining `maxRetries` attempts after a failed first one, with backoff. */
async function retryLater<T>(def: UdfDefinition, stats: UdfStats, call: () => T, firstError: unknown): Promise<Awaited<T>> {
  let last = firstError;
  for (let attempt = 0; attempt < def.options.maxRetries; attempt++) {
    stats.retries++;
    await retrySleep(retryDelayMs(def, attempt, last));
    try {
      stats.calls++;
      return await call();
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * Values of an argument column, indexable by row: a null-free numeric column is read straight from
 * its typed array (no copy); everything else is decoded to JS values once.
 */
function isNumeric(t: arrow.DataType): boolean {
  return t.typeId === arrow.Type.Int || t.typeId === arrow.Type.Float;
}

function argValues(d: arrow.Data): ArrayLike<unknown> {
  if (d.nullCount === 0 && isNumeric(d.type) && d.values) {
    return d.values as ArrayLike<unknown>;
  }
  return dataToValues(d);
}

/**
 * Output of a row-wise call. Float results go straight into a Float64Array/Float32Array (a JS array
 * would box every double); anything else (nulls, wrong types) is kept aside for the checked path.
 */
class RowOutput {
  readonly floats: Float64Array | Float32Array | null;
  readonly generic: unknown[] | null;
  private others: Map<number, unknown> | null = null;
  constructor(readonly type: DataType, n: number) {
    const k = type.kind;
    this.floats = k === 'float64' ? new Float64Array(n) : k === 'float32' ? new Float32Array(n) : null;
    this.generic = this.floats ? null : new Array<unknown>(n);
  }
  set(i: number, v: unknown): void {
    if (this.floats !== null && typeof v === 'number') this.floats[i] = v;
    else if (this.generic !== null) this.generic[i] = v;
    else (this.others ??= new Map()).set(i, v);
  }
  toData(what: string): arrow.Data {
    if (this.floats !== null && this.others === null) return mkData(this.type.toArrow(), this.floats.length, null, this.floats);
    let values = this.generic;
    if (values === null) {
      values = Array.from(this.floats!);
      for (const [i, v] of this.others!) values[i] = v;
    }
    return valuesToData(values, this.type, what);
  }
}

async function callRowWise(def: UdfDefinition, node: UdfCallNode, args: arrow.Data[], n: number, rt: UdfRuntime, stats: UdfStats, failures: Failure[]): Promise<RowOutput> {
  const fn = fnOf(def, node, rt);
  const cols = args.map(argValues);
  const out = new RowOutput(def.returnDtype, n);
  const argsAt = (i: number): unknown[] => cols.map((c) => c[i]);
  const fail = (i: number, err: unknown): void => {
    stats.errors++;
    failures.push({ row: i, error: errText(err), cause: err });
    out.set(i, null);
  };
  if (def.kind === 'row') {
    const pending: Promise<void>[] = [];
    const [c0, c1, c2] = cols;
    const arity = cols.length;
    for (let i = 0; i < n; i++) {
      let v: unknown;
      try {
        // Direct calls for the common arities: no per-row argument array.
        v = arity === 1 ? fn(c0![i]) : arity === 2 ? fn(c0![i], c1![i]) : arity === 3 ? fn(c0![i], c1![i], c2![i]) : arity === 0 ? fn() : fn(...argsAt(i));
      } catch (error) {
        if (def.options.maxRetries > 0) {
          pending.push(retryLater(def, stats, () => timed(def, fn(...argsAt(i))), error).then((r) => { out.set(i, r); }, (e: unknown) => fail(i, e)));
        } else fail(i, error);
        continue;
      }
      if (isThenable(v)) {
        // A plain function that returned a promise behaves like an async UDF, retries and timeout included.
        pending.push(Promise.resolve(timed(def, v)).then(
          (r) => { out.set(i, r); },
          (e: unknown) => (def.options.maxRetries > 0
            ? retryLater(def, stats, () => timed(def, fn(...argsAt(i))), e).then((r) => { out.set(i, r); }, (e2: unknown) => fail(i, e2))
            : fail(i, e)),
        ));
      } else out.set(i, v);
    }
    stats.calls += n;
    if (pending.length) await Promise.all(pending);
    return out;
  }
  // async: many calls in flight, capped per call by maxConcurrency (shared across batches).
  const sem = rt.semaphore(def);
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    await sem.acquire();
    try {
      out.set(i, await withRetries(def, stats, () => timed(def, fn(...argsAt(i)) as Promise<unknown>)));
    } catch (e) {
      fail(i, e);
    } finally {
      sem.release();
    }
  }));
  return out;
}

async function callGenerator(def: UdfDefinition, node: UdfCallNode, args: arrow.Data[], n: number, rt: UdfRuntime, stats: UdfStats, failures: Failure[]): Promise<{ values: unknown[]; parents: number[] }> {
  const fn = fnOf(def, node, rt);
  const cols = args.map(argValues);
  const values: unknown[] = [];
  const parents: number[] = [];
  for (let i = 0; i < n; i++) {
    try {
      // Each attempt collects into its own array: a retried (or timed-out, still running) attempt
      // never adds to the row's output.
      const rowOut = await withRetries(def, stats, () => timed(def, (async () => {
        const got: unknown[] = [];
        const gen = fn(...cols.map((c) => c[i])) as Iterable<unknown> | AsyncIterable<unknown>;
        if (gen && typeof (gen as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
          for await (const v of gen as AsyncIterable<unknown>) got.push(v);
        } else if (gen && typeof (gen as Iterable<unknown>)[Symbol.iterator] === 'function') {
          // A sync generator's body runs in this loop: it is the synchronous part of the call.
          const ms = def.options.timeoutMs;
          if (syncGuard && ms !== null) syncGuard.arm(def.name, ms);
          try {
            for (const v of gen as Iterable<unknown>) got.push(v);
          } finally {
            syncGuard?.disarm();
          }
        } else {
          throw new TypeError(`generator UDF '${def.name}' did not return an iterator`);
        }
        return got;
      })()));
      for (const v of rowOut) { values.push(v); parents.push(i); }
      // Nothing yielded: the row stays with a null (onEmpty 'null', as in Daft) or goes ('drop').
      if (!rowOut.length && def.options.onEmpty === 'null') { values.push(null); parents.push(i); }
    } catch (e) {
      stats.errors++;
      failures.push({ row: i, error: errText(e), cause: e });
      // The row is kept, with a null output, unless the policy raises (below).
      values.push(null);
      parents.push(i);
    }
  }
  return { values, parents };
}

function batchResultToData(def: UdfDefinition, result: unknown, n: number, offset: number): arrow.Data {
  const type = def.returnDtype;
  let data: arrow.Data;
  if (result instanceof arrow.Vector) {
    if (result.length !== n) throw new UdfError(`UDF '${def.name}' returned ${result.length} values for a batch of ${n} rows (rows ${offset}..${offset + n - 1})`, def.name);
    if (result.data.length === 1 && DataType.fromArrow(result.type).equals(type)) return result.data[0]!;
    data = valuesToData(result.toArray() as unknown[], type, `UDF '${def.name}'`);
  } else if (result && typeof result === 'object' && 'length' in result) {
    const arr = result as ArrayLike<unknown>;
    if (arr.length !== n) throw new UdfError(`UDF '${def.name}' returned ${arr.length} values for a batch of ${n} rows (rows ${offset}..${offset + n - 1})`, def.name);
    const at = type.toArrow();
    // A typed array of exactly the column's physical type becomes its values buffer, no copy.
    if (ArrayBuffer.isView(arr) && isNumeric(at) && arr.constructor === arrayCtor(at)) {
      return mkData(at, n, null, arr as unknown as TypedArray);
    }
    data = valuesToData(arr as readonly unknown[], type, `UDF '${def.name}'`);
  } else {
    throw new UdfError(`UDF '${def.name}' must return a Vector, a typed array or an array of ${n} values; got ${result === null ? 'null' : typeof result}`, def.name);
  }
  return data;
}

async function callBatch(def: UdfDefinition, node: UdfCallNode, args: arrow.Data[], n: number, rt: UdfRuntime, stats: UdfStats, failures: Failure[], offset: number): Promise<arrow.Data> {
  const fn = fnOf(def, node, rt);
  const size = def.options.batchSize ?? n;
  const pieces: arrow.Data[] = [];
  for (let s = 0; s < n; s += size) {
    const len = Math.min(size, n - s);
    const vecs = args.map((d) => arrow.makeVector(d.slice(s, len)));
    let result: unknown;
    try {
      result = await withRetries(def, stats, () => timed(def, fn(...vecs)));
    } catch (e) {
      stats.errors += len;
      for (let i = 0; i < len; i++) failures.push({ row: s + i, error: errText(e), cause: e });
      pieces.push(valuesToData(new Array(len).fill(null), def.returnDtype, def.name));
      continue;
    }
    // What the call returned breaks the UDF's contract (length, type): a bug in the UDF, not a
    // failure of these rows, so onError does not turn it into nulls.
    try {
      pieces.push(batchResultToData(def, result, len, offset + s));
    } catch (e) {
      if (e instanceof UdfError) throw e;
      throw new UdfError(`UDF '${def.name}' returned a value that is not ${def.returnDtype} for rows ${offset + s}..${offset + s + len - 1}: ${e instanceof Error ? e.message : String(e)}`, def.name, e);
    }
  }
  if (pieces.length === 1) return pieces[0]!;
  return concatData(pieces, def.returnDtype.toArrow());
}

/** Writes failed rows (their UDF arguments and the error text) to the dead-letter directory. */
async function writeDeadLetter(def: UdfDefinition, node: UdfCallNode, args: arrow.Data[], failures: Failure[], offset: number): Promise<string> {
  const dir = def.options.deadLetter!;
  const idx = Int32Array.from(failures, (f) => f.row);
  const fields = args.map((d, i) => new Field(`arg${i}`, DataType.fromArrow(d.type)));
  const argBatch = new arrow.RecordBatch(new Schema(fields).toArrow(), arrow.makeData({
    type: new arrow.Struct(new Schema(fields).toArrow().fields), length: args[0]?.length ?? 0, nullCount: 0, children: args,
  }));
  const taken = args.length ? takeBatch(argBatch, idx) : null;
  const udfCol = valuesToData(failures.map(() => def.name), DataType.utf8());
  const errCol = valuesToData(failures.map((f) => f.error), DataType.utf8());
  // Row numbers within the partition (as in error messages), not within the batch.
  const rowCol = valuesToData(failures.map((f) => offset + f.row), DataType.int64());
  const allFields = [new Field('udf', DataType.utf8()), new Field('row', DataType.int64()), new Field('error', DataType.utf8()), ...fields];
  const schema = new Schema(allFields);
  const children = [udfCol, rowCol, errCol, ...(taken ? taken.data.children : [])];
  const batch = new arrow.RecordBatch(schema.toArrow(), arrow.makeData({ type: new arrow.Struct(schema.toArrow().fields), length: failures.length, nullCount: 0, children }));
  const name = `dead-${def.name.replace(/[^\w.-]/g, '_')}-${randomUUID()}.parquet`;
  // Through the storage layer: the file appears whole (an upload completes, or a local temp file is
  // renamed into place), so a reader never sees half of it.
  const path = joinUri(dir, name);
  await prepareObject(path);
  await writeParquetFile(path, [batch], { schema });
  void node;
  return path;
}

/** Calls one UDF over a batch's argument columns. */
export async function callUdf(node: UdfCallNode, args: arrow.Data[], n: number, rt: UdfRuntime = runtime, offset = 0): Promise<CallResult> {
  const def = getUdf(node.name);
  const stats = rt.stats(def.name);
  const failures: Failure[] = [];
  const t0 = performance.now();
  let result: CallResult;
  const done = trackCall({ udf: def.name, where: `${rt.label ?? 'partition not named'}, rows ${offset}..${offset + n - 1}`, since: Date.now(), warnedAt: 0 });
  try {
    await current.run(stats, async () => {
      if (def.kind === 'generator') {
        const { values, parents } = await callGenerator(def, node, args, n, rt, stats, failures);
        result = { data: valuesToData(values, def.returnDtype, `UDF '${def.name}'`), parents: Int32Array.from(parents) };
      } else if (def.kind === 'batch') {
        result = { data: await callBatch(def, node, args, n, rt, stats, failures, offset) };
      } else {
        const values = await callRowWise(def, node, args, n, rt, stats, failures);
        try {
          result = { data: values.toData(`UDF '${def.name}'`) };
        } catch (e) {
          throw new UdfError(`UDF '${def.name}' returned a value that is not ${def.returnDtype}: ${e instanceof Error ? e.message : String(e)}`, def.name, e);
        }
      }
    });
  } finally {
    done();
  }
  stats.timeMs += performance.now() - t0;
  stats.rowsIn += n;
  stats.rowsOut += result!.data.length;
  if (failures.length) {
    // Failures are recorded as their retries end (async calls finish in any order): report and
    // dead-letter them by row, so "first" is the first failing row.
    failures.sort((a, b) => a.row - b.row);
    let dl = '';
    if (def.options.deadLetter) dl = ` (failed rows written to ${await writeDeadLetter(def, node, args, failures, offset)})`;
    const first = failures[0]!;
    const where = def.kind === 'batch' ? `rows ${offset + first.row}..${offset + failures[failures.length - 1]!.row}` : `row ${offset + first.row}`;
    const msg = `UDF '${def.name}' failed on ${failures.length} row(s); first at ${where}: ${first.error}${dl}`;
    if (def.options.onError === 'raise') throw new UdfError(msg, def.name, first.cause);
    if (def.options.onError === 'log') console.warn(`fanout: ${msg}; those rows get null`);
  }
  return result!;
}

// ------------------------------------------------------------------ projections and filters with UDFs

function udfType(node: UdfCallNode): DataType {
  return getUdf(node.name).returnDtype;
}

/** Evaluation context that knows UDF return types (for type inference during planning). */
export const udfEvalContext: EvalContext = { udfType: (node: UdfCallNode) => udfType(node) };

/**
 * Computes every UDF call in `exprs` (innermost first; identical calls once) as temporary columns,
 * and rewrites the expressions to read them. Generators expand the batch (other columns repeat).
 */
async function materializeUdfs(batch: arrow.RecordBatch, exprs: readonly ExprNode[], rt: UdfRuntime, offset: number): Promise<{ batch: arrow.RecordBatch; exprs: ExprNode[] }> {
  let current = batch;
  const computed = new Map<string, string>();
  let k = 0;
  const rewrite = async (e: ExprNode): Promise<ExprNode> => {
    // Post-order: rewrite arguments first so nested UDFs are computed before their consumers.
    if (e.op === 'alias' || e.op === 'cast') return { ...e, expr: await rewrite(e.expr) };
    if (e.op === 'call') {
      const args: ExprNode[] = [];
      for (const a of e.args) args.push(await rewrite(a));
      return { ...e, args };
    }
    if (e.op !== 'udf') return e;
    const args: ExprNode[] = [];
    for (const a of e.args) args.push(await rewrite(a));
    const node: UdfCallNode = { ...e, args };
    const key = JSON.stringify(node);
    const existing = computed.get(key);
    if (existing) return { op: 'col', name: existing };
    const name = `__udf_${k++}`;
    const schema = Schema.fromArrow(current.schema);
    const argData = args.map((a) => evaluate(a, current, schema));
    let res: CallResult;
    if (!current.numRows) res = { data: valuesToData([], udfType(node)) };
    else if (rt.remote?.window(node.name)) {
      // An actor pool's UDF: the call runs in a free actor; its counts join this partition's.
      const r = await rt.remote.call(node, argData, current.numRows, offset, rt.label);
      mergeMetrics(rt.metrics, r.metrics);
      res = r.parents ? { data: r.data, parents: r.parents } : { data: r.data };
    } else res = await callUdf(node, argData, current.numRows, rt, offset);
    if (res.parents) current = takeBatch(current, res.parents);
    current = appendColumn(current, name, res.data);
    computed.set(key, name);
    return { op: 'col', name };
  };
  const out: ExprNode[] = [];
  for (const e of exprs) out.push(await rewrite(e));
  return { batch: current, exprs: out };
}

function appendColumn(batch: arrow.RecordBatch, name: string, data: arrow.Data): arrow.RecordBatch {
  const fields = [...batch.schema.fields, new arrow.Field(name, data.type, true)];
  const schema = new arrow.Schema(fields);
  return new arrow.RecordBatch(schema, arrow.makeData({
    type: new arrow.Struct(fields), length: batch.numRows, nullCount: 0, children: [...batch.data.children, data],
  }));
}

export async function projectWithUdfs(batch: arrow.RecordBatch, exprs: readonly ExprNode[], outSchema: Schema, rt: UdfRuntime = runtime, offset = 0): Promise<arrow.RecordBatch> {
  const m = await materializeUdfs(batch, exprs, rt, offset);
  return projectBatch(m.batch, m.exprs, outSchema);
}

export async function filterWithUdfs(batch: arrow.RecordBatch, predicate: ExprNode, rt: UdfRuntime = runtime, offset = 0): Promise<arrow.RecordBatch> {
  const m = await materializeUdfs(batch, [predicate], rt, offset);
  const filtered = filterBatch(m.batch, m.exprs[0]!);
  const schema = Schema.fromArrow(batch.schema);
  return projectBatch(filtered, schema.names.map((n) => ({ op: 'col', name: n })), schema);
}

export type { JsValue };

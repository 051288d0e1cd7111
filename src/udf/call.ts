// The four call forms over one batch's argument columns: row-wise (sync and async), generator and
// batch, with the UDF's retries, timeouts and the sync guard of worker threads.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { dataToValues, valuesToData } from '../convert/index.ts';
import type { UdfCallNode } from '../expressions.ts';
import type { UdfDefinition } from '../udf.ts';
import { concatData } from '../kernels/concat.ts';
import { arrayCtor, mkData, type TypedArray } from '../kernels/data.ts';
import { ownData } from '../kernels/owned.ts';
import { errText, isThenable, retryLater, timed, UdfError, withRetries } from './errors.ts';
import type { UdfStats } from './metrics.ts';
import type { UdfRuntime } from './runtime.ts';

export interface Failure {
  row: number;
  error: string;
  /** The original error, so a raised UdfError keeps its stack. */
  cause?: unknown;
}

export interface CallResult {
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
  constructor(
    readonly type: DataType,
    n: number,
  ) {
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
    // The engine allocated these floats and no user code holds them: a worker may move them (kernels/owned.ts).
    if (this.floats !== null && this.others === null) return ownData(mkData(this.type.toArrow(), this.floats.length, null, this.floats));
    let values = this.generic;
    if (values === null) {
      values = Array.from(this.floats!);
      for (const [i, v] of this.others!) values[i] = v;
    }
    return valuesToData(values, this.type, what);
  }
}

export async function callRowWise(
  def: UdfDefinition,
  node: UdfCallNode,
  args: arrow.Data[],
  n: number,
  rt: UdfRuntime,
  stats: UdfStats,
  failures: Failure[],
): Promise<RowOutput> {
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
          pending.push(
            retryLater(def, stats, () => timed(def, fn(...argsAt(i))), error).then(
              (r) => {
                out.set(i, r);
              },
              (e: unknown) => fail(i, e),
            ),
          );
        } else fail(i, error);
        continue;
      }
      if (isThenable(v)) {
        // A plain function that returned a promise behaves like an async UDF, retries and timeout included.
        pending.push(
          Promise.resolve(timed(def, v)).then(
            (r) => {
              out.set(i, r);
            },
            (e: unknown) =>
              def.options.maxRetries > 0
                ? retryLater(def, stats, () => timed(def, fn(...argsAt(i))), e).then(
                    (r) => {
                      out.set(i, r);
                    },
                    (e2: unknown) => fail(i, e2),
                  )
                : fail(i, e),
          ),
        );
      } else out.set(i, v);
    }
    stats.calls += n;
    if (pending.length) await Promise.all(pending);
    return out;
  }
  // async: many calls in flight, capped per call by maxConcurrency (shared across batches).
  const sem = rt.semaphore(def);
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      await sem.acquire();
      try {
        out.set(i, await withRetries(def, stats, () => timed(def, fn(...argsAt(i)) as Promise<unknown>)));
      } catch (e) {
        fail(i, e);
      } finally {
        sem.release();
      }
    }),
  );
  return out;
}

export async function callGenerator(
  def: UdfDefinition,
  node: UdfCallNode,
  args: arrow.Data[],
  n: number,
  rt: UdfRuntime,
  stats: UdfStats,
  failures: Failure[],
): Promise<{ values: unknown[]; parents: number[] }> {
  const fn = fnOf(def, node, rt);
  const cols = args.map(argValues);
  const values: unknown[] = [];
  const parents: number[] = [];
  for (let i = 0; i < n; i++) {
    try {
      // Each attempt collects into its own array: a retried (or timed-out, still running) attempt
      // never adds to the row's output.
      const rowOut = await withRetries(def, stats, () =>
        timed(
          def,
          (async () => {
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
          })(),
        ),
      );
      for (const v of rowOut) {
        values.push(v);
        parents.push(i);
      }
      // Nothing yielded: the row stays with a null (onEmpty 'null', as in Daft) or goes ('drop').
      if (!rowOut.length && def.options.onEmpty === 'null') {
        values.push(null);
        parents.push(i);
      }
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
    if (result.length !== n)
      throw new UdfError(`UDF '${def.name}' returned ${result.length} values for a batch of ${n} rows (rows ${offset}..${offset + n - 1})`, def.name);
    if (result.data.length === 1 && DataType.fromArrow(result.type).equals(type)) return result.data[0]!;
    data = valuesToData(result.toArray() as unknown[], type, `UDF '${def.name}'`);
  } else if (result && typeof result === 'object' && 'length' in result) {
    const arr = result as ArrayLike<unknown>;
    if (arr.length !== n)
      throw new UdfError(`UDF '${def.name}' returned ${arr.length} values for a batch of ${n} rows (rows ${offset}..${offset + n - 1})`, def.name);
    const at = type.toArrow();
    // A typed array of exactly the column's physical type becomes its values buffer, no copy.
    if (ArrayBuffer.isView(arr) && isNumeric(at) && arr.constructor === arrayCtor(at)) {
      return mkData(at, n, null, arr as unknown as TypedArray);
    }
    data = valuesToData(arr as readonly unknown[], type, `UDF '${def.name}'`);
  } else {
    throw new UdfError(
      `UDF '${def.name}' must return a Vector, a typed array or an array of ${n} values; got ${result === null ? 'null' : typeof result}`,
      def.name,
    );
  }
  return data;
}

export async function callBatch(
  def: UdfDefinition,
  node: UdfCallNode,
  args: arrow.Data[],
  n: number,
  rt: UdfRuntime,
  stats: UdfStats,
  failures: Failure[],
  offset: number,
): Promise<arrow.Data> {
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
      throw new UdfError(
        `UDF '${def.name}' returned a value that is not ${def.returnDtype} for rows ${offset + s}..${offset + s + len - 1}: ${e instanceof Error ? e.message : String(e)}`,
        def.name,
        e,
      );
    }
  }
  if (pieces.length === 1) return pieces[0]!;
  return concatData(pieces, def.returnDtype.toArrow());
}

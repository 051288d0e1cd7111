// Runs UDF calls over record batches: one call (callUdf: metrics, error policy, dead letters) and
// projections and filters that hold UDFs. The parts live in src/udf/: metrics.ts (stats, counters),
// runtime.ts (class instances, in-flight caps), errors.ts (UdfError, timeouts, retries), stall.ts
// (stalled-call watcher), call.ts (the four call forms), dead-letter.ts.
import * as arrow from 'apache-arrow';
import { type DataType, Schema } from './datatypes.ts';
import { valuesToData, type JsValue } from './convert/index.ts';
import { evaluate, filterBatch, projectBatch, takeBatch, type EvalContext } from './eval.ts';
import { udfCalls, type ExprNode, type UdfCallNode } from './expressions.ts';
import { getUdf, type UdfDefinition } from './udf.ts';
import { disownData } from './kernels/owned.ts';
import { callBatch, callGenerator, callRowWise, type CallResult, type Failure } from './udf/call.ts';
import { writeDeadLetter } from './udf/dead-letter.ts';
import { UdfError } from './udf/errors.ts';
import { current, mergeMetrics } from './udf/metrics.ts';
import { runtime, type UdfRuntime } from './udf/runtime.ts';
import { trackCall } from './udf/stall.ts';

export { emptyStats, mergeMetrics, metrics, type RunMetrics, type UdfStats } from './udf/metrics.ts';
export { runtime, Semaphore, UdfRuntime, type RemoteCallResult, type RemoteUdfs } from './udf/runtime.ts';
export { retryDelayMs, setRetrySleepForTests, UdfError } from './udf/errors.ts';
export { setSyncGuard, type SyncGuard } from './udf/call.ts';

/** Calls one UDF over a batch's argument columns. */
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

export async function callUdf(node: UdfCallNode, args: arrow.Data[], n: number, rt: UdfRuntime = runtime, offset = 0): Promise<CallResult> {
  const def = getUdf(node.name);
  // The UDF may keep what it is given: those buffers must never be moved to another thread.
  for (const a of args) disownData(a);
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
async function materializeUdfs(
  batch: arrow.RecordBatch,
  exprs: readonly ExprNode[],
  rt: UdfRuntime,
  offset: number,
): Promise<{ batch: arrow.RecordBatch; exprs: ExprNode[] }> {
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
  return new arrow.RecordBatch(
    schema,
    arrow.makeData({
      type: new arrow.Struct(fields),
      length: batch.numRows,
      nullCount: 0,
      children: [...batch.data.children, data],
    }),
  );
}

export async function projectWithUdfs(
  batch: arrow.RecordBatch,
  exprs: readonly ExprNode[],
  outSchema: Schema,
  rt: UdfRuntime = runtime,
  offset = 0,
): Promise<arrow.RecordBatch> {
  const m = await materializeUdfs(batch, exprs, rt, offset);
  return projectBatch(m.batch, m.exprs, outSchema);
}

export async function filterWithUdfs(batch: arrow.RecordBatch, predicate: ExprNode, rt: UdfRuntime = runtime, offset = 0): Promise<arrow.RecordBatch> {
  const m = await materializeUdfs(batch, [predicate], rt, offset);
  const filtered = filterBatch(m.batch, m.exprs[0]!);
  const schema = Schema.fromArrow(batch.schema);
  return projectBatch(
    filtered,
    schema.names.map((n) => ({ op: 'col', name: n })),
    schema,
  );
}

export type { JsValue };

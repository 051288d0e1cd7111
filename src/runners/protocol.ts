// Messages between the embedded runner and its worker threads, and the batch/error codecs they use.
import * as arrow from 'apache-arrow';
import type { PartitionTask } from '../physical.ts';
import type { PartitionOutcome } from '../executor.ts';
import type { RunMetrics } from '../udf-exec.ts';
import type { UdfCallNode } from '../expressions.ts';
import { unaliasBatch } from '../ipc-alias.ts';
import type { WireBatch } from './transfer.ts';

/** One actor-pool UDF call: the argument columns (as one IPC batch) of `n` rows. */
export interface UdfCallRequest {
  node: UdfCallNode;
  /** Modules that define the UDF (an actor imports them before its first call). */
  modules: string[];
  ipc: Uint8Array;
  n: number;
  offset: number;
  label: string | null;
}

/** An actor's answer: the result column as a one-column IPC batch, a generator's parents, metrics. */
export interface UdfCallReply {
  ipc: Uint8Array;
  parents?: Int32Array;
  metrics: RunMetrics;
}

export type ToWorker =
  /** `actors`: UDF names that run in the parent's actor pools, with each pool's size. */
  | { type: 'run'; taskId: number; task: PartitionTask; credits: number; actors?: Record<string, number> }
  | { type: 'credit'; taskId: number; n: number }
  | { type: 'cancel'; taskId: number }
  /** Actor side: construct the class instance now (Daft's actors start their instances up front). */
  | { type: 'init'; taskId: number; node: UdfCallNode; modules: string[] }
  /** Actor side: run one call. */
  | { type: 'call'; taskId: number; call: UdfCallRequest }
  /** Partition-worker side: the answer to a `udfCall` it relayed through the parent. */
  | { type: 'udfResult'; taskId: number; callId: number; reply: UdfCallReply }
  | { type: 'udfError'; taskId: number; callId: number; error: SerializedError }
  /** This process's compiled parquet-wasm module (a WebAssembly.Module; null when its compile failed), when it was not ready at the spawn. */
  | { type: 'parquetWasm'; taskId: 0; module: object | null };

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type FromWorker =
  /** `parquetWasm`: where the thread's parquet-wasm module came from (the parent's, or its own compile). */
  | { type: 'ready'; parquetWasm: 'file' | 'workerData' | 'message' }
  | { type: 'fatal'; error: SerializedError }
  /** A result batch, packed by transfer.ts (its `bytes` transferred). */
  | { type: 'batch'; taskId: number; wire: WireBatch; rows: number }
  /** `outcome`: what the driver measured (start, wall time), for the parent's trace spans. */
  | { type: 'done'; taskId: number; metrics: RunMetrics; outcome?: PartitionOutcome }
  | { type: 'sink'; taskId: number; result: PartitionOutcome; metrics: RunMetrics }
  | { type: 'error'; taskId: number; error: SerializedError }
  /** Actor: the answer to a 'call' (or an 'init', without ipc). */
  | { type: 'result'; taskId: number; reply: UdfCallReply }
  /** Partition worker: a call of an actor-pool UDF, for the parent to route to a free actor. */
  | { type: 'udfCall'; taskId: number; callId: number; call: UdfCallRequest };

/** One batch as an Arrow IPC stream in a buffer of its own, so it can be transferred. */
export function batchToIPC(batch: arrow.RecordBatch): Uint8Array {
  const bytes = arrow.tableToIPC(new arrow.Table([unaliasBatch(batch)]), 'stream');
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  return bytes.slice();
}

export function batchFromIPC(bytes: Uint8Array): arrow.RecordBatch {
  const t = arrow.tableFromIPC(bytes);
  if (t.batches.length === 1) return t.batches[0]!;
  // A zero-row batch comes back as a table without batches.
  return new arrow.RecordBatch(
    t.schema,
    arrow.makeData({
      type: new arrow.Struct(t.schema.fields),
      length: 0,
      nullCount: 0,
      children: t.schema.fields.map((f) => arrow.makeData({ type: f.type, length: 0 }) as arrow.Data),
    }),
  );
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const out: SerializedError = { name: err.name, message: err.message };
    if (err.stack) out.stack = err.stack;
    return out;
  }
  return { name: 'Error', message: String(err) };
}

/** Rebuilds a worker's error in this thread, keeping its name, message and original stack. */
export function deserializeError(e: SerializedError, context?: string): Error {
  // The driver names the partition in an AbortError already: once is enough.
  const named = !context || e.message.endsWith(`(${context})`);
  const err = new Error(named ? e.message : `${e.message} (${context})`);
  err.name = e.name;
  if (e.stack) err.stack = `${err.name}: ${err.message}\n    --- in worker ---\n${e.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

/** A call's argument columns as one IPC batch (columns a0, a1, ...; the row count rides along). */
export function argsToIPC(args: arrow.Data[], n: number): Uint8Array {
  const fields = args.map((d, i) => new arrow.Field(`a${i}`, d.type, true));
  const batch = new arrow.RecordBatch(new arrow.Schema(fields), arrow.makeData({ type: new arrow.Struct(fields), length: n, nullCount: 0, children: args }));
  return batchToIPC(batch);
}

export function argsFromIPC(bytes: Uint8Array): arrow.Data[] {
  return batchFromIPC(bytes).data.children.map((c) => c);
}

// Messages between the embedded runner and its worker threads, and the batch/error codecs they use.
import * as arrow from 'apache-arrow';
import type { PartitionTask } from '../physical.ts';
import type { PartitionOutcome } from '../executor.ts';
import type { RunMetrics } from '../udf-exec.ts';
import { unaliasBatch } from '../ipc-alias.ts';

export type ToWorker =
  | { type: 'run'; taskId: number; task: PartitionTask; credits: number }
  | { type: 'credit'; taskId: number; n: number }
  | { type: 'cancel'; taskId: number };

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'fatal'; error: SerializedError }
  | { type: 'batch'; taskId: number; ipc: Uint8Array; rows: number }
  | { type: 'done'; taskId: number; metrics: RunMetrics }
  | { type: 'sink'; taskId: number; result: PartitionOutcome; metrics: RunMetrics }
  | { type: 'error'; taskId: number; error: SerializedError };

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
  return new arrow.RecordBatch(t.schema, arrow.makeData({ type: new arrow.Struct(t.schema.fields), length: 0, nullCount: 0, children: t.schema.fields.map((f) => arrow.makeData({ type: f.type, length: 0 }) as arrow.Data) }));
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

// Buffers allocated for exactly one arrow.Data by the Parquet reader, a kernel or the UDF caller: each
// a whole ArrayBuffer that nothing else views. A worker may move such buffers to the main thread
// instead of copying them (src/runners/transfer.ts). Every buffer handed to user code (a UDF's
// arguments) is disowned first: a UDF may keep its input, and moving would detach it under the UDF.
// A WeakSet: marking keeps nothing alive, and a buffer not marked is simply copied.
import type * as arrow from 'apache-arrow';

const owned = new WeakSet<ArrayBufferLike>();

/** Marks `v`'s buffer, when `v` views all of it (a fresh allocation), as owned by the one Data it goes into. */
export function own(v: ArrayBufferView | null | undefined): void {
  if (v && v.byteLength > 0 && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) owned.add(v.buffer);
}

/** Marks the buffers of a Data a kernel has just built from fresh allocations (not its children's). */
export function ownData(d: arrow.Data): arrow.Data {
  own(d.values as ArrayBufferView | undefined);
  own(d.valueOffsets as ArrayBufferView | undefined);
  own(d.nullBitmap as ArrayBufferView | undefined);
  return d;
}

/** Whether `buf` was allocated for one Data alone (see above). */
export function isOwned(buf: ArrayBufferLike): boolean {
  return owned.has(buf);
}

/** `buf` is being moved to another thread: never offer it again. */
export function disown(buf: ArrayBufferLike): void {
  owned.delete(buf);
}

/** `d` goes to user code (a UDF's argument): its buffers, children's and dictionary's included, are never moved. */
export function disownData(d: arrow.Data): void {
  for (const v of [d.values, d.valueOffsets, d.nullBitmap, d.typeIds] as (ArrayBufferView | undefined)[]) if (v) owned.delete(v.buffer);
  for (const v of d.variadicBuffers ?? []) owned.delete(v.buffer);
  for (const c of d.children ?? []) disownData(c);
  for (const c of d.dictionary?.data ?? []) disownData(c);
}

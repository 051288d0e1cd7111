// Makes a RecordBatch safe to serialize as Arrow IPC when two of its columns share bytes.
//
// apache-arrow's IPC sink joins consecutive chunks that come from one ArrayBuffer and touch or overlap
// (util/buffer collapseContiguousByteRanges), assuming they are pieces of one contiguous read. Two
// columns whose buffers alias (`select(col('x'), col('x').alias('x2'))` reuses one Data; a batch UDF
// returning `v.toArray()` of its input views the input's bytes) are written as one shorter chunk:
// the stream is corrupt ("Expected to read N bytes for message body") and parquet-wasm rejects it
// ("Dyn casting error"). Only columns that alias are copied, so the common case costs one scan of
// the buffer list and no copy.
import * as arrow from 'apache-arrow';

interface Range {
  start: number;
  end: number;
  column: number;
}

function collect(data: arrow.Data, column: number, byBuffer: Map<ArrayBufferLike, Range[]>): void {
  const views: (ArrayBufferView | undefined)[] = [data.valueOffsets, data.values, data.nullBitmap, data.typeIds, ...(data.variadicBuffers ?? [])];
  for (const v of views) {
    if (!v || v.byteLength === 0) continue;
    let list = byBuffer.get(v.buffer);
    if (!list) byBuffer.set(v.buffer, (list = []));
    list.push({ start: v.byteOffset, end: v.byteOffset + v.byteLength, column });
  }
  for (const c of data.children ?? []) collect(c, column, byBuffer);
}

/** Indices of the top-level columns to copy so that no two buffers of the batch overlap. */
export function aliasedColumns(batch: arrow.RecordBatch): number[] {
  const byBuffer = new Map<ArrayBufferLike, Range[]>();
  const children = batch.data.children;
  for (let i = 0; i < children.length; i++) collect(children[i]!, i, byBuffer);
  const marked = new Set<number>();
  for (const ranges of byBuffer.values()) {
    if (ranges.length < 2) continue;
    ranges.sort((a, b) => a.start - b.start);
    let end = ranges[0]!.end;
    for (let i = 1; i < ranges.length; i++) {
      const r = ranges[i]!;
      // Strict overlap only: ranges that merely touch are joined back into the same bytes.
      if (r.start < end) marked.add(r.column);
      if (r.end > end) end = r.end;
    }
  }
  return [...marked].sort((a, b) => a - b);
}

function copyView<T extends ArrayBufferView | undefined>(v: T): T {
  return (v ? (v as unknown as { slice(): T }).slice() : v) as T;
}

/** A deep copy of `data` whose buffers are fresh ArrayBuffers (the dictionary is shared: it is written as its own message). */
export function copyData(data: arrow.Data): arrow.Data {
  return new arrow.Data(
    data.type,
    data.offset,
    data.length,
    data.nullCount,
    [copyView(data.valueOffsets), copyView(data.values), copyView(data.nullBitmap), copyView(data.typeIds)],
    (data.children ?? []).map(copyData),
    data.dictionary,
    (data.variadicBuffers ?? []).map(copyView),
  );
}

/** `batch` itself when no two of its buffers overlap; otherwise a batch whose aliasing columns are copies. */
export function unaliasBatch(batch: arrow.RecordBatch): arrow.RecordBatch {
  const cols = aliasedColumns(batch);
  if (cols.length === 0) return batch;
  const copy = new Set(cols);
  const children = batch.data.children.map((c, i) => (copy.has(i) ? copyData(c) : c));
  return new arrow.RecordBatch(
    batch.schema,
    batch.data.clone(batch.data.type, batch.data.offset, batch.data.length, batch.data.nullCount, batch.data.buffers, children),
  );
}

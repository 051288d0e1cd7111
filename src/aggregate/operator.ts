// Two-phase hash aggregation with spilling: each input partition is aggregated into its own
// partial table, whose state merges into the final table. When the tables outgrow the memory
// budget the final table's state is written, split by key hash into buckets, to spill files; at
// the end each bucket is merged on its own (grace hash aggregation), so one bucket at a time is held.
import * as arrow from 'apache-arrow';
import { HashAggregator, type AggSpec } from './hash-aggregate.ts';
import { batchBytes, MemoryShare, readSpill, slices, SpillDir } from '../relational/spill.ts';
import { take } from '../kernels/take.ts';

export interface AggregateRun {
  /** Key fields (the first columns of every input batch). */
  keys: arrow.Field[];
  specs: AggSpec[];
  /** Output schema: keys, then one column per aggregate. */
  schema: arrow.Schema;
  budgetBytes: number;
  batchSize: number;
}

const BUCKETS = 32;

function bucketBatch(b: arrow.RecordBatch, buckets: Int32Array, n: number): arrow.RecordBatch[] {
  const counts = new Int32Array(n + 1);
  for (let i = 0; i < buckets.length; i++) counts[buckets[i]! + 1]!++;
  for (let k = 0; k < n; k++) counts[k + 1]! += counts[k]!;
  const idx = new Int32Array(buckets.length);
  const pos = counts.slice(0, n);
  for (let i = 0; i < buckets.length; i++) idx[pos[buckets[i]!]!++] = i;
  const out: arrow.RecordBatch[] = [];
  for (let k = 0; k < n; k++) {
    const sel = idx.subarray(counts[k]!, counts[k + 1]!);
    const cols = b.data.children.map((c) => take(c, sel));
    out.push(new arrow.RecordBatch(b.schema, arrow.makeData({ type: new arrow.Struct(b.schema.fields), length: sel.length, nullCount: 0, children: cols })));
  }
  return out;
}

/** Aggregates partitions of input batches (keys first, then one column per aggregate). */
export async function* hashAggregate(partitions: AsyncIterable<AsyncIterable<arrow.RecordBatch>>, run: AggregateRun): AsyncGenerator<arrow.RecordBatch> {
  const mem = new MemoryShare(run.budgetBytes);
  const final = new HashAggregator(run.keys, run.specs, 'merge');
  const spill = new SpillDir();
  const bucketFiles: string[][] = Array.from({ length: BUCKETS }, () => []);
  let spilled = false;
  const spillFinal = (): void => {
    if (!final.groups) return;
    const buckets = final.bucketsOf(BUCKETS);
    const state = final.drainState();
    bucketBatch(state, buckets, BUCKETS).forEach((b, k) => {
      if (b.numRows) bucketFiles[k]!.push(spill.write(b));
    });
    spilled = true;
  };
  try {
    for await (const part of partitions) {
      const partial = new HashAggregator(run.keys, run.specs, 'update');
      // Adaptive partials: when a partition's first rows are mostly distinct keys, its partial table
      // would not reduce anything, and its rows go straight into the final table.
      let seen = 0;
      let direct = false;
      for await (const whole of part) {
        // Slices bound how much one push can grow the tables (an in-memory source may be one big batch).
        for (const b of slices(whole, run.batchSize)) {
          if (direct) {
            final.push(b, 'update');
            mem.set(final.bytes() + batchBytes(b));
            if (final.bytes() > run.budgetBytes / 4) spillFinal();
            continue;
          }
          partial.push(b);
          seen += b.numRows;
          if (seen >= 32_768 && partial.groups > seen / 2) {
            direct = true;
            final.push(partial.drainState());
            mem.set(final.bytes());
            if (final.bytes() > run.budgetBytes / 4) spillFinal();
            continue;
          }
          mem.set(partial.bytes() + final.bytes() + batchBytes(b));
          // A table doubles when it grows: keep both under a quarter of the budget.
          if (partial.bytes() + final.bytes() > run.budgetBytes / 4) {
            // Phase one's table is full: merge it into the final table now, spill that if needed.
            final.push(partial.drainState());
            mem.set(partial.bytes() + final.bytes());
            if (final.bytes() > run.budgetBytes / 4) spillFinal();
            mem.set(partial.bytes() + final.bytes());
          }
        }
      }
      if (partial.groups) final.push(partial.drainState());
      mem.set(final.bytes());
      if (final.bytes() > run.budgetBytes / 4) spillFinal();
      mem.set(final.bytes());
    }
    if (!spilled) {
      yield* slices(final.drainResult(run.schema), run.batchSize);
      return;
    }
    spillFinal();
    mem.set(0);
    for (const files of bucketFiles) {
      if (!files.length) continue;
      const bucket = new HashAggregator(run.keys, run.specs, 'merge');
      for (const b of readSpill(files)) {
        bucket.push(b);
        mem.set(bucket.bytes() + batchBytes(b));
      }
      const out = bucket.drainResult(run.schema);
      mem.set(batchBytes(out));
      yield* slices(out, run.batchSize);
    }
  } finally {
    mem.release();
    spill.close();
  }
}

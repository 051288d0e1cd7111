// Two-phase hash aggregation with spilling. Phase one (partialAggregate) runs in each input
// partition, on the partition's worker thread: its rows become partial states. Phase two
// (hashAggregate) merges every partition's states into the final table; a partition may also hand
// it raw rows (a partition whose keys are mostly distinct, or a host that did not run phase one),
// which it aggregates itself. When the tables outgrow the memory budget the final table's state is
// written, split by key hash into buckets, to spill files; at the end each bucket is merged on its
// own (grace hash aggregation), so one bucket at a time is held.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import type { PartialAggregateOp } from '../physical.ts';
import { HashAggregator, isPartialState, type AggSpec } from './hash-aggregate.ts';
import { batchBytes, countAggregateRows, MemoryShare, readSpill, slices, SpillDir } from '../relational/spill.ts';
import { take } from '../kernels/take.ts';
import { bucketOrder } from '../kernels/buckets.ts';

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
  const { idx, starts: counts } = bucketOrder(buckets, n);
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
        if (isPartialState(whole)) {
          // Phase one ran in the partition. Rows this thread holds in its own partial table came
          // first (first() and list() keep input order): they merge before these states.
          if (partial.groups) final.push(partial.drainState());
          for (const b of slices(whole, run.batchSize)) {
            final.push(b, 'merge');
            countAggregateRows('stateRowsMerged', b.numRows);
            mem.set(final.bytes() + batchBytes(b));
            if (final.bytes() > run.budgetBytes / 4) spillFinal();
          }
          mem.set(partial.bytes() + final.bytes());
          continue;
        }
        // Slices bound how much one push can grow the tables (an in-memory source may be one big batch).
        for (const b of slices(whole, run.batchSize)) {
          countAggregateRows('rawRowsAggregated', b.numRows);
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

/** The key fields and aggregate specs of a partial-aggregation operator. */
function partialRun(op: PartialAggregateOp): { keys: arrow.Field[]; specs: AggSpec[] } {
  const keys = op.schema.fields.slice(0, op.keys).map((f) => new arrow.Field(f.name, DataType.fromJSON(f.type).toArrow(), true));
  return { keys, specs: op.aggs };
}

/**
 * Phase one over one partition's rows (keys first, then one input column per aggregate): yields
 * partial-state batches (isPartialState), each time the table holds `flushBytes` and at the end.
 * When the first rows are mostly distinct keys the table would reduce nothing: what it holds goes
 * out as states and every later row as it is (hashAggregate aggregates raw rows too). Order is
 * kept (states, then raw rows), as first() and list() need.
 */
export async function* partialAggregate(input: AsyncIterable<arrow.RecordBatch>, op: PartialAggregateOp): AsyncGenerator<arrow.RecordBatch> {
  const { keys, specs } = partialRun(op);
  const table = new HashAggregator(keys, specs, 'update');
  const mem = new MemoryShare(op.flushBytes);
  let seen = 0;
  let direct = false;
  try {
    for await (const whole of input) {
      for (const b of slices(whole, op.batchSize)) {
        if (direct) {
          yield b;
          continue;
        }
        table.push(b);
        countAggregateRows('partialRowsAggregated', b.numRows);
        seen += b.numRows;
        if (seen >= 32_768 && table.groups > seen / 2) {
          direct = true;
          mem.set(0);
          yield table.drainState();
          continue;
        }
        mem.set(table.bytes());
        if (table.bytes() > op.flushBytes) {
          const state = table.drainState();
          mem.set(batchBytes(state));
          yield state;
        }
      }
    }
    if (table.groups) yield table.drainState();
  } finally {
    mem.release();
  }
}

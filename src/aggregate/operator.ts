// Two-phase hash aggregation with spilling. Phase one (partialAggregate) runs in each input
// partition, on the partition's worker thread: its rows become partial states. Phase two
// (hashAggregate) merges every partition's states into the final table; a partition may also hand
// it raw rows (a partition whose keys are mostly distinct, or a host that did not run phase one),
// which it aggregates itself. When the tables outgrow the memory budget the final table's state is
// written, split by key hash into buckets, to spill files; at the end each bucket is merged on its
// own (grace hash aggregation), so one bucket at a time is held.
import * as arrow from 'apache-arrow';
import { DataType, Schema } from '../datatypes.ts';
import { containsUdf, type AggFn, type ExprNode } from '../expressions.ts';
import { evalTuning, filterBatch, FilterProject, projectBatch } from '../eval.ts';
import { readParquetBorrowed } from '../io/parquet/read.ts';
import type { ReadParquetOptions } from '../io/parquet/types.ts';
import type { PartialAggregateOp, PartitionTask } from '../physical.ts';
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
 * Phase one's table over one partition's rows, synchronous: push() appends what goes out now to
 * `out`. When the first rows are mostly distinct keys the table would reduce nothing: what it holds
 * goes out as states and every later row as it is (`direct`; hashAggregate aggregates raw rows too).
 * Order is kept (states, then raw rows), as first() and list() need.
 */
class PhaseOne {
  private readonly table: HashAggregator;
  private readonly mem: MemoryShare;
  private seen = 0;
  /** Rows go out as they are (see above). */
  direct = false;
  constructor(private readonly op: PartialAggregateOp) {
    const { keys, specs } = partialRun(op);
    this.table = new HashAggregator(keys, specs, 'update');
    this.mem = new MemoryShare(op.flushBytes);
  }
  push(whole: arrow.RecordBatch, out: arrow.RecordBatch[]): void {
    const { table, mem, op } = this;
    for (const b of slices(whole, op.batchSize)) {
      if (this.direct) {
        out.push(b);
        continue;
      }
      table.push(b);
      countAggregateRows('partialRowsAggregated', b.numRows);
      this.seen += b.numRows;
      if (this.seen >= 32_768 && table.groups > this.seen / 2) {
        this.direct = true;
        mem.set(0);
        out.push(table.drainState());
        continue;
      }
      mem.set(table.bytes());
      if (table.bytes() > op.flushBytes) {
        const state = table.drainState();
        mem.set(batchBytes(state));
        out.push(state);
      }
    }
  }
  finish(out: arrow.RecordBatch[]): void {
    if (this.table.groups) out.push(this.table.drainState());
  }
  release(): void {
    this.mem.release();
  }
}

/**
 * Phase one over one partition's rows (keys first, then one input column per aggregate): yields
 * partial-state batches (isPartialState), each time the table holds `flushBytes` and at the end,
 * and raw rows once they are mostly distinct keys (PhaseOne).
 */
export async function* partialAggregate(input: AsyncIterable<arrow.RecordBatch>, op: PartialAggregateOp): AsyncGenerator<arrow.RecordBatch> {
  const phase = new PhaseOne(op);
  const out: arrow.RecordBatch[] = [];
  try {
    for await (const whole of input) {
      phase.push(whole, out);
      // Taken out before yielding: the consumer may stop at any of them.
      while (out.length) yield out.shift()!;
    }
    phase.finish(out);
    while (out.length) yield out.shift()!;
  } finally {
    phase.release();
  }
}

/** A/B switch (benches): phase one over borrowed views of parquet-wasm's memory where it can (borrowedPhaseOne). */
export const phaseOneTuning = { borrowViews: true };

/**
 * Aggregates whose accumulators keep nothing of their input column: sums, counts and min/max copy
 * values into their own arrays, interned strings are copied. (`list` keeps the input Data; `first`
 * keeps gathered slices: they take the copying path.)
 */
const KEEPS_NOTHING: ReadonlySet<AggFn> = new Set<AggFn>(['sum', 'count', 'mean', 'min', 'max', 'count_distinct']);

/**
 * Phase one of an aggregation straight over a Parquet scan's decoded batches as VIEWS of
 * parquet-wasm's memory (readParquetBorrowed) instead of copies: saves the copy out of wasm memory
 * and the garbage of 24 MB of typed arrays per 2M rows of the bench's groupBy. The contract is
 * synchronous: each batch goes through the task's ops (UDF-free project and filter, both pure
 * functions of the batch) into phase one's table within the reader's visit, and nothing of it is
 * kept (only the table's own arrays, KEEPS_NOTHING). Raw rows that leave phase one (mostly
 * distinct keys) are copied, and the reader copies from then on.
 * Returns null when the task is anything else (another source, hive partition columns, a limit, a
 * UDF, an aggregate that keeps its input): the caller then takes the copying stream.
 */
export function borrowedPhaseOne(task: PartitionTask, batchSize: number | undefined, check: () => void): AsyncGenerator<arrow.RecordBatch> | null {
  const op = task.ops[task.ops.length - 1];
  if (!phaseOneTuning.borrowViews || op?.type !== 'partialAggregate' || !op.aggs.every((a) => KEEPS_NOTHING.has(a.fn))) return null;
  const steps: Step[] = [];
  for (const pre of task.ops.slice(0, -1)) {
    if (pre.type === 'project' && !pre.exprs.some(containsUdf)) {
      const schema = Schema.fromJSON(pre.schema);
      steps.push((b) => projectBatch(b, pre.exprs, schema));
    } else if (pre.type === 'filter' && !containsUdf(pre.predicate)) steps.push(filterStep(pre.predicate));
    else return null;
  }
  // Several small files packed into one partition read one after the other, as readSource does.
  const src = task.source;
  const sources = src.kind === 'multi' && src.limit === null ? src.parts : [src];
  const scans: BorrowedScan[] = [];
  for (const part of sources) {
    if (part.kind !== 'parquet' || part.partition || part.limit !== null) return null;
    const opts: ReadParquetOptions = { columns: part.columns, schema: Schema.fromJSON(part.schema) };
    if (part.rowGroups) opts.rowGroups = part.rowGroups;
    if (part.rows) opts.rows = part.rows;
    if (batchSize) opts.batchSize = batchSize;
    scans.push({ path: part.path, opts, steps: part.filter ? [filterStep(part.filter), ...steps] : steps });
  }
  return phaseOneOverBorrowed(scans, op, check);
}

type Step = (b: arrow.RecordBatch) => arrow.RecordBatch;

/** One file's read, and what runs on each of its batches before phase one (its pushed filter, the task's ops). */
interface BorrowedScan {
  path: string;
  opts: ReadParquetOptions;
  steps: readonly Step[];
}

function filterStep(predicate: ExprNode): Step {
  if (!evalTuning.fusedFilterProject) return (b) => filterBatch(b, predicate);
  const fused = new FilterProject(predicate, null);
  return (b) => fused.apply(b);
}

async function* phaseOneOverBorrowed(scans: readonly BorrowedScan[], op: PartialAggregateOp, check: () => void): AsyncGenerator<arrow.RecordBatch> {
  const phase = new PhaseOne(op);
  const mode = { borrow: true };
  const out: arrow.RecordBatch[] = [];
  try {
    for (const scan of scans) {
      const visit = (batch: arrow.RecordBatch, borrowed: boolean): void => {
        check();
        let b = batch;
        for (const step of scan.steps) {
          b = step(b);
          if (!b.numRows) return; // as the copying path: filters drop empty batches
        }
        const from = out.length;
        phase.push(b, out);
        if (!phase.direct) return;
        // Raw rows go on to the merge: never views. The reader copies from the next batch on.
        mode.borrow = false;
        if (borrowed) for (let i = from; i < out.length; i++) if (!isPartialState(out[i]!)) out[i] = ownedCopy(out[i]!);
      };
      for await (const _ of readParquetBorrowed(scan.path, scan.opts, visit, mode)) {
        while (out.length) yield out.shift()!;
      }
    }
    phase.finish(out);
    while (out.length) yield out.shift()!;
  } finally {
    phase.release();
  }
}

/** Every column of `b` gathered into fresh arrays. */
function ownedCopy(b: arrow.RecordBatch): arrow.RecordBatch {
  const all = new Int32Array(b.numRows);
  for (let i = 0; i < all.length; i++) all[i] = i;
  const cols = b.data.children.map((c) => take(c, all));
  return new arrow.RecordBatch(b.schema, arrow.makeData({ type: new arrow.Struct(b.schema.fields), length: b.numRows, nullCount: 0, children: cols }));
}

// External merge sort: batches are buffered up to the memory budget, then sorted (radix sort,
// stable) into a run written to spill files; at the end the runs are merged (or, when nothing
// spilled, the buffer is sorted and emitted directly).
import * as arrow from 'apache-arrow';
import type { DataType } from '../datatypes.ts';
import { concatData } from '../kernels/concat.ts';
import { take } from '../kernels/take.ts';
import { batchBytes, MemoryShare, readSpill, slices, SpillDir } from '../relational/spill.ts';
import { compareRows, sortIndices, type OrderKey } from './order.ts';

export interface SortRun {
  schema: arrow.Schema;
  /** Column index of each sort key, most significant first. */
  keyIndex: number[];
  keyTypes: DataType[];
  keys: OrderKey[];
  budgetBytes: number;
  batchSize: number;
}

function makeBatch(schema: arrow.Schema, cols: arrow.Data[], n: number): arrow.RecordBatch {
  return new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children: cols }));
}

/** The buffered batches as one batch, sorted. */
function sortBuffer(buf: arrow.RecordBatch[], run: SortRun): arrow.RecordBatch {
  const n = buf.reduce((s, b) => s + b.numRows, 0);
  const cols = run.schema.fields.map((f, c) =>
    concatData(
      buf.map((b) => b.data.children[c]!),
      f.type,
    ),
  );
  const perm = sortIndices(
    run.keyIndex.map((k) => cols[k]!),
    run.keyTypes,
    run.keys,
    n,
  );
  return makeBatch(
    run.schema,
    cols.map((c) => take(c, perm)),
    n,
  );
}

export async function* externalSort(input: AsyncIterable<arrow.RecordBatch>, run: SortRun): AsyncGenerator<arrow.RecordBatch> {
  const mem = new MemoryShare(run.budgetBytes);
  const spill = new SpillDir();
  const runs: string[][] = [];
  let buf: arrow.RecordBatch[] = [];
  let bytes = 0;
  try {
    for await (const whole of input) {
      for (const b of slices(whole, run.batchSize)) {
        buf.push(b);
        bytes += batchBytes(b);
        mem.set(bytes);
        // Sorting needs about twice the buffer (the gathered copy): spill at half the budget.
        if (bytes > run.budgetBytes / 2) {
          const sorted = sortBuffer(buf, run);
          buf = [];
          runs.push([...slices(sorted, run.batchSize)].map((s) => spill.write(s)));
          bytes = 0;
          mem.set(0);
        }
      }
    }
    if (!runs.length) {
      if (buf.length) yield* slices(sortBuffer(buf, run), run.batchSize);
      return;
    }
    if (buf.length) runs.push([...slices(sortBuffer(buf, run), run.batchSize)].map((s) => spill.write(s)));
    buf = [];
    mem.set(0);
    yield* mergeRuns(runs, run, mem);
  } finally {
    mem.release();
    spill.close();
  }
}

/** k-way merge of sorted runs, one batch of each run in memory; ties go to the earlier run (stable). */
function* mergeRuns(runs: string[][], run: SortRun, mem: MemoryShare): Generator<arrow.RecordBatch> {
  const readers = runs.map((files) => readSpill(files));
  const cur: (arrow.RecordBatch | null)[] = readers.map((r) => r.next().value ?? null);
  const pos = runs.map(() => 0);
  const keyCols = (b: arrow.RecordBatch): arrow.Data[] => run.keyIndex.map((k) => b.data.children[k]!);
  let keys = cur.map((b) => (b ? keyCols(b) : []));
  let pickRun: number[] = [];
  let pickRow: number[] = [];
  const flush = (): arrow.RecordBatch | null => {
    if (!pickRun.length) return null;
    // Gather from the current batches of every run (their concatenation, with per-run bases).
    const live = cur.map((b, r) => (b ? r : -1)).filter((r) => r >= 0);
    const base = new Int32Array(cur.length);
    let off = 0;
    for (const r of live) {
      base[r] = off;
      off += cur[r]!.numRows;
    }
    const idx = Int32Array.from(pickRun, (r, i) => base[r]! + pickRow[i]!);
    const cols = run.schema.fields.map((f, c) =>
      take(
        concatData(
          live.map((r) => cur[r]!.data.children[c]!),
          f.type,
        ),
        idx,
      ),
    );
    pickRun = [];
    pickRow = [];
    return makeBatch(run.schema, cols, idx.length);
  };
  for (;;) {
    mem.set(cur.reduce((n, b) => n + (b ? batchBytes(b) : 0), 0));
    let best = -1;
    for (let r = 0; r < cur.length; r++) {
      if (!cur[r]) continue;
      if (best < 0 || compareRows(keys[r]!, pos[r]!, keys[best]!, pos[best]!, run.keyTypes, run.keys) < 0) best = r;
    }
    if (best < 0) break;
    pickRun.push(best);
    pickRow.push(pos[best]!);
    pos[best]!++;
    if (pos[best] === cur[best]!.numRows || pickRun.length >= run.batchSize) {
      const out = flush();
      if (out) yield out;
      if (pos[best] === cur[best]!.numRows) {
        cur[best] = readers[best]!.next().value ?? null;
        pos[best] = 0;
        keys = cur.map((b) => (b ? keyCols(b) : []));
      }
    }
  }
  const out = flush();
  if (out) yield out;
}

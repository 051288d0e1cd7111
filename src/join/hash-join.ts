// Hash join over Arrow batches: the build side (right) is one table of key words -> group, with its
// rows in group order (CSR offsets in Int32Arrays); the probe side (left) streams through it. When
// the build side is over the memory budget both sides are split by key hash into spill buckets and
// each bucket pair is joined on its own (grace hash join).
import * as arrow from 'apache-arrow';
import type { DataType } from '../datatypes.ts';
import type { JoinHow, JoinNode } from '../plan.ts';
import { concatData } from '../kernels/concat.ts';
import { allNull } from '../kernels/data.ts';
import { take } from '../kernels/take.ts';
import { zip } from '../kernels/zip.ts';
import { GroupTable, grow32, hashWords, KeyEncoder } from '../relational/keys.ts';
import { batchBytes, MemoryShare, readSpill, slices, SpillDir } from '../relational/spill.ts';

/** Where an output column comes from. */
export type JoinOutput = { side: 'left'; index: number } | { side: 'right'; index: number } | { side: 'coalesce'; left: number; right: number };

export interface JoinRun {
  how: JoinHow;
  leftKeys: number[];
  rightKeys: number[];
  keyTypes: DataType[];
  leftSchema: arrow.Schema;
  rightSchema: arrow.Schema;
  outSchema: arrow.Schema;
  outputs: JoinOutput[];
  budgetBytes: number;
  batchSize: number;
}

function makeBatch(schema: arrow.Schema, cols: arrow.Data[], n: number): arrow.RecordBatch {
  return new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children: cols }));
}

function concatAll(batches: readonly arrow.RecordBatch[], schema: arrow.Schema): arrow.RecordBatch {
  const n = batches.reduce((s, b) => s + b.numRows, 0);
  return makeBatch(
    schema,
    schema.fields.map((f, c) =>
      concatData(
        batches.map((b) => b.data.children[c]!),
        f.type,
      ),
    ),
    n,
  );
}

class Int32Builder {
  a: Int32Array = new Int32Array(1024);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) this.a = grow32(this.a, this.a.length * 2);
    this.a[this.n++] = v;
  }
  take(): Int32Array {
    const out = this.a.slice(0, this.n);
    this.n = 0;
    return out;
  }
}

/** The build side in memory: a table from key words to groups, rows listed per group. */
class JoinBuild {
  private readonly table: GroupTable;
  private readonly offsets: Int32Array;
  private readonly rows: Int32Array;
  private readonly matched: Uint8Array;
  readonly bytes: number;
  private readonly intKey: boolean;
  /** Probe buffers, reused batch to batch. */
  private words: Int32Array = new Int32Array(0);
  private gids: Int32Array = new Int32Array(0);

  constructor(
    readonly right: arrow.RecordBatch,
    private readonly enc: KeyEncoder,
    private readonly run: JoinRun,
  ) {
    const n = right.numRows;
    const words = enc.encode(
      run.rightKeys.map((k) => right.data.children[k]!),
      n,
      true,
    );
    this.table = new GroupTable(enc.width, Math.max(16, n));
    const gids = this.table.lookup(words, n, true);
    const W = enc.width;
    // A row with a null key matches nothing.
    for (let i = 0; i < n; i++) if (words[i * W] !== 0) gids[i] = -1;
    const groups = this.table.count;
    this.offsets = new Int32Array(groups + 1);
    for (let i = 0; i < n; i++) if (gids[i]! >= 0) this.offsets[gids[i]! + 1]!++;
    for (let g = 0; g < groups; g++) this.offsets[g + 1]! += this.offsets[g]!;
    const pos = this.offsets.slice(0, groups);
    this.rows = new Int32Array(this.offsets[groups]!);
    for (let i = 0; i < n; i++) if (gids[i]! >= 0) this.rows[pos[gids[i]!]!++] = i;
    this.matched = new Uint8Array(n);
    this.bytes = this.table.bytes() + this.offsets.byteLength + this.rows.byteLength + n + batchBytes(right) + words.byteLength;
    this.intKey = run.keyTypes.length === 1 && GroupTable.intKey(run.keyTypes[0]!);
  }

  /** The joined rows of one probe (left) batch. */
  probe(left: arrow.RecordBatch): arrow.RecordBatch | null {
    const n = left.numRows;
    const run = this.run;
    if (this.gids.length < n) this.gids = new Int32Array(n);
    const gids = this.gids;
    if (this.intKey) {
      // One integer key: the column's values are its key words, no encoding pass.
      const d = left.data.children[run.leftKeys[0]!]!;
      const bm = d.nullCount > 0 ? d.nullBitmap! : null;
      this.table.lookupInts(d.values as Int32Array, bm, d.offset, n, false, gids);
      // A null key matches nothing (the build side's null group included).
      if (bm) for (let i = 0; i < n; i++) if (!(bm[(d.offset + i) >> 3]! & (1 << ((d.offset + i) & 7)))) gids[i] = -1;
    } else {
      const W = this.enc.width;
      this.words = this.enc.encode(
        run.leftKeys.map((k) => left.data.children[k]!),
        n,
        false,
        this.words,
      );
      const words = this.words;
      this.table.lookup(words, n, false, gids);
      for (let i = 0; i < n; i++) if (words[i * W] !== 0) gids[i] = -1;
    }
    const how = run.how;
    if (how === 'semi' || how === 'anti') {
      let m = 0;
      for (let i = 0; i < n; i++) if (gids[i]! >= 0 === (how === 'semi')) m++;
      if (!m) return null;
      const li = new Int32Array(m);
      let p = 0;
      for (let i = 0; i < n; i++) if (gids[i]! >= 0 === (how === 'semi')) li[p++] = i;
      return this.output(left, li, null);
    }
    // Two passes: count the output rows, then fill exactly sized index arrays (no growing builders).
    const offsets = this.offsets;
    const rows = this.rows;
    const keepLeft = how === 'left' || how === 'outer';
    let m = 0;
    for (let i = 0; i < n; i++) {
      const g = gids[i]!;
      m += g >= 0 ? offsets[g + 1]! - offsets[g]! : keepLeft ? 1 : 0;
    }
    if (!m) return null;
    const li = new Int32Array(m);
    const ri = new Int32Array(m);
    let p = 0;
    for (let i = 0; i < n; i++) {
      const g = gids[i]!;
      if (g < 0) {
        if (keepLeft) {
          li[p] = i;
          ri[p++] = -1;
        }
        continue;
      }
      for (let q = offsets[g]!; q < offsets[g + 1]!; q++) {
        li[p] = i;
        ri[p++] = rows[q]!;
      }
    }
    if (how === 'right' || how === 'outer') for (let k = 0; k < m; k++) if (ri[k]! >= 0) this.matched[ri[k]!] = 1;
    return this.output(left, li, ri);
  }

  /** Right rows no left row matched (right and outer joins), with null left columns. */
  unmatched(): arrow.RecordBatch | null {
    if (this.run.how !== 'right' && this.run.how !== 'outer') return null;
    const ri = new Int32Builder();
    for (let i = 0; i < this.matched.length; i++) if (!this.matched[i]) ri.push(i);
    if (!ri.n) return null;
    const r = ri.take();
    return this.output(null, new Int32Array(r.length).fill(-1), r);
  }

  private output(left: arrow.RecordBatch | null, li: Int32Array, ri: Int32Array | null): arrow.RecordBatch {
    const run = this.run;
    const m = li.length;
    // Every left row once, in order (a lookup join where all keys match): its columns as they are.
    let identity = left !== null && m === left.numRows;
    for (let i = 0; identity && i < m; i++) identity = li[i] === i;
    const leftCol = (c: number): arrow.Data =>
      left ? (identity ? left.data.children[c]! : take(left.data.children[c]!, li)) : allNull(run.leftSchema.fields[c]!.type, m);
    const cols = run.outputs.map((o, k) => {
      const type = run.outSchema.fields[k]!.type;
      if (o.side === 'left') return leftCol(o.index);
      if (o.side === 'right') return take(this.right.data.children[o.index]!, ri!);
      // `on` keys of right/outer joins: the left key where the left row exists, else the right one.
      const pick = new Uint8Array((m + 7) >> 3);
      for (let i = 0; i < m; i++) if (li[i]! >= 0) pick[i >> 3]! |= 1 << (i & 7);
      return zip(pick, leftCol(o.left), take(this.right.data.children[o.right]!, ri!), m, type);
    });
    return makeBatch(run.outSchema, cols, m);
  }
}

const BUCKETS = 32;

function splitByKey(b: arrow.RecordBatch, keys: number[], enc: KeyEncoder): arrow.RecordBatch[] {
  const n = b.numRows;
  const W = enc.width;
  const words = enc.encode(
    keys.map((k) => b.data.children[k]!),
    n,
    true,
  );
  const bucket = new Int32Array(n);
  for (let i = 0; i < n; i++) bucket[i] = ((hashWords(words, i * W, W) >>> 16) * BUCKETS) >>> 16;
  const counts = new Int32Array(BUCKETS + 1);
  for (let i = 0; i < n; i++) counts[bucket[i]! + 1]!++;
  for (let k = 0; k < BUCKETS; k++) counts[k + 1]! += counts[k]!;
  const pos = counts.slice(0, BUCKETS);
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[pos[bucket[i]!]!++] = i;
  return Array.from({ length: BUCKETS }, (_, k) => {
    const sel = idx.subarray(counts[k]!, counts[k + 1]!);
    return makeBatch(
      b.schema,
      b.data.children.map((c) => take(c, sel)),
      sel.length,
    );
  });
}

function spillSplit(parts: arrow.RecordBatch[], files: string[][], spill: SpillDir): void {
  for (const [k, s] of parts.entries()) if (s.numRows) files[k]!.push(spill.write(s));
}

/** Joins left (probe) with right (build) under run.how. */
export async function* hashJoin(
  left: AsyncIterable<arrow.RecordBatch>,
  right: AsyncIterable<arrow.RecordBatch>,
  run: JoinRun,
): AsyncGenerator<arrow.RecordBatch> {
  const mem = new MemoryShare(run.budgetBytes);
  const spill = new SpillDir();
  try {
    const buf: arrow.RecordBatch[] = [];
    let bytes = 0;
    let spilled: { right: string[][]; enc: KeyEncoder } | null = null;
    for await (const b of right) {
      if (!b.numRows) continue;
      if (spilled) {
        spillSplit(splitByKey(b, run.rightKeys, spilled.enc), spilled.right, spill);
        continue;
      }
      buf.push(b);
      bytes += batchBytes(b);
      mem.set(bytes);
      // The build table takes about as much again as the rows: spill at half the budget.
      if (bytes > run.budgetBytes / 2) {
        spilled = { right: Array.from({ length: BUCKETS }, () => []), enc: new KeyEncoder(run.keyTypes) };
        for (const x of buf) spillSplit(splitByKey(x, run.rightKeys, spilled.enc), spilled.right, spill);
        buf.length = 0;
        mem.set(0);
      }
    }
    if (!spilled) {
      // Broadcast: the whole build side in one table, the probe side streams through it.
      const build = new JoinBuild(concatAll(buf, run.rightSchema), new KeyEncoder(run.keyTypes), run);
      buf.length = 0;
      mem.set(build.bytes);
      for await (const b of left) {
        if (!b.numRows) continue;
        const out = build.probe(b);
        if (out) yield* slices(out, run.batchSize);
      }
      const rest = build.unmatched();
      if (rest) yield* slices(rest, run.batchSize);
      return;
    }
    const leftFiles: string[][] = Array.from({ length: BUCKETS }, () => []);
    for await (const b of left) {
      if (!b.numRows) continue;
      spillSplit(splitByKey(b, run.leftKeys, spilled.enc), leftFiles, spill);
    }
    for (let k = 0; k < BUCKETS; k++) {
      const rightRows = [...readSpill(spilled.right[k]!)];
      const build = new JoinBuild(concatAll(rightRows, run.rightSchema), new KeyEncoder(run.keyTypes), run);
      mem.set(build.bytes);
      for (const b of readSpill(leftFiles[k]!)) {
        const out = build.probe(b);
        if (out) yield* slices(out, run.batchSize);
      }
      const rest = build.unmatched();
      if (rest) yield* slices(rest, run.batchSize);
    }
  } finally {
    mem.release();
    spill.close();
  }
}

/** A join node's output columns from its inputs' (both runners use it: the layout must agree). */
export function joinOutputs(node: JoinNode): JoinOutput[] {
  const [left, right] = node.inputs;
  const ln = left.schema.fields.map((f) => f.name);
  const rn = right.schema.fields.map((f) => f.name);
  const outputs: JoinOutput[] = [];
  const semi = node.how === 'semi' || node.how === 'anti';
  for (const [i, name] of ln.entries()) {
    const k = node.leftOn.indexOf(name);
    if (!semi && node.using && k >= 0 && (node.how === 'right' || node.how === 'outer'))
      outputs.push({ side: 'coalesce', left: i, right: rn.indexOf(node.rightOn[k]!) });
    else outputs.push({ side: 'left', index: i });
  }
  if (!semi) for (const [i, name] of rn.entries()) if (node.rightNames[name] !== undefined) outputs.push({ side: 'right', index: i });
  return outputs;
}

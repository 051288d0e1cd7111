// One hash-aggregation table: key words -> dense group ids (GroupTable), one accumulator per
// aggregate. 'update' tables take raw rows, 'merge' tables take partial states; both can emit
// their partial state (to merge elsewhere or to spill) or the final result.
import * as arrow from 'apache-arrow';
import { DataType, type DataTypeJSON } from '../datatypes.ts';
import type { AggFn } from '../expressions.ts';
import { GroupTable, KeyEncoder } from '../relational/keys.ts';
import { fullWindow, makeAccumulator, stateTypes, type Accumulator, type DenseUpdate, type SlotWindow } from './accumulators.ts';

/** One aggregate as the plan carries it: function, input and output types, output name. */
export interface AggSpec {
  fn: AggFn;
  inType: DataTypeJSON;
  outType: DataTypeJSON;
  name: string;
}

/** Schema metadata that marks a batch of partial states (as opposed to raw input rows). */
const PARTIAL_KEY = 'fanout.aggregate';

/** Column layout of the partial state: keys, then each aggregate's state columns. */
export function partialSchema(keys: readonly arrow.Field[], specs: readonly AggSpec[]): arrow.Schema {
  const fields = [...keys];
  for (const [i, s] of specs.entries()) {
    const types = stateTypes(s.fn, DataType.fromJSON(s.inType), DataType.fromJSON(s.outType));
    for (const [j, t] of types.entries()) fields.push(new arrow.Field(`__s${i}_${j}`, t.toArrow(), true));
  }
  // The mark travels with the schema (worker transfer, IPC spill files), so a consumer that gets
  // raw rows and partial states from the same partition tells them apart.
  return new arrow.Schema(fields, new Map([[PARTIAL_KEY, 'partial']]));
}

/** Is this a batch of partial states (drainState's output), not raw input rows? */
export function isPartialState(b: arrow.RecordBatch): boolean {
  return b.schema.metadata.get(PARTIAL_KEY) === 'partial';
}

/** Rows the group-id path takes after a fused run stops at a key (see pushFused). */
const STRETCH = 64;

export class HashAggregator {
  private readonly enc: KeyEncoder;
  private table: GroupTable;
  private accs: Accumulator[];
  private readonly stateWidths: number[];
  private readonly intKey: boolean;
  private words: Int32Array = new Int32Array(0);
  private gids: Int32Array = new Int32Array(0);
  /** Rows the fused dense path aggregated (pushDense), for tests and benches. */
  fusedRows = 0;
  /** Of those, rows the slot loops took (fullWindow). */
  slotRows = 0;
  /** The last index fullWindow was asked about, at which group count, and its answer. */
  private windowAt: { index: Int32Array; groups: number; slots: SlotWindow | null } | null = null;

  constructor(
    private readonly keyFields: readonly arrow.Field[],
    private readonly specs: readonly AggSpec[],
    private readonly mode: 'update' | 'merge',
  ) {
    this.enc = new KeyEncoder(keyFields.map((f) => DataType.fromArrow(f.type)));
    this.intKey = this.enc.types.length === 1 && GroupTable.intKey(this.enc.types[0]!);
    this.table = new GroupTable(this.enc.width);
    this.accs = this.newAccs();
    this.stateWidths = specs.map((s) => stateTypes(s.fn, DataType.fromJSON(s.inType), DataType.fromJSON(s.outType)).length);
  }

  private newAccs(): Accumulator[] {
    return this.specs.map((s) => makeAccumulator(s.fn, DataType.fromJSON(s.inType), DataType.fromJSON(s.outType)));
  }

  get groups(): number {
    return this.table.count;
  }

  /** Bytes this table holds (hash table, key dictionaries, accumulator arrays). */
  bytes(): number {
    return this.table.bytes() + this.enc.bytes() + this.words.byteLength + this.accs.reduce((n, a) => n + a.bytes(), 0);
  }

  /**
   * Rows: key columns first, then one input column per aggregate ('update') or the state columns
   * ('merge'); `mode` overrides the table's own (raw rows into a final table when partials do not reduce).
   */
  push(batch: arrow.RecordBatch, mode: 'update' | 'merge' = this.mode): void {
    const n = batch.numRows;
    if (!n) return;
    if (this.intKey && mode === 'update' && this.accs.length) this.pushFused(batch);
    else this.pushRows(batch, mode);
  }

  /**
   * One int32 key without nulls (the common groupBy): runs of rows whose keys are existing groups
   * of the dense index go through each aggregate's fused loop (Accumulator.dense), the group read
   * from the index with no group-id array. A row it cannot take (a new key, an outlier) starts a
   * stretch of STRETCH rows on the group-id path, then the loops resume; when the first row misses,
   * or the stretches have taken more rows of the batch than the loops (mostly new keys), the rest
   * of the batch takes group ids.
   * Without aggregates (distinct) a new key would stop no loop: that takes the group-id path.
   */
  private pushFused(batch: arrow.RecordBatch): void {
    const n = batch.numRows;
    const cols = batch.data.children;
    const key = cols[0]!;
    const keys = key.values as unknown;
    if (key.nullCount > 0 || !(keys instanceof Int32Array)) {
      this.pushRows(batch, 'update');
      return;
    }
    let i = 0;
    // Rows of this batch the fused loops and the group-id stretches took.
    let fused = 0;
    let byIds = 0;
    const budget = { rows: n >> 3 };
    while (i < n) {
      const dense = this.table.denseIndex();
      if (!dense && this.table.count === 0 && n > 2 * STRETCH) {
        // A fresh table: a stretch of group ids builds the index, the loops may take the rest.
        i = byIds = STRETCH;
        this.pushRows(batch.slice(0, STRETCH), 'update');
        continue;
      }
      const loops = dense && this.denseLoops(cols);
      if (!dense || !loops) {
        // No index yet (or keys too spread for one), nulls in a value column, a group without a value.
        this.pushRows(i ? batch.slice(i, n) : batch, 'update');
        return;
      }
      const window = this.slotWindow(dense.index, dense.base, budget);
      // Each loop moves the window's values to slots and back: only for a window small next to the rows left.
      const slots = window && window.len * 8 <= n - i ? window : null;
      // The first loop decides where the run ends; the others take the same rows (same keys).
      const end = loops[0]!(keys, dense.index, dense.base, i, n, slots);
      for (let a = 1; a < loops.length; a++) loops[a]!(keys, dense.index, dense.base, i, end, slots);
      this.fusedRows += end - i;
      if (slots) this.slotRows += end - i;
      fused += end - i;
      if (end >= n) return;
      // Keys the index misses often (mostly new keys, a miss on the first row): the rest of the batch takes group ids.
      i = fused === 0 || byIds > fused ? n : Math.min(n, end + STRETCH);
      byIds += i - end;
      this.pushRows(end === 0 && i === n ? batch : batch.slice(end, i), 'update');
    }
  }

  /**
   * The window the fused loops may add by slot in (fullWindow), or null. Finding it costs O(index)
   * (and each loop moves the window's values to slots and back), so it is looked for again only when
   * the index or the group count changed, and a batch spends at most an eighth of its rows on that
   * (`budget`); past it, the last window found for this index holds: entries of an index are only
   * ever added, so a window full once stays full (a key of a group added since stops a run, as a
   * new key does, and the next batch looks again).
   */
  private slotWindow(index: Int32Array, base: number, budget: { rows: number }): SlotWindow | null {
    const at = this.windowAt;
    const same = at !== null && at.index === index;
    if (same && at.groups === this.table.count) return at.slots;
    if (index.length > budget.rows) return same ? at.slots : null;
    budget.rows -= index.length;
    const slots = fullWindow(index, base);
    this.windowAt = { index, groups: this.table.count, slots };
    return slots;
  }

  /** Each aggregate's fused loop over this batch's columns, or null when one cannot take them. */
  private denseLoops(cols: readonly arrow.Data[]): DenseUpdate[] | null {
    const loops: DenseUpdate[] = [];
    for (const [a, acc] of this.accs.entries()) {
      const loop = acc.dense?.(cols[1 + a]!);
      if (!loop) return null;
      loops.push(loop);
    }
    return loops;
  }

  /** The group-id path: every key looked up (or inserted), then each aggregate over the group ids. */
  private pushRows(batch: arrow.RecordBatch, mode: 'update' | 'merge'): void {
    const n = batch.numRows;
    const cols = batch.data.children;
    const K = this.keyFields.length;
    const before = this.table.count;
    if (this.gids.length < n) this.gids = new Int32Array(n);
    let gids: Int32Array;
    if (this.intKey) {
      // One integer key: its values are the key words, no encoding pass.
      const d = cols[0]!;
      gids = this.table.lookupInts(d.values as Int32Array, d.nullCount > 0 ? d.nullBitmap! : null, d.offset, n, true, this.gids);
    } else {
      this.words = this.enc.encode(cols.slice(0, K), n, true, this.words);
      gids = this.table.lookup(this.words, n, true, this.gids);
    }
    const groups = this.table.count;
    let c = K;
    for (const [i, acc] of this.accs.entries()) {
      if (mode === 'update') acc.update(gids, n, cols[c++]!, before, groups);
      else {
        acc.merge(gids, n, cols.slice(c, c + this.stateWidths[i]!), before, groups);
        c += this.stateWidths[i]!;
      }
    }
  }

  private keyColumns(groups: number): arrow.Data[] {
    const keys = this.table.keys.subarray(0, Math.max(groups, this.table.count) * this.enc.width);
    const padded = groups > this.table.count ? new Int32Array(groups * this.enc.width) : keys;
    if (padded !== keys) padded.set(keys);
    return this.enc.decode(
      padded,
      groups,
      this.keyFields.map((f) => f.type),
    );
  }

  /** Keys and partial states of every group (then the table is empty again). */
  drainState(): arrow.RecordBatch {
    const g = this.table.count;
    const schema = partialSchema(this.keyFields, this.specs);
    const cols = [...this.keyColumns(g), ...this.accs.flatMap((a) => a.state(g))];
    this.reset();
    return new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: g, nullCount: 0, children: cols }));
  }

  /** Keys and final values of every group; a whole-frame aggregate (no keys) always has one row. */
  drainResult(schema: arrow.Schema): arrow.RecordBatch {
    const g = this.keyFields.length === 0 ? 1 : this.table.count;
    const cols = [...this.keyColumns(g), ...this.accs.map((a) => a.result(g))];
    this.reset();
    return new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: g, nullCount: 0, children: cols }));
  }

  /** Each group's bucket among `buckets` (by key hash), for spilling. */
  bucketsOf(buckets: number): Int32Array {
    const out = new Int32Array(this.table.count);
    for (let g = 0; g < out.length; g++) out[g] = ((this.table.hashOf(g) >>> 16) * buckets) >>> 16;
    return out;
  }

  reset(): void {
    this.table = new GroupTable(this.enc.width);
    this.accs = this.newAccs();
  }
}

// Aggregate accumulators over dense group ids, in typed arrays (one slot per group, never a JS
// object per row). Each has a partial state as Arrow columns, so partials from partitions (or from
// spill files) merge into a final table: sum/min/max/first merge by updating on their own state,
// count by summing, mean as (sum, count), list and countDistinct as lists of values.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import type { AggFn } from '../expressions.ts';
import { concatData } from '../kernels/concat.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { take } from '../kernels/take.ts';
import { compareBytes } from '../kernels/utf8.ts';
import { ByteDictionary, GroupTable, KeyEncoder } from '../relational/keys.ts';

export interface Accumulator {
  /**
   * Raw input rows: row i belongs to group gids[i]; `before` is the group count before this batch,
   * `groups` the count after it (every gid is below it; the groups from `before` on are new, each
   * with a row in this batch). Without `groups` the accumulator finds the largest gid itself.
   */
  update(gids: Int32Array, n: number, col: arrow.Data, before: number, groups?: number): void;
  /** Partial-state rows (the columns `state` produced). */
  merge(gids: Int32Array, n: number, cols: arrow.Data[], before: number, groups?: number): void;
  state(groups: number): arrow.Data[];
  result(groups: number): arrow.Data;
  bytes(): number;
  /**
   * The fused path of one int32 key column with a dense index (GroupTable.denseIndex): when this
   * accumulator can take `col` that way (a value column without nulls), a loop that
   * aggregates rows from `from` on, in order, while each row's key is an existing group of the
   * index, and returns the first row it did not take (n when all). Else null (the caller takes the
   * group-id path). The loop holds this accumulator's arrays: it is valid until the next update.
   */
  dense?(col: arrow.Data): DenseUpdate | null;
}

/**
 * See Accumulator.dense: keys[i] - base indexes `index`, which holds group id + 1 (0: no group).
 * `slots`: a window of the index where every entry is a group (fullWindow), or null; the loop may
 * then add by slot for keys inside it, with no lookup per row.
 */
export type DenseUpdate = (keys: Int32Array, index: Int32Array, base: number, from: number, n: number, slots: SlotWindow | null) => number;

/** Entries [lo, lo + len) of a dense index, each a group. */
export interface SlotWindow {
  lo: number;
  len: number;
}

/**
 * The entries of a dense index from its first group to its last, when every one between is a group
 * (an index grows with room to spare at its top, so it is rarely full to its end); else null. A key
 * inside the window is then an existing group, and the slot loops below need one range check per
 * row instead of a lookup and two checks. That check is one unsigned compare,
 * (key - start) >>> 0 < len with start = base + lo: a key below start wraps to key - start + 2^32,
 * which is >= len whenever start + len <= 2^31 (true of an index over int32 keys; checked anyway).
 */
export function fullWindow(index: Int32Array, base: number): SlotWindow | null {
  let lo = 0;
  let hi = index.length;
  while (lo < hi && index[lo] === 0) lo++;
  while (hi > lo && index[hi - 1] === 0) hi--;
  if (hi === lo || base + hi > 2 ** 31) return null;
  for (let x = lo; x < hi; x++) if (index[x] === 0) return null;
  return { lo, len: hi - lo };
}

function isValidAt(d: arrow.Data, i: number): boolean {
  if (d.nullCount === 0) return d.typeId !== arrow.Type.Null;
  const p = d.offset + i;
  return (d.nullBitmap![p >> 3]! & (1 << (p & 7))) !== 0;
}

function growF64(a: Float64Array, n: number): Float64Array {
  if (n <= a.length) return a;
  const next = new Float64Array(Math.max(n, a.length * 2));
  next.set(a);
  return next;
}
function growU8(a: Uint8Array, n: number): Uint8Array {
  if (n <= a.length) return a;
  const next = new Uint8Array(Math.max(n, a.length * 2));
  next.set(a);
  return next;
}
function growBig(a: BigInt64Array, n: number): BigInt64Array {
  if (n <= a.length) return a;
  const next = new BigInt64Array(Math.max(n, a.length * 2));
  next.set(a);
  return next;
}
function growI32(a: Int32Array, n: number, fill = 0): Int32Array {
  if (n <= a.length) return a;
  const next = new Int32Array(Math.max(n, a.length * 2)).fill(fill);
  next.set(a);
  return next;
}

function validityOf(has: Uint8Array, groups: number): Uint8Array | null {
  let all = true;
  for (let g = 0; g < groups; g++) if (!has[g]) all = false;
  if (all) return null;
  const v = new Uint8Array((groups + 7) >> 3);
  for (let g = 0; g < groups; g++) if (has[g]) v[g >> 3]! |= 1 << (g & 7);
  return v;
}

/** Reads a numeric (or bool / date) column as JS numbers. */
function numberReader(d: arrow.Data): (i: number) => number {
  if (d.typeId === arrow.Type.Bool) {
    const v = d.values as Uint8Array;
    const off = d.offset;
    return (i) => (v[(off + i) >> 3]! >> ((off + i) & 7)) & 1;
  }
  const v = d.values as unknown as ArrayLike<number>;
  return (i) => v[i]!;
}

const BIG = new Set(['int64', 'uint64', 'timestamp']);

/** Groups an update must size for: `groups` when the caller knows it, else the largest gid + 1. */
function groupsOf(gids: Int32Array, n: number, groups: number | undefined): number {
  if (groups !== undefined) return groups;
  let m = -1;
  for (let i = 0; i < n; i++) if (gids[i]! > m) m = gids[i]!;
  return m + 1;
}

/**
 * Which groups have a non-null value (SQL: a sum, min or max over only nulls is null). `missing`
 * counts the groups without one, so a batch without nulls can skip the per-row flag when every
 * older group already has one: it flags only its new groups, all at once.
 */
class HasValue {
  flags: Uint8Array = new Uint8Array(256);
  private sized = 0;
  private missing = 0;
  /** Sizes for `groups`; true when every group below `before` has a value. */
  grow(groups: number, before: number | undefined): boolean {
    this.flags = growU8(this.flags, groups);
    if (groups > this.sized) {
      this.missing += groups - this.sized;
      this.sized = groups;
    }
    return before !== undefined && this.missing === groups - before;
  }
  /** After a null-free batch that `grow` said was complete: its new groups [before, groups) all have values. */
  fillNew(before: number, groups: number): void {
    this.flags.fill(1, before, groups);
    this.missing = 0;
  }
  /** Does every group sized so far have a value? (then rows of existing groups change no flag) */
  complete(): boolean {
    return this.missing === 0;
  }
  set(g: number): void {
    if (!this.flags[g]) {
      this.flags[g] = 1;
      this.missing--;
    }
  }
}

// Per-type loops, each monomorphic in its arrays (one call site per typed-array class).
function sumF64(f: Float64Array, gids: Int32Array, v: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) f[gids[i]!] += v[i]!;
}
function sumI32(f: Float64Array, gids: Int32Array, v: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) f[gids[i]!] += v[i]!;
}
function sumNumbers(f: Float64Array, gids: Int32Array, v: ArrayLike<number>, n: number): void {
  for (let i = 0; i < n; i++) f[gids[i]!] += v[i]!;
}

// The fused loops (Accumulator.dense): the group comes from the key through the dense index, with
// no group-id array written and read back; rows stay in input order, so sums are bit-identical to
// the group-id path. Each stops at the first row whose key is outside the index or not a group yet.
function sumDenseF64(f: Float64Array, keys: Int32Array, index: Int32Array, base: number, v: Float64Array, from: number, n: number): number {
  const len = index.length;
  for (let i = from; i < n; i++) {
    const x = keys[i]! - base;
    if (x < 0 || x >= len) return i;
    const g1 = index[x]!;
    if (g1 === 0) return i;
    f[g1 - 1] += v[i]!;
  }
  return n;
}
function sumDenseI32(f: Float64Array, keys: Int32Array, index: Int32Array, base: number, v: Int32Array, from: number, n: number): number {
  const len = index.length;
  for (let i = from; i < n; i++) {
    const x = keys[i]! - base;
    if (x < 0 || x >= len) return i;
    const g1 = index[x]!;
    if (g1 === 0) return i;
    f[g1 - 1] += v[i]!;
  }
  return n;
}
/** sumDense* while some group has no value yet: the first value of a group flags it. */
function sumDenseFlagging(
  f: Float64Array,
  has: HasValue,
  keys: Int32Array,
  index: Int32Array,
  base: number,
  v: Float64Array | Int32Array,
  from: number,
  n: number,
): number {
  const len = index.length;
  const flags = has.flags;
  for (let i = from; i < n; i++) {
    const x = keys[i]! - base;
    if (x < 0 || x >= len) return i;
    const g1 = index[x]!;
    if (g1 === 0) return i;
    f[g1 - 1] += v[i]!;
    if (!flags[g1 - 1]) has.set(g1 - 1);
  }
  return n;
}
// The slot loops (a window of the index where every entry is a group, see fullWindow): each
// group's value is moved to its key's slot for the run and back after it, so every group still adds
// its rows in input order (bit-identical), while the loop indexes by key with no lookup of the
// group. Over the bench file's 8 keys, ~18-21% less CPU than the lookup loops (docs/performance.md,
// "Session 6").
function toSlots(f: Float64Array, index: Int32Array, lo: number, s: Float64Array): void {
  for (let x = 0; x < s.length; x++) s[x] = f[index[lo + x]! - 1]!;
}
function fromSlots(f: Float64Array, index: Int32Array, lo: number, s: Float64Array): void {
  for (let x = 0; x < s.length; x++) f[index[lo + x]! - 1] = s[x]!;
}
function sumSlotsF64(s: Float64Array, keys: Int32Array, base: number, v: Float64Array, from: number, n: number): number {
  const len = s.length;
  for (let i = from; i < n; i++) {
    const x = (keys[i]! - base) >>> 0;
    if (x >= len) return i;
    s[x] += v[i]!;
  }
  return n;
}
function sumSlotsI32(s: Float64Array, keys: Int32Array, base: number, v: Int32Array, from: number, n: number): number {
  const len = s.length;
  for (let i = from; i < n; i++) {
    const x = (keys[i]! - base) >>> 0;
    if (x >= len) return i;
    s[x] += v[i]!;
  }
  return n;
}
function countSlots(s: Float64Array, keys: Int32Array, base: number, from: number, n: number): number {
  const len = s.length;
  for (let i = from; i < n; i++) {
    const x = (keys[i]! - base) >>> 0;
    if (x >= len) return i;
    s[x]++;
  }
  return n;
}

/** A scratch array of exactly `len` slots (the slot loops and moves are bounded by its length). */
class Slots {
  private s = new Float64Array(0);
  of(len: number): Float64Array {
    if (this.s.length !== len) this.s = new Float64Array(len);
    return this.s;
  }
}

function countDense(c: Float64Array, keys: Int32Array, index: Int32Array, base: number, from: number, n: number): number {
  const len = index.length;
  for (let i = from; i < n; i++) {
    const x = keys[i]! - base;
    if (x < 0 || x >= len) return i;
    const g1 = index[x]!;
    if (g1 === 0) return i;
    c[g1 - 1]++;
  }
  return n;
}

/** sum over numbers (float64 or, for integers up to 32 bits, exact in float64 and returned as int64) or over int64 in bigints. */
class SumAcc implements Accumulator {
  private f: Float64Array = new Float64Array(256);
  private b: BigInt64Array = new BigInt64Array(0);
  private readonly has = new HasValue();
  private readonly big: boolean;
  private readonly slots = new Slots();
  constructor(
    inType: DataType,
    private readonly outType: DataType,
  ) {
    this.big = BIG.has(inType.kind);
    if (this.big) this.b = new BigInt64Array(256);
  }
  update(gids: Int32Array, n: number, col: arrow.Data, before?: number, groups?: number): void {
    const need = groupsOf(gids, n, groups);
    const complete = this.has.grow(need, before);
    const noNull = col.nullCount === 0;
    const has = this.has;
    if (this.big) {
      this.b = growBig(this.b, need);
      const v = col.values as BigInt64Array;
      for (let i = 0; i < n; i++) {
        if (!noNull && !isValidAt(col, i)) continue;
        const g = gids[i]!;
        this.b[g] = this.b[g]! + BigInt(v[i]!);
        has.set(g);
      }
      return;
    }
    this.f = growF64(this.f, need);
    const f = this.f;
    if (noNull && col.typeId !== arrow.Type.Bool) {
      const v = col.values as unknown;
      if (v instanceof Float64Array) sumF64(f, gids, v, n);
      else if (v instanceof Int32Array) sumI32(f, gids, v, n);
      else sumNumbers(f, gids, v as ArrayLike<number>, n);
      if (complete) has.fillNew(before!, need);
      else for (let i = 0; i < n; i++) has.set(gids[i]!);
      return;
    }
    const read = numberReader(col);
    for (let i = 0; i < n; i++) {
      if (!noNull && !isValidAt(col, i)) continue;
      const g = gids[i]!;
      f[g] += read(i);
      has.set(g);
    }
  }
  dense(col: arrow.Data): DenseUpdate | null {
    if (this.big || col.nullCount !== 0) return null;
    // The rows it takes are of existing groups: `f` and the flags are already sized for them.
    const f = this.f;
    const v = col.values as unknown;
    if (!(v instanceof Float64Array) && !(v instanceof Int32Array && col.typeId === arrow.Type.Int)) return null;
    if (!this.has.complete()) {
      const has = this.has;
      return (keys, index, base, from, n) => sumDenseFlagging(f, has, keys, index, base, v, from, n);
    }
    const scratch = this.slots;
    if (v instanceof Float64Array) {
      return (keys, index, base, from, n, slots) => {
        if (!slots) return sumDenseF64(f, keys, index, base, v, from, n);
        const s = scratch.of(slots.len);
        toSlots(f, index, slots.lo, s);
        const end = sumSlotsF64(s, keys, base + slots.lo, v, from, n);
        fromSlots(f, index, slots.lo, s);
        return end;
      };
    }
    return (keys, index, base, from, n, slots) => {
      if (!slots) return sumDenseI32(f, keys, index, base, v, from, n);
      const s = scratch.of(slots.len);
      toSlots(f, index, slots.lo, s);
      const end = sumSlotsI32(s, keys, base + slots.lo, v, from, n);
      fromSlots(f, index, slots.lo, s);
      return end;
    };
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[], before?: number, groups?: number): void {
    const col = cols[0]!;
    if (this.big || this.outType.kind === 'float64') {
      this.update(gids, n, col, before, groups);
      return;
    }
    // Partial sums of small integers arrive as int64; they stay exact in float64 up to 2^53.
    const need = groupsOf(gids, n, groups);
    this.has.grow(need, before);
    this.f = growF64(this.f, need);
    const v = col.values as BigInt64Array;
    for (let i = 0; i < n; i++) {
      if (!isValidAt(col, i)) continue;
      this.f[gids[i]!] += Number(v[i]!);
      this.has.set(gids[i]!);
    }
  }
  state(groups: number): arrow.Data[] {
    return [this.result(groups)];
  }
  result(groups: number): arrow.Data {
    this.has.grow(groups, undefined);
    const validity = validityOf(this.has.flags, groups);
    if (this.outType.kind === 'float64') return mkData(this.outType.toArrow(), groups, validity, this.f.slice(0, groups));
    const out = new BigInt64Array(groups);
    if (this.big) out.set(this.b.subarray(0, groups));
    else for (let g = 0; g < groups; g++) out[g] = BigInt(this.f[g] ?? 0);
    return mkData(this.outType.toArrow(), groups, validity, out);
  }
  bytes(): number {
    return this.f.byteLength + this.b.byteLength + this.has.flags.byteLength;
  }
}

function countAll(c: Float64Array, gids: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) c[gids[i]!]++;
}

class CountAcc implements Accumulator {
  private c: Float64Array = new Float64Array(256);
  private readonly slots = new Slots();
  update(gids: Int32Array, n: number, col: arrow.Data, _before?: number, groups?: number): void {
    this.c = growF64(this.c, groupsOf(gids, n, groups));
    const c = this.c;
    if (col.nullCount === 0 && col.typeId !== arrow.Type.Null) countAll(c, gids, n);
    else for (let i = 0; i < n; i++) if (isValidAt(col, i)) c[gids[i]!]++;
  }
  dense(col: arrow.Data): DenseUpdate | null {
    if (col.nullCount !== 0 || col.typeId === arrow.Type.Null) return null;
    const c = this.c;
    const scratch = this.slots;
    return (keys, index, base, from, n, slots) => {
      if (!slots) return countDense(c, keys, index, base, from, n);
      const s = scratch.of(slots.len);
      toSlots(c, index, slots.lo, s);
      const end = countSlots(s, keys, base + slots.lo, from, n);
      fromSlots(c, index, slots.lo, s);
      return end;
    };
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[], _before?: number, groups?: number): void {
    this.c = growF64(this.c, groupsOf(gids, n, groups));
    const v = cols[0]!.values as BigInt64Array;
    for (let i = 0; i < n; i++) this.c[gids[i]!] += Number(v[i]!);
  }
  state(groups: number): arrow.Data[] {
    return [this.result(groups)];
  }
  result(groups: number): arrow.Data {
    this.c = growF64(this.c, groups);
    const out = new BigInt64Array(groups);
    for (let g = 0; g < groups; g++) out[g] = BigInt(this.c[g]!);
    return mkData(new arrow.Int64(), groups, null, out);
  }
  bytes(): number {
    return this.c.byteLength;
  }
}

class MeanAcc implements Accumulator {
  private readonly sum = new SumAcc(DataType.float64(), DataType.float64());
  private readonly count = new CountAcc();
  update(gids: Int32Array, n: number, col: arrow.Data, before?: number, groups?: number): void {
    this.sum.update(gids, n, col, before, groups);
    this.count.update(gids, n, col, before, groups);
  }
  dense(col: arrow.Data): DenseUpdate | null {
    const sum = this.sum.dense(col);
    const count = sum && this.count.dense(col);
    if (!sum || !count) return null;
    return (keys, index, base, from, n, slots) => count(keys, index, base, from, sum(keys, index, base, from, n, slots), slots);
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[], before?: number, groups?: number): void {
    this.sum.update(gids, n, cols[0]!, before, groups);
    this.count.merge(gids, n, [cols[1]!], before, groups);
  }
  state(groups: number): arrow.Data[] {
    return [this.sum.result(groups), this.count.result(groups)];
  }
  result(groups: number): arrow.Data {
    const s = this.sum.result(groups);
    const c = this.count.result(groups).values as BigInt64Array;
    const sv = s.values as Float64Array;
    const out = new Float64Array(groups);
    for (let g = 0; g < groups; g++) out[g] = sv[g]! / Number(c[g]!);
    return mkData(new arrow.Float64(), groups, s.nullCount ? sliceValidity(s, groups) : null, out);
  }
  bytes(): number {
    return this.sum.bytes() + this.count.bytes();
  }
}

function sliceValidity(d: arrow.Data, n: number): Uint8Array {
  const v = new Uint8Array((n + 7) >> 3);
  for (let i = 0; i < n; i++) if (isValidAt(d, i)) v[i >> 3]! |= 1 << (i & 7);
  return v;
}

/** min / max of numbers, bigints or bytes (strings compare by UTF-8 bytes = code point order). */
class MinMaxAcc implements Accumulator {
  private f: Float64Array = new Float64Array(256);
  private b: BigInt64Array = new BigInt64Array(0);
  private ids: Int32Array = new Int32Array(0);
  private dict: ByteDictionary | null = null;
  private has: Uint8Array = new Uint8Array(256);
  private readonly mode: 'num' | 'big' | 'bytes';
  constructor(
    private readonly type: DataType,
    private readonly max: boolean,
  ) {
    this.mode = BIG.has(type.kind) ? 'big' : type.kind === 'utf8' || type.kind === 'binary' ? 'bytes' : 'num';
    if (this.mode === 'big') this.b = new BigInt64Array(256);
    if (this.mode === 'bytes') {
      this.ids = new Int32Array(256);
      this.dict = new ByteDictionary();
    }
  }
  update(gids: Int32Array, n: number, col: arrow.Data, _before?: number, groups?: number): void {
    const need = groupsOf(gids, n, groups);
    this.has = growU8(this.has, need);
    const has = this.has;
    const max = this.max;
    const noNull = col.nullCount === 0;
    if (this.mode === 'num') {
      this.f = growF64(this.f, need);
      const f = this.f;
      const read = numberReader(col);
      for (let i = 0; i < n; i++) {
        if (!noNull && !isValidAt(col, i)) continue;
        const g = gids[i]!;
        const x = read(i);
        if (!has[g] || (max ? x > f[g]! : x < f[g]!)) {
          f[g] = x;
          has[g] = 1;
        }
      }
    } else if (this.mode === 'big') {
      this.b = growBig(this.b, need);
      const b = this.b;
      const v = col.values as BigInt64Array;
      for (let i = 0; i < n; i++) {
        if (!noNull && !isValidAt(col, i)) continue;
        const g = gids[i]!;
        const x = v[i]!;
        if (!has[g] || (max ? x > b[g]! : x < b[g]!)) {
          b[g] = x;
          has[g] = 1;
        }
      }
    } else {
      this.ids = growI32(this.ids, need);
      const dict = this.dict!;
      const o = col.valueOffsets as Int32Array;
      const v = col.values as Uint8Array;
      for (let i = 0; i < n; i++) {
        if (!noNull && !isValidAt(col, i)) continue;
        const g = gids[i]!;
        let better = !has[g];
        if (!better) {
          const cur = dict.view(this.ids[g]!);
          const c = compareBytes(v, o[i]!, o[i + 1]!, cur, 0, cur.length);
          better = max ? c > 0 : c < 0;
        }
        if (better) {
          this.ids[g] = dict.intern(v, o[i]!, o[i + 1]!, true);
          has[g] = 1;
        }
      }
    }
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[], before?: number, groups?: number): void {
    this.update(gids, n, cols[0]!, before, groups);
  }
  state(groups: number): arrow.Data[] {
    return [this.result(groups)];
  }
  result(groups: number): arrow.Data {
    this.has = growU8(this.has, groups);
    const validity = validityOf(this.has, groups);
    const t = this.type.toArrow();
    if (this.mode === 'bytes') {
      const ids = new Int32Array(groups);
      for (let g = 0; g < groups; g++) ids[g] = this.has[g] ? this.ids[g]! : -1;
      return this.dict!.toData(t, ids, validity);
    }
    if (this.mode === 'big') {
      const out = this.type.kind === 'uint64' ? new BigUint64Array(groups) : new BigInt64Array(groups);
      for (let g = 0; g < groups; g++) out[g] = this.b[g]!;
      return mkData(t, groups, validity, out);
    }
    if (this.type.kind === 'bool') {
      const v = new Uint8Array((groups + 7) >> 3);
      for (let g = 0; g < groups; g++) if (this.f[g]) v[g >> 3]! |= 1 << (g & 7);
      return mkData(t, groups, validity, v);
    }
    const Ctor = arrowValuesCtor(t);
    const out = new Ctor(groups);
    for (let g = 0; g < groups; g++) out[g] = this.f[g]!;
    return mkData(t, groups, validity, out);
  }
  bytes(): number {
    return this.f.byteLength + this.b.byteLength + this.ids.byteLength + this.has.byteLength + (this.dict?.byteSize() ?? 0);
  }
}

type NumCtor =
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor;
function arrowValuesCtor(t: arrow.DataType): NumCtor {
  if (t.typeId === arrow.Type.Float) return (t as arrow.Float).precision === arrow.Precision.SINGLE ? Float32Array : Float64Array;
  if (t.typeId === arrow.Type.Date) return Int32Array;
  const i = t as arrow.Int;
  switch (i.bitWidth) {
    case 8:
      return i.isSigned ? Int8Array : Uint8Array;
    case 16:
      return i.isSigned ? Int16Array : Uint16Array;
    default:
      return i.isSigned ? Int32Array : Uint32Array;
  }
}

/** The value of each group's first row (nulls included), in input order. */
class FirstAcc implements Accumulator {
  private chunks: arrow.Data[] = [];
  private held = 0;
  constructor(private readonly type: arrow.DataType) {}
  update(gids: Int32Array, n: number, col: arrow.Data, before: number): void {
    // Groups are numbered in first-seen order: a new group's first row is where its id first appears.
    const rows: number[] = [];
    let next = before;
    for (let i = 0; i < n; i++) {
      if (gids[i] === next) {
        rows.push(i);
        next++;
      }
    }
    if (!rows.length) return;
    const d = take(col, Int32Array.from(rows));
    this.held += d.byteLength;
    this.chunks.push(d);
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[], before: number): void {
    this.update(gids, n, cols[0]!, before);
  }
  state(groups: number): arrow.Data[] {
    return [this.result(groups)];
  }
  result(groups: number): arrow.Data {
    // A whole-frame aggregate over no rows has one group and no first row: null.
    const parts = [...this.chunks];
    const have = parts.reduce((n, d) => n + d.length, 0);
    if (have < groups) parts.push(allNull(this.type, groups - have));
    return parts.length ? concatData(parts, this.type) : allNull(this.type, 0);
  }
  bytes(): number {
    return this.held;
  }
}

/** Every value of each group (nulls included) in input order, as a list. */
class ListAcc implements Accumulator {
  private gidChunks: Int32Array[] = [];
  private values: arrow.Data[] = [];
  private held = 0;
  constructor(private readonly elem: arrow.DataType) {}
  update(gids: Int32Array, n: number, col: arrow.Data): void {
    const g = gids.slice(0, n);
    this.gidChunks.push(g);
    this.values.push(col);
    this.held += g.byteLength + col.byteLength;
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[]): void {
    const [eg, child] = explodeList(cols[0]!, gids, n);
    this.update(eg, eg.length, child);
  }
  state(groups: number): arrow.Data[] {
    return [this.result(groups)];
  }
  result(groups: number): arrow.Data {
    return buildLists(this.gidChunks, this.values, groups, this.elem);
  }
  bytes(): number {
    return this.held;
  }
}

/** Per list element: its row's group id, and the child values (offset 0). */
function explodeList(list: arrow.Data, gids: Int32Array, n: number): [Int32Array, arrow.Data] {
  const o = list.valueOffsets as Int32Array;
  const start = o[0]!;
  const total = o[n]! - start;
  const eg = new Int32Array(total);
  for (let i = 0; i < n; i++) eg.fill(gids[i]!, o[i]! - start, o[i + 1]! - start);
  const child = list.children[0]!.slice(start, total);
  return [eg, child];
}

/** Lists per group from (group id, value) chunks: a counting sort by group keeps input order. */
function buildLists(gidChunks: Int32Array[], values: arrow.Data[], groups: number, elem: arrow.DataType): arrow.Data {
  const offsets = new Int32Array(groups + 1);
  let total = 0;
  for (const gc of gidChunks) for (let i = 0; i < gc.length; i++) offsets[gc[i]! + 1]!++;
  for (let g = 0; g < groups; g++) offsets[g + 1]! += offsets[g]!;
  total = offsets[groups]!;
  const pos = offsets.slice(0, groups);
  const idx = new Int32Array(total);
  let base = 0;
  for (const gc of gidChunks) {
    for (let i = 0; i < gc.length; i++) idx[pos[gc[i]!]!++] = base + i;
    base += gc.length;
  }
  const all = values.length ? concatData(values, elem) : allNull(elem, 0);
  const child = take(all, idx);
  const type = new arrow.List(new arrow.Field('item', elem, true));
  return mkData(type, groups, null, undefined, offsets, [child]);
}

/** Distinct non-null values per group: a second table over (group id, value). */
class CountDistinctAcc implements Accumulator {
  private readonly enc: KeyEncoder;
  private table: GroupTable;
  private pairGids: Int32Array = new Int32Array(256);
  constructor(private readonly type: DataType) {
    this.enc = new KeyEncoder([type]);
    this.table = new GroupTable(this.enc.width + 1);
  }
  update(gids: Int32Array, n: number, col: arrow.Data): void {
    const W = this.enc.width;
    const words = this.enc.encode([col], n, true);
    const keys = new Int32Array(n * (W + 1));
    let m = 0;
    for (let i = 0; i < n; i++) {
      if (words[i * W]! & 1) continue; // null values are not counted
      keys[m * (W + 1)] = gids[i]!;
      keys.set(words.subarray(i * W, i * W + W), m * (W + 1) + 1);
      m++;
    }
    const before = this.table.count;
    const ids = this.table.lookup(keys, m, true);
    this.pairGids = growI32(this.pairGids, this.table.count);
    for (let i = 0; i < m; i++) if (ids[i]! >= before) this.pairGids[ids[i]!] = keys[i * (W + 1)]!;
  }
  merge(gids: Int32Array, n: number, cols: arrow.Data[]): void {
    const [eg, child] = explodeList(cols[0]!, gids, n);
    this.update(eg, eg.length, child);
  }
  state(groups: number): arrow.Data[] {
    const W = this.enc.width;
    const count = this.table.count;
    const vals = new Int32Array(count * W);
    for (let p = 0; p < count; p++) vals.set(this.table.keys.subarray(p * (W + 1) + 1, p * (W + 1) + 1 + W), p * W);
    const [col] = this.enc.decode(vals, count, [this.type.toArrow()]);
    return [buildLists([this.pairGids.slice(0, count)], [col!], groups, this.type.toArrow())];
  }
  result(groups: number): arrow.Data {
    const counts = new BigInt64Array(groups);
    const c = new Float64Array(groups);
    for (let p = 0; p < this.table.count; p++) c[this.pairGids[p]!]++;
    for (let g = 0; g < groups; g++) counts[g] = BigInt(c[g]!);
    return mkData(new arrow.Int64(), groups, null, counts);
  }
  bytes(): number {
    return this.table.bytes() + this.pairGids.byteLength + this.enc.bytes();
  }
}

/** A new accumulator for `fn` over an input of type `inType`. */
export function makeAccumulator(fn: AggFn, inType: DataType, outType: DataType): Accumulator {
  switch (fn) {
    case 'sum':
      return new SumAcc(inType, outType);
    case 'mean':
      return new MeanAcc();
    case 'min':
    case 'max':
      return new MinMaxAcc(inType, fn === 'max');
    case 'count':
      return new CountAcc();
    case 'count_distinct':
      return new CountDistinctAcc(inType);
    case 'first':
      return new FirstAcc(inType.toArrow());
    case 'list':
      return new ListAcc(inType.toArrow());
  }
}

/** Partial-state column types of an aggregate (what `state()` returns). */
export function stateTypes(fn: AggFn, inType: DataType, outType: DataType): DataType[] {
  switch (fn) {
    case 'mean':
      return [DataType.float64(), DataType.int64()];
    case 'count_distinct':
      return [DataType.list(inType)];
    default:
      return [outType];
  }
}

// Key encoding for hash aggregation, joins and distinct: each row's key columns become a fixed
// number of int32 words (a null mask word, then one or two words per column; strings are interned
// to ids in a byte dictionary), so hash tables compare and store typed-array words, never JS objects.
import * as arrow from 'apache-arrow';
import type { DataType, DataTypeKind } from '../datatypes.ts';
import { mkData } from '../kernels/data.ts';

/** FNV-1a over bytes [s, e). */
function hashBytes(b: Uint8Array, s: number, e: number): number {
  let h = 0x811c9dc5;
  for (let i = s; i < e; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h | 0;
}

/** Interned byte strings: an id per distinct value, kept in one growable byte buffer. */
export class ByteDictionary {
  private bytes: Uint8Array = new Uint8Array(1 << 12);
  private used = 0;
  private offsets: Int32Array = new Int32Array(1 << 10);
  private hashes: Int32Array = new Int32Array(1 << 9);
  count = 0;
  private slots: Int32Array = new Int32Array(1 << 10).fill(-1);

  byteSize(): number {
    return this.bytes.byteLength + this.offsets.byteLength + this.hashes.byteLength + this.slots.byteLength;
  }

  /** The id of bytes [s, e) of `src`; with `insert` false, -2 when absent (matches no stored id). */
  intern(src: Uint8Array, s: number, e: number, insert: boolean): number {
    const h = hashBytes(src, s, e);
    const mask = this.slots.length - 1;
    let slot = (Math.imul(h, 0x9e3779b1) >>> 0) & mask;
    const len = e - s;
    for (;;) {
      const id = this.slots[slot]!;
      if (id < 0) break;
      if (this.hashes[id] === h) {
        const a = this.offsets[id]!;
        if (this.offsets[id + 1]! - a === len) {
          let k = 0;
          while (k < len && this.bytes[a + k] === src[s + k]) k++;
          if (k === len) return id;
        }
      }
      slot = (slot + 1) & mask;
    }
    if (!insert) return -2;
    const id = this.count++;
    if (this.used + len > this.bytes.length) {
      const next = new Uint8Array(Math.max(this.bytes.length * 2, this.used + len));
      next.set(this.bytes.subarray(0, this.used));
      this.bytes = next;
    }
    this.bytes.set(src.subarray(s, e), this.used);
    if (id + 2 > this.offsets.length) this.offsets = grow32(this.offsets, (id + 2) * 2);
    if (id + 1 > this.hashes.length) this.hashes = grow32(this.hashes, (id + 1) * 2);
    this.offsets[id] = this.used;
    this.used += len;
    this.offsets[id + 1] = this.used;
    this.hashes[id] = h;
    this.slots[slot] = id;
    if (this.count * 2 > this.slots.length) this.rehash();
    return id;
  }

  private rehash(): void {
    const slots = new Int32Array(this.slots.length * 2).fill(-1);
    const mask = slots.length - 1;
    for (let id = 0; id < this.count; id++) {
      let slot = (Math.imul(this.hashes[id]!, 0x9e3779b1) >>> 0) & mask;
      while (slots[slot]! >= 0) slot = (slot + 1) & mask;
      slots[slot] = id;
    }
    this.slots = slots;
  }

  /** The bytes of id. */
  view(id: number): Uint8Array {
    return this.bytes.subarray(this.offsets[id]!, this.offsets[id + 1]!);
  }

  /** Utf8/Binary Data of the given ids (a negative id is a null). */
  toData(type: arrow.DataType, ids: Int32Array, validity: Uint8Array | null): arrow.Data {
    const n = ids.length;
    const offsets = new Int32Array(n + 1);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      if (id >= 0) total += this.offsets[id + 1]! - this.offsets[id]!;
      offsets[i + 1] = total;
    }
    const out = new Uint8Array(total);
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      if (id >= 0) out.set(this.bytes.subarray(this.offsets[id]!, this.offsets[id + 1]!), offsets[i]!);
    }
    return mkData(type, n, validity, out, offsets);
  }
}

export function grow32(a: Int32Array, size: number): Int32Array {
  const next = new Int32Array(size);
  next.set(a);
  return next;
}

/** Words a key column of this kind takes; null when it cannot be a key. */
function wordsOf(kind: DataTypeKind): number | null {
  switch (kind) {
    case 'bool':
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint8':
    case 'uint16':
    case 'uint32':
    case 'float32':
    case 'date':
    case 'utf8':
    case 'binary':
    case 'null':
      return 1;
    case 'int64':
    case 'uint64':
    case 'float64':
    case 'timestamp':
      return 2;
    default:
      return null;
  }
}

/** Throws a clear error when a column's type cannot be grouped, joined or deduplicated on. */
export function checkKeyType(name: string, type: DataType, what: string): void {
  if (wordsOf(type.kind) === null) throw new TypeError(`${what}: column '${name}' is ${type}, which cannot be a key (lists and structs cannot be hashed)`);
}

const f64 = new Float64Array(1);
const f64w = new Int32Array(f64.buffer);
const f32 = new Float32Array(1);
const f32w = new Int32Array(f32.buffer);

/**
 * Encodes key columns into words: word 0 is the null mask (bit k: key k is null), then each
 * column's words. Encoders that share a dictionary per string key (a join's two sides) give equal
 * words to equal keys.
 */
export class KeyEncoder {
  readonly width: number;
  private readonly at: number[] = [];
  readonly dicts: (ByteDictionary | null)[];

  constructor(readonly types: readonly DataType[]) {
    if (types.length > 31) throw new RangeError(`at most 31 key columns are supported, got ${types.length}`);
    let w = 1;
    for (const t of types) {
      this.at.push(w);
      w += wordsOf(t.kind) ?? 1;
    }
    this.width = w;
    this.dicts = types.map((t) => (t.kind === 'utf8' || t.kind === 'binary' ? new ByteDictionary() : null));
  }

  bytes(): number {
    return this.dicts.reduce((n, d) => n + (d ? d.byteSize() : 0), 0);
  }

  /** Words of n rows (n * width). `insert` false: strings never seen encode as ids that match nothing. */
  encode(cols: readonly arrow.Data[], n: number, insert: boolean, out: Int32Array = new Int32Array(n * this.width)): Int32Array {
    const W = this.width;
    if (out.length < n * W) out = new Int32Array(n * W);
    else out.fill(0, 0, n * W);
    for (let k = 0; k < this.types.length; k++) {
      const d = cols[k]!;
      const at = this.at[k]!;
      const bit = 1 << k;
      const bm = d.nullCount > 0 ? d.nullBitmap : null;
      const off = d.offset;
      if (d.typeId === arrow.Type.Null) {
        for (let i = 0; i < n; i++) out[i * W] |= bit;
        continue;
      }
      if (bm) for (let i = 0; i < n; i++) if (!(bm[(off + i) >> 3]! & (1 << ((off + i) & 7)))) out[i * W] |= bit;
      const kind = this.types[k]!.kind;
      switch (kind) {
        case 'bool': {
          const v = d.values as Uint8Array;
          for (let i = 0; i < n; i++) out[i * W + at] = (v[(off + i) >> 3]! >> ((off + i) & 7)) & 1;
          break;
        }
        case 'int8':
        case 'int16':
        case 'int32':
        case 'uint8':
        case 'uint16':
        case 'uint32':
        case 'date': {
          const v = d.values as Int32Array;
          for (let i = 0; i < n; i++) out[i * W + at] = v[i]! | 0;
          break;
        }
        case 'float32': {
          const v = d.values as Float32Array;
          for (let i = 0; i < n; i++) {
            const x = v[i]!;
            f32[0] = x === 0 ? 0 : x; // -0 groups with 0; every NaN is one group
            out[i * W + at] = Number.isNaN(x) ? 0x7fc00000 : f32w[0]!;
          }
          break;
        }
        case 'float64': {
          const v = d.values as Float64Array;
          for (let i = 0; i < n; i++) {
            const x = v[i]!;
            f64[0] = x === 0 ? 0 : Number.isNaN(x) ? Number.NaN : x;
            out[i * W + at] = f64w[0]!;
            out[i * W + at + 1] = f64w[1]!;
          }
          break;
        }
        case 'int64':
        case 'uint64':
        case 'timestamp': {
          const v = d.values as BigInt64Array;
          const w = new Int32Array(v.buffer, v.byteOffset, v.length * 2);
          for (let i = 0; i < n; i++) {
            out[i * W + at] = w[2 * i]!;
            out[i * W + at + 1] = w[2 * i + 1]!;
          }
          break;
        }
        case 'utf8':
        case 'binary': {
          const dict = this.dicts[k]!;
          const o = d.valueOffsets as Int32Array;
          const v = d.values as Uint8Array;
          for (let i = 0; i < n; i++) {
            if (bm && !(bm[(off + i) >> 3]! & (1 << ((off + i) & 7)))) continue;
            out[i * W + at] = dict.intern(v, o[i]!, o[i + 1]!, insert);
          }
          break;
        }
        default:
          throw new TypeError(`cannot encode a ${kind} key`);
      }
      // A null's value words stay 0 so equal keys have equal words.
      if (bm && kind !== 'utf8' && kind !== 'binary') {
        const ww = wordsOf(kind)!;
        for (let i = 0; i < n; i++) if (out[i * W]! & bit) for (let j = 0; j < ww; j++) out[i * W + at + j] = 0;
      }
    }
    return out;
  }

  /** The key columns of `count` encoded rows stored in `words` (row r at r * width). */
  decode(words: Int32Array, count: number, arrowTypes: readonly arrow.DataType[]): arrow.Data[] {
    const W = this.width;
    return this.types.map((t, k) => {
      const at = this.at[k]!;
      const bit = 1 << k;
      let validity: Uint8Array | null = null;
      for (let i = 0; i < count; i++) {
        if (words[i * W]! & bit) {
          if (!validity) validity = new Uint8Array((count + 7) >> 3).fill(0xff);
          validity[i >> 3]! &= ~(1 << (i & 7));
        }
      }
      const type = arrowTypes[k]!;
      switch (t.kind) {
        case 'null':
          return new arrow.Data(new arrow.Null(), 0, count, count);
        case 'bool': {
          const v = new Uint8Array((count + 7) >> 3);
          for (let i = 0; i < count; i++) if (words[i * W + at]) v[i >> 3]! |= 1 << (i & 7);
          return mkData(type, count, validity, v);
        }
        case 'utf8':
        case 'binary': {
          const ids = new Int32Array(count);
          for (let i = 0; i < count; i++) ids[i] = words[i * W]! & bit ? -1 : words[i * W + at]!;
          return this.dicts[k]!.toData(type, ids, validity);
        }
        case 'int64':
        case 'uint64':
        case 'float64':
        case 'timestamp': {
          const w = new Int32Array(count * 2);
          for (let i = 0; i < count; i++) {
            w[2 * i] = words[i * W + at]!;
            w[2 * i + 1] = words[i * W + at + 1]!;
          }
          const values = t.kind === 'float64' ? new Float64Array(w.buffer) : t.kind === 'uint64' ? new BigUint64Array(w.buffer) : new BigInt64Array(w.buffer);
          return mkData(type, count, validity, values);
        }
        case 'float32': {
          const w = new Int32Array(count);
          for (let i = 0; i < count; i++) w[i] = words[i * W + at]!;
          return mkData(type, count, validity, new Float32Array(w.buffer));
        }
        default: {
          const Ctor =
            t.kind === 'int8'
              ? Int8Array
              : t.kind === 'int16'
                ? Int16Array
                : t.kind === 'uint8'
                  ? Uint8Array
                  : t.kind === 'uint16'
                    ? Uint16Array
                    : t.kind === 'uint32'
                      ? Uint32Array
                      : Int32Array;
          const v = new Ctor(count);
          for (let i = 0; i < count; i++) v[i] = words[i * W + at]!;
          return mkData(type, count, validity, v);
        }
      }
    });
  }
}

/** Hash of one encoded row (words [p, p + w)). */
export function hashWords(words: Int32Array, p: number, w: number): number {
  let h = 0x9747b28c;
  for (let j = 0; j < w; j++) {
    h = Math.imul(h ^ words[p + j]!, 0x85ebca6b);
    h ^= h >>> 13;
  }
  h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35);
  return h ^ (h >>> 15);
}

/** Hash of one 2-word row (a single 32-bit key: null mask word, value word); equals hashWords(w, p, 2). */
function hash2(a: number, b: number): number {
  let h = Math.imul(0x9747b28c ^ a, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h ^ b, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35);
  return h ^ (h >>> 15);
}

/** Most entries of a dense index (64 MiB): past it, keys go through the hash slots only. */
const DENSE_MAX = 1 << 24;

const INT_KEYS: ReadonlySet<DataTypeKind> = new Set(['int8', 'int16', 'int32', 'uint8', 'uint16', 'uint32', 'date']);

/** A single integer key column's values as int32 (the words KeyEncoder gives them). */
type IntValues = Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array;

/**
 * Open-addressing hash table from encoded keys to dense group ids (0, 1, 2, ... in first-seen
 * order); the keys live in one Int32Array, `width` words per group.
 *
 * A single 32-bit key (width 2: ints, dates, dictionary ids of strings) also gets a dense index:
 * group id + 1 by value - denseBase, kept complete for every non-null key in its range, so a
 * value in range is found (or known new) with one array read and no hashing. It covers the
 * values seen while they span at most 4 entries per group (1 << 16 at least); the hash slots are
 * built only once a key falls outside it (a null, an outlier), so a table of dense keys never
 * pays for them.
 */
export class GroupTable {
  keys: Int32Array;
  private hashes: Int32Array;
  /** Pairs (group id + 1, hash) per slot: one cache line answers most probes. 0 = empty. */
  private slots: Int32Array = new Int32Array(0);
  private mask = -1;
  /** Slots hold every group (false: only the dense index does, and slots are built on first need). */
  private slotted: boolean;
  private dense: Int32Array | null = null;
  private denseBase = 0;
  /** The group of the null key (words 1, 0) of a 2-word table, -1 before there is one. */
  private nullGroup = -1;
  count = 0;

  /** Can lookupInts read this key type's values directly? (one word per value, KeyEncoder's `v | 0`) */
  static intKey(t: DataType): boolean {
    return INT_KEYS.has(t.kind);
  }

  constructor(
    readonly width: number,
    private readonly capacity = 1024,
  ) {
    this.keys = new Int32Array(capacity * width);
    this.hashes = new Int32Array(capacity);
    this.slotted = width !== 2;
    if (this.slotted) this.buildSlots();
  }

  bytes(): number {
    return this.keys.byteLength + this.hashes.byteLength + this.slots.byteLength + (this.dense?.byteLength ?? 0);
  }

  /** (Re)builds the slots from the groups' hashes, at twice the groups (or the capacity) or more. */
  private buildSlots(): void {
    let s = 16;
    while (s < Math.max(this.capacity, this.count) * 2) s *= 2;
    if (this.slotted && s <= this.mask + 1) s = (this.mask + 1) * 2;
    const slots = new Int32Array(s * 2);
    const mask = s - 1;
    for (let g = 0; g < this.count; g++) {
      const h = this.hashes[g]!;
      let slot = (h >>> 0) & mask;
      while (slots[2 * slot] !== 0) slot = (slot + 1) & mask;
      slots[2 * slot] = g + 1;
      slots[2 * slot + 1] = h;
    }
    this.slots = slots;
    this.mask = mask;
    this.slotted = true;
  }

  /** Group id of each of n encoded rows; new keys become new groups unless `insert` is false (then -1). */
  lookup(words: Int32Array, n: number, insert: boolean, out: Int32Array = new Int32Array(n)): Int32Array {
    const W = this.width;
    if (W === 2) return this.lookup2(words, n, insert, out);
    for (let i = 0; i < n; i++) {
      const p = i * W;
      const h = hashWords(words, p, W);
      const slots = this.slots;
      const mask = this.mask;
      const keys = this.keys;
      let slot = (h >>> 0) & mask;
      let found = -1;
      for (;;) {
        const g1 = slots[2 * slot]!;
        if (g1 === 0) break;
        if (slots[2 * slot + 1] === h) {
          const q = (g1 - 1) * W;
          let j = 0;
          while (j < W && keys[q + j] === words[p + j]) j++;
          if (j === W) {
            found = g1 - 1;
            break;
          }
        }
        slot = (slot + 1) & mask;
      }
      if (found < 0 && insert) {
        found = this.count++;
        if (found >= this.hashes.length) {
          this.hashes = grow32(this.hashes, this.hashes.length * 2);
          this.keys = grow32(this.keys, this.hashes.length * W);
        }
        this.hashes[found] = h;
        this.keys.set(words.subarray(p, p + W), found * W);
        slots[2 * slot] = found + 1;
        slots[2 * slot + 1] = h;
        if (this.count * 2 > mask + 1) this.buildSlots();
      }
      out[i] = found;
    }
    return out;
  }

  /**
   * Widens the dense index to cover [lo, hi] when that stays within 4 entries per group (or 2 per
   * row of the `incoming` batch: no more than its key words take), growing at least 2x so that
   * rebuilding it (O(groups)) amortizes.
   */
  private fitDense(lo: number, hi: number, incoming: number): void {
    const d = this.dense;
    if (d && lo >= this.denseBase && hi < this.denseBase + d.length) return;
    const nlo = d ? Math.min(lo, this.denseBase) : lo;
    const nhi = d ? Math.max(hi, this.denseBase + d.length - 1) : hi;
    const span = nhi - nlo + 1;
    const limit = Math.min(DENSE_MAX, Math.max(1 << 12, 4 * this.count, 2 * incoming));
    if (span > limit) return;
    const len = Math.min(limit, Math.max(span, d ? 2 * d.length : span));
    const dense = new Int32Array(len);
    const keys = this.keys;
    for (let g = 0; g < this.count; g++) {
      if (keys[2 * g] !== 0) continue;
      const x = keys[2 * g + 1]! - nlo;
      if (x >= 0 && x < len) dense[x] = g + 1;
    }
    this.dense = dense;
    this.denseBase = nlo;
  }

  /** A new group for key (a, b) with hash h; `slot`: its empty slot when the caller probed (else -1). */
  private add2(a: number, b: number, h: number, slot: number): number {
    const g = this.count++;
    if (g >= this.hashes.length) {
      this.hashes = grow32(this.hashes, this.hashes.length * 2);
      this.keys = grow32(this.keys, this.hashes.length * 2);
    }
    this.hashes[g] = h;
    this.keys[2 * g] = a;
    this.keys[2 * g + 1] = b;
    if (a === 0 && this.dense) {
      const x = b - this.denseBase;
      if (x >= 0 && x < this.dense.length) this.dense[x] = g + 1;
    }
    if (a === 1 && b === 0) this.nullGroup = g;
    if (this.slotted) {
      const slots = this.slots;
      const mask = this.mask;
      if (slot < 0) {
        slot = (h >>> 0) & mask;
        while (slots[2 * slot] !== 0) slot = (slot + 1) & mask;
      }
      slots[2 * slot] = g + 1;
      slots[2 * slot + 1] = h;
      if (this.count * 2 > mask + 1) this.buildSlots();
    }
    return g;
  }

  /** The group of key (a, b) through the hash slots (built now if they are not yet). */
  private probe2(a: number, b: number, insert: boolean): number {
    if (a === 1 && b === 0) {
      // The null key: remembered, so nulls alone never make a dense table build its slots.
      if (this.nullGroup >= 0) return this.nullGroup;
      if (!this.slotted) return insert ? this.add2(1, 0, hash2(1, 0), -1) : -1;
    }
    if (!this.slotted) this.buildSlots();
    const h = hash2(a, b);
    const slots = this.slots;
    const mask = this.mask;
    const keys = this.keys;
    let slot = (h >>> 0) & mask;
    for (;;) {
      const g1 = slots[2 * slot]!;
      if (g1 === 0) break;
      if (slots[2 * slot + 1] === h && keys[2 * g1 - 2] === a && keys[2 * g1 - 1] === b) return g1 - 1;
      slot = (slot + 1) & mask;
    }
    return insert ? this.add2(a, b, h, slot) : -1;
  }

  /** lookup for one 32-bit key (null word + value word), the common case: the dense index first. */
  private lookup2(words: Int32Array, n: number, insert: boolean, out: Int32Array): Int32Array {
    let i = 0;
    let fitted = !insert;
    while (i < n) {
      i = this.denseRun2(words, i, n, insert, out);
      if (i >= n) break;
      if (!fitted) {
        // A key outside the dense index (or none yet): widen it over the rest of the batch, once.
        fitted = true;
        let lo = 0x7fffffff;
        let hi = -0x80000000;
        for (let j = i; j < n; j++) {
          if (words[2 * j] !== 0) continue;
          const b = words[2 * j + 1]!;
          if (b < lo) lo = b;
          if (b > hi) hi = b;
        }
        if (lo <= hi) this.fitDense(lo, hi, n - i);
        if (words[2 * i] === 0 && this.inDense(words[2 * i + 1]!)) continue;
      }
      if (!this.dense) {
        // Keys too spread for a dense index: the hash slots for the rest of the batch.
        this.hashRun2(words, i, n, insert, out);
        break;
      }
      out[i] = this.probe2(words[2 * i]!, words[2 * i + 1]!, insert);
      i++;
    }
    return out;
  }

  /** Rows [i, n) through the hash slots, the hash and probe inlined (no dense index). */
  private hashRun2(words: Int32Array, i: number, n: number, insert: boolean, out: Int32Array): void {
    if (!this.slotted) this.buildSlots();
    for (; i < n; i++) {
      const a = words[2 * i]!;
      const b = words[2 * i + 1]!;
      let h = Math.imul(0x9747b28c ^ a, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h ^ b, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35);
      h ^= h >>> 15;
      const slots = this.slots;
      const mask = this.mask;
      const keys = this.keys;
      let slot = (h >>> 0) & mask;
      let found = -1;
      for (;;) {
        const g1 = slots[2 * slot]!;
        if (g1 === 0) break;
        if (slots[2 * slot + 1] === h && keys[2 * g1 - 2] === a && keys[2 * g1 - 1] === b) {
          found = g1 - 1;
          break;
        }
        slot = (slot + 1) & mask;
      }
      out[i] = found >= 0 || !insert ? found : this.add2(a, b, h, slot);
    }
  }

  private inDense(b: number): boolean {
    const x = b - this.denseBase;
    return this.dense !== null && x >= 0 && x < this.dense.length;
  }

  /** Rows from i on while their keys are in the dense index; returns the first row that is not (or n). */
  private denseRun2(words: Int32Array, i: number, n: number, insert: boolean, out: Int32Array): number {
    const dense = this.dense;
    if (!dense) return i;
    const base = this.denseBase;
    const len = dense.length;
    for (; i < n; i++) {
      const b = words[2 * i + 1]!;
      const x = b - base;
      if (words[2 * i] !== 0 || x < 0 || x >= len) return i;
      const g1 = dense[x]!;
      // The index is complete over its range: a miss is a new key.
      out[i] = g1 !== 0 ? g1 - 1 : insert ? this.add2(0, b, hash2(0, b), -1) : -1;
    }
    return n;
  }

  /**
   * lookup for a single integer key column read straight from its values (no encoding): the
   * words KeyEncoder would give are (null ? 1 : 0, null ? 0 : value | 0).
   */
  lookupInts(values: IntValues, nullBitmap: Uint8Array | null, offset: number, n: number, insert: boolean, out: Int32Array): Int32Array {
    if (this.width !== 2) throw new Error('internal: lookupInts needs a one-column 32-bit key table');
    const valid = (j: number): boolean => !nullBitmap || (nullBitmap[(offset + j) >> 3]! & (1 << ((offset + j) & 7))) !== 0;
    let i = 0;
    let fitted = !insert;
    while (i < n) {
      i = nullBitmap ? this.denseRunNullable(values, nullBitmap, offset, i, n, insert, out) : this.denseRun(values, i, n, insert, out);
      if (i >= n) break;
      if (!valid(i)) {
        out[i] = this.probe2(1, 0, insert);
        i++;
        continue;
      }
      if (!fitted) {
        fitted = true;
        let lo = 0x7fffffff;
        let hi = -0x80000000;
        for (let j = i; j < n; j++) {
          // A null's value slot holds anything: it must not widen the range.
          if (!valid(j)) continue;
          const b = values[j]! | 0;
          if (b < lo) lo = b;
          if (b > hi) hi = b;
        }
        if (lo <= hi) this.fitDense(lo, hi, n - i);
        if (this.inDense(values[i]! | 0)) continue;
      }
      if (!this.dense) {
        // Keys too spread for a dense index: encode the rest and take the hash slots.
        const m = n - i;
        const words = new Int32Array(2 * m);
        for (let j = 0; j < m; j++) {
          if (valid(i + j)) words[2 * j + 1] = values[i + j]! | 0;
          else words[2 * j] = 1;
        }
        this.hashRun2(words, 0, m, insert, out.subarray(i));
        break;
      }
      out[i] = this.probe2(0, values[i]! | 0, insert);
      i++;
    }
    return out;
  }

  private denseRun(values: IntValues, i: number, n: number, insert: boolean, out: Int32Array): number {
    const dense = this.dense;
    if (!dense) return i;
    const base = this.denseBase;
    const len = dense.length;
    for (; i < n; i++) {
      const b = values[i]! | 0;
      const x = b - base;
      if (x < 0 || x >= len) return i;
      const g1 = dense[x]!;
      out[i] = g1 !== 0 ? g1 - 1 : insert ? this.add2(0, b, hash2(0, b), -1) : -1;
    }
    return n;
  }

  private denseRunNullable(values: IntValues, bm: Uint8Array, offset: number, i: number, n: number, insert: boolean, out: Int32Array): number {
    const dense = this.dense;
    if (!dense) return i;
    const base = this.denseBase;
    const len = dense.length;
    for (; i < n; i++) {
      if (!(bm[(offset + i) >> 3]! & (1 << ((offset + i) & 7)))) return i;
      const b = values[i]! | 0;
      const x = b - base;
      if (x < 0 || x >= len) return i;
      const g1 = dense[x]!;
      out[i] = g1 !== 0 ? g1 - 1 : insert ? this.add2(0, b, hash2(0, b), -1) : -1;
    }
    return n;
  }

  /**
   * The dense index, when there is one: index[value - base] is group id + 1, 0 for a value that is
   * no group yet (the index is complete over its range). Valid until the next insert.
   */
  denseIndex(): { index: Int32Array; base: number } | null {
    return this.dense ? { index: this.dense, base: this.denseBase } : null;
  }

  /** Hash of group g (to split groups into spill buckets). */
  hashOf(g: number): number {
    return this.hashes[g]!;
  }
}

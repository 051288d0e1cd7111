// Sort order over Arrow columns: an LSD radix sort over order-preserving uint32 words (each key
// column becomes a null word and one or two value words; strings become ranks), which is stable,
// and a row comparator on raw values for merging sorted runs.
import * as arrow from 'apache-arrow';
import type { DataType } from '../datatypes.ts';
import { compareBytes } from '../kernels/utf8.ts';
import { ByteDictionary } from '../relational/keys.ts';

export interface OrderKey {
  desc: boolean;
  nullsFirst: boolean;
}

const f64 = new Float64Array(1);
const u64 = new Uint32Array(f64.buffer);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function isNullAt(d: arrow.Data, i: number): boolean {
  if (d.typeId === arrow.Type.Null) return true;
  if (d.nullCount === 0) return false;
  const p = d.offset + i;
  return (d.nullBitmap![p >> 3]! & (1 << (p & 7))) === 0;
}

/** Order-preserving words of one key column, most significant first. */
function keyWords(d: arrow.Data, type: DataType, key: OrderKey): Uint32Array[] {
  const n = d.length;
  const words: Uint32Array[] = [];
  const nulls = d.nullCount > 0 || d.typeId === arrow.Type.Null;
  if (nulls) {
    const w = new Uint32Array(n);
    for (let i = 0; i < n; i++) w[i] = isNullAt(d, i) === key.nullsFirst ? 0 : 1;
    words.push(w);
  }
  const vals: Uint32Array[] = [];
  switch (type.kind) {
    case 'null':
      break;
    case 'bool': {
      const w = new Uint32Array(n);
      const v = d.values as Uint8Array;
      for (let i = 0; i < n; i++) w[i] = (v[(d.offset + i) >> 3]! >> ((d.offset + i) & 7)) & 1;
      vals.push(w);
      break;
    }
    case 'int8':
    case 'int16':
    case 'int32':
    case 'date': {
      const w = new Uint32Array(n);
      const v = d.values as Int32Array;
      for (let i = 0; i < n; i++) w[i] = (v[i]! ^ 0x80000000) >>> 0;
      vals.push(w);
      break;
    }
    case 'uint8':
    case 'uint16':
    case 'uint32': {
      const w = new Uint32Array(n);
      const v = d.values as Uint32Array;
      for (let i = 0; i < n; i++) w[i] = v[i]! >>> 0;
      vals.push(w);
      break;
    }
    case 'float32': {
      const w = new Uint32Array(n);
      const v = d.values as Float32Array;
      for (let i = 0; i < n; i++) {
        const x = v[i]!;
        f32[0] = x === 0 ? 0 : Number.isNaN(x) ? Number.NaN : x;
        const b = u32[0]!;
        w[i] = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
      }
      vals.push(w);
      break;
    }
    case 'float64': {
      const hi = new Uint32Array(n);
      const lo = new Uint32Array(n);
      const v = d.values as Float64Array;
      for (let i = 0; i < n; i++) {
        const x = v[i]!;
        f64[0] = x === 0 ? 0 : Number.isNaN(x) ? Number.NaN : x;
        const h = u64[1]!;
        if (h & 0x80000000) {
          hi[i] = ~h >>> 0;
          lo[i] = ~u64[0]! >>> 0;
        } else {
          hi[i] = (h | 0x80000000) >>> 0;
          lo[i] = u64[0]!;
        }
      }
      vals.push(hi, lo);
      break;
    }
    case 'int64':
    case 'timestamp':
    case 'uint64': {
      const hi = new Uint32Array(n);
      const lo = new Uint32Array(n);
      const v = d.values as BigInt64Array;
      const w = new Uint32Array(v.buffer, v.byteOffset, n * 2);
      const flip = type.kind === 'uint64' ? 0 : 0x80000000;
      for (let i = 0; i < n; i++) {
        lo[i] = w[2 * i]!;
        hi[i] = (w[2 * i + 1]! ^ flip) >>> 0;
      }
      vals.push(hi, lo);
      break;
    }
    case 'utf8':
    case 'binary': {
      // Rank the distinct values (a comparison sort over distinct values only), then sort by rank.
      const dict = new ByteDictionary();
      const ids = new Int32Array(n);
      const o = d.valueOffsets as Int32Array;
      const v = d.values as Uint8Array;
      for (let i = 0; i < n; i++) ids[i] = isNullAt(d, i) ? 0 : dict.intern(v, o[i]!, o[i + 1]!, true);
      const order = Int32Array.from({ length: dict.count }, (_, i) => i);
      order.sort((a, b) => {
        const x = dict.view(a);
        const y = dict.view(b);
        return compareBytes(x, 0, x.length, y, 0, y.length);
      });
      const rank = new Uint32Array(dict.count);
      for (let r = 0; r < order.length; r++) rank[order[r]!] = r;
      const w = new Uint32Array(n);
      for (let i = 0; i < n; i++) w[i] = isNullAt(d, i) ? 0 : rank[ids[i]!]!;
      vals.push(w);
      break;
    }
    default:
      throw new TypeError(`cannot sort by a ${type} column`);
  }
  for (const w of vals) {
    if (nulls) for (let i = 0; i < n; i++) if (isNullAt(d, i)) w[i] = 0;
    if (key.desc) for (let i = 0; i < n; i++) w[i] = ~w[i]! >>> 0;
    words.push(w);
  }
  return words;
}

/** The stable sort permutation of n rows by the key columns (offset-0 Data of length n). */
export function sortIndices(cols: readonly arrow.Data[], types: readonly DataType[], keys: readonly OrderKey[], n: number): Int32Array {
  const words = cols.flatMap((c, k) => keyWords(c, types[k]!, keys[k]!));
  let perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  let tmp = new Int32Array(n);
  const counts = new Int32Array(65537);
  // Least significant word first; two 16-bit digits per word.
  for (let w = words.length - 1; w >= 0; w--) {
    const word = words[w]!;
    for (const shift of [0, 16]) {
      counts.fill(0);
      for (let i = 0; i < n; i++) counts[((word[i]! >>> shift) & 0xffff) + 1]!++;
      let single = false;
      for (let b = 1; b <= 65536; b++) {
        if (counts[b] === n) single = true;
      }
      if (single) continue; // every row has the same digit: the pass would not move anything
      for (let b = 1; b <= 65536; b++) counts[b]! += counts[b - 1]!;
      for (let i = 0; i < n; i++) {
        const r = perm[i]!;
        tmp[counts[(word[r]! >>> shift) & 0xffff]!++] = r;
      }
      const t = perm;
      perm = tmp;
      tmp = t;
    }
  }
  return perm;
}

/** Compares row i of columns a with row j of columns b under the keys (-1, 0, 1). */
export function compareRows(
  a: readonly arrow.Data[],
  i: number,
  b: readonly arrow.Data[],
  j: number,
  types: readonly DataType[],
  keys: readonly OrderKey[],
): number {
  for (let k = 0; k < keys.length; k++) {
    const x = a[k]!;
    const y = b[k]!;
    const key = keys[k]!;
    const xn = isNullAt(x, i);
    const yn = isNullAt(y, j);
    if (xn || yn) {
      if (xn && yn) continue;
      return xn === key.nullsFirst ? -1 : 1;
    }
    let c: number;
    const kind = types[k]!.kind;
    if (kind === 'utf8' || kind === 'binary') {
      const xo = x.valueOffsets as Int32Array;
      const yo = y.valueOffsets as Int32Array;
      c = compareBytes(x.values as Uint8Array, xo[i]!, xo[i + 1]!, y.values as Uint8Array, yo[j]!, yo[j + 1]!);
    } else if (kind === 'bool') {
      const xv = ((x.values as Uint8Array)[(x.offset + i) >> 3]! >> ((x.offset + i) & 7)) & 1;
      const yv = ((y.values as Uint8Array)[(y.offset + j) >> 3]! >> ((y.offset + j) & 7)) & 1;
      c = xv - yv;
    } else {
      const xv = (x.values as unknown as ArrayLike<number | bigint>)[i]!;
      const yv = (y.values as unknown as ArrayLike<number | bigint>)[j]!;
      // NaN sorts after every number (as DuckDB does).
      const xnan = typeof xv === 'number' && Number.isNaN(xv);
      const ynan = typeof yv === 'number' && Number.isNaN(yv);
      c = xnan || ynan ? Number(xnan) - Number(ynan) : xv < yv ? -1 : xv > yv ? 1 : 0;
    }
    if (c !== 0) return key.desc ? -c : c;
  }
  return 0;
}

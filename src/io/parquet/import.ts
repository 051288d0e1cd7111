// Arrow C data interface importer: parquet-wasm's exported arrays -> arrow.Data in our one-layout-per-DataType form.
import * as arrow from 'apache-arrow';
import type { DataTypeJSON } from '../../datatypes.ts';
import { rescaleTicks } from './stats.ts';
import {
  INT_RANGE,
  formatCtor,
  makeArrowData,
  popcount,
  targetCtor,
  type AnyTypedArray,
  type ArrayHeader,
  type FfiSchemaNode,
  type TypedCtor,
} from './import-layout.ts';

// ---------------------------------------------------------------------------------------------
// Arrow C data interface import (wasm32 layout). We read parquet-wasm's exported arrays ourselves
// rather than through arrow-js-ffi because we must also convert to our one-layout-per-DataType
// rule (LargeUtf8 -> Utf8, dictionary -> plain, Date64 -> Date32, decimal -> float64...), honour
// array offsets, and copy each buffer exactly once out of wasm memory.
// A borrowing importer (`borrow`) hands out VIEWS of wasm memory instead of copies wherever a buffer
// needs no conversion: they are valid only until the next call into parquet-wasm or the free of the
// decoded stream (memory.grow detaches them; freed memory is reused), so only readParquetBorrowed's
// synchronous visitor ever sees them. Such views never cover all of memory, so makeArrowData never
// marks them movable (kernels/owned.ts): a worker never transfers (detaches) wasm memory.

export class FfiImporter {
  private readonly dv: DataView;
  private readonly u8: Uint8Array;
  constructor(
    private readonly mem: ArrayBuffer,
    private readonly where: string,
    private readonly borrow = false,
  ) {
    this.dv = new DataView(mem);
    this.u8 = new Uint8Array(mem);
  }

  private header(p: number): ArrayHeader {
    const dv = this.dv;
    return {
      length: Number(dv.getBigInt64(p, true)),
      nullCount: Number(dv.getBigInt64(p + 8, true)),
      offset: Number(dv.getBigInt64(p + 16, true)),
      nBuffers: Number(dv.getBigInt64(p + 24, true)),
      buffersPtr: dv.getUint32(p + 40, true),
      childrenPtr: dv.getUint32(p + 44, true),
      dictPtr: dv.getUint32(p + 48, true),
    };
  }
  private buffer(h: ArrayHeader, i: number): number {
    return i < h.nBuffers ? this.dv.getUint32(h.buffersPtr + 4 * i, true) : 0;
  }
  private child(h: ArrayHeader, i: number): number {
    return this.dv.getUint32(h.childrenPtr + 4 * i, true);
  }

  /**
   * Bytes [a, b) of wasm memory in a fresh ArrayBuffer of exactly that size (see kernels/owned.ts).
   * Allocated uninitialized and written once: `ArrayBuffer.prototype.slice` zero-fills its result
   * before copying (140 MiB copied out: 30-33 ms of CPU against 38-40 ms).
   */
  private copyOut(a: number, b: number): ArrayBuffer {
    const out = Buffer.allocUnsafeSlow(b - a).buffer as ArrayBuffer;
    new Uint8Array(out).set(new Uint8Array(this.mem, a, b - a));
    return out;
  }

  /** `n` elements of `ctor` at byte `a` of wasm memory: a view when borrowing (and aligned), else a copy. */
  private out<T extends AnyTypedArray>(
    ctor: { new (buf: ArrayBuffer, byteOffset?: number, length?: number): T; BYTES_PER_ELEMENT: number },
    a: number,
    n: number,
  ): T {
    const w = ctor.BYTES_PER_ELEMENT;
    if (this.borrow && a % w === 0) return new ctor(this.mem, a, n);
    return new ctor(this.copyOut(a, a + w * n));
  }

  private fail(msg: string): never {
    throw new Error(`${this.where}: ${msg}`);
  }

  /** Copy bits [bitStart, bitStart + n) into a fresh bitmap starting at bit 0. */
  private copyBits(ptr: number, bitStart: number, n: number): Uint8Array {
    const nBytes = (n + 7) >> 3;
    const byte0 = ptr + (bitStart >> 3);
    const shift = bitStart & 7;
    if (shift === 0) return this.out(Uint8Array, byte0, nBytes);
    const out = new Uint8Array(nBytes);
    const src = this.u8;
    const last = ptr + ((bitStart + n - 1) >> 3);
    for (let i = 0; i < nBytes; i++) {
      const a = src[byte0 + i]!;
      const b = byte0 + i + 1 <= last ? src[byte0 + i + 1]! : 0;
      out[i] = ((a >> shift) | (b << (8 - shift))) & 0xff;
    }
    return out;
  }

  /** Validity of the window, or null when it has no nulls. */
  private validity(h: ArrayHeader, start: number, n: number): { bits: Uint8Array | null; nulls: number } {
    const ptr = this.buffer(h, 0);
    if (ptr === 0 || h.nullCount === 0 || n === 0) return { bits: null, nulls: 0 };
    const bits = this.copyBits(ptr, start, n);
    const nulls = n - popcount(bits, n);
    return nulls === 0 ? { bits: null, nulls: 0 } : { bits, nulls };
  }

  /** Import one column (window [h.offset + extra, +len)) as `target` with arrow type `type`. */
  importData(p: number, node: FfiSchemaNode, target: DataTypeJSON, type: arrow.DataType, extra: number, len: number | null): arrow.Data {
    const h = this.header(p);
    const start = h.offset + extra;
    const n = len ?? h.length;
    if (node.dictionary && h.dictPtr) return this.importDictionary(h, node, target, type, start, n);
    const fmt = node.format;
    if (fmt === 'n') return nullData(target, type, n);
    switch (target.kind) {
      case 'null':
        return this.fail(`cannot read a column of format '${fmt}' as null`);
      case 'bool': {
        if (fmt !== 'b') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const values = this.copyBits(this.buffer(h, 1), start, n);
        return makeArrowData(type, n, nulls, bits, values);
      }
      case 'int8':
      case 'int16':
      case 'int32':
      case 'int64':
      case 'uint8':
      case 'uint16':
      case 'uint32':
      case 'uint64':
      case 'float32':
      case 'float64':
      case 'date':
      case 'timestamp': {
        const { bits, nulls } = this.validity(h, start, n);
        const values = this.primitive(h, fmt, target, start, n);
        return makeArrowData(type, n, nulls, bits, values);
      }
      case 'utf8':
      case 'binary': {
        const { bits, nulls } = this.validity(h, start, n);
        const { offsets, data } = this.varBinary(h, fmt, target, start, n);
        return makeArrowData(type, n, nulls, bits, data, offsets);
      }
      case 'list': {
        if (fmt !== '+l' && fmt !== '+L' && fmt !== '+m') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const offsets = this.offsets(this.buffer(h, 1), fmt === '+L', start, n);
        const base = offsets.base;
        const child = this.importData(this.child(h, 0), node.children[0]!, target.child, type.children[0]!.type, base, offsets.values[n]!);
        return makeArrowData(type, n, nulls, bits, undefined, offsets.values, [child]);
      }
      case 'fixedSizeList': {
        if (!fmt.startsWith('+w:')) return this.incompatible(fmt, target);
        const size = Number(fmt.slice(3));
        if (size !== target.size) this.fail(`fixed-size list of ${size} cannot be read as ${target.size}`);
        const { bits, nulls } = this.validity(h, start, n);
        const child = this.importData(this.child(h, 0), node.children[0]!, target.child, type.children[0]!.type, start * size, n * size);
        return makeArrowData(type, n, nulls, bits, undefined, undefined, [child]);
      }
      case 'struct': {
        if (fmt !== '+s') return this.incompatible(fmt, target);
        const { bits, nulls } = this.validity(h, start, n);
        const children = target.fields.map((f, i) => {
          const ci = node.children.findIndex((c) => c.name === f.name);
          if (ci < 0) this.fail(`struct field '${f.name}' missing from decoded data`);
          return this.importData(this.child(h, ci), node.children[ci]!, f.type, type.children[i]!.type, start, n);
        });
        return makeArrowData(type, n, nulls, bits, undefined, undefined, children);
      }
    }
    return this.incompatible(fmt, target);
  }

  private incompatible(fmt: string, target: DataTypeJSON): never {
    return this.fail(`decoded data of Arrow C format '${fmt}' cannot be read as ${JSON.stringify(target)}`);
  }

  /** Offsets [start, start + n] rebased to 0; `base` is the first original offset. */
  private offsets(ptr: number, large: boolean, start: number, n: number): { values: Int32Array; base: number } {
    if (n === 0 && ptr === 0) return { values: new Int32Array(n + 1), base: 0 };
    if (!large) {
      const src = new Int32Array(this.mem, ptr + 4 * start, n + 1);
      const base = src[0]!;
      if (base === 0) return { values: this.out(Int32Array, ptr + 4 * start, n + 1), base };
      const out = new Int32Array(n + 1);
      for (let i = 0; i <= n; i++) out[i] = src[i]! - base;
      return { values: out, base };
    }
    const out = new Int32Array(n + 1);
    const src = new BigInt64Array(this.mem, ptr + 8 * start, n + 1);
    const base = Number(src[0]!);
    if (Number(src[n]!) - base > 0x7fffffff) this.fail('a batch holds more than 2 GiB of values; use a smaller batchSize');
    for (let i = 0; i <= n; i++) out[i] = Number(src[i]!) - base;
    return { values: out, base };
  }

  private varBinary(h: ArrayHeader, fmt: string, target: DataTypeJSON, start: number, n: number): { offsets: Int32Array; data: Uint8Array } {
    if (fmt === 'u' || fmt === 'z' || fmt === 'U' || fmt === 'Z') {
      const { values, base } = this.offsets(this.buffer(h, 1), fmt === 'U' || fmt === 'Z', start, n);
      const dataPtr = this.buffer(h, 2);
      const data = this.out(Uint8Array, dataPtr + base, values[n]!);
      return { offsets: values, data };
    }
    if (fmt.startsWith('w:') && target.kind === 'binary') {
      const w = Number(fmt.slice(2));
      const dataPtr = this.buffer(h, 1);
      const data = this.out(Uint8Array, dataPtr + start * w, n * w);
      const offsets = new Int32Array(n + 1);
      for (let i = 0; i <= n; i++) offsets[i] = i * w;
      return { offsets, data };
    }
    return this.incompatible(fmt, target);
  }

  /** Fixed-width values of the window as the target's typed array (converting where needed). */
  private primitive(h: ArrayHeader, fmt: string, target: DataTypeJSON, start: number, n: number): AnyTypedArray {
    const ptr = this.buffer(h, 1);
    const tctor = targetCtor(target.kind)!;
    if (fmt.startsWith('d:')) return this.decimal(ptr, fmt, target, start, n);
    if (fmt === 'e') {
      if (target.kind !== 'float32' && target.kind !== 'float64') return this.incompatible(fmt, target);
      const src = new Uint16Array(this.mem, ptr + 2 * start, n);
      const out = new tctor(n) as Float32Array | Float64Array;
      for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]!);
      return out;
    }
    const sctor = formatCtor(fmt);
    if (!sctor) return this.incompatible(fmt, target);
    const w = sctor.BYTES_PER_ELEMENT;
    // Same physical layout and meaning: one copy.
    if (sctor === tctor && sameMeaning(fmt, target)) {
      return this.out(tctor, ptr + w * start, n);
    }
    const src = new sctor(this.mem, ptr + w * start, n);
    if (target.kind === 'date') {
      if (fmt !== 'tdm') return this.incompatible(fmt, target);
      const out = new Int32Array(n);
      const s = src as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = Math.floor(Number(s[i]!) / 86400000);
      return out;
    }
    if (target.kind === 'timestamp') {
      if (!fmt.startsWith('ts')) return this.incompatible(fmt, target);
      const from = ({ s: 's', m: 'ms', u: 'us', n: 'ns' } as const)[fmt[2] as 's' | 'm' | 'u' | 'n'];
      const out = new BigInt64Array(n);
      const s = src as BigInt64Array;
      for (let i = 0; i < n; i++) out[i] = rescaleTicks(s[i]!, from, target.unit, false);
      return out;
    }
    // Numeric casts (e.g. a dataset schema unified to a wider type than this file's).
    if (!/^[cCsSiIlLfg]$/.test(fmt) && !fmt.startsWith('tt') && !fmt.startsWith('tD')) return this.incompatible(fmt, target);
    const srcFloat = fmt === 'f' || fmt === 'g';
    const tgtFloat = target.kind === 'float32' || target.kind === 'float64';
    if (srcFloat && !tgtFloat) return this.fail(`cannot read floating-point data as ${target.kind}`);
    const out = new tctor(n);
    if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
      const lo = out instanceof BigUint64Array ? 0n : -(1n << 63n);
      const hi = out instanceof BigUint64Array ? (1n << 64n) - 1n : (1n << 63n) - 1n;
      for (let i = 0; i < n; i++) {
        const v = BigInt(src[i]!);
        if (v < lo || v > hi) this.fail(`value ${v} out of range for ${target.kind}`);
        out[i] = v;
      }
    } else {
      const range = INT_RANGE[target.kind];
      const o = out as Float64Array;
      for (let i = 0; i < n; i++) {
        const v = Number(src[i]!);
        if (range && (v < range[0] || v > range[1])) this.fail(`value ${v} out of range for ${target.kind}`);
        o[i] = v;
      }
    }
    return out;
  }

  private decimal(ptr: number, fmt: string, target: DataTypeJSON, start: number, n: number): AnyTypedArray {
    if (target.kind !== 'float64' && target.kind !== 'float32') return this.incompatible(fmt, target);
    const parts = fmt.slice(2).split(',').map(Number);
    const scale = parts[1] ?? 0;
    const bits = parts[2] ?? 128;
    const w = bits / 8;
    const out = target.kind === 'float64' ? new Float64Array(n) : new Float32Array(n);
    const dv = this.dv;
    const div = 10 ** scale;
    for (let i = 0; i < n; i++) {
      const p = ptr + (start + i) * w;
      let v: number;
      if (w === 4) v = dv.getInt32(p, true);
      else if (w === 8) v = Number(dv.getBigInt64(p, true));
      else {
        // little-endian words, most significant word signed
        v = Number(dv.getBigInt64(p + w - 8, true));
        for (let k = w - 16; k >= 0; k -= 8) v = v * 2 ** 64 + Number(dv.getBigUint64(p + k, true));
      }
      out[i] = v / div;
    }
    return out;
  }

  private importDictionary(h: ArrayHeader, node: FfiSchemaNode, target: DataTypeJSON, type: arrow.DataType, start: number, n: number): arrow.Data {
    const ictor = formatCtor(node.format);
    if (!ictor || !/^[cCsSiIlL]$/.test(node.format)) this.fail(`unsupported dictionary index format '${node.format}'`);
    const dict = this.importData(h.dictPtr, node.dictionary!, target, type, 0, null);
    const idxSrc = new ictor(this.mem, this.buffer(h, 1) + ictor.BYTES_PER_ELEMENT * start, n);
    const { bits: idxBits } = this.validity(h, start, n);
    const valid = new Uint8Array((n + 7) >> 3);
    const idx = new Int32Array(n);
    let nulls = 0;
    const dictValid = dict.nullCount > 0 ? dict.nullBitmap : null;
    for (let i = 0; i < n; i++) {
      const k = Number(idxSrc[i]!);
      const ok = (!idxBits || (idxBits[i >> 3]! >> (i & 7)) & 1) && (!dictValid || (dictValid[k >> 3]! >> (k & 7)) & 1);
      if (ok) {
        valid[i >> 3]! |= 1 << (i & 7);
        idx[i] = k;
      } else {
        nulls++;
        idx[i] = 0;
      }
    }
    if (n > 0 && dict.length === 0 && nulls < n) this.fail('dictionary index into an empty dictionary');
    return gather(dict, idx, valid, nulls, type);
  }
}

function sameMeaning(fmt: string, target: DataTypeJSON): boolean {
  if (target.kind === 'timestamp') return fmt.startsWith('ts') && fmt[2] === target.unit[0];
  if (target.kind === 'date') return fmt === 'tdD';
  return true;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Dictionary values gathered into a plain array (utf8/binary and fixed-width types). */
function gather(dict: arrow.Data, idx: Int32Array, valid: Uint8Array, nulls: number, type: arrow.DataType): arrow.Data {
  const n = idx.length;
  if (dict.valueOffsets && (arrow.DataType.isUtf8(dict.type) || arrow.DataType.isBinary(dict.type))) {
    const dOff = dict.valueOffsets as Int32Array;
    const dVal = dict.values as Uint8Array;
    const offsets = new Int32Array(n + 1);
    let total = 0;
    for (let i = 0; i < n; i++) {
      if ((valid[i >> 3]! >> (i & 7)) & 1) total += dOff[idx[i]! + 1]! - dOff[idx[i]!]!;
      offsets[i + 1] = total;
    }
    const data = new Uint8Array(total);
    for (let i = 0; i < n; i++) {
      const len = offsets[i + 1]! - offsets[i]!;
      if (len) data.set(dVal.subarray(dOff[idx[i]!]!, dOff[idx[i]!]! + len), offsets[i]!);
    }
    return makeArrowData(type, n, nulls, valid, data, offsets);
  }
  if (arrow.DataType.isBool(dict.type)) {
    const src = dict.values as Uint8Array;
    const out = new Uint8Array((n + 7) >> 3);
    for (let i = 0; i < n; i++) if ((src[idx[i]! >> 3]! >> (idx[i]! & 7)) & 1) out[i >> 3]! |= 1 << (i & 7);
    return makeArrowData(type, n, nulls, valid, out);
  }
  const src = dict.values as AnyTypedArray;
  if (!src || dict.children.length) throw new Error(`dictionary-encoded ${String(dict.type)} columns are not supported`);
  const out = new (src.constructor as TypedCtor)(n);
  for (let i = 0; i < n; i++) (out as Float64Array)[i] = (src as Float64Array)[idx[i]!]!;
  return makeArrowData(type, n, nulls, valid, out);
}

/** An all-null column of `target` (for a Null-typed source column). */
function nullData(target: DataTypeJSON, type: arrow.DataType, n: number): arrow.Data {
  const valid = new Uint8Array((n + 7) >> 3);
  switch (target.kind) {
    case 'null':
      return new arrow.Data(type, 0, n, n);
    case 'bool':
      return makeArrowData(type, n, n, valid, new Uint8Array((n + 7) >> 3));
    case 'utf8':
    case 'binary':
      return makeArrowData(type, n, n, valid, new Uint8Array(0), new Int32Array(n + 1));
    case 'list':
      return makeArrowData(type, n, n, valid, undefined, new Int32Array(n + 1), [nullData(target.child, type.children[0]!.type, 0)]);
    case 'fixedSizeList':
      return makeArrowData(type, n, n, valid, undefined, undefined, [nullData(target.child, type.children[0]!.type, n * target.size)]);
    case 'struct':
      return makeArrowData(
        type,
        n,
        n,
        valid,
        undefined,
        undefined,
        target.fields.map((f, i) => nullData(f.type, type.children[i]!.type, n)),
      );
    default:
      return makeArrowData(type, n, n, valid, new (targetCtor(target.kind)!)(n));
  }
}

export function emptyColumnsBatch(length: number): arrow.RecordBatch {
  const schema = new arrow.Schema([]);
  return new arrow.RecordBatch(schema, new arrow.Data(new arrow.Struct([]), 0, length, 0, undefined, []) as arrow.Data<arrow.Struct>);
}

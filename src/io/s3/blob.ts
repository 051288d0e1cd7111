// S3Blob: the Blob subset parquet-wasm's ParquetFile.fromFile uses (size, slice, arrayBuffer), and
// Parquet tails (footer + page indexes) of many objects fetched in parallel.
import { mapLimit } from '../../concurrency.ts';
import { S3Error, s3Error, s3Settings, type S3Settings } from './client.ts';
import { getS3Range, headS3 } from './objects.ts';

interface CachedRange {
  start: number;
  end: number;
  bytes: Promise<Uint8Array>;
  tag: string;
}

/** Ranges larger than this are fetched as parallel ranged GETs. */
const RANGE_PART = 8 << 20;

/**
 * A read-only view of an S3 object as a Blob: `slice(a, b).arrayBuffer()` issues a ranged
 * GetObject (only the bytes asked for). Ranges prefetched with `prefetch` (and the footer tail
 * given at construction) are served from memory, so the decoder's reads overlap network I/O.
 */
export class S3Blob {
  private readonly cache: CachedRange[];
  /** Shared by a blob and its slices: the last read failure (parquet-wasm turns a rejected read into a trap and loses it). */
  private readonly failure: { error: Error | null };

  /** @param objectSize the whole object's size (a HEAD's or listing's ContentLength) */
  constructor(
    readonly uri: string,
    readonly objectSize: number,
    readonly options: { etag?: string; settings?: S3Settings; tail?: { offset: number; bytes: Uint8Array } } = {},
    private readonly start = 0,
    private readonly end = objectSize,
    cache?: CachedRange[],
    failure?: { error: Error | null },
  ) {
    this.cache = cache ?? [];
    this.failure = failure ?? { error: null };
    if (!cache && options.tail) {
      const { offset, bytes } = options.tail;
      this.cache.push({ start: offset, end: offset + bytes.length, bytes: Promise.resolve(bytes), tag: 'tail' });
    }
  }

  /** Bytes in this blob (Blob.size): the slice's length. */
  get size(): number {
    return this.end - this.start;
  }

  get type(): string {
    return '';
  }

  /** Blob.slice semantics: offsets relative to this blob, negatives from its end, clamped. */
  slice(start = 0, end = this.end - this.start): S3Blob {
    const len = this.end - this.start;
    const rel = (v: number): number => Math.min(len, Math.max(0, v < 0 ? len + v : v));
    const a = rel(Math.floor(start));
    const b = Math.max(a, rel(Math.floor(end)));
    return new S3Blob(this.uri, this.objectSize, this.options, this.start + a, this.start + b, this.cache, this.failure);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    let bytes: Uint8Array;
    try {
      bytes = await this.read(this.start, this.end);
    } catch (e) {
      this.failure.error = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
    return bytes.slice().buffer as ArrayBuffer;
  }

  /** The last read failure of this blob or any slice of it (then cleared). */
  takeError(): Error | null {
    const e = this.failure.error;
    this.failure.error = null;
    return e;
  }

  async bytes(): Promise<Uint8Array> {
    return this.read(this.start, this.end);
  }

  /** Start fetching these absolute [start, end) ranges (merged when adjacent); `tag` names them for evict(). */
  prefetch(ranges: readonly (readonly [number, number])[], tag: string): void {
    const sorted = ranges
      .filter(([a, b]) => b > a)
      .map(([a, b]) => [a, Math.min(b, this.objectSize)] as [number, number])
      .sort((x, y) => x[0] - y[0]);
    const merged: [number, number][] = [];
    for (const r of sorted) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    for (const [a, b] of merged) {
      if (this.covered(a, b)) continue;
      const bytes = this.fetch(a, b);
      bytes.catch(() => undefined); // surfaced when (if) the range is read
      this.cache.push({ start: a, end: b, bytes, tag });
    }
  }

  /** Forget prefetched ranges with this tag (their memory is released once no read holds them). */
  evict(tag: string): void {
    for (let i = this.cache.length - 1; i >= 0; i--) if (this.cache[i]!.tag === tag) this.cache.splice(i, 1);
  }

  private covered(a: number, b: number): boolean {
    return this.cache.some((c) => c.start <= a && c.end >= b);
  }

  private fetch(a: number, b: number): Promise<Uint8Array> {
    const { etag, settings } = this.options;
    if (b - a <= RANGE_PART) return getS3Range(this.uri, a, b, etag, settings);
    const out = new Uint8Array(b - a);
    const parts: Promise<void>[] = [];
    for (let s = a; s < b; s += RANGE_PART) {
      const e = Math.min(b, s + RANGE_PART);
      parts.push(getS3Range(this.uri, s, e, etag, settings).then((p) => out.set(p, s - a)));
    }
    return Promise.all(parts).then(() => out);
  }

  /** Bytes [a, b): from cached ranges where they cover it, the gaps from S3. */
  private async read(a: number, b: number): Promise<Uint8Array> {
    if (b <= a) return new Uint8Array(0);
    const whole = this.cache.find((c) => c.start <= a && c.end >= b);
    if (whole) {
      const buf = await whole.bytes;
      return buf.subarray(a - whole.start, b - whole.start);
    }
    const overlapping = this.cache.filter((c) => c.start < b && c.end > a).sort((x, y) => x.start - y.start);
    if (!overlapping.length) return this.fetch(a, b);
    const out = new Uint8Array(b - a);
    const parts: Promise<void>[] = [];
    let pos = a;
    for (const c of overlapping) {
      if (c.end <= pos) continue;
      if (c.start > pos) {
        const [s, e] = [pos, Math.min(c.start, b)];
        parts.push(this.fetch(s, e).then((p) => out.set(p, s - a)));
      }
      const s = Math.max(c.start, pos);
      const e = Math.min(c.end, b);
      parts.push(c.bytes.then((buf) => out.set(buf.subarray(s - c.start, e - c.start), s - a)));
      pos = e;
    }
    if (pos < b) {
      const s = pos;
      parts.push(this.fetch(s, b).then((p) => out.set(p, s - a)));
    }
    await Promise.all(parts);
    return out;
  }
}
// ---------------------------------------------------------------------------------------------
// Parquet tails (footer + page indexes), fetched in parallel

/** Bytes read from the end of a Parquet object at first: footer and page indexes usually fit. */
const PARQUET_TAIL_BYTES = 64 << 10;

export interface TailRequest {
  uri: string;
  size?: number;
  etag?: string;
}
export type TailResult =
  | { uri: string; size: number; etag: string; offset: number; bytes: Uint8Array; head: Uint8Array | null }
  | { uri: string; error: { message: string; code: string } };

/**
 * For each object: size and ETag (HEAD unless given) and its last bytes, enough to hold the
 * Parquet footer (a second ranged GET when the footer is larger than the first read). `head` holds
 * the first 4 bytes only when the tail magic is wrong (to tell truncated files from non-Parquet).
 */
export async function fetchParquetTails(items: readonly TailRequest[], settings: S3Settings = s3Settings(), concurrency = 32): Promise<TailResult[]> {
  const one = async (it: TailRequest): Promise<TailResult> => {
    try {
      let { size, etag } = it;
      if (size === undefined || etag === undefined) ({ size, etag } = await headS3(it.uri, settings));
      if (size < 12) return { uri: it.uri, size, etag, offset: 0, bytes: await getS3Range(it.uri, 0, size, etag, settings), head: null };
      const first = Math.max(0, size - PARQUET_TAIL_BYTES);
      let offset = first;
      let bytes = await getS3Range(it.uri, first, size, etag, settings);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const magic = dv.getUint32(bytes.length - 4, true);
      if (magic !== 0x31524150) {
        const head = first === 0 ? bytes.subarray(0, 4) : await getS3Range(it.uri, 0, 4, etag, settings);
        return { uri: it.uri, size, etag, offset, bytes, head };
      }
      const metaLen = dv.getUint32(bytes.length - 8, true);
      const need = metaLen + 8;
      if (need > bytes.length && need <= size - 4) {
        const more = await getS3Range(it.uri, size - need, first, etag, settings);
        const all = new Uint8Array(more.length + bytes.length);
        all.set(more, 0);
        all.set(bytes, more.length);
        bytes = all;
        offset = size - need;
      }
      return { uri: it.uri, size, etag, offset, bytes, head: null };
    } catch (e) {
      const err = e instanceof S3Error ? e : s3Error('GetObject', it.uri, e, settings);
      return { uri: it.uri, error: { message: err.message, code: err.code } };
    }
  };
  return mapLimit(items, concurrency, one);
}

// RangeBlob: the Blob subset parquet-wasm's ParquetFile.fromFile uses (size, slice, arrayBuffer)
// over one object or file, with a cache of prefetched byte ranges. Subclasses say how a range is
// fetched: ranged GETs (S3Blob) or positioned reads of a local file (FileBlob).

interface CachedRange {
  start: number;
  end: number;
  bytes: Promise<Uint8Array>;
  tag: string;
}

/** What a blob and all its slices share: the prefetch cache and the last read failure. */
export interface RangeBlobState {
  cache: CachedRange[];
  /** parquet-wasm turns a rejected read into a trap and loses its error: keep it for the reader. */
  failure: { error: Error | null };
}

export abstract class RangeBlob {
  protected readonly state: RangeBlobState;

  /** @param objectSize the whole object's size; `start`/`end` bound this slice of it. */
  protected constructor(
    readonly objectSize: number,
    protected readonly start: number,
    protected readonly end: number,
    state?: RangeBlobState,
  ) {
    this.state = state ?? { cache: [], failure: { error: null } };
  }

  /** Bytes [a, b) of the object, from its source (not the cache). */
  protected abstract fetch(a: number, b: number): Promise<Uint8Array>;
  /** The same source over absolute [a, b), sharing this blob's state. */
  protected abstract sliceAt(a: number, b: number): this;

  /** Bytes in this blob (Blob.size): the slice's length. */
  get size(): number {
    return this.end - this.start;
  }

  get type(): string {
    return '';
  }

  /** Blob.slice semantics: offsets relative to this blob, negatives from its end, clamped. */
  slice(start = 0, end = this.end - this.start): this {
    const len = this.end - this.start;
    const rel = (v: number): number => Math.min(len, Math.max(0, v < 0 ? len + v : v));
    const a = rel(Math.floor(start));
    const b = Math.max(a, rel(Math.floor(end)));
    return this.sliceAt(this.start + a, this.start + b);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    let bytes: Uint8Array;
    try {
      bytes = await this.read(this.start, this.end);
    } catch (e) {
      this.state.failure.error = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
    return bytes.slice().buffer as ArrayBuffer;
  }

  /** The last read failure of this blob or any slice of it (then cleared). */
  takeError(): Error | null {
    const e = this.state.failure.error;
    this.state.failure.error = null;
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
      this.state.cache.push({ start: a, end: b, bytes, tag });
    }
  }

  /** Forget prefetched ranges with this tag (their memory is released once no read holds them). */
  evict(tag: string): void {
    const cache = this.state.cache;
    for (let i = cache.length - 1; i >= 0; i--) if (cache[i]!.tag === tag) cache.splice(i, 1);
  }

  /** Seed the cache with bytes already read (a footer tail). */
  protected hold(offset: number, bytes: Uint8Array, tag: string): void {
    this.state.cache.push({ start: offset, end: offset + bytes.length, bytes: Promise.resolve(bytes), tag });
  }

  private covered(a: number, b: number): boolean {
    return this.state.cache.some((c) => c.start <= a && c.end >= b);
  }

  /** Bytes [a, b): from cached ranges where they cover it, the gaps from the source. */
  private async read(a: number, b: number): Promise<Uint8Array> {
    if (b <= a) return new Uint8Array(0);
    const cache = this.state.cache;
    const whole = cache.find((c) => c.start <= a && c.end >= b);
    if (whole) {
      const buf = await whole.bytes;
      return buf.subarray(a - whole.start, b - whole.start);
    }
    const overlapping = cache.filter((c) => c.start < b && c.end > a).sort((x, y) => x.start - y.start);
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

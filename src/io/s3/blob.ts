// S3Blob: the Blob subset parquet-wasm's ParquetFile.fromFile uses (size, slice, arrayBuffer), and
// Parquet tails (footer + page indexes) of many objects fetched in parallel.
import { mapLimit } from '../../concurrency.ts';
import { S3Error, s3Error, s3Settings, type S3Settings } from './client.ts';
import { getS3Range, getS3Suffix, headS3 } from './objects.ts';
import { RangeBlob, type RangeBlobState } from '../range-blob.ts';

/** Ranges larger than this are fetched as parallel ranged GETs. */
const RANGE_PART = 8 << 20;

/**
 * A read-only view of an S3 object as a Blob: `slice(a, b).arrayBuffer()` issues a ranged
 * GetObject (only the bytes asked for). Ranges prefetched with `prefetch` (and the footer tail
 * given at construction) are served from memory, so the decoder's reads overlap network I/O.
 */
export class S3Blob extends RangeBlob {
  /** @param objectSize the whole object's size (a HEAD's or listing's ContentLength) */
  constructor(
    readonly uri: string,
    objectSize: number,
    readonly options: { etag?: string; settings?: S3Settings; tail?: { offset: number; bytes: Uint8Array } } = {},
    start = 0,
    end = objectSize,
    state?: RangeBlobState,
  ) {
    super(objectSize, start, end, state);
    if (!state && options.tail) this.hold(options.tail.offset, options.tail.bytes, 'tail');
  }

  protected sliceAt(a: number, b: number): this {
    return new S3Blob(this.uri, this.objectSize, this.options, a, b, this.state) as this;
  }

  protected fetch(a: number, b: number): Promise<Uint8Array> {
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
 * For each object: size and ETag (unless given: from a suffix GET of the tail, no HEAD) and its last bytes, enough to hold the
 * Parquet footer (a second ranged GET when the footer is larger than the first read). `head` holds
 * the first 4 bytes only when the tail magic is wrong (to tell truncated files from non-Parquet).
 */
export async function fetchParquetTails(items: readonly TailRequest[], settings: S3Settings = s3Settings(), concurrency = 32): Promise<TailResult[]> {
  const one = async (it: TailRequest): Promise<TailResult> => {
    try {
      let { size, etag } = it;
      let bytes: Uint8Array | null = null;
      if (size === undefined || etag === undefined) {
        // Size, ETag and the tail in one suffix GET; a HEAD and an explicit range where that fails.
        const suffix = await getS3Suffix(it.uri, PARQUET_TAIL_BYTES, settings);
        if (suffix) ({ size, etag, bytes } = suffix);
        else ({ size, etag } = await headS3(it.uri, settings));
      }
      if (size < 12) return { uri: it.uri, size, etag, offset: 0, bytes: bytes ?? (await getS3Range(it.uri, 0, size, etag, settings)), head: null };
      const first = Math.max(0, size - PARQUET_TAIL_BYTES);
      let offset = first;
      bytes ??= await getS3Range(it.uri, first, size, etag, settings);
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

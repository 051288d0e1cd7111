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
    if (!state && options.tail) {
      const t = grownTail(uri, options.etag, options.tail);
      this.hold(t.offset, t.bytes, 'tail');
    }
  }

  protected sliceAt(a: number, b: number): this {
    return new S3Blob(this.uri, this.objectSize, this.options, a, b, this.state) as this;
  }

  protected fetch(a: number, b: number): Promise<Uint8Array> {
    const { etag, settings, tail } = this.options;
    if (tail && etag && b - a <= GROW_MAX && b === grownTail(this.uri, etag, tail).offset) {
      // The bytes just before the footer tail (page indexes, read on every open): kept with the tail.
      return getS3Range(this.uri, a, b, etag, settings).then((bytes) => {
        growTail(this.uri, etag, tail, a, bytes);
        return bytes;
      });
    }
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

/**
 * Footer tails grown by the bytes read just before them (the page indexes parquet-wasm reads on
 * every open, when they lie outside the first tail read), per object version: a Lambda environment
 * that opens one input file for many partitions fetches them once. Keyed by URI and ETag (the ranged
 * GET that fetched them checked it), so a changed object is never served from here.
 */
const grownTails = new Map<string, { offset: number; bytes: Uint8Array }>();
const GROWN_TAILS_MAX = 64;
const GROWN_BYTES_MAX = 32 << 20;
let grownBytes = 0;
/** At most this many bytes are added to a tail (page indexes are small next to the data). */
const GROW_MAX = 1 << 20;

function grownTail(uri: string, etag: string | undefined, tail: { offset: number; bytes: Uint8Array }): { offset: number; bytes: Uint8Array } {
  const g = etag ? grownTails.get(`${uri}\0${etag}`) : undefined;
  return g && g.offset < tail.offset && g.offset + g.bytes.length === tail.offset + tail.bytes.length ? g : tail;
}

function growTail(uri: string, etag: string, tail: { offset: number; bytes: Uint8Array }, a: number, before: Uint8Array): void {
  const cur = grownTail(uri, etag, tail);
  if (a + before.length !== cur.offset || tail.offset - a > GROW_MAX) return;
  const bytes = new Uint8Array(before.length + cur.bytes.length);
  bytes.set(before, 0);
  bytes.set(cur.bytes, before.length);
  const k = `${uri}\0${etag}`;
  const old = grownTails.get(k);
  if (old) grownBytes -= old.bytes.length;
  grownTails.delete(k); // re-inserted: the Map's order is then oldest first
  grownTails.set(k, { offset: a, bytes });
  grownBytes += bytes.length;
  while (grownTails.size > GROWN_TAILS_MAX || grownBytes > GROWN_BYTES_MAX) {
    const [oldest, v] = grownTails.entries().next().value!;
    grownTails.delete(oldest);
    grownBytes -= v.bytes.length;
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

/** Objects this small are read whole by their first tail read, so their known bytes answer it. */
const WHOLE_TAIL_MAX = PARQUET_TAIL_BYTES;
/** Whole small objects this process already has the bytes of (a Stage's result from its completion marker), by URI. */
const knownObjects = new Map<string, { etag: string; bytes: Uint8Array }>();
let knownBytes = 0;
/** Bound on the bytes held for objects not read yet (oldest dropped first). */
const KNOWN_MAX_BYTES = 64 << 20;

/**
 * Remember the whole bytes of `uri` at version `etag` (at most WHOLE_TAIL_MAX bytes), so that the
 * next tail read of that version (`knownTail`) needs no request. A different version is read as usual.
 */
export function noteObjectBytes(uri: string, etag: string, bytes: Uint8Array): void {
  if (!etag || bytes.length > WHOLE_TAIL_MAX) return;
  const old = knownObjects.get(uri);
  if (old) knownBytes -= old.bytes.length;
  knownObjects.delete(uri);
  // A plain copy: a Buffer (from base64, pooled) would share its ArrayBuffer, and Buffer#slice does not copy.
  knownObjects.set(uri, { etag, bytes: new Uint8Array(bytes) });
  knownBytes += bytes.length;
  for (const [u, o] of knownObjects) {
    if (knownBytes <= KNOWN_MAX_BYTES) break;
    knownObjects.delete(u);
    knownBytes -= o.bytes.length;
  }
}

/** Drops the noted bytes of every object under `prefix` (a run that failed: its results are never read back). */
export function forgetObjectBytes(prefix: string): void {
  for (const [u, o] of knownObjects) {
    if (!u.startsWith(prefix)) continue;
    knownObjects.delete(u);
    knownBytes -= o.bytes.length;
  }
}

/**
 * The tail read of `it` from noted bytes (see noteObjectBytes), taken once; null unless the request
 * names the same size and ETag (a listing vouched for that version). The same answer as
 * fetchParquetTails gives for an object read whole.
 */
export function knownTail(it: TailRequest): TailResult | null {
  const k = knownObjects.get(it.uri);
  if (!k || it.etag !== k.etag || it.size !== k.bytes.length) return null;
  knownObjects.delete(it.uri);
  knownBytes -= k.bytes.length;
  const { bytes } = k;
  const size = bytes.length;
  const magicOk = size >= 12 && new DataView(bytes.buffer, bytes.byteOffset, size).getUint32(size - 4, true) === 0x31524150;
  return { uri: it.uri, size, etag: k.etag, offset: 0, bytes, head: size < 12 || magicOk ? null : bytes.subarray(0, 4) };
}

/**
 * For each object: size and ETag (unless given: from a suffix GET of the tail, no HEAD) and its last bytes, enough to hold the
 * Parquet footer (a second ranged GET when the footer is larger than the first read). `head` holds
 * the first 4 bytes only when the tail magic is wrong (to tell truncated files from non-Parquet).
 */
export async function fetchParquetTails(items: readonly TailRequest[], settings: S3Settings = s3Settings(), concurrency = 32): Promise<TailResult[]> {
  const one = async (it: TailRequest): Promise<TailResult> => {
    const known = knownTail(it);
    if (known) return known;
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

// The storage layer's contract: an ObjectStore holds objects under keys relative to its root (an S3
// bucket, or a directory). Readers, writers, the commit protocol, dead letters and the serverless
// run lifecycle use it; storeFor(uri) (index.ts) picks the store for a URI or path.

/** What a listing or HEAD says about an object. `etag` versions it (S3's ETag; locally size and mtime). */
export interface ObjectInfo {
  uri: string;
  key: string;
  size: number;
  etag: string;
  lastModified: number;
}

/** Objects under a prefix; with a delimiter, `prefixes` are the "sub-directory" URIs. */
export interface Listing {
  objects: ObjectInfo[];
  prefixes: string[];
}

export interface PutOptions {
  contentType?: string;
  /** Conditional write: only replace the object if its version (ETag) is this one. */
  ifMatch?: string;
  /** Conditional write: '*' creates the object only if the key does not exist yet. */
  ifNoneMatch?: '*';
}

/** A streamed write: nothing is visible under the key until close() resolves. */
export interface ObjectWriter {
  readonly uri: string;
  /** Resolves once the chunk is written or buffered (backpressure); the caller may then reuse it. */
  write(chunk: Uint8Array): Promise<void>;
  close(): Promise<{ bytes: number; etag: string }>;
  /** Give up: no object is left behind. */
  abort(): Promise<void>;
}

/** An object as chunks, read front to back. */
export interface ByteStream extends AsyncIterable<Uint8Array> {
  destroy(): void;
}

/** Sequential reads into the caller's buffer (no intermediate copies locally). */
export interface ChunkReader {
  /** Up to `len` bytes at `pos` into `into`; 0 at the end. Remote stores need `pos` to follow the previous read. */
  read(into: Uint8Array, len: number, pos: number): Promise<number>;
  close(): Promise<void>;
}

/** Blocking metadata calls, for the synchronous DataFrame builder (path expansion, manifests). */
export interface SyncObjectStore {
  /** Objects whose keys start with `prefix` (recursive). */
  list(prefix: string): Listing;
  /** Objects whose keys match a glob over keys. */
  glob(pattern: string): ObjectInfo[];
  head(key: string): ObjectInfo | null;
  getOrNull(key: string): { bytes: Uint8Array; etag: string } | null;
  /** Bytes [start, end) (fewer at the end of the object). With `etag`, a changed object is an error. */
  range(key: string, start: number, end: number, etag?: string): Uint8Array;
}

export interface ObjectStore {
  /** The URI (or path) of a key: what readers and errors name. */
  uri(key: string): string;
  get(key: string): Promise<Uint8Array>;
  /** The object and its version, or null when it does not exist. */
  getOrNull(key: string): Promise<{ bytes: Uint8Array; etag: string } | null>;
  /** The object as a stream of chunks (bounded memory). With `etag`, a changed object is an error. */
  stream(key: string, opts?: { etag?: string }): Promise<ByteStream>;
  /** Sequential chunked reads (CSV). With `etag`, a changed object is an error. */
  openReader(key: string, opts?: { etag?: string }): Promise<ChunkReader>;
  /** A Blob over the object whose slices read only the bytes asked for (parquet-wasm's fromFile). */
  openBlob(key: string): Promise<Blob>;
  put(key: string, body: Uint8Array | string, opts?: PutOptions): Promise<{ etag: string }>;
  /** A streamed write (multipart on S3). */
  openWriter(key: string, opts?: { contentType?: string }): Promise<ObjectWriter>;
  /** Streams `body` to `key`; the object appears only when complete. Returns the bytes written. */
  upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number>;
  head(key: string): Promise<ObjectInfo | null>;
  exists(key: string): Promise<boolean>;
  /** Keys under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  listObjects(prefix: string, opts?: { delimiter?: string }): Promise<Listing>;
  /** Copy an object of this store to a URI or path (server-side within S3). */
  copy(from: string, toUri: string): Promise<void>;
  /** Missing keys are not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Delete every object under a prefix; returns how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Make a key writable by readers and writers that take a URI (local: create its directory). */
  prepare(key: string): Promise<void>;
  readonly sync: SyncObjectStore;
  /**
   * The file-system path of a key when the store is a directory: commits then use atomic renames,
   * hard-link locks and directory walks. Absent on object stores (copy + conditional PUT instead).
   */
  localPath?(key: string): string;
}

export class NotFoundError extends Error {
  constructor(readonly uri: string) {
    super(`object not found: ${uri}`);
    this.name = 'NotFoundError';
  }
}

/** A conditional put whose condition did not hold (or a concurrent conditional write won). */
export class PreconditionFailedError extends Error {
  readonly code = 'PreconditionFailed';
  constructor(
    readonly uri: string,
    why: string,
  ) {
    super(`${uri}: ${why} (PreconditionFailed)`);
    this.name = 'PreconditionFailedError';
  }
}

export async function getJson<T>(store: ObjectStore, key: string): Promise<T> {
  const bytes = await store.get(key);
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch (e) {
    throw new Error(`${store.uri(key)} is not valid JSON: ${(e as Error).message}`);
  }
}

export function putJson(store: ObjectStore, key: string, value: unknown): Promise<void> {
  return store.put(key, JSON.stringify(value)).then(() => undefined);
}

// The storage layer: storeFor(uri) maps a URI or path to its ObjectStore and key; the functions
// below take URIs and go through it, so readers and writers never branch on a scheme. Only this
// folder and the S3 modules it uses (src/io/s3/) know `s3://`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDynamicPattern } from '../glob.ts';
import {
  forgetS3Object,
  groupS3Hints,
  isS3Glob,
  isS3Uri,
  joinS3,
  noteS3Objects,
  parseS3Uri,
  S3_METADATA_TTL_MS,
  S3Blob,
  S3Error,
  s3Hint,
  S3ObjectChangedError,
  s3Settings,
  s3Sync,
  trimSlash,
  type S3Hint,
  type TailRequest,
  type TailResult,
} from '../s3/index.ts';
import { FileBlob } from './file-blob.ts';
import { LocalStore } from './local.ts';
import { S3Store } from './s3.ts';
import {
  NotFoundError,
  PreconditionFailedError,
  type ChunkReader,
  type Listing,
  type ObjectInfo,
  type ObjectStore,
  type ObjectWriter,
  type PutOptions,
} from './store.ts';

export * from './store.ts';
export { LocalStore } from './local.ts';
export { S3Store } from './s3.ts';
export { trimSlash };

/** Where a URI lives: its store, the key in it, and the container (bucket, or '/' for local files). */
interface Location {
  store: ObjectStore;
  key: string;
  container: string;
}

/** The local file system, rooted at '/': keys are absolute paths without the leading '/'. */
const LOCAL = new LocalStore(path.parse(process.cwd()).root);
const buckets = new Map<string, S3Store>();

/** Is this a URL with a scheme other than file:// (s3://, gs://, http://...)? */
export function isRemotePath(p: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(p) && !p.startsWith('file://');
}

/** A file:// URL as a path; anything else unchanged. */
export function toLocalPath(p: string): string {
  return p.startsWith('file://') ? fileURLToPath(p) : p;
}

/**
 * The store and key for a URI or local path. Other URL schemes are an error naming the URI and
 * `what` ('remote paths', 'remote output paths', ...).
 */
export function storeFor(uri: string, what = 'remote paths'): Location {
  if (isS3Uri(uri)) {
    const { bucket, key } = parseS3Uri(uri);
    let store = buckets.get(bucket);
    if (!store) buckets.set(bucket, (store = new S3Store(bucket)));
    return { store, key, container: bucket };
  }
  if (isRemotePath(uri)) throw new Error(`${what} other than s3:// are not supported (${uri})`);
  const abs = path.resolve(toLocalPath(uri));
  return { store: LOCAL, key: path.relative(LOCAL.root, abs).split(path.sep).join('/'), container: LOCAL.root };
}

/** Is `uri` in a local directory store (renames, links and locks available)? */
export function isLocalUri(uri: string): boolean {
  return storeFor(uri).store.localPath !== undefined;
}

/** A local path's key ('' for the root itself), or an object URI's key: what segment checks look at. */
export function uriKey(uri: string): string {
  return isS3Uri(uri) ? parseS3Uri(uri).key : uri;
}

/** `rel` below `dir` (an object prefix or a directory); `..` may not climb above a bucket. */
export function joinUri(dir: string, rel: string): string {
  return isS3Uri(dir) ? joinS3(dir, rel) : path.join(dir, rel);
}

/**
 * Is `uri` an object strictly below the object-store prefix `prefixUri` (same bucket)? false when
 * `uri` is not an object-store URI; null when `prefixUri` is not one (a configuration error).
 */
export function isBelowPrefix(uri: string, prefixUri: string): boolean | null {
  if (!isS3Uri(uri)) return false;
  if (!isS3Uri(prefixUri)) return null;
  const o = parseS3Uri(uri);
  const { bucket, key } = parseS3Uri(prefixUri);
  const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  return o.bucket === bucket && o.key.startsWith(prefix) && o.key.length > prefix.length;
}

/** Does an object URI hold glob characters (an object store's key glob)? */
export function isObjectGlob(uri: string): boolean {
  return isS3Uri(uri) ? isS3Glob(uri) : isDynamicPattern(uri);
}

// ---------------------------------------------------------------------------------------------
// URI-level operations (async)

export function listObjects(prefixUri: string, opts: { delimiter?: string } = {}): Promise<Listing> {
  const { store, key } = storeFor(prefixUri);
  return store.listObjects(key, opts);
}
export function getObjectOrNull(uri: string): Promise<{ bytes: Uint8Array; etag: string } | null> {
  const { store, key } = storeFor(uri);
  return store.getOrNull(key);
}
export function putObject(uri: string, body: Uint8Array | string, opts: PutOptions = {}): Promise<{ etag: string }> {
  const { store, key } = storeFor(uri);
  return store.put(key, body, opts);
}
export function copyObject(fromUri: string, toUri: string): Promise<void> {
  const { store, key } = storeFor(fromUri);
  return store.copy(key, toUri);
}
/** Delete objects (any stores); missing ones are not an error. */
export async function deleteObjects(uris: readonly string[]): Promise<void> {
  const byStore = new Map<ObjectStore, string[]>();
  for (const u of uris) {
    const { store, key } = storeFor(u);
    let keys = byStore.get(store);
    if (!keys) byStore.set(store, (keys = []));
    keys.push(key);
  }
  for (const [store, keys] of byStore) await store.delete(keys);
}
export function deletePrefix(prefixUri: string): Promise<number> {
  const { store, key } = storeFor(prefixUri);
  return store.deletePrefix(key);
}
export function openObjectWriter(uri: string, opts: { contentType?: string } = {}): Promise<ObjectWriter> {
  const { store, key } = storeFor(uri);
  return store.openWriter(key, opts);
}
export function openObjectReader(uri: string, opts: { etag?: string } = {}): Promise<ChunkReader> {
  const { store, key } = storeFor(uri);
  return store.openReader(key, opts);
}
/** Make `uri` writable by a writer that takes a URI (local: create its directory). */
export function prepareObject(uri: string): Promise<void> {
  const { store, key } = storeFor(uri);
  return store.prepare(key);
}

/**
 * Did a conditional put lose (its condition failed, or a concurrent conditional write won)? With
 * `existed`, a vanished object (NoSuchKey on If-Match) counts as a lost race too.
 */
export function isConditionFailure(e: unknown, existed = false): boolean {
  if (e instanceof PreconditionFailedError) return true;
  return e instanceof S3Error && (e.code === 'PreconditionFailed' || e.code === 'ConditionalRequestConflict' || (existed && e.code === 'NoSuchKey'));
}

// ---------------------------------------------------------------------------------------------
// Blocking metadata calls (the synchronous DataFrame builder)

export function listObjectsSync(prefixUri: string): Listing {
  const { store, key } = storeFor(prefixUri);
  return store.sync.list(key);
}
/** Listings of many prefixes in one blocking round (in parallel on S3); a failed one is its Error. */
export function listManySync(prefixUris: readonly string[]): Map<string, Listing | Error> {
  const remote = prefixUris.filter((u) => isS3Uri(u));
  const out = new Map<string, Listing | Error>(remote.length ? s3Sync.listMany(remote) : []);
  for (const u of prefixUris) {
    if (out.has(u)) continue;
    try {
      out.set(u, listObjectsSync(u));
    } catch (e) {
      out.set(u, e instanceof Error ? e : new Error(String(e)));
    }
  }
  return out;
}
/**
 * One level of a directory or prefix, not recursive (local readdir; S3 ListObjectsV2 with Delimiter
 * '/'): the URIs of the files directly in it and of its sub-directories (each ending in its separator).
 * The hive walk descends partition by partition with it instead of listing a whole dataset.
 */
export function listLevelSync(dirUri: string): { files: string[]; dirs: string[]; objects?: ObjectInfo[] } {
  if (isS3Uri(dirUri)) {
    const prefix = dirUri.endsWith('/') ? dirUri : `${dirUri}/`;
    const r = s3Sync.list(prefix, { delimiter: '/' });
    noteS3Objects(r.objects);
    // `objects`: with no sub-prefixes this is the prefix's whole listing, which a flat read reuses.
    return { files: r.objects.filter((o) => !o.key.endsWith('/')).map((o) => o.uri), dirs: [...r.prefixes].sort(), objects: r.objects };
  }
  const dir = path.resolve(toLocalPath(dirUri));
  const files: string[] = [];
  const dirs: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    const isDir = e.isDirectory() || (e.isSymbolicLink() && fs.statSync(full, { throwIfNoEntry: false })?.isDirectory() === true);
    if (isDir) dirs.push(full + path.sep);
    else if (e.isFile() || e.isSymbolicLink()) files.push(full);
  }
  return { files: files.sort(), dirs: dirs.sort() };
}
export function globObjectsSync(patternUri: string): ObjectInfo[] {
  const { store, key } = storeFor(patternUri);
  return store.sync.glob(key);
}
export function headObjectSync(uri: string): ObjectInfo | null {
  const { store, key } = storeFor(uri);
  return store.sync.head(key);
}
/** Like headObjectSync, but a missing object is an error naming it. */
export function statObjectSync(uri: string): ObjectInfo {
  if (isS3Uri(uri)) return s3Sync.head(uri);
  const o = headObjectSync(uri);
  if (!o) throw new NotFoundError(uri);
  return o;
}
export function getObjectOrNullSync(uri: string): { bytes: Uint8Array; etag: string } | null {
  const { store, key } = storeFor(uri);
  return store.sync.getOrNull(key);
}
/** Bytes [start, end) of an object, blocking (a CSV's first rows for schema inference). */
export function readRangeSync(uri: string, start: number, end: number, etag?: string): Uint8Array {
  const { store, key } = storeFor(uri);
  return store.sync.range(key, start, end, etag);
}

// ---------------------------------------------------------------------------------------------
// What listings said about remote objects (size, version; readers skip HEADs with it)

type ObjectHint = S3Hint;
/** How long a listing's or HEAD's word on an object is trusted without asking again (ms). */
export const METADATA_TTL_MS = S3_METADATA_TTL_MS;
export const noteObjects: (objects: readonly ObjectInfo[], group?: readonly string[]) => void = noteS3Objects;
export const objectHint: (uri: string, maxAgeMs?: number) => ObjectHint | undefined = s3Hint;
export const forgetObject: (uri: string) => void = forgetS3Object;
/** Make these objects one group: their Parquet footers are then fetched together. */
export function groupObjectHints(uris: readonly string[]): void {
  const remote = uris.filter((u) => isS3Uri(u));
  if (remote.length > 1) groupS3Hints(remote);
}

// ---------------------------------------------------------------------------------------------
// Ranged reads of remote objects (the Parquet reader: footers of many objects in one round, then
// only the byte ranges of the columns it decodes)

/** A read-only Blob over one version of an object or file; prefetched ranges are served from memory. */
export type RangedBlob = S3Blob | FileBlob;
/** The object changed under a reader (its version differs from the one its plan was built with). */
export const ObjectChangedError = S3ObjectChangedError;
export type { TailRequest, TailResult };

/** A Blob over `uri` at version `etag` (size known), holding `tail` (the footer bytes) already. */
export function openRangedBlob(uri: string, size: number, opts: { etag: string; tail?: { offset: number; bytes: Uint8Array } }): RangedBlob {
  const o: ConstructorParameters<typeof S3Blob>[2] = { etag: opts.etag, settings: s3Settings() };
  if (opts.tail) o.tail = opts.tail;
  return new S3Blob(uri, size, o);
}

/** A Blob over a local file of `size` bytes (modified at `mtimeMs`) on positioned reads; close() releases its file handle. */
export function openFileBlob(uri: string, size: number, mtimeMs?: number): FileBlob {
  const { store, key } = storeFor(uri);
  if (!store.localPath) throw new Error(`internal: ${uri} is not a local file`);
  return new FileBlob(store.localPath(key), size, mtimeMs);
}

/** Size, version and last bytes (enough for a Parquet footer) of many remote objects, in one blocking round. */
export function parquetTailsSync(items: TailRequest[]): TailResult[] {
  return s3Sync.parquetTails(items);
}

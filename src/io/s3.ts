// S3 access for the readers and writers: URIs, one shared client per configuration, object
// operations with errors that name the URI, an S3Blob parquet-wasm reads ranges from, a streaming
// (multipart) upload sink, and a synchronous facade (a synckit worker) for the metadata the
// synchronous DataFrame builder needs: listings, HEAD, footers and prefixes.
//
// The AWS SDK is imported lazily: it costs ~150 ms, and local-only runs never need it.
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { createRequire } from 'node:module';
import { tsWorkerExecArgv } from '../runners/ts-worker.ts';
import { mapLimit } from '../concurrency.ts';

// ---------------------------------------------------------------------------------------------
// URIs

export interface S3Location { bucket: string; key: string }

export function isS3Uri(p: unknown): p is string {
  return typeof p === 'string' && /^s3:\/\//i.test(p);
}

/** `s3://bucket/key...` → { bucket, key } (key may be '' or end with '/'). Keys are taken literally. */
export function parseS3Uri(uri: string): S3Location {
  if (!isS3Uri(uri)) throw new Error(`not an s3:// URI: ${uri}`);
  const rest = uri.slice(5);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$/.test(bucket)) throw new Error(`invalid bucket name '${bucket}' in ${uri}`);
  return { bucket, key };
}

export function formatS3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Join a key prefix ("directory") and a relative path; `..` may not climb above the bucket. */
export function joinS3(dirUri: string, rel: string): string {
  if (isS3Uri(rel)) return rel;
  const { bucket, key } = parseS3Uri(dirUri);
  const parts: string[] = [];
  for (const p of `${key}/${rel}`.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (!parts.length) throw new Error(`path ${rel} leaves bucket ${bucket} (relative to ${dirUri})`);
      parts.pop();
    } else parts.push(p);
  }
  return formatS3Uri(bucket, parts.join('/'));
}

/** The URI with exactly one trailing slash removed (prefix form without '/'). */
export function trimSlash(uri: string): string {
  return uri.endsWith('/') ? uri.replace(/\/+$/, '') : uri;
}

// ---------------------------------------------------------------------------------------------
// Configuration

export interface S3Credentials { accessKeyId: string; secretAccessKey: string; sessionToken?: string }

/** What a client is built from; plain data, so the sync worker gets the caller's current view of the environment. */
export interface S3Settings {
  region: string;
  endpoint: string | null;
  forcePathStyle: boolean;
  /** null: the SDK's default provider chain. */
  credentials: S3Credentials | null;
}

/** s3rver's default key pair: local servers accept it (and ignore signatures when so configured). */
const LOCAL_TEST_CREDENTIALS: S3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export function s3Settings(env: NodeJS.ProcessEnv = process.env): S3Settings {
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || null;
  let credentials: S3Credentials | null = null;
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    // Passed explicitly (not left to the chain) so a worker started earlier sees today's values.
    credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY };
    if (env.AWS_SESSION_TOKEN) credentials.sessionToken = env.AWS_SESSION_TOKEN;
  } else if (endpoint && !env.AWS_PROFILE && !env.AWS_WEB_IDENTITY_TOKEN_FILE &&
    !env.AWS_CONTAINER_CREDENTIALS_FULL_URI && !env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) {
    credentials = LOCAL_TEST_CREDENTIALS;
  }
  return { region, endpoint, forcePathStyle: endpoint !== null, credentials };
}

/** S3Client configuration for `settings` (default: from the environment now). */
export function s3ClientConfig(settings: S3Settings = s3Settings()): S3ClientConfig {
  const cfg: S3ClientConfig = {
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    followRegionRedirects: true,
    // Flexible checksums on every request break streamed/multipart uploads on S3-compatible
    // servers (s3rver stores them corrupted); S3 itself needs them only where it requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
  };
  if (settings.endpoint) cfg.endpoint = settings.endpoint;
  if (settings.credentials) cfg.credentials = { ...settings.credentials };
  return cfg;
}

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkPromise: Promise<Sdk> | null = null;
function sdk(): Promise<Sdk> {
  sdkPromise ??= import('@aws-sdk/client-s3');
  return sdkPromise;
}

const clients = new Map<string, Promise<S3Client>>();

/** The shared client for `settings` (one per distinct configuration). */
export function s3Client(settings: S3Settings = s3Settings()): Promise<S3Client> {
  const k = JSON.stringify(settings);
  let c = clients.get(k);
  if (!c) {
    c = sdk().then((m) => new m.S3Client(s3ClientConfig(settings)));
    clients.set(k, c);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Errors and counters

/** A failed S3 call: says which operation on which URI, and what S3 answered. */
export class S3Error extends Error {
  override name = 'S3Error';
  constructor(message: string, readonly code: string, readonly uri: string, readonly operation: string) {
    super(message);
  }
}

interface AwsErrorLike { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } }

function s3Error(operation: string, uri: string, e: unknown, settings?: S3Settings): S3Error {
  if (e instanceof S3Error) return e;
  const err = (e ?? {}) as AwsErrorLike;
  const status = err.$metadata?.httpStatusCode;
  let code = err.Code ?? err.name ?? err.code ?? 'Error';
  if (code === 'Error' && typeof err.code === 'string') code = err.code;
  const where = `S3 ${operation} ${uri}`;
  let why: string;
  if (code === 'NoSuchBucket') {
    why = `bucket '${parseS3Uri(uri).bucket}' does not exist (NoSuchBucket)`;
  } else if (code === 'NoSuchKey' || ((code === 'NotFound' || code === 'UnknownError') && status === 404)) {
    code = operation === 'HeadObject' && code !== 'NoSuchKey' ? 'NotFound' : 'NoSuchKey';
    why = operation === 'HeadObject' ? 'no such object (or bucket) (NotFound)' : 'no such object (NoSuchKey)';
  } else if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
    why = `access denied (${code}); check the credentials and the bucket's policy`;
  } else if (code === 'CredentialsProviderError') {
    why = 'no AWS credentials found (CredentialsProviderError); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or AWS_ENDPOINT_URL_S3 for a local server';
  } else if (code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'ExpiredToken') {
    why = `credentials rejected (${code}): ${err.message ?? ''}`.trim();
  } else if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ECONNRESET' || code === 'TimeoutError') {
    why = `cannot reach ${settings?.endpoint ?? 'S3'} (${code})`;
  } else {
    why = `${code}${status ? ` (HTTP ${status})` : ''}: ${err.message ?? String(e)}`;
  }
  return new S3Error(`${where}: ${why}`, code, uri, operation);
}

/** Process-wide request counters (per thread); tests use bytesRead to check that only needed ranges are fetched. */
export const s3Stats = {
  requests: 0, listRequests: 0, headRequests: 0, getRequests: 0, putRequests: 0,
  bytesRead: 0, bytesWritten: 0, syncCalls: 0,
};
export type S3Stats = typeof s3Stats;

export function resetS3Stats(): void {
  for (const k of Object.keys(s3Stats) as (keyof S3Stats)[]) s3Stats[k] = 0;
}

function count(kind: 'listRequests' | 'headRequests' | 'getRequests' | 'putRequests'): void {
  s3Stats.requests++;
  s3Stats[kind]++;
}

// ---------------------------------------------------------------------------------------------
// Object operations (async)

export interface S3Object { uri: string; key: string; size: number; etag: string; lastModified: number }

export interface ListOptions {
  delimiter?: string;
  /** Stop after this many objects. */
  maxKeys?: number;
  /** Keys per ListObjectsV2 page (default and maximum 1,000). */
  pageSize?: number;
}
export interface ListResult { objects: S3Object[]; /** with a delimiter: the "sub-directory" URIs */ prefixes: string[] }

/** Every object whose key starts with the URI's key (paginated). */
export async function listS3(prefixUri: string, opts: ListOptions = {}, settings: S3Settings = s3Settings()): Promise<ListResult> {
  const { bucket, key } = parseS3Uri(prefixUri);
  const m = await sdk();
  const client = await s3Client(settings);
  const objects: S3Object[] = [];
  const prefixes: string[] = [];
  let token: string | undefined;
  do {
    count('listRequests');
    let r;
    try {
      r = await client.send(new m.ListObjectsV2Command({
        Bucket: bucket, Prefix: key, ContinuationToken: token, Delimiter: opts.delimiter,
        MaxKeys: Math.min(opts.pageSize ?? 1000, 1000, opts.maxKeys !== undefined ? opts.maxKeys - objects.length : 1000),
      }));
    } catch (e) {
      throw s3Error('ListObjectsV2', prefixUri, e, settings);
    }
    for (const o of r.Contents ?? []) {
      if (o.Key === undefined) continue;
      objects.push({
        uri: formatS3Uri(bucket, o.Key), key: o.Key, size: Number(o.Size ?? 0), etag: o.ETag ?? '',
        lastModified: o.LastModified ? o.LastModified.getTime() : 0,
      });
    }
    for (const p of r.CommonPrefixes ?? []) if (p.Prefix !== undefined) prefixes.push(formatS3Uri(bucket, p.Prefix));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
    if (opts.maxKeys !== undefined && objects.length >= opts.maxKeys) break;
  } while (token);
  return { objects, prefixes };
}

export async function headS3(uri: string, settings: S3Settings = s3Settings()): Promise<S3Object> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('headRequests');
  try {
    const r = await client.send(new m.HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { uri, key, size: Number(r.ContentLength ?? 0), etag: r.ETag ?? '', lastModified: r.LastModified?.getTime() ?? 0 };
  } catch (e) {
    throw s3Error('HeadObject', uri, e, settings);
  }
}

export async function headS3OrNull(uri: string, settings: S3Settings = s3Settings()): Promise<S3Object | null> {
  try {
    return await headS3(uri, settings);
  } catch (e) {
    if (e instanceof S3Error && (e.code === 'NotFound' || e.code === 'NoSuchKey')) return null;
    throw e;
  }
}

/** The object changed under a reader (ETag differs from the one its plan was built with). */
export class S3ObjectChangedError extends S3Error {
  override name = 'S3ObjectChangedError';
}

async function bodyBytes(body: unknown, expected: number | null): Promise<Uint8Array> {
  const b = body as { transformToByteArray?: () => Promise<Uint8Array> } | undefined;
  if (!b?.transformToByteArray) return new Uint8Array(0);
  const bytes = await b.transformToByteArray();
  if (expected !== null && bytes.length !== expected) throw new Error(`short read: got ${bytes.length} of ${expected} bytes`);
  return bytes;
}

/**
 * Bytes [start, end) of an object. Always an explicit range (s3rver mis-serves suffix ranges).
 * With `etag`, a response for a different version of the object is an S3ObjectChangedError.
 */
export async function getS3Range(uri: string, start: number, end: number, etag?: string, settings: S3Settings = s3Settings()): Promise<Uint8Array> {
  if (!(end > start) || start < 0) return new Uint8Array(0);
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('getRequests');
  try {
    const r = await client.send(new m.GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end - 1}` }));
    if (etag && r.ETag && r.ETag !== etag) {
      (r.Body as { destroy?: () => void } | undefined)?.destroy?.();
      throw new S3ObjectChangedError(`S3 GetObject ${uri}: the object changed while it was being read (ETag ${r.ETag}, expected ${etag})`,
        'ObjectChanged', uri, 'GetObject');
    }
    const bytes = await bodyBytes(r.Body, end - start);
    s3Stats.bytesRead += bytes.length;
    return bytes;
  } catch (e) {
    throw s3Error('GetObject', uri, e, settings);
  }
}

/** A whole object, or null when it (not the bucket) does not exist. */
export async function getS3ObjectOrNull(uri: string, settings: S3Settings = s3Settings()): Promise<{ bytes: Uint8Array; etag: string } | null> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('getRequests');
  try {
    const r = await client.send(new m.GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = await bodyBytes(r.Body, r.ContentLength ?? null);
    s3Stats.bytesRead += bytes.length;
    return { bytes, etag: r.ETag ?? '' };
  } catch (e) {
    const err = s3Error('GetObject', uri, e, settings);
    if (err.code === 'NoSuchKey') return null;
    throw err;
  }
}

export async function getS3Object(uri: string, settings: S3Settings = s3Settings()): Promise<Uint8Array> {
  const r = await getS3ObjectOrNull(uri, settings);
  if (!r) throw new S3Error(`S3 GetObject ${uri}: no such object (NoSuchKey)`, 'NoSuchKey', uri, 'GetObject');
  return r.bytes;
}

/**
 * The object as a stream of chunks (one GET; the SDK stream applies backpressure), for sequential
 * readers such as CSV. With `etag`, a different version of the object is an S3ObjectChangedError.
 */
export async function openS3ReadStream(uri: string, etag?: string, settings: S3Settings = s3Settings()): Promise<AsyncIterable<Uint8Array> & { destroy(): void }> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('getRequests');
  let r;
  try {
    r = await client.send(new m.GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    throw s3Error('GetObject', uri, e, settings);
  }
  const body = r.Body as (AsyncIterable<Uint8Array> & { destroy(): void }) | undefined;
  if (!body) throw new S3Error(`S3 GetObject ${uri}: empty response`, 'EmptyBody', uri, 'GetObject');
  if (etag && r.ETag && r.ETag !== etag) {
    body.destroy();
    throw new S3ObjectChangedError(`S3 GetObject ${uri}: the object changed since it was inspected (ETag ${r.ETag}, expected ${etag})`,
      'ObjectChanged', uri, 'GetObject');
  }
  return {
    async *[Symbol.asyncIterator]() {
      try {
        for await (const chunk of body) {
          s3Stats.bytesRead += chunk.length;
          yield chunk;
        }
      } catch (e) {
        throw s3Error('GetObject', uri, e, settings);
      }
    },
    destroy: () => body.destroy(),
  };
}

export interface PutS3Options {
  contentType?: string;
  /** Conditional write: only replace the object if its ETag is this one (S3 answers 412 otherwise). */
  ifMatch?: string;
  /** Conditional write: '*' creates the object only if the key does not exist yet (412 otherwise). */
  ifNoneMatch?: '*';
}

/**
 * PUT one object. A failed condition (`ifMatch` / `ifNoneMatch`) is an S3Error with code
 * 'PreconditionFailed' (412), or 'ConditionalRequestConflict' (409: a concurrent conditional write won).
 */
export async function putS3Object(uri: string, body: Uint8Array | string, opts: PutS3Options = {}, settings: S3Settings = s3Settings()): Promise<{ etag: string }> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('putRequests');
  try {
    const r = await client.send(new m.PutObjectCommand({
      Bucket: bucket, Key: key, Body: body, ContentType: opts.contentType, IfMatch: opts.ifMatch, IfNoneMatch: opts.ifNoneMatch,
    }));
    s3Stats.bytesWritten += typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    return { etag: r.ETag ?? '' };
  } catch (e) {
    throw s3Error('PutObject', uri, e, settings);
  }
}

/** Server-side copy (objects up to 5 GiB: S3's CopyObject limit). */
export async function copyS3Object(fromUri: string, toUri: string, settings: S3Settings = s3Settings()): Promise<{ etag: string }> {
  const from = parseS3Uri(fromUri);
  const to = parseS3Uri(toUri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('putRequests');
  try {
    const source = `${from.bucket}/${from.key.split('/').map(encodeURIComponent).join('/')}`;
    const r = await client.send(new m.CopyObjectCommand({ Bucket: to.bucket, Key: to.key, CopySource: source }));
    return { etag: r.CopyObjectResult?.ETag ?? '' };
  } catch (e) {
    throw s3Error('CopyObject', `${fromUri} -> ${toUri}`, e, settings);
  }
}

/** Delete objects (any buckets), 1,000 keys per request. Missing keys are not an error (S3 semantics). */
export async function deleteS3Objects(uris: readonly string[], settings: S3Settings = s3Settings()): Promise<void> {
  if (!uris.length) return;
  const m = await sdk();
  const client = await s3Client(settings);
  const byBucket = new Map<string, string[]>();
  for (const u of uris) {
    const { bucket, key } = parseS3Uri(u);
    let keys = byBucket.get(bucket);
    if (!keys) byBucket.set(bucket, (keys = []));
    keys.push(key);
  }
  for (const [bucket, keys] of byBucket) {
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      const first = formatS3Uri(bucket, chunk[0]!);
      count('putRequests');
      let r;
      try {
        r = await client.send(new m.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } }));
      } catch (e) {
        throw s3Error('DeleteObjects', chunk.length > 1 ? `${first} (and ${chunk.length - 1} more)` : first, e, settings);
      }
      const failed = r.Errors ?? [];
      if (failed.length) {
        const f = failed[0]!;
        throw new S3Error(`S3 DeleteObjects ${formatS3Uri(bucket, f.Key ?? '?')}: ${f.Code ?? 'Error'}: ${f.Message ?? ''}` +
          (failed.length > 1 ? ` (${failed.length - 1} more keys failed)` : ''), f.Code ?? 'Error', formatS3Uri(bucket, f.Key ?? ''), 'DeleteObjects');
      }
    }
  }
}

/** Delete every object under a prefix URI. */
export async function deleteS3Prefix(prefixUri: string, settings: S3Settings = s3Settings()): Promise<number> {
  const { objects } = await listS3(prefixUri, {}, settings);
  await deleteS3Objects(objects.map((o) => o.uri), settings);
  return objects.length;
}

// ---------------------------------------------------------------------------------------------
// What listings said about objects: size and ETag (readers use them to skip HEADs), and the
// listing each object came with (footers of a whole listing are fetched in one parallel batch).

export interface S3Hint { size: number; etag: string; at: number; group: readonly string[] }
const hints = new Map<string, S3Hint>();
const HINTS_MAX = 100_000;

/** How long a listing's or HEAD's word on an object is trusted without asking again (ms). */
export const S3_METADATA_TTL_MS = 60_000;

/** Remember objects seen in one listing (or HEAD); `group` defaults to all of them. */
export function noteS3Objects(objects: readonly S3Object[], group?: readonly string[]): void {
  const g = group ?? objects.map((o) => o.uri);
  const at = Date.now();
  for (const o of objects) {
    hints.delete(o.uri); // re-insert: the Map's order is then oldest first
    hints.set(o.uri, { size: o.size, etag: o.etag, at, group: g });
  }
  while (hints.size > HINTS_MAX) hints.delete(hints.keys().next().value!);
}

/** The latest word on an object, if it is younger than `maxAgeMs`. */
export function s3Hint(uri: string, maxAgeMs = S3_METADATA_TTL_MS): S3Hint | undefined {
  const h = hints.get(uri);
  return h && Date.now() - h.at <= maxAgeMs ? h : undefined;
}

/** Make these objects one group (e.g. every S3 file of one expandPaths call): their footers are then fetched together. */
export function groupS3Hints(uris: readonly string[]): void {
  const group = [...uris];
  for (const u of group) {
    const h = hints.get(u);
    if (h) h.group = group;
  }
}

export function forgetS3Object(uri: string): void {
  hints.delete(uri);
}

// ---------------------------------------------------------------------------------------------
// Streaming upload

export interface S3WriteStream {
  readonly uri: string;
  /** Resolves once the chunk is buffered (backpressure). The chunk is copied: callers may reuse it. */
  write(chunk: Uint8Array): Promise<void>;
  /** Finish the upload: the object exists (whole) once this resolves. */
  close(): Promise<{ bytes: number; etag: string }>;
  /** Give up: no object is created (an incomplete multipart upload is aborted). */
  abort(): Promise<void>;
}

export interface S3WriteStreamOptions {
  /** Multipart part size (default 8 MiB; S3's minimum is 5 MiB). Memory is bounded by about (queueSize + 1) × partSize. */
  partSize?: number;
  queueSize?: number;
  contentType?: string;
}

/**
 * Stream bytes to an object: one PutObject when it ends up smaller than a part, else a multipart
 * upload with `queueSize` parts in flight (lib-storage). Nothing is visible until close() resolves.
 */
export async function createS3WriteStream(uri: string, opts: S3WriteStreamOptions = {}, settings: S3Settings = s3Settings()): Promise<S3WriteStream> {
  const { bucket, key } = parseS3Uri(uri);
  const partSize = opts.partSize ?? 8 << 20;
  if (!Number.isInteger(partSize) || partSize < 5 << 20) throw new RangeError(`partSize must be at least 5 MiB, got ${partSize}`);
  const { Upload } = await import('@aws-sdk/lib-storage');
  const client = await s3Client(settings);
  const pass = new PassThrough({ highWaterMark: 1 << 20 });
  const upload = new Upload({
    client, params: { Bucket: bucket, Key: key, Body: pass, ContentType: opts.contentType },
    partSize, queueSize: opts.queueSize ?? 4, leavePartsOnError: false,
  });
  let failure: unknown = null;
  let bytes = 0;
  let state: 'open' | 'closing' | 'done' | 'aborted' = 'open';
  count('putRequests');
  const done = upload.done().then(
    (r) => r,
    (e: unknown) => {
      failure = e;
      pass.destroy();
      throw e;
    },
  );
  done.catch(() => undefined); // observed by write/close; never an unhandled rejection
  const failed = (): S3Error => s3Error('PutObject', uri, failure, settings);
  return {
    uri,
    write: async (chunk) => {
      if (state !== 'open') throw new Error(`write to ${uri} after close/abort`);
      if (failure) throw failed();
      if (chunk.length === 0) return;
      const copy = Buffer.from(chunk); // lib-storage keeps references until a part is full
      bytes += copy.length;
      s3Stats.bytesWritten += copy.length;
      if (!pass.write(copy)) {
        await new Promise<void>((resolve) => {
          const onDrain = (): void => { pass.off('close', onDrain); resolve(); };
          pass.once('drain', onDrain);
          pass.once('close', onDrain);
        });
      }
      if (failure) throw failed();
    },
    close: async () => {
      if (state !== 'open') throw new Error(`close of ${uri} after close/abort`);
      state = 'closing';
      pass.end();
      let r;
      try {
        r = await done;
      } catch {
        state = 'aborted';
        throw failed();
      }
      state = 'done';
      return { bytes, etag: (r as { ETag?: string }).ETag ?? '' };
    },
    abort: async () => {
      if (state === 'aborted' || state === 'done') return;
      state = 'aborted';
      // s3rver answers AbortMultipartUpload with 405: tolerated, the parts are just left behind there.
      try { await upload.abort(); } catch { /* already failed or finished */ }
      pass.destroy();
      await done.catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Globs over keys (picomatch-like: `*` and `?` stay within a path segment, `**` spans segments,
// `[...]` classes, `{a,b}` alternatives; wildcards do not match a leading '.' of a segment).

const GLOB_CHARS = /[*?[\]{}]/;

export function isS3Glob(uri: string): boolean {
  return GLOB_CHARS.test(parseS3Uri(uri).key);
}

function expandBraces(p: string): string[] {
  let depth = 0;
  let open = -1;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') { i++; continue; }
    if (c === '{') { if (depth++ === 0) open = i; } else if (c === '}' && depth > 0 && --depth === 0) {
      const body = p.slice(open + 1, i);
      const alts: string[] = [];
      let d = 0;
      let from = 0;
      for (let j = 0; j < body.length; j++) {
        const b = body[j];
        if (b === '\\') { j++; continue; }
        if (b === '{') d++;
        else if (b === '}') d--;
        else if (b === ',' && d === 0) { alts.push(body.slice(from, j)); from = j + 1; }
      }
      alts.push(body.slice(from));
      if (alts.length < 2) continue; // "{a}" is literal
      const head = p.slice(0, open);
      const tail = p.slice(i + 1);
      return alts.flatMap((a) => expandBraces(head + a + tail));
    }
  }
  return [p];
}

function segmentRegex(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '\\' && i + 1 < seg.length) re += escapeRe(seg[++i]!);
    else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = seg.indexOf(']', i + 2);
      if (close < 0) { re += '\\['; continue; }
      let cls = seg.slice(i + 1, close);
      if (cls.startsWith('!')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

/** A matcher for keys against a key glob (no bucket). */
export function keyGlobMatcher(pattern: string): (key: string) => boolean {
  const alternatives = expandBraces(pattern).map((p) => p.split('/').map((s) => (s === '**' ? null : { src: s, re: segmentRegex(s) })));
  const matchFrom = (pat: ({ src: string; re: RegExp } | null)[], pi: number, segs: string[], si: number): boolean => {
    if (pi === pat.length) return si === segs.length;
    const p = pat[pi];
    if (p === null) {
      // '**': zero or more whole segments, none hidden.
      for (let k = si; k <= segs.length; k++) {
        if (matchFrom(pat, pi + 1, segs, k)) return true;
        if (k < segs.length && segs[k]!.startsWith('.')) return false;
      }
      return false;
    }
    if (si >= segs.length) return false;
    const s = segs[si]!;
    if (s.startsWith('.') && !p.src.startsWith('.')) return false;
    return p.re.test(s) && matchFrom(pat, pi + 1, segs, si + 1);
  };
  return (key) => {
    const segs = key.split('/');
    return alternatives.some((pat) => matchFrom(pat, 0, segs, 0));
  };
}

/** The literal key prefix before the first glob character: what to list. */
export function globListPrefix(keyPattern: string): string {
  const prefixes = expandBraces(keyPattern).map((p) => {
    const m = GLOB_CHARS.exec(p);
    return m ? p.slice(0, m.index) : p;
  });
  let common = prefixes[0] ?? '';
  for (const p of prefixes.slice(1)) {
    let i = 0;
    while (i < common.length && i < p.length && common[i] === p[i]) i++;
    common = common.slice(0, i);
  }
  return common.replace(/\\/g, '');
}

/** Objects whose keys match a glob URI (s3://bucket/data/*.parquet). */
export async function globS3(patternUri: string, settings: S3Settings = s3Settings()): Promise<S3Object[]> {
  const { bucket, key } = parseS3Uri(patternUri);
  const match = keyGlobMatcher(key);
  const { objects } = await listS3(formatS3Uri(bucket, globListPrefix(key)), {}, settings);
  return objects.filter((o) => !o.key.endsWith('/') && match(o.key));
}

// ---------------------------------------------------------------------------------------------
// S3Blob: the Blob subset parquet-wasm's ParquetFile.fromFile uses (size, slice, arrayBuffer)

interface CachedRange { start: number; end: number; bytes: Promise<Uint8Array>; tag: string }

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
  constructor(readonly uri: string, readonly objectSize: number,
    readonly options: { etag?: string; settings?: S3Settings; tail?: { offset: number; bytes: Uint8Array } } = {},
    private readonly start = 0, private readonly end = objectSize, cache?: CachedRange[], failure?: { error: Error | null }) {
    this.cache = cache ?? [];
    this.failure = failure ?? { error: null };
    if (!cache && options.tail) {
      const { offset, bytes } = options.tail;
      this.cache.push({ start: offset, end: offset + bytes.length, bytes: Promise.resolve(bytes), tag: 'tail' });
    }
  }

  /** Bytes in this blob (Blob.size): the slice's length. */
  get size(): number { return this.end - this.start; }

  get type(): string { return ''; }

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
    const sorted = ranges.filter(([a, b]) => b > a).map(([a, b]) => [a, Math.min(b, this.objectSize)] as [number, number]).sort((x, y) => x[0] - y[0]);
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
export const PARQUET_TAIL_BYTES = 64 << 10;

export interface TailRequest { uri: string; size?: number; etag?: string }
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

// ---------------------------------------------------------------------------------------------
// Synchronous facade (synckit): the worker runs the async functions above.

export type SyncOp =
  | { op: 'list'; uri: string; opts: ListOptions }
  | { op: 'listMany'; uris: string[] }
  | { op: 'glob'; uri: string }
  | { op: 'head'; uri: string; orNull: boolean }
  | { op: 'range'; uri: string; start: number; end: number; etag?: string }
  | { op: 'get'; uri: string }
  | { op: 'tails'; items: TailRequest[] };

export type SyncReply =
  | { ok: true; value: unknown; stats: Partial<S3Stats> }
  | { ok: false; error: { message: string; code: string; uri: string; operation: string; name: string }; stats: Partial<S3Stats> };

/** Runs one facade request (in the sync worker). Exported for the worker module only. */
export async function runSyncOp(req: SyncOp, settings: S3Settings): Promise<SyncReply> {
  const before = { ...s3Stats };
  const delta = (): Partial<S3Stats> => {
    const d: Partial<S3Stats> = {};
    for (const k of Object.keys(s3Stats) as (keyof S3Stats)[]) if (s3Stats[k] !== before[k]) d[k] = s3Stats[k] - before[k];
    return d;
  };
  try {
    let value: unknown;
    switch (req.op) {
      case 'list': value = await listS3(req.uri, req.opts, settings); break;
      case 'listMany': value = await listMany(req.uris, settings); break;
      case 'glob': value = await globS3(req.uri, settings); break;
      case 'head': value = req.orNull ? await headS3OrNull(req.uri, settings) : await headS3(req.uri, settings); break;
      case 'range': value = await getS3Range(req.uri, req.start, req.end, req.etag, settings); break;
      case 'get': value = await getS3ObjectOrNull(req.uri, settings); break;
      case 'tails': value = await fetchParquetTails(req.items, settings); break;
    }
    return { ok: true, value, stats: delta() };
  } catch (e) {
    const err = e instanceof S3Error ? e : s3Error(req.op, 'uri' in req ? req.uri : '', e, settings);
    return { ok: false, error: { message: err.message, code: err.code, uri: err.uri, operation: err.operation, name: err.name }, stats: delta() };
  }
}

/** Listings of many prefixes, 32 at a time; a failed one is an error naming its URI. */
async function listMany(uris: readonly string[], settings: S3Settings): Promise<(ListResult | { error: { message: string; code: string } })[]> {
  return mapLimit(uris, 32, async (uri): Promise<ListResult | { error: { message: string; code: string } }> => {
    try {
      return await listS3(uri, {}, settings);
    } catch (e) {
      const err = s3Error('ListObjectsV2', uri, e, settings);
      return { error: { message: err.message, code: err.code } };
    }
  });
}

type SyncFn = (req: SyncOp, settings: S3Settings) => SyncReply;
let syncFn: SyncFn | null = null;

/** Seconds a synchronous S3 call may block before failing (FANOUT_S3_SYNC_TIMEOUT_S, default 300). */
function syncTimeoutMs(): number {
  const s = Number(process.env.FANOUT_S3_SYNC_TIMEOUT_S);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 300_000;
}

function getSyncFn(): SyncFn {
  if (syncFn) return syncFn;
  const here = import.meta.url;
  const workerUrl = new URL(`./s3-sync-worker${here.endsWith('.ts') ? '.ts' : '.js'}`, here);
  const workerPath = fileURLToPath(workerUrl);
  // Loaded on first use (synckit's CommonJS build can be required synchronously): local-only runs skip it.
  const { createSyncFn } = createRequire(import.meta.url)('synckit') as typeof import('synckit');
  let opts: Parameters<typeof createSyncFn>[1] = { timeout: syncTimeoutMs() };
  const execArgv = tsWorkerExecArgv(workerUrl);
  if (execArgv) opts = { ...opts, tsRunner: 'tsx', execArgv };
  syncFn = createSyncFn(workerPath, opts) as unknown as SyncFn;
  return syncFn;
}

function callSync<T>(req: SyncOp): T {
  const settings = s3Settings();
  const reply = getSyncFn()(req, settings);
  s3Stats.syncCalls++;
  for (const [k, v] of Object.entries(reply.stats) as [keyof S3Stats, number][]) s3Stats[k] += v;
  if (!reply.ok) {
    const e = reply.error;
    const Ctor = e.name === 'S3ObjectChangedError' ? S3ObjectChangedError : S3Error;
    throw new Ctor(e.message, e.code, e.uri, e.operation);
  }
  return reply.value as T;
}

/** Blocking versions of the metadata calls, for the synchronous DataFrame builder. */
export const s3Sync = {
  list: (prefixUri: string, opts: ListOptions = {}): ListResult => callSync<ListResult>({ op: 'list', uri: prefixUri, opts }),
  /** Many listings in one blocking call (run in parallel). */
  listMany: (prefixUris: string[]): Map<string, ListResult | S3Error> => {
    const res = callSync<(ListResult | { error: { message: string; code: string } })[]>({ op: 'listMany', uris: prefixUris });
    return new Map(prefixUris.map((u, i) => {
      const r = res[i]!;
      return [u, 'error' in r ? new S3Error(r.error.message, r.error.code, u, 'ListObjectsV2') : r];
    }));
  },
  glob: (patternUri: string): S3Object[] => callSync<S3Object[]>({ op: 'glob', uri: patternUri }),
  head: (uri: string): S3Object => callSync<S3Object>({ op: 'head', uri, orNull: false }),
  headOrNull: (uri: string): S3Object | null => callSync<S3Object | null>({ op: 'head', uri, orNull: true }),
  range: (uri: string, start: number, end: number, etag?: string): Uint8Array =>
    callSync<Uint8Array>(etag === undefined ? { op: 'range', uri, start, end } : { op: 'range', uri, start, end, etag }),
  getOrNull: (uri: string): { bytes: Uint8Array; etag: string } | null => callSync<{ bytes: Uint8Array; etag: string } | null>({ op: 'get', uri }),
  parquetTails: (items: TailRequest[]): TailResult[] => callSync<TailResult[]>({ op: 'tails', items }),
};

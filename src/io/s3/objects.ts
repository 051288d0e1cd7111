// Object operations (async): list, HEAD, ranged / whole / streamed GETs, conditional PUT, copy, delete.
import type { DeleteObjectsCommandOutput, GetObjectCommandOutput, ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { count, s3Client, S3Error, s3Error, s3Settings, s3Stats, sdk, type S3Settings } from './client.ts';
import { formatS3Uri, parseS3Uri } from './uri.ts';

export interface S3Object {
  uri: string;
  key: string;
  size: number;
  etag: string;
  lastModified: number;
}

export interface ListOptions {
  delimiter?: string;
  /** Stop after this many objects. */
  maxKeys?: number;
  /** Keys per ListObjectsV2 page (default and maximum 1,000). */
  pageSize?: number;
  /** Only keys after this one (S3's StartAfter): a poller that has seen a prefix of the keys lists only the rest. */
  startAfter?: string;
}
export interface ListResult {
  objects: S3Object[] /** with a delimiter: the "sub-directory" URIs */;
  prefixes: string[];
}

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
    let r: ListObjectsV2CommandOutput;
    try {
      r = await client.send(
        new m.ListObjectsV2Command({
          Bucket: bucket,
          Prefix: key,
          ContinuationToken: token,
          StartAfter: token === undefined ? opts.startAfter : undefined,
          Delimiter: opts.delimiter,
          MaxKeys: Math.min(opts.pageSize ?? 1000, 1000, opts.maxKeys !== undefined ? opts.maxKeys - objects.length : 1000),
        }),
      );
    } catch (e) {
      throw s3Error('ListObjectsV2', prefixUri, e, settings);
    }
    for (const o of r.Contents ?? []) {
      if (o.Key === undefined) continue;
      objects.push({
        uri: formatS3Uri(bucket, o.Key),
        key: o.Key,
        size: Number(o.Size ?? 0),
        etag: o.ETag ?? '',
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
 * Bytes [start, end) of an object, as an explicit range (suffixes: getS3Suffix).
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
      throw new S3ObjectChangedError(
        `S3 GetObject ${uri}: the object changed while it was being read (ETag ${r.ETag}, expected ${etag})`,
        'ObjectChanged',
        uri,
        'GetObject',
      );
    }
    const bytes = await bodyBytes(r.Body, end - start);
    s3Stats.bytesRead += bytes.length;
    return bytes;
  } catch (e) {
    throw s3Error('GetObject', uri, e, settings);
  }
}

/**
 * The last `n` bytes of an object with its size and ETag, in one request (a suffix range instead of
 * a HEAD, then a ranged GET). null when the server's answer is not a well-formed suffix of the
 * object (an S3-compatible server that mis-serves suffix ranges, an empty object): the caller then
 * asks with a HEAD and explicit ranges.
 */
export async function getS3Suffix(
  uri: string,
  n: number,
  settings: S3Settings = s3Settings(),
): Promise<{ bytes: Uint8Array; size: number; etag: string } | null> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('getRequests');
  let r: GetObjectCommandOutput;
  try {
    r = await client.send(new m.GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=-${n}` }));
  } catch (e) {
    const err = s3Error('GetObject', uri, e, settings);
    if (err.code === 'InvalidRange') return null; // an empty object has no suffix
    throw err;
  }
  let bytes: Uint8Array;
  try {
    bytes = await bodyBytes(r.Body, r.ContentLength ?? null);
  } catch (e) {
    throw s3Error('GetObject', uri, e, settings);
  }
  s3Stats.bytesRead += bytes.length;
  const etag = r.ETag ?? '';
  const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(r.ContentRange ?? '');
  if (!cr) {
    // A whole-object answer (no Content-Range) is a suffix only if the object is no longer than asked.
    return r.$metadata.httpStatusCode === 200 && bytes.length <= n && etag ? { bytes, size: bytes.length, etag } : null;
  }
  const [start, end, size] = [Number(cr[1]), Number(cr[2]), Number(cr[3])];
  if (end !== size - 1 || start !== Math.max(0, size - n) || bytes.length !== end - start + 1 || !etag) return null;
  return { bytes, size, etag };
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
export async function openS3ReadStream(
  uri: string,
  etag?: string,
  settings: S3Settings = s3Settings(),
): Promise<AsyncIterable<Uint8Array> & { destroy(): void }> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('getRequests');
  let r: GetObjectCommandOutput;
  try {
    r = await client.send(new m.GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    throw s3Error('GetObject', uri, e, settings);
  }
  const body = r.Body as (AsyncIterable<Uint8Array> & { destroy(): void }) | undefined;
  if (!body) throw new S3Error(`S3 GetObject ${uri}: empty response`, 'EmptyBody', uri, 'GetObject');
  if (etag && r.ETag && r.ETag !== etag) {
    body.destroy();
    throw new S3ObjectChangedError(
      `S3 GetObject ${uri}: the object changed since it was inspected (ETag ${r.ETag}, expected ${etag})`,
      'ObjectChanged',
      uri,
      'GetObject',
    );
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
export async function putS3Object(
  uri: string,
  body: Uint8Array | string,
  opts: PutS3Options = {},
  settings: S3Settings = s3Settings(),
): Promise<{ etag: string }> {
  const { bucket, key } = parseS3Uri(uri);
  const m = await sdk();
  const client = await s3Client(settings);
  count('putRequests');
  try {
    const r = await client.send(
      new m.PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: opts.contentType,
        IfMatch: opts.ifMatch,
        IfNoneMatch: opts.ifNoneMatch,
      }),
    );
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
      let r: DeleteObjectsCommandOutput;
      try {
        r = await client.send(new m.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } }));
      } catch (e) {
        throw s3Error('DeleteObjects', chunk.length > 1 ? `${first} (and ${chunk.length - 1} more)` : first, e, settings);
      }
      const failed = r.Errors ?? [];
      if (failed.length) {
        const f = failed[0]!;
        throw new S3Error(
          `S3 DeleteObjects ${formatS3Uri(bucket, f.Key ?? '?')}: ${f.Code ?? 'Error'}: ${f.Message ?? ''}` +
            (failed.length > 1 ? ` (${failed.length - 1} more keys failed)` : ''),
          f.Code ?? 'Error',
          formatS3Uri(bucket, f.Key ?? ''),
          'DeleteObjects',
        );
      }
    }
  }
}

/** Delete every object under a prefix URI. */
export async function deleteS3Prefix(prefixUri: string, settings: S3Settings = s3Settings()): Promise<number> {
  const { objects } = await listS3(prefixUri, {}, settings);
  await deleteS3Objects(
    objects.map((o) => o.uri),
    settings,
  );
  return objects.length;
}

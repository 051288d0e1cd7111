// Streaming upload: one PutObject for small objects, a multipart upload (lib-storage) otherwise.
import { PassThrough } from 'node:stream';
import { count, s3Client, s3Error, s3Settings, s3Stats, type S3Error, type S3Settings } from './client.ts';
import { putS3Object } from './objects.ts';
import { parseS3Uri } from './uri.ts';

export interface S3WriteStream {
  readonly uri: string;
  /** Resolves once the chunk is buffered (backpressure). The chunk is copied: callers may reuse it. */
  write(chunk: Uint8Array): Promise<void>;
  /** Finish the upload: the object exists (whole) once this resolves. */
  close(): Promise<{ bytes: number; etag: string }>;
  /** Give up: no object is created (an incomplete multipart upload is aborted). */
  abort(): Promise<void>;
}

// A small object's bytes and ETag kept as it is written (a Stage's result, which its completion
// marker then carries so that the runner reads it back without a GET), by URI.
const captureMax = new Map<string, number>();
const captured = new Map<string, { etag: string; bytes: Uint8Array }>();

/**
 * Keep the body and ETag of the next object written to `uri` with one PutObject of at most
 * `maxBytes` bytes. The returned function ends the capture and gives what was kept (null: nothing
 * was written, or it was larger).
 */
export function captureSmallObject(uri: string, maxBytes: number): () => { etag: string; bytes: Uint8Array } | null {
  captureMax.set(uri, maxBytes);
  captured.delete(uri);
  return () => {
    const got = captured.get(uri) ?? null;
    captureMax.delete(uri);
    captured.delete(uri);
    return got;
  };
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
 * Bytes are buffered here until they reach a part: an object that stays smaller (a partition's
 * result, a shard of a small run) is one plain PutObject at close, without lib-storage's streaming
 * machinery (it costs more CPU than the request itself for small objects).
 */
export async function createS3WriteStream(uri: string, opts: S3WriteStreamOptions = {}, settings: S3Settings = s3Settings()): Promise<S3WriteStream> {
  const { bucket, key } = parseS3Uri(uri);
  const partSize = opts.partSize ?? 8 << 20;
  if (!Number.isInteger(partSize) || partSize < 5 << 20) throw new RangeError(`partSize must be at least 5 MiB, got ${partSize}`);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let streaming: { pass: PassThrough; upload: { abort(): Promise<void> }; done: Promise<unknown> } | null = null;
  let failure: unknown = null;
  let bytes = 0;
  let state: 'open' | 'closing' | 'done' | 'aborted' = 'open';
  const failed = (): S3Error => s3Error('PutObject', uri, failure, settings);
  /** The object outgrew a part: a multipart upload (lib-storage) takes the buffered bytes and the rest. */
  const startStreaming = async (): Promise<NonNullable<typeof streaming>> => {
    const { Upload } = await import('@aws-sdk/lib-storage');
    const client = await s3Client(settings);
    const pass = new PassThrough({ highWaterMark: 1 << 20 });
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: pass, ContentType: opts.contentType },
      partSize,
      queueSize: opts.queueSize ?? 4,
      leavePartsOnError: false,
    });
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
    for (const c of pending) pass.write(c);
    pending = [];
    pendingBytes = 0;
    return { pass, upload, done };
  };
  return {
    uri,
    write: async (chunk) => {
      if (state !== 'open') throw new Error(`write to ${uri} after close/abort`);
      if (failure) throw failed();
      if (chunk.length === 0) return;
      const copy = Buffer.from(chunk); // kept until sent: callers may reuse theirs
      bytes += copy.length;
      s3Stats.bytesWritten += copy.length;
      if (!streaming) {
        pending.push(copy);
        pendingBytes += copy.length;
        if (pendingBytes >= partSize) streaming = await startStreaming();
        return;
      }
      const { pass } = streaming;
      if (!pass.write(copy)) {
        await new Promise<void>((resolve) => {
          const onDrain = (): void => {
            pass.off('close', onDrain);
            resolve();
          };
          pass.once('drain', onDrain);
          pass.once('close', onDrain);
        });
      }
      if (failure) throw failed();
    },
    close: async () => {
      if (state !== 'open') throw new Error(`close of ${uri} after close/abort`);
      state = 'closing';
      if (!streaming) {
        const body = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        let r: { etag: string };
        try {
          r = await putS3Object(uri, body, opts.contentType === undefined ? {} : { contentType: opts.contentType }, settings);
        } catch (e) {
          state = 'aborted';
          throw e;
        }
        s3Stats.bytesWritten -= body.length; // counted by write() already, and again by putS3Object
        const max = captureMax.get(uri);
        if (max !== undefined && body.length <= max && r.etag) captured.set(uri, { etag: r.etag, bytes: body });
        state = 'done';
        return { bytes, etag: r.etag };
      }
      streaming.pass.end();
      let r: unknown;
      try {
        r = await streaming.done;
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
      pending = [];
      if (!streaming) return; // nothing was sent
      // s3rver answers AbortMultipartUpload with 405: tolerated, the parts are just left behind there.
      try {
        await streaming.upload.abort();
      } catch {
        /* already failed or finished */
      }
      streaming.pass.destroy();
      await streaming.done.catch(() => undefined);
    },
  };
}

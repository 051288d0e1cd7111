// An S3 bucket (or any S3-compatible server) as an ObjectStore, on the S3 functions of src/io/s3/
// (endpoint overrides and checksum settings for S3-compatible servers live there).
import {
  copyS3Object,
  createS3WriteStream,
  deleteS3Objects,
  deleteS3Prefix,
  formatS3Uri,
  getS3ObjectOrNull,
  headS3OrNull,
  isS3Uri,
  listS3,
  openS3ReadStream,
  parseS3Uri,
  putS3Object,
  S3Blob,
  S3Error,
  s3Settings,
  s3Sync,
} from '../s3/index.ts';
import {
  NotFoundError,
  type ByteStream,
  type ChunkReader,
  type Listing,
  type ObjectInfo,
  type ObjectStore,
  type ObjectWriter,
  type PutOptions,
  type SyncObjectStore,
} from './store.ts';

export class S3Store implements ObjectStore {
  readonly sync: SyncObjectStore;

  constructor(readonly bucket: string) {
    this.sync = {
      list: (prefix) => s3Sync.list(this.uri(prefix)),
      glob: (pattern) => s3Sync.glob(this.uri(pattern)),
      head: (key) => s3Sync.headOrNull(this.uri(key)),
      getOrNull: (key) => s3Sync.getOrNull(this.uri(key)),
      range: (key, start, end, etag) => s3Sync.range(this.uri(key), start, end, etag),
    };
  }

  uri(key: string): string {
    return formatS3Uri(this.bucket, key);
  }

  async get(key: string): Promise<Uint8Array> {
    const r = await getS3ObjectOrNull(this.uri(key));
    if (!r) throw new NotFoundError(this.uri(key));
    return r.bytes;
  }

  getOrNull(key: string): Promise<{ bytes: Uint8Array; etag: string } | null> {
    return getS3ObjectOrNull(this.uri(key));
  }

  async stream(key: string, opts: { etag?: string } = {}): Promise<ByteStream> {
    try {
      return await openS3ReadStream(this.uri(key), opts.etag);
    } catch (e) {
      if (e instanceof S3Error && e.code === 'NoSuchKey') throw new NotFoundError(this.uri(key));
      throw e;
    }
  }

  /** One GET, read front to back: `pos` must follow the previous read. */
  async openReader(key: string, opts: { etag?: string } = {}): Promise<ChunkReader> {
    const uri = this.uri(key);
    const stream = await openS3ReadStream(uri, opts.etag);
    const it = stream[Symbol.asyncIterator]();
    let cur: Uint8Array | null = null;
    let off = 0;
    let done = false;
    let at = 0;
    return {
      read: async (into, len, pos) => {
        if (pos !== at) throw new Error(`internal: non-sequential read of ${uri} at ${pos} (expected ${at})`);
        let n = 0;
        while (n < len) {
          if (!cur || off >= cur.length) {
            if (done) break;
            const r = await it.next();
            if (r.done) {
              done = true;
              break;
            }
            cur = r.value;
            off = 0;
            continue;
          }
          const k = Math.min(len - n, cur.length - off);
          into.set(cur.subarray(off, off + k), n);
          n += k;
          off += k;
        }
        at += n;
        return n;
      },
      close: async () => {
        if (done) return;
        done = true;
        stream.destroy();
        await it.return?.(undefined).catch(() => undefined);
      },
    };
  }

  async openBlob(key: string): Promise<Blob> {
    const o = await headS3OrNull(this.uri(key));
    if (!o) throw new NotFoundError(this.uri(key));
    return new S3Blob(o.uri, o.size, { etag: o.etag, settings: s3Settings() }) as unknown as Blob;
  }

  put(key: string, body: Uint8Array | string, opts: PutOptions = {}): Promise<{ etag: string }> {
    return putS3Object(this.uri(key), body, opts);
  }

  openWriter(key: string, opts: { contentType?: string } = {}): Promise<ObjectWriter> {
    return createS3WriteStream(this.uri(key), opts.contentType === undefined ? {} : { contentType: opts.contentType });
  }

  async upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    const w = await createS3WriteStream(this.uri(key));
    try {
      for await (const chunk of body) await w.write(chunk);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return (await w.close()).bytes;
  }

  head(key: string): Promise<ObjectInfo | null> {
    return headS3OrNull(this.uri(key));
  }

  async exists(key: string): Promise<boolean> {
    return (await headS3OrNull(this.uri(key))) !== null;
  }

  async list(prefix: string): Promise<string[]> {
    const { objects } = await listS3(this.uri(prefix));
    return objects.map((o) => o.key).sort();
  }

  listObjects(prefix: string, opts: { delimiter?: string } = {}): Promise<Listing> {
    return listS3(this.uri(prefix), opts.delimiter === undefined ? {} : { delimiter: opts.delimiter });
  }

  async copy(from: string, toUri: string): Promise<void> {
    if (isS3Uri(toUri)) {
      parseS3Uri(toUri); // validates the bucket name
      await copyS3Object(this.uri(from), toUri);
      return;
    }
    // A local destination (local output of a run): download.
    const { writeFile, mkdir } = await import('node:fs/promises');
    const { dirname } = await import('node:path');
    await mkdir(dirname(toUri), { recursive: true });
    await writeFile(toUri, await this.get(from));
  }

  async delete(keys: readonly string[]): Promise<void> {
    await deleteS3Objects(keys.map((k) => this.uri(k)));
  }

  deletePrefix(prefix: string): Promise<number> {
    return deleteS3Prefix(this.uri(prefix));
  }

  async prepare(): Promise<void> {
    // Objects need no parent.
  }
}

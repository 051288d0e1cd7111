// The object store a serverless run keeps its plan, shards and markers in: an S3 bucket in AWS (or
// any S3-compatible server), a directory in unit tests. Keys are relative to the run's work bucket.
import { createReadStream, promises as fsp } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';

export interface ObjectStore {
  /** Human-readable location of a key, for errors: s3://bucket/key or a path. */
  uri(key: string): string;
  get(key: string): Promise<Uint8Array>;
  /** The object as a stream of chunks (bounded memory for big shards). */
  stream(key: string): Promise<AsyncIterable<Uint8Array>>;
  put(key: string, body: Uint8Array | string): Promise<void>;
  /** Streams `body` to `key` (multipart on S3); the object appears only when complete. */
  upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number>;
  exists(key: string): Promise<boolean>;
  list(prefix: string): Promise<string[]>;
  copy(from: string, toUri: string): Promise<void>;
  delete(keys: string[]): Promise<void>;
}

export class NotFoundError extends Error {
  constructor(readonly uri: string) {
    super(`object not found: ${uri}`);
    this.name = 'NotFoundError';
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
  return store.put(key, JSON.stringify(value));
}

/** A directory as an object store (tests, and local dry runs). */
export class LocalStore implements ObjectStore {
  constructor(readonly root: string) {}
  /** Keys are relative and stay inside the root: a key from a run id like `a/../../b` must not reach other files. */
  uri(key: string): string {
    const root = resolve(this.root);
    const full = resolve(root, key);
    if (typeof key !== 'string' || !full.startsWith(root + sep)) {
      throw new Error(`LocalStore ${root}: key ${JSON.stringify(key)} is not a path inside the store`);
    }
    return join(this.root, key);
  }
  async get(key: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await fsp.readFile(this.uri(key)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(this.uri(key));
      throw e;
    }
  }
  async stream(key: string): Promise<AsyncIterable<Uint8Array>> {
    if (!(await this.exists(key))) throw new NotFoundError(this.uri(key));
    return createReadStream(this.uri(key));
  }
  async put(key: string, body: Uint8Array | string): Promise<void> {
    const p = this.uri(key);
    await fsp.mkdir(dirname(p), { recursive: true });
    await fsp.writeFile(`${p}.tmp`, body);
    await fsp.rename(`${p}.tmp`, p);
  }
  async upload(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    const p = this.uri(key);
    await fsp.mkdir(dirname(p), { recursive: true });
    const h = await fsp.open(`${p}.tmp`, 'w');
    let n = 0;
    try {
      for await (const chunk of body) {
        await h.write(chunk);
        n += chunk.byteLength;
      }
    } finally {
      await h.close();
    }
    await fsp.rename(`${p}.tmp`, p);
    return n;
  }
  async exists(key: string): Promise<boolean> {
    return fsp.access(this.uri(key)).then(() => true, () => false);
  }
  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), r);
        else if (r.startsWith(prefix) && !r.endsWith('.tmp')) out.push(r);
      }
    };
    await walk(this.root, '');
    return out.sort();
  }
  async copy(from: string, toUri: string): Promise<void> {
    await fsp.mkdir(dirname(toUri), { recursive: true });
    await fsp.copyFile(this.uri(from), toUri);
  }
  async delete(keys: string[]): Promise<void> {
    await Promise.all(keys.map((k) => fsp.rm(this.uri(k), { force: true })));
  }
}

export function readableOf(chunks: AsyncIterable<Uint8Array>): Readable {
  return Readable.from(chunks);
}

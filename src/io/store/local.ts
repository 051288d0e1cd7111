// A directory as an ObjectStore: local datasets, tests and local dry runs of the serverless runner.
// Keys are '/'-separated paths relative to the root and may not leave it.
import * as fs from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { globSync } from '../glob.ts';
import {
  NotFoundError,
  PreconditionFailedError,
  type ByteStream,
  type ChunkReader,
  type Listing,
  type ObjectInfo,
  type ObjectStore,
  type ObjectWriter,
  type PutOptions,
  type SyncObjectStore,
} from './store.ts';

const fsp = fs.promises;

/** A local file's version: size and modification time (what S3's ETag is to an object). */
function localEtag(st: fs.Stats): string {
  return `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
}

export class LocalStore implements ObjectStore {
  readonly sync: SyncObjectStore;

  constructor(readonly root: string) {
    this.sync = {
      list: (prefix) => ({ objects: this.walkSync(prefix), prefixes: [] }),
      glob: (pattern) =>
        globSync([pattern], { cwd: resolve(this.root), onlyFiles: true, expandDirectories: false })
          .sort()
          .flatMap((k) => this.infoSync(k) ?? []),
      head: (key) => this.infoSync(key),
      getOrNull: (key) => {
        const p = this.uri(key);
        try {
          const bytes = new Uint8Array(fs.readFileSync(p));
          return { bytes, etag: localEtag(fs.statSync(p)) };
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
          throw e;
        }
      },
      range: (key, start, end) => {
        const fd = fs.openSync(this.uri(key), 'r');
        try {
          const out = new Uint8Array(Math.max(0, end - start));
          const n = fs.readSync(fd, out, 0, out.length, start);
          return out.subarray(0, n);
        } finally {
          fs.closeSync(fd);
        }
      },
    };
  }

  /** Keys are relative and stay inside the root: a key from a run id like `a/../../b` must not reach other files. */
  uri(key: string): string {
    const root = resolve(this.root);
    const full = resolve(root, key);
    if (typeof key !== 'string' || !full.startsWith(root.endsWith(sep) ? root : root + sep)) {
      throw new Error(`LocalStore ${root}: key ${JSON.stringify(key)} is not a path inside the store`);
    }
    return join(this.root, key);
  }

  localPath(key: string): string {
    return this.uri(key);
  }

  async get(key: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await fsp.readFile(this.uri(key)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(this.uri(key));
      throw e;
    }
  }

  async getOrNull(key: string): Promise<{ bytes: Uint8Array; etag: string } | null> {
    const p = this.uri(key);
    try {
      const h = await fsp.open(p, 'r');
      try {
        const st = await h.stat();
        return { bytes: new Uint8Array(await h.readFile()), etag: localEtag(st) };
      } finally {
        await h.close();
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw e;
    }
  }

  async stream(key: string): Promise<ByteStream> {
    if (!(await this.exists(key))) throw new NotFoundError(this.uri(key));
    return fs.createReadStream(this.uri(key));
  }

  async openReader(key: string): Promise<ChunkReader> {
    const fh = await fsp.open(this.uri(key), 'r');
    return { read: (into, len, pos) => fh.read(into, 0, len, pos).then((r) => r.bytesRead), close: () => fh.close() };
  }

  openBlob(key: string): Promise<Blob> {
    return fs.openAsBlob(this.uri(key));
  }

  async put(key: string, body: Uint8Array | string, opts: PutOptions = {}): Promise<{ etag: string }> {
    const p = this.uri(key);
    await fsp.mkdir(dirname(p), { recursive: true });
    const tmp = `${p}.tmp`;
    await fsp.writeFile(tmp, body);
    if (opts.ifNoneMatch === '*') {
      // link() fails if the name exists: an atomic create-if-absent.
      try {
        await fsp.link(tmp, p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new PreconditionFailedError(p, 'the object already exists');
        throw e;
      } finally {
        await fsp.rm(tmp, { force: true });
      }
    } else {
      if (opts.ifMatch !== undefined) {
        const st = await fsp.stat(p).catch(() => null);
        if (!st || localEtag(st) !== opts.ifMatch) {
          await fsp.rm(tmp, { force: true });
          throw new PreconditionFailedError(p, st ? 'the object changed' : 'the object does not exist');
        }
      }
      await fsp.rename(tmp, p);
    }
    return { etag: localEtag(await fsp.stat(p)) };
  }

  /** Written to `<path>.tmp` and renamed into place by close(), so no reader sees half a file; abort() removes it. */
  async openWriter(key: string): Promise<ObjectWriter> {
    const p = this.uri(key);
    const tmp = `${p}.tmp`;
    const fh = await fsp.open(tmp, 'w');
    let bytes = 0;
    let closed = false;
    const close = async (): Promise<void> => {
      if (!closed) {
        closed = true;
        await fh.close();
      }
    };
    return {
      uri: p,
      write: async (chunk) => {
        await fh.write(chunk);
        bytes += chunk.byteLength;
      },
      close: async () => {
        try {
          await close();
          await fsp.rename(tmp, p);
        } catch (e) {
          await fsp.rm(tmp, { force: true });
          throw e;
        }
        return { bytes, etag: localEtag(await fsp.stat(p)) };
      },
      abort: async () => {
        await close().catch(() => undefined);
        await fsp.rm(tmp, { force: true });
      },
    };
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

  async head(key: string): Promise<ObjectInfo | null> {
    return this.infoSync(key);
  }

  async exists(key: string): Promise<boolean> {
    return fsp.access(this.uri(key)).then(
      () => true,
      () => false,
    );
  }

  async list(prefix: string): Promise<string[]> {
    return this.walkSync(prefix).map((o) => o.key);
  }

  async listObjects(prefix: string, opts: { delimiter?: string } = {}): Promise<Listing> {
    const objects = this.walkSync(prefix);
    if (opts.delimiter !== '/') return { objects, prefixes: [] };
    const prefixes = new Set<string>();
    const direct: ObjectInfo[] = [];
    for (const o of objects) {
      const rest = o.key.slice(prefix.length);
      const cut = rest.indexOf('/');
      if (cut < 0) direct.push(o);
      else prefixes.add(this.uri(prefix + rest.slice(0, cut + 1)));
    }
    return { objects: direct, prefixes: [...prefixes].sort() };
  }

  async copy(from: string, toUri: string): Promise<void> {
    await fsp.mkdir(dirname(toUri), { recursive: true });
    await fsp.copyFile(this.uri(from), toUri);
  }

  async delete(keys: readonly string[]): Promise<void> {
    await Promise.all(keys.map((k) => fsp.rm(this.uri(k), { force: true })));
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys = await this.list(prefix);
    await this.delete(keys);
    return keys.length;
  }

  async prepare(key: string): Promise<void> {
    await fsp.mkdir(dirname(this.uri(key)), { recursive: true });
  }

  private infoSync(key: string): ObjectInfo | null {
    const p = this.uri(key);
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st?.isFile()) return null;
    return { uri: p, key, size: st.size, etag: localEtag(st), lastModified: st.mtimeMs };
  }

  /** Files under the root whose keys start with `prefix` (not in-flight `.tmp` files), sorted by key. */
  private walkSync(prefix: string): ObjectInfo[] {
    const out: ObjectInfo[] = [];
    const root = resolve(this.root);
    // Walk only the directory the prefix names (not the whole root).
    const dirKey = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const walk = (dir: string): void => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        const key = relative(root, full).split(sep).join('/');
        if (e.isDirectory()) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) walk(full);
        } else if (key.startsWith(prefix) && !key.endsWith('.tmp')) {
          const info = this.infoSync(key);
          if (info) out.push(info);
        }
      }
    };
    walk(dirKey ? join(root, dirKey) : root);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

// FileBlob: a local file as the Blob parquet-wasm reads from, on positioned reads (pread through
// one FileHandle). fs.openAsBlob reads a slice in 64 KiB chunks and concatenates them; a pread fills
// one exactly-sized buffer, and prefetched ranges (the next row group's column chunks) are read on
// libuv's thread pool while the main thread decodes.
import * as fs from 'node:fs';
import { RangeBlob, type RangeBlobState } from '../range-blob.ts';

interface FileState extends RangeBlobState {
  handle: Promise<fs.promises.FileHandle> | null;
  closed: boolean;
  /** The modification time the reader's footer was read at, when known. */
  mtimeMs: number | undefined;
}

export class FileBlob extends RangeBlob {
  declare protected readonly state: FileState;

  /** @param path the file; `size` (and `mtimeMs`) what it had when the reader read its footer. */
  constructor(
    readonly path: string,
    size: number,
    mtimeMs?: number,
    start = 0,
    end = size,
    state?: FileState,
  ) {
    super(size, start, end, state ?? { cache: [], failure: { error: null }, handle: null, closed: false, mtimeMs });
  }

  protected sliceAt(a: number, b: number): this {
    return new FileBlob(this.path, this.objectSize, this.state.mtimeMs, a, b, this.state) as this;
  }

  private handle(): Promise<fs.promises.FileHandle> {
    if (this.state.closed) return Promise.reject(new Error(`read of ${this.path} after it was closed`));
    if (!this.state.handle) {
      const h = fs.promises.open(this.path, 'r').then(async (fh) => {
        // The footer this read was planned from must still describe the file.
        const st = await fh.stat();
        const mtime = this.state.mtimeMs;
        if (st.size !== this.objectSize || (mtime !== undefined && st.mtimeMs !== mtime)) {
          await fh.close();
          throw new Error(
            `${this.path} changed while being read (now ${st.size} bytes modified at ${new Date(st.mtimeMs).toISOString()}; its footer was read at ${this.objectSize} bytes${mtime === undefined ? '' : `, modified at ${new Date(mtime).toISOString()}`})`,
          );
        }
        return fh;
      });
      h.catch(() => undefined);
      this.state.handle = h;
    }
    return this.state.handle;
  }

  protected async fetch(a: number, b: number): Promise<Uint8Array> {
    const fh = await this.handle();
    // Not zero-filled (every byte is read into it below, or the read throws): a fresh zeroed buffer
    // cost 1.7 ms of this thread's CPU per 7.5 MiB read against 0.7. A plain Uint8Array over it, not
    // the Buffer: Buffer's slice() is a view, and RangeBlob.arrayBuffer copies with slice().
    const out = new Uint8Array(Buffer.allocUnsafeSlow(b - a).buffer, 0, b - a);
    let n = 0;
    while (n < out.length) {
      const { bytesRead } = await fh.read(out, n, out.length - n, a + n);
      if (bytesRead === 0) throw new Error(`${this.path} is shorter than expected (ended at byte ${a + n}, reading up to ${b})`);
      n += bytesRead;
    }
    return out;
  }

  /** Close the file (every slice shares it). Reads still in flight finish first. */
  async close(): Promise<void> {
    if (this.state.closed) return;
    this.state.closed = true;
    this.state.cache.length = 0;
    const h = this.state.handle;
    this.state.handle = null;
    if (h) await h.then((fh) => fh.close()).catch(() => undefined);
  }
}

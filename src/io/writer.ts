// Atomic dataset writes, to a local directory or an S3 prefix. Parts are written under
// dir/_temporary/<runId>/; commit renames them into dir (S3: server-side copies) and then writes
// the `_SUCCESS` manifest last, atomically (local: write to a temp name, rename; S3: one PUT, which
// is atomic). Readers that honour the manifest (expandPaths) therefore see either the previous
// committed dataset or the new one, never a partial write.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type * as arrow from 'apache-arrow';
import type { Schema } from '../datatypes.ts';
import { writeParquetFile, inspectParquet, type ParquetCompression } from './parquet/index.ts';
import { writeCsvFile } from './csv/index.ts';
import { EXTENSIONS, MANIFEST_NAME, TEMP_DIR_NAME, parseManifest, readManifest, type FileFormat, type Manifest } from './paths.ts';
import {
  copyS3Object, deleteS3Objects, deleteS3Prefix, getS3ObjectOrNull, isS3Uri, listS3, parseS3Uri, putS3Object, trimSlash,
} from './s3.ts';

export { readManifest } from './paths.ts';
export type { Manifest, ManifestFile } from './paths.ts';

export interface WrittenFile { path: string; rows: number; bytes: number }
export type WriteMode = 'error' | 'overwrite' | 'append';

export interface WritePartOptions {
  schema?: Schema;
  /** Parquet only. */
  compression?: ParquetCompression;
  /** Parquet only. */
  rowGroupSize?: number;
  /** CSV only. */
  delimiter?: string;
  /** CSV only. */
  header?: boolean;
}

/** Sortable run ids (UTC time to the millisecond, then random): later appends sort after earlier ones. */
function newRunId(): string {
  const t = new Date().toISOString().replace(/[-:.]/g, '');
  return `${t}-${randomBytes(4).toString('hex')}`;
}

function isOutputName(name: string): boolean {
  return !name.startsWith('.') && !name.startsWith('_');
}

function partName(index: number, runId: string, format: FileFormat): string {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`part index must be a non-negative integer, got ${index}`);
  return `part-${String(index).padStart(5, '0')}-${runId}${EXTENSIONS[format][0]}`;
}

export class DatasetWriter {
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(
    readonly dir: string,
    readonly format: FileFormat,
    readonly mode: WriteMode,
    readonly runId: string,
    /** dir/_temporary/<runId> */
    readonly tempDir: string,
    private readonly createdDir: boolean,
  ) {}

  /**
   * Start a write into `dir`. mode 'error' (default) refuses a directory that already holds
   * output; 'overwrite' replaces the committed files at commit time; 'append' adds to them.
   */
  static async begin(dir: string, opts: { format: FileFormat; mode?: WriteMode }): Promise<DatasetWriter> {
    const format = opts.format;
    if (format !== 'parquet' && format !== 'csv') throw new RangeError(`unknown dataset format '${String(format)}'`);
    const mode = opts.mode ?? 'error';
    if (mode !== 'error' && mode !== 'overwrite' && mode !== 'append') throw new RangeError(`unknown write mode '${String(mode)}'`);
    if (isS3Uri(dir)) return DatasetWriter.beginS3(dir, format, mode);
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(dir)) throw new Error(`remote output paths other than s3:// are not supported (${dir})`);
    const abs = path.resolve(dir);
    let createdDir = false;
    let st: fs.Stats | null = null;
    try {
      st = await fs.promises.stat(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (st && !st.isDirectory()) throw new Error(`output path ${abs} exists and is not a directory`);
    if (st && mode === 'error') {
      const entries = await fs.promises.readdir(abs);
      const existing = entries.filter((n) => isOutputName(n) || n === MANIFEST_NAME);
      if (existing.length > 0) {
        throw new Error(`output directory ${abs} already holds data (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); use mode 'overwrite' or 'append'`);
      }
    }
    if (st && mode === 'append') {
      const m = readManifest(abs);
      if (m && m.format !== format) throw new Error(`cannot append ${format} files to the ${m.format} dataset in ${abs}`);
    }
    if (!st) {
      await fs.promises.mkdir(abs, { recursive: true });
      createdDir = true;
    }
    let runId = newRunId();
    const last = mode === 'append' ? readManifest(abs)?.runId : undefined;
    while (last && runId <= last) {
      await new Promise((r) => setTimeout(r, 2)); // keep part names of successive appends in commit order
      runId = newRunId();
    }
    const tempDir = path.join(abs, TEMP_DIR_NAME, runId);
    await fs.promises.mkdir(tempDir, { recursive: true });
    return new DatasetWriter(abs, format, mode, runId, tempDir, createdDir);
  }

  /** Temp path for part `index` (final name: the same file name directly in dir). */
  partPath(index: number): string {
    const name = partName(index, this.runId, this.format);
    return this.remote ? `${this.tempDir}/${name}` : path.join(this.tempDir, name);
  }

  /** Writing to an S3 prefix (dir and tempDir are s3:// URIs without a trailing slash). */
  get remote(): boolean {
    return isS3Uri(this.dir);
  }

  private static async beginS3(dir: string, format: FileFormat, mode: WriteMode): Promise<DatasetWriter> {
    const base = trimSlash(dir);
    parseS3Uri(base); // validates the bucket name
    // Top level only: "sub-directories" come back as prefixes.
    const { objects, prefixes } = await listS3(`${base}/`, { delimiter: '/' });
    const names = [...objects.map((o) => o.key), ...prefixes.map((p) => parseS3Uri(p).key.replace(/\/$/, ''))]
      .map((k) => k.slice(k.lastIndexOf('/') + 1));
    if (mode === 'error') {
      const existing = names.filter((n) => isOutputName(n) || n === MANIFEST_NAME);
      if (existing.length > 0) {
        throw new Error(`output prefix ${base}/ already holds data (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); use mode 'overwrite' or 'append'`);
      }
    }
    const previous = mode === 'append' && names.includes(MANIFEST_NAME) ? await readManifestS3(base) : null;
    if (previous && previous.format !== format) throw new Error(`cannot append ${format} files to the ${previous.format} dataset in ${base}/`);
    let runId = newRunId();
    while (previous?.runId && runId <= previous.runId) {
      await new Promise((r) => setTimeout(r, 2));
      runId = newRunId();
    }
    return new DatasetWriter(base, format, mode, runId, `${base}/${TEMP_DIR_NAME}/${runId}`, false);
  }

  /** Write one part from batches (via writeParquetFile / writeCsvFile). A failed part leaves nothing behind. */
  async writePart(index: number, batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>, opts: WritePartOptions = {}): Promise<WrittenFile> {
    this.assertOpen('writePart');
    const p = this.partPath(index);
    try {
      const r = this.format === 'parquet'
        ? await writeParquetFile(p, batches, pick(opts, ['schema', 'compression', 'rowGroupSize']))
        : await writeCsvFile(p, batches, pick(opts, ['schema', 'delimiter', 'header']));
      return { path: p, rows: r.rows, bytes: r.bytes };
    } catch (e) {
      if (this.remote) await deleteS3Objects([p]).catch(() => undefined); // the sinks leave nothing; belt and braces
      else await fs.promises.rm(p, { force: true });
      throw e;
    }
  }

  /**
   * Move the parts into dir and write `_SUCCESS` last. In overwrite mode the previously
   * committed files are deleted only after the new manifest is in place. Returns final paths.
   */
  async commit(parts: WrittenFile[]): Promise<WrittenFile[]> {
    this.assertOpen('commit');
    if (this.remote) return this.commitS3(parts);
    const seen = new Set<string>();
    for (const part of parts) {
      const p = path.resolve(part.path);
      if (path.dirname(p) !== this.tempDir) throw new Error(`part ${part.path} was not written by this writer (expected it in ${this.tempDir})`);
      if (seen.has(p)) throw new Error(`part ${part.path} listed twice`);
      seen.add(p);
      try {
        await fs.promises.access(p);
      } catch {
        throw new Error(`part ${part.path} is missing; was it written?`);
      }
    }
    // Commits into one directory are serialized: read-manifest → rename → write-manifest must not
    // interleave, or a concurrent append would drop the other writer's files.
    const release = await lockDir(this.dir);
    try {
      return await this.commitLocked(parts);
    } finally {
      await release();
    }
  }

  private async commitLocked(parts: WrittenFile[]): Promise<WrittenFile[]> {
    const previous = this.mode === 'error' ? null : readManifest(this.dir);
    if (this.mode === 'error' && readManifest(this.dir)) throw new Error(`output directory ${this.dir} already holds a committed dataset (written meanwhile); use mode 'overwrite' or 'append'`);
    const final: WrittenFile[] = [];
    try {
      for (const part of parts) {
        const to = path.join(this.dir, path.basename(part.path));
        await fs.promises.rename(path.resolve(part.path), to);
        final.push({ path: to, rows: part.rows, bytes: part.bytes });
      }
      let listed: WrittenFile[] = final;
      if (this.mode === 'append') listed = [...this.existingFiles(previous), ...final];
      const manifest: Manifest & { version: number } = {
        version: 1,
        format: this.format,
        runId: this.runId,
        files: listed.map((f) => ({ path: path.relative(this.dir, f.path).split(path.sep).join('/'), rows: f.rows, bytes: f.bytes })),
        rows: listed.reduce((n, f) => n + f.rows, 0),
        committedAt: new Date().toISOString(),
      };
      const tmpManifest = path.join(this.tempDir, `${MANIFEST_NAME}.json`);
      await fs.promises.writeFile(tmpManifest, `${JSON.stringify(manifest, null, 2)}\n`);
      await fs.promises.rename(tmpManifest, path.join(this.dir, MANIFEST_NAME)); // the commit point
    } catch (e) {
      // Not committed: take back the parts already moved, so nothing half-written looks like output.
      await Promise.all(final.map((f) => fs.promises.rm(f.path, { force: true })));
      throw e;
    }
    this.state = 'committed';

    if (this.mode === 'overwrite') await this.removeReplaced(previous, new Set(final.map((f) => f.path)));
    await this.cleanupTemp();
    return final;
  }

  /** Remove this run's temp files; leaves no file that looks like output. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    if (this.remote) {
      await deleteS3Prefix(`${this.tempDir}/`);
      return;
    }
    await this.cleanupTemp();
    if (this.createdDir) {
      try {
        await fs.promises.rmdir(this.dir); // only if we made it and nothing else landed there
      } catch { /* not empty: leave it */ }
    }
  }

  /** S3: copy parts to their final keys, PUT the manifest (the commit point), then delete what is replaced and the temp keys. */
  private async commitS3(parts: WrittenFile[]): Promise<WrittenFile[]> {
    const prefix = `${this.tempDir}/`;
    const seen = new Set<string>();
    const { objects } = await listS3(prefix);
    const present = new Set(objects.map((o) => o.uri));
    for (const part of parts) {
      const rest = part.path.startsWith(prefix) ? part.path.slice(prefix.length) : null;
      if (rest === null || rest === '' || rest.includes('/')) throw new Error(`part ${part.path} was not written by this writer (expected it under ${prefix})`);
      if (seen.has(part.path)) throw new Error(`part ${part.path} listed twice`);
      seen.add(part.path);
      if (!present.has(part.path)) throw new Error(`part ${part.path} is missing; was it written?`);
    }
    const previous = this.mode === 'error' ? null : await readManifestS3(this.dir);
    const final: WrittenFile[] = [];
    try {
      // Copies run a few at a time: each is a server-side request whose time grows with the object.
      const queue = parts.map((part, i) => ({ part, i }));
      const out: WrittenFile[] = new Array(parts.length);
      let failed = false;
      // Every copier finishes (or stops) before we decide, so a failure cannot race a late copy.
      const settled = await Promise.allSettled(Array.from({ length: Math.min(8, queue.length) }, async () => {
        for (let job = queue.shift(); job && !failed; job = queue.shift()) {
          const to = `${this.dir}/${job.part.path.slice(prefix.length)}`;
          out[job.i] = { path: to, rows: job.part.rows, bytes: job.part.bytes };
          final.push(out[job.i]!);
          try {
            await copyS3Object(job.part.path, to);
          } catch (e) {
            failed = true;
            throw e;
          }
        }
      }));
      const err = settled.find((r) => r.status === 'rejected');
      if (err) throw (err as PromiseRejectedResult).reason;
      final.splice(0, final.length, ...out);
      let listed: WrittenFile[] = final;
      if (this.mode === 'append') listed = [...(await this.existingFilesS3(previous)), ...final];
      const manifest: Manifest & { version: number } = {
        version: 1,
        format: this.format,
        runId: this.runId,
        files: listed.map((f) => ({ path: f.path.startsWith(`${this.dir}/`) ? f.path.slice(this.dir.length + 1) : f.path, rows: f.rows, bytes: f.bytes })),
        rows: listed.reduce((n, f) => n + f.rows, 0),
        committedAt: new Date().toISOString(),
      };
      await putS3Object(`${this.dir}/${MANIFEST_NAME}`, `${JSON.stringify(manifest, null, 2)}\n`, { contentType: 'application/json' }); // the commit point
    } catch (e) {
      // Not committed: take back the copies already made, so nothing half-written looks like output.
      await deleteS3Objects(final.filter(Boolean).map((f) => f.path)).catch(() => undefined);
      throw e;
    }
    this.state = 'committed';
    // Committed: what follows is housekeeping, and its failure must not undo the commit.
    try {
      if (this.mode === 'overwrite') await this.removeReplacedS3(previous, new Set(final.map((f) => f.path)));
      await deleteS3Prefix(prefix);
    } catch (e) {
      process.emitWarning(`committed ${this.dir}/ but could not clean up: ${(e as Error).message}`);
    }
    return final;
  }

  private async existingFilesS3(previous: Manifest | null): Promise<WrittenFile[]> {
    if (previous) {
      return previous.files.map((f) => ({ path: isS3Uri(f.path) ? f.path : `${this.dir}/${f.path}`, rows: f.rows, bytes: f.bytes }));
    }
    const { objects } = await listS3(`${this.dir}/`, { delimiter: '/' });
    const out: WrittenFile[] = [];
    for (const o of objects) {
      const name = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (!isOutputName(name) || !EXTENSIONS[this.format].some((x) => name.toLowerCase().endsWith(x)) || name.includes(this.runId)) continue;
      out.push({ path: o.uri, rows: this.format === 'parquet' ? inspectParquet(o.uri).numRows : -1, bytes: o.size });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  private async removeReplacedS3(previous: Manifest | null, keep: Set<string>): Promise<void> {
    const doomed = new Set<string>();
    if (previous) for (const f of previous.files) doomed.add(isS3Uri(f.path) ? f.path : `${this.dir}/${f.path}`);
    const { objects } = await listS3(`${this.dir}/`, { delimiter: '/' });
    for (const o of objects) {
      const name = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (/^part-\d+-.+/.test(name) && EXTENSIONS[this.format].some((x) => name.endsWith(x))) doomed.add(o.uri);
    }
    await deleteS3Objects([...doomed].filter((f) => !keep.has(f)));
  }

  private assertOpen(what: string): void {
    if (this.state !== 'open') throw new Error(`DatasetWriter.${what}: the write to ${this.dir} was already ${this.state}`);
  }

  /** Files an append keeps: the previous manifest's, or (no manifest) the data files found in dir. */
  private existingFiles(previous: Manifest | null): WrittenFile[] {
    if (previous) return previous.files.map((f) => ({ path: path.resolve(this.dir, f.path), rows: f.rows, bytes: f.bytes }));
    const out: WrittenFile[] = [];
    for (const e of fs.readdirSync(this.dir, { withFileTypes: true })) {
      if (!e.isFile() || !isOutputName(e.name) || !EXTENSIONS[this.format].some((x) => e.name.toLowerCase().endsWith(x))) continue;
      const full = path.join(this.dir, e.name);
      if (full.includes(this.runId)) continue; // our own parts, just renamed in
      const bytes = fs.statSync(full).size;
      // Unknown row counts for foreign CSV files are recorded as -1.
      const rows = this.format === 'parquet' ? inspectParquet(full).numRows : -1;
      out.push({ path: full, rows, bytes });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  /** After an overwrite commit: delete what the old manifest listed and old part files. */
  private async removeReplaced(previous: Manifest | null, keep: Set<string>): Promise<void> {
    const doomed = new Set<string>();
    if (previous) for (const f of previous.files) doomed.add(path.resolve(this.dir, f.path));
    for (const e of await fs.promises.readdir(this.dir, { withFileTypes: true })) {
      // Earlier runs' parts, manifest or not; unrelated files are left alone.
      if (e.isFile() && /^part-\d+-.+/.test(e.name) && EXTENSIONS[this.format].some((x) => e.name.endsWith(x))) {
        doomed.add(path.join(this.dir, e.name));
      }
    }
    for (const f of doomed) if (!keep.has(f)) await fs.promises.rm(f, { force: true });
  }

  private async cleanupTemp(): Promise<void> {
    await fs.promises.rm(this.tempDir, { recursive: true, force: true });
    const tempRoot = path.dirname(this.tempDir);
    try {
      await fs.promises.rmdir(tempRoot); // only when no other run is in flight
    } catch { /* other runs' temp dirs remain */ }
  }
}

/** The manifest committed under an S3 prefix, or null. */
export async function readManifestS3(dir: string): Promise<Manifest | null> {
  const uri = `${trimSlash(dir)}/${MANIFEST_NAME}`;
  // List first: without s3:ListBucket on the whole bucket (IAM scoped to a prefix), S3 answers a
  // GetObject of a missing key with 403, not 404; listing under the prefix is allowed.
  const { objects } = await listS3(`${trimSlash(dir)}/`, { delimiter: '/' });
  if (!objects.some((o) => o.uri === uri)) return null;
  const got = await getS3ObjectOrNull(uri);
  return got ? parseManifest(Buffer.from(got.bytes).toString('utf8'), uri) : null;
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/**
 * An exclusive lock on a local output directory (a `_SUCCESS.lock` file created with O_EXCL). A lock
 * older than 10 minutes is taken to be left by a crashed process.
 */
async function lockDir(dir: string): Promise<() => Promise<void>> {
  const lock = path.join(dir, `${MANIFEST_NAME}.lock`);
  const deadline = Date.now() + 120_000;
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    try {
      const h = await fs.promises.open(lock, 'wx');
      await h.close();
      return () => fs.promises.rm(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = await fs.promises.stat(lock).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 600_000) {
        await fs.promises.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`could not lock ${dir} for commit: ${lock} is held by another writer`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

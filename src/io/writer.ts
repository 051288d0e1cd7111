// Atomic dataset writes (local FS now, S3 later). Parts are written under
// dir/_temporary/<runId>/; commit renames them into dir and then writes the `_SUCCESS` manifest
// last, atomically (write to a temp name, rename). Readers that honour the manifest (expandPaths)
// therefore see either the previous committed dataset or the new one, never a partial write.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type * as arrow from 'apache-arrow';
import type { Schema } from '../datatypes.ts';
import { writeParquetFile, inspectParquet, type ParquetCompression } from './parquet.ts';
import { writeCsvFile } from './csv.ts';
import { EXTENSIONS, MANIFEST_NAME, TEMP_DIR_NAME, readManifest, type FileFormat, type Manifest } from './paths.ts';

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
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(dir)) throw new Error(`remote output paths are not yet supported (${dir})`);
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
    return path.join(this.tempDir, partName(index, this.runId, this.format));
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
      await fs.promises.rm(p, { force: true });
      throw e;
    }
  }

  /**
   * Move the parts into dir and write `_SUCCESS` last. In overwrite mode the previously
   * committed files are deleted only after the new manifest is in place. Returns final paths.
   */
  async commit(parts: WrittenFile[]): Promise<WrittenFile[]> {
    this.assertOpen('commit');
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
    const previous = this.mode === 'error' ? null : readManifest(this.dir);
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
    await this.cleanupTemp();
    if (this.createdDir) {
      try {
        await fs.promises.rmdir(this.dir); // only if we made it and nothing else landed there
      } catch { /* not empty: leave it */ }
    }
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

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

// Atomic dataset writes, to a local directory or an S3 prefix. Parts are written under
// dir/_temporary/<runId>/; commit renames them into dir (S3: server-side copies) and then writes
// the `_SUCCESS` manifest last, atomically (local: write to a temp name, rename; S3: one PUT, which
// is atomic). Readers that honour the manifest (expandPaths) therefore see either the previous
// committed dataset or the new one, never a partial write.
//
// Crash safety. Local: commits into one directory hold `_SUCCESS.lock` (owner pid/host/time in it;
// a lock whose owner is gone is broken at once) and write a `_COMMITTING` marker before the first
// rename, removed after `_SUCCESS`; readers refuse a directory whose marked commit did not finish,
// and the next commit removes what it had moved in. S3: the manifest is replaced with conditional
// PUTs (If-Match on the ETag read, If-None-Match: * to create) and retried on a lost race, so
// concurrent appends never drop a file; a `_temporary/<runId>/_COMMITTING` marker makes a
// manifest-less prefix with a crashed commit refuse to read.
//
// Test hook: FANOUT_TEST_CRASH_AFTER_RENAMES=N makes a commit SIGKILL its own process after N parts
// were moved in (renamed, or copied on S3), to test readers and recovery after a crash.
//
// The protocols live in commit-local.ts and commit-objects.ts; DatasetWriter picks one and delegates.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as arrow from 'apache-arrow';
import type { Schema } from '../datatypes.ts';
import { writeParquetFile, type ParquetCompression, type WriteParquetOptions } from './parquet/index.ts';
import { writeCsvFile } from './csv/index.ts';
import { EXTENSIONS, type FileFormat } from './paths.ts';
import { deleteObjects, deletePrefix, isLocalUri, storeFor } from './store/index.ts';
import type { WriteMode, WrittenFile } from './commit-common.ts';
import { beginLocal, cleanupTemp, commitLocal } from './commit-local.ts';
import { beginObjects, commitObjects } from './commit-objects.ts';

export { readManifest } from './paths.ts';
export { readManifestS3 } from './commit-objects.ts';
export type { WriteMode, WrittenFile } from './commit-common.ts';

export interface WritePartOptions {
  schema?: Schema;
  /** Parquet only. */
  compression?: ParquetCompression;
  /** Parquet only. */
  rowGroupSize?: number;
  /** Parquet only (see WriteParquetOptions). */
  encoding?: WriteParquetOptions['encoding'];
  /** Parquet only. */
  columnEncoding?: WriteParquetOptions['columnEncoding'];
  /** Parquet only. */
  statistics?: WriteParquetOptions['statistics'];
  /** Parquet only. */
  dataPageSize?: number;
  /** CSV only. */
  delimiter?: string;
  /** CSV only. */
  header?: boolean;
}

function partName(index: number, runId: string, format: FileFormat): string {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`part index must be a non-negative integer, got ${index}`);
  return `part-${String(index).padStart(5, '0')}-${runId}${EXTENSIONS[format][0]}`;
}

export class DatasetWriter {
  private state: 'open' | 'committed' | 'aborted' = 'open';
  /** Fields the commit's manifest carries besides the files, e.g. `complete: false` for a partial result. */
  manifestExtra: Record<string, unknown> | undefined;

  private constructor(
    readonly dir: string,
    readonly format: FileFormat,
    readonly mode: WriteMode,
    readonly runId: string,
    /** dir/_temporary/<runId>.pid<pid>.<host> (S3: <dir>/_temporary/<runId>) */
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
    if (mode !== 'error' && mode !== 'overwrite' && mode !== 'append' && mode !== 'overwrite-partitions')
      throw new RangeError(`unknown write mode '${String(mode)}'`);
    // A directory commits with renames and a lock file; an object store with copies and conditional PUTs.
    const at = storeFor(dir, 'remote output paths').store.localPath ? await beginLocal(dir, format, mode) : await beginObjects(dir, format, mode);
    return new DatasetWriter(at.dir, format, mode, at.runId, at.tempDir, at.createdDir);
  }

  /** Temp path for part `index` (final name: the same path below dir), optionally in a `subdir` (hive partitions: `dt=…/region=…`). */
  partPath(index: number, subdir?: string): string {
    const name = partName(index, this.runId, this.format);
    if (subdir) return this.remote ? `${this.tempDir}/${subdir}/${name}` : path.join(this.tempDir, ...subdir.split('/'), name);
    return this.remote ? `${this.tempDir}/${name}` : path.join(this.tempDir, name);
  }

  /** Writing to an object-store prefix (dir and tempDir are URIs without a trailing slash). */
  get remote(): boolean {
    return !isLocalUri(this.dir);
  }

  /** Write one part from batches (via writeParquetFile / writeCsvFile). A failed part leaves nothing behind. */
  async writePart(
    index: number,
    batches: AsyncIterable<arrow.RecordBatch> | Iterable<arrow.RecordBatch>,
    opts: WritePartOptions = {},
    subdir?: string,
  ): Promise<WrittenFile> {
    this.assertOpen('writePart');
    const p = this.partPath(index, subdir);
    try {
      if (subdir && !this.remote) await fs.promises.mkdir(path.dirname(p), { recursive: true });
      const r =
        this.format === 'parquet'
          ? await writeParquetFile(
              p,
              batches,
              pick(opts, ['schema', 'compression', 'rowGroupSize', 'encoding', 'columnEncoding', 'statistics', 'dataPageSize']),
            )
          : await writeCsvFile(p, batches, pick(opts, ['schema', 'delimiter', 'header']));
      return { path: p, rows: r.rows, bytes: r.bytes };
    } catch (e) {
      await deleteObjects([p]).catch(() => undefined); // the sinks leave nothing; belt and braces
      throw e;
    }
  }

  /**
   * Move the parts into dir and write `_SUCCESS` last. In overwrite mode the previously
   * committed files are deleted only after the new manifest is in place. Returns final paths.
   */
  async commit(parts: WrittenFile[]): Promise<WrittenFile[]> {
    this.assertOpen('commit');
    const committed = (): void => {
      this.state = 'committed';
    };
    if (this.remote) return commitObjects(this, parts, committed);
    return commitLocal(this, parts, committed);
  }

  /** Remove this run's temp files; leaves no file that looks like output. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    if (this.remote) {
      await deletePrefix(`${this.tempDir}/`);
      return;
    }
    await cleanupTemp(this);
    if (this.createdDir) {
      try {
        await fs.promises.rmdir(this.dir); // only if we made it and nothing else landed there
      } catch {
        /* not empty: leave it */
      }
    }
  }

  private assertOpen(what: string): void {
    if (this.state !== 'open') throw new Error(`DatasetWriter.${what}: the write to ${this.dir} was already ${this.state}`);
  }
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

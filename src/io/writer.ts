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

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type * as arrow from 'apache-arrow';
import { mapLimit } from '../concurrency.ts';
import type { Schema } from '../datatypes.ts';
import { writeParquetFile, inspectParquet, type ParquetCompression } from './parquet/index.ts';
import { writeCsvFile } from './csv/index.ts';
import { EXTENSIONS, MANIFEST_NAME, TEMP_DIR_NAME, parseManifest, readManifest, type FileFormat, type Manifest } from './paths.ts';
import {
  COMMIT_MARKER_NAME, FOREIGN_OWNER_STALE_MS, FOREIGN_TEMP_STALE_MS, currentOwner, describeOwner, ownerGone, parseOwner,
  pidAlive, readCommitMarker,
} from './commit-state.ts';
import {
  copyObject, deleteObjects, deletePrefix, getObjectOrNull, isConditionFailure, isLocalUri, isRemotePath, listObjects, putObject, storeFor, trimSlash,
} from './store/index.ts';

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

/** Part files this writer names (`part-00007-20261130T010258123Z-1a2b3c4d.parquet`): [, runId]. */
const PART_RE = /^part-\d{5,}-(\d{8}T\d{9}Z-[0-9a-f]{8})\.[A-Za-z]+$/;

/** Test hook (see the header): SIGKILL this process once `moved` parts were moved in. */
function crashPointReached(moved: number): void {
  const at = process.env.FANOUT_TEST_CRASH_AFTER_RENAMES;
  if (at !== undefined && at !== '' && moved >= Number(at)) process.kill(process.pid, 'SIGKILL');
}

/** Host names as they appear in temp dir names (file-name safe). */
function safeHost(h: string): string {
  return h.replace(/[^A-Za-z0-9-]/g, '_').slice(0, 100);
}

/** `.pid<pid>.<host>`: the suffix of a local temp dir name after the run id. */
function tempOwnerSuffix(): string {
  return `.pid${process.pid}.${safeHost(hostname())}`;
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
    if (mode !== 'error' && mode !== 'overwrite' && mode !== 'append') throw new RangeError(`unknown write mode '${String(mode)}'`);
    // A directory commits with renames and a lock file; an object store with copies and conditional PUTs.
    if (!storeFor(dir, 'remote output paths').store.localPath) return DatasetWriter.beginObjects(dir, format, mode);
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
    // The name says who writes this run (pid, host), so a later commit can remove it once that
    // process is gone; a name rather than an owner file inside keeps the temp dir to the parts.
    const tempDir = path.join(abs, TEMP_DIR_NAME, `${runId}${tempOwnerSuffix()}`);
    await fs.promises.mkdir(tempDir, { recursive: true });
    return new DatasetWriter(abs, format, mode, runId, tempDir, createdDir);
  }

  /** Temp path for part `index` (final name: the same file name directly in dir). */
  partPath(index: number): string {
    const name = partName(index, this.runId, this.format);
    return this.remote ? `${this.tempDir}/${name}` : path.join(this.tempDir, name);
  }

  /** Writing to an object-store prefix (dir and tempDir are URIs without a trailing slash). */
  get remote(): boolean {
    return !isLocalUri(this.dir);
  }

  private static async beginObjects(dir: string, format: FileFormat, mode: WriteMode): Promise<DatasetWriter> {
    const base = trimSlash(dir);
    storeFor(base); // validates the URI (bucket name)
    // Top level only: "sub-directories" come back as prefixes.
    const { objects, prefixes } = await listObjects(`${base}/`, { delimiter: '/' });
    const names = [...objects.map((o) => o.key), ...prefixes.map((p) => p.replace(/\/$/, ''))]
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
    if (this.remote) return this.commitObjects(parts);
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
    const release = await lockDir(this.dir, this.runId);
    try {
      return await this.commitLocked(parts);
    } finally {
      await release();
    }
  }

  private async commitLocked(parts: WrittenFile[]): Promise<WrittenFile[]> {
    // We hold the lock, so a marker left here belongs to a commit that died holding it.
    await this.recoverInterruptedCommit();
    const previous = this.mode === 'error' ? null : readManifest(this.dir);
    if (this.mode === 'error' && readManifest(this.dir)) throw new Error(`output directory ${this.dir} already holds a committed dataset (written meanwhile); use mode 'overwrite' or 'append'`);
    const final: WrittenFile[] = [];
    const marker = path.join(this.dir, COMMIT_MARKER_NAME);
    try {
      // The intent marker goes in before any part, so a crash from here on is visible to readers.
      const tmpMarker = path.join(this.tempDir, `${COMMIT_MARKER_NAME}.json`);
      await fs.promises.writeFile(tmpMarker, `${JSON.stringify(currentOwner(this.runId))}\n`);
      await fs.promises.rename(tmpMarker, marker);
      crashPointReached(0);
      for (const part of parts) {
        const to = path.join(this.dir, path.basename(part.path));
        await fs.promises.rename(path.resolve(part.path), to);
        final.push({ path: to, rows: part.rows, bytes: part.bytes });
        crashPointReached(final.length);
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
      await fs.promises.rm(marker, { force: true });
      throw e;
    }
    this.state = 'committed';
    await fs.promises.rm(marker, { force: true });

    if (this.mode === 'overwrite') await this.removeReplaced(previous, new Set(final.map((f) => f.path)));
    await this.cleanupTemp();
    await removeAbandonedTempDirs(path.dirname(this.tempDir)).catch((e: Error) => {
      process.emitWarning(`committed ${this.dir} but could not remove abandoned temp dirs: ${e.message}`);
    });
    return final;
  }

  /**
   * Undo a commit that died after moving parts in (its `_COMMITTING` marker is still here): delete
   * its parts that the manifest does not list, then the marker. Called with the lock held.
   */
  private async recoverInterruptedCommit(): Promise<void> {
    const marker = readCommitMarker(this.dir);
    if (!marker) return;
    const manifest = readManifest(this.dir);
    if (!(manifest && manifest.runId === marker.runId)) {
      const listed = new Set((manifest?.files ?? []).map((f) => path.resolve(this.dir, f.path)));
      for (const e of await fs.promises.readdir(this.dir, { withFileTypes: true })) {
        const m = PART_RE.exec(e.name);
        const full = path.join(this.dir, e.name);
        // An unreadable marker names no run: then every unlisted part of ours is suspect.
        if (e.isFile() && m && (marker.runId === '?' || m[1] === marker.runId) && !listed.has(full)) await fs.promises.rm(full, { force: true });
      }
    }
    await fs.promises.rm(path.join(this.dir, COMMIT_MARKER_NAME), { force: true });
  }

  /** Remove this run's temp files; leaves no file that looks like output. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    if (this.remote) {
      await deletePrefix(`${this.tempDir}/`);
      return;
    }
    await this.cleanupTemp();
    if (this.createdDir) {
      try {
        await fs.promises.rmdir(this.dir); // only if we made it and nothing else landed there
      } catch { /* not empty: leave it */ }
    }
  }

  /**
   * S3: put the commit marker, copy parts to their final keys, then PUT the manifest (the commit
   * point) conditionally on the manifest it was built from, re-reading and retrying when another
   * writer got there first; then delete what is replaced and the temp keys.
   */
  private async commitObjects(parts: WrittenFile[]): Promise<WrittenFile[]> {
    const prefix = `${this.tempDir}/`;
    const seen = new Set<string>();
    const { objects } = await listObjects(prefix);
    const present = new Set(objects.map((o) => o.uri));
    for (const part of parts) {
      const rest = part.path.startsWith(prefix) ? part.path.slice(prefix.length) : null;
      if (rest === null || rest === '' || rest.includes('/')) throw new Error(`part ${part.path} was not written by this writer (expected it under ${prefix})`);
      if (seen.has(part.path)) throw new Error(`part ${part.path} listed twice`);
      seen.add(part.path);
      if (!present.has(part.path)) throw new Error(`part ${part.path} is missing; was it written?`);
    }
    if (this.mode === 'error' && await readManifestS3(this.dir)) throw this.lostCreateRace();
    const markerUri = `${prefix}${COMMIT_MARKER_NAME}`;
    const final: WrittenFile[] = [];
    let replaced: Manifest | null = null;
    try {
      // Before any copy: a crash from here on leaves the marker, and readers of a prefix without a
      // manifest refuse it instead of reading the copies made so far.
      await putObject(markerUri, `${JSON.stringify(currentOwner(this.runId))}\n`, { contentType: 'application/json' });
      crashPointReached(0);
      // Copies run a few at a time: each is a server-side request whose time grows with the object.
      // mapLimit lets every copy in flight finish before it throws, so a failure cannot race a late copy.
      let copied = 0;
      const out = await mapLimit(parts, 8, async (part): Promise<WrittenFile> => {
        const file: WrittenFile = { path: `${this.dir}/${part.path.slice(prefix.length)}`, rows: part.rows, bytes: part.bytes };
        final.push(file); // before the copy: a failed copy may still have left the object
        await copyObject(part.path, file.path);
        crashPointReached(++copied);
        return file;
      });
      final.splice(0, final.length, ...out);
      replaced = await this.putManifestConditional(final);
    } catch (e) {
      // Not committed: take back the copies already made, so nothing half-written looks like output.
      await deleteObjects([...final.filter(Boolean).map((f) => f.path), markerUri]).catch(() => undefined);
      throw e;
    }
    this.state = 'committed';
    // Committed: what follows is housekeeping, and its failure must not undo the commit.
    try {
      if (this.mode === 'overwrite') await this.removeReplacedObjects(replaced, new Set(final.map((f) => f.path)));
      await deletePrefix(prefix);
      await this.removeAbandonedObjects();
    } catch (e) {
      process.emitWarning(`committed ${this.dir}/ but could not clean up: ${(e as Error).message}`);
    }
    return final;
  }

  private lostCreateRace(): Error {
    return new Error(`output prefix ${this.dir}/ was committed by another writer while this one was writing (mode 'error' lost the race; nothing of this write was kept); use mode 'overwrite' or 'append'`);
  }

  /**
   * The commit point on S3: PUT the manifest only if it is still the one this write was built on
   * (If-Match its ETag; If-None-Match: * when there was none). A lost race re-reads the manifest,
   * rebuilds (append: theirs + ours; overwrite: ours, replacing theirs; error: fail) and tries
   * again, with jittered exponential backoff, a bounded number of times. Returns the manifest
   * that was replaced.
   */
  private async putManifestConditional(ours: WrittenFile[]): Promise<Manifest | null> {
    const uri = `${this.dir}/${MANIFEST_NAME}`;
    const attempts = 30;
    for (let attempt = 1; ; attempt++) {
      const current = await readManifestTagged(this.dir);
      if (this.mode === 'error' && current) throw this.lostCreateRace();
      if (current?.manifest && this.mode === 'append' && current.manifest.format !== this.format) {
        throw new Error(`cannot append ${this.format} files to the ${current.manifest.format} dataset in ${this.dir}/ (committed meanwhile)`);
      }
      let listed = ours;
      if (this.mode === 'append') {
        const mine = new Set(ours.map((f) => f.path));
        listed = [...(await this.existingObjects(current?.manifest ?? null)).filter((f) => !mine.has(f.path)), ...ours];
      }
      const manifest: Manifest & { version: number } = {
        version: 1,
        format: this.format,
        runId: this.runId,
        files: listed.map((f) => ({ path: f.path.startsWith(`${this.dir}/`) ? f.path.slice(this.dir.length + 1) : f.path, rows: f.rows, bytes: f.bytes })),
        rows: listed.reduce((n, f) => n + f.rows, 0),
        committedAt: new Date().toISOString(),
      };
      try {
        await putObject(uri, `${JSON.stringify(manifest, null, 2)}\n`, {
          contentType: 'application/json', ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
        });
        return current?.manifest ?? null;
      } catch (e) {
        // 412: the manifest changed (or appeared) since we read it; 409: a concurrent conditional
        // write was in flight; 404 on If-Match: it was deleted meanwhile.
        const lost = isConditionFailure(e, current !== null);
        if (!lost) throw e;
        if (this.mode === 'error') throw this.lostCreateRace();
        if (attempt >= attempts) {
          throw new Error(`could not commit to ${this.dir}/: its ${MANIFEST_NAME} manifest changed under each of ${attempts} attempts (other writers are committing to it); nothing of this write was kept`);
        }
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(2000, 25 * 2 ** attempt)));
      }
    }
  }

  private async existingObjects(previous: Manifest | null): Promise<WrittenFile[]> {
    if (previous) {
      return previous.files.map((f) => ({ path: isRemotePath(f.path) ? f.path : `${this.dir}/${f.path}`, rows: f.rows, bytes: f.bytes }));
    }
    // No manifest: adopt the data files someone else put here, but not part files of ours: those
    // are another writer's copies in flight (its manifest will list them) or a crashed commit's.
    const { objects } = await listObjects(`${this.dir}/`, { delimiter: '/' });
    const out: WrittenFile[] = [];
    for (const o of objects) {
      const name = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (!isOutputName(name) || !EXTENSIONS[this.format].some((x) => name.toLowerCase().endsWith(x)) || PART_RE.test(name)) continue;
      out.push({ path: o.uri, rows: this.format === 'parquet' ? inspectParquet(o.uri).numRows : -1, bytes: o.size });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  /**
   * After an overwrite: delete the files of the manifest we replaced, and part files no manifest
   * lists that are older than FOREIGN_TEMP_STALE_MS (left by crashed commits). Younger unlisted
   * parts may be a concurrent writer's copies that its manifest is about to list.
   */
  private async removeReplacedObjects(previous: Manifest | null, keep: Set<string>): Promise<void> {
    const doomed = new Set<string>();
    if (previous) for (const f of previous.files) doomed.add(isRemotePath(f.path) ? f.path : `${this.dir}/${f.path}`);
    const { objects } = await listObjects(`${this.dir}/`, { delimiter: '/' });
    const now = Date.now();
    for (const o of objects) {
      const name = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (/^part-\d+-.+/.test(name) && EXTENSIONS[this.format].some((x) => name.endsWith(x)) && now - o.lastModified > FOREIGN_TEMP_STALE_MS) doomed.add(o.uri);
    }
    await deleteObjects([...doomed].filter((f) => !keep.has(f)));
  }

  /**
   * After a commit: remove other runs' `_temporary/<runId>/` keys once nothing was written there
   * for FOREIGN_TEMP_STALE_MS, and, when the run had started committing (its marker is there),
   * its copied parts that the manifest does not list. Only age counts: writers to S3 run on other
   * machines (Lambda sandboxes may even share a host name), so a pid says nothing here.
   */
  private async removeAbandonedObjects(): Promise<void> {
    const root = `${this.dir}/${TEMP_DIR_NAME}/`;
    const { objects } = await listObjects(root);
    if (!objects.length) return;
    const byRun = new Map<string, typeof objects>();
    for (const o of objects) {
      const run = o.uri.slice(root.length).split('/')[0]!;
      if (run === this.runId) continue;
      byRun.set(run, [...(byRun.get(run) ?? []), o]);
    }
    const now = Date.now();
    let manifest: Manifest | null | undefined;
    for (const [run, objs] of byRun) {
      if (!objs.every((o) => now - o.lastModified > FOREIGN_TEMP_STALE_MS)) continue;
      if (objs.some((o) => o.uri === `${root}${run}/${COMMIT_MARKER_NAME}`)) {
        manifest ??= await readManifestS3(this.dir);
        const listed = new Set((manifest?.files ?? []).map((f) => (isRemotePath(f.path) ? f.path : `${this.dir}/${f.path}`)));
        const { objects: top } = await listObjects(`${this.dir}/`, { delimiter: '/' });
        const copies = top.filter((o) => PART_RE.exec(o.key.slice(o.key.lastIndexOf('/') + 1))?.[1] === run && !listed.has(o.uri));
        await deleteObjects(copies.map((o) => o.uri));
      }
      await deleteObjects(objs.map((o) => o.uri));
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

/** The manifest committed under an S3 prefix, or null. */
export async function readManifestS3(dir: string): Promise<Manifest | null> {
  const uri = `${trimSlash(dir)}/${MANIFEST_NAME}`;
  // List first: without s3:ListBucket on the whole bucket (IAM scoped to a prefix), S3 answers a
  // GetObject of a missing key with 403, not 404; listing under the prefix is allowed.
  const { objects } = await listObjects(`${trimSlash(dir)}/`, { delimiter: '/' });
  if (!objects.some((o) => o.uri === uri)) return null;
  const got = await getObjectOrNull(uri);
  return got ? parseManifest(Buffer.from(got.bytes).toString('utf8'), uri) : null;
}

/** The manifest under an S3 prefix with the ETag it was read at (for a conditional replace), or null. */
async function readManifestTagged(dir: string): Promise<{ manifest: Manifest | null; etag: string } | null> {
  const uri = `${trimSlash(dir)}/${MANIFEST_NAME}`;
  const { objects } = await listObjects(`${trimSlash(dir)}/`, { delimiter: '/' }); // 403-safe, as in readManifestS3
  if (!objects.some((o) => o.uri === uri)) return null;
  const got = await getObjectOrNull(uri);
  return got ? { manifest: parseManifest(Buffer.from(got.bytes).toString('utf8'), uri), etag: got.etag } : null;
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/**
 * Remove `_temporary/<runId>.pid<pid>.<host>/` directories (under `tempRoot`) of writers that are
 * gone: the pid on this host is no longer running, or (another host, or a name without an owner)
 * nothing in them changed for FOREIGN_TEMP_STALE_MS. Then `_temporary` itself if empty.
 */
async function removeAbandonedTempDirs(tempRoot: string): Promise<void> {
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(tempRoot, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const now = Date.now();
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const dir = path.join(tempRoot, e.name);
    const owner = /^.+\.pid(\d+)\.([A-Za-z0-9_-]+)$/.exec(e.name);
    let gone: boolean;
    if (owner && owner[2] === safeHost(hostname())) {
      gone = !pidAlive(Number(owner[1]));
    } else {
      const st = await fs.promises.stat(dir).catch(() => null); // changes as parts are added
      gone = st !== null && now - st.mtimeMs > FOREIGN_TEMP_STALE_MS;
    }
    if (gone) await fs.promises.rm(dir, { recursive: true, force: true });
  }
  await fs.promises.rmdir(tempRoot).catch(() => undefined); // only when no run is in flight
}

/**
 * An exclusive lock on a local output directory: `_SUCCESS.lock`, holding its owner (pid, host,
 * start time, run id). It appears atomically with its content (written to a private name, then
 * hard-linked into place; the link fails if the lock exists). A lock whose owner is gone is broken
 * at once: same host and the pid is not running, or another host and older than
 * FOREIGN_OWNER_STALE_MS (commits take seconds). A live owner's lock is waited for up to 120 s.
 */
async function lockDir(dir: string, runId: string): Promise<() => Promise<void>> {
  const lock = path.join(dir, `${MANIFEST_NAME}.lock`);
  const me = { ...currentOwner(runId), nonce: randomBytes(8).toString('hex') };
  const text = `${JSON.stringify(me)}\n`;
  const mine = `${lock}.${me.nonce}`;
  await fs.promises.writeFile(mine, text);
  const release = async (): Promise<void> => {
    // Only our own lock: if it was (wrongly) broken and retaken, the new holder keeps theirs.
    const now = await fs.promises.readFile(lock, 'utf8').catch(() => null);
    if (now === text) await fs.promises.rm(lock, { force: true });
  };
  try {
    const deadline = Date.now() + 120_000;
    for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
      try {
        await fs.promises.link(mine, lock);
        return release;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV') {
          // No hard links here: create exclusively, then fill in (a reader may briefly see it empty).
          try {
            await fs.promises.writeFile(lock, text, { flag: 'wx' });
            return release;
          } catch (e2) {
            if ((e2 as NodeJS.ErrnoException).code !== 'EEXIST') throw e2;
          }
        } else if (code !== 'EEXIST') {
          throw e;
        }
      }
      const held = await fs.promises.readFile(lock, 'utf8').catch(() => null);
      if (held === null) continue; // released meanwhile
      const owner = parseOwner(held);
      let stale: string | null = null;
      if (owner && ownerGone(owner)) {
        stale = `its owner (${describeOwner(owner)}) is gone`;
      } else if (!owner) {
        // Unreadable (an older fanout's empty lock, or one being filled in): judge by its age.
        const st = await fs.promises.stat(lock).catch(() => null);
        if (st && Date.now() - st.mtimeMs > FOREIGN_OWNER_STALE_MS) stale = `it is unreadable and older than ${FOREIGN_OWNER_STALE_MS / 60_000} minutes`;
      }
      if (stale) {
        await breakLock(lock, held);
        process.emitWarning(`broke the commit lock ${lock}: ${stale}`);
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(`could not lock ${dir} for commit within 120 s: ${lock} is held by another writer${owner ? ` (${describeOwner(owner)})` : ''}`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await fs.promises.rm(mine, { force: true });
  }
}

/**
 * Remove a stale lock whose content was `held`, without removing a fresh lock that another waiter
 * took after breaking the same stale one: move it aside, check it is the one judged stale, and put
 * it back (if the name is still free) when it is not.
 */
async function breakLock(lock: string, held: string): Promise<void> {
  const aside = `${lock}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await fs.promises.rename(lock, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else broke or released it
    throw e;
  }
  const moved = await fs.promises.readFile(aside, 'utf8').catch(() => null);
  if (moved !== held) await fs.promises.link(aside, lock).catch(() => undefined);
  await fs.promises.rm(aside, { force: true });
}

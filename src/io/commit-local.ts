// The local-directory commit protocol: parts are renamed from dir/_temporary/<runId>.pid<pid>.<host>/
// into dir under `_SUCCESS.lock` (its owner inside; a lock whose owner is gone is broken at once),
// with a `_COMMITTING` marker from before the first rename until `_SUCCESS` is written; the next
// commit removes what a crashed one had moved in, and temp dirs of writers that are gone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { inspectParquet } from './parquet/index.ts';
import { EXTENSIONS, MANIFEST_NAME, TEMP_DIR_NAME, readManifest, type FileFormat, type Manifest } from './paths.ts';
import {
  COMMIT_MARKER_NAME,
  FOREIGN_OWNER_STALE_MS,
  FOREIGN_TEMP_STALE_MS,
  currentOwner,
  describeOwner,
  ownerGone,
  parseOwner,
  pidAlive,
  readCommitMarker,
} from './commit-state.ts';
import {
  PART_RE,
  crashPointReached,
  isOutputName,
  newRunId,
  partitionDirOf,
  relativePartPath,
  type RunPlace,
  type WriteMode,
  type WriteRun,
  type WrittenFile,
} from './commit-common.ts';

/** Host names as they appear in temp dir names (file-name safe). */
function safeHost(h: string): string {
  return h.replace(/[^A-Za-z0-9-]/g, '_').slice(0, 100);
}

/** `.pid<pid>.<host>`: the suffix of a local temp dir name after the run id. */
function tempOwnerSuffix(): string {
  return `.pid${process.pid}.${safeHost(hostname())}`;
}

/** Prepares a write into a local directory: checks `mode` against what is there, makes the run's temp dir. */
export async function beginLocal(dir: string, format: FileFormat, mode: WriteMode): Promise<RunPlace> {
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
      throw new Error(
        `output directory ${abs} already holds data (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); use mode 'overwrite' or 'append'`,
      );
    }
  }
  if (st && (mode === 'append' || mode === 'overwrite-partitions')) {
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
  return { dir: abs, runId, tempDir, createdDir };
}

/** Moves the parts in under the directory's commit lock (see commitLocked); `committed` is called at the commit point. */
export async function commitLocal(w: WriteRun, parts: WrittenFile[], committed: () => void): Promise<WrittenFile[]> {
  const seen = new Set<string>();
  for (const part of parts) {
    const p = path.resolve(part.path);
    // Directly in the temp dir, or in hive partition directories below it.
    if (relativePartPath(path.relative(w.tempDir, p).split(path.sep).join('/')) === null) {
      throw new Error(`part ${part.path} was not written by this writer (expected it in ${w.tempDir})`);
    }
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
  const release = await lockDir(w.dir, w.runId);
  try {
    return await commitLocked(w, parts, committed);
  } finally {
    await release();
  }
}

async function commitLocked(w: WriteRun, parts: WrittenFile[], committed: () => void): Promise<WrittenFile[]> {
  // We hold the lock, so a marker left here belongs to a commit that died holding it.
  await recoverInterruptedCommit(w);
  const previous = w.mode === 'error' ? null : readManifest(w.dir);
  if (w.mode === 'error' && readManifest(w.dir))
    throw new Error(`output directory ${w.dir} already holds a committed dataset (written meanwhile); use mode 'overwrite' or 'append'`);
  const final: WrittenFile[] = [];
  let replacedPartitions: string[] = [];
  const marker = path.join(w.dir, COMMIT_MARKER_NAME);
  try {
    // The intent marker goes in before any part, so a crash from here on is visible to readers.
    const tmpMarker = path.join(w.tempDir, `${COMMIT_MARKER_NAME}.json`);
    await fs.promises.writeFile(tmpMarker, `${JSON.stringify(currentOwner(w.runId))}\n`);
    await fs.promises.rename(tmpMarker, marker);
    crashPointReached(0);
    for (const part of parts) {
      const rel = path.relative(w.tempDir, path.resolve(part.path));
      const to = path.join(w.dir, rel);
      if (rel !== path.basename(rel)) await fs.promises.mkdir(path.dirname(to), { recursive: true });
      await fs.promises.rename(path.resolve(part.path), to);
      final.push({ path: to, rows: part.rows, bytes: part.bytes });
      crashPointReached(final.length);
    }
    let listed: WrittenFile[] = final;
    if (w.mode === 'append') listed = [...existingFiles(w, previous), ...final];
    if (w.mode === 'overwrite-partitions') {
      const split = keptPartitions(w, previous, final);
      listed = [...split.kept, ...final];
      replacedPartitions = split.replaced;
    }
    const manifest: Manifest & { version: number } = {
      version: 1,
      format: w.format,
      runId: w.runId,
      files: listed.map((f) => ({ path: path.relative(w.dir, f.path).split(path.sep).join('/'), rows: f.rows, bytes: f.bytes })),
      rows: listed.reduce((n, f) => n + f.rows, 0),
      committedAt: new Date().toISOString(),
      ...w.manifestExtra,
    };
    const tmpManifest = path.join(w.tempDir, `${MANIFEST_NAME}.json`);
    await fs.promises.writeFile(tmpManifest, `${JSON.stringify(manifest, null, 2)}\n`);
    await fs.promises.rename(tmpManifest, path.join(w.dir, MANIFEST_NAME)); // the commit point
  } catch (e) {
    // Not committed: take back the parts already moved, so nothing half-written looks like output.
    await Promise.all(final.map((f) => fs.promises.rm(f.path, { force: true })));
    await fs.promises.rm(marker, { force: true });
    throw e;
  }
  committed();
  await fs.promises.rm(marker, { force: true });

  if (w.mode === 'overwrite') await removeReplaced(w, previous, new Set(final.map((f) => f.path)));
  if (w.mode === 'overwrite-partitions') await removeFiles(w.dir, replacedPartitions, new Set(final.map((f) => f.path)));
  await cleanupTemp(w);
  await removeAbandonedTempDirs(path.dirname(w.tempDir)).catch((e: Error) => {
    process.emitWarning(`committed ${w.dir} but could not remove abandoned temp dirs: ${e.message}`);
  });
  return final;
}

/**
 * Undo a commit that died after moving parts in (its `_COMMITTING` marker is still here): delete
 * its parts that the manifest does not list, then the marker. Called with the lock held.
 */
async function recoverInterruptedCommit(w: WriteRun): Promise<void> {
  const marker = readCommitMarker(w.dir);
  if (!marker) return;
  const manifest = readManifest(w.dir);
  if (!(manifest && manifest.runId === marker.runId)) {
    const listed = new Set((manifest?.files ?? []).map((f) => path.resolve(w.dir, f.path)));
    // Parts may be in hive partition directories as well as at the top.
    for (const full of dataFilesBelow(w.dir, w.format)) {
      const m = PART_RE.exec(path.basename(full));
      // An unreadable marker names no run: then every unlisted part of ours is suspect.
      if (m && (marker.runId === '?' || m[1] === marker.runId) && !listed.has(full)) await fs.promises.rm(full, { force: true });
    }
  }
  await fs.promises.rm(path.join(w.dir, COMMIT_MARKER_NAME), { force: true });
}

/** Data files below `dir` at any depth (hive partition directories), skipping `_*` and `.*` entries. */
function dataFilesBelow(dir: string, format: FileFormat, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!isOutputName(e.name)) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) dataFilesBelow(full, format, out);
    else if (e.isFile() && EXTENSIONS[format].some((x) => e.name.toLowerCase().endsWith(x))) out.push(full);
  }
  return out;
}

/**
 * overwrite-partitions: the committed files outside the partition directories this write has
 * files in (kept and listed again), and those inside them (replaced: deleted once committed).
 * Without a manifest, the data files found below dir stand for it.
 */
function keptPartitions(w: WriteRun, previous: Manifest | null, ours: WrittenFile[]): { kept: WrittenFile[]; replaced: string[] } {
  const mine = new Set(ours.map((f) => f.path));
  const written = new Set(ours.map((f) => partitionDirOf(path.relative(w.dir, f.path).split(path.sep).join('/'))));
  const before: WrittenFile[] = previous
    ? previous.files.map((f) => ({ path: path.resolve(w.dir, f.path), rows: f.rows, bytes: f.bytes }))
    : dataFilesBelow(w.dir, w.format)
        .filter((f) => !mine.has(f))
        .map((f) => ({ path: f, rows: w.format === 'parquet' ? inspectParquet(f).numRows : -1, bytes: fs.statSync(f).size }));
  const kept: WrittenFile[] = [];
  const replaced: string[] = [];
  for (const f of before) {
    if (mine.has(f.path)) continue;
    if (written.has(partitionDirOf(path.relative(w.dir, f.path).split(path.sep).join('/')))) replaced.push(f.path);
    else kept.push(f);
  }
  // Part files of earlier runs in the replaced directories go too, listed or not.
  for (const d of written) {
    const abs = path.join(w.dir, ...d.split('/').filter(Boolean));
    for (const e of fs.existsSync(abs) ? fs.readdirSync(abs, { withFileTypes: true }) : []) {
      const full = path.join(abs, e.name);
      if (e.isFile() && PART_RE.test(e.name) && !mine.has(full) && !replaced.includes(full)) replaced.push(full);
    }
  }
  return { kept, replaced };
}

/** Deletes `files` (not those in `keep`), then the partition directories they leave empty. */
async function removeFiles(dir: string, files: readonly string[], keep: Set<string>): Promise<void> {
  const parents = new Set<string>();
  for (const f of files) {
    if (keep.has(f)) continue;
    await fs.promises.rm(f, { force: true });
    parents.add(path.dirname(f));
  }
  for (let d of parents) {
    while (d.startsWith(dir + path.sep) && d !== dir) {
      try {
        await fs.promises.rmdir(d);
      } catch {
        break; // not empty
      }
      d = path.dirname(d);
    }
  }
}

/** Files an append keeps: the previous manifest's, or (no manifest) the data files found in dir. */
function existingFiles(w: WriteRun, previous: Manifest | null): WrittenFile[] {
  if (previous) return previous.files.map((f) => ({ path: path.resolve(w.dir, f.path), rows: f.rows, bytes: f.bytes }));
  const out: WrittenFile[] = [];
  for (const e of fs.readdirSync(w.dir, { withFileTypes: true })) {
    if (!e.isFile() || !isOutputName(e.name) || !EXTENSIONS[w.format].some((x) => e.name.toLowerCase().endsWith(x))) continue;
    const full = path.join(w.dir, e.name);
    if (full.includes(w.runId)) continue; // our own parts, just renamed in
    const bytes = fs.statSync(full).size;
    // Unknown row counts for foreign CSV files are recorded as -1.
    const rows = w.format === 'parquet' ? inspectParquet(full).numRows : -1;
    out.push({ path: full, rows, bytes });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** After an overwrite commit: delete what the old manifest listed and old part files. */
async function removeReplaced(w: WriteRun, previous: Manifest | null, keep: Set<string>): Promise<void> {
  const doomed = new Set<string>();
  if (previous) for (const f of previous.files) doomed.add(path.resolve(w.dir, f.path));
  for (const e of await fs.promises.readdir(w.dir, { withFileTypes: true })) {
    // Earlier runs' parts, manifest or not; unrelated files are left alone.
    if (e.isFile() && /^part-\d+-.+/.test(e.name) && EXTENSIONS[w.format].some((x) => e.name.endsWith(x))) {
      doomed.add(path.join(w.dir, e.name));
    }
  }
  await removeFiles(w.dir, [...doomed], keep);
}

export async function cleanupTemp(w: WriteRun): Promise<void> {
  await fs.promises.rm(w.tempDir, { recursive: true, force: true });
  const tempRoot = path.dirname(w.tempDir);
  try {
    await fs.promises.rmdir(tempRoot); // only when no other run is in flight
  } catch {
    /* other runs' temp dirs remain */
  }
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

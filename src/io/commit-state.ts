// Who is committing into a dataset directory, and whether they are still around. Shared by the
// writer (commit marker, lock, temp-dir cleanup) and the readers (refusing a directory whose
// commit was interrupted), so both judge "owner gone" the same way.
import * as fs from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';

/** Written into a directory before a commit moves any file in; removed once `_SUCCESS` is written. */
export const COMMIT_MARKER_NAME = '_COMMITTING';

/**
 * A lock or commit marker counts as abandoned once it is this old, whatever its owner: a process
 * on another host cannot be checked for liveness, and one on this host may have died and left its
 * pid to another process. Local commits (renames and one manifest write) take seconds, so 10
 * minutes is far beyond a live one.
 */
export const FOREIGN_OWNER_STALE_MS = 10 * 60_000;
/**
 * A `_temporary/<runId>.../` directory of a writer on another host (or without an owner in its
 * name), and any S3 `_temporary/<runId>/` prefix, is removed by a later commit only when nothing in
 * it changed for this long: a live writer elsewhere may spend hours writing its parts.
 */
export const FOREIGN_TEMP_STALE_MS = 24 * 3600_000;

export interface Owner {
  pid: number;
  host: string;
  /** ISO time the owner started this write / took this lock. */
  startedAt: string;
  runId: string;
}

export function currentOwner(runId: string): Owner {
  return { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), runId };
}

/** Is process `pid` on this host running? (EPERM: it exists but belongs to someone else.) */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Is the owner of a lock or commit marker gone? Same host: its pid is not running. Any host: it
 * is older than FOREIGN_OWNER_STALE_MS (on this host that covers a pid reused by another process);
 * a record without a valid startedAt counts as gone.
 */
export function ownerGone(owner: Owner, now = Date.now()): boolean {
  const t = Date.parse(owner.startedAt);
  if (!Number.isFinite(t) || now - t > FOREIGN_OWNER_STALE_MS) return true;
  return owner.host === hostname() && !pidAlive(owner.pid);
}

export function parseOwner(text: string): Owner | null {
  try {
    const o = JSON.parse(text) as Partial<Owner> | null;
    if (o && typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.startedAt === 'string' && typeof o.runId === 'string') return o as Owner;
  } catch {
    /* not ours, or half-written */
  }
  return null;
}

export function describeOwner(o: Owner): string {
  return `run ${o.runId} (pid ${o.pid} on ${o.host}, started ${o.startedAt})`;
}

/** The commit marker in a local directory, or null. An unreadable marker still means "a commit was here". */
export function readCommitMarker(dir: string): Owner | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, COMMIT_MARKER_NAME), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new Error(`cannot read commit marker ${path.join(dir, COMMIT_MARKER_NAME)}: ${(e as Error).message}`);
  }
  return parseOwner(text) ?? { pid: 0, host: '?', startedAt: '?', runId: '?' };
}

/**
 * Why a directory with commit marker `marker` must not be read as a dataset, or null when it may
 * be (the marked commit finished: its manifest is there; or it is still running and the previous
 * manifest, which it has not replaced yet, is the dataset).
 */
export function interruptedCommitError(
  where: string,
  markerPath: string,
  marker: Owner | null,
  manifestRunId: string | null | undefined,
  hasManifest: boolean,
): Error | null {
  if (!marker) return null;
  if (hasManifest && manifestRunId === marker.runId) return null; // committed; only the marker's removal was lost
  const running = !ownerGone(marker);
  if (running && hasManifest) return null;
  return new Error(
    `${where} is not a complete dataset: the commit of ${describeOwner(marker)} ${running ? 'is still in progress' : 'was interrupted'} ` +
      `(${markerPath} is present, ${hasManifest ? 'the _SUCCESS manifest is from an earlier run' : 'there is no _SUCCESS manifest'}); ` +
      (running ? 'read it once that commit finishes' : "write it again with mode 'overwrite' (or append to it) to recover"),
  );
}

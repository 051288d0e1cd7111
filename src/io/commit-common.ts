// What both commit protocols (commit-local.ts, commit-objects.ts) and the DatasetWriter share.
import { randomBytes } from 'node:crypto';
import type { FileFormat } from './paths.ts';

export interface WrittenFile {
  path: string;
  rows: number;
  bytes: number;
}
/** 'overwrite-partitions': replace only the hive partition directories this write has files in; keep the others. */
export type WriteMode = 'error' | 'overwrite' | 'append' | 'overwrite-partitions';

/** The write a commit protocol works on (a DatasetWriter). */
export interface WriteRun {
  readonly dir: string;
  readonly format: FileFormat;
  readonly mode: WriteMode;
  readonly runId: string;
  readonly tempDir: string;
  /** Fields the manifest carries besides the files (a partial result's `complete: false`). */
  readonly manifestExtra?: Record<string, unknown> | undefined;
}

/** Where a begun write lives: what a protocol's begin returns for the DatasetWriter. */
export interface RunPlace {
  dir: string;
  runId: string;
  tempDir: string;
  createdDir: boolean;
}

/** Sortable run ids (UTC time to the millisecond, then random): later appends sort after earlier ones. */
export function newRunId(): string {
  const t = new Date().toISOString().replace(/[-:.]/g, '');
  return `${t}-${randomBytes(4).toString('hex')}`;
}

export function isOutputName(name: string): boolean {
  return !name.startsWith('.') && !name.startsWith('_');
}

/** Part files this writer names (`part-00007-20261130T010258123Z-1a2b3c4d.parquet`): [, runId]. */
export const PART_RE = /^part-\d{5,}-(\d{8}T\d{9}Z-[0-9a-f]{8})\.[A-Za-z]+$/;

/** Test hook (see writer.ts's header): SIGKILL this process once `moved` parts were moved in. */
export function crashPointReached(moved: number): void {
  const at = process.env.FANOUT_TEST_CRASH_AFTER_RENAMES;
  if (at !== undefined && at !== '' && moved >= Number(at)) process.kill(process.pid, 'SIGKILL');
}

/** The directory of a committed file relative to the dataset ('' at its top): its hive partition. */
export function partitionDirOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * A part's path below the run's temp dir (`/`-separated), checked: parts live in the temp dir or
 * in partition directories below it, never outside it. Null when it is not below it.
 */
export function relativePartPath(rel: string): string | null {
  if (rel === '' || rel.startsWith('/')) return null;
  const segs = rel.split('/');
  if (segs.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('_') || s.startsWith('.'))) return null;
  return rel;
}

// The object-store commit protocol: parts are written under <dir>/_temporary/<runId>/, copied to
// their final keys after a `_COMMITTING` marker, and the commit point is a conditional PUT of the
// `_SUCCESS` manifest (If-Match its ETag, If-None-Match: * to create), re-read and retried on a lost
// race so concurrent appends never drop a file.
import { mapLimit } from '../concurrency.ts';
import { inspectParquet } from './parquet/index.ts';
import { EXTENSIONS, MANIFEST_NAME, TEMP_DIR_NAME, parseManifest, type FileFormat, type Manifest } from './paths.ts';
import { COMMIT_MARKER_NAME, FOREIGN_TEMP_STALE_MS, currentOwner } from './commit-state.ts';
import {
  copyObject,
  deleteObjects,
  deletePrefix,
  getObjectOrNull,
  isConditionFailure,
  isRemotePath,
  listObjects,
  putObject,
  storeFor,
  trimSlash,
} from './store/index.ts';
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

/** Prepares a write under an object-store prefix: checks `mode` against what is there. */
export async function beginObjects(dir: string, format: FileFormat, mode: WriteMode): Promise<RunPlace> {
  const base = trimSlash(dir);
  storeFor(base); // validates the URI (bucket name)
  // Top level only: "sub-directories" come back as prefixes.
  const { objects, prefixes } = await listObjects(`${base}/`, { delimiter: '/' });
  const names = [...objects.map((o) => o.key), ...prefixes.map((p) => p.replace(/\/$/, ''))].map((k) => k.slice(k.lastIndexOf('/') + 1));
  if (mode === 'error') {
    const existing = names.filter((n) => isOutputName(n) || n === MANIFEST_NAME);
    if (existing.length > 0) {
      throw new Error(
        `output prefix ${base}/ already holds data (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); use mode 'overwrite' or 'append'`,
      );
    }
  }
  const previous = (mode === 'append' || mode === 'overwrite-partitions') && names.includes(MANIFEST_NAME) ? await readManifestS3(base) : null;
  if (previous && previous.format !== format) throw new Error(`cannot append ${format} files to the ${previous.format} dataset in ${base}/`);
  let runId = newRunId();
  while (previous?.runId && runId <= previous.runId) {
    await new Promise((r) => setTimeout(r, 2));
    runId = newRunId();
  }
  return { dir: base, runId, tempDir: `${base}/${TEMP_DIR_NAME}/${runId}`, createdDir: false };
}

/**
 * A part whose bytes are already an object elsewhere in the store (a serverless run's partition
 * result): `path` is still its place under the writer's temp prefix (it names the final key), but
 * nothing is written there; the commit copies `source` straight to the final key, one copy instead
 * of two (temp, then final). Committing stays atomic: the copies still happen after the
 * `_COMMITTING` marker and before the manifest, and a crash leaves them for the same clean-up.
 */
export interface AdoptedPart extends WrittenFile {
  source: string;
}

const adoptedSource = (part: WrittenFile): string | undefined => (part as Partial<AdoptedPart>).source;

/**
 * S3: put the commit marker, copy parts to their final keys, then PUT the manifest (the commit
 * point) conditionally on the manifest it was built from, re-reading and retrying when another
 * writer got there first; then delete what is replaced and the temp keys.
 */
export async function commitObjects(w: WriteRun, parts: WrittenFile[], committed: () => void): Promise<WrittenFile[]> {
  const prefix = `${w.tempDir}/`;
  const seen = new Set<string>();
  // Adopted parts were never written under the prefix: only written ones need the listing.
  const present = parts.some((p) => adoptedSource(p) === undefined) ? new Set((await listObjects(prefix)).objects.map((o) => o.uri)) : new Set<string>();
  for (const part of parts) {
    const rest = part.path.startsWith(prefix) ? part.path.slice(prefix.length) : null;
    // Directly under the temp prefix, or in hive partition "directories" below it.
    if (rest === null || relativePartPath(rest) === null) throw new Error(`part ${part.path} was not written by this writer (expected it under ${prefix})`);
    if (seen.has(part.path)) throw new Error(`part ${part.path} listed twice`);
    seen.add(part.path);
    const source = adoptedSource(part);
    if (source !== undefined) {
      if (!isRemotePath(source)) throw new Error(`part ${part.path}: its source ${source} is not in an object store`);
    } else if (!present.has(part.path)) throw new Error(`part ${part.path} is missing; was it written?`);
  }
  if (w.mode === 'error' && (await readManifestS3(w.dir))) throw lostCreateRace(w);
  const markerUri = `${prefix}${COMMIT_MARKER_NAME}`;
  const final: WrittenFile[] = [];
  let replaced: Manifest | null = null;
  try {
    // Before any copy: a crash from here on leaves the marker, and readers of a prefix without a
    // manifest refuse it instead of reading the copies made so far.
    await putObject(markerUri, `${JSON.stringify(currentOwner(w.runId))}\n`, { contentType: 'application/json' });
    crashPointReached(0);
    // Copies run a few at a time: each is a server-side request whose time grows with the object.
    // mapLimit lets every copy in flight finish before it throws, so a failure cannot race a late copy.
    let copied = 0;
    const out = await mapLimit(parts, 8, async (part): Promise<WrittenFile> => {
      const file: WrittenFile = { path: `${w.dir}/${part.path.slice(prefix.length)}`, rows: part.rows, bytes: part.bytes };
      final.push(file); // before the copy: a failed copy may still have left the object
      await copyObject(adoptedSource(part) ?? part.path, file.path);
      crashPointReached(++copied);
      return file;
    });
    final.splice(0, final.length, ...out);
    replaced = await putManifestConditional(w, final);
  } catch (e) {
    // Not committed: take back the copies already made, so nothing half-written looks like output.
    await deleteObjects([...final.filter(Boolean).map((f) => f.path), markerUri]).catch(() => undefined);
    throw e;
  }
  committed();
  // Committed: what follows is housekeeping, and its failure must not undo the commit.
  try {
    if (w.mode === 'overwrite') await removeReplacedObjects(w, replaced, new Set(final.map((f) => f.path)));
    if (w.mode === 'overwrite-partitions') await deleteObjects((await splitPartitions(w, replaced, final)).replaced);
    await deletePrefix(prefix);
    await removeAbandonedObjects(w);
  } catch (e) {
    process.emitWarning(`committed ${w.dir}/ but could not clean up: ${(e as Error).message}`);
  }
  return final;
}

function lostCreateRace(w: WriteRun): Error {
  return new Error(
    `output prefix ${w.dir}/ was committed by another writer while this one was writing (mode 'error' lost the race; nothing of this write was kept); use mode 'overwrite' or 'append'`,
  );
}

/**
 * The commit point on S3: PUT the manifest only if it is still the one this write was built on
 * (If-Match its ETag; If-None-Match: * when there was none). A lost race re-reads the manifest,
 * rebuilds (append: theirs + ours; overwrite: ours, replacing theirs; error: fail) and tries
 * again, with jittered exponential backoff, a bounded number of times. Returns the manifest
 * that was replaced.
 */
async function putManifestConditional(w: WriteRun, ours: WrittenFile[]): Promise<Manifest | null> {
  const uri = `${w.dir}/${MANIFEST_NAME}`;
  const attempts = 30;
  for (let attempt = 1; ; attempt++) {
    const current = await readManifestTagged(w.dir);
    if (w.mode === 'error' && current) throw lostCreateRace(w);
    if (current?.manifest && w.mode === 'append' && current.manifest.format !== w.format) {
      throw new Error(`cannot append ${w.format} files to the ${current.manifest.format} dataset in ${w.dir}/ (committed meanwhile)`);
    }
    let listed = ours;
    if (w.mode === 'overwrite-partitions') listed = [...(await splitPartitions(w, current?.manifest ?? null, ours)).kept, ...ours];
    if (w.mode === 'append') {
      const mine = new Set(ours.map((f) => f.path));
      listed = [...(await existingObjects(w, current?.manifest ?? null)).filter((f) => !mine.has(f.path)), ...ours];
    }
    const manifest: Manifest & { version: number } = {
      version: 1,
      format: w.format,
      runId: w.runId,
      files: listed.map((f) => ({ path: f.path.startsWith(`${w.dir}/`) ? f.path.slice(w.dir.length + 1) : f.path, rows: f.rows, bytes: f.bytes })),
      rows: listed.reduce((n, f) => n + f.rows, 0),
      committedAt: new Date().toISOString(),
      ...w.manifestExtra,
    };
    try {
      await putObject(uri, `${JSON.stringify(manifest, null, 2)}\n`, {
        contentType: 'application/json',
        ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
      });
      return current?.manifest ?? null;
    } catch (e) {
      // 412: the manifest changed (or appeared) since we read it; 409: a concurrent conditional
      // write was in flight; 404 on If-Match: it was deleted meanwhile.
      const lost = isConditionFailure(e, current !== null);
      if (!lost) throw e;
      if (w.mode === 'error') throw lostCreateRace(w);
      if (attempt >= attempts) {
        throw new Error(
          `could not commit to ${w.dir}/: its ${MANIFEST_NAME} manifest changed under each of ${attempts} attempts (other writers are committing to it); nothing of this write was kept`,
        );
      }
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(2000, 25 * 2 ** attempt)));
    }
  }
}

/**
 * overwrite-partitions: the committed files outside the partition "directories" this write has
 * files in (kept, listed again) and those inside them (replaced). Without a manifest, the data
 * objects found below the prefix stand for it (never part files of ours: other writers' copies).
 */
async function splitPartitions(w: WriteRun, previous: Manifest | null, ours: WrittenFile[]): Promise<{ kept: WrittenFile[]; replaced: string[] }> {
  const mine = new Set(ours.map((f) => f.path));
  const rel = (uri: string): string => (uri.startsWith(`${w.dir}/`) ? uri.slice(w.dir.length + 1) : uri);
  const written = new Set(ours.map((f) => partitionDirOf(rel(f.path))));
  let before: WrittenFile[];
  if (previous) {
    before = previous.files.map((f) => ({ path: isRemotePath(f.path) ? f.path : `${w.dir}/${f.path}`, rows: f.rows, bytes: f.bytes }));
  } else {
    const { objects } = await listObjects(`${w.dir}/`);
    before = objects
      .filter((o) => {
        const r = rel(o.uri);
        const name = r.slice(r.lastIndexOf('/') + 1);
        return !r.split('/').some((s) => !isOutputName(s)) && EXTENSIONS[w.format].some((x) => name.toLowerCase().endsWith(x)) && !PART_RE.test(name);
      })
      .map((o) => ({ path: o.uri, rows: w.format === 'parquet' ? inspectParquet(o.uri).numRows : -1, bytes: o.size }));
  }
  const kept: WrittenFile[] = [];
  const replaced: string[] = [];
  for (const f of before) {
    if (mine.has(f.path)) continue;
    if (written.has(partitionDirOf(rel(f.path)))) replaced.push(f.path);
    else kept.push(f);
  }
  return { kept, replaced };
}

async function existingObjects(w: WriteRun, previous: Manifest | null): Promise<WrittenFile[]> {
  if (previous) {
    return previous.files.map((f) => ({ path: isRemotePath(f.path) ? f.path : `${w.dir}/${f.path}`, rows: f.rows, bytes: f.bytes }));
  }
  // No manifest: adopt the data files someone else put here, but not part files of ours: those
  // are another writer's copies in flight (its manifest will list them) or a crashed commit's.
  const { objects } = await listObjects(`${w.dir}/`, { delimiter: '/' });
  const out: WrittenFile[] = [];
  for (const o of objects) {
    const name = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (!isOutputName(name) || !EXTENSIONS[w.format].some((x) => name.toLowerCase().endsWith(x)) || PART_RE.test(name)) continue;
    out.push({ path: o.uri, rows: w.format === 'parquet' ? inspectParquet(o.uri).numRows : -1, bytes: o.size });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * After an overwrite: delete the files of the manifest we replaced, and part files no manifest
 * lists that are older than FOREIGN_TEMP_STALE_MS (left by crashed commits). Younger unlisted
 * parts may be a concurrent writer's copies that its manifest is about to list.
 */
async function removeReplacedObjects(w: WriteRun, previous: Manifest | null, keep: Set<string>): Promise<void> {
  const doomed = new Set<string>();
  if (previous) for (const f of previous.files) doomed.add(isRemotePath(f.path) ? f.path : `${w.dir}/${f.path}`);
  const { objects } = await listObjects(`${w.dir}/`, { delimiter: '/' });
  const now = Date.now();
  for (const o of objects) {
    const name = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (/^part-\d+-.+/.test(name) && EXTENSIONS[w.format].some((x) => name.endsWith(x)) && now - o.lastModified > FOREIGN_TEMP_STALE_MS) doomed.add(o.uri);
  }
  await deleteObjects([...doomed].filter((f) => !keep.has(f)));
}

/**
 * After a commit: remove other runs' `_temporary/<runId>/` keys once nothing was written there
 * for FOREIGN_TEMP_STALE_MS, and, when the run had started committing (its marker is there),
 * its copied parts that the manifest does not list. Only age counts: writers to S3 run on other
 * machines (Lambda sandboxes may even share a host name), so a pid says nothing here.
 */
async function removeAbandonedObjects(w: WriteRun): Promise<void> {
  const root = `${w.dir}/${TEMP_DIR_NAME}/`;
  const { objects } = await listObjects(root);
  if (!objects.length) return;
  const byRun = new Map<string, typeof objects>();
  for (const o of objects) {
    const run = o.uri.slice(root.length).split('/')[0]!;
    if (run === w.runId) continue;
    byRun.set(run, [...(byRun.get(run) ?? []), o]);
  }
  const now = Date.now();
  let manifest: Manifest | null | undefined;
  for (const [run, objs] of byRun) {
    if (!objs.every((o) => now - o.lastModified > FOREIGN_TEMP_STALE_MS)) continue;
    if (objs.some((o) => o.uri === `${root}${run}/${COMMIT_MARKER_NAME}`)) {
      manifest ??= await readManifestS3(w.dir);
      const listed = new Set((manifest?.files ?? []).map((f) => (isRemotePath(f.path) ? f.path : `${w.dir}/${f.path}`)));
      const { objects: top } = await listObjects(`${w.dir}/`, { delimiter: '/' });
      const copies = top.filter((o) => PART_RE.exec(o.key.slice(o.key.lastIndexOf('/') + 1))?.[1] === run && !listed.has(o.uri));
      await deleteObjects(copies.map((o) => o.uri));
    }
    await deleteObjects(objs.map((o) => o.uri));
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

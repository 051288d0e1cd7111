// Path expansion for scans (files, directories, globs, lists; local or s3://) and the small
// helpers the readers and the dataset writer share. Other URL schemes fail loudly here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as arrow from 'apache-arrow';
import { globSync, isDynamicPattern } from './glob.ts';
import { COMMIT_MARKER_NAME, interruptedCommitError, readCommitMarker } from './commit-state.ts';
import {
  getObjectOrNullSync,
  globObjectsSync,
  groupObjectHints,
  headObjectSync,
  isObjectGlob,
  isRemotePath,
  joinUri,
  listManySync,
  listObjectsSync,
  noteObjects,
  storeFor,
  toLocalPath,
  type Listing,
  type ObjectInfo,
} from './store/index.ts';

export type FileFormat = 'parquet' | 'csv';

/** Name of the commit marker / manifest a DatasetWriter writes last. */
export const MANIFEST_NAME = '_SUCCESS';
/** Folder holding in-flight (uncommitted) writes; never part of a dataset. */
export const TEMP_DIR_NAME = '_temporary';

export const EXTENSIONS: Record<FileFormat, readonly string[]> = {
  parquet: ['.parquet', '.parq', '.pq'],
  csv: ['.csv', '.tsv'],
};

export interface ManifestFile {
  path: string;
  rows: number;
  bytes: number;
}
export interface Manifest {
  format: string;
  files: ManifestFile[];
  rows?: number;
  committedAt?: string;
  runId?: string;
  /** false: a run committed with tolerated failures; `failedPartitions` lists what is missing. */
  complete?: boolean;
  failedPartitions?: unknown[];
}

/**
 * Is `spec` in an object store (keys, prefixes, key globs) rather than a directory tree (files,
 * directories, file globs)? Other URL schemes are an error naming the spec.
 */
function inObjectStore(spec: string): boolean {
  return storeFor(spec).store.localPath === undefined;
}

/** Hidden and underscore-prefixed entries (_temporary, _SUCCESS, .crc files) are never data. */
function isIgnoredName(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_');
}

function hasExtension(file: string, what: FileFormat): boolean {
  const lower = file.toLowerCase();
  return EXTENSIONS[what].some((ext) => lower.endsWith(ext));
}

/**
 * The manifest a DatasetWriter committed into `dir`, or null when there is none. An empty
 * `_SUCCESS` (as Hadoop/Spark write) is not a manifest: null. A non-empty one that is not valid
 * JSON of the expected shape is an error naming it, since silently listing the folder instead
 * could read uncommitted files.
 */
export function readManifest(dir: string): Manifest | null {
  if (inObjectStore(dir)) {
    const uri = joinUri(dir, MANIFEST_NAME);
    const got = getObjectOrNullSync(uri);
    return got ? parseManifest(Buffer.from(got.bytes).toString('utf8'), uri) : null;
  }
  const file = path.join(toLocalPath(dir), MANIFEST_NAME);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new Error(`cannot read dataset manifest ${file}: ${(e as Error).message}`);
  }
  return parseManifest(text, file);
}

/** A manifest's text (read from `where`, named in errors), or null when it is empty. */
export function parseManifest(text: string, where: string): Manifest | null {
  if (text.trim() === '') return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`corrupt dataset manifest ${where}: ${(e as Error).message}`);
  }
  const m = json as Partial<Manifest> | null;
  if (
    !m ||
    typeof m !== 'object' ||
    typeof m.format !== 'string' ||
    !Array.isArray(m.files) ||
    !m.files.every((f) => f && typeof f.path === 'string' && typeof f.rows === 'number' && typeof f.bytes === 'number')
  ) {
    throw new Error(`corrupt dataset manifest ${where}: expected {format, files: [{path, rows, bytes}]}`);
  }
  return m as Manifest;
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

function listDirRecursive(dir: string, what: FileFormat, out: string[]): void {
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  for (const e of entries) {
    if (isIgnoredName(e.name)) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) listDirRecursive(full, what, out);
    else if ((e.isFile() || e.isSymbolicLink()) && hasExtension(e.name, what)) {
      const st = statOrNull(full);
      if (st?.isFile()) out.push(full);
    }
  }
}

/** Files of a directory: exactly the committed ones when it has a manifest, else all data files below it. */
function expandDirectory(dir: string, what: FileFormat): string[] {
  const manifest = readManifest(dir);
  // A commit interrupted (or still running) after it moved files in: they are not a dataset.
  const refused = interruptedCommitError(`directory ${dir}`, path.join(dir, COMMIT_MARKER_NAME), readCommitMarker(dir), manifest?.runId, manifest !== null);
  if (refused) throw refused;
  if (manifest) {
    if (manifest.format !== what) {
      throw new Error(`${dir} holds a committed ${manifest.format} dataset, not ${what}`);
    }
    return manifest.files.map((f) => {
      const full = path.resolve(dir, f.path);
      if (!statOrNull(full)?.isFile()) {
        throw new Error(`file ${full} listed in ${path.join(dir, MANIFEST_NAME)} is missing`);
      }
      return full;
    });
  }
  const out: string[] = [];
  listDirRecursive(dir, what, out);
  if (out.length === 0) {
    throw new Error(`no ${what} files (${EXTENSIONS[what].join(', ')}) found in directory ${dir}`);
  }
  return out;
}

/** A prefix ("directory") in an object store: the manifest's files when there is one, else every data file below it. */
/**
 * Files a manifest names outside its own prefix (a serverless run without an output commits its
 * results in place, under runs/<id>/result/): a folder holding several of them is listed once, in one
 * parallel round, instead of one HEAD per file; a lone file is left to its HEAD.
 */
function listOutside(uris: readonly string[], listed: Map<string, ObjectInfo>): void {
  const perFolder = new Map<string, number>();
  for (const uri of uris) {
    if (listed.has(uri)) continue;
    const folder = uri.slice(0, uri.lastIndexOf('/') + 1);
    perFolder.set(folder, (perFolder.get(folder) ?? 0) + 1);
  }
  const folders = [...perFolder].filter(([, n]) => n >= 2).map(([f]) => f);
  if (folders.length === 0) return;
  for (const listing of listManySync(folders).values()) {
    // A folder that cannot be listed (no ListBucket permission) falls back to the HEADs.
    if (listing instanceof Error) continue;
    for (const o of listing.objects) listed.set(o.uri, o);
  }
}

function expandPrefix(dirUri: string, objects: readonly ObjectInfo[], what: FileFormat): string[] {
  const dir = dirUri.endsWith('/') ? dirUri : `${dirUri}/`;
  const prefixKey = storeFor(dir).key;
  if (objects.some((o) => o.key === prefixKey + MANIFEST_NAME)) {
    const manifest = readManifest(dir);
    if (manifest) {
      if (manifest.format !== what) throw new Error(`${dir} holds a committed ${manifest.format} dataset, not ${what}`);
      const listed = new Map(objects.map((o) => [o.uri, o]));
      const uris = manifest.files.map((f) => joinUri(dir, f.path));
      listOutside(uris, listed);
      const found: ObjectInfo[] = [];
      for (const uri of uris) {
        const o = listed.get(uri) ?? headObjectSync(uri); // a file outside the prefix was not listed
        if (!o) throw new Error(`file ${uri} listed in ${dir}${MANIFEST_NAME} is missing`);
        found.push(o);
      }
      noteObjects(found);
      return found.map((o) => o.uri);
    }
  }
  // No manifest, but a writer's commit marker (put before its first copy, deleted with its temp
  // keys once committed): the data files here are a partial commit, not a dataset.
  const marker = objects.find(
    (o) =>
      o.key.startsWith(`${prefixKey}${TEMP_DIR_NAME}/`) && o.key.endsWith(`/${COMMIT_MARKER_NAME}`) && o.key.slice(prefixKey.length).split('/').length === 3,
  );
  if (marker) {
    throw new Error(
      `${dir} is not a complete dataset: a commit into it is in progress or was interrupted (${marker.uri} is present and there is no ${MANIFEST_NAME} manifest); ` +
        "read it once that commit finishes, or write it again with mode 'overwrite' (or append to it) to recover",
    );
  }
  const out = objects.filter((o) => {
    const rel = o.key.slice(prefixKey.length);
    if (rel === '' || rel.endsWith('/')) return false; // "directory" marker objects
    return !rel.split('/').some(isIgnoredName) && hasExtension(rel, what);
  });
  if (out.length === 0) throw new Error(`no ${what} files (${EXTENSIONS[what].join(', ')}) found under ${dir}`);
  noteObjects(out);
  return out.map((o) => o.uri);
}

/**
 * expandPaths of an object-store prefix (`…/`) from its listing, which the caller already holds
 * (a delimiter listing without sub-prefixes is the whole listing): no second ListObjectsV2.
 */
export function expandListedPrefix(dirUri: string, objects: readonly ObjectInfo[], what: FileFormat): string[] {
  const files = [...new Set(expandPrefix(dirUri, objects, what))].sort();
  groupObjectHints(files);
  return files;
}

/** An object store URI (s3://bucket/key): an object, a prefix (with or without the trailing slash) or a key glob. */
function expandObjects(spec: string, what: FileFormat, listed?: Map<string, Listing | Error>): string[] {
  const { key } = storeFor(spec);
  if (isObjectGlob(spec)) {
    const matches = globObjectsSync(spec).filter((o) => !o.key.split('/').includes(TEMP_DIR_NAME));
    if (matches.length === 0) throw new Error(`no files match ${spec}`);
    noteObjects(matches);
    return matches.map((o) => o.uri);
  }
  if (key === '' || key.endsWith('/')) return expandPrefix(spec, listObjectsSync(spec).objects, what);
  // One listing answers both "is it an object?" and "is it a prefix?".
  const pre = listed?.get(spec);
  if (pre instanceof Error) throw pre;
  const { objects } = pre ?? listObjectsSync(spec);
  const exact = objects.find((o) => o.key === key);
  if (exact) {
    noteObjects([exact]);
    return [exact.uri];
  }
  const below = objects.filter((o) => o.key.startsWith(`${key}/`));
  if (below.length === 0) throw new Error(`${what} file not found: ${spec}`);
  return expandPrefix(`${spec}/`, below, what);
}

/**
 * A path taken literally: glob characters are part of the name. On S3 a key names exactly one object
 * (never a prefix of others); a key ending in '/' is a prefix. Locally a file or a directory.
 */
function expandLiteral(spec: string, what: FileFormat): string[] {
  if (inObjectStore(spec)) {
    const { key } = storeFor(spec);
    if (key === '' || key.endsWith('/')) return expandPrefix(spec, listObjectsSync(spec).objects, what);
    const o = headObjectSync(spec);
    if (!o) throw new Error(`${what} file not found: ${spec} (read literally: exactly this object)`);
    noteObjects([o]);
    return [o.uri];
  }
  const local = toLocalPath(spec);
  const st = statOrNull(local);
  if (st?.isDirectory()) return expandDirectory(path.resolve(local), what);
  if (st?.isFile()) return [path.resolve(local)];
  throw new Error(`${what} file not found: ${spec} (read literally: no glob expansion)`);
}

function expandOne(spec: string, what: FileFormat, listed?: Map<string, Listing | Error>, literal = false): string[] {
  if (typeof spec !== 'string' || spec === '') throw new TypeError(`expected a ${what} path, glob or list of them, got ${JSON.stringify(spec)}`);
  if (literal) return expandLiteral(spec, what);
  if (inObjectStore(spec)) return expandObjects(spec, what, listed);
  const local = toLocalPath(spec);
  const st = statOrNull(local);
  if (st?.isDirectory()) return expandDirectory(path.resolve(local), what);
  if (st?.isFile()) return [path.resolve(local)];
  if (isDynamicPattern(local)) {
    // Uncommitted output under _temporary is never data, whatever the pattern says.
    const matches = globSync([local.split(path.sep).join('/')], { absolute: true, onlyFiles: true, expandDirectories: false }).filter(
      (m) => !m.split(/[\\/]/).includes(TEMP_DIR_NAME),
    );
    if (matches.length === 0) throw new Error(`no files match ${spec}`);
    return matches.map((m) => path.resolve(m));
  }
  throw new Error(`${what} file not found: ${spec}`);
}

/**
 * Expand a path, directory, glob or list of them into absolute local file paths and s3:// URIs,
 * sorted and deduplicated. Directories (and S3 prefixes) yield every file with a `what` extension
 * below them (skipping `_*` and `.*` entries) unless they hold a `_SUCCESS` manifest, in which
 * case exactly the listed files. With `literal`, glob characters are part of the name and an S3
 * key names one object exactly (see expandLiteral).
 */
export function expandPaths(pathOrGlobOrList: string | readonly string[], what: FileFormat, opts: { literal?: boolean } = {}): string[] {
  const specs = typeof pathOrGlobOrList === 'string' ? [pathOrGlobOrList] : pathOrGlobOrList;
  if (specs.length === 0) throw new Error(`no ${what} paths given`);
  const literal = opts.literal === true;
  // A list of S3 object URIs: their listings in one parallel round instead of one call each.
  const plain = literal
    ? []
    : specs.filter(
        (s) => typeof s === 'string' && isRemotePath(s) && inObjectStore(s) && !isObjectGlob(s) && !/\/$/.test(storeFor(s).key) && storeFor(s).key !== '',
      );
  const listed = plain.length > 1 ? listManySync([...new Set(plain)]) : undefined;
  const all = new Set<string>();
  for (const s of specs) for (const f of expandOne(s, what, listed, literal)) all.add(f);
  const files = [...all].sort();
  // Footers of every S3 file of this scan are then fetched in one round as well.
  groupObjectHints(files);
  return files;
}

/** stat a local file with an error that names it and says what was expected. */
export function statFile(file: string, what: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${what} file not found: ${file}`);
    throw new Error(`cannot access ${what} file ${file}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new Error(`${what} path is not a regular file: ${file}`);
  return st;
}

/**
 * A batch's columns as single-chunk Data, in runs of rows. `new RecordBatch({a: vector})` leaves
 * Vectors (possibly multi-chunk) where Data is expected, so writers never read `batch.data.children`.
 */
export function batchSegments(batch: arrow.RecordBatch): { length: number; columns: arrow.Data[] }[] {
  const vecs = batch.schema.fields.map((_, i) => batch.getChildAt(i)!);
  if (vecs.every((v) => v.data.length === 1)) return [{ length: batch.numRows, columns: vecs.map((v) => v.data[0]!) }];
  const cuts = new Set<number>([0, batch.numRows]);
  for (const v of vecs) {
    let at = 0;
    for (const d of v.data) cuts.add((at += d.length));
  }
  const bounds = [...cuts].sort((a, b) => a - b);
  const out: { length: number; columns: arrow.Data[] }[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const [a, b] = [bounds[i]!, bounds[i + 1]!];
    if (b > a) out.push({ length: b - a, columns: vecs.map((v) => v.slice(a, b).data.find((d) => d.length > 0) ?? v.slice(a, b).data[0]!) });
  }
  return out;
}

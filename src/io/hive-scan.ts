// Hive datasets listed at planning, not when the DataFrame is built: readParquet(dir) walks only the
// partition *directories* (one delimiter listing per non-leaf directory; none at all when every key's
// type is declared) and reads ONE file's footer for the schema. The files of a partition are listed,
// and their footers read, only when the physical planner has pruned partitions by the scan's pushed
// filter: a pruned partition's directory is never listed and its files never opened.
import * as path from 'node:path';
import { Field, Schema, type FieldJSON, type SchemaJSON } from '../datatypes.ts';
import type { ExprNode } from '../expressions.ts';
import { inspectCsv } from './csv/index.ts';
import {
  checkNoOverlap,
  declaredSchema,
  HIVE_NULL,
  inferType,
  matchPartitions,
  partitionPredicate,
  pruneHive,
  toJs,
  type HivePartitioningOption,
  type HivePruning,
  type HiveScanJSON,
} from './hive.ts';
import { inspectParquet } from './parquet/index.ts';
import { EXTENSIONS, type FileFormat } from './paths.ts';
import { isObjectGlob, listLevelSync, storeFor, toLocalPath, type ObjectInfo } from './store/index.ts';
import { isDynamicPattern } from './glob.ts';
import * as fs from 'node:fs';

/** What a hive scan node defers to planning. */
export interface HiveLazyJSON {
  /** Set when files are listed at planning: the dataset root (ending in its separator). */
  root?: string;
  /** The leaf partition directories below root (raw `key=value` segments), walked at build to infer types; absent: walked level by level at planning (every key declared). */
  partitions?: string[][];
  /** The file whose footer (or header) gave the schema; the others are checked against it at planning, survivors only. */
  probe: string;
  /** How surviving files are checked against the probe's schema: their footer, their CSV header (with inferRows), or not (a declared CSV schema). */
  check: 'parquet' | 'csv' | 'none';
  inferRows?: number;
}

const isIgnored = (name: string): boolean => name.startsWith('.') || name.startsWith('_');
const hasExt = (file: string, what: FileFormat): boolean => EXTENSIONS[what].some((e) => file.toLowerCase().endsWith(e));

/** The last segment of a directory URI (`…/dt=2026-11-01/` → `dt=2026-11-01`). */
function dirName(dir: string): string {
  const parts = dir.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? '';
}

function splitSegment(seg: string): [string, string] | null {
  const eq = seg.indexOf('=');
  return eq > 0 ? [seg.slice(0, eq), seg.slice(eq + 1)] : null;
}

function decodeValue(raw: string, where: string): string | null {
  let v: string;
  try {
    v = decodeURIComponent(raw);
  } catch {
    throw new Error(
      `hive partitioning: directory '${raw}' of ${where} is not a valid URL-encoded value; pass hivePartitioning: false to read without partition columns`,
    );
  }
  return v === HIVE_NULL ? null : v;
}

function join(root: string, segs: readonly string[]): string {
  if (segs.length === 0) return root;
  const sep = storeFor(root).store.localPath === undefined ? '/' : path.sep;
  return `${root}${segs.join(sep)}${sep}`;
}

/** The data files at any depth below a leaf partition directory (skipping `_*` / `.*`), sorted; a deeper `key=value` level is an error. */
function filesBelow(dir: string, what: FileFormat, keys: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    const level = listLevelSync(d);
    for (const f of level.files) if (!isIgnored(path.posix.basename(f.split(path.sep).join('/'))) && hasExt(f, what)) out.push(f);
    for (const sub of level.dirs) {
      const name = dirName(sub);
      if (isIgnored(name)) continue;
      const kv = splitSegment(name);
      if (kv) {
        throw new Error(
          `hive partitioning: files have different partition keys: ${dir} has [${keys.join(', ')}] but ${sub} adds '${kv[0]}'; pass hivePartitioning: false to read them without partition columns`,
        );
      }
      walk(sub);
    }
  };
  walk(dir);
  return out.sort();
}

/** The dataset root of a plain directory / prefix source, or null (a file, a glob, a list, a literal read). */
function rootOf(source: string | readonly string[], literal: boolean): string | null {
  if (typeof source !== 'string' || literal) return null;
  if (storeFor(source).store.localPath === undefined) {
    if (isObjectGlob(source)) return null;
    const key = storeFor(source).key;
    return key === '' || key.endsWith('/') ? source : null;
  }
  const local = toLocalPath(source);
  if (isDynamicPattern(local)) return null;
  const st = fs.statSync(local, { throwIfNoEntry: false });
  return st?.isDirectory() ? `${path.resolve(local)}${path.sep}` : null;
}

/** A level's `key=value` sub-directories, or null when the level is not purely that (files, other directories, mixed keys): the eager path then reads it, with its errors. */
function keyDirs(level: { files: string[]; dirs: string[] }, what: FileFormat): { key: string; dirs: string[] } | null {
  if (level.files.some((f) => hasExt(f, what) && !isIgnored(dirName(f)))) return null;
  const dirs = level.dirs.filter((d) => !isIgnored(dirName(d)));
  if (dirs.length === 0) return null;
  const keys = new Set(dirs.map((d) => splitSegment(dirName(d))?.[0] ?? ''));
  if (keys.size !== 1 || keys.has('')) return null;
  return { key: [...keys][0]!, dirs };
}

export interface HiveRoot {
  lazy: HiveLazyJSON;
  /** The partition fields (typed) and the probe file's values. */
  hive: HiveScanJSON;
}

/**
 * Builds a lazily listed hive scan for a directory / prefix whose top levels are `key=value`
 * directories (and that is not a committed dataset: a `_SUCCESS` manifest, or a commit marker,
 * takes the eager path, which reads the manifest instead of listing). Null: read it eagerly.
 */
export function hiveRootScan(
  source: string | readonly string[],
  what: FileFormat,
  opt: HivePartitioningOption | undefined,
  literal: boolean,
  where: string,
): HiveRoot | { listed: ObjectInfo[] } | null {
  if (opt === false) return null;
  const root = rootOf(source, literal);
  if (root === null) return null;
  const top = listLevelSync(root);
  // A flat prefix (no sub-prefixes): not a hive layout, and its listing is already complete.
  if (top.dirs.length === 0 && top.objects) return { listed: top.objects };
  if (top.files.some((f) => dirName(f).startsWith('_')) || top.dirs.some((d) => dirName(d).startsWith('_'))) return null;
  const first = keyDirs(top, what);
  if (!first) return null;
  // Depth first down the first directory of each level: the keys, and the probe file.
  const keys = [first.key];
  const probeSegs = [dirName(first.dirs[0]!)];
  let probe: string | undefined;
  for (let dir = first.dirs[0]!; ; ) {
    const level = listLevelSync(dir);
    const next = level.dirs.some((d) => !isIgnored(dirName(d))) ? keyDirs(level, what) : null;
    if (next) {
      keys.push(next.key);
      probeSegs.push(dirName(next.dirs[0]!));
      dir = next.dirs[0]!;
      continue;
    }
    if (level.dirs.some((d) => !isIgnored(dirName(d)))) return null;
    probe = level.files.find((f) => hasExt(f, what) && !isIgnored(dirName(f)));
    break;
  }
  if (!probe) return null;
  const declared = declaredSchema(opt, where);
  if ([...declared.keys()].some((k) => !keys.includes(k))) return null;
  let partitions: string[][] | undefined;
  if (!keys.every((k) => declared.has(k))) {
    // Types are inferred from every value: walk the directories above the leaves (never a leaf's files).
    let frontier: { dir: string; segs: string[] }[] = [{ dir: root, segs: [] }];
    for (let i = 0; i < keys.length; i++) {
      const next: typeof frontier = [];
      for (const f of frontier) {
        const kd = keyDirs(i === 0 ? top : listLevelSync(f.dir), what);
        if (!kd || kd.key !== keys[i]) return null;
        for (const d of kd.dirs) next.push({ dir: d, segs: [...f.segs, dirName(d)] });
      }
      frontier = next;
    }
    partitions = frontier.map((f) => f.segs);
  }
  const rawValues = (segs: readonly string[]): (string | null)[] => segs.map((s) => decodeValue(splitSegment(s)![1], join(root, segs)));
  const tuples = (partitions ?? [probeSegs]).map((segs) => ({ segs, values: rawValues(segs) }));
  return finish(root, keys, declared, tuples, partitions, probe, probeSegs, what);
}

function finish(
  root: string,
  keys: string[],
  declared: Map<string, FieldJSON['type']>,
  tuples: { segs: string[]; values: (string | null)[] }[],
  partitions: string[][] | undefined,
  probe: string,
  probeSegs: string[],
  what: FileFormat,
): HiveRoot {
  const fields: FieldJSON[] = keys.map((k, i) => ({
    name: k,
    type: declared.get(k) ?? inferType([...new Set(tuples.map((t) => t.values[i]).filter((v): v is string => v !== null))]),
    nullable: true,
  }));
  for (const t of tuples) checkValues(t.values, fields, join(root, t.segs));
  const probeValues = tuples.find((t) => t.segs.join('/') === probeSegs.join('/'))?.values ?? [];
  const lazy: HiveLazyJSON = { root, probe, check: what };
  if (partitions) lazy.partitions = partitions;
  return { lazy, hive: { schema: { fields }, values: { [probe]: probeValues } } };
}

function checkValues(values: readonly (string | null)[], fields: readonly FieldJSON[], where: string): void {
  values.forEach((v, i) => {
    if (v === null) return;
    const f = fields[i]!;
    const js = toJs(v, f.type);
    if (js instanceof Error) throw new Error(`hive partition value '${v}' of column '${f.name}' (${Field.fromJSON(f).type}) in ${where}: ${js.message}`);
  });
}

/** The scan's full schema for a hive scan: the probe's columns, then the partition columns (refusing overlaps). */
export function withHiveColumns(fileSchema: Schema, hive: HiveScanJSON, probe: string): Schema {
  checkNoOverlap(hive, fileSchema, probe);
  return new Schema([...fileSchema.fields, ...Schema.fromJSON(hive.schema).fields]);
}

/** What planning a hive scan gives the physical planner: the surviving files, their partition values, and what explain shows. */
export interface HivePlan {
  files: string[];
  hive: HiveScanJSON;
  pruning: HivePruning;
}

interface ScanLike {
  format: FileFormat;
  files: string[];
  fileSchema: SchemaJSON;
  hive?: HiveScanJSON;
  hiveLazy?: HiveLazyJSON;
  csv?: { delimiter?: string; header?: boolean; nullValues?: string[] };
  pushdowns: { columns: string[] | null };
}

/** Prunes partitions by `filter` (the scan's pushed filter), lists only the surviving ones, and checks the survivors' schemas against the probe's. */
export function planHiveScan(node: ScanLike & { hive: HiveScanJSON }, filter: ExprNode | null): HivePlan {
  const lazy = node.hiveLazy;
  let plan: HivePlan;
  if (!lazy?.root) {
    plan = { files: [], hive: node.hive, pruning: pruneHive(node.files, node.hive, filter) };
    plan.files = plan.pruning.files;
    if (lazy) plan.pruning.listing = { walked: false, dirsListed: 0, dirsPruned: 0, footersRead: 0, listedAtBuild: true };
  } else {
    plan = listPartitions(node, lazy, lazy.root, filter);
  }
  if (lazy) plan.pruning.listing!.footersRead = checkSurvivors(node, lazy, plan.files);
  return plan;
}

function listPartitions(node: ScanLike & { hive: HiveScanJSON }, lazy: HiveLazyJSON, root: string, filter: ExprNode | null): HivePlan {
  const fields = node.hive.schema.fields;
  const keys = fields.map((f) => f.name);
  let dirsListed = 0;
  let dirsPruned = 0;
  let seen: { segs: string[]; values: (string | null)[] }[];
  let walked = false;
  if (lazy.partitions) {
    seen = lazy.partitions.map((segs) => ({ segs, values: segs.map((s) => decodeValue(splitSegment(s)![1], join(root, segs))) }));
  } else {
    // Every key declared: descend level by level, pruning at each level by the conjuncts on the keys known so far.
    walked = true;
    let frontier: { segs: string[]; values: (string | null)[] }[] = [{ segs: [], values: [] }];
    let total = 0;
    for (let i = 0; i < keys.length; i++) {
      const next: typeof frontier = [];
      for (const f of frontier) {
        const dir = join(root, f.segs);
        const level = listLevelSync(dir);
        dirsListed++;
        const data = level.files.filter((x) => hasExt(x, node.format) && !isIgnored(dirName(x)));
        const subs = level.dirs.filter((d) => !isIgnored(dirName(d)));
        for (const d of subs) {
          const kv = splitSegment(dirName(d));
          if (!kv || kv[0] !== keys[i] || data.length) {
            throw new Error(
              `hive partitioning: files have different partition keys: the dataset has [${keys.join(', ')}] but ${d} is not a '${keys[i]}=…' directory${data.length ? ` (and ${data[0]} lies beside it)` : ''}; pass hivePartitioning: false to read them without partition columns`,
            );
          }
          const values = [...f.values, decodeValue(kv[1], d)];
          checkValues(values, fields, d);
          next.push({ segs: [...f.segs, dirName(d)], values });
        }
      }
      const pred = partitionPredicate(filter, new Set(keys.slice(0, i + 1)));
      if (i === keys.length - 1) total = next.length;
      if (pred && next.length) {
        const keep = matchPartitions(
          next.map((n) => n.values),
          fields.slice(0, i + 1),
          pred,
        );
        frontier = next.filter((_, j) => keep[j]);
        dirsPruned += next.length - frontier.length;
      } else frontier = next;
    }
    const files: string[] = [];
    const values: Record<string, (string | null)[]> = {};
    for (const p of frontier) {
      const found = filesBelow(join(root, p.segs), node.format, keys);
      dirsListed++;
      for (const x of found) values[x] = p.values;
      files.push(...found);
    }
    const pred = partitionPredicate(filter, new Set(keys));
    return {
      files: files.sort(),
      hive: { schema: node.hive.schema, values },
      pruning: {
        files: [...files].sort(),
        partitions: total,
        selected: frontier.length,
        filter: pred,
        listing: { walked, dirsListed, dirsPruned, footersRead: 0 },
      },
    };
  }
  const pred = partitionPredicate(filter, new Set(keys));
  const keep = pred
    ? matchPartitions(
        seen.map((s) => s.values),
        fields,
        pred,
      )
    : seen.map(() => true);
  const files: string[] = [];
  const values: Record<string, (string | null)[]> = {};
  seen.forEach((p, i) => {
    if (!keep[i]) {
      dirsPruned++;
      return;
    }
    const found = filesBelow(join(root, p.segs), node.format, keys);
    dirsListed++;
    for (const x of found) values[x] = p.values;
    files.push(...found);
  });
  const selected = keep.filter(Boolean).length;
  return {
    files: files.sort(),
    hive: { schema: node.hive.schema, values },
    pruning: { files: [...files].sort(), partitions: seen.length, selected, filter: pred, listing: { walked, dirsListed, dirsPruned, footersRead: 0 } },
  };
}

/** The survivors' own schemas must equal the probe's (as readParquet checks every file of an eager scan). Returns how many were read. */
function checkSurvivors(node: ScanLike & { hive: HiveScanJSON }, lazy: HiveLazyJSON, files: readonly string[]): number {
  if (lazy.check === 'none') return 0;
  const names = new Set(node.hive.schema.fields.map((f) => f.name));
  const expected = new Schema(Schema.fromJSON(node.fileSchema).fields.filter((f) => !names.has(f.name)));
  const wanted = node.pushdowns.columns;
  for (const f of files) {
    let schema: Schema;
    if (lazy.check === 'parquet') {
      const info = inspectParquet(f);
      const bad = info.unsupportedColumns.find((u) => !wanted || wanted.includes(u.name));
      if (bad) throw new Error(`column '${bad.name}' of ${f} cannot be read: ${bad.reason}`);
      schema = info.schema;
    } else {
      schema = inspectCsv(f, { ...(node.csv ?? {}), ...(lazy.inferRows !== undefined ? { inferRows: lazy.inferRows } : {}) }).schema;
    }
    if (schema.equals(expected)) continue;
    for (const n of new Set([...expected.names, ...schema.names])) {
      const a = expected.has(n) ? expected.field(n).type.toString() : 'missing';
      const b = schema.has(n) ? schema.field(n).type.toString() : 'missing';
      if (a !== b) throw new Error(`schema mismatch across input files: column '${n}' is ${a} in ${lazy.probe} but ${b} in ${f}`);
    }
    throw new Error(`schema mismatch across input files: column order differs between ${lazy.probe} and ${f}`);
  }
  return files.length;
}

// Hive-style partitioned layouts (`dt=2026-11-29/region=eu/part-0.parquet`) on the read side:
// discovering the partition columns from the paths (typed: inferred or declared), pruning
// partitions by the scan's pushed filter before their row groups are planned or read, and adding the
// columns to the batches a scan reads. The write side is in partitioned-writer.ts.
import * as path from 'node:path';
import * as arrow from 'apache-arrow';
import { isDynamicPattern, picomatch } from './glob.ts';
import { DataType, Field, Schema, type DataTypeJSON, type FieldJSON, type SchemaJSON } from '../datatypes.ts';
import { columnsOf, containsUdf, exprToString, type ExprNode } from '../expressions.ts';
import { filterBatch } from '../eval.ts';
import { valuesToData } from '../convert/to-arrow.ts';
import { isObjectGlob, storeFor, toLocalPath } from './store/index.ts';

/** The directory value Hive, Spark and Daft write for a null partition value. */
export const HIVE_NULL = '__HIVE_DEFAULT_PARTITION__';

/**
 * `readParquet` / `readCsv` option. Default: partition columns are discovered and their types
 * inferred (int64, float64, date, bool, else string). `{ schema }` declares types for some or all
 * keys (a Schema or `{ name: DataType }`); `false` reads the files without partition columns.
 */
export type HivePartitioningOption = boolean | { schema?: Schema | Record<string, DataType> };

/** What a scan node carries: the partition fields, and each file's (URL-decoded) values; null is null. */
export interface HiveScanJSON {
  schema: SchemaJSON;
  values: Record<string, (string | null)[]>;
}

/** What one partition's source carries to the executor (plans are JSON: values stay strings). */
export interface HiveSourceJSON {
  /** The partition fields this scan outputs. */
  schema: SchemaJSON;
  values: (string | null)[];
  /** Output column order (file columns and partition columns as the scan's schema has them). */
  output: string[];
  /** A file column read only for its row count (when only partition columns are wanted). */
  dropFileColumn?: string;
}

const SUPPORTED = new Set(['bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float32', 'float64', 'utf8', 'date']);
const INT_RE = /^[+-]?\d+$/;
const FLOAT_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const INT_RANGE: Record<string, [bigint, bigint]> = {
  int8: [-128n, 127n],
  int16: [-32768n, 32767n],
  int32: [-2147483648n, 2147483647n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0n, 255n],
  uint16: [0n, 65535n],
  uint32: [0n, 4294967295n],
  uint64: [0n, 2n ** 64n - 1n],
};

function isDate(s: string): boolean {
  if (!DATE_RE.test(s)) return false;
  const d = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
}

/** A partition directory value as the JS value of `type` (what valuesToData takes), or an Error saying why not. */
export function toJs(raw: string, type: DataTypeJSON): unknown {
  switch (type.kind) {
    case 'utf8':
      return raw;
    case 'bool': {
      const l = raw.toLowerCase();
      if (l === 'true' || l === 'false') return l === 'true';
      return new Error('expected true or false');
    }
    case 'date':
      return isDate(raw) ? new Date(`${raw}T00:00:00Z`) : new Error('expected a date YYYY-MM-DD');
    case 'float32':
    case 'float64':
      return FLOAT_RE.test(raw) || /^[+-]?(NaN|Infinity)$/.test(raw) ? Number(raw) : new Error('expected a number');
    default: {
      const range = INT_RANGE[type.kind];
      if (!range) return new Error(`partition columns cannot be ${type.kind}`);
      if (!INT_RE.test(raw)) return new Error('expected an integer');
      const v = BigInt(raw);
      if (v < range[0] || v > range[1]) return new Error(`out of ${type.kind} range`);
      return type.kind === 'int64' || type.kind === 'uint64' ? v : Number(v);
    }
  }
}

export function inferType(values: readonly string[]): DataTypeJSON {
  if (values.length === 0) return { kind: 'utf8' };
  if (values.every((v) => INT_RE.test(v) && !(toJs(v, { kind: 'int64' }) instanceof Error))) return { kind: 'int64' };
  if (values.every((v) => FLOAT_RE.test(v))) return { kind: 'float64' };
  if (values.every(isDate)) return { kind: 'date' };
  if (values.every((v) => v === 'true' || v === 'false')) return { kind: 'bool' };
  return { kind: 'utf8' };
}

/** Where partition paths start for one source spec: a directory / prefix, a glob's fixed part; null for a single file. */
function specBase(spec: string): string {
  if (storeFor(spec).store.localPath === undefined) {
    if (isObjectGlob(spec)) {
      const firstGlob = spec.search(/[*?[{]/);
      return spec.slice(0, spec.lastIndexOf('/', firstGlob) + 1);
    }
    return spec.endsWith('/') ? spec : `${spec}/`;
  }
  const local = toLocalPath(spec);
  if (isDynamicPattern(local)) {
    const base = picomatch().scan(local.split(path.sep).join('/')).base;
    return `${path.resolve(base || '.')}${path.sep}`;
  }
  return `${path.resolve(local)}${path.sep}`;
}

/** The `key=value` directory segments of `rel` (a path below a base, `/`-separated), values URL-decoded. */
function partitionSegments(rel: string, file: string): [string, string | null][] {
  const dirs = rel.split('/').slice(0, -1);
  const out: [string, string | null][] = [];
  for (const d of dirs) {
    const eq = d.indexOf('=');
    if (eq <= 0) continue;
    const key = d.slice(0, eq);
    const rawValue = d.slice(eq + 1);
    let value: string;
    try {
      value = decodeURIComponent(rawValue);
    } catch {
      throw new Error(
        `hive partitioning: directory '${d}' of ${file} is not a valid URL-encoded value; pass hivePartitioning: false to read without partition columns`,
      );
    }
    if (out.some(([k]) => k === key)) throw new Error(`hive partitioning: key '${key}' appears twice in the path of ${file}`);
    out.push([key, value === HIVE_NULL ? null : value]);
  }
  return out;
}

export function declaredSchema(opt: HivePartitioningOption | undefined, where: string): Map<string, DataTypeJSON> {
  const out = new Map<string, DataTypeJSON>();
  if (opt === undefined || typeof opt === 'boolean') return out;
  if (typeof opt !== 'object' || opt === null) throw new TypeError(`${where}: hivePartitioning must be true, false or { schema }`);
  const s = opt.schema;
  if (s === undefined) return out;
  if (s instanceof Schema) for (const f of s.fields) out.set(f.name, f.type.json);
  else if (typeof s === 'object' && s !== null) {
    for (const [k, t] of Object.entries(s)) {
      if (!(t instanceof DataType)) throw new TypeError(`${where}: hivePartitioning.schema['${k}'] must be a DataType`);
      out.set(k, t.json);
    }
  } else throw new TypeError(`${where}: hivePartitioning.schema must be a Schema or { name: DataType }`);
  for (const [k, t] of out) {
    if (!SUPPORTED.has(t.kind))
      throw new TypeError(`${where}: hive partition column '${k}' cannot be ${t.kind} (use bool, an integer, float, utf8 or date type)`);
  }
  return out;
}

/**
 * The partition columns of `files` (expanded from `source`), or null when the files are not in a
 * hive layout or `opt` is false. Every file must have the same keys in the same order; values are
 * checked against their types here, so a bad directory name fails at readParquet, naming it.
 */
export function discoverHive(
  source: string | readonly string[],
  files: readonly string[],
  opt: HivePartitioningOption | undefined,
  where: string,
): HiveScanJSON | null {
  if (opt === false) return null;
  const declared = declaredSchema(opt, where);
  const bases = (typeof source === 'string' ? [source] : source).map(specBase).sort((a, b) => b.length - a.length);
  let keys: string[] | null = null;
  let keysFile = '';
  const perFile: [string, (string | null)[]][] = [];
  for (const f of files) {
    const base = bases.find((b) => f.startsWith(b));
    const rel = base ? f.slice(base.length).split(path.sep).join('/') : '';
    const segs = partitionSegments(rel, f);
    const fileKeys = segs.map(([k]) => k);
    if (keys === null) {
      keys = fileKeys;
      keysFile = f;
    } else if (fileKeys.join('\0') !== keys.join('\0')) {
      throw new Error(
        `hive partitioning: files have different partition keys: ${keysFile} has [${keys.join(', ')}] but ${f} has [${fileKeys.join(', ')}]; ` +
          'pass hivePartitioning: false to read them without partition columns',
      );
    }
    perFile.push([f, segs.map(([, v]) => v)]);
  }
  if (!keys || keys.length === 0) {
    if (declared.size)
      throw new Error(`${where}: hivePartitioning.schema declares [${[...declared.keys()].join(', ')}] but no file is below a key=value directory`);
    return null;
  }
  for (const k of declared.keys()) {
    if (!keys.includes(k))
      throw new Error(`${where}: hivePartitioning.schema declares '${k}', which is not a partition key of the files (keys: ${keys.join(', ')})`);
  }
  const fields = keys.map((k, i) => {
    const type = declared.get(k) ?? inferType([...new Set(perFile.map(([, v]) => v[i]).filter((v): v is string => v !== null))]);
    return new Field(k, new DataType(type), true);
  });
  for (const [f, vals] of perFile) {
    vals.forEach((v, i) => {
      if (v === null) return;
      const js = toJs(v, fields[i]!.type.json);
      if (js instanceof Error) throw new Error(`hive partition value '${v}' of column '${keys![i]}' (${fields[i]!.type}) in ${f}: ${js.message}`);
    });
  }
  return { schema: new Schema(fields).toJSON(), values: Object.fromEntries(perFile) };
}

/** A partition column in the files themselves would be ambiguous: refuse it, naming both. */
export function checkNoOverlap(hive: HiveScanJSON, fileSchema: Schema, file: string): void {
  for (const f of hive.schema.fields) {
    if (fileSchema.has(f.name)) {
      throw new Error(
        `hive partition column '${f.name}' is also a column of ${file}; pass hivePartitioning: false to read the file's own column, or rename the directories`,
      );
    }
  }
}

function columnData(raw: readonly (string | null)[], type: DataTypeJSON, rows: number): arrow.Data {
  const js = raw.map((v) => (v === null ? null : toJs(v, type)));
  const idx = Array.from({ length: rows }, (_, i) => js[i % js.length]);
  return valuesToData(idx, new DataType(type), 'hive partition values');
}

/** The AND-ed parts of a predicate (as the optimizer splits them; not imported from it: optimizer → plan → here). */
function conjuncts(e: ExprNode): ExprNode[] {
  return e.op === 'call' && e.fn === 'and' ? e.args.flatMap(conjuncts) : [e];
}

export interface HivePruning {
  files: string[];
  /** Partitions considered: every leaf partition, or (walked level by level) those seen in listed directories. */
  partitions: number;
  selected: number;
  filter: ExprNode | null;
  /** Set when files were listed at planning (hive-scan.ts): partition directories listed, pruned unlisted, and footers (or CSV headers) read then. */
  listing?: { walked: boolean; dirsListed: number; dirsPruned: number; footersRead: number; listedAtBuild?: boolean };
}

/** The conjuncts of `filter` that read only `names` (and call no UDF), AND-ed; null when none. */
export function partitionPredicate(filter: ExprNode | null, names: ReadonlySet<string>): ExprNode | null {
  const usable = filter ? conjuncts(filter).filter((c) => !containsUdf(c) && [...columnsOf(c)].every((n) => names.has(n))) : [];
  if (usable.length === 0) return null;
  return usable.slice(1).reduce<ExprNode>((a, b) => ({ op: 'call', fn: 'and', args: [a, b] }), usable[0]!);
}

/**
 * Which partitions (raw directory values of `fields`, in order; null for the default partition)
 * satisfy `pred`, evaluated exactly with SQL null semantics (a null result prunes).
 */
export function matchPartitions(tuples: readonly (readonly (string | null)[])[], fields: readonly FieldJSON[], pred: ExprNode): boolean[] {
  const cols: Record<string, arrow.Data> = {};
  fields.forEach((f, i) => {
    const js = tuples.map((t) => (t[i] === null ? null : toJs(t[i]!, f.type)));
    cols[f.name] = valuesToData(js, new DataType(f.type), 'hive partition values');
  });
  const index = '\u0000hive_group';
  cols[index] = valuesToData(
    tuples.map((_, i) => i),
    DataType.int32(),
  );
  const arrowSchema = new arrow.Schema([...Schema.fromJSON({ fields: [...fields] }).toArrow().fields, new arrow.Field(index, new arrow.Int32(), false)]);
  const batch = new arrow.RecordBatch(
    arrowSchema,
    arrow.makeData({ type: new arrow.Struct(arrowSchema.fields), length: tuples.length, children: Object.values(cols) }),
  );
  const kept = new Set(filterBatch(batch, pred).getChild(index)!.toArray() as Int32Array);
  return tuples.map((_, i) => kept.has(i));
}

/**
 * Keeps the files whose partition satisfies the conjuncts of `filter` that read only partition
 * columns (evaluated exactly, SQL null semantics: a null result prunes), before the scan plans
 * row groups: nothing of a pruned file is read (its footer is checked only if it survives).
 */
export function pruneHive(files: readonly string[], hive: HiveScanJSON, filter: ExprNode | null): HivePruning {
  const names = new Set(hive.schema.fields.map((f) => f.name));
  const groups = new Map<string, { values: (string | null)[]; files: string[] }>();
  for (const f of files) {
    const values = hive.values[f] ?? [];
    const k = JSON.stringify(values);
    const g = groups.get(k);
    if (g) g.files.push(f);
    else groups.set(k, { values, files: [f] });
  }
  const pred = partitionPredicate(filter, names);
  if (!pred) return { files: [...files], partitions: groups.size, selected: groups.size, filter: null };
  const list = [...groups.values()];
  const keep = matchPartitions(
    list.map((g) => g.values),
    hive.schema.fields,
    pred,
  );
  const out = list.flatMap((g, i) => (keep[i] ? g.files : [])).sort();
  return { files: out, partitions: list.length, selected: keep.filter(Boolean).length, filter: pred };
}

/**
 * What a parquet/csv partition source of a hive scan reads from its file: the file columns among
 * `columns` (at least one, for row counts) with their schema, and the partition info to append.
 */
export function hiveSourceFields(
  hive: HiveScanJSON,
  file: string,
  columns: readonly string[],
  schema: SchemaJSON,
  fileSchema: SchemaJSON,
): { columns: string[]; schema: SchemaJSON; fileSchema: SchemaJSON; partition: HiveSourceJSON } {
  const names = new Set(hive.schema.fields.map((f) => f.name));
  const onlyFile = (s: SchemaJSON): SchemaJSON => ({ ...s, fields: s.fields.filter((f) => !names.has(f.name)) });
  const fileOnly = onlyFile(fileSchema);
  let cols = columns.filter((c) => !names.has(c));
  let drop: string | undefined;
  if (cols.length === 0) {
    drop = fileOnly.fields[0]!.name;
    cols = [drop];
  }
  const outSchema = drop ? { ...fileOnly, fields: fileOnly.fields.filter((f) => f.name === drop) } : onlyFile(schema);
  const wanted = hive.schema.fields.filter((f) => columns.includes(f.name));
  const idx = wanted.map((f) => hive.schema.fields.indexOf(f));
  const all = hive.values[file] ?? [];
  const partition: HiveSourceJSON = { schema: { ...hive.schema, fields: wanted }, values: idx.map((i) => all[i] ?? null), output: [...columns] };
  if (drop) partition.dropFileColumn = drop;
  return { columns: cols, schema: outSchema, fileSchema: fileOnly, partition };
}

/** The batches of a file with its partition columns added (constant per file), in the scan's column order. */
export async function* withPartitionColumns(
  batches: AsyncGenerator<arrow.RecordBatch>,
  partition: HiveSourceJSON | undefined,
): AsyncGenerator<arrow.RecordBatch> {
  if (!partition) {
    yield* batches;
    return;
  }
  const fields = partition.schema.fields.map((f) => Field.fromJSON(f));
  const arrowFields = Schema.fromJSON(partition.schema).toArrow().fields;
  const built = new Map<number, arrow.Data[]>();
  for await (const b of batches) {
    const cols = new Map<string, { field: arrow.Field; data: arrow.Data }>();
    b.schema.fields.forEach((f, i) => {
      if (f.name !== partition.dropFileColumn) cols.set(f.name, { field: f, data: b.data.children[i]! });
    });
    // The constant columns are built once per batch length (batches mostly share one).
    let constant = built.get(b.numRows);
    if (!constant) {
      constant = fields.map((f, i) => columnData([partition.values[i] ?? null], f.type.json, b.numRows));
      if (built.size < 4) built.set(b.numRows, constant);
    }
    fields.forEach((f, i) => {
      cols.set(f.name, { field: arrowFields[i]!, data: constant[i]! });
    });
    const order = partition.output.map((n) => cols.get(n)!);
    const schema = new arrow.Schema(order.map((c) => c.field));
    yield new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: b.numRows, children: order.map((c) => c.data) }));
  }
}

/** explain's lines for a pruned hive scan: partitions kept, what was listed and read, and the files read (the first few). */
export function describeHivePruning(h: HivePruning, partitionColumns: readonly string[]): string[] {
  const of = h.listing?.walked ? `of ${h.partitions} seen` : `of ${h.partitions}`;
  const lines = [
    `hive partitions [${partitionColumns.join(', ')}]: ${h.selected} ${of}${h.filter ? ` after ${exprToString(h.filter)}` : ' (no filter on partition columns)'}`,
  ];
  if (h.listing) {
    const l = h.listing;
    lines.push(
      l.listedAtBuild
        ? `files listed when the DataFrame was created (manifest, glob or list); footers read at planning: ${l.footersRead}`
        : `partition directories listed: ${l.dirsListed}, pruned unlisted: ${l.dirsPruned}; footers read at planning: ${l.footersRead}`,
    );
  }
  const shown = h.files.slice(0, 10);
  lines.push(`files read (${h.files.length}): ${shown.join(', ')}${h.files.length > shown.length ? `, … ${h.files.length - shown.length} more` : ''}`);
  return lines;
}

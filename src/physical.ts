// Physical planning: turns an optimized logical plan into partition tasks (row-group-aligned
// scans, pruned by statistics) plus a per-partition operator chain, and the operators that must run
// after all partitions merge (everything from the first global limit up).
import type { DataTypeJSON, SchemaJSON } from './datatypes.ts';
import { Schema } from './datatypes.ts';
import type { AggFn, ExprNode } from './expressions.ts';
import { exprToString, udfCalls } from './expressions.ts';
import { describeHivePruning, hiveSourceFields, type HivePruning, type HiveSourceJSON } from './io/hive.ts';
import { planHiveScan } from './io/hive-scan.ts';
import { inspectParquet } from './io/parquet/index.ts';
import { isRelational, type CsvSourceOptions, type PlanNode, type ScanPushdowns } from './plan.ts';
import type { RowGroupInfo, RowRange } from './io/parquet/types.ts';
import { canSkipRowGroup } from './pruning.ts';
import { getUdf, type UdfDefinition } from './udf.ts';

/** The UDFs an operator chain calls. */
export function udfsOf(ops: readonly OpJSON[]): UdfDefinition[] {
  const names = new Set<string>();
  for (const op of ops) {
    if (op.type === 'filter') for (const c of udfCalls(op.predicate)) names.add(c.name);
    if (op.type === 'project') for (const e of op.exprs) for (const c of udfCalls(e)) names.add(c.name);
  }
  return [...names].map(getUdf);
}

/** Operators applied to a stream of batches, as data. */
export type OpJSON =
  | { type: 'filter'; predicate: ExprNode }
  | { type: 'project'; exprs: ExprNode[]; schema: SchemaJSON }
  | { type: 'explode'; columns: string[]; schema: SchemaJSON }
  | { type: 'limit'; n: number }
  | PartialAggregateOp;

/**
 * Phase one of a hash aggregation, run in each partition (on its worker thread): the rows (key
 * columns first, then one input column per aggregate) leave as partial states, or as they are
 * when the partition's keys turn out to be mostly distinct (src/aggregate/operator.ts).
 */
export interface PartialAggregateOp {
  type: 'partialAggregate';
  /** The aggregate's output schema: its first `keys` fields are the key columns. */
  schema: SchemaJSON;
  keys: number;
  aggs: { fn: AggFn; inType: DataTypeJSON; outType: DataTypeJSON; name: string }[];
  /** The partial table's state is sent on once it holds this many bytes (bounds a worker's memory). */
  flushBytes: number;
  /** Rows per push into the table. */
  batchSize: number;
}

export type SourceJSON =
  | {
      kind: 'parquet';
      path: string;
      /** null: all row groups of the file. */
      rowGroups: number[] | null;
      /** Rows [start, end) of the one row group in rowGroups: a partition smaller than a row group. */
      rows?: RowRange;
      columns: string[];
      filter: ExprNode | null;
      limit: number | null;
      schema: SchemaJSON;
      /** Hive partition columns added to the file's batches. */
      partition?: HiveSourceJSON;
    }
  | {
      kind: 'csv';
      path: string;
      columns: string[];
      filter: ExprNode | null;
      limit: number | null;
      fileSchema: SchemaJSON;
      schema: SchemaJSON;
      csv: CsvSourceOptions;
      /** Hive partition columns added to the file's batches. */
      partition?: HiveSourceJSON;
    }
  | {
      /** Several small files (or their row groups) read one after another as one partition. */
      kind: 'multi';
      parts: SourceJSON[];
      limit: number | null;
    }
  | {
      kind: 'memory';
      id: string;
      /** Batch index range [start, end). */
      start: number;
      end: number;
      /** Only rows [start, end) of those batches, counted from batch `start` (repartition). */
      rows?: RowRange;
    }
  | {
      /** An earlier stage's output in the serverless runner's work bucket (Arrow IPC). */
      kind: 'shard';
      key: string;
    };

/** One unit of parallel work: a source slice and the operators to run over it. Pure JSON. */
export interface PartitionTask {
  index: number;
  /** Modules (file URLs) that define the UDFs the task calls; a worker imports them first. */
  modules?: string[];
  source: SourceJSON;
  ops: OpJSON[];
  /** Output rows are written here instead of returned. */
  sink?: { format: 'parquet' | 'csv'; path: string; schema: SchemaJSON; partitionBy?: string[] };
}

function describeSource(s: SourceJSON): string {
  if (s.kind === 'memory') return 'in-memory batches';
  if (s.kind === 'multi') return s.parts.map(describeSource).join(' + ');
  if (s.kind === 'shard') return `shard ${s.key}`;
  const rg = s.kind === 'parquet' && s.rowGroups ? `, row groups ${s.rowGroups.join(',')}` : '';
  const rows = s.kind === 'parquet' && s.rows ? ` rows ${s.rows.start}-${s.rows.end}` : '';
  return `${s.path}${rg}${rows}`;
}

/** `partition 3: /data/f.parquet, row groups 4,5`: how errors and warnings name a partition. */
export function describeTask(t: Pick<PartitionTask, 'index' | 'source'>): string {
  return `partition ${t.index}: ${describeSource(t.source)}`;
}

export interface ScanSummary {
  format: 'parquet' | 'csv' | 'memory';
  files: number;
  rowGroupsSelected: number;
  rowGroupsTotal: number;
  /** Bytes the scan will read (compressed, selected row groups / whole CSV files). */
  bytes: number;
  /** Uncompressed bytes of the selected row groups (parquet). */
  uncompressedBytes: number;
  rows: number;
  columns: string[];
  filter: ExprNode | null;
  limit: number | null;
  /** Hive partitions kept by the filter (and the files read), for explain. */
  hive?: HivePruning & { columns: string[] };
}

export interface PhysicalPlan {
  partitions: PartitionTask[];
  /** UDFs the plan calls, in first-use order. */
  udfs: UdfDefinition[];
  /** Operators run in every partition (copied into each task's ops). */
  partitionOps: OpJSON[];
  /** Operators run once over the merged, ordered stream. */
  globalOps: OpJSON[];
  scan: ScanSummary;
  schema: SchemaJSON;
}

export interface PhysicalOptions {
  /** Pack consecutive row groups of a file into one partition up to this many uncompressed bytes. */
  targetPartitionBytes: number;
  /** Number of batches of an in-memory source per partition. */
  memoryBatchesPerPartition?: number;
  /**
   * With UDFs in the plan, split a file source into at least this many partitions (the runner's
   * parallelism), below a row group where needed.
   */
  minPartitions?: number;
  /**
   * Without UDFs, split a file source into up to `minPartitions` partitions too, each of at least
   * `partitionBytes` projected uncompressed bytes, when the scan reads at least `scanBytes`
   * (compressed): set where such a plan runs on worker threads (the embedded runner).
   */
  splitWithoutUdfs?: { partitionBytes: number; scanBytes: number };
}

/**
 * With UDFs, the serverless runner splits a scan into at least this many partitions: Lambda fan-out
 * is cheap, and a heavy UDF over one row group must not run in one invocation.
 */
export const AWS_MIN_PARTITIONS = 32;

/**
 * A row group bigger than the target splits into row ranges of at least this many rows (one
 * default batch): below that, per-partition overhead outweighs the smaller reads.
 */
const SIZE_SPLIT_MIN_ROWS = 65536;
/** Splitting for UDF parallelism goes down to this: a UDF's per-row cost repays smaller partitions. */
const UDF_SPLIT_MIN_ROWS = 4096;

/** A selected row group, sized by its projected columns. */
interface SelectedGroup {
  path: string;
  group: number;
  rows: number;
  /** Uncompressed bytes of the projected columns. */
  bytes: number;
  groupsInFile: number;
}

/** Rows [start, end) of one row group: the unit partitions are made of. */
interface Segment {
  g: SelectedGroup;
  start: number;
  end: number;
}

/** The k-th of n even cut points over `total` items. */
function cut(k: number, total: number, n: number): number {
  return Math.floor((k * total) / n);
}

function projectedBytes(rg: RowGroupInfo, columns: readonly string[]): { compressed: number; uncompressed: number } {
  let compressed = 0;
  let uncompressed = 0;
  for (const c of columns) {
    const b = rg.columnBytes[c];
    if (!b) return { compressed: rg.compressedBytes, uncompressed: rg.uncompressedBytes }; // no chunk metadata: whole group
    compressed += b.compressed;
    uncompressed += b.uncompressed;
  }
  return { compressed, uncompressed };
}

/**
 * Packs row groups into partitions of about `target` bytes: a row group bigger than that is split
 * into even row ranges (of at least `minRows` rows), smaller ones share a partition.
 */
function packBySize(groups: readonly SelectedGroup[], target: number, minRows: number): Segment[][] {
  const parts: Segment[][] = [];
  let cur: Segment[] = [];
  let curBytes = 0;
  const flush = (): void => {
    if (cur.length) parts.push(cur);
    cur = [];
    curBytes = 0;
  };
  for (const g of groups) {
    const pieces = Math.max(1, Math.min(Math.ceil(g.bytes / target - 1e-9), Math.floor(g.rows / minRows)));
    for (let k = 0; k < pieces; k++) {
      const seg = { g, start: cut(k, g.rows, pieces), end: cut(k + 1, g.rows, pieces) };
      const bytes = g.bytes / pieces;
      if (curBytes > 0 && curBytes + bytes > target * (1 + 1e-9)) flush();
      cur.push(seg);
      curBytes += bytes;
    }
  }
  flush();
  return parts;
}

/** How many partitions a scan without UDFs wants: one, unless it is big enough to pay workers' hand-off. */
function partitionsWithoutUdfs(scan: ScanSummary, opts: PhysicalOptions): number {
  const s = opts.splitWithoutUdfs;
  if (!s || scan.bytes < s.scanBytes) return 1;
  return Math.max(1, Math.min(opts.minPartitions ?? 1, Math.floor(scan.uncompressedBytes / s.partitionBytes)));
}

/**
 * n partitions of about equal bytes for workers to decode side by side: whole row groups when there
 * are at least n (each group's chunks are fetched once), else row ranges below them.
 */
function splitByBytes(groups: readonly SelectedGroup[], n: number): Segment[][] {
  const total = groups.reduce((a, g) => a + g.bytes, 0);
  if (groups.length < n) return packBySize(groups, total / n, SIZE_SPLIT_MIN_ROWS);
  const parts: Segment[][] = Array.from({ length: n }, () => []);
  let before = 0;
  for (const g of groups) {
    // A group goes to the partition its middle byte falls in.
    parts[Math.min(n - 1, Math.floor((n * (before + g.bytes / 2)) / total))]!.push({ g, start: 0, end: g.rows });
    before += g.bytes;
  }
  return parts.filter((p) => p.length > 0);
}

/** When the last of `parts` ends if n workers take them in order, each the next free one (bytes as time). */
function makespan(parts: readonly Segment[][], n: number): number {
  const free = new Array<number>(n).fill(0);
  for (const p of parts) {
    const i = free.indexOf(Math.min(...free));
    free[i]! += p.reduce((a, s) => a + (s.g.bytes * (s.end - s.start)) / s.g.rows, 0);
  }
  return Math.max(...free);
}

/**
 * A UDF plan's split for n workers: greedy packing to total/n can leave n + 1 uneven partitions (row
 * groups of 1000 and 1100 rows made 3100 / 3200 / 2000 rows for 2 workers: 5100 on one of them), so
 * whole row groups split by bytes into n are taken when they finish no later.
 */
function udfSplit(groups: readonly SelectedGroup[], target: number, n: number): Segment[][] {
  const packed = packBySize(groups, target, UDF_SPLIT_MIN_ROWS);
  if (groups.length < n) return packed;
  const whole = splitByBytes(groups, n);
  return makespan(whole, n) <= makespan(packed, n) * (1 + 1e-9) ? whole : packed;
}

/** Exactly n partitions of (nearly) equal row counts, in order; some may be empty when rows < n. */
function splitEvenly(groups: readonly SelectedGroup[], n: number): Segment[][] {
  const total = groups.reduce((a, g) => a + g.rows, 0);
  const parts: Segment[][] = Array.from({ length: n }, () => []);
  let base = 0; // global row index of the current group's first row
  let k = 0;
  for (const g of groups) {
    let pos = 0;
    while (pos < g.rows) {
      while (k < n - 1 && cut(k + 1, total, n) <= base + pos) k++;
      const end = Math.min(g.rows, cut(k + 1, total, n) - base);
      parts[k]!.push({ g, start: pos, end });
      pos = end;
    }
    base += g.rows;
  }
  return parts;
}

/** A partition's segments as a source: whole row groups of a file stay one read; a partial one carries its row range. */
/** What a file's source reads and yields: its columns and schema, plus its hive partition values. */
type FileFields = (path: string) => { columns: string[]; schema: SchemaJSON; partition?: HiveSourceJSON };

function parquetSourceOf(segs: readonly Segment[], fields: FileFields, p: ScanPushdowns): SourceJSON {
  const pieces: SourceJSON[] = [];
  let whole: { path: string; groups: number[]; inFile: number } | null = null;
  const source = (path: string, rowGroups: number[] | null, rows?: RowRange): SourceJSON => {
    const h = fields(path);
    return {
      kind: 'parquet',
      path,
      rowGroups,
      ...(rows ? { rows } : {}),
      columns: h.columns,
      filter: p.filter,
      limit: p.limit,
      schema: h.schema,
      ...(h.partition ? { partition: h.partition } : {}),
    };
  };
  const flushWhole = (): void => {
    if (whole) pieces.push(source(whole.path, whole.groups.length === whole.inFile ? null : whole.groups));
    whole = null;
  };
  for (const s of segs) {
    if (s.start === 0 && s.end === s.g.rows) {
      if (whole && whole.path !== s.g.path) flushWhole();
      whole ??= { path: s.g.path, groups: [], inFile: s.g.groupsInFile };
      whole.groups.push(s.g.group);
    } else {
      flushWhole();
      pieces.push(source(s.g.path, [s.g.group], { start: s.start, end: s.end }));
    }
  }
  flushWhole();
  return pieces.length === 1 ? pieces[0]! : { kind: 'multi', parts: pieces, limit: p.limit };
}

/**
 * The partition operator of a chain node (filter, project, explode, limit). `unsupported` words the
 * error for any other node, so each caller can say what its runner cannot do.
 */
export function opFor(node: PlanNode, unsupported: (type: string) => string = (t) => `not an operator: ${t}`): OpJSON {
  switch (node.type) {
    case 'filter':
      return { type: 'filter', predicate: node.predicate };
    case 'project':
      return { type: 'project', exprs: node.exprs, schema: node.schema };
    case 'explode':
      return { type: 'explode', columns: node.columns, schema: node.schema };
    case 'limit':
      return { type: 'limit', n: node.n };
    default:
      throw new Error(unsupported(node.type));
  }
}

/** A plan as the nodes above its leaf, innermost first, and that leaf. */
export function splitChain(plan: PlanNode): { chain: PlanNode[]; leaf: Exclude<PlanNode, { input: PlanNode }> } {
  const chain: PlanNode[] = [];
  let node: PlanNode = plan;
  while ('input' in node) {
    chain.unshift(node);
    node = node.input;
  }
  return { chain, leaf: node };
}

export function buildPhysicalPlan(plan: PlanNode, opts: PhysicalOptions): PhysicalPlan {
  // Walk down to the source, collecting operators bottom-up.
  const { chain, leaf: source } = splitChain(plan);
  // A relational node (aggregate, sort, join, ...) is the end of a stage: the runner executes it
  // and hands the stage above its output (src/relational/execute.ts).
  if (isRelational(source)) throw new Error(`a ${source.type} node cannot be a partition source; run the plan on a runner that executes relational operators`);
  const partitionOps: OpJSON[] = [];
  const globalOps: OpJSON[] = [];
  let global = false;
  let repartition: number | null = null;
  for (const n of chain) {
    if (n.type === 'intoPartitions') {
      // One partitioning per scan: the partitions run every operator, so the last call decides.
      if (global) throw new Error(`repartition(${n.n}) after limit() is not supported: the result of a global limit is one stream; call it before limit()`);
      repartition = n.n;
      continue;
    }
    const op = opFor(n);
    if (global) {
      globalOps.push(op);
    } else if (op.type === 'limit') {
      // Each partition can stop at n too; the merged stream then takes exactly n.
      partitionOps.push(op);
      globalOps.push(op);
      global = true;
    } else {
      partitionOps.push(op);
    }
  }

  const partitions: Omit<PartitionTask, 'index' | 'ops'>[] = [];
  let scan: ScanSummary;
  if (source.type === 'in_memory') {
    if (repartition !== null) {
      // n contiguous row ranges over all the batches (slices, no copies).
      for (let k = 0; k < repartition; k++) {
        const rows = { start: cut(k, source.numRows, repartition), end: cut(k + 1, source.numRows, repartition) };
        partitions.push({ source: { kind: 'memory', id: source.id, start: 0, end: source.numBatches, rows } });
      }
    } else {
      const per = Math.max(1, opts.memoryBatchesPerPartition ?? 16);
      for (let s = 0; s < source.numBatches; s += per) {
        partitions.push({ source: { kind: 'memory', id: source.id, start: s, end: Math.min(source.numBatches, s + per) } });
      }
      if (!partitions.length) partitions.push({ source: { kind: 'memory', id: source.id, start: 0, end: 0 } });
    }
    scan = {
      format: 'memory',
      files: 0,
      rowGroupsSelected: 0,
      rowGroupsTotal: 0,
      bytes: 0,
      uncompressedBytes: 0,
      rows: source.numRows,
      columns: Schema.fromJSON(source.schema).names,
      filter: null,
      limit: null,
    };
  } else {
    const p = source.pushdowns;
    const columns = p.columns ?? Schema.fromJSON(source.fileSchema).names;
    // Hive partitions the filter rules out are dropped before any of their files is opened.
    // A lazily listed hive scan lists only the surviving partitions' files here (hive-scan.ts).
    const planned = source.hive ? planHiveScan({ ...source, hive: source.hive }, p.filter) : null;
    const hive = planned ? planned.pruning : null;
    const files = planned ? planned.files : source.files;
    const hiveFields = (path: string, schema: SchemaJSON, fileSchema: SchemaJSON) =>
      planned ? hiveSourceFields(planned.hive, path, columns, schema, fileSchema) : { columns, schema, fileSchema };
    scan = {
      format: source.format,
      files: files.length,
      rowGroupsSelected: 0,
      rowGroupsTotal: 0,
      bytes: 0,
      uncompressedBytes: 0,
      rows: 0,
      columns,
      filter: p.filter,
      limit: p.limit,
    };
    if (hive && source.hive) scan.hive = { ...hive, columns: source.hive.schema.fields.map((f) => f.name) };
    if (source.format === 'parquet') {
      const groups: SelectedGroup[] = [];
      for (const path of files) {
        const info = inspectParquet(path);
        scan.rowGroupsTotal += info.rowGroups.length;
        for (const rg of info.rowGroups) {
          if (p.filter && canSkipRowGroup(p.filter, rg.stats, rg.numRows)) continue;
          // Sized by the projected columns: one narrow column of a wide file is a small read.
          const bytes = projectedBytes(rg, columns);
          scan.rowGroupsSelected++;
          scan.bytes += bytes.compressed;
          scan.uncompressedBytes += bytes.uncompressed;
          scan.rows += rg.numRows;
          groups.push({ path, group: rg.index, rows: rg.numRows, bytes: bytes.uncompressed, groupsInFile: info.rowGroups.length });
        }
      }
      let parts = repartition !== null ? splitEvenly(groups, repartition) : packBySize(groups, opts.targetPartitionBytes, SIZE_SPLIT_MIN_ROWS);
      // UDFs are the expensive part: give every slot of parallelism a partition (a small file with a
      // heavy UDF must not run on one core), unless a pushed limit means few rows are read anyway.
      const udfs = partitionOps.some((op) => udfsOf([op]).length > 0);
      const wantAtLeast = p.limit !== null ? 1 : udfs ? (opts.minPartitions ?? 1) : partitionsWithoutUdfs(scan, opts);
      if (repartition === null && parts.length < wantAtLeast && scan.uncompressedBytes > 0) {
        parts = udfs
          ? udfSplit(groups, Math.min(opts.targetPartitionBytes, scan.uncompressedBytes / wantAtLeast), wantAtLeast)
          : splitByBytes(groups, wantAtLeast);
      }
      const fields: FileFields = (path) => hiveFields(path, source.schema, source.fileSchema);
      for (const segs of parts) partitions.push({ source: parquetSourceOf(segs, fields, p) });
    } else {
      const csvSource = (path: string): SourceJSON => {
        const h = hiveFields(path, source.schema, source.fileSchema);
        return {
          kind: 'csv',
          path,
          columns: h.columns,
          filter: p.filter,
          limit: p.limit,
          fileSchema: h.fileSchema,
          schema: h.schema,
          csv: source.csv ?? {},
          ...('partition' in h ? { partition: h.partition } : {}),
        };
      };
      if (repartition === null) {
        for (const path of files) partitions.push({ source: csvSource(path) });
      } else {
        // CSV has no row index to split by without parsing the file: files are grouped, never split.
        if (repartition > files.length) {
          throw new Error(
            `repartition(${repartition}) over ${files.length} CSV file(s): CSV sources split by file only (at most ${files.length} partition(s)); use n <= ${files.length} or read Parquet`,
          );
        }
        for (let k = 0; k < repartition; k++) {
          const mine = files.slice(cut(k, files.length, repartition), cut(k + 1, files.length, repartition)).map(csvSource);
          partitions.push({ source: mine.length === 1 ? mine[0]! : { kind: 'multi', parts: mine, limit: p.limit } });
        }
      }
    }
  }
  const udfs = udfsOf([...partitionOps, ...globalOps]);
  const modules = [
    ...new Set(
      udfsOf(partitionOps)
        .map((u) => u.moduleUrl)
        .filter((m): m is string => m !== null),
    ),
  ];
  return {
    partitions: partitions.map((t, index) => ({ ...t, index, ops: partitionOps, ...(modules.length ? { modules } : {}) })),
    udfs,
    partitionOps,
    globalOps,
    scan,
    schema: plan.schema,
  };
}

function opToString(op: OpJSON): string {
  switch (op.type) {
    case 'filter':
      return `Filter: ${exprToString(op.predicate)}`;
    case 'project':
      return `Project: ${op.exprs.map(exprToString).join(', ')}`;
    case 'explode':
      return `Explode: [${op.columns.join(', ')}]`;
    case 'limit':
      return `Limit: ${op.n}`;
    case 'partialAggregate': {
      const keys = op.schema.fields.slice(0, op.keys).map((f) => f.name);
      return `HashAggregate (partial): ${keys.length ? `keys [${keys.join(', ')}]` : 'whole frame'}`;
    }
  }
}

/** One line per UDF for explain: kind, batching, parallelism, resources, error policy. */
export function describeUdf(u: UdfDefinition): string {
  const o = u.options;
  const parts = [`${u.cls ? 'cls ' : ''}${u.kind}`, `returns ${u.returnDtype}`];
  if (o.batchSize) parts.push(`batchSize ${o.batchSize}`);
  if (o.concurrency) parts.push(`concurrency ${o.concurrency}`);
  if (u.kind === 'async') parts.push(`maxConcurrency ${o.maxConcurrency}`);
  parts.push(`numCpus ${o.numCpus}`);
  if (o.numGpus) parts.push(`numGpus ${o.numGpus}`);
  if (o.memoryBytes) parts.push(`memory ${mb(o.memoryBytes)}`);
  parts.push(`onError ${o.onError}`);
  if (u.kind === 'generator') parts.push(`onEmpty ${o.onEmpty}`);
  if (o.maxRetries) parts.push(`maxRetries ${o.maxRetries}`, `retryBackoffMs ${o.retryBackoffMs}`, `retryBackoffMaxMs ${o.retryBackoffMaxMs}`);
  if (o.timeoutMs !== null) parts.push(`timeoutMs ${o.timeoutMs}`);
  if (o.deadLetter) parts.push(`deadLetter ${o.deadLetter}`);
  return `UDF ${u.name}: ${parts.join(', ')}`;
}

function mb(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

export function physicalPlanToString(p: PhysicalPlan, placement: { parallelism: number; where: string }): string {
  const lines: string[] = [];
  const push = (s: string): void => {
    if (lines.length) lines.push('|');
    lines.push(`* ${s}`);
  };
  for (const op of [...p.globalOps].reverse()) push(`${opToString(op)}  [global]`);
  if (p.globalOps.length) push(`Merge: ${p.partitions.length} partition(s) in order`);
  push(`Stage 0: ${p.partitions.length} partition(s), parallelism ${placement.parallelism} (${placement.where})`);
  for (const u of p.udfs) lines.push(`|   ${describeUdf(u)}`);
  for (const op of [...p.partitionOps].reverse()) push(opToString(op));
  const s = p.scan;
  if (s.format === 'memory') {
    push(`InMemoryScan: ${s.rows} row(s), columns [${s.columns.join(', ')}]`);
  } else {
    const parts = [`${s.files} file(s)`];
    if (s.format === 'parquet') parts.push(`row groups ${s.rowGroupsSelected}/${s.rowGroupsTotal}`);
    parts.push(`columns [${s.columns.join(', ')}]`);
    if (s.filter) parts.push(`pushed filter ${exprToString(s.filter)}`);
    if (s.limit !== null) parts.push(`limit ${s.limit}`);
    parts.push(`${mb(s.bytes)} to read`);
    push(`Scan${s.format === 'parquet' ? 'Parquet' : 'Csv'}: ${parts.join(', ')}`);
    if (s.hive) for (const l of describeHivePruning(s.hive, s.hive.columns)) lines.push(`|   ${l}`);
  }
  return lines.join('\n');
}

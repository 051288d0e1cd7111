// Physical planning: turns an optimized logical plan into partition tasks (row-group-aligned
// scans, pruned by statistics) plus a per-partition operator chain, and the operators that must run
// after all partitions merge (everything from the first global limit up).
import type { SchemaJSON } from './datatypes.ts';
import { Schema } from './datatypes.ts';
import type { ExprNode } from './expressions.ts';
import { exprToString, udfCalls } from './expressions.ts';
import { describeHivePruning, hiveSourceFields, type HivePruning, type HiveSourceJSON } from './io/hive.ts';
import { planHiveScan } from './io/hive-scan.ts';
import { inspectParquet } from './io/parquet/index.ts';
import type { CsvSourceOptions, PlanNode } from './plan.ts';
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
  | { type: 'limit'; n: number };

export type SourceJSON =
  | {
      kind: 'parquet';
      path: string;
      /** null: all row groups of the file. */
      rowGroups: number[] | null;
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
  return `${s.path}${rg}`;
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
}

function opFor(node: PlanNode): OpJSON {
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
      throw new Error(`not an operator: ${node.type}`);
  }
}

export function buildPhysicalPlan(plan: PlanNode, opts: PhysicalOptions): PhysicalPlan {
  // Walk down to the source, collecting operators bottom-up.
  const chain: PlanNode[] = [];
  let node: PlanNode = plan;
  while ('input' in node) {
    chain.unshift(node);
    node = node.input;
  }
  const source = node;
  const partitionOps: OpJSON[] = [];
  const globalOps: OpJSON[] = [];
  let global = false;
  for (const n of chain) {
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
    const per = Math.max(1, opts.memoryBatchesPerPartition ?? 16);
    for (let s = 0; s < source.numBatches; s += per) {
      partitions.push({ source: { kind: 'memory', id: source.id, start: s, end: Math.min(source.numBatches, s + per) } });
    }
    if (!partitions.length) partitions.push({ source: { kind: 'memory', id: source.id, start: 0, end: 0 } });
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
      // Row groups are packed into partitions of about targetPartitionBytes (uncompressed): big
      // files split at row-group boundaries, small files share a partition.
      type Piece = { path: string; groups: number[]; total: number };
      let pending: Piece[] = [];
      let pendingBytes = 0;
      const parquetSource = (x: Piece): SourceJSON => {
        const h = hiveFields(x.path, source.schema, source.fileSchema);
        return {
          kind: 'parquet',
          path: x.path,
          rowGroups: x.groups.length === x.total ? null : x.groups,
          columns: h.columns,
          filter: p.filter,
          limit: p.limit,
          schema: h.schema,
          ...('partition' in h ? { partition: h.partition } : {}),
        };
      };
      const flush = (): void => {
        const pieces = pending.filter((x) => x.groups.length);
        if (pieces.length === 1) partitions.push({ source: parquetSource(pieces[0]!) });
        else if (pieces.length > 1) partitions.push({ source: { kind: 'multi', parts: pieces.map(parquetSource), limit: p.limit } });
        pending = [];
        pendingBytes = 0;
      };
      for (const path of files) {
        const info = inspectParquet(path);
        scan.rowGroupsTotal += info.rowGroups.length;
        let piece: Piece = { path, groups: [], total: info.rowGroups.length };
        pending.push(piece);
        for (const rg of info.rowGroups) {
          if (p.filter && canSkipRowGroup(p.filter, rg.stats, rg.numRows)) continue;
          scan.rowGroupsSelected++;
          scan.bytes += rg.compressedBytes;
          scan.uncompressedBytes += rg.uncompressedBytes;
          scan.rows += rg.numRows;
          if (pendingBytes > 0 && pendingBytes + rg.uncompressedBytes > opts.targetPartitionBytes) {
            flush();
            piece = { path, groups: [], total: info.rowGroups.length };
            pending.push(piece);
          }
          piece.groups.push(rg.index);
          pendingBytes += rg.uncompressedBytes;
        }
      }
      flush();
    } else {
      for (const path of files) {
        const h = hiveFields(path, source.schema, source.fileSchema);
        partitions.push({
          source: {
            kind: 'csv',
            path,
            columns: h.columns,
            filter: p.filter,
            limit: p.limit,
            fileSchema: h.fileSchema,
            schema: h.schema,
            csv: source.csv ?? {},
            ...('partition' in h ? { partition: h.partition } : {}),
          },
        });
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

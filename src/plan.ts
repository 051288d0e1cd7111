// Logical plan: plain JSON nodes, each carrying its output schema so any tree can be printed,
// optimized or shipped to a worker without re-deriving types.
import type { SchemaJSON } from './datatypes.ts';
import { Schema } from './datatypes.ts';
import type { AggFn, ExprNode } from './expressions.ts';
import { exprToString } from './expressions.ts';
import type { HiveScanJSON } from './io/hive.ts';
import type { HiveLazyJSON } from './io/hive-scan.ts';

export interface CsvSourceOptions {
  delimiter?: string;
  header?: boolean;
  nullValues?: string[];
}

/** What the optimizer pushed into a scan. */
export interface ScanPushdowns {
  /** Columns to decode (in file-schema order); null = all. */
  columns: string[] | null;
  /** Rows not satisfying it are dropped by the scan; also used to prune row groups by statistics. */
  filter: ExprNode | null;
  /** The scan may stop after this many rows (after its filter). */
  limit: number | null;
}

export interface ScanNode {
  type: 'scan';
  format: 'parquet' | 'csv';
  /** The path, glob or list as the user gave it (shown by explain). */
  source: string | string[];
  /** Expanded, sorted file list. */
  files: string[];
  /** Full file schema (all columns). */
  fileSchema: SchemaJSON;
  csv?: CsvSourceOptions;
  /** Hive partition columns (`key=value/` directories; the last fields of fileSchema) and each file's values. */
  hive?: HiveScanJSON;
  /** A hive scan whose files are listed (or footers read) at planning, after partition pruning: `files` is then empty (hive-scan.ts). */
  hiveLazy?: HiveLazyJSON;
  pushdowns: ScanPushdowns;
  schema: SchemaJSON;
}

/** Data already in memory (fromRecords, fromArrow, collect()). Batches stay in a registry keyed by id. */
export interface InMemoryNode {
  type: 'in_memory';
  id: string;
  numRows: number;
  numBatches: number;
  schema: SchemaJSON;
}

export interface ProjectNode {
  type: 'project';
  input: PlanNode;
  exprs: ExprNode[];
  schema: SchemaJSON;
}

export interface FilterNode {
  type: 'filter';
  input: PlanNode;
  predicate: ExprNode;
  schema: SchemaJSON;
}

export interface LimitNode {
  type: 'limit';
  input: PlanNode;
  n: number;
  schema: SchemaJSON;
}

export interface ExplodeNode {
  type: 'explode';
  input: PlanNode;
  columns: string[];
  schema: SchemaJSON;
}

// Relational nodes (pipeline breakers) keep their inputs in `inputs`, not `input`: the linear
// rules of the optimizer and the physical planner see them as the source of the chain above them,
// which is exactly a stage boundary (see src/relational/exchange.ts).

/** One aggregate of an AggregateNode: its input is the column `__a<i>` of the node's input. */
export interface AggregateCall {
  fn: AggFn;
  /** The expression as the user wrote it (for explain). */
  expr: ExprNode;
  name: string;
  inType: SchemaJSON['fields'][number]['type'];
  outType: SchemaJSON['fields'][number]['type'];
}

/** groupBy(keys).agg(aggs), or agg(aggs) over the whole frame (no keys). Input columns: keys, then `__a0..`. */
export interface AggregateNode {
  type: 'aggregate';
  inputs: [PlanNode];
  keys: string[];
  aggs: AggregateCall[];
  schema: SchemaJSON;
}

export interface SortKey {
  column: string;
  desc: boolean;
  nullsFirst: boolean;
}

export interface SortNode {
  type: 'sort';
  inputs: [PlanNode];
  by: SortKey[];
  schema: SchemaJSON;
}

export type JoinHow = 'inner' | 'left' | 'right' | 'outer' | 'semi' | 'anti';

export interface JoinNode {
  type: 'join';
  /** [left, right] */
  inputs: [PlanNode, PlanNode];
  leftOn: string[];
  rightOn: string[];
  how: JoinHow;
  /** `on` (same names): the key columns appear once (coalesced for right/outer joins). */
  using: boolean;
  /** Output name of each right column kept (after suffixing), by right column name. */
  rightNames: Record<string, string>;
  schema: SchemaJSON;
}

export interface ConcatNode {
  type: 'concat';
  inputs: PlanNode[];
  schema: SchemaJSON;
}

/** repartition(n, ...keys): rows with equal keys land in the same one of n partitions. */
export interface RepartitionNode {
  type: 'repartition';
  inputs: [PlanNode];
  keys: string[];
  partitions: number;
  schema: SchemaJSON;
}

export type RelationalNode = AggregateNode | SortNode | JoinNode | ConcatNode | RepartitionNode;

/**
 * intoPartitions(n) / repartition(n) without keys: the rows below run as exactly n partitions, each
 * a contiguous range of the input's rows, in order (split below a row group by row ranges, small
 * ones merged). Not an operator: the physical planner applies it to the scan.
 */
export interface IntoPartitionsNode {
  type: 'intoPartitions';
  input: PlanNode;
  n: number;
  schema: SchemaJSON;
}

export type PlanNode = ScanNode | InMemoryNode | ProjectNode | FilterNode | LimitNode | ExplodeNode | IntoPartitionsNode | RelationalNode;

export function planSchema(node: PlanNode): Schema {
  return Schema.fromJSON(node.schema);
}

export function isRelational(node: PlanNode): node is RelationalNode {
  return 'inputs' in node;
}

export function children(node: PlanNode): PlanNode[] {
  if ('inputs' in node) return node.inputs;
  return 'input' in node ? [node.input] : [];
}

function listCols(cols: readonly string[]): string {
  return `[${cols.join(', ')}]`;
}

/** One line per node, used by explain's logical sections. */
export function describeNode(node: PlanNode): string {
  switch (node.type) {
    case 'scan': {
      const p = node.pushdowns;
      const parts = [node.hiveLazy?.root ? 'files listed at planning' : `${node.files.length} file(s)`];
      if (node.hive) parts.push(`hive partitions [${node.hive.schema.fields.map((f) => f.name).join(', ')}]`);
      parts.push(`columns ${p.columns ? listCols(p.columns) : 'all'}`);
      if (p.filter) parts.push(`filter ${exprToString(p.filter)}`);
      if (p.limit !== null) parts.push(`limit ${p.limit}`);
      return `Scan${node.format === 'parquet' ? 'Parquet' : 'Csv'}: ${parts.join(', ')}`;
    }
    case 'in_memory':
      return `InMemory: ${node.numRows} row(s), ${node.numBatches} batch(es), columns ${listCols(planSchema(node).names)}`;
    case 'project':
      return `Project: ${node.exprs.map(exprToString).join(', ')}`;
    case 'filter':
      return `Filter: ${exprToString(node.predicate)}`;
    case 'limit':
      return `Limit: ${node.n}`;
    case 'explode':
      return `Explode: ${listCols(node.columns)}`;
    case 'aggregate':
      return `Aggregate: ${node.keys.length ? `keys ${listCols(node.keys)}, ` : ''}${node.aggs.map((a) => `${a.fn}(${exprToString(a.expr)}) as ${a.name}`).join(', ')}`;
    case 'sort':
      return `Sort: ${node.by.map((k) => `${k.column} ${k.desc ? 'desc' : 'asc'} nulls ${k.nullsFirst ? 'first' : 'last'}`).join(', ')}`;
    case 'join':
      return `Join: ${node.how} on ${node.leftOn.map((l, i) => (l === node.rightOn[i] ? l : `${l} = ${node.rightOn[i]}`)).join(', ')}`;
    case 'concat':
      return `Concat: ${node.inputs.length} inputs`;
    case 'repartition':
      return `Repartition: hash ${listCols(node.keys)} into ${node.partitions}`;
    case 'intoPartitions':
      return `IntoPartitions: ${node.n} partition(s) by row ranges`;
  }
}

/** Tree text, root first: `* Node` lines joined by `|` connectors; a node with several inputs indents each. */
export function planToString(root: PlanNode, describe: (n: PlanNode) => string = describeNode, indent = ''): string {
  const lines: string[] = [];
  let node: PlanNode | undefined = root;
  while (node) {
    lines.push(`${indent}* ${describe(node)}`);
    const kids = children(node);
    if (kids.length > 1) {
      kids.forEach((k, i) => {
        lines.push(`${indent}|\\ input ${i}`);
        lines.push(planToString(k, describe, `${indent}|  `));
      });
      break;
    }
    node = kids[0];
    if (node) lines.push(`${indent}|`);
  }
  return lines.join('\n');
}

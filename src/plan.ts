// Logical plan: plain JSON nodes, each carrying its output schema so any tree can be printed,
// optimized or shipped to a worker without re-deriving types.
import type { SchemaJSON } from './datatypes.ts';
import { Schema } from './datatypes.ts';
import type { ExprNode } from './expressions.ts';
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

export type PlanNode = ScanNode | InMemoryNode | ProjectNode | FilterNode | LimitNode | ExplodeNode;

export function planSchema(node: PlanNode): Schema {
  return Schema.fromJSON(node.schema);
}

export function children(node: PlanNode): PlanNode[] {
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
  }
}

/** Tree text, root first: `* Node` lines joined by `|` connectors. */
export function planToString(root: PlanNode, describe: (n: PlanNode) => string = describeNode): string {
  const lines: string[] = [];
  let node: PlanNode | undefined = root;
  while (node) {
    lines.push(`* ${describe(node)}`);
    const kids = children(node);
    node = kids[0];
    if (node) lines.push('|');
  }
  return lines.join('\n');
}

// The physical side of relational nodes: every aggregate, sort, join and keyed repartition sits on
// an exchange (hash, range, broadcast or gather) with a partition count. This is plain JSON, so a
// runner can ship it: the embedded runner runs it in-process (relational/execute.ts); the
// serverless runner is meant to make each exchange a stage boundary (docs/architecture.md).
import { Schema } from '../datatypes.ts';
import { inspectParquet } from '../io/parquet/index.ts';
import type { AggregateCall, JoinHow, PlanNode, SortKey } from '../plan.ts';
import { isRelational } from '../plan.ts';

export type Exchange =
  /** Rows with equal keys go to the same one of `partitions` buckets. */
  | { kind: 'hash'; keys: string[]; partitions: number }
  /** Sorted key ranges (boundaries sampled from the input), one per partition. */
  | { kind: 'range'; keys: SortKey[]; partitions: number }
  /** The whole (small) input goes to every partition of the other side. */
  | { kind: 'broadcast'; estimatedBytes: number }
  /** Everything to one partition (a whole-frame aggregate). */
  | { kind: 'gather' };

export type RelationalPhysical =
  /**
   * A linear plan (scan, projections, filters, UDFs) run as partitions: an ordinary stage.
   * `reducing`: its partitions end in phase one of an aggregation that is not known to reduce
   * little (groupsReduce), so mostly partial states leave them.
   */
  | { op: 'stage'; plan: PlanNode; reducing?: boolean }
  /** Operators applied to the stream above a relational operator (projections, filters, limits). */
  | { op: 'pipeline'; plan: PlanNode; input: RelationalPhysical }
  | { op: 'exchange'; exchange: Exchange; input: RelationalPhysical }
  | { op: 'hash_aggregate'; phase: 'partial' | 'final'; keys: string[]; aggs: AggregateCall[]; input: RelationalPhysical }
  | { op: 'sort'; keys: SortKey[]; input: RelationalPhysical }
  | {
      op: 'hash_join';
      how: JoinHow;
      leftOn: string[];
      rightOn: string[];
      strategy: 'broadcast' | 'partitioned';
      probe: RelationalPhysical;
      build: RelationalPhysical;
    }
  | { op: 'concat'; inputs: RelationalPhysical[] };

export interface RelationalPlanOptions {
  /** Partitions of hash and range exchanges. */
  partitions: number;
  /** A join side estimated under this many bytes is broadcast. */
  broadcastBytes: number;
}

/**
 * Whether a join may broadcast its right side: right and outer joins emit the right rows nothing
 * matched, which no one partition of the left side can know.
 */
export function broadcastable(how: JoinHow): boolean {
  return how !== 'right' && how !== 'outer';
}

/** Rough bytes a plan's output takes in memory (scan sizes; relational nodes: their inputs). */
export function estimateBytes(plan: PlanNode): number {
  switch (plan.type) {
    case 'scan': {
      if (plan.format === 'csv') return Number.POSITIVE_INFINITY;
      const cols = plan.pushdowns.columns;
      let total = 0;
      for (const f of plan.files) {
        const info = inspectParquet(f);
        const all = Schema.fromJSON(plan.fileSchema).names.length || 1;
        const share = cols ? cols.length / all : 1;
        total += info.rowGroups.reduce((n, rg) => n + rg.uncompressedBytes, 0) * share;
      }
      return total;
    }
    case 'in_memory':
      return plan.numRows * Math.max(1, Schema.fromJSON(plan.schema).names.length) * 8;
    default:
      if ('inputs' in plan) return plan.inputs.reduce((n, p) => n + estimateBytes(p), 0);
      return estimateBytes(plan.input);
  }
}

/**
 * Does grouping `plan`'s rows by `keys` reduce them well (to at most a quarter as many groups)?
 * Known only for keys read straight from Parquet integer columns with statistics, whose value
 * ranges bound the number of groups; null when unknown.
 */
export function groupsReduce(plan: PlanNode, keys: readonly string[]): boolean | null {
  if (!keys.length) return true;
  let node = plan;
  for (;;) {
    if (node.type === 'project') {
      // Each key must pass through under its own name.
      for (const k of keys) {
        if (!node.exprs.some((e) => e.op === 'col' && e.name === k)) return null;
      }
    } else if (node.type !== 'filter' && node.type !== 'intoPartitions') break;
    node = node.input;
  }
  if (node.type !== 'scan' || node.format !== 'parquet' || node.hive || node.hiveLazy || !node.files.length) return null;
  let rows = 0;
  const lo = keys.map(() => Number.POSITIVE_INFINITY);
  const hi = keys.map(() => Number.NEGATIVE_INFINITY);
  const nulls = keys.map(() => 0);
  for (const f of node.files) {
    for (const rg of inspectParquet(f).rowGroups) {
      rows += rg.numRows;
      for (const [i, k] of keys.entries()) {
        const st = rg.stats[k];
        if (!st || typeof st.min !== 'number' || typeof st.max !== 'number' || !Number.isInteger(st.min) || !Number.isInteger(st.max)) return null;
        lo[i] = Math.min(lo[i]!, st.min);
        hi[i] = Math.max(hi[i]!, st.max);
        nulls[i] = Math.max(nulls[i]!, st.nullCount ?? 1);
      }
    }
  }
  let groups = 1;
  for (const [i] of keys.entries()) groups *= hi[i]! - lo[i]! + 1 + (nulls[i]! > 0 ? 1 : 0);
  return groups * 4 <= rows;
}

/** The physical plan of a plan whose chain ends in a relational node. */
export function relationalPhysical(plan: PlanNode, o: RelationalPlanOptions): RelationalPhysical {
  let leaf = plan;
  while ('input' in leaf) leaf = leaf.input;
  if (!isRelational(leaf)) return { op: 'stage', plan };
  const input = (p: PlanNode): RelationalPhysical => relationalPhysical(p, o);
  let body: RelationalPhysical;
  switch (leaf.type) {
    case 'aggregate': {
      const exchange: Exchange = leaf.keys.length ? { kind: 'hash', keys: leaf.keys, partitions: o.partitions } : { kind: 'gather' };
      const below = input(leaf.inputs[0]);
      const partial: RelationalPhysical = {
        op: 'hash_aggregate',
        phase: 'partial',
        keys: leaf.keys,
        aggs: leaf.aggs,
        input: below.op === 'stage' && groupsReduce(leaf.inputs[0], leaf.keys) !== false ? { ...below, reducing: true } : below,
      };
      body = { op: 'hash_aggregate', phase: 'final', keys: leaf.keys, aggs: leaf.aggs, input: { op: 'exchange', exchange, input: partial } };
      break;
    }
    case 'sort':
      body = {
        op: 'sort',
        keys: leaf.by,
        input: { op: 'exchange', exchange: { kind: 'range', keys: leaf.by, partitions: o.partitions }, input: input(leaf.inputs[0]) },
      };
      break;
    case 'join': {
      const [l, r] = leaf.inputs;
      const rightBytes = estimateBytes(r);
      const broadcast = rightBytes <= o.broadcastBytes && broadcastable(leaf.how);
      const keysOf = (k: string[]): Exchange => ({ kind: 'hash', keys: k, partitions: o.partitions });
      body = {
        op: 'hash_join',
        how: leaf.how,
        leftOn: leaf.leftOn,
        rightOn: leaf.rightOn,
        strategy: broadcast ? 'broadcast' : 'partitioned',
        probe: broadcast ? input(l) : { op: 'exchange', exchange: keysOf(leaf.leftOn), input: input(l) },
        build: { op: 'exchange', exchange: broadcast ? { kind: 'broadcast', estimatedBytes: rightBytes } : keysOf(leaf.rightOn), input: input(r) },
      };
      break;
    }
    case 'concat':
      body = { op: 'concat', inputs: leaf.inputs.map(input) };
      break;
    case 'repartition':
      body = { op: 'exchange', exchange: { kind: 'hash', keys: leaf.keys, partitions: leaf.partitions }, input: input(leaf.inputs[0]) };
      break;
  }
  return plan === leaf ? body : { op: 'pipeline', plan, input: body };
}

function bytesText(n: number): string {
  if (!Number.isFinite(n)) return 'unknown size';
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

export function exchangeToString(e: Exchange): string {
  switch (e.kind) {
    case 'hash':
      return `Exchange: hash [${e.keys.join(', ')}], ${e.partitions} partition(s)`;
    case 'range':
      return `Exchange: range [${e.keys.map((k) => `${k.column} ${k.desc ? 'desc' : 'asc'}`).join(', ')}], ${e.partitions} partition(s), sampled boundaries`;
    case 'broadcast':
      // The build side is gathered into one partition, which every probe partition reads whole.
      return `Exchange: broadcast (est. ${bytesText(e.estimatedBytes)}), 1 partition, read by every probe partition`;
    case 'gather':
      return 'Exchange: gather, 1 partition';
  }
}

/**
 * Explain text, root first. `stage` prints a linear plan (the runner's own physical description);
 * `ops` prints the operators of a pipeline above a relational node.
 */
export function relationalToString(
  p: RelationalPhysical,
  stage: (plan: PlanNode, reducing: boolean) => string,
  ops: (plan: PlanNode) => string[],
  indent = '',
): string {
  const lines: string[] = [];
  const push = (s: string): void => {
    if (lines.length) lines.push(`${indent}|`);
    lines.push(`${indent}* ${s}`);
  };
  const nested = (label: string, child: RelationalPhysical): void => {
    lines.push(`${indent}|\\ ${label}`);
    lines.push(relationalToString(child, stage, ops, `${indent}|  `));
  };
  let node: RelationalPhysical | null = p;
  while (node) {
    switch (node.op) {
      case 'stage':
        if (lines.length) lines.push(`${indent}|`);
        lines.push(
          stage(node.plan, node.reducing === true)
            .split('\n')
            .map((l) => indent + l)
            .join('\n'),
        );
        node = null;
        break;
      case 'pipeline':
        for (const l of ops(node.plan)) push(l);
        node = node.input;
        break;
      case 'exchange':
        push(exchangeToString(node.exchange));
        node = node.input;
        break;
      case 'hash_aggregate':
        push(
          `HashAggregate (${node.phase}): ${node.keys.length ? `keys [${node.keys.join(', ')}], ` : ''}${node.aggs.map((a) => `${a.fn === 'count_distinct' ? 'countDistinct' : a.fn} as ${a.name}`).join(', ') || 'distinct'}`,
        );
        node = node.input;
        break;
      case 'sort':
        push(`Sort (external merge): ${node.keys.map((k) => `${k.column} ${k.desc ? 'desc' : 'asc'} nulls ${k.nullsFirst ? 'first' : 'last'}`).join(', ')}`);
        node = node.input;
        break;
      case 'hash_join': {
        const j = node;
        push(`HashJoin (${j.strategy}): ${j.how} on ${j.leftOn.map((l, i) => (l === j.rightOn[i] ? l : `${l} = ${j.rightOn[i]}`)).join(', ')}`);
        nested('probe (left)', j.probe);
        nested('build (right)', j.build);
        node = null;
        break;
      }
      case 'concat':
        push(`Concat: ${node.inputs.length} inputs in order`);
        for (const [i, c] of node.inputs.entries()) nested(`input ${i}`, c);
        node = null;
        break;
    }
  }
  return lines.join('\n');
}

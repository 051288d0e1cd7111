// Plans a relational run (a chain ending in groupBy/agg, distinct, sort, join, concat or a keyed
// repartition) as serverless stages: every exchange is a stage boundary. Each input runs as
// ordinary stages (Lambda / ECS as its UDFs demand) whose last stage ends in an exchange sink; the
// operator runs in a stage of its own reading its bucket of every map partition (shuffle-types.ts
// says what each stage reads and writes; shuffle.ts runs it). The stage list is linear, so the
// state machine runs it as any other run: one stage after another, each fanned out.
import type { SchemaJSON } from '../datatypes.ts';
import { buildPhysicalPlan, opFor, splitChain, type OpJSON, type SourceJSON } from '../physical.ts';
import { isRelational, type PlanNode, type RelationalNode } from '../plan.ts';
import { broadcastable, estimateBytes } from '../relational/exchange.ts';
import { joinOutputs } from '../join/hash-join.ts';
import type { AggSpec } from '../aggregate/hash-aggregate.ts';
import { splitOps, type StageJSON, type StageOptions } from './stages.ts';
import type { ExchangeSinkJSON, StageInputJSON, StageRef } from './shuffle-types.ts';

/** Hash and range exchanges of a serverless run have at most this many partitions unless asked for more. */
export const DEFAULT_MAX_SHUFFLE_PARTITIONS = 32;
/** A join's right side estimated under this many bytes is broadcast to the left side's partitions. */
export const DEFAULT_BROADCAST_JOIN_BYTES = 32 << 20;

export interface RelationalStageOptions {
  targetPartitionBytes: number;
  minPartitions: number;
  stageOptions: StageOptions;
  /** Partitions of hash and range exchanges; default: the most partitions an input has, at most 32. */
  shufflePartitions?: number;
  /** Broadcast a join's right side under this many (estimated) bytes; default 32 MiB. */
  broadcastJoinBytes?: number;
}

export interface RelationalStages {
  /** Stage 0's scan sources (the first input's). */
  sources: SourceJSON[];
  stages: StageJSON[];
  /** Operators over the merged result (from the first limit above the operator). */
  globalOps: OpJSON[];
  /** Partitions of the hash and range exchanges. */
  shufflePartitions: number;
  broadcastJoinBytes: number;
}

/** Whether a plan's chain ends in a relational node (the serverless runner then plans it here). */
export function endsInRelational(plan: PlanNode): boolean {
  let node = plan;
  while ('input' in node) node = node.input;
  return isRelational(node);
}

/** Output schema of stage ops over an input schema: their last projection or explode. */
function schemaAfter(ops: readonly OpJSON[], input: SchemaJSON): SchemaJSON {
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i]!;
    if (op.type === 'project' || op.type === 'explode') return op.schema;
  }
  return input;
}

/** The output of an input's stages: the last stage and its partition count. */
interface Built {
  ref: StageRef;
  schema: SchemaJSON;
}

class StageBuilder {
  readonly stages: StageJSON[] = [];
  sources: SourceJSON[] | null = null;
  globalOps: OpJSON[] = [];

  constructor(
    private readonly o: RelationalStageOptions,
    readonly n: number,
    readonly broadcastBytes: number,
  ) {}

  /** Appends the stages running `ops` over `partitions` partitions; the first reads `input`. */
  private append(ops: OpJSON[], partitions: number, bytes: number, input: StageInputJSON | undefined, inSchema: SchemaJSON): Built {
    const first = this.stages.length;
    const split = splitOps(ops, partitions, bytes, this.o.stageOptions);
    let schema = inSchema;
    for (const [i, s] of split.entries()) {
      s.index = first + i;
      s.partitions = partitions;
      if (i === 0 && input) s.input = input;
      schema = schemaAfter(s.ops, schema);
      s.schema = schema;
      this.stages.push(s);
    }
    return { ref: { stage: this.stages.length - 1, partitions }, schema };
  }

  /** A plan's stages; `root`: the whole run's (its first limit and what follows run in Finalize). */
  input(plan: PlanNode, root: boolean): Built {
    const { chain, leaf } = splitChain(plan);
    if (!isRelational(leaf)) {
      const physical = buildPhysicalPlan(plan, { targetPartitionBytes: this.o.targetPartitionBytes, minPartitions: this.o.minPartitions });
      if (root) this.globalOps = physical.globalOps;
      const sources = physical.partitions.map((p) => p.source);
      let input: StageInputJSON | undefined;
      if (this.sources === null && this.stages.length === 0) this.sources = sources;
      else input = { kind: 'scan', sources };
      const inSchema = sourceSchema(sources[0]) ?? leaf.schema;
      const built = this.append(physical.partitionOps, sources.length, physical.scan.uncompressedBytes, input, inSchema);
      // A global limit below an operator: the partitions above stopped at n each (partitionOps ends in it).
      return !root && physical.globalOps.length ? this.gather(built, physical.globalOps) : built;
    }
    const out = this.operator(leaf);
    const ops: OpJSON[] = [];
    // From the first limit on: Finalize's operators (the root), or a gather stage's (below another operator).
    const after: OpJSON[] = [];
    for (const n of chain) {
      const op = opFor(
        n,
        (t) => `${t}() above a groupBy/sort/join/concat/repartition is not supported on the AWS runner; call it before the relational operator`,
      );
      if (after.length) after.push(op);
      else ops.push(op);
      if (op.type === 'limit' && !after.length) after.push(op);
    }
    if (root) this.globalOps = after;
    const built = this.chainOn(out, ops);
    return !root && after.length ? this.gather(built, after) : built;
  }

  /**
   * A global limit below another operator is a stage boundary of its own: one partition reads every
   * shard of `from` in partition order and runs the limit and what follows it.
   */
  private gather(from: Built, ops: OpJSON[]): Built {
    return this.append(ops, 1, 0, { kind: 'gather', from: from.ref }, from.schema);
  }

  /** Runs `ops` over an operator's output: in the operator's own stage (and more, where its UDFs need another executor). */
  private chainOn(out: Built, ops: OpJSON[]): Built {
    const last = this.stages[out.ref.stage]!;
    if (!ops.length) return out;
    const split = splitOps(ops, out.ref.partitions, 0, this.o.stageOptions);
    let schema = out.schema;
    for (const [i, s] of split.entries()) {
      if (i === 0) {
        last.ops = s.ops;
        Object.assign(last, { executor: s.executor, udfs: s.udfs, concurrency: s.concurrency, slots: s.slots, memoryMiB: s.memoryMiB, numGpus: s.numGpus });
        if (s.placement) last.placement = s.placement;
        last.partitionsPerInvocation = s.partitionsPerInvocation ?? 1;
        schema = schemaAfter(s.ops, schema);
        last.schema = schema;
        continue;
      }
      s.index = this.stages.length;
      s.partitions = out.ref.partitions;
      schema = schemaAfter(s.ops, schema);
      s.schema = schema;
      this.stages.push(s);
    }
    return { ref: { stage: this.stages.length - 1, partitions: out.ref.partitions }, schema };
  }

  /**
   * A broadcast join's probe side ends in a stage of cheap operators (no UDFs, no exchange): that
   * stage is dropped and the join stage runs its input and operators itself, so the big side makes
   * no S3 round trip before the join. Otherwise the join reads the probe stage's shards.
   */
  private fuseProbe(left: Built): { input: StageInputJSON; ops: OpJSON[] } | undefined {
    const s = this.stages[left.ref.stage]!;
    if (left.ref.stage !== this.stages.length - 1 || s.udfs.length || s.exchange || left.ref.stage === 0) return undefined;
    const input: StageInputJSON = s.input ?? { kind: 'shard', stage: s.index - 1 };
    if (input.kind !== 'scan' && input.kind !== 'shard' && input.kind !== 'concat') return undefined;
    this.stages.pop();
    return { input, ops: s.ops };
  }

  /** Sets the exchange the last stage of an input writes. */
  private sink(b: Built, exchange: ExchangeSinkJSON): void {
    const s = this.stages[b.ref.stage]!;
    if (s.exchange) throw new Error(`internal: stage ${s.index} already ends in an exchange`);
    s.exchange = exchange;
  }

  /** The stage running a relational operator (over the stages of its inputs). */
  private operator(node: RelationalNode): Built {
    const n = this.n;
    switch (node.type) {
      case 'aggregate': {
        const input = this.input(node.inputs[0], false);
        const parts = node.keys.length ? n : 1;
        const aggs: AggSpec[] = node.aggs.map((a) => ({ fn: a.fn, inType: a.inType, outType: a.outType, name: a.name }));
        this.sink(input, { kind: 'hash', keys: node.keys, partitions: parts, partial: { aggs } });
        const schema: SchemaJSON = { fields: node.schema.fields.map((f) => ({ ...f, nullable: true })) };
        return this.append([], parts, 0, { kind: 'aggregate', from: input.ref, keys: node.keys.length, aggs, schema }, schema);
      }
      case 'repartition': {
        const input = this.input(node.inputs[0], false);
        this.sink(input, { kind: 'hash', keys: node.keys, partitions: node.partitions });
        return this.append([], node.partitions, 0, { kind: 'repartition', from: input.ref }, node.schema);
      }
      case 'sort': {
        const input = this.input(node.inputs[0], false);
        const fields = input.schema.fields;
        const keyTypes = node.by.map((k) => {
          const f = fields.find((x) => x.name === k.column);
          if (!f) throw new Error(`sort: column '${k.column}' is not in the input (${fields.map((x) => x.name).join(', ')})`);
          return f.type;
        });
        // Map: the input's shard and a key sample; a one-partition step picks the boundaries; a
        // bucketing stage splits each shard by them; the reduce sorts its range.
        this.sink(input, { kind: 'sample', keys: node.by });
        const bounds = this.append([], 1, 0, { kind: 'boundaries', from: input.ref, keys: node.by, partitions: n, keyTypes }, input.schema);
        const bucketing = this.append([], input.ref.partitions, 0, { kind: 'shard', stage: input.ref.stage }, input.schema);
        this.sink(bucketing, { kind: 'range', keys: node.by, partitions: n, boundariesStage: bounds.ref.stage });
        return this.append([], n, 0, { kind: 'sort', from: bucketing.ref, keys: node.by, schema: node.schema }, node.schema);
      }
      case 'join': {
        const [l, r] = node.inputs;
        const broadcast = broadcastable(node.how) && estimateBytes(r) <= this.broadcastBytes;
        // The (small) right side first: its shards are complete before any left partition builds from them.
        const right = this.input(r, false);
        const left = this.input(l, false);
        const ln = l.schema.fields.map((f) => f.name);
        const rn = r.schema.fields.map((f) => f.name);
        const partitions = broadcast ? left.ref.partitions : n;
        const probe = broadcast ? this.fuseProbe(left) : undefined;
        if (!broadcast) {
          this.sink(left, { kind: 'hash', keys: node.leftOn, partitions: n });
          this.sink(right, { kind: 'hash', keys: node.rightOn, partitions: n });
        }
        return this.append(
          [],
          partitions,
          0,
          {
            kind: 'join',
            strategy: broadcast ? 'broadcast' : 'partitioned',
            how: node.how,
            left: left.ref,
            right: right.ref,
            leftKeys: node.leftOn.map((k) => ln.indexOf(k)),
            rightKeys: node.rightOn.map((k) => rn.indexOf(k)),
            keyTypes: node.leftOn.map((k) => l.schema.fields[ln.indexOf(k)]!.type),
            // The logical sides' schemas, as the embedded join has them (the key indices above are theirs).
            leftSchema: l.schema,
            rightSchema: r.schema,
            schema: node.schema,
            outputs: joinOutputs(node),
            ...(probe ? { probe } : {}),
          },
          node.schema,
        );
      }
      case 'concat': {
        const inputs = node.inputs.map((p) => this.input(p, false).ref);
        const total = inputs.reduce((a, b) => a + b.partitions, 0);
        return this.append([], total, 0, { kind: 'concat', inputs }, node.schema);
      }
    }
  }
}

function sourceSchema(s: SourceJSON | undefined): SchemaJSON | null {
  let src = s;
  while (src && src.kind === 'multi') src = src.parts[0];
  if (src && (src.kind === 'parquet' || src.kind === 'csv')) return src.schema;
  return null;
}

/** The most partitions any scan of the plan gets (the default exchange width follows it). */
function widestScan(plan: PlanNode, o: RelationalStageOptions): number {
  const { leaf } = splitChain(plan);
  if (isRelational(leaf)) return Math.max(1, ...leaf.inputs.map((p) => widestScan(p, o)));
  return buildPhysicalPlan(plan, { targetPartitionBytes: o.targetPartitionBytes, minPartitions: o.minPartitions }).partitions.length;
}

/** The stages of a relational run (see the top of this file). */
export function planRelationalStages(optimized: PlanNode, o: RelationalStageOptions): RelationalStages {
  if (o.shufflePartitions !== undefined && !(Number.isInteger(o.shufflePartitions) && o.shufflePartitions >= 1 && o.shufflePartitions <= 10000))
    throw new RangeError(`shufflePartitions must be an integer from 1 to 10000, got ${String(o.shufflePartitions)}`);
  if (o.broadcastJoinBytes !== undefined && !(Number.isFinite(o.broadcastJoinBytes) && o.broadcastJoinBytes >= 0))
    throw new RangeError(`broadcastJoinBytes must be a non-negative number, got ${String(o.broadcastJoinBytes)}`);
  const n = o.shufflePartitions ?? Math.min(DEFAULT_MAX_SHUFFLE_PARTITIONS, widestScan(optimized, o));
  const broadcastJoinBytes = o.broadcastJoinBytes ?? DEFAULT_BROADCAST_JOIN_BYTES;
  const b = new StageBuilder(o, n, broadcastJoinBytes);
  b.input(optimized, true);
  if (b.sources === null) throw new Error('internal: a relational run without a scan');
  return { sources: b.sources, stages: b.stages, globalOps: b.globalOps, shufflePartitions: n, broadcastJoinBytes };
}

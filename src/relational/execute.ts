// Runs plans whose chain ends in a relational node on the embedded runner: the node's inputs run
// as ordinary plans on the runner (partitions, worker threads, UDFs), the operator itself runs here
// over their batches, and the operators above it (projections, filters, UDFs, limit) stream over
// its output.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { applyOps } from '../executor.ts';
import { opFor, splitChain, type OpJSON, type PartialAggregateOp } from '../physical.ts';
import { describeNode, isRelational, type JoinNode, type PlanNode, type RelationalNode } from '../plan.ts';
import { relationalPhysical, relationalToString } from './exchange.ts';
import { optimize } from '../optimizer.ts';
import { mergeMetrics, runtime, type RunMetrics } from '../udf-exec.ts';
import { hashAggregate } from '../aggregate/operator.ts';
import { hashJoin, joinOutputs } from '../join/hash-join.ts';
import { externalSort } from '../sort/external.ts';
import { take } from '../kernels/take.ts';
import type { ActionContext, ResultPartition } from '../runners/runner.ts';
import type { ResolvedEmbeddedOptions } from '../runners/options.ts';
import { hashWords, KeyEncoder } from './keys.ts';
import { batchBytes, MemoryShare, readSpill, SpillDir } from './spill.ts';

/** What relational execution needs from the runner: running linear plans. */
export interface RelationalHost {
  readonly options: ResolvedEmbeddedOptions;
  stream(plan: PlanNode, ctx: ActionContext): AsyncIterable<arrow.RecordBatch>;
  /**
   * The plan's output by partitions. `tail`: operators each partition runs last, where it runs (a
   * worker thread), e.g. phase one of an aggregation; a host may also apply them here.
   */
  partitions(plan: PlanNode, ctx: ActionContext, tail?: readonly OpJSON[]): AsyncIterable<ResultPartition>;
}

/** Does the plan's chain end in a relational node (so the linear executor cannot run it alone)? */
export function endsInRelational(plan: PlanNode): boolean {
  let node = plan;
  while ('input' in node) node = node.input;
  return isRelational(node);
}

/** The chain above a relational leaf (what runs over the operator's output), and that leaf. */
function relationalChain(plan: PlanNode): { chain: PlanNode[]; leaf: RelationalNode } {
  const { chain, leaf } = splitChain(plan);
  if (!isRelational(leaf)) throw new Error(`expected a relational node under the chain, got ${leaf.type}`);
  return { chain, leaf };
}

/** Explain for a plan that ends in a relational node: exchanges, operators, and each input stage. */
export function describeRelational(optimized: PlanNode, o: ResolvedEmbeddedOptions, stage: (plan: PlanNode, reducing: boolean) => string): string {
  const physical = relationalPhysical(optimized, { partitions: o.parallelism, broadcastBytes: o.memoryBudgetBytes / 4 });
  return relationalToString(physical, stage, (p) =>
    relationalChain(p)
      .chain.reverse()
      .map((n) => describeNode(n)),
  );
}

/** UDF metrics of every sub-run, summed, reported once at the end. */
function collecting(ctx: ActionContext): { sub: ActionContext; total: RunMetrics; report(): void } {
  const total: RunMetrics = {};
  let any = false;
  const sub: ActionContext = {
    ...ctx,
    onMetrics: (m) => {
      any = true;
      mergeMetrics(total, m);
    },
  };
  return {
    sub,
    total,
    report: () => {
      if (any) ctx.onMetrics?.(total);
    },
  };
}

/** The whole result as one stream. */
export function streamRelational(plan: PlanNode, ctx: ActionContext, host: RelationalHost): AsyncIterable<arrow.RecordBatch> {
  const optimized = optimize(plan);
  const { chain, leaf } = relationalChain(optimized);
  return (async function* () {
    const m = collecting(ctx);
    const rt = runtime.fork('relational');
    try {
      yield* applyOps(
        runNode(leaf, m.sub, host),
        chain.map((n) => opFor(n)),
        rt,
      );
    } finally {
      if (Object.keys(rt.metrics).length) m.sub.onMetrics?.(rt.metrics);
      m.report();
    }
  })();
}

/** The result by partitions: a keyed repartition gives its n buckets; anything else is one partition. */
export async function* relationalPartitions(plan: PlanNode, ctx: ActionContext, host: RelationalHost): AsyncGenerator<ResultPartition> {
  const optimized = optimize(plan);
  const { chain, leaf } = relationalChain(optimized);
  if (leaf.type !== 'repartition' || chain.some((n) => n.type === 'limit')) {
    yield { index: 0, batches: streamRelational(plan, ctx, host) };
    return;
  }
  const m = collecting(ctx);
  try {
    let i = 0;
    for await (const bucket of repartitionBuckets(leaf, m.sub, host)) {
      yield {
        index: i++,
        batches: applyOps(
          bucket,
          chain.map((n) => opFor(n)),
          runtime.fork(`partition ${i}`),
        ),
      };
    }
  } finally {
    m.report();
  }
}

function runNode(node: RelationalNode, ctx: ActionContext, host: RelationalHost): AsyncIterable<arrow.RecordBatch> {
  const o = host.options;
  switch (node.type) {
    case 'aggregate': {
      const input = node.inputs[0];
      const out = new arrow.Schema(node.schema.fields.map((f) => new arrow.Field(f.name, DataType.fromJSON(f.type).toArrow(), true)));
      const keys = out.fields.slice(0, node.keys.length);
      // Phase one runs in the input's partitions (on their worker threads), phase two here.
      const partial: PartialAggregateOp = {
        type: 'partialAggregate',
        schema: node.schema,
        keys: node.keys.length,
        aggs: node.aggs.map((a) => ({ fn: a.fn, inType: a.inType, outType: a.outType, name: a.name })),
        // Each of `parallelism` partial tables at once gets an eighth of its share of the budget.
        flushBytes: Math.max(256 << 10, Math.floor(o.memoryBudgetBytes / (8 * o.parallelism))),
        batchSize: o.batchSize,
      };
      const partitions = (async function* () {
        for await (const p of host.partitions(input, ctx, [partial])) yield p.batches;
      })();
      return hashAggregate(partitions, {
        keys,
        specs: node.aggs.map((a) => ({ fn: a.fn, inType: a.inType, outType: a.outType, name: a.name })),
        schema: out,
        budgetBytes: o.memoryBudgetBytes,
        batchSize: o.batchSize,
      });
    }
    case 'sort': {
      const names = node.schema.fields.map((f) => f.name);
      return externalSort(host.stream(node.inputs[0], ctx), {
        schema: arrowSchema(node),
        keyIndex: node.by.map((k) => names.indexOf(k.column)),
        keyTypes: node.by.map((k) => DataType.fromJSON(node.schema.fields[names.indexOf(k.column)]!.type)),
        keys: node.by,
        budgetBytes: o.memoryBudgetBytes,
        batchSize: o.batchSize,
      });
    }
    case 'join':
      return runJoin(node, ctx, host);
    case 'concat': {
      const schema = arrowSchema(node);
      return (async function* () {
        for (const input of node.inputs) {
          for await (const b of host.stream(input, ctx))
            yield new arrow.RecordBatch(
              schema,
              arrow.makeData({ type: new arrow.Struct(schema.fields), length: b.numRows, nullCount: 0, children: b.data.children }),
            );
        }
      })();
    }
    case 'repartition':
      return (async function* () {
        for await (const bucket of repartitionBuckets(node, ctx, host)) yield* bucket;
      })();
  }
}

function arrowSchema(node: PlanNode): arrow.Schema {
  return new arrow.Schema(node.schema.fields.map((f) => new arrow.Field(f.name, DataType.fromJSON(f.type).toArrow(), f.nullable)));
}

function runJoin(node: JoinNode, ctx: ActionContext, host: RelationalHost): AsyncIterable<arrow.RecordBatch> {
  const [left, right] = node.inputs;
  const ln = left.schema.fields.map((f) => f.name);
  const rn = right.schema.fields.map((f) => f.name);
  const outputs = joinOutputs(node);
  const o = host.options;
  return hashJoin(host.stream(left, ctx), host.stream(right, ctx), {
    how: node.how,
    leftKeys: node.leftOn.map((k) => ln.indexOf(k)),
    rightKeys: node.rightOn.map((k) => rn.indexOf(k)),
    keyTypes: node.leftOn.map((k) => DataType.fromJSON(left.schema.fields[ln.indexOf(k)]!.type)),
    leftSchema: arrowSchema(left),
    rightSchema: arrowSchema(right),
    outSchema: arrowSchema(node),
    outputs,
    budgetBytes: o.memoryBudgetBytes,
    batchSize: o.batchSize,
  });
}

/** Hash-partitions the input into n buckets (held in memory, spilled to IPC files over the budget). */
async function* repartitionBuckets(
  node: Extract<RelationalNode, { type: 'repartition' }>,
  ctx: ActionContext,
  host: RelationalHost,
): AsyncGenerator<AsyncIterable<arrow.RecordBatch>> {
  const n = node.partitions;
  const input = node.inputs[0];
  const names = input.schema.fields.map((f) => f.name);
  const keyIdx = node.keys.map((k) => names.indexOf(k));
  const enc = new KeyEncoder(node.keys.map((k) => DataType.fromJSON(input.schema.fields[names.indexOf(k)]!.type)));
  const mem = new MemoryShare(host.options.memoryBudgetBytes);
  const spill = new SpillDir();
  const held: arrow.RecordBatch[][] = Array.from({ length: n }, () => []);
  const files: string[][] = Array.from({ length: n }, () => []);
  let bytes = 0;
  try {
    for await (const b of host.stream(input, ctx)) {
      const rows = b.numRows;
      if (!rows) continue;
      const words = enc.encode(
        keyIdx.map((k) => b.data.children[k]!),
        rows,
        true,
      );
      const W = enc.width;
      const bucket = new Int32Array(rows);
      for (let i = 0; i < rows; i++) bucket[i] = ((hashWords(words, i * W, W) >>> 16) * n) >>> 16;
      for (let k = 0; k < n; k++) {
        let count = 0;
        for (let i = 0; i < rows; i++) if (bucket[i] === k) count++;
        if (!count) continue;
        const sel = new Int32Array(count);
        let p = 0;
        for (let i = 0; i < rows; i++) if (bucket[i] === k) sel[p++] = i;
        const part = new arrow.RecordBatch(
          b.schema,
          arrow.makeData({ type: new arrow.Struct(b.schema.fields), length: count, nullCount: 0, children: b.data.children.map((c) => take(c, sel)) }),
        );
        held[k]!.push(part);
        bytes += batchBytes(part);
      }
      mem.set(bytes);
      if (bytes > host.options.memoryBudgetBytes) {
        for (let k = 0; k < n; k++) for (const x of held[k]!.splice(0)) files[k]!.push(spill.write(x));
        bytes = 0;
        mem.set(0);
      }
    }
    for (let k = 0; k < n; k++) {
      const mine = held[k]!;
      const spilled = files[k]!;
      yield (async function* () {
        yield* readSpill(spilled);
        yield* mine;
      })();
    }
  } finally {
    mem.release();
    spill.close();
  }
}

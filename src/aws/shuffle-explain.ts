// explain() of a relational run on the AWS runner: the exchanges with their partition counts (the
// same tree the embedded runner prints, with this run's widths), then the serverless stages, each
// with what it reads and what it writes (exchange buckets, a sample, a shard).
import { buildPhysicalPlan, udfsOf, type OpJSON } from '../physical.ts';
import { describeNode, isRelational, type PlanNode } from '../plan.ts';
import { costToString, estimateRunCost, type CostInput, type CostOptions } from './cost.ts';
import { exchangeToString, relationalPhysical, relationalToString } from '../relational/exchange.ts';
import type { RunPlan } from './run.ts';
import type { ExchangeSinkJSON, StageInputJSON } from './shuffle-types.ts';
import type { StageJSON } from './stages.ts';

function inputText(input: StageInputJSON | undefined, index: number, plan: RunPlan): string {
  if (!input) return index === 0 ? `scan, ${plan.sources.length} slice(s)` : `stage ${index - 1}'s shards`;
  switch (input.kind) {
    case 'scan':
      return `scan, ${input.sources.length} slice(s)`;
    case 'shard':
      return `stage ${input.stage}'s shards`;
    case 'concat':
      return `concat of stages ${input.inputs.map((i) => i.stage).join(', ')}`;
    case 'repartition':
      return `bucket p of stage ${input.from.stage}'s ${input.from.partitions} map partition(s)`;
    case 'aggregate':
      return `bucket p of stage ${input.from.stage}'s ${input.from.partitions} map partition(s), HashAggregate (final): merge of the partial states`;
    case 'join':
      if (input.probe)
        return `HashJoin (broadcast, ${input.how}): ${inputText(input.probe.input, index, plan)}${input.probe.ops.length ? ` through ${input.probe.ops.map((o) => o.type).join(', ')}` : ''}, slice p probes a table built from all ${input.right.partitions} shard(s) of stage ${input.right.stage}`;
      return input.strategy === 'broadcast'
        ? `HashJoin (broadcast, ${input.how}): stage ${input.left.stage}'s shard p probes a table built from all ${input.right.partitions} shard(s) of stage ${input.right.stage}`
        : `HashJoin (partitioned, ${input.how}): bucket p of stage ${input.left.stage} (probe) and of stage ${input.right.stage} (build)`;
    case 'boundaries':
      return `the key samples of stage ${input.from.stage}: picks ${input.partitions - 1} range boundaries`;
    case 'gather':
      return `all ${input.from.partitions} shard(s) of stage ${input.from.stage} in partition order`;
    case 'sort':
      return `bucket p (one key range) of stage ${input.from.stage}'s ${input.from.partitions} partition(s), Sort (external merge)`;
  }
}

function sinkText(e: ExchangeSinkJSON | undefined, last: boolean): string {
  if (!e) return last ? 'result files' : 'a shard per partition';
  switch (e.kind) {
    case 'hash':
      return `${exchangeToString({ kind: 'hash', keys: e.keys, partitions: e.partitions })}${e.partial ? ' (partial aggregation first)' : ''}, as bucket files`;
    case 'range':
      return `${exchangeToString({ kind: 'range', keys: e.keys, partitions: e.partitions })} (boundaries from stage ${e.boundariesStage}), as bucket files`;
    case 'sample':
      return 'a shard per partition and a sample of its sort keys';
  }
}

function stageLine(s: StageJSON, plan: RunPlan): string[] {
  const n = s.partitions ?? plan.sources.length;
  const where =
    s.executor === 'ecs-gpu'
      ? `ecs-gpu, ${n} partition(s) over ${s.slots} task(s), numGpus ${s.numGpus}`
      : `${s.executor}, ${n} partition(s), concurrency ${s.concurrency}`;
  const lines = [`Stage ${s.index}: ${where}`, `  reads: ${inputText(s.input, s.index, plan)}`];
  for (const op of s.ops as OpJSON[]) {
    const names = udfsOf([op]).map((u) => u.name);
    lines.push(`  ${op.type}${names.length ? ` [${names.join(', ')}]` : ''}`);
  }
  lines.push(`  writes: ${s.input?.kind === 'boundaries' ? 'the boundaries file' : sinkText(s.exchange, s.index === plan.stages.length - 1)}`);
  return lines;
}

/** Every scan of a relational plan (the inputs below its operators), partitioned as the run's. */
function scansOf(p: PlanNode, sizing: { targetPartitionBytes: number; minPartitions: number }): ReturnType<typeof buildPhysicalPlan>[] {
  let leaf = p;
  while ('input' in leaf) leaf = leaf.input;
  if (isRelational(leaf)) return leaf.inputs.flatMap((i) => scansOf(i, sizing));
  return [buildPhysicalPlan(p, sizing)];
}

/**
 * cost.ts's model over a relational run: every stage at its own width, the exchanges' map stages
 * writing a bucket file per (map partition, bucket) that the reduce side reads; bytes and column
 * chunks are all the scans'.
 */
export function relationalCostInput(optimized: PlanNode, plan: RunPlan, sizing: { targetPartitionBytes: number; minPartitions: number }): CostInput {
  const scans = scansOf(optimized, sizing);
  return {
    partitions: plan.sources.length,
    uncompressedBytes: scans.reduce((a, s) => a + s.scan.uncompressedBytes, 0),
    // One ranged GET per column chunk: the product per scan, summed (columns 1).
    rowGroups: scans.reduce((a, s) => a + s.scan.rowGroupsSelected * s.scan.columns.length, 0),
    columns: 1,
    stages: plan.stages.map((s) => {
      const e = s.exchange;
      return {
        index: s.index,
        executor: s.executor,
        memoryMiB: s.memoryMiB,
        concurrency: s.concurrency,
        slots: s.slots,
        ...(s.placement ? { placement: s.placement } : {}),
        partitions: s.partitions ?? plan.sources.length,
        ...(e && e.kind !== 'sample' ? { buckets: e.partitions } : {}),
      };
    }),
  };
}

/** explain() text of a relational run: exchanges (root first), then its stages, then (with `cost`) the estimate in USD. */
export function describeRelationalRun(
  optimized: PlanNode,
  plan: RunPlan,
  stage: (plan: PlanNode) => string,
  cost?: { options: CostOptions; sizing: { targetPartitionBytes: number; minPartitions: number } },
): string {
  const shuffle = plan.shuffle ?? { partitions: 1, broadcastJoinBytes: 0 };
  const physical = relationalPhysical(optimized, { partitions: shuffle.partitions, broadcastBytes: shuffle.broadcastJoinBytes });
  const tree = relationalToString(physical, stage, (p) => {
    const out: string[] = [];
    for (let n: PlanNode = p; 'input' in n; n = n.input) out.push(describeNode(n));
    return out;
  });
  const lines = ['== Stages (aws) =='];
  for (const s of plan.stages) lines.push(...stageLine(s, plan));
  if (plan.globalOps.length) lines.push(`Finalize: ${plan.globalOps.map((o) => o.type).join(', ')} over the merged result`);
  else lines.push(`Finalize: commits the ${plan.stages.at(-1)?.partitions ?? plan.sources.length} result file(s) in partition order`);
  const text = `${tree}\n\n${lines.join('\n')}`;
  if (!cost) return text;
  return `${text}\n\n${costToString(estimateRunCost(relationalCostInput(optimized, plan, cost.sizing), cost.options), cost.options.region)}`;
}

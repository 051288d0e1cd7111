// Splits a physical plan into stages at resource boundaries for the serverless runner: operators
// that need no GPU fuse into CPU stages (Lambda); an operator calling a UDF with numGpus > 0 starts
// a GPU stage (ECS GPU tasks), and cheap operators after it (no UDF) stay with it rather than
// paying another S3 round trip.
import type { OpJSON, PhysicalPlan } from '../physical.ts';
import { udfsOf } from '../physical.ts';
import { DEFAULT_LAMBDA_MEMORY_MIB, lambdaMemoryMiB } from './sizing.ts';
import { costToString, estimateRunCost, stageSecondsPerPartition, type CostEstimate, type CostOptions } from './cost.ts';

export type StageExecutor = 'lambda' | 'ecs-gpu';

export interface StageJSON {
  index: number;
  executor: StageExecutor;
  /** Operators run over each partition of this stage. Stage 0 also reads the scan. */
  ops: OpJSON[];
  /** UDF names called by the stage. */
  udfs: string[];
  /** Partition tasks in flight at most (Map MaxConcurrency), from the UDFs' `concurrency`. */
  concurrency: number;
  /** GPU stages: ECS tasks (worker slots); each processes partitions i with i % slots == slot. */
  slots: number;
  /** Lambda memory (MiB) from the UDFs' memoryBytes/numCpus: sizing.ts's rule, which the CDK construct deploys. */
  memoryMiB: number;
  numGpus: number;
  /**
   * Lambda stages: partitions one invocation runs in turn (Distributed Map ItemBatcher), so many
   * tiny partitions do not each pay an invocation; 1 for GPU stages (their slots take many already).
   * Optional: plans stored before it existed mean 1.
   */
  partitionsPerInvocation?: number;
}

export interface StageOptions {
  /** Cap on CPU fan-out when no UDF sets one. */
  maxConcurrency: number;
  /** GPU workers when the UDFs do not say (their concurrency). */
  defaultGpuSlots: number;
  /** Lambda memory floor (MiB). */
  lambdaMemoryMiB: number;
  /** Batching keeps at least this many invocations per Lambda stage (fan-out). */
  minInvocations?: number;
  /** Batching packs partitions into one invocation up to about this many uncompressed input bytes. */
  invocationBytes?: number;
}

export const DEFAULT_STAGE_OPTIONS: StageOptions = { maxConcurrency: 1000, defaultGpuSlots: 1, lambdaMemoryMiB: DEFAULT_LAMBDA_MEMORY_MIB };

const DEFAULT_MIN_INVOCATIONS = 32;
const DEFAULT_INVOCATION_BYTES = 32 << 20;

/**
 * Partitions per Lambda invocation: tiny partitions (an intoPartitions(n) over little data, small
 * files) share an invocation up to `invocationBytes`, but never so many that fewer than
 * `minInvocations` invocations remain: batching must not undo the fan-out partitioning gave.
 */
export function partitionsPerInvocation(partitions: number, uncompressedBytes: number, opts: StageOptions = DEFAULT_STAGE_OPTIONS): number {
  const minInvocations = opts.minInvocations ?? DEFAULT_MIN_INVOCATIONS;
  if (partitions <= minInvocations) return 1;
  const perPartition = Math.max(1, uncompressedBytes / partitions);
  return Math.max(1, Math.min(Math.floor((opts.invocationBytes ?? DEFAULT_INVOCATION_BYTES) / perPartition), Math.floor(partitions / minInvocations)));
}

function opUsesGpu(op: OpJSON): boolean {
  return udfsOf([op]).some((u) => u.options.numGpus > 0);
}

function opHasUdf(op: OpJSON): boolean {
  return udfsOf([op]).length > 0;
}

export function splitStages(plan: PhysicalPlan, opts: StageOptions = DEFAULT_STAGE_OPTIONS): StageJSON[] {
  const groups: { executor: StageExecutor; ops: OpJSON[] }[] = [{ executor: 'lambda', ops: [] }];
  for (const op of plan.partitionOps) {
    const cur = groups[groups.length - 1]!;
    const want: StageExecutor | null = opUsesGpu(op) ? 'ecs-gpu' : opHasUdf(op) ? 'lambda' : null;
    if (want === null || want === cur.executor) {
      cur.ops.push(op);
    } else if (groups.length === 1 && !cur.ops.some(opHasUdf)) {
      // Nothing but the scan and cheap operators so far: let the GPU tasks read the input themselves.
      cur.executor = want;
      cur.ops.push(op);
    } else {
      groups.push({ executor: want, ops: [op] });
    }
  }
  return groups.map((g, index) => {
    const udfs = udfsOf(g.ops);
    const caps = udfs.map((u) => u.options.concurrency).filter((c): c is number => c !== null);
    const numGpus = Math.max(0, ...udfs.map((u) => u.options.numGpus));
    const memoryMiB = lambdaMemoryMiB(
      udfs.map((u) => u.options),
      opts.lambdaMemoryMiB,
    );
    const concurrency = Math.max(1, Math.min(opts.maxConcurrency, plan.partitions.length || 1, ...(caps.length ? caps : [opts.maxConcurrency])));
    const slots = g.executor === 'ecs-gpu' ? Math.max(1, Math.min(plan.partitions.length || 1, caps.length ? Math.min(...caps) : opts.defaultGpuSlots)) : 0;
    const batch = g.executor === 'lambda' ? partitionsPerInvocation(plan.partitions.length, plan.scan.uncompressedBytes, opts) : 1;
    return { index, executor: g.executor, ops: g.ops, udfs: udfs.map((u) => u.name), concurrency, slots, memoryMiB, numGpus, partitionsPerInvocation: batch };
  });
}

/** Rough resource use of a stage for explain: assumes ~50 MB/s of uncompressed input per vCPU-second (cost.ts prices it). */
export function estimateCost(plan: PhysicalPlan, stage: StageJSON, bytesPerVcpuSecond?: number): string {
  const seconds = stageSecondsPerPartition(
    { partitions: plan.partitions.length, uncompressedBytes: plan.scan.uncompressedBytes },
    stage.memoryMiB,
    bytesPerVcpuSecond,
  );
  if (stage.executor === 'lambda') {
    const gbSeconds = plan.partitions.length * seconds * (stage.memoryMiB / 1024);
    return `~${gbSeconds.toFixed(gbSeconds < 10 ? 2 : 0)} Lambda GB-s`;
  }
  const gpuHours = ((plan.partitions.length * seconds) / 3600) * Math.max(1, stage.numGpus);
  return `~${gpuHours.toFixed(3)} GPU-h`;
}

/** What a plan's stages cost in USD, by part (cost.ts's model over this plan's partitions and bytes). */
export function estimatePlanCost(plan: PhysicalPlan, stages: StageJSON[], cost: CostOptions = {}): CostEstimate {
  return estimateRunCost(
    {
      partitions: plan.partitions.length,
      uncompressedBytes: plan.scan.uncompressedBytes,
      rowGroups: plan.scan.rowGroupsSelected,
      columns: plan.scan.columns.length,
      stages,
    },
    cost,
  );
}

/** The stages as explain() prints them, then the cost estimate in USD (with `cost`'s prices and assumptions). */
export function stagesToString(plan: PhysicalPlan, stages: StageJSON[], cost: CostOptions = {}): string {
  const lines = ['== Stages (aws) =='];
  for (const s of stages) {
    const where =
      s.executor === 'lambda'
        ? `lambda, ${plan.partitions.length} partition(s)${(s.partitionsPerInvocation ?? 1) > 1 ? ` (${s.partitionsPerInvocation} per invocation)` : ''}, concurrency ${s.concurrency}, ${s.memoryMiB} MiB`
        : `ecs-gpu, ${plan.partitions.length} partition(s) over ${s.slots} task(s), numGpus ${s.numGpus}`;
    lines.push(`Stage ${s.index}: ${where}, ${estimateCost(plan, s, cost.bytesPerVcpuSecond)}`);
    if (s.index === 0)
      lines.push(`  reads: ${plan.scan.format} scan, ${plan.scan.files} file(s), row groups ${plan.scan.rowGroupsSelected}/${plan.scan.rowGroupsTotal}`);
    for (const op of s.ops) {
      const names = udfsOf([op]).map((u) => u.name);
      lines.push(`  ${op.type}${names.length ? ` [${names.join(', ')}]` : ''}`);
    }
  }
  if (plan.globalOps.length) lines.push(`Finalize: ${plan.globalOps.map((o) => o.type).join(', ')} over the merged result`);
  return `${lines.join('\n')}\n\n${costToString(estimatePlanCost(plan, stages, cost), cost.region)}`;
}

// Splits a physical plan into stages at resource boundaries for the serverless runner: operators
// that need no GPU fuse into CPU stages (Lambda); an operator calling a UDF with numGpus > 0 starts
// a GPU stage (ECS GPU tasks), and cheap operators after it (no UDF) stay with it rather than
// paying another S3 round trip.
import type { OpJSON, PhysicalPlan } from '../physical.ts';
import { udfsOf } from '../physical.ts';
import type { UdfDefinition } from '../udf.ts';
import type { AwsUdfOptions } from '../udf/aws-options.ts';
import { DEFAULT_LAMBDA_MEMORY_MIB, lambdaMemoryMiB } from './sizing.ts';
import { deployedFor, describePlacement, mergePlacements, udfPlacement, type DeployedClasses, type ResourceRequest, type StagePlacement } from './placement.ts';
import { costToString, estimateRunCost, stageSecondsPerPartition, type CostEstimate, type CostOptions } from './cost.ts';
import type { ExchangeSinkJSON, StageInputJSON } from './shuffle-types.ts';
import type { SchemaJSON } from '../datatypes.ts';

export type StageExecutor = 'lambda' | 'fargate' | 'ecs-gpu';

export interface StageJSON {
  index: number;
  executor: StageExecutor;
  /** Operators run over each partition of this stage. Stage 0 also reads the scan. */
  ops: OpJSON[];
  /** UDF names called by the stage. */
  udfs: string[];
  /** Partition tasks in flight at most (Map MaxConcurrency), from the UDFs' `concurrency`. */
  concurrency: number;
  /** ECS stages: tasks (worker slots); each processes partitions i with i % slots == slot. Fargate: one task per partition. */
  slots: number;
  /** Lambda memory (MiB) from the UDFs' memoryBytes/numCpus or aws.lambdaMemoryMb (placement.ts's rule, which the construct deploys); a Fargate task's memory. */
  memoryMiB: number;
  numGpus: number;
  /** Where the stage runs and its sizing class (absent in plans written before per-stage resources). */
  placement?: StagePlacement;
  /**
   * Lambda stages: partitions one invocation runs in turn (Distributed Map ItemBatcher), so many
   * tiny partitions do not each pay an invocation; 1 for GPU stages (their slots take many already).
   * Optional: plans stored before it existed mean 1.
   */
  partitionsPerInvocation?: number;
  /** Relational runs (shuffle-plan.ts): this stage's partition count; absent: the run's sources. */
  partitions?: number;
  /** Relational runs: what the partitions read (an exchange's buckets, another input's scan); absent: stage 0's scan or the previous stage's shard. */
  input?: StageInputJSON;
  /** Relational runs: a map stage's partitions write this exchange (buckets, or a shard and a key sample) instead of a plain shard. */
  exchange?: ExchangeSinkJSON;
  /** Relational runs: the stage's output schema (stages of several inputs cannot derive it from the run's scan). */
  schema?: SchemaJSON;
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

/** What an operator needs: its executor (null: no UDF, it runs wherever it lands) and the declared AWS options of its UDFs there. */
function opNeeds(op: OpJSON): { executor: StageExecutor | null; signature: string } {
  const udfs = udfsOf([op]);
  if (udfs.length === 0) return { executor: null, signature: '' };
  const placed = udfs.map((u) => ({ u, p: udfPlacement(requestOf(u)) }));
  const executor: StageExecutor = placed.some((x) => x.p.executor === 'ecs-gpu')
    ? 'ecs-gpu'
    : placed.some((x) => x.p.executor === 'fargate')
      ? 'fargate'
      : 'lambda';
  const declared = new Set(placed.filter((x) => x.p.executor === executor).map((x) => awsSignature(x.u.options.aws)));
  return { executor, signature: [...declared].sort().join('|') };
}

function awsSignature(aws: Readonly<AwsUdfOptions>): string {
  return JSON.stringify(
    Object.entries(aws)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

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

function opHasUdf(op: OpJSON): boolean {
  return udfsOf([op]).length > 0;
}

/** A UDF definition's resource request (placement.ts's input). */
export function requestOf(u: UdfDefinition): ResourceRequest {
  const o = u.options;
  return { name: u.name, numCpus: o.numCpus, numGpus: o.numGpus, memoryBytes: o.memoryBytes, concurrency: o.concurrency, aws: o.aws };
}

/**
 * Splits at resource boundaries: an operator whose UDFs need another executor (Lambda, Fargate, GPU
 * task) or declare other AWS options (`aws: {...}`) than the current stage's starts a new stage;
 * operators without UDFs stay with the stage before them. UDFs without AWS options fuse as before.
 */
export function splitStages(plan: PhysicalPlan, opts: StageOptions = DEFAULT_STAGE_OPTIONS): StageJSON[] {
  return splitOps(plan.partitionOps, plan.partitions.length, plan.scan.uncompressedBytes, opts);
}

/** splitStages over an operator chain run by `partitionCount` partitions reading about `uncompressedBytes` (stage indices from 0). */
export function splitOps(ops: readonly OpJSON[], partitionCount: number, uncompressedBytes: number, opts: StageOptions = DEFAULT_STAGE_OPTIONS): StageJSON[] {
  const groups: { executor: StageExecutor; signature: string; ops: OpJSON[] }[] = [{ executor: 'lambda', signature: '', ops: [] }];
  for (const op of ops) {
    const cur = groups[groups.length - 1]!;
    const need = opNeeds(op);
    if (need.executor === null || (need.executor === cur.executor && need.signature === cur.signature)) {
      cur.ops.push(op);
    } else if (!cur.ops.some(opHasUdf)) {
      // Nothing but the scan and cheap operators so far: let this stage's workers read the input themselves.
      cur.executor = need.executor;
      cur.signature = need.signature;
      cur.ops.push(op);
    } else {
      groups.push({ executor: need.executor, signature: need.signature, ops: [op] });
    }
  }
  return groups.map((g, index) => {
    const udfs = udfsOf(g.ops);
    const caps = udfs.map((u) => u.options.concurrency).filter((c): c is number => c !== null);
    const numGpus = Math.max(0, ...udfs.map((u) => u.options.numGpus));
    const own = udfs.map((u) => udfPlacement(requestOf(u), opts.lambdaMemoryMiB)).filter((p) => p.executor === g.executor);
    const placement = mergePlacements(own, opts.lambdaMemoryMiB);
    const memoryMiB =
      placement.executor === 'ecs-gpu'
        ? lambdaMemoryMiB(
            udfs.map((u) => u.options),
            opts.lambdaMemoryMiB,
          )
        : placement.memoryMiB;
    const partitions = partitionCount || 1;
    const concurrency = Math.max(1, Math.min(opts.maxConcurrency, partitions, ...(caps.length ? caps : [opts.maxConcurrency])));
    let slots = 0;
    if (placement.executor === 'ecs-gpu') {
      // Fractional GPUs: instancesPerTask UDF instances share one task's device, so `concurrency` instances need fewer tasks.
      const instances = caps.length ? Math.min(...caps) : opts.defaultGpuSlots * placement.instancesPerTask;
      slots = Math.max(1, Math.min(partitions, Math.ceil(instances / placement.instancesPerTask)));
    } else if (placement.executor === 'fargate') {
      slots = partitions;
    }
    const batch = g.executor === 'lambda' ? partitionsPerInvocation(partitionCount, uncompressedBytes, opts) : 1;
    return {
      index,
      executor: g.executor,
      ops: g.ops,
      udfs: udfs.map((u) => u.name),
      concurrency,
      slots,
      memoryMiB,
      numGpus,
      placement,
      partitionsPerInvocation: batch,
    };
  });
}

/** Rough resource use of a stage for explain: assumes ~50 MB/s of uncompressed input per vCPU-second (cost.ts prices it). */
export function estimateCost(plan: PhysicalPlan, stage: StageJSON, bytesPerVcpuSecond?: number): string {
  const seconds = stageSecondsPerPartition(
    { partitions: plan.partitions.length, uncompressedBytes: plan.scan.uncompressedBytes },
    stage.memoryMiB,
    bytesPerVcpuSecond,
  );
  if (stage.executor === 'lambda' || stage.executor === 'fargate') {
    const gbSeconds = plan.partitions.length * seconds * (stage.memoryMiB / 1024);
    return `~${gbSeconds.toFixed(gbSeconds < 10 ? 2 : 0)} ${stage.executor === 'lambda' ? 'Lambda' : 'Fargate'} GB-s`;
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

/**
 * The stages as explain() prints them, then the cost estimate in USD (with `cost`'s prices and
 * assumptions). With `deployment` (the classes FanoutPipeline deploys for the registered UDFs), each
 * stage shows the function or task definition that runs it and that one's sizing.
 */
export function stagesToString(plan: PhysicalPlan, stages: StageJSON[], cost: CostOptions = {}, deployment?: DeployedClasses): string {
  const lines = ['== Stages (aws) =='];
  for (const s of stages) {
    const own = s.placement;
    const deployed = own && deployment ? deployedFor(own, deployment) : null;
    const p = deployed?.placement ?? own;
    const sizing = p ? `, ${describePlacement(p, deployed?.id)}` : '';
    const missing = own && deployment && !deployed ? ' (no task definition of this class is deployed: the stage fails)' : '';
    let where: string;
    if (s.executor === 'lambda') {
      const batched = (s.partitionsPerInvocation ?? 1) > 1 ? ` (${s.partitionsPerInvocation} per invocation)` : '';
      where = `lambda, ${plan.partitions.length} partition(s)${batched}, concurrency ${s.concurrency}${p ? '' : `, ${s.memoryMiB} MiB`}${sizing}`;
    } else if (s.executor === 'fargate') {
      where = `fargate, ${plan.partitions.length} partition(s), one task each, concurrency ${s.concurrency}${sizing}${missing}`;
    } else {
      where = `ecs-gpu, ${plan.partitions.length} partition(s) over ${s.slots} task(s), numGpus ${s.numGpus}${sizing}${missing}`;
    }
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

// The one Lambda sizing rule. The planner (stages.ts: each stage's memory in explain() and its cost
// estimate) and the CDK construct (cdk/udf-resources.ts: the Stage function's MemorySize) both call
// lambdaMemoryMiB, so the memory explain() shows for a CPU stage is what the template deploys.

/** Lambda allocates CPU in proportion to memory: 1,769 MiB buys one full vCPU. */
export const LAMBDA_MIB_PER_VCPU = 1769;
/** Lambda's memory range (MiB). */
export const LAMBDA_MIN_MEMORY_MIB = 128;
export const LAMBDA_MAX_MEMORY_MIB = 10240;
/** Memory of the Plan, Finalize and Failure functions, and the Stage function's floor: one vCPU (LAMBDA_MIB_PER_VCPU). */
export const DEFAULT_LAMBDA_MEMORY_MIB = 1769;

/** The fields of a UDF's options that size a Lambda (UdfOptions, or the construct's UdfResourceHint). */
export interface LambdaResourceRequest {
  readonly numCpus?: number;
  readonly memoryBytes?: number | null;
}

const MIB = 2 ** 20;

/**
 * Memory (MiB) of a Lambda that runs UDFs with these requests: the largest `memoryBytes`, and
 * LAMBDA_MIB_PER_VCPU per vCPU of the largest `numCpus` (1 when unset), at least `floorMiB`, at most
 * Lambda's 10,240 MiB. The rule is a max, so sizing over all CPU UDFs at once (the construct's one
 * Stage function) gives the largest of the per-stage values the planner shows.
 */
export function lambdaMemoryMiB(udfs: readonly LambdaResourceRequest[], floorMiB: number = DEFAULT_LAMBDA_MEMORY_MIB): number {
  const memBytes = Math.max(0, ...udfs.map((u) => u.memoryBytes ?? 0));
  const cpus = Math.max(1, ...udfs.map((u) => u.numCpus ?? 1));
  return Math.min(LAMBDA_MAX_MEMORY_MIB, Math.max(floorMiB, Math.ceil(memBytes / MIB), Math.ceil(cpus * LAMBDA_MIB_PER_VCPU)));
}

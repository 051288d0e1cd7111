// What the pipeline's UDFs ask for, and the sizes FanoutPipeline derives from it: the Stage
// function's memory by the planner's own rule (src/aws/sizing.ts), the GPU task's GPUs, memory and CPU.
import { lambdaMemoryMiB } from '../src/aws/sizing.ts';
import { listUdfs } from '../src/udf.ts';
import type { AwsUdfOptions } from '../src/udf/aws-options.ts';

/** What a UDF asks for (the fields of its options that size the infrastructure). */
export interface UdfResourceHint {
  readonly name: string;
  readonly numCpus?: number;
  readonly numGpus?: number;
  readonly memoryBytes?: number | null;
  /** Instances (packs fractional GPUs into one task). */
  readonly concurrency?: number | null;
  /** The UDF's `aws` options: its stage's sizing class (src/aws/placement.ts). */
  readonly aws?: Readonly<AwsUdfOptions>;
}

const MIB = 2 ** 20;

/**
 * Stage Lambda memory (MiB) for the CPU UDFs: lambdaMemoryMiB, the rule the planner applies per
 * stage (src/aws/stages.ts). One function runs every CPU stage, so it gets the largest stage's size.
 */
export function stageMemoryFor(udfs: readonly UdfResourceHint[], floorMiB: number): number {
  return lambdaMemoryMiB(
    udfs.filter((u) => (u.numGpus ?? 0) === 0),
    floorMiB,
  );
}

/** GPU task size for the GPU UDFs: whole GPUs (ECS has no fractions), soft memory reservation, CPU units. */
export function gpuTaskSizeFor(udfs: readonly UdfResourceHint[]): { gpus: number; memoryReservationMiB: number; cpu: number } {
  const gpu = udfs.filter((u) => (u.numGpus ?? 0) > 0);
  return {
    gpus: Math.max(1, ...gpu.map((u) => Math.ceil(u.numGpus ?? 1))),
    memoryReservationMiB: Math.max(4096, ...gpu.map((u) => Math.ceil((u.memoryBytes ?? 0) / MIB))),
    cpu: Math.max(1024, ...gpu.map((u) => Math.ceil((u.numCpus ?? 1) * 1024))),
  };
}

/** The resource requests of the UDFs registered in this process (after importing a pipeline module). */
export function registeredUdfHints(): UdfResourceHint[] {
  return listUdfs().map((d) => ({
    name: d.name,
    numCpus: d.options.numCpus,
    numGpus: d.options.numGpus,
    memoryBytes: d.options.memoryBytes,
    concurrency: d.options.concurrency,
    aws: d.options.aws,
  }));
}

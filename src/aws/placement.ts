// Where a serverless stage runs and with what: a Lambda sizing class (memory, timeout, architecture,
// /tmp), a Fargate task size (stages beyond Lambda's 10 GB / 15 minutes, declared with runOn or
// estimated from memoryBytes / numCpus / timeoutSeconds), or a GPU task (instance type, GPUs per task
// and the fractional-GPU instances packed into one task). The planner (stages.ts) and the CDK construct
// (cdk/) both call these functions, so the class a plan routes a stage to is a class the construct
// deployed, and explain() prints what that class deploys.
import type { AwsArchitecture, AwsUdfOptions } from '../udf/aws-options.ts';
import { LAMBDA_MAX_EPHEMERAL_MB, LAMBDA_MAX_TIMEOUT_SECONDS } from '../udf/aws-options.ts';
import { DEFAULT_LAMBDA_MEMORY_MIB, LAMBDA_MAX_MEMORY_MIB, LAMBDA_MIB_PER_VCPU } from './sizing.ts';

/** What a UDF asks for: the fields of its options that place and size its stage (UdfOptions, or the construct's hints). */
export interface ResourceRequest {
  readonly name: string;
  readonly numCpus?: number;
  readonly numGpus?: number;
  readonly memoryBytes?: number | null;
  readonly concurrency?: number | null;
  readonly aws?: Readonly<AwsUdfOptions>;
}

/** Defaults of what a UDF leaves unset: the construct's defaults (FanoutPipeline props `lambda.*`). */
export const DEFAULT_STAGE_TIMEOUT_SECONDS = 900;
export const DEFAULT_ARCHITECTURE: AwsArchitecture = 'x86_64';
export const DEFAULT_EPHEMERAL_MIB = 512;
/** The GPU instance type a GPU UDF without `aws.instanceType` runs on (FanoutPipeline's gpu.instanceType default). */
export const DEFAULT_GPU_INSTANCE_TYPE = 'g5.xlarge';

export interface LambdaPlacement {
  executor: 'lambda';
  /** The sizing class: one Stage function per class, the state machine routes `key` to it. */
  key: string;
  memoryMiB: number;
  timeoutSeconds: number;
  architecture: AwsArchitecture;
  ephemeralStorageMiB: number;
}

export interface FargatePlacement {
  executor: 'fargate';
  key: string;
  /** Task CPU units (1024 = 1 vCPU) and memory (MiB): a combination Fargate offers. */
  cpu: number;
  memoryMiB: number;
  timeoutSeconds: number;
  architecture: AwsArchitecture;
  /** Task ephemeral storage (GiB, 21..200). */
  ephemeralStorageGiB: number;
}

export interface GpuPlacement {
  executor: 'ecs-gpu';
  key: string;
  instanceType: string;
  /** GPUs of one task: ceil(numGpus × instancesPerTask). */
  gpusPerTask: number;
  /** UDF instances (actor processes) in one task: floor(1 / numGpus) share a device when numGpus < 1, else 1. */
  instancesPerTask: number;
}

export type StagePlacement = LambdaPlacement | FargatePlacement | GpuPlacement;

const MIB = 2 ** 20;

/** Fargate's CPU/memory combinations: per CPU size, memory from min to max in steps (MiB). */
const FARGATE_SIZES: readonly { cpu: number; min: number; max: number; step: number }[] = [
  { cpu: 256, min: 512, max: 2048, step: 512 },
  { cpu: 512, min: 1024, max: 4096, step: 1024 },
  { cpu: 1024, min: 2048, max: 8192, step: 1024 },
  { cpu: 2048, min: 4096, max: 16384, step: 1024 },
  { cpu: 4096, min: 8192, max: 30720, step: 1024 },
  { cpu: 8192, min: 16384, max: 61440, step: 4096 },
  { cpu: 16384, min: 32768, max: 122880, step: 8192 },
];
const FARGATE_MIN_EPHEMERAL_GIB = 21;

/** What the memory rule asks for before Lambda's cap: the largest memoryBytes, LAMBDA_MIB_PER_VCPU per vCPU. */
function wantedMiB(u: ResourceRequest): number {
  return Math.max(Math.ceil((u.memoryBytes ?? 0) / MIB), Math.ceil((u.numCpus ?? 1) * LAMBDA_MIB_PER_VCPU));
}

/** Where one UDF's stage runs (see the top of this file); `floorMiB` is the Stage function's memory floor. */
export function udfPlacement(u: ResourceRequest, floorMiB: number = DEFAULT_LAMBDA_MEMORY_MIB): StagePlacement {
  const aws = u.aws ?? {};
  const numGpus = u.numGpus ?? 0;
  if (numGpus > 0) {
    const instanceType = aws.instanceType ?? DEFAULT_GPU_INSTANCE_TYPE;
    // Fractions pack onto one device: as many instances per task as share a device (at most `concurrency`).
    const perDevice = numGpus < 1 ? Math.max(1, Math.floor(1 / numGpus + 1e-9)) : 1;
    const instancesPerTask = Math.max(1, Math.min(perDevice, u.concurrency ?? perDevice));
    const gpusPerTask = Math.max(1, Math.ceil(numGpus * instancesPerTask - 1e-9));
    // An undeclared type is the deployment's default (FanoutPipeline gpu.instanceType), whatever that is.
    return { executor: 'ecs-gpu', key: gpuKey(aws.instanceType ?? 'default', gpusPerTask), instanceType, gpusPerTask, instancesPerTask };
  }
  const timeoutSeconds = aws.timeoutSeconds ?? DEFAULT_STAGE_TIMEOUT_SECONDS;
  const architecture = aws.architecture ?? DEFAULT_ARCHITECTURE;
  const wanted = aws.lambdaMemoryMb ?? wantedMiB(u);
  const beyondLambda = wanted > LAMBDA_MAX_MEMORY_MIB || timeoutSeconds > LAMBDA_MAX_TIMEOUT_SECONDS || (aws.ephemeralStorageMb ?? 0) > LAMBDA_MAX_EPHEMERAL_MB;
  if (aws.runOn === 'fargate' || (aws.runOn === undefined && beyondLambda)) {
    const { cpu, memoryMiB } = fargateSize(u.name, u.numCpus ?? 1, Math.ceil((u.memoryBytes ?? 0) / MIB));
    const ephemeralStorageGiB = Math.max(FARGATE_MIN_EPHEMERAL_GIB, Math.ceil((aws.ephemeralStorageMb ?? 0) / 1024));
    return {
      executor: 'fargate',
      key: fargateKey(cpu, memoryMiB, timeoutSeconds, architecture, ephemeralStorageGiB),
      cpu,
      memoryMiB,
      timeoutSeconds,
      architecture,
      ephemeralStorageGiB,
    };
  }
  const memoryMiB = aws.lambdaMemoryMb ?? Math.min(LAMBDA_MAX_MEMORY_MIB, Math.max(floorMiB, wanted));
  const ephemeralStorageMiB = aws.ephemeralStorageMb ?? DEFAULT_EPHEMERAL_MIB;
  return lambdaPlacement(memoryMiB, timeoutSeconds, architecture, ephemeralStorageMiB);
}

function lambdaPlacement(memoryMiB: number, timeoutSeconds: number, architecture: AwsArchitecture, ephemeralStorageMiB: number): LambdaPlacement {
  return {
    executor: 'lambda',
    key: `lambda-${memoryMiB}mb-${timeoutSeconds}s-${architecture}-tmp${ephemeralStorageMiB}`,
    memoryMiB,
    timeoutSeconds,
    architecture,
    ephemeralStorageMiB,
  };
}

function fargateKey(cpu: number, memoryMiB: number, timeoutSeconds: number, arch: AwsArchitecture, ephemeralGiB: number): string {
  return `fargate-${cpu}cpu-${memoryMiB}mb-${timeoutSeconds}s-${arch}-tmp${ephemeralGiB}gb`;
}

function gpuKey(instanceType: string, gpus: number): string {
  return `gpu-${instanceType}-${gpus}gpu`;
}

/** The smallest Fargate size with at least `vcpus` and `memMiB` (an error naming the UDF when none is that large). */
export function fargateSize(name: string, vcpus: number, memMiB: number): { cpu: number; memoryMiB: number } {
  for (const s of FARGATE_SIZES) {
    if (s.cpu < vcpus * 1024 || s.max < memMiB) continue;
    const memoryMiB = Math.max(s.min, Math.ceil(memMiB / s.step) * s.step);
    return { cpu: s.cpu, memoryMiB };
  }
  throw new Error(`UDF '${name}' asks for numCpus ${vcpus} and ${memMiB} MiB, more than the largest Fargate task (16 vCPU, 120 GiB)`);
}

/**
 * The placement of a stage whose UDFs ask for `ps` (all of one executor): their maximum in each
 * dimension (a stage runs on one function or task). A stage without UDFs runs on the default class.
 */
export function mergePlacements(ps: readonly StagePlacement[], floorMiB: number = DEFAULT_LAMBDA_MEMORY_MIB): StagePlacement {
  if (ps.length === 0) return lambdaPlacement(floorMiB, DEFAULT_STAGE_TIMEOUT_SECONDS, DEFAULT_ARCHITECTURE, DEFAULT_EPHEMERAL_MIB);
  if (ps.length === 1) return ps[0]!;
  const first = ps[0]!;
  const max = (f: (p: StagePlacement) => number): number => Math.max(...ps.map(f));
  const arch = (): AwsArchitecture => (ps.every((p) => 'architecture' in p && p.architecture === 'arm64') ? 'arm64' : 'x86_64');
  if (first.executor === 'ecs-gpu') {
    const gpus = ps.filter((p): p is GpuPlacement => p.executor === 'ecs-gpu');
    const instanceType = gpus[0]!.instanceType;
    const gpusPerTask = Math.max(...gpus.map((p) => p.gpusPerTask));
    const declared = gpus[0]!.key.startsWith('gpu-default-') ? 'default' : instanceType;
    return {
      executor: 'ecs-gpu',
      key: gpuKey(declared, gpusPerTask),
      instanceType,
      gpusPerTask,
      instancesPerTask: Math.min(...gpus.map((p) => p.instancesPerTask)),
    };
  }
  const timeoutSeconds = max((p) => ('timeoutSeconds' in p ? p.timeoutSeconds : 0));
  if (first.executor === 'fargate') {
    const f = ps.filter((p): p is FargatePlacement => p.executor === 'fargate');
    const size = fargateSize('(merged)', Math.max(...f.map((p) => p.cpu)) / 1024, Math.max(...f.map((p) => p.memoryMiB)));
    const eph = Math.max(...f.map((p) => p.ephemeralStorageGiB));
    return {
      executor: 'fargate',
      key: fargateKey(size.cpu, size.memoryMiB, timeoutSeconds, arch(), eph),
      ...size,
      timeoutSeconds,
      architecture: arch(),
      ephemeralStorageGiB: eph,
    };
  }
  const l = ps.filter((p): p is LambdaPlacement => p.executor === 'lambda');
  return lambdaPlacement(Math.max(...l.map((p) => p.memoryMiB)), timeoutSeconds, arch(), Math.max(...l.map((p) => p.ephemeralStorageMiB)));
}

/** The construct id of the Lambda function that runs a sizing class (the main Stage function is 'StageFunction'). */
export function stageFunctionId(key: string): string {
  return `Stage${pascal(key)}Function`;
}

/** The construct id of a Fargate sizing class's task definition. */
export function fargateTaskDefinitionId(key: string): string {
  return `Fargate${pascal(key.replace(/^fargate-/, ''))}TaskDefinition`;
}

function pascal(key: string): string {
  return key
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
}

/** A stage's placement in words, for explain. */
export function describePlacement(p: StagePlacement, fn?: string): string {
  if (p.executor === 'lambda')
    return `${p.memoryMiB} MiB, ${p.timeoutSeconds} s timeout, ${p.architecture}, /tmp ${p.ephemeralStorageMiB} MiB${fn ? `, function ${fn}` : ''}`;
  if (p.executor === 'fargate')
    return `${p.cpu / 1024} vCPU, ${p.memoryMiB} MiB, ${p.timeoutSeconds} s timeout, ${p.architecture}, ${p.ephemeralStorageGiB} GiB ephemeral${fn ? `, task definition ${fn}` : ''}`;
  return `${p.instanceType}, ${p.gpusPerTask} GPU(s) per task, ${p.instancesPerTask} instance(s) per task`;
}

/** The sizing classes a deployment has for a pipeline's UDFs: what the construct synthesizes and explain() reports. */
export interface DeployedClasses {
  /** One Stage function per class of a CPU UDF on Lambda (by key). */
  lambda: Map<string, LambdaPlacement>;
  /** The main Stage function ('StageFunction'): every class's maximum; it runs stages whose class has no function of its own. */
  main: LambdaPlacement;
  /** One Fargate task definition per class (by key). */
  fargate: Map<string, FargatePlacement>;
  /** One GPU task definition per class (by key), one capacity provider per instance type. */
  gpu: Map<string, GpuPlacement>;
}

/** The classes of `udfs` (each UDF's own placement), as FanoutPipeline deploys them. */
export function deployedClasses(udfs: readonly ResourceRequest[], floorMiB: number = DEFAULT_LAMBDA_MEMORY_MIB): DeployedClasses {
  const out: DeployedClasses = { lambda: new Map(), main: mergePlacements([], floorMiB) as LambdaPlacement, fargate: new Map(), gpu: new Map() };
  for (const u of udfs) {
    const p = udfPlacement(u, floorMiB);
    if (p.executor === 'lambda') out.lambda.set(p.key, p);
    else if (p.executor === 'fargate') out.fargate.set(p.key, p);
    else out.gpu.set(p.key, p);
  }
  out.main = mergePlacements([mergePlacements([], floorMiB), ...out.lambda.values()], floorMiB) as LambdaPlacement;
  return out;
}

/** What runs a stage in a deployment of `classes`: its own class's function / task definition, else the fallback. */
export function deployedFor(p: StagePlacement, classes: DeployedClasses): { placement: StagePlacement; id: string } | null {
  if (p.executor === 'lambda') {
    if (classes.lambda.has(p.key)) return { placement: p, id: p.key === classes.main.key ? 'StageFunction' : stageFunctionId(p.key) };
    return { placement: classes.main, id: 'StageFunction' };
  }
  if (p.executor === 'fargate') return classes.fargate.has(p.key) ? { placement: p, id: fargateTaskDefinitionId(p.key) } : null;
  return classes.gpu.has(p.key) ? { placement: p, id: p.key } : null;
}

// A UDF's AWS options (`aws: {...}` on func / func.batch / cls): where and with what its serverless
// stage runs. Checked when the UDF is defined, against Lambda's and ECS's real limits, so a wrong
// value fails at import with the UDF and option named, not at deploy or hours into a run.
import { LAMBDA_MAX_MEMORY_MIB, LAMBDA_MIN_MEMORY_MIB } from '../aws/sizing.ts';

export type AwsArchitecture = 'arm64' | 'x86_64';
export type AwsRunOn = 'lambda' | 'fargate' | 'ecs';

/** Per-UDF cloud options (the AWS runner and the CDK construct read them; other runners ignore them). */
export interface AwsUdfOptions {
  /** Memory of the Lambda function that runs this UDF's stage (MB, 128..10240). Default: from memoryBytes / numCpus. */
  lambdaMemoryMb?: number;
  /** CPU architecture of the stage's Lambda function or Fargate task. Default 'x86_64'. */
  architecture?: AwsArchitecture;
  /** Longest one partition of the stage may take (s). Lambda allows 900; longer runs the stage on Fargate. Default: the deployment's. */
  timeoutSeconds?: number;
  /** /tmp of the stage's Lambda (MB, 512..10240), or a Fargate task's ephemeral storage (MB, up to 200 GiB). Default 512 (Lambda). */
  ephemeralStorageMb?: number;
  /** GPU UDFs: the EC2 instance type of the ECS capacity their tasks run on (one capacity provider per type), e.g. 'g6.xlarge'. */
  instanceType?: string;
  /**
   * Where the stage runs: 'lambda', 'fargate' (CPU tasks beyond Lambda's 10 GB / 15 minutes) or 'ecs'
   * (tasks on EC2 capacity: GPU UDFs always run there). Default: Lambda for CPU UDFs, unless their
   * memoryBytes or timeoutSeconds exceed Lambda's limits (then Fargate); ECS for GPU UDFs.
   */
  runOn?: AwsRunOn;
}

/** Lambda's limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). */
export const LAMBDA_MAX_TIMEOUT_SECONDS = 900;
export const LAMBDA_MIN_EPHEMERAL_MB = 512;
export const LAMBDA_MAX_EPHEMERAL_MB = 10240;
/** Fargate's ephemeral storage: 21..200 GiB. */
export const FARGATE_MAX_EPHEMERAL_MB = 200 * 1024;
/** The largest TimeoutSeconds a Step Functions state accepts. */
const MAX_STATE_TIMEOUT_SECONDS = 99_999_999;

const KEYS = new Set<keyof AwsUdfOptions>(['lambdaMemoryMb', 'architecture', 'timeoutSeconds', 'ephemeralStorageMb', 'instanceType', 'runOn']);
/** An EC2 instance type name: family (letters, digits, options) '.' size. */
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
/** NVIDIA GPU families the ECS GPU-optimized AMI supports (x86_64). */
const GPU_FAMILY = /^(g|gr|p)\d/;

/**
 * The merged AWS options of UDF `name` (a cls method's own over its class's), checked. `numGpus` is the
 * UDF's resolved value: GPU UDFs run on ECS only, and only they pick an instance type.
 */
export function resolveAwsOptions(name: string, given: unknown, base: Readonly<AwsUdfOptions> | undefined, numGpus: number): Readonly<AwsUdfOptions> {
  const fail = (option: string, msg: string): never => {
    throw new TypeError(`UDF '${name}': option 'aws.${option}' ${msg}`);
  };
  if (given !== undefined && (given === null || typeof given !== 'object' || Array.isArray(given))) {
    throw new TypeError(`UDF '${name}': option 'aws' must be an object like { lambdaMemoryMb: 2048 }, got ${JSON.stringify(given)}`);
  }
  const own = (given ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(own)) {
    if (!KEYS.has(k as keyof AwsUdfOptions)) fail(k, `is not an AWS option; known: ${[...KEYS].join(', ')}`);
  }
  const o: AwsUdfOptions = { ...base };
  for (const [k, v] of Object.entries(own)) if (v !== undefined) (o as Record<string, unknown>)[k] = v;
  const int = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
  const gpu = numGpus > 0;

  if (o.runOn !== undefined && o.runOn !== 'lambda' && o.runOn !== 'fargate' && o.runOn !== 'ecs')
    fail('runOn', `must be 'lambda', 'fargate' or 'ecs', got ${JSON.stringify(o.runOn)}`);
  if (gpu && (o.runOn === 'lambda' || o.runOn === 'fargate'))
    fail('runOn', `is '${o.runOn}', but the UDF asks for numGpus ${numGpus}: GPU UDFs run on ECS tasks on GPU instances (runOn 'ecs')`);
  if (!gpu && o.runOn === 'ecs')
    fail('runOn', "is 'ecs' (EC2 GPU capacity), but the UDF asks for no GPU: a CPU stage beyond Lambda's limits runs on runOn 'fargate'");
  const onLambda = !gpu && (o.runOn === undefined || o.runOn === 'lambda');

  if (o.architecture !== undefined) {
    if (o.architecture !== 'arm64' && o.architecture !== 'x86_64') fail('architecture', `must be 'arm64' or 'x86_64', got ${JSON.stringify(o.architecture)}`);
    if (gpu && o.architecture === 'arm64') fail('architecture', "is 'arm64', but GPU UDFs run on x86_64 NVIDIA instances");
  }
  if (o.lambdaMemoryMb !== undefined) {
    if (!int(o.lambdaMemoryMb) || o.lambdaMemoryMb < LAMBDA_MIN_MEMORY_MIB || o.lambdaMemoryMb > LAMBDA_MAX_MEMORY_MIB)
      fail(
        'lambdaMemoryMb',
        `must be an integer ${LAMBDA_MIN_MEMORY_MIB}..${LAMBDA_MAX_MEMORY_MIB} (Lambda's range), got ${String(o.lambdaMemoryMb)}; more memory takes memoryBytes with runOn 'fargate'`,
      );
    if (!onLambda) fail('lambdaMemoryMb', `sizes a Lambda function, but this UDF runs on ${gpu ? 'ECS (numGpus)' : `'${o.runOn}'`}: give memoryBytes instead`);
  }
  if (o.timeoutSeconds !== undefined) {
    if (!int(o.timeoutSeconds) || o.timeoutSeconds < 1 || o.timeoutSeconds > MAX_STATE_TIMEOUT_SECONDS)
      fail('timeoutSeconds', `must be a positive integer (seconds), got ${String(o.timeoutSeconds)}`);
    if (o.runOn === 'lambda' && o.timeoutSeconds > LAMBDA_MAX_TIMEOUT_SECONDS)
      fail('timeoutSeconds', `is ${o.timeoutSeconds}, above Lambda's ${LAMBDA_MAX_TIMEOUT_SECONDS} s limit; use runOn 'fargate' (or leave runOn unset)`);
  }
  if (o.ephemeralStorageMb !== undefined) {
    const max = onLambda ? LAMBDA_MAX_EPHEMERAL_MB : FARGATE_MAX_EPHEMERAL_MB;
    if (!int(o.ephemeralStorageMb) || o.ephemeralStorageMb < LAMBDA_MIN_EPHEMERAL_MB || o.ephemeralStorageMb > max)
      fail(
        'ephemeralStorageMb',
        `must be an integer ${LAMBDA_MIN_EPHEMERAL_MB}..${max} (${onLambda ? "Lambda's /tmp range" : "Fargate's 200 GiB"}), got ${String(o.ephemeralStorageMb)}`,
      );
    if (gpu) fail('ephemeralStorageMb', "applies to Lambda and Fargate; GPU tasks use the instances' root volume (the construct's gpu.rootVolumeGiB)");
  }
  if (o.instanceType !== undefined) {
    if (typeof o.instanceType !== 'string' || !INSTANCE_TYPE.test(o.instanceType))
      fail('instanceType', `must be an EC2 instance type like 'g5.xlarge', got ${JSON.stringify(o.instanceType)}`);
    if (!gpu) fail('instanceType', `applies to GPU UDFs only (numGpus > 0); '${name}' asks for no GPU`);
    if (!GPU_FAMILY.test(o.instanceType.split('.')[0]!) || /^g\d+g\./.test(o.instanceType))
      fail('instanceType', `is ${o.instanceType}, not an x86_64 NVIDIA GPU type (g4dn, g5, g6, g6e, p4d, p5…), which the ECS GPU-optimized AMI needs`);
  }
  return Object.freeze(o);
}

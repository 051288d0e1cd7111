// FanoutPipeline: the AWS deployment of a fanout pipeline as one construct. It deploys the generic
// state machine of src/aws/state-machine.ts (Plan Lambda -> per stage a Map over partitions on the
// Stage Lambda, or over GPU worker slots on ECS -> Finalize Lambda; Failure Lambda on errors), the
// Lambda bundles (handler + the user's pipeline, built by the local esbuild), a GPU ECS cluster
// that scales to zero, a work bucket, and optionally an EventBridge rule that starts a run for
// each object uploaded under an input prefix.
//
// This file holds the props, their validation and defaults, and the wiring. The parts live in:
// bundling.ts (esbuild options, entry wrappers, copied assets, GPU image), functions.ts (the four
// Lambdas and their roles), gpu-capacity.ts (VPC, cluster, instances, task definition),
// state-machine.ts, trigger.ts (EventBridge rule + DLQ), grants.ts (S3 grants, cdk-nag
// acknowledgments) and udf-resources.ts (sizes from the UDFs). They create their resources in this
// construct's own scope, so construct paths and logical IDs match the earlier single-file construct.
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Duration, RemovalPolicy, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEFAULT_ECS_TIMEOUT_SECONDS, DEFAULT_LAMBDA_TIMEOUT_SECONDS } from '../src/aws/state-machine.ts';
import { DEFAULT_LAMBDA_MEMORY_MIB, LAMBDA_MAX_MEMORY_MIB, LAMBDA_MIN_MEMORY_MIB } from '../src/aws/sizing.ts';
import { listUdfs } from '../src/udf.ts';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { deployedClasses, stageFunctionId, udfPlacement } from '../src/aws/placement.ts';
import { findProjectRoot, gpuImageAsset } from './bundling.ts';
import { emulatorMachineImage, emulatorMode, emulatorTaskImage, omitForEmulator } from './emulator.ts';
import { addFargateTasks, CPU_CONTAINER_NAME, FARGATE_STARTUP_GRACE_SECONDS, type FargateTasks } from './cpu-tasks.ts';
import { addFanoutFunctions, type FanoutFunctionRole } from './functions.ts';
import { acknowledgeGpuWildcards, addGpuCapacity, defaultVpc, GPU_CONTAINER_NAME } from './gpu-capacity.ts';
import { acknowledgeObjectGrant, grantKey, grantList, grantObjectActions, MAP_RESULTS_PREFIX, ObjectGrants, S3_READ } from './grants.ts';
import { acknowledgeStateMachineWildcards, addRunStateMachine } from './state-machine.ts';
import { addMonitoring, type FanoutMonitoring, type FanoutMonitoringProps } from './monitoring.ts';
import { addInputTrigger } from './trigger.ts';
import { gpuTaskSizeFor, registeredUdfHints, stageMemoryFor, type UdfResourceHint } from './udf-resources.ts';
import { checkTolerance } from '../src/aws/tolerance.ts';

// The construct's public names, wherever they are defined.
export { type FanoutFunctionRole, LAMBDA_TASK_ROOT } from './functions.ts';
export { GPU_CONTAINER_NAME, GPU_IMAGE_PIPELINE } from './gpu-capacity.ts';
export type { FanoutMonitoring, FanoutMonitoringProps } from './monitoring.ts';
export { objectCreatedPattern } from './trigger.ts';
export { gpuTaskSizeFor, registeredUdfHints, stageMemoryFor, type UdfResourceHint } from './udf-resources.ts';

// ---------------------------------------------------------------------------------------------
// Props

/** Uploads under `prefix` in `bucket` start a run (S3 "Object Created" -> EventBridge -> StartExecution). */
export interface FanoutInputProps {
  readonly bucket: s3.IBucket;
  /** Key prefix to watch, e.g. 'incoming/'. @default '' (the whole bucket) */
  readonly prefix?: string;
  /** Only keys ending with this start a run; '' for any key. @default '.parquet' */
  readonly suffix?: string;
  /**
   * Turn on the bucket's EventBridge notifications. A bucket defined in this app gets the
   * CloudFormation property; an imported one gets CDK's notifications custom resource.
   * Set false when the bucket already sends events to EventBridge. @default true
   */
  readonly enableEventBridge?: boolean;
}

/** Where a run commits its result: `s3://bucket/<prefix><runId>/` (part files, then `_SUCCESS`). */
export interface FanoutOutputProps {
  readonly bucket: s3.IBucket;
  /** @default 'output/' */
  readonly prefix?: string;
}

/** The ECS GPU capacity for stages whose UDFs ask for `numGpus`. */
export interface FanoutGpuProps {
  /** A GPU instance type (x86_64 NVIDIA: g4dn, g5, g6, g6e, p4d, p5…). @default 'g5.xlarge' (1 A10G, 4 vCPU, 16 GiB) */
  readonly instanceType?: string | ec2.InstanceType;
  /** Instances kept running while idle. @default 0 (scale to zero) */
  readonly minCapacity?: number;
  /** Instances at most (each GPU worker slot takes `gpusPerTask` GPUs of one). @default 2 */
  readonly maxCapacity?: number;
  /** GPUs per task. @default derived: the largest `numGpus` of the pipeline's UDFs, rounded up, at least 1 */
  readonly gpusPerTask?: number;
  /** Soft memory reservation per task (MiB). @default derived: the largest `memoryBytes` of the GPU UDFs, at least 4096 */
  readonly memoryReservationMiB?: number;
  /** CPU units per task (1024 = 1 vCPU). @default derived: the largest `numCpus` × 1024 of the GPU UDFs, at least 1024 */
  readonly cpu?: number;
  /** Root volume size (GiB); the CUDA image is ~10 GB. @default 100 */
  readonly rootVolumeGiB?: number;
  /** Upper bound of one GPU task (its state's TimeoutSeconds). @default 6 hours */
  readonly taskTimeout?: Duration;
  /** The task image. @default built by `cdk deploy` from cdk/gpu-task/Dockerfile (never at synth) */
  readonly image?: ecs.ContainerImage;
  /** Extra build args of the default image, e.g. { CUDA_IMAGE, ORT_INSTALL: 'skip' } for a CPU-only image on an emulator. @default none */
  readonly imageBuildArgs?: Record<string, string>;
  /** @default the ECS GPU-optimized Amazon Linux 2 AMI (SSM public parameter, resolved at deploy time) */
  readonly machineImage?: ec2.IMachineImage;
}

/** Lambda sizing. Memory buys CPU: 1,769 MiB is one full vCPU. */
export interface FanoutLambdaProps {
  /** Plan, Finalize and Failure functions. @default 1769 */
  readonly memoryMiB?: number;
  /** The Stage function (every CPU stage runs on it). @default derived from the CPU UDFs' memoryBytes/numCpus, at least `memoryMiB` */
  readonly stageMemoryMiB?: number;
  /** Every function's timeout; the state machine waits 30 s longer. At most 15 minutes. @default 15 minutes */
  readonly timeout?: Duration;
  /** @default lambda.Architecture.X86_64 */
  readonly architecture?: lambda.Architecture;
  /**
   * Reserved concurrency of the Stage function (a positive integer): at most this many partitions
   * run at once across all runs, and the rest of the account's Lambda pool is safe from a big run.
   * Keep `maxConcurrency` at or below it: invocations above it are throttled, retried by the state
   * machine (Lambda.TooManyRequestsException, 10 attempts with backoff) and fail the run when the
   * retries run out. Reserving needs that much unreserved concurrency left in the account.
   * @default none (the function shares the account's unreserved pool)
   */
  readonly stageReservedConcurrency?: number;
}

/** Objects under `prefix` of `bucket` (a location runs may read). */
export interface FanoutS3Location {
  readonly bucket: s3.IBucket;
  /** Key prefix; '' for the whole bucket. @default '' */
  readonly prefix?: string;
}

export interface FanoutPipelineProps {
  /** The pipeline module: its default export `(input) => DataFrame` builds the pipeline and the module defines its UDFs. */
  readonly entry: string;
  /** Watched input (its objects are readable by runs). @default none: runs start on demand (StartExecution with `{ input, output, runId? }`), reading only `readableInputs` */
  readonly input?: FanoutInputProps;
  /** @default none: results stay in the work bucket under runs/<runId>/output */
  readonly output?: FanoutOutputProps;
  /**
   * Inputs runs may read besides the watched `input`. A run started by StartExecution (or from
   * code) names any s3:// input, but the Plan and Stage functions and the GPU tasks can read only
   * `input` and these locations (s3:GetObject, and s3:ListBucket limited to the prefix); any other
   * input fails the run with AccessDenied. `grantReadInput()` adds one after construction.
   * @default none: only the watched input (nothing, without `input`)
   */
  readonly readableInputs?: readonly FanoutS3Location[];
  /** GPU capacity, or false for none (a GPU stage then fails with fanout.NoGpuResources).
   *  @default created when a UDF asks for numGpus (or when the UDFs are unknown) */
  readonly gpu?: FanoutGpuProps | false;
  /** @default see FanoutLambdaProps */
  readonly lambda?: FanoutLambdaProps;
  /** Cap on partitions in flight per CPU stage (the plan's per-stage value applies below it). @default none */
  readonly maxConcurrency?: number;
  /** The UDFs' resource requests, which size the Stage Lambda and the GPU task.
   *  @default the UDFs registered in this process (import the entry first, as cdk/app.ts does) */
  readonly udfs?: readonly UdfResourceHint[];
  /** VPC for the GPU instances. @default a new VPC: 2 AZs, public subnets only (no NAT gateway), S3 gateway endpoint, flow logs */
  readonly vpc?: ec2.IVpc;
  /** How long run shards (runs/) stay in the work bucket. @default 7 days */
  readonly workRetention?: Duration;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** Of the work bucket and the log groups. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Distributed Map for CPU stages (thousands of partitions; children in their own executions). @default true */
  readonly distributed?: boolean;
  /**
   * CloudWatch dashboard and alarms (failed executions; the input rule's dead-letter queue), with
   * notifications to `alarmTopic` when set; false for none. The Stage Lambda and the GPU task
   * print partition and UDF metrics in embedded metric format either way.
   * @default a dashboard and the alarms, without notifications
   */
  readonly monitoring?: FanoutMonitoringProps | false;
  /**
   * Partitions of a run this deployment plans (S3-triggered runs) that may fail, in percent (0-100),
   * while the run still commits the rest, with a `_SUCCESS` manifest that says `complete: false`.
   * Needs `distributed` (the Distributed Map's threshold). A runner's runs carry their own.
   * @default none: any failed partition fails the run
   */
  readonly toleratedFailurePercentage?: number;
  /** As toleratedFailurePercentage, as a count of partitions. @default none */
  readonly toleratedFailureCount?: number;
  /** The directory esbuild runs in and the GPU image's build context. @default the nearest directory above `entry` with a package-lock.json */
  readonly projectRoot?: string;
  /** esbuild's --conditions for the bundles (`development` resolves 'fanout' to its TypeScript sources). @default ['development'] */
  readonly conditions?: readonly string[];
}
// ---------------------------------------------------------------------------------------------
// The construct

export class FanoutPipeline extends Construct {
  readonly workBucket: s3.Bucket;
  readonly stateMachine: sfn.StateMachine;
  readonly functions: Readonly<Record<FanoutFunctionRole, nodejs.NodejsFunction>>;
  /** One role per Lambda function, each with only what that function does (see functions.ts). */
  readonly roles: Readonly<Record<FanoutFunctionRole, iam.Role>>;
  readonly cluster?: ecs.Cluster;
  readonly taskDefinition?: ecs.Ec2TaskDefinition;
  /** Its auto scaling group sees the instance role as immutable (CDK's own grants are replaced): add instance permissions to `instanceRole`. */
  readonly capacityProvider?: ecs.AsgCapacityProvider;
  /** The GPU container instances' role (ECS agent only; the tasks have their own role). */
  readonly instanceRole?: iam.Role;
  /** The GPU instances' security group: no inbound, outbound TCP 443 only. A UDF that needs more (a model server, a database) gets an egress rule added here. */
  readonly instanceSecurityGroup?: ec2.SecurityGroup;
  vpc?: ec2.IVpc;
  readonly rule?: events.Rule;
  /** Failed StartExecution deliveries of the input rule. */
  readonly deadLetterQueue?: sqs.Queue;
  /** The dashboard and alarms (absent with `monitoring: false`). */
  readonly monitoring?: FanoutMonitoring;
  /** Per-stage resources: the Stage function of each Lambda sizing class (src/aws/placement.ts key), the main one included. */
  readonly stageFunctions: Readonly<Record<string, nodejs.NodejsFunction>>;
  /** GPU classes with a task definition of their own (other instance type or GPU count), by class key. */
  readonly gpuClasses: Record<string, { taskDefinition: ecs.Ec2TaskDefinition; capacityProvider: ecs.AsgCapacityProvider }> = {};
  /** Fargate task definitions of CPU stages beyond Lambda's limits (when a UDF needs them). */
  readonly fargate?: FargateTasks;
  /** The cluster Fargate tasks run in (the GPU cluster when there is one). */
  readonly fargateCluster?: ecs.ICluster;
  /** The derived sizes (for docs and tests). */
  readonly sizing: {
    planMemoryMiB: number;
    stageMemoryMiB: number;
    timeoutSeconds: number;
    gpu?: { gpus: number; memoryReservationMiB: number; cpu: number; instanceType: string };
  };
  /** Per-stage resources, by sizing class key (src/aws/placement.ts): what each class deploys. */
  readonly classSizing: {
    /** Lambda sizing classes: the construct id of their function and its sizes. */
    stageClasses: Record<string, { functionId: string; memoryMiB: number; timeoutSeconds: number; architecture: string; ephemeralStorageMiB: number }>;
    fargateClasses: Record<string, { cpu: number; memoryMiB: number; architecture: string }>;
    /** GPU classes with a task definition of their own (the default class uses the `sizing.gpu` one). */
    gpuClasses: Record<string, { instanceType: string; gpus: number; instancesPerTask: number }>;
  };

  constructor(scope: Construct, id: string, props: FanoutPipelineProps) {
    super(scope, id);
    const entry = isAbsolute(props.entry) ? props.entry : resolve(props.entry);
    if (!existsSync(entry)) throw new Error(`FanoutPipeline: entry ${entry} does not exist`);
    const projectRoot = props.projectRoot ? resolve(props.projectRoot) : findProjectRoot(entry);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const conditions = props.conditions ?? ['development'];
    const hints = props.udfs ?? (listUdfs().length > 0 ? registeredUdfHints() : undefined);
    // `-c fanout:emulator=true`: what emulators lack is left out or replaced (emulator.ts).
    const emulator = emulatorMode(this);

    // ---- sizes ----
    const timeoutSeconds = (props.lambda?.timeout ?? Duration.seconds(DEFAULT_LAMBDA_TIMEOUT_SECONDS)).toSeconds();
    if (!(timeoutSeconds >= 1 && timeoutSeconds <= 900)) throw new Error(`FanoutPipeline: lambda.timeout must be 1 s..15 min, got ${timeoutSeconds} s`);
    const planMemoryMiB = props.lambda?.memoryMiB ?? DEFAULT_LAMBDA_MEMORY_MIB;
    // Per-stage resources: the sizing classes of the UDFs (src/aws/placement.ts, the planner's own rule).
    const classes = deployedClasses(hints ?? []);
    const stageMemoryMiB = props.lambda?.stageMemoryMiB ?? Math.max(stageMemoryFor(hints ?? [], planMemoryMiB), classes.main.memoryMiB);
    for (const [k, v] of [
      ['memoryMiB', planMemoryMiB],
      ['stageMemoryMiB', stageMemoryMiB],
    ] as const) {
      if (!(Number.isInteger(v) && v >= LAMBDA_MIN_MEMORY_MIB && v <= LAMBDA_MAX_MEMORY_MIB)) {
        throw new Error(`FanoutPipeline: lambda.${k} must be an integer ${LAMBDA_MIN_MEMORY_MIB}..${LAMBDA_MAX_MEMORY_MIB}, got ${v}`);
      }
    }
    const stageReserved = props.lambda?.stageReservedConcurrency;
    requirePositiveInteger('lambda.stageReservedConcurrency', stageReserved);
    requirePositiveInteger('maxConcurrency', props.maxConcurrency);
    const tolerance = checkTolerance(
      { toleratedFailurePercentage: props.toleratedFailurePercentage, toleratedFailureCount: props.toleratedFailureCount },
      'FanoutPipeline',
    );
    if (tolerance && props.distributed === false)
      throw new Error(
        'FanoutPipeline: toleratedFailurePercentage / toleratedFailureCount need distributed: true (the Distributed Map counts tolerated failures)',
      );
    const gpuWanted = props.gpu === false ? false : props.gpu !== undefined || hints === undefined || hints.some((u) => (u.numGpus ?? 0) > 0);
    const gpuProps: FanoutGpuProps = props.gpu || {};
    for (const k of ['gpusPerTask', 'memoryReservationMiB', 'cpu', 'rootVolumeGiB'] as const) requirePositiveInteger(`gpu.${k}`, gpuProps[k]);

    const inputPrefix = normalizePrefix(props.input?.prefix, '');
    const inputSuffix = props.input?.suffix ?? '.parquet';
    const outputPrefix = normalizePrefix(props.output?.prefix, 'output/');
    if (
      props.input &&
      props.output &&
      props.input.bucket === props.output.bucket &&
      (outputPrefix.startsWith(inputPrefix) || inputPrefix.startsWith(outputPrefix))
    ) {
      // The run's own output would match the rule and start another run, forever.
      throw new Error(`FanoutPipeline: output prefix '${outputPrefix}' overlaps the watched input prefix '${inputPrefix}' in the same bucket`);
    }

    // ---- work bucket: plans, shards, results before commit ----
    const workRetentionDays = Math.max(1, Math.round((props.workRetention ?? Duration.days(7)).toDays({ integral: false })));
    this.workBucket = new s3.Bucket(this, 'WorkBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy,
      lifecycleRules: [
        { id: 'expire-run-shards', prefix: 'runs/', expiration: Duration.days(workRetentionDays) },
        { id: 'expire-map-results', prefix: MAP_RESULTS_PREFIX, expiration: Duration.days(workRetentionDays) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
    Validations.of(this.workBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        "Scratch data of runs, written and read only by this pipeline's roles and expired by a lifecycle rule; CloudTrail data events can audit it where required.",
    });

    // ---- Lambda functions: one role each ----
    const grants = new ObjectGrants();
    const fns = addFanoutFunctions(this, {
      entry,
      projectRoot,
      conditions,
      workBucket: this.workBucket,
      ...(props.output ? { output: { bucket: props.output.bucket, prefix: outputPrefix } } : {}),
      planMemoryMiB,
      stageMemoryMiB,
      stageEphemeralStorageMiB: classes.main.ephemeralStorageMiB,
      stageClasses: [...classes.lambda.values()]
        .filter((c) => c.key !== classes.main.key)
        .map((c) => ({
          key: c.key,
          id: stageFunctionId(c.key),
          memoryMiB: c.memoryMiB,
          timeoutSeconds: c.timeoutSeconds,
          architecture: c.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
          ephemeralStorageMiB: c.ephemeralStorageMiB,
        })),
      timeoutSeconds,
      architecture: props.lambda?.architecture ?? lambda.Architecture.X86_64,
      ...(stageReserved !== undefined ? { stageReservedConcurrency: stageReserved } : {}),
      logRetention,
      removalPolicy,
      grants,
    });
    this.roles = fns.roles;
    this.functions = fns.functions;
    this.stageFunctions = { [classes.main.key]: fns.functions.stage, ...fns.stageClassFunctions };
    // The `Pipeline` dimension of the EMF metrics: the construct path starts with the stack's id.
    const metricsPipeline = this.node.path;
    // The Plan function writes them into the plans it makes (handlers.ts, deploymentTolerance).
    if (tolerance?.toleratedFailurePercentage !== undefined)
      fns.functions.plan.addEnvironment('FANOUT_TOLERATED_FAILURE_PERCENTAGE', String(tolerance.toleratedFailurePercentage));
    if (tolerance?.toleratedFailureCount !== undefined)
      fns.functions.plan.addEnvironment('FANOUT_TOLERATED_FAILURE_COUNT', String(tolerance.toleratedFailureCount));
    for (const fn of Object.values(this.stageFunctions)) {
      fn.addEnvironment('FANOUT_METRICS', 'emf');
      fn.addEnvironment('FANOUT_METRICS_PIPELINE', metricsPipeline);
    }

    // ---- ECS GPU capacity ----
    let gpuSizing: FanoutPipeline['sizing']['gpu'];
    const gpuClassSizing: FanoutPipeline['classSizing']['gpuClasses'] = {};
    if (gpuWanted) {
      const instanceType =
        typeof gpuProps.instanceType === 'string' || gpuProps.instanceType === undefined
          ? new ec2.InstanceType(gpuProps.instanceType ?? 'g5.xlarge')
          : gpuProps.instanceType;
      const family = instanceType.toString().split('.')[0] ?? '';
      if (!/^(g|gr|p)\d/.test(family) || instanceType.architecture !== ec2.InstanceArchitecture.X86_64) {
        throw new Error(
          `FanoutPipeline: gpu.instanceType ${instanceType.toString()} is not an x86_64 NVIDIA GPU type (g4dn, g5, g6, g6e, p4d, p5…), which the ECS GPU-optimized AMI needs`,
        );
      }
      const minCapacity = gpuProps.minCapacity ?? 0;
      const maxCapacity = gpuProps.maxCapacity ?? 2;
      if (!(Number.isInteger(minCapacity) && minCapacity >= 0 && Number.isInteger(maxCapacity) && maxCapacity >= Math.max(1, minCapacity))) {
        throw new Error(
          `FanoutPipeline: gpu capacity needs integers 0 <= gpu.minCapacity <= gpu.maxCapacity, gpu.maxCapacity >= 1 (got ${minCapacity}..${maxCapacity})`,
        );
      }
      const derived = gpuTaskSizeFor(hints ?? []);
      const task = {
        gpus: gpuProps.gpusPerTask ?? derived.gpus,
        memoryReservationMiB: gpuProps.memoryReservationMiB ?? derived.memoryReservationMiB,
        cpu: gpuProps.cpu ?? derived.cpu,
      };
      gpuSizing = { ...task, instanceType: instanceType.toString() };
      const gpu = addGpuCapacity(this, {
        instanceType,
        machineImage: gpuProps.machineImage ?? (emulator ? emulatorMachineImage(this, emulator) : ecs.EcsOptimizedImage.amazonLinux2(ecs.AmiHardwareType.GPU)),
        minCapacity,
        maxCapacity,
        rootVolumeGiB: gpuProps.rootVolumeGiB ?? 100,
        task,
        image:
          gpuProps.image ??
          (emulator
            ? emulatorTaskImage(this, emulator, (args) => gpuImageAsset(projectRoot, entry, conditions, { ...args, ...gpuProps.imageBuildArgs }))
            : gpuImageAsset(projectRoot, entry, conditions, gpuProps.imageBuildArgs ?? {})),
        ...(props.vpc ? { vpc: props.vpc } : {}),
        workBucket: this.workBucket,
        metricsPipeline,
        logRetention,
        removalPolicy,
        grants,
      });
      this.vpc = gpu.vpc;
      this.cluster = gpu.cluster;
      this.taskDefinition = gpu.taskDefinition;
      this.capacityProvider = gpu.capacityProvider;
      this.instanceRole = gpu.instanceRole;
      this.instanceSecurityGroup = gpu.instanceSecurityGroup;
      // Per-stage resources: a GPU class of another instance type or GPU count gets its own task
      // definition, on the capacity provider of its instance type (one auto scaling group per type).
      const defaultKey = `gpu-default-${task.gpus}gpu`;
      for (const [key, c] of classes.gpu) {
        if (key === defaultKey) continue;
        const of = (hints ?? []).filter((h) => (h.numGpus ?? 0) > 0 && udfPlacement(h).key === key);
        const size = gpuTaskSizeFor(of);
        const type = key.startsWith('gpu-default-') ? instanceType : new ec2.InstanceType(c.instanceType);
        const provider = gpu.capacityFor(type);
        const td = gpu.addTaskDefinition(`GpuTaskDefinition${key.replace(/[^A-Za-z0-9]/g, '')}`, { ...size, gpus: c.gpusPerTask });
        this.gpuClasses[key] = { taskDefinition: td, capacityProvider: provider };
        gpuClassSizing[key] = { instanceType: type.toString(), gpus: c.gpusPerTask, instancesPerTask: c.instancesPerTask };
      }
    }
    // ---- Fargate: CPU stages beyond Lambda's limits ----
    let fargateTimeout = 0;
    if (classes.fargate.size > 0) {
      const vpc = this.vpc ?? props.vpc ?? defaultVpc(this, logRetention, removalPolicy);
      this.vpc = vpc;
      const cluster = this.cluster ?? new ecs.Cluster(this, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
      this.fargate = addFargateTasks(this, {
        cluster,
        metricsPipeline,
        vpc,
        publicSubnets: !props.vpc,
        classes: [...classes.fargate.values()],
        image: (arch) =>
          gpuImageAsset(
            projectRoot,
            entry,
            conditions,
            { CUDA_IMAGE: 'node:22-bookworm-slim', ORT_INSTALL: 'skip' },
            arch === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
          ),
        workBucket: this.workBucket,
        logRetention,
        removalPolicy,
        grants,
      });
      this.fargateCluster = cluster;
      fargateTimeout = Math.max(...[...classes.fargate.values()].map((c) => c.timeoutSeconds)) + FARGATE_STARTUP_GRACE_SECONDS;
    }
    this.sizing = { planMemoryMiB, stageMemoryMiB, timeoutSeconds, ...(gpuSizing ? { gpu: gpuSizing } : {}) };
    this.classSizing = {
      stageClasses: Object.fromEntries(
        [...classes.lambda.values()].map((c) => [
          c.key,
          {
            functionId: c.key === classes.main.key ? 'StageFunction' : stageFunctionId(c.key),
            memoryMiB: c.key === classes.main.key ? stageMemoryMiB : c.memoryMiB,
            timeoutSeconds: c.key === classes.main.key ? timeoutSeconds : c.timeoutSeconds,
            architecture: c.architecture,
            ephemeralStorageMiB: c.ephemeralStorageMiB,
          },
        ]),
      ),
      fargateClasses: Object.fromEntries(
        [...classes.fargate.values()].map((c) => [c.key, { cpu: c.cpu, memoryMiB: c.memoryMiB, architecture: c.architecture }]),
      ),
      gpuClasses: gpuClassSizing,
    };
    // Inputs: read by Plan (planning the scan), Stage and the GPU tasks (a GPU stage can be stage 0).
    if (props.input) this.grantReadInput(props.input.bucket, inputPrefix);
    for (const r of props.readableInputs ?? []) this.grantReadInput(r.bucket, r.prefix ?? '');

    // ---- state machine ----
    this.stateMachine = addRunStateMachine(this, {
      functions: this.functions,
      stageClassFunctions: fns.stageClassFunctions,
      ...(this.fargate && this.fargateCluster
        ? {
            fargate: {
              cluster: this.fargateCluster,
              taskDefinitions: this.fargate.taskDefinitions,
              containerName: CPU_CONTAINER_NAME,
              subnets: this.vpc!.selectSubnets(props.vpc ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } : { subnetType: ec2.SubnetType.PUBLIC })
                .subnetIds,
              securityGroups: [this.fargate.securityGroup.securityGroupId],
              assignPublicIp: !props.vpc,
              timeoutSeconds: fargateTimeout,
            },
          }
        : {}),
      ...(this.cluster && this.taskDefinition && this.capacityProvider
        ? {
            gpu: {
              cluster: this.cluster,
              taskDefinition: this.taskDefinition,
              containerName: GPU_CONTAINER_NAME,
              // Emulator mode leaves the provider out: RunTask then names none.
              ...(emulator ? {} : { capacityProvider: this.capacityProvider.capacityProviderName }),
              classes: Object.fromEntries(
                Object.entries(this.gpuClasses).map(([k, c]) => [
                  k,
                  { taskDefinition: c.taskDefinition, capacityProvider: c.capacityProvider.capacityProviderName },
                ]),
              ),
            },
          }
        : {}),
      workBucket: this.workBucket,
      distributed: props.distributed ?? true,
      // The Lambda task states wait for the longest class (each function times out first at its own).
      lambdaTimeoutSeconds: Math.max(timeoutSeconds, ...[...classes.lambda.values()].map((c) => c.timeoutSeconds)),
      ecsTimeoutSeconds: (gpuProps.taskTimeout ?? Duration.seconds(DEFAULT_ECS_TIMEOUT_SECONDS)).toSeconds(),
      ...(props.maxConcurrency !== undefined ? { maxConcurrency: props.maxConcurrency } : {}),
      logRetention,
      removalPolicy,
    });

    // ---- input rule ----
    if (props.input) {
      const trigger = addInputTrigger(this, {
        stateMachine: this.stateMachine,
        bucket: props.input.bucket,
        prefix: inputPrefix,
        suffix: inputSuffix,
        enableEventBridge: props.input.enableEventBridge ?? true,
        outputBase: props.output ? `s3://${props.output.bucket.bucketName}/${outputPrefix}` : null,
      });
      this.rule = trigger.rule;
      this.deadLetterQueue = trigger.deadLetterQueue;
    }

    if (props.monitoring !== false) {
      this.monitoring = addMonitoring(this, {
        ...(props.monitoring ?? {}),
        pipelineName: metricsPipeline,
        stateMachine: this.stateMachine,
        functions: this.functions,
        ...(this.cluster ? { cluster: this.cluster } : {}),
        ...(this.deadLetterQueue ? { deadLetterQueue: this.deadLetterQueue } : {}),
      });
    }

    // cdk-nag IAM5 (wildcard) findings, each acknowledged with its reason: object ARNs under a
    // prefix are wildcards by nature, and a few AWS APIs accept only '*'.
    for (const g of grants.entries) acknowledgeObjectGrant(this, g.bucket, g.pattern);
    acknowledgeStateMachineWildcards(this, this.stateMachine, this.workBucket, this.cluster ?? this.fargateCluster);
    if (this.instanceRole && this.taskDefinition) acknowledgeGpuWildcards({ instanceRole: this.instanceRole, taskDefinition: this.taskDefinition });
    if (emulator) omitForEmulator(this);
  }

  /** Lets `grantee` start runs. */
  grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    return this.stateMachine.grantStartExecution(grantee);
  }

  /**
   * Lets the functions that read inputs (Plan, Stage) and the GPU tasks read `bucket` under
   * `prefix`: s3:GetObject, and s3:ListBucket limited to the prefix (see `readableInputs`).
   */
  grantReadInput(bucket: s3.IBucket, prefix = ''): void {
    const p = normalizePrefix(prefix, '');
    const readers: iam.IGrantable[] = [
      this.roles.plan,
      this.roles.stage,
      ...(this.taskDefinition ? [this.taskDefinition.taskRole] : []),
      ...(this.fargate ? [this.fargate.taskRole] : []),
    ];
    for (const r of readers) {
      grantObjectActions(r, bucket, `${p}*`, S3_READ);
      grantList(r, bucket, p);
      grantKey(r, bucket, 'read');
    }
    acknowledgeObjectGrant(this, bucket, `${p}*`);
  }
}

/** A prop that must be a positive integer when set (a token is left to deploy time). */
function requirePositiveInteger(prop: string, v: number | undefined): void {
  if (v !== undefined && !Token.isUnresolved(v) && !(Number.isInteger(v) && v >= 1))
    throw new Error(`FanoutPipeline: ${prop} must be a positive integer, got ${v}`);
}

function normalizePrefix(p: string | undefined, fallback: string): string {
  const v = (p ?? fallback).replace(/^\/+/, '');
  return v === '' || v.endsWith('/') ? v : `${v}/`;
}

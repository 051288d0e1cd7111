// FanoutPipeline: the AWS deployment of a fanout pipeline as one construct. It deploys the generic
// state machine of src/aws/state-machine.ts (Plan Lambda -> per stage a Map over partitions on the
// Stage Lambda, or over GPU worker slots on ECS -> Finalize Lambda; Failure Lambda on errors), the
// Lambda bundles (handler + the user's pipeline, built by the local esbuild), a GPU ECS cluster
// that scales to zero, a work bucket, and optionally an EventBridge rule that starts a run for
// each object uploaded under an input prefix.
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, Duration, RemovalPolicy, Stack, Token, Validations, type CfnElement } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import { buildStateMachineDefinition, DEFAULT_ECS_TIMEOUT_SECONDS, DEFAULT_LAMBDA_TIMEOUT_SECONDS } from '../src/aws/state-machine.ts';
import { DEFAULT_STAGE_OPTIONS } from '../src/aws/stages.ts';
import { listUdfs } from '../src/udf.ts';

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

/** What a UDF asks for (the fields of its options that size the infrastructure). */
export interface UdfResourceHint {
  readonly name: string;
  readonly numCpus?: number;
  readonly numGpus?: number;
  readonly memoryBytes?: number | null;
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
  /** The directory esbuild runs in and the GPU image's build context. @default the nearest directory above `entry` with a package-lock.json */
  readonly projectRoot?: string;
  /** esbuild's --conditions for the bundles (`development` resolves 'fanout' to its TypeScript sources). @default ['development'] */
  readonly conditions?: readonly string[];
}

export type FanoutFunctionRole = 'plan' | 'stage' | 'finalize' | 'failure';

const ROLES: readonly FanoutFunctionRole[] = ['plan', 'stage', 'finalize', 'failure'];
const ROLE_IDS: Record<FanoutFunctionRole, string> = { plan: 'Plan', stage: 'Stage', finalize: 'Finalize', failure: 'Failure' };
/** What each function's role allows, as its IAM description says (the grants follow what src/aws/run.ts does). */
const ROLE_POLICY_DOCS: Record<FanoutFunctionRole, string> = {
  plan: 'fanout Plan function: reads the inputs; reads and writes the run plans under runs/ of the work bucket',
  stage: 'fanout Stage function: reads the inputs; reads and writes shards under runs/ of the work bucket',
  finalize: 'fanout Finalize function: reads runs/ of the work bucket; writes run summaries, results kept in the work bucket, and the output',
  failure: 'fanout Failure function: reads runs/ of the work bucket; writes runs/<runId>/failure.json',
};
const ROLE_DOCS: Record<FanoutFunctionRole, string> = {
  plan: 'fanout: builds the run plan and the per-stage partition lists',
  stage: 'fanout: runs one partition of one CPU stage',
  finalize: 'fanout: checks every shard and commits the output (manifest last)',
  failure: 'fanout: records which partitions failed, and why',
};

export const GPU_CONTAINER_NAME = 'fanout-gpu';
/** Where the Lambda runtime unpacks the bundle; FANOUT_PIPELINE points at the bundle itself. */
export const LAMBDA_TASK_ROOT = '/var/task';
/** In the GPU image (cdk/gpu-task/Dockerfile): the bundled pipeline entry. */
export const GPU_IMAGE_PIPELINE = '/app/dist/pipeline.js';
/** Step Functions writes Distributed Map child results here (state-machine.ts ResultWriter). */
const MAP_RESULTS_PREFIX = 'fanout-sfn-map-results/';
/** Everything a run keeps in the work bucket (src/aws/run.ts `keys`): plans, shards, markers, summaries. */
const RUNS_PREFIX = 'runs/';
const MIB = 2 ** 20;
/** Lambda's memory ceiling (MiB). */
const LAMBDA_MAX_MEMORY_MIB = 10240;

// ---------------------------------------------------------------------------------------------
// Pure helpers (also used by the offline harness so the local rule matches the deployed one)

/** The EventBridge pattern of the input rule: S3 "Object Created" in `bucketName` under `prefix` (and ending with `suffix`). */
export function objectCreatedPattern(bucketName: string, prefix: string, suffix: string): { source: string[]; 'detail-type': string[]; detail: { bucket: { name: string[] }; object: { key: Record<string, string>[] } } } {
  const key: Record<string, string>[] = [];
  // A pattern value may hold one operator: prefix and suffix together need the wildcard form.
  if (prefix && suffix) key.push({ wildcard: `${escapeWildcard(prefix)}*${escapeWildcard(suffix)}` });
  else if (suffix) key.push({ suffix });
  else key.push({ prefix });
  return { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: [bucketName] }, object: { key } } };
}

function escapeWildcard(s: string): string {
  return s.replace(/[\\*]/g, (c) => `\\${c}`);
}

/** Stage Lambda memory (MiB) for the CPU UDFs, by the same rule the planner uses per stage (stages.ts). */
export function stageMemoryFor(udfs: readonly UdfResourceHint[], floorMiB: number): number {
  const cpu = udfs.filter((u) => (u.numGpus ?? 0) === 0);
  const memBytes = Math.max(0, ...cpu.map((u) => u.memoryBytes ?? 0));
  const cpus = Math.max(1, ...cpu.map((u) => u.numCpus ?? 1));
  return Math.min(LAMBDA_MAX_MEMORY_MIB, Math.max(floorMiB, Math.ceil(memBytes / MIB), Math.ceil(cpus * 1769)));
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
  return listUdfs().map((d) => ({ name: d.name, numCpus: d.options.numCpus, numGpus: d.options.numGpus, memoryBytes: d.options.memoryBytes }));
}

function normalizePrefix(p: string | undefined, fallback: string): string {
  const v = (p ?? fallback).replace(/^\/+/, '');
  return v === '' || v.endsWith('/') ? v : `${v}/`;
}

function findProjectRoot(from: string): string {
  for (let d = dirname(from); ; d = dirname(d)) {
    if (existsSync(join(d, 'package-lock.json'))) return d;
    if (dirname(d) === d) throw new Error(`FanoutPipeline: no package-lock.json above ${from}; pass projectRoot`);
  }
}

/** lambdas/<role>.ts next to this file (sources), or .js (compiled package). */
function handlerModule(role: FanoutFunctionRole | 'ecs-task'): string {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  return resolve(dirname(here), '..', 'lambdas', `${role}${ext}`);
}

function importSpecifier(fromDir: string, file: string): string {
  const rel = relative(fromDir, file).split(sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

/**
 * Each function's esbuild entry: its handler and the pipeline's default export in ONE module graph,
 * so the UDFs the pipeline registers are those the handler's engine looks up (FANOUT_PIPELINE points
 * at the bundle itself). Written under node_modules/.cache at a path that depends only on the entry,
 * so the bundle — and its asset hash — is the same on every synth.
 */
function writeEntryWrappers(projectRoot: string, entry: string): Record<FanoutFunctionRole, string> {
  const key = createHash('sha256').update(relative(projectRoot, entry)).digest('hex').slice(0, 12);
  const dir = join(projectRoot, 'node_modules', '.cache', 'fanout-cdk', key);
  mkdirSync(dir, { recursive: true });
  const out = {} as Record<FanoutFunctionRole, string>;
  for (const role of ROLES) {
    const file = join(dir, `${role}.mjs`);
    const text = [
      `// Generated by FanoutPipeline (cdk/fanout-pipeline.ts): the ${role} handler and the pipeline in one bundle.`,
      `export { handler } from ${JSON.stringify(importSpecifier(dir, handlerModule(role)))};`,
      `export { default } from ${JSON.stringify(importSpecifier(dir, entry))};`,
      '',
    ].join('\n');
    if (!existsSync(file) || readFileSync(file, 'utf8') !== text) writeFileSync(file, text);
    out[role] = file;
  }
  return out;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Bare `require` and __dirname for bundled CommonJS code in an ES module bundle. */
const ESM_BANNER = "import { createRequire as __fanoutCreateRequire } from 'node:module'; import { fileURLToPath as __fanoutFileURLToPath } from 'node:url'; import { dirname as __fanoutDirname } from 'node:path'; const require = __fanoutCreateRequire(import.meta.url); const __filename = __fanoutFileURLToPath(import.meta.url); const __dirname = __fanoutDirname(__filename);";

/** A package's directory (its package.json may be hidden by "exports"). */
function packageDir(from: string, name: string): string {
  const req = createRequire(join(from, 'package.json'));
  let d: string;
  try {
    d = dirname(req.resolve(`${name}/package.json`));
  } catch {
    d = dirname(req.resolve(name));
    while (!(existsSync(join(d, 'package.json')) && (JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { name?: string }).name === name)) {
      if (dirname(d) === d) throw new Error(`FanoutPipeline: cannot find the package directory of ${name}`);
      d = dirname(d);
    }
  }
  return d;
}

/** `name` and its dependencies, recursively: [name, directory] pairs. */
function packageClosure(from: string, name: string, out = new Map<string, string>()): Map<string, string> {
  if (out.has(name)) return out;
  const dir = packageDir(from, name);
  out.set(name, dir);
  const deps = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {};
  for (const dep of Object.keys(deps)) packageClosure(dir, dep, out);
  return out;
}

/**
 * The engine loads, at run time and by path, what esbuild cannot inline: parquet-wasm's Node glue
 * and .wasm (evaluated with its own queueMicrotask for trap isolation), synckit (required lazily
 * for the synchronous S3 listings made while a DataFrame is built; its workers preload its
 * register.cjs by path) and synckit's worker, s3-sync-worker.js next to the bundle. They are
 * copied as installed, or bundled with the local esbuild, into the asset: no npm install, no Docker.
 */
function afterBundlingCommands(projectRoot: string, outputDir: string, conditions: readonly string[]): string[] {
  const req = createRequire(join(projectRoot, 'package.json'));
  const esbuild = req.resolve('esbuild/bin/esbuild');
  const pw = packageDir(projectRoot, 'parquet-wasm');
  const here = fileURLToPath(import.meta.url);
  const worker = resolve(dirname(here), '..', 'src', 'io', 's3', `s3-sync-worker${here.endsWith('.ts') ? '.ts' : '.js'}`);
  const q = shellQuote;
  const out = (p: string) => q(join(outputDir, p));
  // bin/esbuild is the native binary once installed (a JS shim with a shebang otherwise): run it directly.
  const esb = q(esbuild);
  const cond = conditions.length ? ` --conditions=${conditions.join(',')}` : '';
  const copies: string[] = [];
  for (const [name, dir] of packageClosure(projectRoot, 'synckit')) {
    copies.push(`mkdir -p ${out(dirname(join('node_modules', name)))} && cp -R ${q(dir)} ${out(join('node_modules', name))}`);
  }
  return [
    `mkdir -p ${out('node_modules/parquet-wasm/node')}`,
    `cp ${q(join(pw, 'package.json'))} ${out('node_modules/parquet-wasm/package.json')}`,
    `cp ${q(join(pw, 'node', 'package.json'))} ${q(join(pw, 'node', 'parquet_wasm.js'))} ${q(join(pw, 'node', 'parquet_wasm_bg.wasm'))} ${out('node_modules/parquet-wasm/node/')}`,
    ...copies,
    `${esb} ${q(worker)} --bundle --platform=node --format=esm --target=node22 --keep-names --log-level=warning${cond} --external:synckit --external:parquet-wasm --external:onnxruntime-node --banner:js=${q(ESM_BANNER)} --outfile=${out('s3-sync-worker.js')}`,
    // The worker is a .js file: the asset's package.json makes the asset's .js files ES modules.
    `printf '%s' '{"type":"module"}' > ${out('package.json')}`,
  ];
}

/**
 * The GPU task image, from cdk/gpu-task/Dockerfile with the project as build context. Synth only
 * stages the context into the cloud assembly (no Docker needed); `cdk deploy` builds and pushes it.
 */
function gpuImageAsset(projectRoot: string, entry: string, conditions: readonly string[], extraArgs: Record<string, string>): ecs.ContainerImage {
  const posix = (p: string) => p.split(sep).join('/');
  const fanoutRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const fanoutDir = posix(relative(projectRoot, fanoutRoot)) || '.';
  const dockerfile = posix(relative(projectRoot, join(fanoutRoot, 'cdk', 'gpu-task', 'Dockerfile')));
  const dockerfileDir = posix(relative(projectRoot, join(fanoutRoot, 'cdk', 'gpu-task')));
  return ecs.ContainerImage.fromAsset(projectRoot, {
    file: dockerfile,
    buildArgs: { PIPELINE_ENTRY: posix(relative(projectRoot, entry)), FANOUT_DIR: fanoutDir, ESBUILD_CONDITIONS: conditions.join(','), ...extraArgs },
    platform: Platform.LINUX_AMD64,
    // What the image never needs stays out of the context (and of the image's hash). The build
    // installs dependencies itself; only the Dockerfile is taken from an installed fanout package.
    exclude: [
      '**/node_modules', 'cdk.out', '**/cdk.out', '.git', '.ci', 'dist', '.tmp', 'bench', 'test', 'docs', 'localstack', '**/*.md', 'examples/data',
      ...(fanoutDir === '.' ? ['cdk'] : []), `!${dockerfileDir}`,
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// The construct

export class FanoutPipeline extends Construct {
  readonly workBucket: s3.Bucket;
  readonly stateMachine: sfn.StateMachine;
  readonly functions: Readonly<Record<FanoutFunctionRole, nodejs.NodejsFunction>>;
  /** One role per Lambda function, each with only what that function does (see ROLE_POLICY_DOCS). */
  readonly roles: Readonly<Record<FanoutFunctionRole, iam.Role>>;
  readonly cluster?: ecs.Cluster;
  readonly taskDefinition?: ecs.Ec2TaskDefinition;
  /** Its auto scaling group sees the instance role as immutable (CDK's own grants are replaced): add instance permissions to `instanceRole`. */
  readonly capacityProvider?: ecs.AsgCapacityProvider;
  /** The GPU container instances' role (ECS agent only; the tasks have their own role). */
  readonly instanceRole?: iam.Role;
  /** The GPU instances' security group: no inbound, outbound TCP 443 only. A UDF that needs more (a model server, a database) gets an egress rule added here. */
  readonly instanceSecurityGroup?: ec2.SecurityGroup;
  readonly vpc?: ec2.IVpc;
  readonly rule?: events.Rule;
  /** Failed StartExecution deliveries of the input rule. */
  readonly deadLetterQueue?: sqs.Queue;
  /** The derived sizes (for docs and tests). */
  readonly sizing: { planMemoryMiB: number; stageMemoryMiB: number; timeoutSeconds: number; gpu?: { gpus: number; memoryReservationMiB: number; cpu: number; instanceType: string } };

  constructor(scope: Construct, id: string, props: FanoutPipelineProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const entry = isAbsolute(props.entry) ? props.entry : resolve(props.entry);
    if (!existsSync(entry)) throw new Error(`FanoutPipeline: entry ${entry} does not exist`);
    const projectRoot = props.projectRoot ? resolve(props.projectRoot) : findProjectRoot(entry);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const conditions = props.conditions ?? ['development'];
    const hints = props.udfs ?? (listUdfs().length > 0 ? registeredUdfHints() : undefined);

    // ---- sizes ----
    const timeoutSeconds = (props.lambda?.timeout ?? Duration.seconds(DEFAULT_LAMBDA_TIMEOUT_SECONDS)).toSeconds();
    if (!(timeoutSeconds >= 1 && timeoutSeconds <= 900)) throw new Error(`FanoutPipeline: lambda.timeout must be 1 s..15 min, got ${timeoutSeconds} s`);
    const planMemoryMiB = props.lambda?.memoryMiB ?? DEFAULT_STAGE_OPTIONS.lambdaMemoryMiB;
    const stageMemoryMiB = props.lambda?.stageMemoryMiB ?? stageMemoryFor(hints ?? [], planMemoryMiB);
    for (const [k, v] of [['memoryMiB', planMemoryMiB], ['stageMemoryMiB', stageMemoryMiB]] as const) {
      if (!(Number.isInteger(v) && v >= 128 && v <= LAMBDA_MAX_MEMORY_MIB)) throw new Error(`FanoutPipeline: lambda.${k} must be an integer 128..${LAMBDA_MAX_MEMORY_MIB}, got ${v}`);
    }
    const stageReserved = props.lambda?.stageReservedConcurrency;
    if (stageReserved !== undefined && !Token.isUnresolved(stageReserved) && !(Number.isInteger(stageReserved) && stageReserved >= 1)) {
      throw new Error(`FanoutPipeline: lambda.stageReservedConcurrency must be a positive integer, got ${stageReserved}`);
    }
    const gpuWanted = props.gpu === false ? false : props.gpu !== undefined || hints === undefined || hints.some((u) => (u.numGpus ?? 0) > 0);
    const gpuProps: FanoutGpuProps = props.gpu || {};

    const inputPrefix = normalizePrefix(props.input?.prefix, '');
    const inputSuffix = props.input?.suffix ?? '.parquet';
    const outputPrefix = normalizePrefix(props.output?.prefix, 'output/');
    if (props.input && props.output && props.input.bucket === props.output.bucket && (outputPrefix.startsWith(inputPrefix) || inputPrefix.startsWith(outputPrefix))) {
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
      reason: 'Scratch data of runs, written and read only by this pipeline\'s roles and expired by a lifecycle rule; CloudTrail data events can audit it where required.',
    });

    // ---- Lambda functions: one role each ----
    // What each handler does in S3 (src/aws/handlers.ts -> run.ts), and so all its role may do:
    //   Plan      reads the inputs (scan planning), reads/writes runs/<id>/plan.json and stage items;
    //   Stage     reads the inputs (stage 0) and earlier shards, writes shards/results/markers (and
    //             deletes a result file whose footer is short), all under runs/;
    //   Finalize  reads runs/, writes runs/<id>/summary.json, commits the output (copies, manifest,
    //             deletes what an overwrite replaces) or, without an output, runs/<id>/output/;
    //   Failure   reads runs/ (plan, markers), writes runs/<id>/failure.json.
    // None of them starts GPU tasks or passes roles: the state machine's role does.
    const roles = {} as Record<FanoutFunctionRole, iam.Role>;
    for (const role of ROLES) {
      roles[role] = new iam.Role(this, `${ROLE_IDS[role]}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: ROLE_POLICY_DOCS[role],
      });
    }
    this.roles = roles;
    const grants: { bucket: s3.IBucket; pattern: string }[] = [];
    const grant = (grantee: iam.IGrantable, bucket: s3.IBucket, pattern: string, actions: readonly string[]): void => {
      grantObjectActions(grantee, bucket, pattern, actions);
      if (!grants.some((g) => g.bucket === bucket && g.pattern === pattern)) grants.push({ bucket, pattern });
    };
    const work = this.workBucket;
    const runsObjects = `${RUNS_PREFIX}*`;
    for (const role of ROLES) grantList(roles[role], work, RUNS_PREFIX);
    grant(roles.plan, work, runsObjects, [...S3_READ, 's3:PutObject']);
    grant(roles.stage, work, runsObjects, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
    grant(roles.finalize, work, runsObjects, S3_READ);
    grant(roles.finalize, work, `${RUNS_PREFIX}*/summary.json`, ['s3:PutObject']);
    // A run without an output commits into the work bucket (keys.output): parts, manifest, temp files.
    grant(roles.finalize, work, `${RUNS_PREFIX}*/output/*`, [...S3_WRITE, ...S3_DELETE]);
    grant(roles.failure, work, runsObjects, S3_READ);
    grant(roles.failure, work, `${RUNS_PREFIX}*/failure.json`, ['s3:PutObject']);
    if (props.output) {
      grant(roles.finalize, props.output.bucket, `${outputPrefix}*`, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
      grantList(roles.finalize, props.output.bucket, outputPrefix);
      grantKey(roles.finalize, props.output.bucket, 'readwrite');
    }

    const wrappers = writeEntryWrappers(projectRoot, entry);
    const fns = {} as Record<FanoutFunctionRole, nodejs.NodejsFunction>;
    for (const role of ROLES) {
      const logGroup = new logs.LogGroup(this, `${ROLE_IDS[role]}Logs`, { retention: logRetention, removalPolicy });
      const fn = new nodejs.NodejsFunction(this, `${ROLE_IDS[role]}Function`, {
        description: ROLE_DOCS[role],
        entry: wrappers[role],
        handler: 'handler',
        projectRoot,
        depsLockFilePath: join(projectRoot, 'package-lock.json'),
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: props.lambda?.architecture ?? lambda.Architecture.X86_64,
        memorySize: role === 'stage' ? stageMemoryMiB : planMemoryMiB,
        timeout: Duration.seconds(timeoutSeconds),
        role: roles[role],
        logGroup,
        ...(role === 'stage' && stageReserved !== undefined ? { reservedConcurrentExecutions: stageReserved } : {}),
        environment: {
          FANOUT_WORK_BUCKET: this.workBucket.bucketName,
          FANOUT_PIPELINE: `${LAMBDA_TASK_ROOT}/index.mjs`,
          FANOUT_PROGRESS: '0',
          // The one place runs of this deployment may commit to; the handlers refuse other outputs.
          // The handlers refuse outputs outside this prefix; empty (no output prop) refuses every output.
          FANOUT_OUTPUT_PREFIX: props.output ? `s3://${props.output.bucket.bucketName}/${outputPrefix}` : '',
        },
        bundling: {
          format: nodejs.OutputFormat.ESM,
          target: 'node22',
          minify: false,
          // UDF names default to function/class names: keep them as written.
          keepNames: true,
          sourceMap: false,
          banner: ESM_BANNER,
          // onnxruntime-node is native (GPU tasks only); the other two are copied in by afterBundling.
          externalModules: ['onnxruntime-node', 'parquet-wasm', 'synckit'],
          esbuildArgs: conditions.length ? { '--conditions': conditions.join(',') } : {},
          forceDockerBundling: false,
          logLevel: nodejs.LogLevel.WARNING,
          commandHooks: {
            beforeBundling: () => [],
            beforeInstall: () => [],
            afterBundling: (_inputDir: string, outputDir: string) => afterBundlingCommands(projectRoot, outputDir, conditions),
          },
        },
      });
      logGroup.grantWrite(roles[role]);
      Validations.of(fn).acknowledge({
        id: 'AwsSolutions-L1',
        reason: 'nodejs22.x is the runtime fanout is built and tested for (Node 20+ engine); nodejs24.x is adopted once validated.',
      });
      fns[role] = fn;
    }
    this.functions = fns;

    // ---- ECS GPU capacity ----
    let ecsResources: Parameters<typeof buildStateMachineDefinition>[0]['ecs'];
    let gpuSizing: FanoutPipeline['sizing']['gpu'];
    if (gpuWanted) {
      const instanceType = typeof gpuProps.instanceType === 'string' || gpuProps.instanceType === undefined
        ? new ec2.InstanceType(gpuProps.instanceType ?? 'g5.xlarge') : gpuProps.instanceType;
      const family = instanceType.toString().split('.')[0] ?? '';
      if (!/^(g|gr|p)\d/.test(family) || instanceType.architecture !== ec2.InstanceArchitecture.X86_64) {
        throw new Error(`FanoutPipeline: gpu.instanceType ${instanceType.toString()} is not an x86_64 NVIDIA GPU type (g4dn, g5, g6, g6e, p4d, p5…), which the ECS GPU-optimized AMI needs`);
      }
      const minCapacity = gpuProps.minCapacity ?? 0;
      const maxCapacity = gpuProps.maxCapacity ?? 2;
      if (!(Number.isInteger(minCapacity) && minCapacity >= 0 && Number.isInteger(maxCapacity) && maxCapacity >= Math.max(1, minCapacity))) {
        throw new Error(`FanoutPipeline: gpu capacity needs integers 0 <= minCapacity <= maxCapacity, maxCapacity >= 1 (got ${minCapacity}..${maxCapacity})`);
      }
      const derived = gpuTaskSizeFor(hints ?? []);
      const size = {
        gpus: gpuProps.gpusPerTask ?? derived.gpus,
        memoryReservationMiB: gpuProps.memoryReservationMiB ?? derived.memoryReservationMiB,
        cpu: gpuProps.cpu ?? derived.cpu,
      };
      gpuSizing = { ...size, instanceType: instanceType.toString() };

      const vpc = props.vpc ?? this.defaultVpc(logRetention, removalPolicy);
      this.vpc = vpc;
      const cluster = new ecs.Cluster(this, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
      // What the instances and their bridge-mode tasks reach is all HTTPS: the ECS agent's endpoints,
      // ECR (API, registry, layers in S3), CloudWatch Logs and S3 (through the gateway endpoint in
      // the default VPC: its prefix list lies within 0.0.0.0/0) — public AWS endpoints without NAT or
      // interface endpoints, hence any IPv4 on 443 only. DNS (the VPC resolver), NTP (Amazon Time
      // Sync) and instance metadata are not subject to security groups.
      const instanceSg = new ec2.SecurityGroup(this, 'GpuInstanceSecurityGroup', {
        vpc,
        description: 'fanout GPU instances: no inbound; outbound HTTPS (TCP 443) only, to ECS, ECR, CloudWatch Logs and S3',
        allowAllOutbound: false,
      });
      instanceSg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS endpoints (ECS agent, ECR, CloudWatch Logs, S3)');
      const taskLogs = new logs.LogGroup(this, 'GpuTaskLogs', { retention: logRetention, removalPolicy });
      const instanceRole = new iam.Role(this, 'GpuInstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'), description: 'fanout GPU container instances (ECS agent)' });
      // The ECS agent's permissions as cluster.addAsgCapacityProvider grants them, except that logs
      // go to the task log group only (CDK grants logs:CreateLogStream/PutLogEvents on '*'). The launch template gets an
      // immutable view of the role so CDK's own grant is dropped; these statements replace it.
      instanceRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'EcsAgentContainerInstance',
        actions: ['ecs:DeregisterContainerInstance', 'ecs:RegisterContainerInstance', 'ecs:SubmitAttachmentStateChanges', 'ecs:SubmitContainerStateChange', 'ecs:SubmitTaskStateChange'],
        resources: [cluster.clusterArn],
      }));
      instanceRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'EcsAgentPoll',
        actions: ['ecs:Poll', 'ecs:StartTelemetrySession'],
        resources: ['*'],
        conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
      }));
      instanceRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'EcsAgentDiscoveryAndRegistryToken',
        actions: ['ecs:DiscoverPollEndpoint', 'ecr:GetAuthorizationToken'],
        resources: ['*'],
      }));
      // The awslogs driver uses the task execution role (granted by CDK); an agent configured to use
      // the instance's credentials instead still reaches only this group.
      instanceRole.addToPrincipalPolicy(new iam.PolicyStatement({
        sid: 'GpuTaskLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [taskLogs.logGroupArn],
      }));
      const launchTemplate = new ec2.LaunchTemplate(this, 'GpuLaunchTemplate', {
        instanceType,
        machineImage: gpuProps.machineImage ?? ecs.EcsOptimizedImage.amazonLinux2(ecs.AmiHardwareType.GPU),
        userData: ec2.UserData.forLinux(),
        role: instanceRole.withoutPolicyUpdates(),
        securityGroup: instanceSg,
        // IMDSv2 with one hop: containers (one hop further) cannot take the instance's credentials.
        requireImdsv2: true,
        httpPutResponseHopLimit: 1,
        blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(gpuProps.rootVolumeGiB ?? 100, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) }],
      });
      const asg = new autoscaling.AutoScalingGroup(this, 'GpuAutoScalingGroup', {
        vpc,
        vpcSubnets: props.vpc ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } : { subnetType: ec2.SubnetType.PUBLIC },
        launchTemplate,
        minCapacity,
        maxCapacity,
      });
      Validations.of(asg).acknowledge({
        id: 'AwsSolutions-AS3',
        reason: 'ECS managed scaling drives this group; scaling activity is visible in the ECS capacity provider and CloudTrail, no SNS consumer exists.',
      });
      const capacityProvider = new ecs.AsgCapacityProvider(this, 'GpuCapacityProvider', {
        autoScalingGroup: asg,
        enableManagedScaling: true,
        enableManagedTerminationProtection: true,
        targetCapacityPercent: 100,
        machineImageType: ecs.MachineImageType.AMAZON_LINUX_2,
      });
      cluster.addAsgCapacityProvider(capacityProvider);

      const taskDefinition = new ecs.Ec2TaskDefinition(this, 'GpuTaskDefinition', {
        // Bridge: the task uses the instance's network (public subnet, or the given VPC's egress);
        // awsvpc would need NAT or interface endpoints and spends the GPU instances' few ENIs.
        networkMode: ecs.NetworkMode.BRIDGE,
      });
      const image = gpuProps.image ?? gpuImageAsset(projectRoot, entry, conditions, gpuProps.imageBuildArgs ?? {});
      taskDefinition.addContainer(GPU_CONTAINER_NAME, {
        containerName: GPU_CONTAINER_NAME,
        image,
        gpuCount: size.gpus,
        memoryReservationMiB: size.memoryReservationMiB,
        cpu: size.cpu,
        essential: true,
        logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'gpu', logGroup: taskLogs }),
        environment: {
          FANOUT_WORK_BUCKET: this.workBucket.bucketName,
          FANOUT_PIPELINE: GPU_IMAGE_PIPELINE,
          FANOUT_PROGRESS: '0',
          // The ECS agent does not set it for EC2 tasks; without it S3 calls go to us-east-1 first.
          AWS_REGION: Stack.of(this).region,
        },
      });
      Validations.of(taskDefinition).acknowledge({
        id: 'AwsSolutions-ECS2',
        reason: 'The environment holds a bucket name and a module path, no secrets; run-specific values come as RunTask overrides.',
      });
      // A GPU task is the Stage function on ECS: shards under runs/ (its inputs: grantReadInput below).
      grant(taskDefinition.taskRole, work, runsObjects, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
      grantList(taskDefinition.taskRole, work, RUNS_PREFIX);

      this.cluster = cluster;
      this.taskDefinition = taskDefinition;
      this.capacityProvider = capacityProvider;
      this.instanceRole = instanceRole;
      this.instanceSecurityGroup = instanceSg;
      ecsResources = {
        clusterArn: cluster.clusterArn,
        taskDefinitionArn: taskDefinition.taskDefinitionArn,
        containerName: GPU_CONTAINER_NAME,
        subnets: [],
        securityGroups: [],
        capacityProvider: capacityProvider.capacityProviderName,
      };
    }
    this.sizing = { planMemoryMiB, stageMemoryMiB, timeoutSeconds, ...(gpuSizing ? { gpu: gpuSizing } : {}) };
    // Inputs: read by Plan (planning the scan), Stage and the GPU tasks (a GPU stage can be stage 0).
    if (props.input) this.grantReadInput(props.input.bucket, inputPrefix);
    for (const r of props.readableInputs ?? []) this.grantReadInput(r.bucket, r.prefix ?? '');

    // ---- state machine ----
    const definition = buildStateMachineDefinition({
      planFunctionArn: fns.plan.functionArn,
      stageFunctionArn: fns.stage.functionArn,
      finalizeFunctionArn: fns.finalize.functionArn,
      failureFunctionArn: fns.failure.functionArn,
      ...(ecsResources ? { ecs: ecsResources } : {}),
      distributed: props.distributed ?? true,
      lambdaTimeoutSeconds: timeoutSeconds,
      ecsTimeoutSeconds: (gpuProps.taskTimeout ?? Duration.seconds(DEFAULT_ECS_TIMEOUT_SECONDS)).toSeconds(),
      ...(props.maxConcurrency !== undefined ? { maxConcurrency: props.maxConcurrency } : {}),
    });
    const sfnLogs = new logs.LogGroup(this, 'StateMachineLogs', { retention: logRetention, removalPolicy });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromString(stack.toJsonString(definition)),
      stateMachineType: sfn.StateMachineType.STANDARD,
      logs: { destination: sfnLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
      tracingEnabled: true,
    });
    const smRole = this.stateMachine.role;
    this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
      sid: 'InvokeFanoutFunctions',
      actions: ['lambda:InvokeFunction'],
      resources: ROLES.map((r) => fns[r].functionArn),
    }));
    if (this.cluster && this.taskDefinition) {
      const cluster = this.cluster;
      const td = this.taskDefinition;
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
        sid: 'RunGpuTasks',
        actions: ['ecs:RunTask'],
        resources: [td.taskDefinitionArn],
        conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
      }));
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
        sid: 'WatchGpuTasks',
        actions: ['ecs:DescribeTasks', 'ecs:StopTask'],
        resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${cluster.clusterName}/*` })],
      }));
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
        sid: 'PassGpuTaskRoles',
        actions: ['iam:PassRole'],
        resources: [td.taskRole.roleArn, td.obtainExecutionRole().roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }));
      // ecs:runTask.sync learns that a task stopped from this managed rule.
      this.stateMachine.addToRolePolicy(new iam.PolicyStatement({
        sid: 'EcsSyncEvents',
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForECSTaskRule' })],
      }));
    }
    // Distributed Map: the machine starts child executions of itself and reads/writes S3 for them.
    // A separate policy, so the state machine does not depend on a statement naming its own ARN.
    const smArn = this.stateMachine.stateMachineArn;
    const smName = this.stateMachine.stateMachineName;
    const mapPolicy = new iam.Policy(this, 'DistributedMapPolicy', {
      statements: [
        new iam.PolicyStatement({ sid: 'StartChildExecutions', actions: ['states:StartExecution'], resources: [smArn] }),
        new iam.PolicyStatement({
          sid: 'ManageChildExecutions',
          actions: ['states:DescribeExecution', 'states:StopExecution', 'states:RedriveExecution'],
          // Map Run children are named execution:<machine>/<label>:<id>.
          resources: [stack.formatArn({ service: 'states', resource: 'execution', resourceName: `${smName}/*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
        }),
        new iam.PolicyStatement({ sid: 'ReadPartitionLists', actions: ['s3:GetObject'], resources: [this.workBucket.arnForObjects('runs/*')] }),
        new iam.PolicyStatement({
          sid: 'WriteMapResults',
          actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
          resources: [this.workBucket.arnForObjects(`${MAP_RESULTS_PREFIX}*`)],
        }),
      ],
    });
    smRole.attachInlinePolicy(mapPolicy);

    // ---- input rule ----
    if (props.input) {
      const bucket = props.input.bucket;
      if (props.input.enableEventBridge ?? true) enableEventBridge(bucket);
      this.deadLetterQueue = new sqs.Queue(this, 'RuleDeadLetterQueue', {
        enforceSSL: true,
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        retentionPeriod: Duration.days(14),
      });
      Validations.of(this.deadLetterQueue).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason: 'This queue is itself the dead-letter queue of the input rule (uploads whose StartExecution failed).',
      });
      const outputUri = props.output ? `s3://${props.output.bucket.bucketName}/${outputPrefix}${events.EventField.eventId}/` : null;
      this.rule = new events.Rule(this, 'InputRule', {
        description: `fanout: start a run for each object created under s3://<input>/${inputPrefix}${inputSuffix ? `*${inputSuffix}` : ''}`,
        eventPattern: objectCreatedPattern(bucket.bucketName, inputPrefix, inputSuffix),
        targets: [new targets.SfnStateMachine(this.stateMachine, {
          // The Plan handler's RunEvent. The event id is the run id: a redelivered event reuses the
          // plan already written for it instead of starting a second, different run.
          input: events.RuleTargetInput.fromObject({
            // literal: the uploaded key is read as one object, never expanded as a glob (issue 8).
            input: { uri: `s3://${events.EventField.fromPath('$.detail.bucket.name')}/${events.EventField.fromPath('$.detail.object.key')}`, literal: true },
            output: outputUri,
            runId: events.EventField.eventId,
          }),
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: 8,
          maxEventAge: Duration.hours(6),
        })],
      });
    }

    this.acknowledgeWildcards(grants);
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
    const readers: iam.IGrantable[] = [this.roles.plan, this.roles.stage, ...(this.taskDefinition ? [this.taskDefinition.taskRole] : [])];
    for (const r of readers) {
      grantObjectActions(r, bucket, `${p}*`, S3_READ);
      grantList(r, bucket, p);
      grantKey(r, bucket, 'read');
    }
    this.acknowledgeObjectGrant(bucket, `${p}*`);
  }

  private acknowledgeObjectGrant(bucket: s3.IBucket, pattern: string): void {
    const finding = `Resource::${nagText(Stack.of(this).resolve(bucket.arnForObjects(pattern)))}`;
    Validations.of(this).acknowledge({
      id: `AwsSolutions-IAM5[${finding}]`,
      reason: pattern.includes('*/')
        ? `Objects '${pattern}' of a bucket this pipeline writes: one key of this name per run, run ids are generated.`
        : `Objects under ${pattern === '*' ? '' : `the prefix '${pattern.slice(0, -1)}' of `}a bucket this pipeline reads or writes; keys are per run or per upload.`,
    });
  }

  private defaultVpc(logRetention: logs.RetentionDays, removalPolicy: RemovalPolicy): ec2.Vpc {
    const flowLogs = new logs.LogGroup(this, 'VpcFlowLogs', { retention: logRetention, removalPolicy });
    return new ec2.Vpc(this, 'Vpc', {
      // Env-agnostic: two AZs via Fn::GetAZs, no lookup at synth.
      maxAzs: 2,
      // No NAT gateway (a fixed hourly cost while idle): instances sit in public subnets with no
      // inbound rule and reach S3 through the free gateway endpoint.
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20, mapPublicIpOnLaunch: true }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.REJECT } },
      // true would add a custom-resource Lambda; the default group is attached to nothing here.
      restrictDefaultSecurityGroup: false,
    });
  }

  /**
   * cdk-nag IAM5 (wildcard) findings, each acknowledged where it arises and with its reason: object
   * ARNs under a prefix are wildcards by nature, and a few AWS APIs accept only '*'.
   */
  private acknowledgeWildcards(grants: readonly { bucket: s3.IBucket; pattern: string }[]): void {
    const stack = Stack.of(this);
    const ack = (scope: IConstruct, finding: string, reason: string): void => {
      Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
    };
    const render = (v: unknown): string => nagText(stack.resolve(v));
    for (const g of grants) this.acknowledgeObjectGrant(g.bucket, g.pattern);
    const mapPolicy = this.node.findChild('DistributedMapPolicy');
    ack(mapPolicy, `Resource::${render(this.workBucket.arnForObjects('runs/*'))}`, 'The Distributed Map reads the partition lists the Plan step writes under runs/<runId>/.');
    ack(mapPolicy, `Resource::${render(this.workBucket.arnForObjects(`${MAP_RESULTS_PREFIX}*`))}`, 'Step Functions writes Distributed Map results under this prefix with generated keys.');
    ack(mapPolicy, `Resource::${render(stack.formatArn({ service: 'states', resource: 'execution', resourceName: `${this.stateMachine.stateMachineName}/*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }))}`,
      'Distributed Map child executions have generated names, all under this machine\'s own map runs.');
    ack(this.stateMachine, 'Resource::*', 'Step Functions log delivery (logs:*LogDelivery*) and X-Ray tracing APIs accept only "*".');
    if (this.cluster && this.taskDefinition) {
      ack(this.stateMachine, `Resource::${render(stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` }))}`,
        'GPU tasks get generated ids; DescribeTasks/StopTask are limited to tasks of this cluster.');
      const agent = this.node.findChild('GpuInstanceRole');
      ack(agent, 'Resource::*', 'ECS agent calls DiscoverPollEndpoint and ecr:GetAuthorizationToken accept only "*"; Poll/StartTelemetrySession are limited to this cluster by the ecs:cluster condition.');
      ack(this.taskDefinition, 'Resource::*', 'Pulling the task image needs ecr:GetAuthorizationToken, which accepts only "*".');
    }
  }
}

/** A resolved CloudFormation value as cdk-nag prints it in finding ids: Ref as <Id>, GetAtt as <Id.Attr>, joins flattened. */
function nagText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(nagText).join(',');
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o['Ref'] === 'string') return `<${o['Ref']}>`;
    const att = o['Fn::GetAtt'];
    if (Array.isArray(att)) return `<${att.join('.')}>`;
    const join = o['Fn::Join'];
    if (Array.isArray(join) && typeof join[0] === 'string' && Array.isArray(join[1])) return join[1].map(nagText).join(join[0]);
  }
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------------------------
// IAM helpers

const S3_READ = ['s3:GetObject'] as const;
/** PutObject and the multipart calls of streamed uploads (and of copies over 5 GB). */
const S3_WRITE = ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'] as const;
const S3_DELETE = ['s3:DeleteObject'] as const;

/** Object-level S3 actions (explicit, no s3:* style wildcards) on the keys matching `pattern`: a prefix and '*', or a key name under every run. */
function grantObjectActions(grantee: iam.IGrantable, bucket: s3.IBucket, pattern: string, actions: readonly string[]): void {
  grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: [...actions], resources: [bucket.arnForObjects(pattern)] }));
}

/** s3:ListBucket, limited to keys under `prefix` ('' for the whole bucket): listing a prefix also turns a missing key's 403 into a 404. */
function grantList(grantee: iam.IGrantable, bucket: s3.IBucket, prefix: string): void {
  grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({
    actions: ['s3:ListBucket'],
    resources: [bucket.bucketArn],
    ...(prefix ? { conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } } : {}),
  }));
}

/** The bucket's KMS key, when it has one. */
function grantKey(grantee: iam.IGrantable, bucket: s3.IBucket, mode: 'read' | 'readwrite'): void {
  if (!bucket.encryptionKey) return;
  if (mode === 'read') bucket.encryptionKey.grantDecrypt(grantee);
  else bucket.encryptionKey.grantEncryptDecrypt(grantee);
}

function enableEventBridge(bucket: s3.IBucket): void {
  const cfn = bucket.node.defaultChild;
  // A bucket of this app without L2 notifications: the CloudFormation property, no custom resource.
  if (cfn instanceof s3.CfnBucket && !bucket.node.tryFindChild('Notifications')) {
    cfn.addPropertyOverride('NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled', true);
  } else {
    bucket.enableEventBridgeNotification();
  }
}

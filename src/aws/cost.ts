// explain()'s money estimate for a serverless run: each billed item's quantity (from the plan's
// partitions, bytes and stages and the state machine's shape) times its price from a dated,
// per-region table (prices.ts). An estimate: durations come from a throughput assumption, shards
// are assumed as large as their uncompressed input, and a run without retries is counted.
import { DEFAULT_LAMBDA_MEMORY_MIB, LAMBDA_MIB_PER_VCPU } from './sizing.ts';
import { DEFAULT_PRICE_REGION, PRICE_TABLES, type PriceTable } from './prices.ts';

/** How to price a run (the AWS runner's `cost` option). Every field has a default. */
export interface CostOptions {
  /** Region whose built-in table applies (default: the runner's region, else us-east-1). */
  region?: string;
  /** Your own prices (another region, discounts); wins over `region`. */
  prices?: PriceTable;
  /** Lambda architecture of the deployed functions (default 'x86_64', the construct's default). */
  architecture?: 'x86_64' | 'arm64';
  /** EC2 instance type of the GPU capacity (default 'g5.xlarge', the construct's default). */
  gpuInstanceType?: string;
  /** Seconds from a GPU task's request to its first partition: instance launch, ECS agent, image pull, model load. Default 300. */
  gpuStartupSeconds?: number;
  /** Seconds an idle GPU instance stays up before managed scaling removes it. Default 900 (15 one-minute alarm periods). */
  gpuScaleInSeconds?: number;
  /** Days run shards stay in the work bucket (the construct's `workRetention` lifecycle rule on runs/). Default 7. */
  retentionDays?: number;
  /** Uncompressed input bytes one vCPU processes per second. Default 50e6. */
  bytesPerVcpuSecond?: number;
  /** Seconds each of the Plan and Finalize functions runs. Default 1. */
  controlSeconds?: number;
  /** How often the runner polls (ms): one LIST per poll. Default 2000, the runner's default. */
  pollIntervalMs?: number;
}

/** What the estimate needs of a plan (a PhysicalPlan has all of it). */
export interface CostInput {
  partitions: number;
  /** Uncompressed bytes read by stage 0 (the selected row groups). */
  uncompressedBytes: number;
  /** Row groups read by stage 0, and the columns read of each (one ranged GET per column chunk). */
  rowGroups: number;
  columns: number;
  /** What the estimate needs of each stage (a structural slice of stages.ts's StageJSON, which imports this module). */
  stages: readonly {
    index: number;
    executor: 'lambda' | 'fargate' | 'ecs-gpu';
    memoryMiB: number;
    concurrency: number;
    slots: number;
    /** The stage's sizing class (stages.ts): its Lambda architecture, Fargate vCPUs, GPU instance type. */
    placement?: { executor: string; architecture?: 'x86_64' | 'arm64'; cpu?: number; instanceType?: string };
    /** Partitions of this stage (a relational run's reduce and gather stages have their own); absent: `partitions`. */
    partitions?: number;
    /**
     * A map stage of a hash or range exchange: the bucket files each partition writes instead of its
     * shard (a PUT each), which the reduce side reads (a GET each).
     */
    buckets?: number;
  }[];
  /**
   * Whether the run commits to an output prefix (a write: a commit marker and one copy per result
   * file). false: a run without an output (`collect()`), whose commit is a manifest naming the
   * results where they are. Absent: counted as a write (explain does not know the action).
   */
  output?: boolean;
}

export interface CostPart {
  item: string;
  quantity: number;
  unit: string;
  unitUsd: number;
  usd: number;
  /** How the quantity was counted. */
  detail: string;
}

export interface CostEstimate {
  region: string;
  asOf: string;
  /** The built-in table stood in for a region that has none. */
  fallback: boolean;
  parts: CostPart[];
  totalUsd: number;
}

/** Multipart part size of shard writes (src/io/s3/write-stream.ts's default): a larger shard is Create + parts + Complete. */
const PART_BYTES = 8 << 20;
/** Keys per LIST page. */
const LIST_PAGE = 1000;
const GIB = 2 ** 30;
/** Seconds a Fargate task is billed before it runs: image pull and start. */
const FARGATE_STARTUP_SECONDS = 60;
/** Hours in a billing month, as AWS prorates GB-months. */
const HOURS_PER_MONTH = 730;

/** Step Functions states entered (standard workflow, no retries); mirrors src/aws/state-machine.ts. */
export const TRANSITIONS = {
  /** Plan, Stages (Map), Finalize, Summarize, Succeeded. */
  run: 5,
  /** RouteStage (Choice), PartitionIndices / SlotIndices (Pass), Partitions / GpuSlots (Map). */
  perStage: 3,
  /** The iteration's task state: RunPartition (Lambda) or RunGpuSlot (ECS, per slot). */
  perItem: 1,
};

function resolvePrices(opts: CostOptions): { table: PriceTable; fallback: boolean } {
  if (opts.prices) return { table: opts.prices, fallback: false };
  const region = opts.region ?? DEFAULT_PRICE_REGION;
  const table = PRICE_TABLES[region];
  return table ? { table, fallback: false } : { table: PRICE_TABLES[DEFAULT_PRICE_REGION]!, fallback: true };
}

/** Seconds one partition of a stage takes at the throughput assumption (at least 0.1 s). */
export function stageSecondsPerPartition(input: Pick<CostInput, 'partitions' | 'uncompressedBytes'>, memoryMiB: number, bytesPerVcpuSecond = 50e6): number {
  const perPartition = input.uncompressedBytes / Math.max(1, input.partitions);
  const vcpus = Math.max(1, memoryMiB / LAMBDA_MIB_PER_VCPU);
  return Math.max(0.1, perPartition / (bytesPerVcpuSecond * vcpus));
}

function positive(v: number | undefined, def: number, name: string, zeroOk = false): number {
  if (v === undefined) return def;
  if (!Number.isFinite(v) || v < 0 || (!zeroOk && v === 0))
    throw new RangeError(`cost option '${name}' must be a ${zeroOk ? 'non-negative' : 'positive'} number, got ${String(v)}`);
  return v;
}

export function estimateRunCost(input: CostInput, opts: CostOptions = {}): CostEstimate {
  const { table, fallback } = resolvePrices(opts);
  const arch = opts.architecture ?? 'x86_64';
  if (arch !== 'x86_64' && arch !== 'arm64') throw new RangeError(`cost option 'architecture' must be 'x86_64' or 'arm64', got ${JSON.stringify(arch)}`);
  const startup = positive(opts.gpuStartupSeconds, 300, 'gpuStartupSeconds', true);
  const scaleIn = positive(opts.gpuScaleInSeconds, 900, 'gpuScaleInSeconds', true);
  const retentionDays = positive(opts.retentionDays, 7, 'retentionDays', true);
  const throughput = positive(opts.bytesPerVcpuSecond, 50e6, 'bytesPerVcpuSecond');
  const controlSeconds = positive(opts.controlSeconds, 1, 'controlSeconds', true);
  const pollSeconds = positive(opts.pollIntervalMs, 2000, 'pollIntervalMs') / 1000;
  const stages = input.stages;
  // Relational runs: stages of other widths (the total bytes assumed to stay the input's).
  const width = (s: CostInput['stages'][number]): number => s.partitions ?? input.partitions;
  const shardWrites = (n: number): number => {
    const bytesPerPartition = input.uncompressedBytes / Math.max(1, n);
    return bytesPerPartition <= PART_BYTES ? 1 : Math.ceil(bytesPerPartition / PART_BYTES) + 2;
  };
  const last = stages.length ? width(stages[stages.length - 1]!) : input.partitions;

  const gbSeconds = 2 * controlSeconds * (DEFAULT_LAMBDA_MEMORY_MIB / 1024); // Plan + Finalize
  let requests = 2;
  let transitions = TRANSITIONS.run;
  let wallSeconds = 2 * controlSeconds;
  const gpuHours = new Map<string, number>();
  const gpuDetail: string[] = [];
  let fargateVcpuHours = 0;
  let fargateGbHours = 0;
  const fargateArchs = new Set<string>();
  const lambdaByArch = { x86_64: 0, arm64: 0 };
  // S3, per the run lifecycle (src/aws/run.ts, handlers.ts, the runner):
  // PUT/COPY/LIST: plan.json once (by the runner, or by the Plan step of a run started without one), summary, manifest; with an output, the commit
  // marker and one copy per result file (straight to its committed key; a run without an output
  // names its results in place); per stage items.json and Finalize's listing; per partition and
  // stage the shard and its marker.
  let puts = 3 + (input.output === false ? 0 : 1 + last);
  // GET/HEAD: Plan (HEAD + plan), Finalize (HEAD summary + plan), the runner's summary; per
  // partition of stage 0 the footer and one range per column chunk; the runner and Finalize read
  // every marker, Finalize the last stage's again.
  let gets = 5 + input.rowGroups * input.columns + stages.reduce((a, s) => a + width(s) * 2, 0) + last;
  let bucketFiles = 0;
  for (const s of stages) {
    const n = width(s);
    const vcpuMiB = s.placement?.cpu !== undefined ? (s.placement.cpu / 1024) * LAMBDA_MIB_PER_VCPU : s.memoryMiB;
    const seconds = stageSecondsPerPartition({ partitions: n, uncompressedBytes: input.uncompressedBytes }, vcpuMiB, throughput);
    // An exchange's map partition writes a file per bucket (assumed all non-empty); its reducers GET each once.
    const writes = s.buckets !== undefined ? s.buckets : shardWrites(n);
    if (s.buckets !== undefined) {
      bucketFiles += n * s.buckets;
      gets += n * s.buckets;
    }
    puts += 1 + Math.ceil((2 * n + 1) / LIST_PAGE) + n * (writes + 1);
    transitions += TRANSITIONS.perStage;
    if (s.executor === 'lambda') {
      // A class's own architecture when it declares arm64; else the deployment's (cost.architecture).
      lambdaByArch[s.placement?.architecture === 'arm64' ? 'arm64' : arch] += n * seconds * (s.memoryMiB / 1024);
      requests += n;
      transitions += n * TRANSITIONS.perItem;
      gets += n * 2; // plan + input (the footer in stage 0, the previous shard after it)
      wallSeconds += Math.ceil(n / Math.max(1, s.concurrency)) * seconds;
    } else if (s.executor === 'fargate') {
      // One task per partition, billed from its start (image pull included) to its end.
      const hours = (n * (FARGATE_STARTUP_SECONDS + seconds)) / 3600;
      fargateVcpuHours += hours * ((s.placement?.cpu ?? 1024) / 1024);
      fargateGbHours += hours * (s.memoryMiB / 1024);
      fargateArchs.add(s.placement?.architecture ?? 'x86_64');
      transitions += n * TRANSITIONS.perItem;
      gets += n * 2;
      wallSeconds += Math.ceil(n / Math.max(1, s.concurrency)) * (FARGATE_STARTUP_SECONDS + seconds);
    } else {
      const slots = Math.max(1, s.slots);
      const busy = Math.ceil(n / slots) * seconds;
      const hours = (slots * (startup + busy + scaleIn)) / 3600;
      const type = s.placement?.instanceType ?? opts.gpuInstanceType ?? 'g5.xlarge';
      gpuHours.set(type, (gpuHours.get(type) ?? 0) + hours);
      gpuDetail.push(`stage ${s.index}: ${slots} instance(s) x (${startup} s start-up + ${round(busy)} s work + ${scaleIn} s scale-in)`);
      transitions += slots * TRANSITIONS.perItem;
      gets += slots + n; // plan once per slot, input per partition
      wallSeconds += startup + busy;
    }
  }
  const polls = Math.ceil(wallSeconds / pollSeconds);
  puts += polls;
  const storedBytes = stages.length * input.uncompressedBytes;
  const gbMonths = ((storedBytes / GIB) * (retentionDays * 24)) / HOURS_PER_MONTH;

  const parts: CostPart[] = [];
  const add = (item: string, quantity: number, unit: string, unitUsd: number, detail: string): void => {
    parts.push({ item, quantity, unit, unitUsd, usd: quantity * unitUsd, detail });
  };
  lambdaByArch[arch] += gbSeconds;
  for (const a of ['x86_64', 'arm64'] as const) {
    if (a !== arch && lambdaByArch[a] === 0) continue;
    add(
      a === arch ? 'Lambda compute' : `Lambda compute (${a})`,
      lambdaByArch[a],
      'GB-s',
      table.lambda.gbSecond[a],
      `${a}; partitions x seconds x memory${a === arch ? ', plus Plan and Finalize' : ''}`,
    );
  }
  add('Lambda requests', requests, 'requests', table.lambda.request, 'one per partition of each CPU stage, plus Plan and Finalize');
  add(
    'Step Functions',
    transitions,
    'state transitions',
    table.stepFunctions.standardTransition,
    `standard workflow: ${TRANSITIONS.run} per run, ${TRANSITIONS.perStage} per stage, ${TRANSITIONS.perItem} per partition (CPU) or GPU task; no retries`,
  );
  add(
    'S3 PUT/COPY/LIST',
    puts,
    'requests',
    table.s3.putCopyPostList,
    `shards, ${bucketFiles ? `${bucketFiles} exchange bucket file(s) (map partitions x buckets), ` : ''}markers, plan, items, ${input.output === false ? 'a manifest of the results in place' : 'result copies'}, Finalize listings, ${polls} progress poll(s)`,
  );
  add(
    'S3 GET/HEAD',
    gets,
    'requests',
    table.s3.get,
    `plan, input footers and column chunks, shards, ${bucketFiles ? `${bucketFiles} exchange bucket reads, ` : ''}markers`,
  );
  add(
    'S3 storage',
    gbMonths,
    'GB-months',
    table.s3.storageGbMonth,
    `${round(storedBytes / GIB)} GiB of shards kept ${retentionDays} day(s) (lifecycle on runs/)`,
  );
  if (fargateVcpuHours > 0) {
    if (!table.fargate)
      throw new Error(`cost estimate: the ${table.region} price table (as of ${table.asOf}) has no Fargate prices; add fargate to the runner's cost.prices`);
    const fa = fargateArchs.has('x86_64') ? 'x86_64' : 'arm64';
    const detail = `one task per partition, ${FARGATE_STARTUP_SECONDS} s start-up each; ${fa}`;
    add('Fargate vCPU', fargateVcpuHours, 'vCPU-hours', table.fargate.vcpuHour[fa], detail);
    add('Fargate memory', fargateGbHours, 'GB-hours', table.fargate.gbHour[fa], detail);
  }
  for (const [type, hours] of gpuHours) {
    const hourly = table.ec2Hourly[type];
    if (hourly === undefined) {
      throw new Error(
        `cost estimate: no price for GPU instance type '${type}' in the ${table.region} table (as of ${table.asOf}); add it to the runner's cost.prices.ec2Hourly or pick one of ${Object.keys(table.ec2Hourly).join(', ')}`,
      );
    }
    add(`GPU instances (${type})`, hours, 'instance-hours', hourly, gpuDetail.join('; '));
  }
  return { region: table.region, asOf: table.asOf, fallback, parts, totalUsd: parts.reduce((a, p) => a + p.usd, 0) };
}

function round(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function usd(v: number): string {
  return v === 0 ? '$0' : v >= 0.01 ? `$${v.toFixed(2)}` : `$${v.toPrecision(2)}`;
}

/** The estimate as explain() prints it. */
export function costToString(e: CostEstimate, requestedRegion?: string): string {
  const lines = [`== Cost estimate (USD, ${e.region} prices as of ${e.asOf}) ==`];
  if (e.fallback) lines.push(`  (no built-in price table for ${requestedRegion ?? 'this region'}: ${e.region} prices shown; pass the runner's cost.prices)`);
  for (const p of e.parts) lines.push(`${p.item}: ${round(p.quantity)} ${p.unit} x $${p.unitUsd.toPrecision(3)} = ${usd(p.usd)}  (${p.detail})`);
  lines.push(`Total: ~${usd(e.totalUsd)}`);
  return lines.join('\n');
}

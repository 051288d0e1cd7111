// The embedded runner: executes a physical plan's partitions in-process or on worker threads and
// merges their streams in partition order with bounded buffering (backpressure through credits).
import type * as arrow from 'apache-arrow';
import { availableParallelism, totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';
import { mergeMetrics, runtime } from '../udf-exec.ts';
import { applyOps, runPartition, runPartitionToSink, type ExecContext, type SinkResult } from '../executor.ts';
import { describeTask, type PartitionTask, type PhysicalPlan } from '../physical.ts';
import { WorkerPool } from './pool.ts';
import { detectGpus, gpuSlots } from '../resources.ts';
import type { RunMetrics } from '../udf-exec.ts';

export interface EmbeddedOptions {
  /** Partitions run at once (worker threads). Default: available cores. */
  parallelism?: number;
  /** Worker threads: always, never, or 'auto' (when the scan is big enough to repay their start-up). */
  workers?: boolean | 'auto';
  /** 'auto' uses workers when the scan reads at least this many bytes. Default 16 MiB. */
  workerThresholdBytes?: number;
  /** Rows per batch read from files. Default 65,536. */
  batchSize?: number;
  /** Batches a partition may run ahead of the consumer. Default 4. */
  prefetch?: number;
  /** Row-group packing target for partitions (uncompressed bytes). Default 32 MiB. */
  targetPartitionBytes?: number;
  /** Output in input order (default). `false`: batches as partitions produce them (faster with workers). */
  preserveOrder?: boolean;
  /** Make a GPU UDF on a machine without GPUs an error instead of a warning (then it runs on CPU). */
  strictResources?: boolean;
}

export interface ResolvedEmbeddedOptions {
  parallelism: number;
  workers: boolean | 'auto';
  workerThresholdBytes: number;
  batchSize: number;
  prefetch: number;
  targetPartitionBytes: number;
  preserveOrder: boolean;
  strictResources: boolean;
}

export function resolveEmbeddedOptions(o: EmbeddedOptions = {}): ResolvedEmbeddedOptions {
  const positive = (v: number | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`runner option '${name}' must be a positive integer, got ${String(v)}`);
    return v;
  };
  return {
    parallelism: positive(o.parallelism, 'parallelism', availableParallelism()),
    workers: o.workers ?? 'auto',
    workerThresholdBytes: o.workerThresholdBytes ?? 16 << 20,
    batchSize: positive(o.batchSize, 'batchSize', 65536),
    prefetch: positive(o.prefetch, 'prefetch', 4),
    targetPartitionBytes: positive(o.targetPartitionBytes, 'targetPartitionBytes', 32 << 20),
    preserveOrder: o.preserveOrder ?? true,
    strictResources: o.strictResources ?? false,
  };
}

let pool: WorkerPool | null = null;
let poolKey = '';
function getPool(size: number, batchSize: number, envs?: Record<string, string>[]): WorkerPool {
  const key = JSON.stringify([size, batchSize, envs ?? null]);
  if (!pool || poolKey !== key) {
    // Another action may still stream from the old pool: it closes when its tasks are done.
    pool?.retire();
    pool = new WorkerPool(size, { batchSize }, envs);
    poolKey = key;
  }
  return pool;
}

/** Stops the worker threads and processes (threads are unref'd, so this is optional before exit). */
export async function shutdownWorkers(): Promise<void> {
  const p = pool;
  pool = null;
  await p?.close();
}

let warnedNoGpu = false;

/** GPU UDFs: one child process per GPU slot, each with its own CUDA_VISIBLE_DEVICES. */
function gpuEnvs(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): Record<string, string>[] | null {
  const gpu = plan.udfs.filter((u) => u.options.numGpus > 0);
  if (!gpu.length) return null;
  const total = detectGpus();
  const names = gpu.map((u) => `'${u.name}'`).join(', ');
  if (total === 0) {
    if (o.strictResources) throw new Error(`UDF ${names} needs a GPU (numGpus), but none is available (strictResources)`);
    if (!warnedNoGpu) console.warn(`fanout: no GPU found; GPU UDF ${names} runs on CPU`);
    warnedNoGpu = true;
    return null;
  }
  const numGpus = Math.max(...gpu.map((u) => u.options.numGpus));
  const caps = gpu.map((u) => u.options.concurrency).filter((c): c is number => c !== null);
  let slots: string[];
  try {
    slots = gpuSlots(numGpus, total, caps.length ? Math.min(...caps) : null);
  } catch (e) {
    throw new Error(`UDF ${names} ${(e as Error).message}`);
  }
  return slots.map((d) => ({ CUDA_VISIBLE_DEVICES: d }));
}

/** How explain describes where a plan's partitions will run (no side effects, no warnings). */
export function describePlacement(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): { parallelism: number; where: string } {
  const gpu = plan.udfs.filter((u) => u.options.numGpus > 0);
  if (gpu.length && plan.scan.format !== 'memory') {
    const total = detectGpus();
    if (total > 0) {
      const caps = gpu.map((u) => u.options.concurrency).filter((c): c is number => c !== null);
      const slots = gpuSlots(Math.max(...gpu.map((u) => u.options.numGpus)), total, caps.length ? Math.min(...caps) : null);
      return { parallelism: slots.length, where: `GPU processes on ${total} device(s)` };
    }
  }
  const p = Math.min(effectiveParallelism(plan, o), Math.max(1, plan.partitions.length));
  const threads = plan.scan.format !== 'memory' && p > 1 && plan.partitions.length > 1 && o.workers !== false &&
    (o.workers === true || plan.scan.bytes >= o.workerThresholdBytes);
  return { parallelism: threads ? p : 1, where: threads ? 'worker threads' : 'in-process' };
}

interface Placement {
  pool: WorkerPool;
  parallelism: number;
}

/** Where partitions run: null = in-process; else a pool of threads, or of processes for GPU UDFs. */
function place(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): Placement | null {
  effectiveParallelism(plan, o); // a resource request no machine could satisfy fails here, before any work
  const envs = gpuEnvs(plan, o);
  if (envs && plan.scan.format !== 'memory' && canShip(plan, o)) {
    return { pool: getPool(envs.length, o.batchSize, envs), parallelism: envs.length };
  }
  if (!useWorkers(plan, o)) return null;
  return { pool: getPool(o.parallelism, o.batchSize), parallelism: effectiveParallelism(plan, o) };
}

let hinted = false;

/** Partitions at once: the runner's parallelism, bounded by each UDF's concurrency and resources. */
export function effectiveParallelism(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): number {
  let p = o.parallelism;
  const cores = availableParallelism();
  const mem = totalmem();
  for (const u of plan.udfs) {
    const r = u.options;
    if (r.numCpus > cores) throw new Error(`UDF '${u.name}' asks for numCpus ${r.numCpus}, but this machine has ${cores} core(s)`);
    if (r.memoryBytes && r.memoryBytes > mem) throw new Error(`UDF '${u.name}' asks for memoryBytes ${r.memoryBytes}, but this machine has ${mem}`);
    if (r.concurrency) p = Math.min(p, r.concurrency);
    p = Math.min(p, Math.max(1, Math.floor(cores / r.numCpus)));
    if (r.memoryBytes) p = Math.min(p, Math.max(1, Math.floor(mem / r.memoryBytes)));
  }
  return Math.max(1, p);
}

/** UDF modules can be imported elsewhere: none is the main script (which would re-run its pipeline). */
function canShip(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): boolean {
  const main = process.argv[1] ? pathToFileURL(process.argv[1]).href : null;
  const inline = plan.udfs.filter((u) => !u.moduleUrl || u.moduleUrl === main);
  if (inline.length) {
    // Importing the main script in a worker would re-run its pipeline: keep these UDFs in-process.
    if (!hinted && o.workers !== false) {
      console.warn(`fanout: UDF ${inline.map((u) => `'${u.name}'`).join(', ')} defined in the main script runs in-process; move it into a module to run it in parallel`);
      hinted = true;
    }
    return false;
  }
  return true;
}

function useWorkers(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): boolean {
  if (plan.scan.format === 'memory' || effectiveParallelism(plan, o) < 2 || plan.partitions.length < 2) return false;
  if (!canShip(plan, o)) return false;
  if (o.workers === 'auto') return plan.scan.bytes >= o.workerThresholdBytes;
  return o.workers;
}

/**
 * Names the partition in an in-process error, as the pool does for a worker's (`... (partition 3:
 * /data/f.parquet, row groups 4,5)`), keeping the error's class (a UdfError stays one).
 */
function inPartition(err: unknown, context: string): Error {
  const suffix = ` (${context})`;
  if (!(err instanceof Error)) return new Error(`${String(err)}${suffix}`);
  if (err.message.endsWith(suffix)) return err;
  const head = `${err.name}: ${err.message}`;
  err.message += suffix;
  if (err.stack?.startsWith(head)) err.stack = `${err.name}: ${err.message}${err.stack.slice(head.length)}`;
  return err;
}

/** A partition's output as an async queue filled by a worker. */
class RemoteStream implements AsyncIterable<arrow.RecordBatch> {
  private queue: arrow.RecordBatch[] = [];
  private finished = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;
  controls: Promise<{ credit(n: number): void; cancel(): void }>;

  constructor(pool: WorkerPool, task: PartitionTask, credits: number, metrics?: RunMetrics) {
    const notify = (): void => { this.wake?.(); this.wake = null; };
    this.controls = pool.run(task, credits, {
      onBatch: (b) => { this.queue.push(b); notify(); },
      onMetrics: (m) => { if (metrics) mergeMetrics(metrics, m); },
      onDone: () => { this.finished = true; notify(); },
      onError: (e) => { this.error = e; this.finished = true; notify(); },
    }, describeTask(task));
    this.controls.catch((e: unknown) => { this.error = e instanceof Error ? e : new Error(String(e)); this.finished = true; notify(); });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<arrow.RecordBatch> {
    let completed = false;
    try {
      for (;;) {
        if (this.queue.length) {
          const b = this.queue.shift()!;
          (await this.controls).credit(1);
          yield b;
          continue;
        }
        if (this.error) throw this.error;
        if (this.finished) { completed = true; return; }
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      if (!completed) this.cancel();
    }
  }

  cancel(): void {
    this.controls.then((c) => c.cancel(), () => undefined);
  }
}

export interface RunHandle {
  usedWorkers: boolean;
  /** Partitions that run at once (set when streaming starts). */
  parallelism?: number;
}

/**
 * Streams each partition's output, in partition order. With workers, up to `parallelism`
 * partitions run at once, each at most `prefetch` batches ahead of the consumer.
 */
export async function* streamPartitions(
  plan: PhysicalPlan,
  options: ResolvedEmbeddedOptions,
  ctx: ExecContext,
  handle?: RunHandle,
  /** Ordered: keep `parallelism` partitions running ahead of the one consumed. Unordered: the
   *  consumer pulls as many partitions as it runs at once, and each pull starts exactly one. */
  lookahead: 'ordered' | 'unordered' = 'ordered',
): AsyncGenerator<{ index: number; batches: AsyncIterable<arrow.RecordBatch> }> {
  const tasks = plan.partitions;
  const execCtx: ExecContext = { ...ctx, batchSize: options.batchSize };
  const placement = place(plan, options);
  if (!placement) {
    if (handle) { handle.usedWorkers = false; handle.parallelism = 1; }
    for (const t of tasks) {
      // Each partition counts into its own fork: a failed or abandoned run's counts never reach the
      // next action (they used to stay in the shared runtime until someone took them).
      const rt = runtime.fork(describeTask(t));
      const run = runPartition(t, { ...execCtx, rt });
      // Metrics are collected when the partition's stream ends, before the consumer reports it done.
      const batches = (async function* () {
        try {
          yield* run;
        } catch (err) {
          throw inPartition(err, describeTask(t));
        } finally {
          // Also when the consumer stops early (limit, show, break): this run's counters are its own.
          if (ctx.metrics) mergeMetrics(ctx.metrics, rt.takeMetrics());
        }
      })();
      yield { index: t.index, batches };
    }
    return;
  }
  const { parallelism, pool: p } = placement;
  if (handle) { handle.usedWorkers = true; handle.parallelism = parallelism; }
  const started: RemoteStream[] = [];
  let next = 0;
  const startUpTo = (n: number): void => {
    while (next < tasks.length && next < n) started.push(new RemoteStream(p, tasks[next++]!, options.prefetch, ctx.metrics));
  };
  let i = 0;
  try {
    for (; i < tasks.length; i++) {
      // Keep `parallelism` partitions in flight ahead of the one being consumed.
      startUpTo(lookahead === 'ordered' ? i + parallelism : i + 1);
      yield { index: i, batches: started[i]! };
    }
  } finally {
    for (let k = i; k < started.length; k++) started[k]!.cancel();
  }
}

/** The whole plan as one ordered stream: partitions merged in order, then the global operators. */
export function executeStream(plan: PhysicalPlan, options: ResolvedEmbeddedOptions, ctx: ExecContext, handle?: RunHandle): AsyncIterable<arrow.RecordBatch> {
  async function* merged(): AsyncGenerator<arrow.RecordBatch> {
    for await (const part of streamPartitions(plan, options, ctx, handle)) {
      for await (const b of part.batches) {
        ctx.progress?.rows(b.numRows);
        yield b;
      }
      ctx.progress?.partitionDone();
      if (ctx.metrics) ctx.progress?.udfs(ctx.metrics);
    }
  }
  async function* unordered(): AsyncGenerator<arrow.RecordBatch> {
    // Several partitions' streams at once; each batch goes out as soon as any partition has one.
    const h: RunHandle = handle ?? { usedWorkers: false };
    const parts = streamPartitions(plan, options, ctx, h, 'unordered')[Symbol.asyncIterator]();
    type Active = { it: AsyncIterator<arrow.RecordBatch>; next: Promise<{ a: Active; r: IteratorResult<arrow.RecordBatch> }> };
    const active = new Set<Active>();
    const arm = (a: Active): void => { a.next = a.it.next().then((r) => ({ a, r })); };
    let exhausted = false;
    const fill = async (): Promise<void> => {
      while (!exhausted && (active.size === 0 || active.size < (h.parallelism ?? 1))) {
        const p = await parts.next();
        if (p.done) { exhausted = true; break; }
        const a = { it: p.value.batches[Symbol.asyncIterator]() } as Active;
        arm(a);
        active.add(a);
      }
    };
    try {
      await fill();
      while (active.size) {
        const { a, r } = await Promise.race([...active].map((x) => x.next));
        if (r.done) {
          active.delete(a);
          ctx.progress?.partitionDone();
          if (ctx.metrics) ctx.progress?.udfs(ctx.metrics);
          await fill();
          continue;
        }
        arm(a);
        ctx.progress?.rows(r.value.numRows);
        yield r.value;
      }
    } finally {
      await Promise.all([...active].map((a) => a.it.return?.()));
      await parts.return?.(undefined);
    }
  }
  return applyOps(options.preserveOrder ? merged() : unordered(), plan.globalOps);
}

/** Runs tasks that carry sinks (each partition writes its own file), in parallel where possible. */
export async function executeSinks(plan: PhysicalPlan, tasks: PartitionTask[], options: ResolvedEmbeddedOptions, ctx: ExecContext): Promise<SinkResult[]> {
  const execCtx: ExecContext = { ...ctx, batchSize: options.batchSize };
  const placement = place(plan, options);
  if (!placement) {
    const out: SinkResult[] = [];
    for (const t of tasks) {
      const rt = runtime.fork(describeTask(t));
      try {
        out.push(await runPartitionToSink(t, { ...execCtx, rt }));
      } catch (err) {
        throw inPartition(err, describeTask(t));
      }
      if (ctx.metrics) mergeMetrics(ctx.metrics, rt.takeMetrics());
    }
    return out;
  }
  const p = placement.pool;
  // Settle every task before reporting a failure, so the caller's abort cannot race a late writer.
  const settled = await Promise.allSettled(tasks.map((t) => new Promise<SinkResult>((resolve, reject) => {
    let result: SinkResult | null = null;
    p.run(t, 1, {
      onBatch: () => undefined,
      onMetrics: (m) => { if (ctx.metrics) mergeMetrics(ctx.metrics, m); },
      onSink: (r) => { result = r; },
      onDone: () => (result ? resolve(result) : reject(new Error(`${describeTask(t)} wrote nothing`))),
      onError: reject,
    }, describeTask(t)).catch(reject);
  })));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<SinkResult>).value);
}

// The embedded runner: executes a physical plan's partitions in-process or on worker threads and
// merges their streams in partition order with bounded buffering (backpressure through credits).
import type * as arrow from 'apache-arrow';
import { availableParallelism, totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';
import { mergeMetrics, runtime, type UdfRuntime } from '../udf-exec.ts';
import { AbortError, applyOps, runPartition, type ExecContext, type PartitionOutcome } from '../executor.ts';
import { DatasetWriter, type WrittenFile } from '../io/writer.ts';
import { partitionedCommitParts, writePartitionedParts } from '../io/partitioned-writer.ts';
import { optimize } from '../optimizer.ts';
import {
  AWS_MIN_PARTITIONS,
  buildPhysicalPlan,
  describeTask,
  physicalPlanToString,
  type PartitionTask,
  type PhysicalOptions,
  type OpJSON,
  type PartialAggregateOp,
  type PhysicalPlan,
} from '../physical.ts';
import { planSchema, type PlanNode } from '../plan.ts';
import { startProgress, type ProgressSink } from '../progress.ts';
import { splitStages, stagesToString } from '../aws/stages.ts';
import { WorkerPool } from './pool.ts';
import { detectGpus } from '../resources.ts';
import { ActorRouter, actorSpecs, describeActors, shutdownActors } from './actors.ts';
import type { UdfCallRequest } from './protocol.ts';
import type { UdfDefinition } from '../udf.ts';
import type { RunMetrics } from '../udf-exec.ts';
import type { ActionContext, DatasetSinkSpec, ExplainRequest, ResultPartition, Runner } from './runner.ts';
import type { ResolvedEmbeddedOptions } from './options.ts';
import { describeRelational, endsInRelational, relationalPartitions, streamRelational } from '../relational/execute.ts';
import { groupsReduce } from '../relational/exchange.ts';
import { flushTelemetry, traceAction } from '../telemetry/index.ts';
import type { TraceSpan } from '../telemetry/common.ts';

/** An embedded run: what its partitions run with, plus what the runner collects over the run. */
interface EmbeddedRunContext extends ExecContext {
  /** UDF metrics of the run, summed across partitions and workers. */
  metrics?: RunMetrics;
  progress?: ProgressSink;
  /** The action's stage span when OTel is on: each partition's outcome is recorded under it. */
  trace?: TraceSpan | null;
}

export { resolveEmbeddedOptions, type EmbeddedOptions, type ResolvedEmbeddedOptions } from './options.ts';

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

/**
 * Stops the worker threads and processes (threads are unref'd, so this is optional before exit) and
 * exports the telemetry not yet sent (actions do not wait for their export).
 */
export async function shutdownWorkers(): Promise<void> {
  const p = pool;
  pool = null;
  await Promise.all([p?.close(), shutdownActors(), flushTelemetry()]);
}

let warnedNoGpu = false;

/**
 * The action's actor pools: GPU UDFs get one child process per GPU slot (each with its own
 * CUDA_VISIBLE_DEVICES), a `cls` with `concurrency` that many worker threads; null when there are none.
 * `quiet`: explain (no warnings). A GPU UDF on a machine without GPUs runs on CPU (warning) or fails
 * (strictResources).
 */
function actorRouter(plan: PhysicalPlan, o: ResolvedEmbeddedOptions, quiet = false): ActorRouter | null {
  const gpu = plan.udfs.filter((u) => u.options.numGpus > 0);
  if (gpu.length && detectGpus() === 0) {
    const names = gpu.map((u) => `'${u.name}'`).join(', ');
    if (o.strictResources) throw new Error(`UDF ${names} needs a GPU (numGpus), but none is available (strictResources)`);
    if (!warnedNoGpu && !quiet) console.warn(`fanout: no GPU found; GPU UDF ${names} runs on CPU`);
    if (!quiet) warnedNoGpu = true;
  }
  if (!plan.udfs.some((u) => u.options.numGpus > 0 || (u.cls && u.options.concurrency !== null))) return null;
  // `workers: false` keeps everything but GPU processes in this thread: a cls runs one instance here.
  const specs = actorSpecs(plan.udfs, (u) => shippable(u, o, quiet), o.workers !== false);
  return specs.size ? new ActorRouter(specs) : null;
}

/** How explain describes where a plan's partitions will run (no side effects, no warnings). */
function describePlacement(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): { parallelism: number; where: string } {
  const router = actorRouter(plan, o, true);
  const routed = new Set(router?.specs.keys() ?? []);
  const p = Math.min(effectiveParallelism(plan, o, routed), Math.max(1, plan.partitions.length));
  const threads =
    plan.scan.format !== 'memory' &&
    p > 1 &&
    plan.partitions.length > 1 &&
    o.workers !== false &&
    !smallLimit(plan, o) &&
    (o.workers === true || plan.scan.bytes >= o.workerThresholdBytes);
  const where = threads ? 'worker threads' : 'in-process';
  return { parallelism: threads ? p : 1, where: router ? `${where}; ${describeActors(router.specs)}` : where };
}

interface Placement {
  pool: WorkerPool;
  parallelism: number;
}

/** Where partitions run: null = in-process; else a pool of worker threads. Actor-pool UDFs run in their actors either way. */
function place(plan: PhysicalPlan, o: ResolvedEmbeddedOptions, router: ActorRouter | null, sink = false): Placement | null {
  const routed = new Set(router?.specs.keys() ?? []);
  effectiveParallelism(plan, o, routed); // a resource request no machine could satisfy fails here, before any work
  if (!useWorkers(plan, o, routed, sink)) return null;
  return { pool: getPool(o.parallelism, o.batchSize), parallelism: effectiveParallelism(plan, o, routed) };
}

/** The runtime in-process partitions fork from: this thread's, with the action's actor pools. */
function routedRuntime(router: ActorRouter | null): UdfRuntime | undefined {
  if (!router) return undefined;
  const rt = runtime.fork();
  rt.remote = router;
  return rt;
}

let hinted = false;

/**
 * Partitions at once: the runner's parallelism, bounded by each UDF's concurrency and resources,
 * except for UDFs in actor pools (`routed`): their instances serve every partition, so they bound nothing.
 */
export function effectiveParallelism(plan: PhysicalPlan, o: ResolvedEmbeddedOptions, routed: ReadonlySet<string> = new Set()): number {
  let p = o.parallelism;
  const cores = availableParallelism();
  const mem = totalmem();
  for (const u of plan.udfs) {
    const r = u.options;
    if (r.numCpus > cores) throw new Error(`UDF '${u.name}' asks for numCpus ${r.numCpus}, but this machine has ${cores} core(s)`);
    if (r.memoryBytes && r.memoryBytes > mem) throw new Error(`UDF '${u.name}' asks for memoryBytes ${r.memoryBytes}, but this machine has ${mem}`);
    if (routed.has(u.name)) continue;
    if (r.concurrency) p = Math.min(p, r.concurrency);
    p = Math.min(p, Math.max(1, Math.floor(cores / r.numCpus)));
    if (r.memoryBytes) p = Math.min(p, Math.max(1, Math.floor(mem / r.memoryBytes)));
  }
  return Math.max(1, p);
}

/** A UDF's module can be imported elsewhere: it is not the main script (which would re-run its pipeline). */
function shippable(u: UdfDefinition, o: ResolvedEmbeddedOptions, quiet = false): boolean {
  const main = process.argv[1] ? pathToFileURL(process.argv[1]).href : null;
  if (u.moduleUrl && u.moduleUrl !== main) return true;
  if (!hinted && !quiet && o.workers !== false) {
    console.warn(`fanout: UDF '${u.name}' defined in the main script runs in-process; move it into a module to run it in parallel`);
    hinted = true;
  }
  return false;
}

/** UDF modules can be imported elsewhere: none is the main script (which would re-run its pipeline). */
function canShip(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): boolean {
  const main = process.argv[1] ? pathToFileURL(process.argv[1]).href : null;
  const inline = plan.udfs.filter((u) => !u.moduleUrl || u.moduleUrl === main);
  if (inline.length) {
    // Importing the main script in a worker would re-run its pipeline: keep these UDFs in-process.
    if (!hinted && o.workers !== false) {
      console.warn(
        `fanout: UDF ${inline.map((u) => `'${u.name}'`).join(', ')} defined in the main script runs in-process; move it into a module to run it in parallel`,
      );
      hinted = true;
    }
    return false;
  }
  return true;
}

/**
 * A limit pushed into the scan that one batch covers: the first partition alone almost surely has
 * the rows, so starting threads (each decoding a partition ahead) only costs time and memory. This
 * holds under `workers: true` too: limit(1) on 2 workers took 25 ms against 6 ms in this thread.
 */
function smallLimit(plan: PhysicalPlan, o: ResolvedEmbeddedOptions): boolean {
  return plan.scan.limit !== null && plan.scan.limit <= o.batchSize;
}

function useWorkers(plan: PhysicalPlan, o: ResolvedEmbeddedOptions, routed: ReadonlySet<string>, sink = false): boolean {
  if (plan.scan.format === 'memory' || effectiveParallelism(plan, o, routed) < 2 || plan.partitions.length < 2) return false;
  if (smallLimit(plan, o)) return false;
  if (!canShip(plan, o)) return false;
  // A write also encodes every decoded byte (parquet-wasm's encoder costs more than its decoder) and
  // sends nothing back but a commit record: weigh it by its uncompressed page bytes, the footer's
  // closest measure of the decoded size. The bench's read -> UDF -> write reads 14.4 MiB (32 MB
  // uncompressed) and took 291 ms in-process, 228 ms on 2 workers (idle machine, session 4 baseline).
  if (o.workers === 'auto') return (sink ? Math.max(plan.scan.bytes, plan.scan.uncompressedBytes) : plan.scan.bytes) >= o.workerThresholdBytes;
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

/**
 * Credits for a worker's partition: up to `batches` in flight, and more only while the batches that
 * arrived and wait for the consumer hold under `bytes`. So a partition not yet consumed runs ahead
 * (a whole partition, within the budget) instead of stalling after `batches`, and memory stays
 * bounded when the consumer is slower than the workers.
 */
class CreditWindow {
  private inFlight: number;
  private queued = 0;
  constructor(
    private readonly batches: number,
    private readonly bytes: number,
    private readonly grant: (n: number) => void,
  ) {
    this.inFlight = batches;
  }
  received(size: number): void {
    this.inFlight--;
    this.queued += size;
    this.refill();
  }
  consumed(size: number): void {
    this.queued -= size;
    this.refill();
  }
  private refill(): void {
    // Nothing queued means the consumer waits for this partition: always let it go on.
    if (this.inFlight >= this.batches || (this.queued >= this.bytes && this.queued > 0)) return;
    const n = this.batches - this.inFlight;
    this.inFlight += n;
    this.grant(n);
  }
}

/** Bytes of a batch's buffers (its place in a prefetch budget). */
function batchBytes(b: arrow.RecordBatch): number {
  let n = 0;
  for (const c of b.data.children) n += c.byteLength;
  return n;
}

/** What a partition stream must undo if its consumer drops it without closing it (see `dropped`). */
interface StreamCleanup {
  stop?: (() => void) | undefined;
}

/**
 * A stream whose consumer dropped it without calling return() (an iterator let go after a few rows)
 * never reaches its `finally`: once it is garbage, this ends its use of the pool (so a retired pool
 * can close) and cancels its workers' tasks (each would otherwise wait for credits, holding a slot).
 */
const dropped = new FinalizationRegistry<StreamCleanup>((c) => c.stop?.());

/** A partition's output as an async queue filled by a worker. */
class RemoteStream implements AsyncIterable<arrow.RecordBatch> {
  private queue: arrow.RecordBatch[] = [];
  private finished = false;
  private error: Error | null = null;
  private aborted: Error | null = null;
  private wake: (() => void) | null = null;
  private readonly unlisten: () => void = () => undefined;
  private readonly credits: CreditWindow;
  controls: Promise<{ credit(n: number): void; cancel(): void }>;
  /** Resolves when the worker is done with this partition (finished, failed or cancelled). */
  readonly settled: Promise<void>;
  private settle: () => void = () => undefined;

  constructor(
    pool: WorkerPool,
    task: PartitionTask,
    window: { batches: number; bytes: number },
    metrics?: RunMetrics,
    signal?: AbortSignal,
    router?: ActorRouter | null,
    trace?: TraceSpan | null,
  ) {
    const since = Date.now();
    this.settled = new Promise<void>((r) => (this.settle = r));
    this.credits = new CreditWindow(window.batches, window.bytes, (n) => {
      this.controls.then(
        (c) => c.credit(n),
        () => undefined,
      );
    });
    const notify = (): void => {
      this.wake?.();
      this.wake = null;
    };
    const fail = (e: Error): void => {
      if (!this.finished) trace?.partition({ index: task.index, source: task.source, error: e, failedSince: since });
      this.error = e;
      this.finished = true;
      this.unlisten();
      this.settle();
      notify();
    };
    if (signal) {
      // An abort fails the stream now (not when the worker next reports, and before any batch still
      // queued) and cancels the worker's task.
      const onAbort = (): void => {
        this.aborted = new AbortError(`aborted (${describeTask(task)})`, { cause: signal.reason });
        this.finished = true;
        notify();
        this.cancel();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.unlisten = () => signal.removeEventListener('abort', onAbort);
    }
    this.controls = signal?.aborted
      ? Promise.reject(new AbortError(`aborted (${describeTask(task)})`, { cause: signal.reason }))
      : pool.run(
          task,
          window.batches,
          {
            onBatch: (b) => {
              this.queue.push(b);
              this.credits.received(batchBytes(b));
              notify();
            },
            onMetrics: (m, outcome) => {
              if (metrics) mergeMetrics(metrics, m);
              if (outcome) trace?.partition({ index: task.index, source: task.source, outcome });
            },
            onDone: () => {
              this.finished = true;
              this.unlisten();
              this.settle();
              notify();
            },
            onError: fail,
            ...(router ? { onUdfCall: (c: UdfCallRequest) => router.relay(c) } : {}),
          },
          describeTask(task),
          signal,
          router?.windows(),
        );
    this.controls.catch((e: unknown) => fail(e instanceof Error ? e : new Error(String(e))));
  }

  /**
   * The stream as handed to a consumer: if it is dropped without ever being iterated, or its
   * iterator is dropped unfinished, the worker's task is cancelled once that object is garbage (the
   * task would otherwise wait for credits forever, holding its slot; see `dropped`).
   */
  handOut(): AsyncIterable<arrow.RecordBatch> {
    const state: StreamCleanup = { stop: () => this.cancel() };
    const view: AsyncIterable<arrow.RecordBatch> = {
      [Symbol.asyncIterator]: () => {
        state.stop = undefined;
        const it = this.batches();
        dropped.register(it, { stop: () => this.cancel() });
        return it;
      },
    };
    dropped.register(view, state);
    return view;
  }

  [Symbol.asyncIterator](): AsyncGenerator<arrow.RecordBatch> {
    return this.batches();
  }

  private async *batches(): AsyncGenerator<arrow.RecordBatch> {
    let completed = false;
    try {
      for (;;) {
        if (this.aborted) throw this.aborted;
        if (this.queue.length) {
          const b = this.queue.shift()!;
          await this.controls;
          this.credits.consumed(batchBytes(b));
          yield b;
          continue;
        }
        if (this.error) throw this.error;
        if (this.finished) {
          completed = true;
          return;
        }
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      if (!completed) this.cancel();
    }
  }

  cancel(): void {
    this.unlisten();
    this.controls.then(
      (c) => c.cancel(),
      () => undefined,
    );
  }
}

interface RunHandle {
  usedWorkers: boolean;
  /** Partitions that run at once (set when streaming starts). */
  parallelism?: number;
}

/**
 * Streams each partition's output, in partition order. With workers, up to `parallelism`
 * partitions run at once, each ahead of the consumer by up to its share of `prefetchBytes`.
 */
function streamPartitions(
  plan: PhysicalPlan,
  options: ResolvedEmbeddedOptions,
  ctx: EmbeddedRunContext,
  handle?: RunHandle,
  /** Ordered: keep `parallelism` partitions running ahead of the one consumed. Unordered: the
   *  consumer pulls as many partitions as it runs at once, and each pull starts exactly one.
   *  'shared': ordered, and this thread may decode some partitions itself (sharesDecoding). */
  lookahead: 'ordered' | 'unordered' | 'shared' = 'ordered',
): AsyncGenerator<{ index: number; batches: AsyncIterable<arrow.RecordBatch> }> {
  const cleanup: StreamCleanup = {};
  const stream = partitionStreams(plan, options, ctx, cleanup, handle, lookahead);
  // The cleanup holds no reference to the stream, so registering does not keep it alive.
  dropped.register(stream, cleanup);
  return stream;
}

async function* partitionStreams(
  plan: PhysicalPlan,
  options: ResolvedEmbeddedOptions,
  ctx: EmbeddedRunContext,
  cleanup: StreamCleanup,
  handle: RunHandle | undefined,
  lookahead: 'ordered' | 'unordered' | 'shared',
): AsyncGenerator<{ index: number; batches: AsyncIterable<arrow.RecordBatch> }> {
  const tasks = plan.partitions;
  const router = actorRouter(plan, options);
  const execCtx: ExecContext = { ...ctx, batchSize: options.batchSize };
  const rt = routedRuntime(router);
  if (rt) execCtx.rt = rt;
  const placement = place(plan, options, router);
  if (!placement) {
    if (handle) {
      handle.usedWorkers = false;
      handle.parallelism = 1;
    }
    for (const t of tasks) yield { index: t.index, batches: inProcess(t, execCtx, ctx) };
    return;
  }
  const { parallelism, pool: p } = placement;
  if (handle) {
    handle.usedWorkers = true;
    handle.parallelism = parallelism;
  }
  // The running partitions share the byte budget: at most `parallelism` of them hold batches at once.
  const window = { batches: options.prefetch, bytes: Math.floor(options.prefetchBytes / parallelism) };
  if (lookahead === 'shared' && sharesDecoding(plan, parallelism, router)) {
    yield* sharedDecoding(tasks, p, parallelism, window, execCtx, ctx, router, cleanup);
    return;
  }
  const started: RemoteStream[] = [];
  let next = 0;
  const startUpTo = (n: number): void => {
    while (next < tasks.length && next < n) started.push(new RemoteStream(p, tasks[next++]!, window, ctx.metrics, ctx.signal, router, ctx.trace));
  };
  let i = 0;
  // Partitions start as the consumer moves on: the pool must stay open until the last has started.
  const letGo = p.use();
  // Dropped: the partitions started ahead stop; the ones handed out stop when their streams are garbage.
  cleanup.stop = () => {
    letGo();
    for (let k = i + 1; k < started.length; k++) started[k]!.cancel();
  };
  try {
    for (; i < tasks.length; i++) {
      // Keep `parallelism` partitions in flight ahead of the one being consumed.
      startUpTo(lookahead === 'unordered' ? i + 1 : i + parallelism);
      if (next === tasks.length) letGo();
      yield { index: i, batches: started[i]!.handOut() };
    }
  } finally {
    cleanup.stop = undefined;
    letGo();
    for (let k = i; k < started.length; k++) started[k]!.cancel();
  }
}

/**
 * For in-process A/B measurements (bench/par-scan.ts): `sharedDecoding: false` runs every partition
 * on the workers; `sharedUdfs: false` keeps plans with UDFs on the workers only.
 */
export const scanTuning = { sharedDecoding: true, sharedUdfs: true };

/**
 * A plan on 2 threads: this (the consuming) thread decodes every other partition itself while one
 * worker decodes the others ahead of it. Half the data then never crosses threads (no transfer, no
 * receiving isolate's GC for it), and 2 cores run 2 decoders, not 2 workers plus a consumer plus
 * their GC helpers. Same process, variants alternated (bench/par-scan.ts), load 14-30: CPU per scan
 * of the 2M-row bench file's 4 columns 454-542 ms on 2 workers against 376-499 ms shared, lower in 7
 * of 8 runs (docs/performance.md, "Session 4"). A plan with UDFs shares too when each of them runs
 * here as the 1-thread runner runs it (runsHere); then the UDF's output of this thread's half is
 * neither packed nor sent (docs/performance.md, "Session 5", "UDF plans on 2 threads"). Above 2
 * threads it is unmeasured.
 */
function sharesDecoding(plan: PhysicalPlan, parallelism: number, router: ActorRouter | null): boolean {
  if (!scanTuning.sharedDecoding || parallelism !== 2 || plan.partitions.length < 2) return false;
  return plan.udfs.length === 0 || (scanTuning.sharedUdfs && router === null && plan.udfs.every(runsHere));
}

/**
 * A UDF this thread may run for its share of partitions with the same semantics as a worker: a
 * plain function (a cls has one instance per thread or an actor pool, and stays there), no GPU
 * placement, and no timeoutMs (only a worker's synchronous call past its timeout can be ended, by
 * terminating the thread: sync-guard.ts). Concurrency limits still hold: `parallelism` already
 * bounds this thread's partition plus the worker's.
 */
function runsHere(u: UdfDefinition): boolean {
  return !u.cls && u.options.numGpus === 0 && u.options.timeoutMs === null;
}

async function* sharedDecoding(
  tasks: readonly PartitionTask[],
  p: WorkerPool,
  parallelism: number,
  window: { batches: number; bytes: number },
  execCtx: ExecContext,
  ctx: EmbeddedRunContext,
  router: ActorRouter | null,
  cleanup: StreamCleanup,
): AsyncGenerator<{ index: number; batches: AsyncIterable<arrow.RecordBatch> }> {
  // Partition 0 here: the consumer's first batch needs no worker hand-off.
  const local = (k: number): boolean => k % parallelism === 0;
  const remote = new Map<number, RemoteStream>();
  let nextRemote = 0;
  let running = 0;
  let i = 0;
  let stopped = false;
  const letGo = p.use();
  const pump = (): void => {
    // A worker that finishes after the consumer stopped starts nothing more.
    if (stopped) return;
    for (;;) {
      while (nextRemote < tasks.length && local(nextRemote)) nextRemote++;
      // As on workers alone, at most `parallelism` partitions hold batches: the consumed one and
      // those started ahead of it (a local partition holds none before the consumer reaches it).
      let holding = local(i) ? 1 : 0;
      for (const k of remote.keys()) if (k >= i) holding++;
      if (nextRemote >= tasks.length || running >= parallelism - 1 || holding >= parallelism) break;
      const k = nextRemote++;
      running++;
      const r = new RemoteStream(p, tasks[k]!, window, ctx.metrics, ctx.signal, router, ctx.trace);
      r.settled.then(() => {
        running--;
        pump();
      });
      remote.set(k, r);
    }
    if (nextRemote >= tasks.length) letGo();
  };
  cleanup.stop = () => {
    stopped = true;
    letGo();
    for (const [k, r] of remote) if (k > i) r.cancel();
  };
  try {
    for (; i < tasks.length; i++) {
      pump();
      const t = tasks[i]!;
      yield { index: i, batches: local(i) ? inProcess(t, execCtx, ctx) : remote.get(i)!.handOut() };
      remote.delete(i);
    }
  } finally {
    cleanup.stop = undefined;
    stopped = true;
    letGo();
    for (const r of remote.values()) r.cancel();
  }
}

/** A partition run in this thread; its metrics and trace are recorded when its stream ends. */
async function* inProcess(t: PartitionTask, execCtx: ExecContext, ctx: EmbeddedRunContext): AsyncGenerator<arrow.RecordBatch> {
  // The driver counts each partition into its own forked runtime: a failed or abandoned run's
  // counts never reach the next action.
  const run = runPartition(t, execCtx);
  let error: unknown;
  try {
    yield* run;
  } catch (err) {
    error = inPartition(err, describeTask(t));
    throw error;
  } finally {
    // Also when the consumer stops early (limit, show, break): this run's counters are its own.
    if (ctx.metrics) mergeMetrics(ctx.metrics, run.outcome().metrics);
    ctx.trace?.partition({ index: t.index, source: t.source, outcome: run.outcome(), ...(error === undefined ? {} : { error }) });
  }
}

/** The whole plan as one ordered stream: partitions merged in order, then the global operators. */
function executeStream(plan: PhysicalPlan, options: ResolvedEmbeddedOptions, ctx: EmbeddedRunContext, handle?: RunHandle): AsyncIterable<arrow.RecordBatch> {
  async function* merged(): AsyncGenerator<arrow.RecordBatch> {
    // The merged stream shares decoding; partitions() shares only a reducing aggregation's phase one
    // (phaseOneLookahead).
    for await (const part of streamPartitions(plan, options, ctx, handle, 'shared')) {
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
    const arm = (a: Active): void => {
      a.next = a.it.next().then((r) => ({ a, r }));
    };
    let exhausted = false;
    const fill = async (): Promise<void> => {
      while (!exhausted && (active.size === 0 || active.size < (h.parallelism ?? 1))) {
        const p = await parts.next();
        if (p.done) {
          exhausted = true;
          break;
        }
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
async function executeSinks(
  plan: PhysicalPlan,
  tasks: PartitionTask[],
  options: ResolvedEmbeddedOptions,
  ctx: EmbeddedRunContext,
): Promise<PartitionOutcome[]> {
  const router = actorRouter(plan, options);
  const execCtx: ExecContext = { ...ctx, batchSize: options.batchSize };
  const rt = routedRuntime(router);
  if (rt) execCtx.rt = rt;
  const placement = place(plan, options, router, true);
  if (!placement) {
    const out: PartitionOutcome[] = [];
    for (const t of tasks) {
      let r: PartitionOutcome;
      const since = Date.now();
      try {
        r = await runPartition(t, execCtx, { kind: 'file', ...t.sink! });
      } catch (err) {
        const error = inPartition(err, describeTask(t));
        ctx.trace?.partition({
          index: t.index,
          source: t.source,
          error,
          failedSince: since,
          ...(err instanceof AbortError && err.outcome ? { outcome: err.outcome } : {}),
        });
        throw error;
      }
      if (ctx.metrics) mergeMetrics(ctx.metrics, r.metrics);
      ctx.trace?.partition({ index: t.index, source: t.source, outcome: r });
      out.push(r);
    }
    return out;
  }
  const p = placement.pool;
  const signal = ctx.signal;
  // Settle every task before reporting a failure, so the caller's abort cannot race a late writer.
  const settled = await Promise.allSettled(
    tasks.map((t) => {
      if (signal?.aborted) return Promise.reject(new AbortError(`aborted (${describeTask(t)})`, { cause: signal.reason }));
      let onAbort: (() => void) | null = null;
      const since = Date.now();
      return new Promise<PartitionOutcome>((resolve, reject) => {
        let result: PartitionOutcome | null = null;
        const controls = p.run(
          t,
          1,
          {
            onBatch: () => undefined,
            onMetrics: (m, outcome) => {
              if (ctx.metrics) mergeMetrics(ctx.metrics, m);
              if (outcome) ctx.trace?.partition({ index: t.index, source: t.source, outcome });
            },
            onSink: (r) => {
              result = r;
            },
            onDone: () => (result ? resolve(result) : reject(new Error(`${describeTask(t)} wrote nothing`))),
            onError: reject,
            ...(router ? { onUdfCall: (c: UdfCallRequest) => router.relay(c) } : {}),
          },
          describeTask(t),
          signal,
          router?.windows(),
        );
        controls.catch(reject);
        // The worker stops between batches and reports an AbortError, which settles this task.
        onAbort = () => {
          controls.then(
            (c) => c.cancel(),
            () => undefined,
          );
        };
        signal?.addEventListener('abort', onAbort, { once: true });
      })
        .catch((error: unknown) => {
          ctx.trace?.partition({ index: t.index, source: t.source, error, failedSince: since });
          throw error;
        })
        .finally(() => {
          if (onAbort) signal?.removeEventListener('abort', onAbort);
        });
    }),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<PartitionOutcome>).value);
}

/**
 * Explain's physical part: partitions and where they run; with `stagesTargetBytes`, also the
 * serverless stages (partitioned as the serverless runner would).
 */
export function describePlan(optimized: PlanNode, options: ResolvedEmbeddedOptions, stagesTargetBytes: number | null, reducing = false): string {
  if (endsInRelational(optimized)) return describeRelational(optimized, options, (p, r) => describePlan(p, options, stagesTargetBytes, r));
  const placed = reducing ? reducingInput(optimized, options) : { physical: buildPhysicalPlan(optimized, embeddedPhysicalOptions(options)), options };
  const physical = placed.physical;
  const text = physicalPlanToString(physical, describePlacement(physical, placed.options));
  if (stagesTargetBytes === null) return text;
  const run = buildPhysicalPlan(optimized, { targetPartitionBytes: stagesTargetBytes, minPartitions: AWS_MIN_PARTITIONS });
  return `${text}\n\n${stagesToString(run, splitStages(run))}`;
}

/**
 * The input of an aggregation whose partitions end in its phase one: only partial states leave
 * them, so feeding worker threads costs little. With `workers: 'auto'` it takes them once its
 * decoded size reaches workerThresholdBytes (estimated at 8 bytes a value at least: dictionary
 * and run-length encoded columns decode to far more than their encoded size); with workers, every
 * thread gets a partition.
 */
function reducingInput(plan: PlanNode, o: ResolvedEmbeddedOptions): { physical: PhysicalPlan; options: ResolvedEmbeddedOptions } {
  const physical = buildPhysicalPlan(plan, embeddedPhysicalOptions(o));
  const scan = physical.scan;
  const decoded = Math.max(scan.uncompressedBytes, scan.rows * 8 * scan.columns.length);
  if (o.workers === false || o.parallelism < 2 || scan.format === 'memory') return { physical, options: o };
  if (o.workers === 'auto' && decoded < o.workerThresholdBytes) return { physical, options: o };
  const options: ResolvedEmbeddedOptions = { ...o, workers: true };
  if (physical.partitions.length >= o.parallelism || physical.globalOps.length || hasIntoPartitions(plan)) return { physical, options };
  // Fewer partitions than threads: split evenly by rows, as intoPartitions(n) does.
  const split: PlanNode = { type: 'intoPartitions', input: plan, n: o.parallelism, schema: plan.schema };
  return { physical: buildPhysicalPlan(split, embeddedPhysicalOptions(options)), options };
}

/** For in-process A/B measurements (bench/groupby.ts): `false` runs every partition of phase one on the workers. */
export const aggregateTuning = { sharedPhaseOne: true };

/**
 * Phase one of a reducing aggregation on 2 threads: this thread, which merges the partial states,
 * would otherwise only wait for them; so it runs every other partition's phase one itself, beside
 * one worker, as a scan without UDFs does (sharesDecoding): one worker hand-off and one worker's
 * start-up fewer. The bench's groupBy over 8 keys, under other load: a fresh process's first run
 * took 1.2-1.5 s of CPU against 1.9-2.5 s; in the bench's regime (1 warm-up) its wall median fell
 * 100 -> 78 ms (9 pairs); after 8 warm-ups CPU and wall are the same within noise; the idle
 * machine's figures are not measured yet (docs/performance.md, "Session 5"). Keys
 * that statistics show mostly distinct (groupsReduce false) keep the ordered placement: their
 * phase one passes rows on, and this thread is busy merging them.
 */
function phaseOneLookahead(): 'ordered' | 'shared' {
  return aggregateTuning.sharedPhaseOne ? 'shared' : 'ordered';
}

function keyNames(op: PartialAggregateOp): string[] {
  return op.schema.fields.slice(0, op.keys).map((f) => f.name);
}

function hasIntoPartitions(plan: PlanNode): boolean {
  for (let n: PlanNode = plan; ; n = n.input) {
    if (n.type === 'intoPartitions') return true;
    if (!('input' in n)) return false;
  }
}

/**
 * A partition of a plan without UDFs goes to a worker only with at least this many projected
 * (uncompressed) bytes. Measured (id, x scans, load 14-17, in-process against 2 partitions on 2
 * workers, medians of 7 alternated rounds): 4 MiB took 50 ms in-process and 56-73 ms on workers
 * (+8 ms CPU of hand-off); 8 MiB 124 ms against 85-100 ms; 16 MiB 271 against 129-159 ms.
 */
const WORKER_PARTITION_MIN_BYTES = 4 << 20;

/**
 * Partition sizing here: with UDFs, at least one partition per thread that can run one; without,
 * as many (of at least WORKER_PARTITION_MIN_BYTES) when the scan would use workers.
 */
function embeddedPhysicalOptions(o: ResolvedEmbeddedOptions): PhysicalOptions {
  if (o.workers === false) return { targetPartitionBytes: o.targetPartitionBytes, minPartitions: 1 };
  const scanBytes = o.workers === true ? 0 : o.workerThresholdBytes;
  return {
    targetPartitionBytes: o.targetPartitionBytes,
    minPartitions: o.parallelism,
    splitWithoutUdfs: { partitionBytes: WORKER_PARTITION_MIN_BYTES, scanBytes },
  };
}

/** The default runner: this process and its worker threads (or GPU child processes). */
export class EmbeddedRunner implements Runner {
  readonly name: string = 'native';
  constructor(readonly options: ResolvedEmbeddedOptions) {}

  private physical(plan: PlanNode): PhysicalPlan {
    return buildPhysicalPlan(optimize(plan), embeddedPhysicalOptions(this.options));
  }

  stream(plan: PlanNode, ctx: ActionContext): AsyncIterable<arrow.RecordBatch> {
    if (endsInRelational(plan)) return streamRelational(plan, ctx, this);
    const physical = this.physical(plan);
    const options = this.options;
    return (async function* () {
      const run: EmbeddedRunContext = { memory: ctx.memory, metrics: {} };
      if (ctx.signal) run.signal = ctx.signal;
      // Reading data already in memory without UDFs (show/count of a collected result) needs no bar.
      const quiet = physical.scan.format === 'memory' && physical.udfs.length === 0;
      const progress = quiet
        ? startProgress('fanout', 0, [], false)
        : startProgress(
            'fanout',
            physical.partitions.length,
            physical.udfs.map((u) => u.name),
            undefined,
            ctx.onProgress,
          );
      run.progress = progress;
      // Nor a trace: it ran no partition of anyone's pipeline.
      const trace = quiet ? null : await traceAction('stream', physical);
      run.trace = trace?.stage ?? null;
      let failure: unknown;
      try {
        yield* executeStream(physical, options, run);
      } catch (err) {
        failure = err;
        throw err;
      } finally {
        progress.stop();
        if (physical.udfs.length) ctx.onMetrics?.(run.metrics!);
        trace?.end(failure);
      }
    })();
  }

  /** `tail`: operators every partition runs last, on its worker thread (relational/execute.ts). */
  async *partitions(plan: PlanNode, ctx: ActionContext, tail: readonly OpJSON[] = []): AsyncGenerator<ResultPartition> {
    if (endsInRelational(plan)) {
      for await (const p of relationalPartitions(plan, ctx, this)) yield tail.length ? { index: p.index, batches: applyOps(p.batches, tail) } : p;
      return;
    }
    const optimized = optimize(plan);
    // Phase one of an aggregation whose keys are not known to be mostly distinct: its partitions reduce their rows.
    const reducing = tail.some((op) => op.type === 'partialAggregate' && groupsReduce(optimized, keyNames(op)) !== false);
    const placed = reducing ? reducingInput(optimized, this.options) : { physical: this.physical(plan), options: this.options };
    let physical = placed.physical;
    if (physical.globalOps.length) {
      // A global limit makes the whole result one partition.
      yield { index: 0, batches: applyOps(this.stream(plan, ctx), tail) };
      return;
    }
    if (tail.length) physical = { ...physical, partitions: physical.partitions.map((t) => ({ ...t, ops: [...t.ops, ...tail] })) };
    const run: EmbeddedRunContext = { memory: ctx.memory, metrics: {} };
    if (ctx.signal) run.signal = ctx.signal;
    const trace = await traceAction('partitions', physical);
    run.trace = trace?.stage ?? null;
    let failure: unknown;
    try {
      yield* streamPartitions(physical, placed.options, run, undefined, reducing ? phaseOneLookahead() : 'ordered');
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      if (physical.udfs.length) ctx.onMetrics?.(run.metrics!);
      trace?.end(failure);
    }
  }

  async write(plan: PlanNode, spec: DatasetSinkSpec, ctx: ActionContext): Promise<WrittenFile[]> {
    const writer = await DatasetWriter.begin(spec.uri, { format: spec.format, mode: spec.mode });
    try {
      let parts: WrittenFile[];
      const physical = endsInRelational(plan) ? null : this.physical(plan);
      if (spec.partitionBy && (!physical || physical.globalOps.length || physical.scan.format === 'memory')) {
        // A hive layout of one ordered stream (a global limit, or data in memory): split on this thread.
        parts = await writePartitionedParts(
          writer,
          0,
          this.stream(plan, ctx),
          planSchema(plan),
          spec.partitionBy,
          { ...spec.parquet },
          spec.mode !== 'overwrite-partitions',
        );
      } else if (spec.partitionBy && physical) {
        // A hive layout written by the partitions themselves (worker threads where placed): each task
        // writes one file per partition directory it has rows for; the commit gathers them all.
        const partitionBy = spec.partitionBy;
        const tasks: PartitionTask[] = physical.partitions.map((t) => ({
          ...t,
          sink: { format: spec.format, path: writer.partPath(t.index), schema: plan.schema, partitionBy, ...(spec.parquet ? { parquet: spec.parquet } : {}) },
        }));
        const run: EmbeddedRunContext = { memory: ctx.memory, metrics: {} };
        if (ctx.signal) run.signal = ctx.signal;
        const results = await executeSinks(physical, tasks, this.options, run);
        const written = results.flatMap((r) => (r.files ?? []).map(({ path, rows, bytes }) => ({ path, rows, bytes })));
        parts = await partitionedCommitParts(writer, written, planSchema(plan), partitionBy, spec.mode !== 'overwrite-partitions');
        ctx.onMetrics?.(run.metrics!);
      } else if (!physical || physical.globalOps.length || physical.scan.format === 'memory') {
        // One ordered stream (a global limit, or data already in memory): a single part file.
        parts = [await writer.writePart(0, this.stream(plan, ctx), { ...spec.parquet, schema: planSchema(plan) })];
      } else {
        const tasks: PartitionTask[] = physical.partitions.map((t) => ({
          ...t,
          sink: { format: spec.format, path: writer.partPath(t.index), schema: plan.schema, ...(spec.parquet ? { parquet: spec.parquet } : {}) },
        }));
        const run: EmbeddedRunContext = { memory: ctx.memory, metrics: {} };
        if (ctx.signal) run.signal = ctx.signal;
        const trace = await traceAction('write', physical, { 'fanout.output': spec.uri });
        run.trace = trace?.stage ?? null;
        const results = await executeSinks(physical, tasks, this.options, run).catch((err: unknown) => {
          trace?.end(err);
          throw err;
        });
        trace?.end();
        parts = results.map((r) => ({ path: r.path, rows: r.rows, bytes: r.bytes }));
        // Empty partitions leave no files, unless every one is empty (keep one, for the schema).
        const nonEmpty = parts.filter((p) => p.rows > 0);
        parts = nonEmpty.length ? nonEmpty : parts.slice(0, 1);
        ctx.onMetrics?.(run.metrics!);
      }
      // An abort that came while the last part was closing still commits nothing.
      if (ctx.signal?.aborted) throw new AbortError(`aborted before committing ${spec.uri}`, { cause: ctx.signal.reason });
      return await writer.commit(parts);
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  describe(optimized: PlanNode, req: ExplainRequest = {}): string {
    return describePlan(optimized, this.options, req.stages ? 128 << 20 : null);
  }
}

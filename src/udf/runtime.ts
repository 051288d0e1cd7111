// The UDF runtime a thread holds: class instances and in-flight caps, shared by its forks; each
// fork (one per partition run) counts its own metrics.
import type * as arrow from 'apache-arrow';
import { decodeLiteral, type UdfCallNode } from '../expressions.ts';
import type { UdfDefinition } from '../udf.ts';
import { wrapError } from './errors.ts';
import { emptyStats, type RunMetrics, type UdfStats } from './metrics.ts';

/** One UDF call answered by an actor: the result column (and a generator's parents) plus the call's metrics. */
export interface RemoteCallResult {
  data: arrow.Data;
  parents?: Int32Array;
  metrics: RunMetrics;
}

/**
 * Routes calls of actor-pool UDFs (concurrency instances, GPU instances) away from this thread: the
 * batch's argument columns travel to a free actor, the result column comes back.
 */
export interface RemoteUdfs {
  /** Calls of `name` in flight at once from one partition (the pool's size); 0 when it runs here. */
  window(name: string): number;
  call(node: UdfCallNode, args: arrow.Data[], n: number, offset: number, label: string | null): Promise<RemoteCallResult>;
}

/** What a UDF-running thread holds: class instances, in-flight caps; a fork per partition run counts its metrics. */
export class UdfRuntime {
  readonly metrics: RunMetrics = {};
  private instances = new Map<string, object>();
  private inflight = new Map<string, Semaphore>();
  constructorCalls = 0;
  /** What this runtime runs (e.g. `partition 3: /data/f.parquet`), for stall warnings and errors. */
  label: string | null = null;
  /** UDFs that run in an actor pool elsewhere (concurrency instances serving every partition). */
  remote: RemoteUdfs | null = null;

  /** A runtime with its own metrics that shares this one's class instances and in-flight caps. */
  fork(label: string | null = null): UdfRuntime {
    const f = new UdfRuntime();
    f.instances = this.instances;
    f.inflight = this.inflight;
    f.label = label;
    f.remote = this.remote;
    return f;
  }

  stats(name: string): UdfStats {
    return (this.metrics[name] ??= emptyStats());
  }

  /** One instance per (class, constructor arguments) in this thread/process. */
  instance(def: UdfDefinition, node: UdfCallNode): object {
    const key = `${def.name.split('.')[0]}\u0000${JSON.stringify(node.init ?? [])}`;
    let inst = this.instances.get(key);
    if (!inst) {
      const args = (node.init ?? []).map(decodeLiteral);
      const Ctor = def.cls!.ctor as unknown as new (...a: unknown[]) => object;
      try {
        inst = new Ctor(...args);
      } catch (err) {
        throw wrapError(err, `constructing UDF class for '${def.name}'`);
      }
      this.constructorCalls++;
      this.instances.set(key, inst);
    }
    return inst;
  }

  semaphore(def: UdfDefinition): Semaphore {
    let s = this.inflight.get(def.name);
    if (!s) this.inflight.set(def.name, (s = new Semaphore(def.options.maxConcurrency)));
    return s;
  }
}

/** The runtime of this thread (worker threads and processes each have their own). */
export const runtime = new UdfRuntime();

/** Caps calls in flight: the cap is per call, shared by all batches of an instance. */
export class Semaphore {
  private active = 0;
  private queue: (() => void)[] = [];
  maxSeen = 0;
  constructor(readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    if (this.active > this.maxSeen) this.maxSeen = this.active;
  }
  release(): void {
    this.active--;
    this.queue.shift()?.();
  }
}

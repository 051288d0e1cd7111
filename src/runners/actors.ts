// Actor pools (Daft's semantics for `concurrency`): a UDF that declares concurrency instances (a `cls`
// with `concurrency`, or any UDF with `numGpus` on a machine with GPUs) runs in N long-lived actors, worker
// threads or, for GPU UDFs, child processes each started with its own CUDA_VISIBLE_DEVICES. Partitions
// run with the runner's full parallelism wherever they are placed (in-process, or on partition worker
// threads that relay through this process) and send each batch's argument columns to any free actor.
import type * as arrow from 'apache-arrow';
import type { UdfCallNode } from '../expressions.ts';
import { detectGpus, gpuSlots } from '../resources.ts';
import type { RemoteCallResult, RemoteUdfs } from '../udf-exec.ts';
import type { UdfDefinition } from '../udf.ts';
import { WorkerPool } from './pool.ts';
import { argsFromIPC, argsToIPC, type UdfCallReply, type UdfCallRequest } from './protocol.ts';

/** How one UDF's actors are placed. */
export interface ActorSpec {
  size: number;
  /** Per actor, its CUDA_VISIBLE_DEVICES (child processes); null: worker threads. */
  devices: string[] | null;
  /** The module that defines the UDF, for the actors to import. */
  modules: string[];
}

/** For explain: `actor pool Probe1.probe: 4 GPU processes (CUDA_VISIBLE_DEVICES 0|1|2|3)`. */
export function describeActors(specs: ReadonlyMap<string, ActorSpec>): string {
  return [...specs]
    .map(([name, s]) =>
      s.devices
        ? `actor pool ${name}: ${s.size} GPU processes on ${new Set(s.devices.flatMap((d) => d.split(','))).size} device(s) (CUDA_VISIBLE_DEVICES ${s.devices.join('|')})`
        : `actor pool ${name}: ${s.size} worker thread(s)`,
    )
    .join('; ');
}

/**
 * Which of `udfs` run in actor pools. `shippable` says whether a UDF's module can be imported by an
 * actor (a UDF defined in the main script cannot: it stays where today's rules put it); `threads`:
 * whether CPU actors (worker threads) may be used.
 */
export function actorSpecs(udfs: readonly UdfDefinition[], shippable: (u: UdfDefinition) => boolean, threads = true): Map<string, ActorSpec> {
  const out = new Map<string, ActorSpec>();
  for (const u of udfs) {
    if (!u.moduleUrl || !shippable(u)) continue;
    const modules = [u.moduleUrl];
    const { numGpus, concurrency } = u.options;
    const gpus = numGpus > 0 ? detectGpus() : 0;
    if (gpus > 0) {
      let devices: string[];
      try {
        devices = gpuSlots(numGpus, gpus, concurrency);
      } catch (e) {
        throw new Error(`UDF '${u.name}' ${(e as Error).message}`);
      }
      out.set(u.name, { size: devices.length, devices, modules });
    } else if (threads && concurrency !== null && u.cls) {
      out.set(u.name, { size: concurrency, devices: null, modules });
    }
  }
  return out;
}

interface ActorPool {
  pool: WorkerPool;
  /** Every actor started and its instance constructed (a failing constructor fails the calls). */
  started: Promise<void>;
}

// Cached across actions (like the partition worker pool): instances (a loaded model) are paid once.
const pools = new Map<string, ActorPool>();

/** The actors of `node` (its class and constructor arguments: methods of one instance share them). */
function poolFor(node: UdfCallNode, def: ActorSpec): ActorPool {
  const owner = node.name.split('.')[0]!;
  const key = JSON.stringify([owner, node.init ?? [], def.size, def.devices]);
  let p = pools.get(key);
  if (!p) {
    const pool = new WorkerPool(
      def.size,
      {},
      def.devices?.map((d) => ({ CUDA_VISIBLE_DEVICES: d })),
    );
    const started = pool.startAll((taskId) => ({ type: 'init', taskId, node, modules: def.modules }), `starting actors of UDF '${node.name}'`);
    p = { pool, started };
    pools.set(key, p);
    const failed = p;
    // A constructor that throws fails this action's calls; the next action starts fresh actors.
    started.catch(() => {
      if (pools.get(key) === failed) pools.delete(key);
      void pool.close();
    });
  }
  return p;
}

/** Stops every actor (shutdownWorkers). */
export async function shutdownActors(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.pool.close()));
}

/** Routes an action's actor-pool UDF calls (in-process partitions call it; worker threads relay to it). */
export class ActorRouter implements RemoteUdfs {
  constructor(readonly specs: ReadonlyMap<string, ActorSpec>) {}

  window(name: string): number {
    return this.specs.get(name)?.size ?? 0;
  }

  /** Names and pool sizes, for the partition workers' run messages. */
  windows(): Record<string, number> {
    return Object.fromEntries([...this.specs].map(([n, s]) => [n, s.size]));
  }

  async call(node: UdfCallNode, args: arrow.Data[], n: number, offset: number, label: string | null): Promise<RemoteCallResult> {
    const reply = await this.relay({ node, modules: [], ipc: argsToIPC(args, n), n, offset, label });
    const data = argsFromIPC(reply.ipc)[0]!;
    return reply.parents ? { data, parents: reply.parents, metrics: reply.metrics } : { data, metrics: reply.metrics };
  }

  /** One call, already encoded, to a free actor of its UDF. */
  async relay(call: UdfCallRequest): Promise<UdfCallReply> {
    const spec = this.specs.get(call.node.name);
    if (!spec) throw new Error(`UDF '${call.node.name}' has no actor pool in this action`);
    const p = poolFor(call.node, spec);
    await p.started;
    const context = call.label ?? `UDF '${call.node.name}'`;
    return p.pool.request((taskId) => ({ type: 'call', taskId, call: { ...call, modules: spec.modules } }), context);
  }
}

// Worker-thread entrypoint of the embedded runner: runs partition tasks with the partition driver
// and streams result batches back (packed and transferred, never cloned) under credit-based backpressure
// (the driver's 'ipc' sink), so a fast worker never buffers more than its credits.
import { parentPort, workerData as threadData } from 'node:worker_threads';
import { isAbortError, runPartition, type AbortError, type ExecContext, type IpcSink } from '../executor.ts';
import { warmParquet } from '../io/parquet/index.ts';
import { parquetWasmSource, receiveParquetWasm } from '../io/parquet/wasm.ts';
import { callUdf, constructInstance, mergeMetrics, runtime, setSyncGuard, type RunMetrics, type UdfRuntime } from '../udf-exec.ts';
import { getUdf } from '../udf.ts';
import type { UdfCallNode } from '../expressions.ts';
import { SharedSyncGuard } from './sync-guard.ts';
import { importUserModule } from './ts-worker.ts';
import { describeTask } from '../physical.ts';
import type { FromWorker, ToWorker, UdfCallReply, UdfCallRequest } from './protocol.ts';
import { argsFromIPC, argsToIPC, deserializeError, serializeError } from './protocol.ts';
import { batchToWire } from './transfer.ts';

/** A worker thread's parentPort, or the IPC channel of a child process (GPU instances). */
interface Port {
  postMessage(m: FromWorker, transfer?: ArrayBuffer[]): void;
  on(event: 'message', f: (m: ToWorker) => void): void;
}
function processPort(): Port {
  if (!process.send) throw new Error('worker.ts must run in a worker thread or a forked child process');
  // The parent going away must end this process (no orphans).
  process.on('disconnect', () => process.exit(0));
  return {
    postMessage: (m) => {
      process.send!(m);
    },
    on: (_e, f) => {
      process.on('message', f as (m: unknown) => void);
    },
  };
}
const port: Port = parentPort ?? processPort();
const workerData: unknown = parentPort ? threadData : JSON.parse(process.env['FANOUT_WORKER_DATA'] ?? '{}');

interface Running {
  credits: number;
  cancelled: boolean;
  wake: (() => void) | null;
  /** Aborted by the parent's cancel: the driver stops between batches (reads and UDF calls). */
  abort: AbortController;
}
const running = new Map<number, Running>();
// Worker threads share a deadline buffer with the pool, which ends a thread stuck in a synchronous call.
const guardBuffer = (workerData as { syncGuard?: unknown } | null)?.syncGuard;
if (guardBuffer instanceof SharedArrayBuffer) setSyncGuard(new SharedSyncGuard(guardBuffer));
const batchSize = (workerData as { batchSize?: number } | null)?.batchSize;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

async function run(taskId: number, msg: Extract<ToWorker, { type: 'run' }>): Promise<void> {
  const state: Running = { credits: msg.credits, cancelled: false, wake: null, abort: new AbortController() };
  running.set(taskId, state);
  try {
    // The driver forks this thread's runtime per task: its metrics (and its label in stall
    // warnings) are this task's alone.
    const ctx: ExecContext = { rt: msg.actors ? relayRuntime(taskId, msg.actors) : runtime, signal: state.abort.signal, label: describeTask(msg.task) };
    if (batchSize) ctx.batchSize = batchSize;
    // UDFs resolve by name: importing their defining modules registers them in this thread.
    for (const m of msg.task.modules ?? []) await importUserModule(m);
    if (msg.task.sink) {
      const result = await runPartition(msg.task, ctx, { kind: 'file', ...msg.task.sink });
      post({ type: 'sink', taskId, result, metrics: result.metrics });
      return;
    }
    const sink: IpcSink = {
      kind: 'ipc',
      credit: async () => {
        while (state.credits <= 0 && !state.cancelled) await new Promise<void>((r) => (state.wake = r));
        if (state.cancelled) return false;
        state.credits--;
        return true;
      },
      post: (b) => {
        // Buffers the reader or a kernel allocated are moved, not copied; those a UDF was given were
        // disowned when it was called (it may keep them), so they are packed (kernels/owned.ts).
        const wire = batchToWire(b, true);
        post({ type: 'batch', taskId, wire, rows: b.numRows }, wire.owned ? [wire.bytes, ...wire.owned] : [wire.bytes]);
      },
    };
    const result = await runPartition(msg.task, ctx, sink);
    post({ type: 'done', taskId, metrics: result.metrics, outcome: result });
  } catch (err) {
    // A streamed partition the parent cancelled (its consumer stopped, or an abort) ends quietly
    // with what it counted; a file it was writing must fail, so its dataset commits nothing.
    if (state.cancelled && !msg.task.sink && isAbortError(err)) {
      post({ type: 'done', taskId, metrics: (err as AbortError).outcome?.metrics ?? {} });
    } else {
      post({ type: 'error', taskId, error: serializeError(err) });
    }
  } finally {
    running.delete(taskId);
  }
}

// ------------------------------------------------------------------ actor pools

let nextCallId = 1;
const relayed = new Map<number, { resolve: (r: UdfCallReply) => void; reject: (e: Error) => void }>();

/** A runtime whose actor-pool UDFs go to the parent, which routes each call to a free actor. */
function relayRuntime(taskId: number, actors: Record<string, number>): UdfRuntime {
  const rt = runtime.fork();
  rt.remote = {
    window: (name) => actors[name] ?? 0,
    call: async (node, args, n, offset, label) => {
      const callId = nextCallId++;
      const call: UdfCallRequest = { node, modules: [], ipc: argsToIPC(args, n), n, offset, label };
      const reply = await new Promise<UdfCallReply>((resolve, reject) => {
        relayed.set(callId, { resolve, reject });
        post({ type: 'udfCall', taskId, callId, call }, [call.ipc.buffer as ArrayBuffer]);
      });
      const data = argsFromIPC(reply.ipc)[0]!;
      return reply.parents ? { data, parents: reply.parents, metrics: reply.metrics } : { data, metrics: reply.metrics };
    },
  };
  return rt;
}

/** Actor side: the UDF's modules are imported once; the class instance lives in this thread's runtime. */
async function load(modules: string[]): Promise<void> {
  for (const m of modules) await importUserModule(m);
}

/** What the constructor counted (a model load): reported with this actor's next call, in its action's metrics. */
let initMetrics: RunMetrics | null = null;

async function actorInit(taskId: number, node: UdfCallNode, modules: string[]): Promise<void> {
  try {
    await load(modules);
    const rt = runtime.fork();
    constructInstance(getUdf(node.name), node, rt);
    initMetrics = mergeMetrics(initMetrics ?? {}, rt.metrics);
    post({ type: 'result', taskId, reply: { ipc: new Uint8Array(0), metrics: {} } });
  } catch (err) {
    post({ type: 'error', taskId, error: serializeError(err) });
  }
}

async function actorCall(taskId: number, call: UdfCallRequest): Promise<void> {
  try {
    await load(call.modules);
    // A fork per call: its metrics are this call's, summed into the calling partition's.
    const rt = runtime.fork(call.label);
    if (initMetrics) {
      mergeMetrics(rt.metrics, initMetrics);
      initMetrics = null;
    }
    const r = await callUdf(call.node, argsFromIPC(call.ipc), call.n, rt, call.offset);
    const ipc = argsToIPC([r.data], r.data.length);
    const reply: UdfCallReply = { ipc, metrics: rt.metrics };
    if (r.parents) reply.parents = r.parents;
    post({ type: 'result', taskId, reply }, [ipc.buffer as ArrayBuffer]);
  } catch (err) {
    post({ type: 'error', taskId, error: serializeError(err) });
  }
}

port.on('message', (msg: ToWorker) => {
  // A throw here would end the worker (and every task on it): it fails this message's task instead.
  try {
    handleMessage(msg);
  } catch (err) {
    const s = running.get(msg.taskId);
    if (s) {
      s.cancelled = true;
      s.abort.abort();
      s.wake?.();
      s.wake = null;
    }
    post({ type: 'error', taskId: msg.taskId, error: serializeError(err) });
  }
});

function handleMessage(msg: ToWorker): void {
  switch (msg.type) {
    case 'run':
      void run(msg.taskId, msg);
      break;
    case 'credit': {
      const s = running.get(msg.taskId);
      if (s) {
        s.credits += msg.n;
        s.wake?.();
        s.wake = null;
      }
      break;
    }
    case 'init':
      void actorInit(msg.taskId, msg.node, msg.modules);
      break;
    case 'call':
      void actorCall(msg.taskId, msg.call);
      break;
    case 'udfResult':
    case 'udfError': {
      const w = relayed.get(msg.callId);
      relayed.delete(msg.callId);
      if (w && msg.type === 'udfResult') w.resolve(msg.reply);
      else if (w && msg.type === 'udfError') w.reject(deserializeError(msg.error));
      break;
    }
    case 'parquetWasm':
      receiveParquetWasm(msg.module);
      break;
    case 'cancel': {
      const s = running.get(msg.taskId);
      if (s) {
        s.cancelled = true;
        s.abort.abort();
        s.wake?.();
        s.wake = null;
      }
      break;
    }
  }
}

// parquet-wasm's first call is slow: pay it while the pool starts, not on the first task.
void warmParquet().then(
  () => post({ type: 'ready', parquetWasm: parquetWasmSource() }),
  (err: unknown) => post({ type: 'fatal', error: serializeError(err) }),
);

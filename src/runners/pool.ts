// A pool of worker threads that run partition tasks. Workers are started lazily, kept warm between
// actions (parquet-wasm start-up is paid once), and unref'd so they never keep the process alive.
import type * as arrow from 'apache-arrow';
import { fork, type ChildProcess } from 'node:child_process';
import { AbortError, type PartitionOutcome } from '../executor.ts';
import type { PartitionTask } from '../physical.ts';
import type { FromWorker, ToWorker, UdfCallReply, UdfCallRequest } from './protocol.ts';
import type { RunMetrics } from '../udf-exec.ts';
import { deserializeError, serializeError } from './protocol.ts';
import { batchFromWire } from './transfer.ts';
import { newSyncGuardBuffer, overdueSyncCall } from './sync-guard.ts';

/** How far past a synchronous UDF call's timeoutMs the pool waits before terminating its thread. */
const SYNC_TIMEOUT_GRACE_MS = 1000;
import { startTsWorker } from './ts-worker.ts';
import { parquetWasmCompiled, parquetWasmModule } from '../io/parquet/wasm.ts';

export interface TaskHandlers {
  onBatch(batch: arrow.RecordBatch): void;
  /** `outcome`: the driver's measurements (absent for a cancelled task), for trace spans. */
  onMetrics?(m: RunMetrics, outcome?: PartitionOutcome): void;
  onDone(): void;
  onSink?(result: PartitionOutcome): void;
  onError(err: Error): void;
  /** Actors: the answer to an 'init' or 'call'. */
  onResult?(reply: UdfCallReply): void;
  /** Partition tasks: a call of an actor-pool UDF, routed by the parent to a free actor. */
  onUdfCall?(call: UdfCallRequest): Promise<UdfCallReply>;
}

/** A worker thread or a child process (GPU instances), behind one small interface. */
interface Endpoint {
  post(m: ToWorker): void;
  on(event: 'message', f: (m: FromWorker) => void): void;
  onFailure(f: (err: Error) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<void>;
}

function threadEndpoint(url: URL, workerData: object): Endpoint {
  const w = startTsWorker(url, { workerData });
  return {
    post: (m) => w.postMessage(m),
    on: (_e, f) => {
      w.on('message', f);
    },
    onFailure: (f) => {
      w.on('error', f);
      w.on('exit', (code) => f(new Error(`worker thread exited with code ${code}`)));
    },
    ref: () => w.ref(),
    unref: () => w.unref(),
    terminate: async () => {
      await w.terminate();
    },
  };
}

function processEndpoint(url: URL, workerData: object, env: Record<string, string>): Endpoint {
  const child: ChildProcess = fork(url, [], {
    env: { ...process.env, ...env, FANOUT_WORKER_DATA: JSON.stringify(workerData) },
    execArgv: process.execArgv,
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    post: (m) => {
      child.send(m);
    },
    on: (_e, f) => {
      child.on('message', f as (m: unknown) => void);
    },
    onFailure: (f) => {
      child.on('error', f);
      child.on('exit', (code, signal) => {
        f(new Error(`worker process exited with ${signal ?? `code ${code}`}`));
      });
    },
    ref: () => {
      child.ref();
      (child.channel as { ref?: () => void } | undefined)?.ref?.();
    },
    unref: () => {
      child.unref();
      (child.channel as { unref?: () => void } | undefined)?.unref?.();
    },
    terminate: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.ref(); // an unref'd child's exit would not keep this process waiting for it
      child.kill();
      await exited;
    },
  };
}

interface Slot {
  worker: Endpoint;
  closing?: boolean;
  ready: Promise<void>;
  busy: boolean;
  current: { taskId: number; handlers: TaskHandlers; context: string } | null;
}

let nextTaskId = 1;

/** For tests only: called first with each message from a worker; what it throws takes the message-handling error path. */
export const poolTestHooks: { onMessage?: ((msg: FromWorker) => void) | undefined; onClose?: ((pool: WorkerPool) => void) | undefined } = {};

export class WorkerPool {
  private slots: Slot[] = [];
  private waiting: { resolve: (slot: Slot) => void; reject: (e: Error) => void }[] = [];
  private retiring = false;
  private closed = false;
  /** Actions streaming from this pool that may still start tasks on it (see `use`). */
  private users = 0;

  /**
   * @param processEnv when given, each slot is a child process started with these extra environment
   *   variables (slot i gets processEnv[i]), e.g. its own CUDA_VISIBLE_DEVICES.
   */
  constructor(
    readonly size: number,
    private readonly workerData: { batchSize?: number } = {},
    private readonly processEnv?: Record<string, string>[],
  ) {}

  private spawned = 0;

  private spawn(): Slot {
    // Built, every file of the package is in one directory (scripts/build.ts): worker.js is a sibling of whichever chunk this is.
    const url = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
    const env = this.processEnv?.[this.spawned++ % this.processEnv.length];
    // Threads share a deadline buffer: a synchronous UDF call past its timeoutMs ends the thread.
    const guard = env ? null : newSyncGuardBuffer();
    // A thread gets this process's compiled parquet-wasm module instead of compiling the file again
    // (io/parquet/wasm.ts): in its workerData, or in a message once a compile still running is done.
    const parquetWasm = env ? null : parquetWasmModule();
    const worker = env
      ? processEndpoint(url, this.workerData, env)
      : threadEndpoint(url, { ...this.workerData, syncGuard: guard, parquetWasm: parquetWasm ?? 'posted' });
    if (!env && !parquetWasm) {
      void parquetWasmCompiled().then((module) => {
        // The worker waits for this message: if the module cannot be posted, null makes it compile the file.
        for (const m of [module, null]) {
          try {
            worker.post({ type: 'parquetWasm', taskId: 0, module: m });
            return;
          } catch {
            /* the worker is gone, or the module could not be cloned */
          }
        }
      });
    }
    worker.unref();
    let resolveReady!: () => void;
    let rejectReady!: (e: Error) => void;
    const slot: Slot = {
      worker,
      ready: new Promise<void>((res, rej) => {
        resolveReady = res;
        rejectReady = rej;
      }),
      busy: false,
      current: null,
    };
    slot.ready.catch(() => undefined);
    worker.on('message', (msg: FromWorker) => {
      const cur = slot.current;
      try {
        poolTestHooks.onMessage?.(msg);
        switch (msg.type) {
          case 'ready':
            resolveReady();
            return;
          case 'fatal':
            rejectReady(deserializeError(msg.error, 'worker start-up'));
            return;
        }
        if (!cur || cur.taskId !== msg.taskId) return; // a cancelled task's late message
        switch (msg.type) {
          case 'batch':
            cur.handlers.onBatch(batchFromWire(msg.wire));
            break;
          case 'done':
            this.release(slot);
            cur.handlers.onMetrics?.(msg.metrics, msg.outcome);
            cur.handlers.onDone();
            break;
          case 'sink':
            this.release(slot);
            cur.handlers.onMetrics?.(msg.metrics, msg.result);
            cur.handlers.onSink?.(msg.result);
            cur.handlers.onDone();
            break;
          case 'error':
            this.release(slot);
            cur.handlers.onError(deserializeError(msg.error, cur.context));
            break;
          case 'result':
            this.release(slot);
            cur.handlers.onResult?.(msg.reply);
            cur.handlers.onDone();
            break;
          case 'udfCall':
            this.relay(slot, cur, msg);
            break;
        }
      } catch (err) {
        // An exception here would be uncaught and end the whole process: it fails the task instead.
        this.failFromMessage(slot, cur, msg, err, rejectReady);
      }
    });
    const fail = (err: Error): void => {
      rejectReady(err);
      this.slots = this.slots.filter((s) => s !== slot);
      const cur = slot.current;
      slot.current = null;
      cur?.handlers.onError(new Error(`worker thread died while running ${cur.context}: ${err.message}`));
      this.replace();
    };
    worker.onFailure((err) => {
      if (!slot.closing) fail(err);
    });
    if (guard) {
      const watch = setInterval(() => {
        if (slot.closing || !this.slots.includes(slot)) {
          clearInterval(watch);
          return;
        }
        const stuck = overdueSyncCall(guard, SYNC_TIMEOUT_GRACE_MS);
        if (!stuck) return;
        clearInterval(watch);
        slot.closing = true; // its exit is this failure, not another one
        void worker.terminate();
        fail(
          new Error(
            `UDF '${stuck.udf}' made a synchronous call that did not return within its timeoutMs (${stuck.timeoutMs} ms); a synchronous call cannot be interrupted, so its thread was terminated`,
          ),
        );
      }, 200);
      watch.unref();
    }
    this.slots.push(slot);
    return slot;
  }

  /**
   * Handling a worker's message threw (e.g. a batch that does not decode): the action fails with that
   * error. A task still running on the worker is cancelled; its late messages only free the slot.
   */
  private failFromMessage(slot: Slot, cur: Slot['current'], msg: FromWorker, err: unknown, rejectReady: (e: Error) => void): void {
    const e = err instanceof Error ? err : new Error(String(err));
    if (msg.type === 'ready' || msg.type === 'fatal' || !cur || cur.taskId !== msg.taskId) {
      rejectReady(e);
      return;
    }
    e.message = `${e.message} (handling a '${msg.type}' message from the worker running ${cur.context})`;
    const handlers = cur.handlers;
    if (slot.current === cur) {
      if (msg.type === 'batch') {
        cur.handlers = { onBatch: () => undefined, onDone: () => undefined, onError: () => undefined };
        try {
          slot.worker.post({ type: 'cancel', taskId: cur.taskId });
        } catch {
          /* the worker is gone: its exit frees the slot */
        }
      } else {
        this.release(slot); // the task's last message: nothing else will free the slot
      }
    }
    try {
      handlers.onError(e);
    } catch (again) {
      console.error(`fanout: a task's error handler threw while reporting: ${e.message}`, again);
    }
  }

  /** A partition task's call of an actor-pool UDF: answered by the task's router, back on its worker. */
  private relay(slot: Slot, cur: NonNullable<Slot['current']>, msg: Extract<FromWorker, { type: 'udfCall' }>): void {
    const { taskId, callId } = msg;
    const answer = (m: ToWorker): void => {
      if (slot.current?.taskId !== taskId) return; // the task ended (cancelled) meanwhile
      try {
        slot.worker.post(m);
      } catch {
        /* the worker is gone: its exit fails the task */
      }
    };
    const routed = cur.handlers.onUdfCall?.(msg.call) ?? Promise.reject(new Error(`UDF '${msg.call.node.name}' has no actor pool here`));
    routed.then(
      (reply) => answer({ type: 'udfResult', taskId, callId, reply }),
      (err: unknown) => answer({ type: 'udfError', taskId, callId, error: serializeError(err) }),
    );
  }

  /**
   * Actor pools: starts every slot now and sends each `make(taskId)` once (constructing its
   * instance), so the pool's N instances exist before the first call.
   */
  async startAll(make: (taskId: number) => ToWorker, context: string): Promise<void> {
    const fresh: Slot[] = [];
    while (this.slots.length < this.size) {
      const s = this.spawn();
      s.busy = true;
      fresh.push(s);
    }
    await Promise.all(fresh.map((s) => this.requestOn(s, make, context)));
  }

  /** Actor pools: one request ('call') on a free slot; resolves with the actor's reply. */
  async request(make: (taskId: number) => ToWorker, context: string): Promise<UdfCallReply> {
    return this.requestOn(await this.acquire(), make, context);
  }

  private async requestOn(slot: Slot, make: (taskId: number) => ToWorker, context: string): Promise<UdfCallReply> {
    slot.worker.ref(); // a call in flight keeps the process alive until its actor answers
    try {
      await slot.ready;
    } catch (err) {
      this.slots = this.slots.filter((x) => x !== slot);
      this.replace();
      throw err;
    }
    const taskId = nextTaskId++;
    return new Promise<UdfCallReply>((resolve, reject) => {
      let reply: UdfCallReply | null = null;
      slot.current = {
        taskId,
        context,
        handlers: {
          onBatch: () => undefined,
          onResult: (r) => {
            reply = r;
          },
          onDone: () => (reply ? resolve(reply) : reject(new Error(`actor answered nothing (${context})`))),
          onError: reject,
        },
      };
      try {
        slot.worker.post(make(taskId));
      } catch (err) {
        this.release(slot);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  private release(slot: Slot): void {
    slot.current = null;
    slot.busy = false;
    slot.worker.unref();
    const w = this.waiting.shift();
    if (w) {
      slot.busy = true;
      w.resolve(slot);
    } else {
      this.closeIfRetired();
    }
  }

  /** A retiring pool closes once no task runs and no action that may start one still uses it. */
  private closeIfRetired(): void {
    if (this.retiring && !this.closed && this.users === 0 && !this.slots.some((s) => s.busy)) void this.close();
  }

  /**
   * An action that starts its partitions over time uses the pool until the returned function is
   * called: retiring it meanwhile (another action's settings) must not close it between two of
   * its tasks, as when every partition started so far has already run to its end.
   */
  use(): () => void {
    this.users++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.users--;
      this.closeIfRetired();
    };
  }

  /** A dead slot's place goes to the next waiting task (a fresh worker), so no task waits forever. */
  private replace(): void {
    const w = this.waiting.shift();
    if (!w) return;
    const s = this.spawn();
    s.busy = true;
    w.resolve(s);
  }

  private async acquire(): Promise<Slot> {
    if (this.closed) throw new Error('worker pool closed');
    // A retiring pool still serves the actions that started on it; new actions use the new pool.
    const free = this.slots.find((s) => !s.busy);
    if (free) {
      free.busy = true;
      return free;
    }
    if (this.slots.length < this.size) {
      const s = this.spawn();
      s.busy = true;
      return s;
    }
    return new Promise<Slot>((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Starts `task` on a worker; returns controls for credits and cancellation. */
  async run(
    task: PartitionTask,
    credits: number,
    handlers: TaskHandlers,
    context: string,
    signal?: AbortSignal,
    actors?: Record<string, number>,
  ): Promise<{ credit(n: number): void; cancel(): void }> {
    const slot = await this.acquire();
    slot.worker.ref(); // a task keeps the process alive (start-up included) until it reports back
    try {
      await slot.ready;
    } catch (err) {
      this.slots = this.slots.filter((x) => x !== slot);
      this.replace();
      throw err;
    }
    // Its action was aborted while the task waited for a worker: it never starts.
    if (signal?.aborted) {
      this.release(slot);
      throw new AbortError(`aborted (${context})`, { cause: signal.reason });
    }
    const taskId = nextTaskId++;
    slot.current = { taskId, handlers, context };
    const send = (m: ToWorker): void => slot.worker.post(m);
    send(actors ? { type: 'run', taskId, task, credits, actors } : { type: 'run', taskId, task, credits });
    return {
      credit: (n) => {
        if (slot.current?.taskId === taskId) send({ type: 'credit', taskId, n });
      },
      cancel: () => {
        if (slot.current?.taskId === taskId) {
          send({ type: 'cancel', taskId });
        }
      },
    };
  }

  /** Closes once the running tasks finish (another action may still be reading from them). */
  retire(): void {
    this.retiring = true;
    this.closeIfRetired();
  }

  /** Stops every worker now; running tasks fail, waiting ones are refused. */
  async close(): Promise<void> {
    if (!this.closed) poolTestHooks.onClose?.(this);
    this.retiring = true;
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    for (const w of this.waiting.splice(0)) w.reject(new Error('worker pool closed'));
    for (const s of slots) {
      const cur = s.current;
      s.current = null;
      cur?.handlers.onError(new Error(`worker pool closed while running ${cur.context}`));
    }
    await Promise.all(
      slots.map((s) => {
        s.closing = true;
        return s.worker.terminate();
      }),
    );
  }
}

// Loading aws-local-stepfunctions, and the synchronous event-capture hooks into its internals.
//
// The interpreter's own event log forwards events of nested Map iterations through async
// generators and drops those that arrive after the parent iteration's log has closed (with fast
// handlers most of a nested Map's events were lost). So the harness hooks each run's logger
// synchronously instead: StateMachine.prototype.run learns which run (and so which Map state, at
// which item index) spawns a nested run, and .execute wraps the new run's eventLogger.dispatch.
// These are internals, so package.json pins the library to the exact version they were written
// against (LIB_VERSION) and installHooks checks for them at load.
import type { StateMachine as LibStateMachine } from 'aws-local-stepfunctions';

/** The aws-local-stepfunctions version whose internals these hooks were written against. */
export const LIB_VERSION = '3.0.0';

// aws-local-stepfunctions 3 calls Promise.withResolvers (ES2024), which Node 20 lacks.
function polyfillWithResolvers(): void {
  const P = Promise as unknown as { withResolvers?: unknown };
  if (typeof P.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (v: T | PromiseLike<T>) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
polyfillWithResolvers();

export type LibModule = typeof import('aws-local-stepfunctions');
let libModule: Promise<LibModule> | undefined;
// Imported only after the polyfill is in place.
export const loadLib = (): Promise<LibModule> => (libModule ??= import('aws-local-stepfunctions'));

type LibRun = ReturnType<LibStateMachine['run']>;
export type LibEvent = LibRun['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

/** One (nested) run of the interpreter: the root execution, a Map iteration or a Parallel branch. */
export interface RunNode {
  sink: (node: RunNode, ev: LibEvent) => void;
  parent?: RunNode;
  /** The Map state this run is an iteration of, and its item index. */
  mapName?: string;
  index?: number;
  /** The state this run is in now, and how many nested runs it has spawned. */
  current?: { name: string; type: string; spawned: number; failed?: boolean };
}

/** Run option that carries the harness's sink into the root run (and, spread, into nested runs). */
export const SINK_OPTION = '__fanoutHarnessSink';
const nodeByRunOptions = new WeakMap<object, RunNode>();
const seenEvents = new WeakSet<object>();
let pendingNode: RunNode | undefined;

interface HookableLogger {
  dispatch(ev: LibEvent): void;
}
interface HookableProto {
  run(this: unknown, input: unknown, options?: Record<string, unknown>): unknown;
  execute(this: unknown, input: unknown, options: { runOptions?: object; eventLogger?: HookableLogger }, cleanup: unknown): unknown;
  __fanoutHooked?: boolean;
}

/** Hooks StateMachine.prototype.run/execute (once per process) so runs started with SINK_OPTION report every event synchronously. */
export function installHooks(SM: LibModule['StateMachine']): void {
  const proto = SM.prototype as unknown as HookableProto;
  if (proto.__fanoutHooked) return;
  if (typeof proto.run !== 'function' || typeof proto.execute !== 'function') {
    throw new Error(
      `aws-local-stepfunctions: StateMachine.prototype.run/execute not found; the local harness hooks the internals of aws-local-stepfunctions ${LIB_VERSION} (pinned in package.json): install exactly that version`,
    );
  }
  const origRun = proto.run;
  const origExecute = proto.execute;
  proto.run = function (input, options) {
    const parent = options ? nodeByRunOptions.get(options) : undefined;
    let node: RunNode | undefined;
    if (parent) {
      // A Map spawns its iterations in item order (p-limit is FIFO), so a counter is the index.
      const cur = parent.current;
      node = { sink: parent.sink, parent, mapName: cur?.type === 'Map' ? cur.name : undefined, index: cur ? cur.spawned++ : 0 };
    } else if (options && typeof options[SINK_OPTION] === 'function') {
      node = { sink: options[SINK_OPTION] as RunNode['sink'] };
    }
    const rootAborted = (options?.['_rootAbortSignal'] as AbortSignal | undefined)?.aborted === true;
    if (parent && (parent.current?.failed || rootAborted)) {
      // An iteration of this Map failed, so the Map has failed (or the execution was stopped): as
      // in AWS, the iterations still queued never start (the library's p-limit queue would start
      // them, task calls and all).
      const result = Promise.reject(new Error(rootAborted ? 'the execution was stopped' : `Map state ${parent.current?.name} already failed`));
      result.catch(() => undefined);
      return { abort: () => undefined, eventLogs: (async function* () {})(), result } as unknown as ReturnType<typeof origRun>;
    }
    const saved = pendingNode;
    pendingNode = node;
    try {
      return origRun.call(this, input, options);
    } finally {
      pendingNode = saved;
    }
  };
  proto.execute = function (input, options, cleanup) {
    // run() calls execute() synchronously, so pendingNode is this run's node.
    const node = pendingNode;
    pendingNode = undefined;
    const logger = options?.eventLogger;
    if (node && options.runOptions && logger && typeof logger.dispatch === 'function') {
      nodeByRunOptions.set(options.runOptions, node);
      const dispatch = logger.dispatch;
      logger.dispatch = function (ev: LibEvent) {
        // Forwarded copies of nested events reach the parent's logger later: count each once.
        if (typeof ev === 'object' && ev !== null && !seenEvents.has(ev)) {
          seenEvents.add(ev);
          if (ev.type === 'StateEntered' || ev.type === 'StateRetried') node.current = { name: ev.state.name, type: ev.state.type, spawned: 0 };
          // A failed iteration fails its Map (no tolerated failures in an inline Map).
          if ((ev.type === 'ExecutionFailed' || ev.type === 'ExecutionTimeout') && node.parent?.current?.type === 'Map') node.parent.current.failed = true;
          node.sink(node, ev);
        }
        dispatch.call(this, ev);
      };
    }
    return origExecute.call(this, input, options, cleanup);
  };
  proto.__fanoutHooked = true;
}

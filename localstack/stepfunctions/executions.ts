// The execution table: one record per StartExecution, its run of the interpreter from start to its
// final status, and its history, translated from the interpreter's events (captured synchronously by
// hooks.ts) into the events GetExecutionHistory returns on AWS.
import { randomUUID } from 'node:crypto';
import type { AslState, JsonValue } from '../../src/aws/state-machine.ts';
import { ACCOUNT, PAYLOAD_LIMIT_BYTES, REGION, STATE_MACHINE_ARN, STATE_MACHINE_NAME } from './constants.ts';
import { ApiError, dataLimitError, type TaskError } from './errors.ts';
import { SINK_OPTION, type LibModule, type LibEvent, type RunNode } from './hooks.ts';
import { isObject, json } from './json.ts';
import type { TaskInfo } from './normalize.ts';
import { buildLocalHandlers, type LocalTaskHandlers } from './tasks.ts';
import { taskAttempts, type TaskResults } from './redrive.ts';

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface HistoryEvent {
  id: number;
  previousEventId: number;
  timestamp: number;
  type: string;
  [details: string]: unknown;
}

export interface ExecutionRecord {
  executionArn: string;
  name: string;
  input: string;
  status: ExecutionStatus;
  startDate: number;
  stopDate?: number;
  output?: string;
  error?: string;
  cause?: string;
  events: HistoryEvent[];
  controller: AbortController;
  abortRun?: () => void;
  stopRequest?: { error?: string; cause?: string };
  dataLimit?: TaskError;
  historyClosed?: boolean;
  done: Promise<void>;
  /** Task results of this attempt (and those a redrive replays): redrive.ts. */
  tasks?: TaskResults;
  redriveCount?: number;
  redriveDate?: number;
}

export type MapRunStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED';

/** One run of a Distributed Map state (ListMapRuns / DescribeMapRun). */
export interface MapRunRecord {
  mapRunArn: string;
  executionArn: string;
  /** The Map Run's own state machine ARN: <machine>/<label>, as AWS names it. */
  stateMachineArn: string;
  status: MapRunStatus;
  startDate: number;
  stopDate?: number;
  maxConcurrency: number;
  counts: { pending: number; running: number; succeeded: number; failed: number; aborted: number; total: number };
}

export interface ExecutionsOptions {
  /** The interpreter's machine for the normalized definition (hooks installed). */
  machine: InstanceType<LibModule['StateMachine']>;
  tasks: Map<string, TaskInfo>;
  states: Map<string, AslState>;
  handlers: LocalTaskHandlers;
  roleArn: string;
  /** The Distributed Map states of the definition as given (run inline here), with their Label: each run of one is a Map Run. */
  distributedMaps?: Map<string, string>;
}

/** A nested run's own start/end, as the parent's Map iteration event suffix. */
const ITERATION_EVENT: Partial<Record<string, 'Started' | 'Succeeded' | 'Failed' | 'Aborted'>> = {
  ExecutionStarted: 'Started',
  ExecutionSucceeded: 'Succeeded',
  ExecutionFailed: 'Failed',
  ExecutionAborted: 'Aborted',
  ExecutionTimeout: 'Aborted',
};

export const nowSeconds = (ms = Date.now()): number => ms / 1000;

function getSimplePath(v: unknown, path: string | undefined): unknown {
  if (!path || !/^\$(\.[A-Za-z0-9_]+)*$/.test(path)) return undefined;
  let cur = v;
  for (const k of path.split('.').slice(1)) cur = isObject(cur) ? cur[k] : undefined;
  return cur;
}

export class Executions {
  readonly #byArn = new Map<string, ExecutionRecord>();
  /** In start order. */
  readonly #order: ExecutionRecord[] = [];
  /** Per (nested) run, the states whose last attempt failed: if one exits, a Catch took it (no Succeeded event). */
  readonly #failed = new WeakMap<RunNode, Set<string>>();
  /** Iterations that have ended (succeeded, failed or aborted): what they still report is dropped, as on AWS. */
  readonly #ended = new WeakSet<RunNode>();
  /** Map Runs: all of them by ARN, and each run's current one by Map state name. */
  readonly #mapRuns = new Map<string, MapRunRecord>();
  readonly #mapRunsByExecution = new Map<string, MapRunRecord[]>();
  readonly #openMapRuns = new WeakMap<RunNode, Map<string, MapRunRecord>>();

  constructor(private readonly opts: ExecutionsOptions) {}

  /** Starts an execution, or returns the running one of the same name and input (idempotent, as on AWS). */
  start(name: string, inputText: string): ExecutionRecord {
    const existing = this.#order.find((r) => r.name === name);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === inputText) return existing;
      throw new ApiError('ExecutionAlreadyExists', `Execution Already Exists: '${existing.executionArn}'`);
    }
    let input: JsonValue;
    try {
      input = JSON.parse(inputText) as JsonValue;
    } catch (e) {
      throw new ApiError('InvalidExecutionInput', `Invalid execution input: ${e instanceof Error ? e.message : String(e)}`);
    }
    const executionArn = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${STATE_MACHINE_NAME}:${name}`;
    const rec: ExecutionRecord = {
      executionArn,
      name,
      input: inputText,
      status: 'RUNNING',
      startDate: nowSeconds(),
      events: [],
      controller: new AbortController(),
      done: Promise.resolve(),
    };
    this.launch(rec, input);
    this.#byArn.set(executionArn, rec);
    this.#order.push(rec);
    return rec;
  }

  /** Runs the interpreter for `rec` (a start, or a redrive: redrive.ts replays its finished tasks). */
  launch(rec: ExecutionRecord, input: JsonValue, redrive?: { count: number }): void {
    const { executionArn, name } = rec;
    const overrides = taskAttempts(rec, buildLocalHandlers(this.opts.tasks, this.opts.handlers, { signal: rec.controller.signal, executionArn }));
    const runOptions = {
      overrides: { taskResourceLocalHandlers: overrides },
      context: {
        Execution: {
          Id: executionArn,
          Name: name,
          RoleArn: this.opts.roleArn,
          StartTime: new Date(rec.startDate * 1000).toISOString(),
          ...(redrive ? { RedriveCount: redrive.count, RedriveTime: new Date().toISOString() } : {}),
        },
        StateMachine: { Id: STATE_MACHINE_ARN, Name: STATE_MACHINE_NAME },
      },
      // A redrive continues the history: ExecutionRedriven (redrive.ts) stands for the new start.
      [SINK_OPTION]: (node: RunNode, ev: LibEvent) => {
        if (!(redrive && !node.parent && ev.type === 'ExecutionStarted')) this.#onEvent(rec, node, ev);
      },
    };
    const run = this.opts.machine.run(input, runOptions);
    rec.abortRun = run.abort;
    // History comes from the hooks; the interpreter's own log is only drained.
    const consumed = (async () => {
      for await (const _ of run.eventLogs);
    })().catch(() => undefined);
    const settled = run.result.then(
      (output) => this.#finish(rec, 'SUCCEEDED', { output: json(output) }),
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        if (rec.dataLimit) this.#finish(rec, 'FAILED', { error: rec.dataLimit.name, cause: rec.dataLimit.message });
        else if (e.name === 'ExecutionAbortedError') this.#finish(rec, 'ABORTED', { error: rec.stopRequest?.error, cause: rec.stopRequest?.cause });
        else if (e.name === 'ExecutionTimeoutError')
          this.#finish(rec, 'TIMED_OUT', { error: 'States.Timeout', cause: 'The execution ran longer than its TimeoutSeconds' });
        else {
          // ExecutionError wraps the state's error: its name is the ASL error, its message the cause.
          const inner = e.name === 'ExecutionError' && e.cause instanceof Error ? e.cause : e;
          this.#finish(rec, 'FAILED', { error: inner.name, cause: inner.message });
        }
      },
    );
    rec.done = Promise.all([settled, consumed]).then(() => undefined);
  }

  get(arn: string): ExecutionRecord {
    const rec = this.#byArn.get(arn);
    if (!rec) throw new ApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
    return rec;
  }

  /** The Map Runs of an execution, newest first, as ListMapRuns returns them. */
  mapRuns(executionArn: string): MapRunRecord[] {
    this.get(executionArn);
    return [...(this.#mapRunsByExecution.get(executionArn) ?? [])].reverse();
  }

  mapRun(arn: string): MapRunRecord {
    const r = this.#mapRuns.get(arn);
    if (!r) throw new ApiError('ResourceNotFound', `Map Run Does Not Exist: '${arn}'`);
    return r;
  }

  /** Newest first, as ListExecutions returns them. */
  list(status?: string): ExecutionRecord[] {
    return [...this.#order].reverse().filter((r) => !status || r.status === status);
  }

  /** Aborts a running execution with the given error and cause; a finished one is left as it is. */
  stop(rec: ExecutionRecord, request: { error?: string; cause?: string }): void {
    if (rec.status !== 'RUNNING') return;
    rec.stopRequest = request;
    rec.abortRun?.();
    this.#finish(rec, 'ABORTED', { error: request.error, cause: request.cause });
  }

  /** Aborts every running execution and waits until all runs have settled. */
  async stopAll(request: { error: string; cause: string }): Promise<void> {
    for (const rec of this.#order) this.stop(rec, request);
    await Promise.all(this.#order.map((r) => r.done));
  }

  #finish(rec: ExecutionRecord, status: ExecutionStatus, fields: { output?: string; error?: string; cause?: string }): void {
    if (rec.status !== 'RUNNING') return;
    rec.status = status;
    rec.stopDate = nowSeconds();
    Object.assign(rec, fields);
    for (const run of this.#mapRunsByExecution.get(rec.executionArn) ?? []) {
      if (run.status === 'RUNNING') this.#closeMapRun(run, 'ABORTED');
    }
    // Whatever still runs for this execution (ECS children) is told to stop.
    rec.controller.abort();
  }

  #push(rec: ExecutionRecord, type: string, details: Record<string, unknown> = {}, ts = Date.now()): void {
    // Nothing follows the execution's last event (stopped iterations may still report in).
    if (rec.historyClosed) return;
    if (type.startsWith('Execution') && type !== 'ExecutionStarted') rec.historyClosed = true;
    const id = rec.events.length + 1;
    rec.events.push({ id, previousEventId: id - 1, timestamp: nowSeconds(ts), type, ...details });
  }

  #checkSize(rec: ExecutionRecord, what: string, text: string): void {
    const bytes = Buffer.byteLength(text);
    if (bytes > PAYLOAD_LIMIT_BYTES && !rec.dataLimit && rec.status === 'RUNNING') {
      rec.dataLimit = dataLimitError(what, bytes);
      rec.abortRun?.();
    }
  }

  #closeMapRun(run: MapRunRecord, status: MapRunStatus): void {
    run.status = status;
    run.stopDate = nowSeconds();
    if (status === 'ABORTED') {
      run.counts.aborted += run.counts.running + run.counts.pending;
      run.counts.running = 0;
      run.counts.pending = 0;
    }
  }

  #startMapRun(rec: ExecutionRecord, node: RunNode, name: string, input: unknown, items: number, ts: number): void {
    const state = this.opts.states.get(name);
    const label = this.opts.distributedMaps?.get(name) ?? name;
    const concurrency = state?.MaxConcurrency ?? getSimplePath(input, state?.MaxConcurrencyPath);
    const run: MapRunRecord = {
      mapRunArn: `arn:aws:states:${REGION}:${ACCOUNT}:mapRun:${STATE_MACHINE_NAME}/${label}:${randomUUID()}`,
      executionArn: rec.executionArn,
      stateMachineArn: `${STATE_MACHINE_ARN}/${label}`,
      status: 'RUNNING',
      startDate: nowSeconds(ts),
      maxConcurrency: typeof concurrency === 'number' ? concurrency : 0,
      counts: { pending: items, running: 0, succeeded: 0, failed: 0, aborted: 0, total: items },
    };
    this.#mapRuns.set(run.mapRunArn, run);
    const list = this.#mapRunsByExecution.get(rec.executionArn) ?? [];
    list.push(run);
    this.#mapRunsByExecution.set(rec.executionArn, list);
    const open = this.#openMapRuns.get(node) ?? new Map<string, MapRunRecord>();
    open.set(name, run);
    this.#openMapRuns.set(node, open);
    this.#push(rec, 'MapRunStarted', { mapRunStartedEventDetails: { mapRunArn: run.mapRunArn } }, ts);
  }

  /** A Distributed Map's state ended: its Map Run ends with it (MapRunSucceeded / MapRunFailed before the Map's own event). */
  #endMapRun(rec: ExecutionRecord, node: RunNode, name: string, ok: boolean, ts: number, failure?: { error: string; cause: string }): void {
    const run = this.#openMapRuns.get(node)?.get(name);
    if (!run) return;
    this.#openMapRuns.get(node)!.delete(name);
    if (run.status !== 'RUNNING') return;
    if (ok) {
      this.#closeMapRun(run, 'SUCCEEDED');
      this.#push(rec, 'MapRunSucceeded', {}, ts);
    } else {
      this.#closeMapRun(run, 'FAILED');
      run.counts.aborted += run.counts.pending;
      run.counts.pending = 0;
      this.#push(rec, 'MapRunFailed', { mapRunFailedEventDetails: failure ?? {} }, ts);
    }
  }

  #countIteration(node: RunNode, kind: 'Started' | 'Succeeded' | 'Failed' | 'Aborted'): void {
    const run = node.parent && node.mapName !== undefined ? this.#openMapRuns.get(node.parent)?.get(node.mapName) : undefined;
    if (!run) return;
    const c = run.counts;
    if (kind === 'Started') {
      c.pending = Math.max(0, c.pending - 1);
      c.running++;
      return;
    }
    c.running = Math.max(0, c.running - 1);
    if (kind === 'Succeeded') c.succeeded++;
    else if (kind === 'Failed') c.failed++;
    else c.aborted++;
  }

  /** One interpreter event of `node` (the root run or a nested one) as AWS history events. */
  #onEvent(rec: ExecutionRecord, node: RunNode, ev: LibEvent): void {
    const { tasks, states, roleArn } = this.opts;
    const ts = ev.timestamp;
    // An iteration that ended (its Map failed and aborted it, say) may still run on in the
    // interpreter: on AWS it was stopped, so nothing it does is in the history.
    for (let n: RunNode | undefined = node; n; n = n.parent) if (this.#ended.has(n)) return;
    if (node.parent) {
      // A nested run: its start/end are Map iteration events of the parent; the rest as usual.
      const kind = ITERATION_EVENT[ev.type];
      if (kind) {
        if (node.mapName !== undefined) {
          this.#push(rec, `MapIteration${kind}`, { [`mapIteration${kind}EventDetails`]: { name: node.mapName, index: node.index } }, ts);
          this.#countIteration(node, kind);
        }
        if (kind !== 'Started') this.#ended.add(node);
        return;
      }
    }
    switch (ev.type) {
      case 'ExecutionStarted':
        this.#push(rec, 'ExecutionStarted', { executionStartedEventDetails: { input: json(ev.input), inputDetails: { truncated: false }, roleArn } }, ts);
        return;
      case 'ExecutionSucceeded':
        this.#push(rec, 'ExecutionSucceeded', { executionSucceededEventDetails: { output: json(ev.output), outputDetails: { truncated: false } } }, ts);
        return;
      case 'ExecutionFailed':
        this.#push(rec, 'ExecutionFailed', { executionFailedEventDetails: { error: ev.Error, cause: String(ev.Cause ?? '') } }, ts);
        return;
      case 'ExecutionAborted':
        if (rec.dataLimit) this.#push(rec, 'ExecutionFailed', { executionFailedEventDetails: { error: rec.dataLimit.name, cause: rec.dataLimit.message } }, ts);
        else this.#push(rec, 'ExecutionAborted', { executionAbortedEventDetails: { error: rec.stopRequest?.error, cause: rec.stopRequest?.cause } }, ts);
        return;
      case 'ExecutionTimeout':
        this.#push(rec, 'ExecutionTimedOut', { executionTimedOutEventDetails: {} }, ts);
        return;
      case 'StateEntered': {
        const { name, type, input } = ev.state;
        const text = json(input);
        this.#checkSize(rec, `the input of ${name}`, text);
        this.#push(rec, `${type}StateEntered`, { stateEnteredEventDetails: { name, input: text, inputDetails: { truncated: false } } }, ts);
        const t = tasks.get(name);
        if (t) {
          this.#push(
            rec,
            'TaskScheduled',
            {
              taskScheduledEventDetails: {
                resourceType: t.resourceType,
                resource: t.resourceName,
                region: REGION,
                parameters: text,
                timeoutInSeconds: t.timeoutSeconds,
              },
            },
            ts,
          );
          this.#push(rec, 'TaskStarted', { taskStartedEventDetails: { resourceType: t.resourceType, resource: t.resourceName } }, ts);
        } else if (type === 'Map') {
          const items = getSimplePath(input, states.get(name)?.ItemsPath ?? '$');
          const length = Array.isArray(items) ? items.length : 0;
          this.#push(rec, 'MapStateStarted', { mapStateStartedEventDetails: { length } }, ts);
          if (this.opts.distributedMaps?.has(name)) this.#startMapRun(rec, node, name, input, length, ts);
        } else if (type === 'Parallel') {
          this.#push(rec, 'ParallelStateStarted', {}, ts);
        }
        return;
      }
      case 'StateExited': {
        const { name, type, output } = ev.state;
        const text = json(output);
        this.#checkSize(rec, `the output of ${name}`, text);
        const t = tasks.get(name);
        // A state that failed and still exits was caught: AWS logs TaskFailed / MapStateFailed, then
        // the exit, and never a Succeeded event for it.
        const caught = this.#failed.get(node)?.delete(name) === true;
        if (caught) {
          // nothing: the failure event is already in the history
        } else if (t)
          this.#push(
            rec,
            'TaskSucceeded',
            { taskSucceededEventDetails: { resourceType: t.resourceType, resource: t.resourceName, output: text, outputDetails: { truncated: false } } },
            ts,
          );
        else if (type === 'Map') {
          this.#endMapRun(rec, node, name, true, ts);
          this.#push(rec, 'MapStateSucceeded', {}, ts);
        } else if (type === 'Parallel') this.#push(rec, 'ParallelStateSucceeded', {}, ts);
        this.#push(rec, `${type}StateExited`, { stateExitedEventDetails: { name, output: text, outputDetails: { truncated: false } } }, ts);
        return;
      }
      case 'StateFailed': {
        const { name, type } = ev.state;
        const error = ev.Error;
        const cause = typeof ev.Cause === 'string' ? ev.Cause : json(ev.Cause);
        const failed = this.#failed.get(node) ?? new Set<string>();
        failed.add(name);
        this.#failed.set(node, failed);
        const t = tasks.get(name);
        if (t) {
          const timedOut = error === 'States.Timeout';
          const key = timedOut ? 'taskTimedOutEventDetails' : 'taskFailedEventDetails';
          this.#push(rec, timedOut ? 'TaskTimedOut' : 'TaskFailed', { [key]: { resourceType: t.resourceType, resource: t.resourceName, error, cause } }, ts);
        } else if (type === 'Map' || type === 'Parallel') {
          if (type === 'Map') this.#endMapRun(rec, node, name, false, ts, { error: String(error ?? ''), cause });
          this.#push(rec, `${type}StateFailed`, {}, ts);
        }
        return;
      }
      case 'StateRetried': {
        // A retry is a new attempt of the same state: AWS logs it as a new TaskScheduled/TaskStarted.
        this.#failed.get(node)?.delete(ev.state.name);
        const t = tasks.get(ev.state.name);
        if (t) {
          this.#push(
            rec,
            'TaskScheduled',
            {
              taskScheduledEventDetails: {
                resourceType: t.resourceType,
                resource: t.resourceName,
                region: REGION,
                parameters: json(ev.state.input),
                timeoutInSeconds: t.timeoutSeconds,
              },
            },
            ts,
          );
          this.#push(rec, 'TaskStarted', { taskStartedEventDetails: { resourceType: t.resourceType, resource: t.resourceName } }, ts);
        }
        return;
      }
      default:
        return;
    }
  }
}

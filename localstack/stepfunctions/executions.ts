// The execution table: one record per StartExecution, its run of the interpreter from start to its
// final status, and its history, translated from the interpreter's events (captured synchronously by
// hooks.ts) into the events GetExecutionHistory returns on AWS.
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

export interface ExecutionsOptions {
  /** The interpreter's machine for the normalized definition (hooks installed). */
  machine: InstanceType<LibModule['StateMachine']>;
  tasks: Map<string, TaskInfo>;
  states: Map<string, AslState>;
  handlers: LocalTaskHandlers;
  roleArn: string;
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

  /** One interpreter event of `node` (the root run or a nested one) as AWS history events. */
  #onEvent(rec: ExecutionRecord, node: RunNode, ev: LibEvent): void {
    const { tasks, states, roleArn } = this.opts;
    const ts = ev.timestamp;
    if (node.parent) {
      // A nested run: its start/end are Map iteration events of the parent; the rest as usual.
      const kind = ITERATION_EVENT[ev.type];
      if (kind) {
        if (node.mapName !== undefined)
          this.#push(rec, `MapIteration${kind}`, { [`mapIteration${kind}EventDetails`]: { name: node.mapName, index: node.index } }, ts);
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
          this.#push(rec, 'MapStateStarted', { mapStateStartedEventDetails: { length: Array.isArray(items) ? items.length : 0 } }, ts);
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
        if (t)
          this.#push(
            rec,
            'TaskSucceeded',
            { taskSucceededEventDetails: { resourceType: t.resourceType, resource: t.resourceName, output: text, outputDetails: { truncated: false } } },
            ts,
          );
        else if (type === 'Map') this.#push(rec, 'MapStateSucceeded', {}, ts);
        else if (type === 'Parallel') this.#push(rec, 'ParallelStateSucceeded', {}, ts);
        this.#push(rec, `${type}StateExited`, { stateExitedEventDetails: { name, output: text, outputDetails: { truncated: false } } }, ts);
        return;
      }
      case 'StateFailed': {
        const { name, type } = ev.state;
        const error = ev.Error;
        const cause = typeof ev.Cause === 'string' ? ev.Cause : json(ev.Cause);
        const t = tasks.get(name);
        if (t) {
          const timedOut = error === 'States.Timeout';
          const key = timedOut ? 'taskTimedOutEventDetails' : 'taskFailedEventDetails';
          this.#push(rec, timedOut ? 'TaskTimedOut' : 'TaskFailed', { [key]: { resourceType: t.resourceType, resource: t.resourceName, error, cause } }, ts);
        } else if (type === 'Map' || type === 'Parallel') {
          this.#push(rec, `${type}StateFailed`, {}, ts);
        }
        return;
      }
      case 'StateRetried': {
        // A retry is a new attempt of the same state: AWS logs it as a new TaskScheduled/TaskStarted.
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

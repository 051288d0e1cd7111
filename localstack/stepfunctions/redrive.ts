// RedriveExecution for the local Step Functions API. aws-local-stepfunctions has no redrive, so the
// harness runs the interpreter again over the same input and replays every task that succeeded in
// an earlier attempt (same state, same input: same result) instead of running it: what AWS does when
// it "preserves the results of the successful steps and reruns only the unsuccessful ones" (failed
// or never-started Map iterations and Parallel branches, a failed Map Run's failed children).
// An execution that ended in a top-level Fail state (e.g. Catch -> RecordFailure -> Fail) re-enters
// that Fail state on AWS and fails again: so it does here, without running anything.
import type { AslState, JsonValue } from '../../src/aws/state-machine.ts';
import { ApiError } from './errors.ts';
import type { ExecutionRecord, Executions, HistoryEvent } from './executions.ts';
import { json } from './json.ts';
import type { LocalHandler } from './tasks.ts';

/** Successful task results of an execution's attempts, by state name and input. */
export interface TaskResults {
  /** This attempt's (replayed ones included, so a later redrive replays them too). */
  done: Map<string, JsonValue[]>;
  /** Earlier attempts', handed back instead of running the task again (first in, first out). */
  replay: Map<string, JsonValue[]>;
}

const keyOf = (state: string, input: JsonValue): string => `${state}\u0000${json(input)}`;

/** Wraps an execution's task handlers: results are kept for a redrive, and a redrive's replayed ones are not run. */
export function taskAttempts(rec: ExecutionRecord, handlers: Record<string, LocalHandler>): Record<string, LocalHandler> {
  const results = (rec.tasks ??= { done: new Map(), replay: new Map() });
  const out: Record<string, LocalHandler> = {};
  for (const [state, run] of Object.entries(handlers)) {
    out[state] = async (input) => {
      const key = keyOf(state, input);
      const earlier = results.replay.get(key);
      const result = earlier?.length ? earlier.shift()! : await run(input);
      const list = results.done.get(key);
      if (list) list.push(result);
      else results.done.set(key, [result]);
      return result;
    };
  }
  return out;
}

const REDRIVABLE = new Set(['FAILED', 'ABORTED', 'TIMED_OUT']);

function push(rec: ExecutionRecord, type: string, details: Record<string, unknown> = {}): void {
  const id = rec.events.length + 1;
  rec.events.push({ id, previousEventId: id - 1, timestamp: Date.now() / 1000, type, ...details } as HistoryEvent);
}

/** The top-level Fail state the execution ended in, with its input, or null. */
function endedInFailState(rec: ExecutionRecord, root: Record<string, AslState>): { name: string; input: string } | null {
  for (let i = rec.events.length - 1; i >= 0; i--) {
    const e = rec.events[i]!;
    if (!e.type.endsWith('StateEntered')) continue;
    const d = e['stateEnteredEventDetails'] as { name?: string; input?: string } | undefined;
    const name = d?.name ?? '';
    return root[name]?.Type === 'Fail' ? { name, input: d?.input ?? '{}' } : null;
  }
  return null;
}

/** RedriveExecution: `definitionText` is the machine's definition as given (its top-level states decide the Fail-state rule). */
export function redriveExecution(executions: Executions, body: Record<string, unknown>, definitionText: string): { redriveDate: number } {
  const arn = body['executionArn'];
  if (typeof arn !== 'string') throw new ApiError('InvalidArn', 'executionArn is required');
  const rec = executions.get(arn);
  if (!REDRIVABLE.has(rec.status)) throw new ApiError('ExecutionNotRedrivable', `Execution is ${rec.status} and cannot be redriven: '${arn}'`);
  const root = (JSON.parse(definitionText) as { States: Record<string, AslState> }).States;
  const failState = rec.status === 'FAILED' ? endedInFailState(rec, root) : null;
  const count = (rec.redriveCount ?? 0) + 1;
  const now = Date.now() / 1000;
  const earlier = rec.tasks?.done ?? new Map<string, JsonValue[]>();
  rec.tasks = { done: new Map(), replay: new Map([...earlier].map(([k, v]) => [k, [...v]])) };
  rec.redriveCount = count;
  rec.redriveDate = now;
  rec.historyClosed = false;
  push(rec, 'ExecutionRedriven', { executionRedrivenEventDetails: { redriveCount: count } });
  if (failState) {
    // Nothing before the Fail state runs again; it fails the execution as it did.
    push(rec, 'FailStateEntered', { stateEnteredEventDetails: { name: failState.name, input: failState.input, inputDetails: { truncated: false } } });
    push(rec, 'ExecutionFailed', { executionFailedEventDetails: { error: rec.error, cause: rec.cause } });
    rec.historyClosed = true;
    rec.stopDate = now;
    return { redriveDate: now };
  }
  rec.status = 'RUNNING';
  for (const k of ['stopDate', 'output', 'error', 'cause', 'stopRequest', 'dataLimit', 'abortRun'] as const) delete rec[k];
  rec.controller = new AbortController();
  executions.launch(rec, JSON.parse(rec.input) as JsonValue, { count });
  return { redriveDate: now };
}

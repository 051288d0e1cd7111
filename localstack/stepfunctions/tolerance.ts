// Tolerated failures of a Distributed Map (ToleratedFailurePercentage/Count and their Path forms) in
// the harness, where the Map runs inline and aws-local-stepfunctions has no thresholds. The
// normalized Map is rewritten so that:
// - each iteration runs the original item processor inside a Parallel whose Catch hands a failure
//   to `<Map>.IterationFailed` (a harness task): with both thresholds 0 it rethrows the original
//   error (the iteration fails, the Map fails as before, queued iterations never start); otherwise
//   it records the failure and the iteration succeeds;
// - after the Map, `<Map>.ToleratedFailures` (a harness task) counts the recorded failures and fails
//   with States.ExceedToleratedFailureThreshold past a threshold (as a Map Run does), else passes
//   the Map's input on (ResultPath null, the only form the harness rewrites).
// Difference from AWS: past a non-zero threshold the remaining iterations still run before the Map fails.
import type { AslCatcher, AslState, AslStateMachine, JsonObject, JsonValue } from '../../src/aws/state-machine.ts';
import { TaskError } from './errors.ts';
import { isObject } from './json.ts';

/** The Resource of the two harness tasks (never sent anywhere: tasks.ts runs them here). */
export const TOLERANCE_RESOURCE = 'arn:aws:states:::fanout-harness:toleratedFailures';
const RESULTS = '__fanoutMapResults';

const hasTolerance = (s: AslState): boolean =>
  s.ToleratedFailurePercentage !== undefined ||
  s.ToleratedFailureCount !== undefined ||
  s.ToleratedFailurePercentagePath !== undefined ||
  s.ToleratedFailureCountPath !== undefined;

function threshold(value: number | undefined, path: string | undefined, key: string, dflt: number): JsonObject {
  if (path !== undefined) return { [`${key}.$`]: path };
  return { [key]: value ?? dflt };
}

/** Rewrites Map `name` of `sm` (already made inline) when it has tolerated-failure fields; returns a note, or null. */
export function rewriteToleratedFailures(sm: AslStateMachine, name: string): string | null {
  const s = sm.States[name]!;
  if (!hasTolerance(s)) return null;
  const proc = s.ItemProcessor ?? s.Iterator;
  if (!proc) throw new Error(`state ${name}: Map without ItemProcessor`);
  if (s.ResultPath !== null || s.ResultSelector !== undefined || s.OutputPath !== undefined)
    throw new Error(`state ${name}: tolerated failures are supported by the local harness only with ResultPath null (no ResultSelector / OutputPath)`);
  for (const n of [`${name}.Iteration`, `${name}.IterationFailed`, `${name}.ToleratedFailures`])
    if (n in sm.States || n in proc.States) throw new Error(`state ${n} already exists`);
  const tolerance: JsonObject = {
    ...threshold(s.ToleratedFailurePercentage, s.ToleratedFailurePercentagePath, 'percentage', 0),
    ...threshold(s.ToleratedFailureCount, s.ToleratedFailureCountPath, 'count', 0),
  };
  const { ProcessorConfig: _mode, ...branch } = proc as AslStateMachine & { ProcessorConfig?: unknown };
  const item: JsonObject = s.ItemSelector ? { item: s.ItemSelector } : { 'item.$': '$$.Map.Item.Value' };
  s.ItemSelector = { ...item, tolerance };
  s.ItemProcessor = {
    ProcessorConfig: { Mode: 'INLINE' },
    StartAt: `${name}.Iteration`,
    States: {
      [`${name}.Iteration`]: {
        Type: 'Parallel',
        InputPath: '$.item',
        Branches: [branch],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: `${name}.IterationFailed` }],
        End: true,
      },
      [`${name}.IterationFailed`]: {
        Type: 'Task',
        Comment: `harness: a failed iteration of ${name}`,
        Resource: TOLERANCE_RESOURCE,
        Parameters: { mode: 'iteration', 'tolerance.$': '$.tolerance', 'error.$': '$.error' },
        TimeoutSeconds: 60,
        End: true,
      },
    },
  };
  delete s.Iterator;
  const next = s.Next;
  const end = s.End;
  const catchers: AslCatcher[] | undefined = s.Catch;
  s.ResultPath = `$.${RESULTS}`;
  s.Next = `${name}.ToleratedFailures`;
  delete s.End;
  for (const k of ['ToleratedFailurePercentage', 'ToleratedFailureCount', 'ToleratedFailurePercentagePath', 'ToleratedFailureCountPath'] as const) delete s[k];
  const check: AslState = {
    Type: 'Task',
    Comment: `harness: tolerated failures of ${name}`,
    Resource: TOLERANCE_RESOURCE,
    Parameters: { mode: 'check', map: name, 'input.$': '$', ...tolerance },
    ResultPath: '$',
    TimeoutSeconds: 60,
    ...(catchers ? { Catch: catchers } : {}),
  };
  if (next !== undefined) check.Next = next;
  else check.End = end ?? true;
  sm.States[`${name}.ToleratedFailures`] = check;
  return `${name}: tolerated failures counted by ${name}.IterationFailed and ${name}.ToleratedFailures`;
}

const num = (v: JsonValue | undefined): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** The harness tasks' work: see the top of this file. */
export async function toleranceTask(input: JsonValue): Promise<JsonValue> {
  if (!isObject(input)) throw new TaskError('States.Runtime', 'tolerated failures: bad input');
  if (input['mode'] === 'iteration') {
    const t = isObject(input['tolerance']) ? input['tolerance'] : {};
    const err = isObject(input['error']) ? input['error'] : {};
    const name = typeof err['Error'] === 'string' ? err['Error'] : 'States.TaskFailed';
    const cause = typeof err['Cause'] === 'string' ? err['Cause'] : '';
    // No tolerance: the iteration fails with its own error, as before the rewrite.
    if (num(t['percentage']) <= 0 && num(t['count']) <= 0) throw new TaskError(name, cause);
    return { __fanoutFailed: true, Error: name, Cause: cause };
  }
  const state = isObject(input['input']) ? { ...input['input'] } : {};
  const results = Array.isArray(state[RESULTS]) ? state[RESULTS] : [];
  delete state[RESULTS];
  const failed = results.filter((r) => isObject(r) && r['__fanoutFailed'] === true) as Record<string, JsonValue>[];
  const total = results.length;
  const pct = num(input['percentage']);
  const count = num(input['count']);
  if (failed.length > 0 && (failed.length > count || (failed.length / Math.max(1, total)) * 100 > pct)) {
    const first = failed[0]!;
    throw new TaskError(
      'States.ExceedToleratedFailureThreshold',
      `Map ${String(input['map'])}: ${failed.length} of ${total} iterations failed, more than tolerated (ToleratedFailurePercentage ${pct}, ToleratedFailureCount ${count}); the first: ${String(first['Error'])}: ${String(first['Cause'])}`,
    );
  }
  return state;
}

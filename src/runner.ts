// Which runner executes actions. The embedded runner ('native', in-process plus worker threads) is
// the default; 'aws' fans stages out through Step Functions to Lambda and ECS; any object that
// implements Runner can be installed too.
import { EmbeddedRunner, resolveEmbeddedOptions, type EmbeddedOptions } from './runners/embedded.ts';
import { AwsRunner, runnerTolerance, type AwsRunnerOptions } from './runners/aws.ts';
import type { Runner } from './runners/runner.ts';

export type RunnerName = 'native' | 'aws';

// On globalThis (like the UDF registry), so that with two copies of fanout loaded (a bundle and
// the sources) setRunner through either one decides where every DataFrame's actions run.
const RUNNER_KEY = Symbol.for('fanout.runner');
const state = ((globalThis as Record<symbol, unknown>)[RUNNER_KEY] ??= { current: new EmbeddedRunner(resolveEmbeddedOptions()) }) as { current: Runner };

function isRunner(r: unknown): r is Runner {
  const o = r as Partial<Runner> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.stream === 'function' &&
    typeof o.partitions === 'function' &&
    typeof o.write === 'function' &&
    typeof o.describe === 'function' &&
    typeof o.options === 'object'
  );
}

/** Selects the runner for subsequent actions: `'native'` (embedded), `'aws'` (Step Functions), or a Runner object. */
export function setRunner(name: 'native', options?: EmbeddedOptions): void;
export function setRunner(name: 'aws', options: AwsRunnerOptions): void;
export function setRunner(runner: Runner): void;
export function setRunner(name: RunnerName | Runner, options?: EmbeddedOptions | AwsRunnerOptions): void {
  if (typeof name === 'object') {
    if (!isRunner(name)) throw new TypeError('setRunner(runner): a runner needs options and the methods stream, partitions, write and describe');
    state.current = name;
    return;
  }
  if (name === 'native') {
    state.current = new EmbeddedRunner(resolveEmbeddedOptions(options as EmbeddedOptions | undefined));
    return;
  }
  if (name === 'aws') {
    const o = options as AwsRunnerOptions | undefined;
    if (!o || typeof o.stateMachineArn !== 'string' || !o.stateMachineArn) throw new TypeError("setRunner('aws', options): 'stateMachineArn' is required");
    if (typeof o.workBucket !== 'string' || !o.workBucket) throw new TypeError("setRunner('aws', options): 'workBucket' is required");
    if (o.batchSize !== undefined && (!Number.isInteger(o.batchSize) || o.batchSize <= 0)) {
      throw new RangeError(`setRunner('aws', options): 'batchSize' must be a positive integer, got ${String(o.batchSize)}`);
    }
    runnerTolerance(o);
    // Local work (in-memory plans, reading results) keeps the embedded options in force.
    state.current = new AwsRunner(o, state.current.options);
    return;
  }
  throw new Error(`unknown runner '${String(name)}'; available: 'native', 'aws', or a Runner object`);
}

/** The runner actions run on now. */
export function getRunner(): Runner {
  return state.current;
}

export type { ActionContext, DatasetSinkSpec, ExplainRequest, ResultPartition, Runner } from './runners/runner.ts';

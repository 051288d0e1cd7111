// Which runner executes actions, and its options. The embedded runner ('native', in-process plus
// worker threads) is the default; 'aws' fans stages out through Step Functions to Lambda and ECS.
import { resolveEmbeddedOptions, type EmbeddedOptions, type ResolvedEmbeddedOptions } from './runners/embedded.ts';
import type { AwsRunnerOptions } from './runners/aws.ts';

export type RunnerName = 'native' | 'aws';

export interface CurrentRunner {
  name: RunnerName;
  /** Embedded options: the whole run when native; reading results and local work when aws. */
  options: ResolvedEmbeddedOptions;
  aws: AwsRunnerOptions | null;
}

// On globalThis (like the UDF registry), so that with two copies of fanout loaded (a bundle and
// the sources) setRunner through either one decides where every DataFrame's actions run.
const RUNNER_KEY = Symbol.for('fanout.runner');
const state = ((globalThis as Record<symbol, unknown>)[RUNNER_KEY] ??= { current: { name: 'native', options: resolveEmbeddedOptions(), aws: null } }) as { current: CurrentRunner };

/** Selects the runner for subsequent actions: `'native'` (embedded) or `'aws'` (Step Functions). */
export function setRunner(name: 'native', options?: EmbeddedOptions): void;
export function setRunner(name: 'aws', options: AwsRunnerOptions): void;
export function setRunner(name: RunnerName, options?: EmbeddedOptions | AwsRunnerOptions): void {
  if (name === 'native') {
    state.current = { name, options: resolveEmbeddedOptions(options as EmbeddedOptions | undefined), aws: null };
    return;
  }
  if (name === 'aws') {
    const o = options as AwsRunnerOptions | undefined;
    if (!o || typeof o.stateMachineArn !== 'string' || !o.stateMachineArn) throw new TypeError("setRunner('aws', options): 'stateMachineArn' is required");
    if (typeof o.workBucket !== 'string' || !o.workBucket) throw new TypeError("setRunner('aws', options): 'workBucket' is required");
    state.current = { name, options: state.current.options, aws: o };
    return;
  }
  throw new Error(`unknown runner '${String(name)}'; available: 'native', 'aws'`);
}

export function getRunner(): CurrentRunner {
  return state.current;
}

// Which runner executes actions, and its options. The embedded runner is the default; the AWS
// runner (Step Functions fan-out) registers itself here in a later module.
import { resolveEmbeddedOptions, type EmbeddedOptions, type ResolvedEmbeddedOptions } from './runners/embedded.ts';

export type RunnerName = 'native';

let current: { name: RunnerName; options: ResolvedEmbeddedOptions } = { name: 'native', options: resolveEmbeddedOptions() };

/** Selects the runner for subsequent actions. `'native'` is the embedded runner (in-process + worker threads). */
export function setRunner(name: 'native', options?: EmbeddedOptions): void {
  if (name !== 'native') throw new Error(`unknown runner '${String(name)}'; available: 'native'`);
  current = { name, options: resolveEmbeddedOptions(options) };
}

export function getRunner(): { name: RunnerName; options: ResolvedEmbeddedOptions } {
  return current;
}

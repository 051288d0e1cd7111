// tinyglobby and picomatch, required on first use: `import 'fanout'` and reads of plain paths load
// neither (cold start: ~15 ms of module loading). Both ship CommonJS builds; they hold no state
// that another copy would need to share.
import { createRequire } from 'node:module';
import type * as Tinyglobby from 'tinyglobby';
import type Picomatch from 'picomatch';

const requireCjs = createRequire(import.meta.url);
let tinyglobbyModule: typeof Tinyglobby | undefined;
let picomatchModule: typeof Picomatch | undefined;
const tinyglobby = (): typeof Tinyglobby => (tinyglobbyModule ??= requireCjs('tinyglobby') as typeof Tinyglobby);

/** picomatch itself (a function with `.scan`, `.isMatch`, ...). */
export function picomatch(): typeof Picomatch {
  return (picomatchModule ??= requireCjs('picomatch') as typeof Picomatch);
}

// picomatch's scan (behind isDynamicPattern) only marks a pattern as a glob or negated at one of
// these characters: `*`, `?`, a `[...]` class, `{...}` braces, `(` of a group or extglob, a leading `!`.
// A path with none of them is static without loading the libraries (test/glob.test.ts checks both agree).
const GLOB_START = /[*?[{(!]/;

/** tinyglobby's isDynamicPattern (a glob, or a negated pattern). */
export function isDynamicPattern(pattern: string): boolean {
  return GLOB_START.test(pattern) && tinyglobby().isDynamicPattern(pattern);
}

/** tinyglobby's globSync. */
export function globSync(patterns: string[], options: Omit<Tinyglobby.GlobOptions, 'patterns'>): string[] {
  return tinyglobby().globSync(patterns, options);
}

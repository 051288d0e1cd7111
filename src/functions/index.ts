// Registry of builtin functions, keyed by the FunctionName carried in plan JSON.
import type { FunctionName } from '../expressions.ts';
import { add, div, mod, mul, sub } from './arithmetic.ts';
import { between } from './between.ts';
import type { FunctionDef } from './common.ts';
import { eq, ge, gt, le, lt, neq } from './compare.ts';
import { fillNull } from './fill-null.ts';
import { ifElse } from './if-else.ts';
import { isIn } from './is-in.ts';
import { isNull, notNull } from './is-null.ts';
import { listGet } from './list-get.ts';
import { listLength } from './list-length.ts';
import { and, not, or } from './logic.ts';
import { neg } from './neg.ts';
import { strLower, strUpper } from './str-case.ts';
import { strLength } from './str-length.ts';
import { strContains, strEndsWith, strStartsWith } from './str-match.ts';
import { strSplit } from './str-split.ts';
import { structGet } from './struct-get.ts';

export type { FunctionDef } from './common.ts';

const ALL: readonly FunctionDef[] = [
  add,
  sub,
  mul,
  div,
  mod,
  neg,
  eq,
  neq,
  lt,
  le,
  gt,
  ge,
  and,
  or,
  not,
  isNull,
  notNull,
  isIn,
  between,
  fillNull,
  ifElse,
  strLength,
  strLower,
  strUpper,
  strContains,
  strStartsWith,
  strEndsWith,
  strSplit,
  listLength,
  listGet,
  structGet,
];

export const FUNCTIONS: ReadonlyMap<FunctionName, FunctionDef> = new Map(ALL.map((f) => [f.name, f]));

export function getFunction(name: FunctionName): FunctionDef | undefined {
  return FUNCTIONS.get(name);
}

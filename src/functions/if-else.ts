// if_else(cond, then, otherwise): `then` where cond is true, `otherwise` where it is false or null.
// Result type: supertype of then/otherwise (a null literal on either side is fine).
import type * as arrow from 'apache-arrow';
import { trueBits } from '../kernels/filter.ts';
import { zip } from '../kernels/zip.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef, requireKind, supertype, weakenLiterals } from './common.ts';

export const ifElse: FunctionDef = {
  name: 'if_else',
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 3);
    requireKind(ctx, fields, 0, ['bool'], 'a bool condition');
    // Weak literals adapt to the non-literal branch, not to the condition.
    const types = weakenLiterals(fields.slice(1), { fn: ctx.fn, args: ctx.args.slice(1) });
    const t = supertype(types[0]!, types[1]!);
    if (!t) {
      throw new ExpressionTypeError(`if_else branches ${describeArg(ctx, fields, 1)} and ${describeArg(ctx, fields, 2)} have no common type`);
    }
    return t;
  },
  coerce(_fields, _params, _ctx, outType) {
    return [null, outType, outType];
  },
  kernel(args, _params, n, ctx) {
    const [cond, a, b] = args as [arrow.Data, arrow.Data, arrow.Data];
    return zip(trueBits(cond, n), a, b, n, ctx.outType.toArrow());
  },
};

// neg: arithmetic negation of signed ints (wrapping at the minimum) and floats.
import { DataType } from '../datatypes.ts';
import { andValidity } from '../kernels/bitmap.ts';
import { allNull, arrayCtor, mkData, type NumArray } from '../kernels/data.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef } from './common.ts';

export const neg: FunctionDef = {
  name: 'neg',
  freshOutput: true,
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 1);
    const t = fields[0]!.type;
    if (t.kind === 'null') return DataType.null();
    if (t.kind.startsWith('uint'))
      throw new ExpressionTypeError(`cannot negate ${describeArg(ctx, fields, 0)}: unsigned values have no negation; cast to a signed type first`);
    if (!t.isNumeric()) throw new ExpressionTypeError(`cannot negate ${describeArg(ctx, fields, 0)}: neg needs a numeric operand`);
    return t;
  },
  kernel(args, _params, length, ctx) {
    const type = ctx.outType.toArrow();
    const a = args[0]!;
    // Single-argument kernels always see a.length === length (all-scalar calls run with length 1).
    if (ctx.outType.kind === 'null') return allNull(type, length);
    const n = length;
    const out = ctx.owned[0] && a.offset === 0 ? (a.values as NumArray) : new (arrayCtor(type))(n);
    if (ctx.outType.isBigInt()) {
      const src = a.values as BigInt64Array,
        dst = out as unknown as BigInt64Array;
      for (let i = 0; i < n; i++) dst[i] = -src[i]!;
    } else {
      const src = a.values as NumArray,
        dst = out as NumArray;
      for (let i = 0; i < n; i++) dst[i] = -src[i]!;
    }
    return mkData(type, n, andValidity([a], n), out);
  },
};

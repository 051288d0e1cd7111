// fill_null(value): x where x is valid, else value. Result type: supertype of both (weak literals
// apply, so `int64 col`.fillNull(0) stays int64).
import * as arrow from 'apache-arrow';
import type { DataType } from '../datatypes.ts';
import { bitmapBytes, copyBits, isValid } from '../kernels/bitmap.ts';
import { zip } from '../kernels/zip.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef, supertype, weakenLiterals } from './common.ts';

export const fillNull: FunctionDef = {
  name: 'fill_null',
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 2);
    const [a, b] = weakenLiterals(fields, ctx) as [DataType, DataType];
    const t = supertype(a, b);
    if (!t) {
      throw new ExpressionTypeError(`cannot fill nulls of ${describeArg(ctx, fields, 0)} with ${describeArg(ctx, fields, 1)}: no common type`);
    }
    return t;
  },
  coerce(_fields, _params, _ctx, outType) {
    return [outType, outType];
  },
  kernel(args, _params, n, ctx) {
    const [x, v] = args as [arrow.Data, arrow.Data];
    const type = ctx.outType.toArrow();
    const xS = x.length !== n;
    if (!xS && x.typeId !== arrow.Type.Null && x.nullCount === 0) return x;
    // pick bit set = keep x.
    const pick = new Uint8Array(bitmapBytes(n));
    if (xS) {
      if (isValid(x, 0)) pick.fill(0xff);
    } else if (x.typeId !== arrow.Type.Null) {
      copyBits(x.nullBitmap!, x.offset, pick, 0, n);
    }
    return zip(pick, x, v, n, type);
  },
};

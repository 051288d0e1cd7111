// between(lo, hi): lo <= x <= hi, inclusive. Null in any of x, lo, hi gives null (plain null
// propagation, as for every function other than and/or; SQL's expansion into two comparisons
// joined by AND would instead give false for e.g. `5 between null and 3`).
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { andValidity, bitmapBytes, bitsAt0 } from '../kernels/bitmap.ts';
import { mkData } from '../kernels/data.ts';
import { expectArity, type FunctionDef, promoteNumeric, supertype } from './common.ts';
import { comparisonCoercion, comparisonTypes, compareKernel } from './compare.ts';

export const between: FunctionDef = {
  name: 'between',
  freshOutput: true,
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 3);
    comparisonTypes('between', fields, ctx, 0, 1);
    comparisonTypes('between', fields, ctx, 0, 2);
    return DataType.bool();
  },
  coerce(fields, _params, ctx) {
    const [x, lo] = comparisonTypes('between', fields, ctx, 0, 1);
    const [, hi] = comparisonTypes('between', fields, ctx, 0, 2);
    // One common type for the three operands keeps both comparisons on a single loop each.
    let common: DataType = x;
    for (const t of [lo, hi]) {
      if (t.kind === 'null') continue;
      if (common.kind === 'null') {
        common = t;
        continue;
      }
      common = common.isNumeric() && t.isNumeric() ? promoteNumeric(common, t) : (supertype(common, t) ?? common);
    }
    if (common.kind === 'null') return [null, null, null];
    const [cx] = comparisonCoercion(common, common);
    return [x.kind === 'null' ? null : cx, lo.kind === 'null' ? null : cx, hi.kind === 'null' ? null : cx];
  },
  kernel(args, _params, n) {
    const [x, lo, hi] = args as [arrow.Data, arrow.Data, arrow.Data];
    const ge = compareKernel('ge', x, lo, n);
    const le = compareKernel('le', x, hi, n);
    const a = bitsAt0(ge.values as Uint8Array, ge.offset, n),
      b = bitsAt0(le.values as Uint8Array, le.offset, n);
    const out = new Uint8Array(bitmapBytes(n));
    for (let k = 0; k < out.length && k < a.length; k++) out[k] = a[k]! & b[k]!;
    return mkData(new arrow.Bool(), n, andValidity([x, lo, hi], n), out);
  },
};

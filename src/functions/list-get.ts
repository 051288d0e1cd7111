// list.get(index): element at params.index (negative counts from the end); out of range or null
// list -> null. Gathers from the child with take, so every element type works.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { isValid } from '../kernels/bitmap.ts';
import { allNull, fixedListSize } from '../kernels/data.ts';
import { take } from '../kernels/take.ts';
import { expectArity, ExpressionTypeError, type FunctionDef, type Params, requireKind } from './common.ts';

function indexOf(params: Params): number {
  const i = params['index'];
  if (typeof i !== 'number' || !Number.isInteger(i)) throw new ExpressionTypeError('list.get needs params.index, an integer');
  return i;
}

export const listGet: FunctionDef = {
  name: 'list.get',
  resolve(fields, params, ctx) {
    expectArity(ctx, fields, 1);
    requireKind(ctx, fields, 0, ['list', 'fixedSizeList'], 'a list operand');
    indexOf(params);
    const t = fields[0]!.type;
    return t.kind === 'null' ? DataType.null() : t.child();
  },
  kernel(args, params, n, ctx) {
    const d = args[0]!;
    if (d.typeId === arrow.Type.Null) return allNull(ctx.outType.toArrow(), n);
    const index = indexOf(params);
    const idx = new Int32Array(n);
    const noNulls = d.nullCount === 0;
    if (d.typeId === arrow.Type.FixedSizeList) {
      const size = fixedListSize(d.type);
      const k = index < 0 ? size + index : index;
      for (let i = 0; i < n; i++) idx[i] = k >= 0 && k < size && (noNulls || isValid(d, i)) ? i * size + k : -1;
    } else {
      const o = d.valueOffsets as Int32Array;
      for (let i = 0; i < n; i++) {
        const s = o[i]!,
          len = o[i + 1]! - s;
        const k = index < 0 ? len + index : index;
        idx[i] = k >= 0 && k < len && (noNulls || isValid(d, i)) ? s + k : -1;
      }
    }
    return take(d.children[0]!, idx);
  },
};

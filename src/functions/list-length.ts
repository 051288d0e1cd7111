// list.length: number of elements (null list -> null) -> int32. Works on list and fixed-size list.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { validity0 } from '../kernels/bitmap.ts';
import { allNull, fixedListSize, mkData } from '../kernels/data.ts';
import { expectArity, type FunctionDef, requireKind } from './common.ts';

export const listLength: FunctionDef = {
  name: 'list.length',
  freshOutput: true,
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 1);
    requireKind(ctx, fields, 0, ['list', 'fixedSizeList'], 'a list operand');
    return DataType.int32();
  },
  kernel(args, _params, n) {
    const d = args[0]!;
    const type = new arrow.Int32();
    if (d.typeId === arrow.Type.Null) return allNull(type, n);
    const out = new Int32Array(n);
    if (d.typeId === arrow.Type.FixedSizeList) {
      out.fill(fixedListSize(d.type));
    } else {
      const o = d.valueOffsets as Int32Array;
      for (let i = 0; i < n; i++) out[i] = o[i + 1]! - o[i]!;
    }
    return mkData(type, n, validity0(d), out);
  },
};

// str.length: length in Unicode code points (UTF-8 bytes that are not continuation bytes) -> int32.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { isAscii } from '../kernels/ascii.ts';
import { validity0 } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { expectArity, type FunctionDef, requireKind } from './common.ts';

export const strLength: FunctionDef = {
  name: 'str.length',
  freshOutput: true,
  resolve(fields, _params, ctx) {
    expectArity(ctx, fields, 1);
    requireKind(ctx, fields, 0, ['utf8'], 'a utf8 (string) operand');
    return DataType.int32();
  },
  kernel(args, _params, n) {
    const d = args[0]!;
    const type = new arrow.Int32();
    if (d.typeId === arrow.Type.Null) return allNull(type, n);
    const o = d.valueOffsets as Int32Array,
      b = d.values as Uint8Array;
    const out = new Int32Array(n);
    if (isAscii(b, o[0]!, o[n]!)) {
      for (let i = 0; i < n; i++) out[i] = o[i + 1]! - o[i]!;
      return mkData(type, n, validity0(d), out);
    }
    for (let i = 0; i < n; i++) {
      const s = o[i]!,
        e = o[i + 1]!;
      let c = 0;
      for (let k = s; k < e; k++) if ((b[k]! & 0xc0) !== 0x80) c++;
      out[i] = c;
    }
    return mkData(type, n, validity0(d), out);
  },
};

// str.split(sep) -> list<utf8>. Python/Daft semantics: '' -> [''], 'a,' -> ['a', ''];
// null -> null.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { isValid, validity0 } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { indexOfBytes, utf8Encoder } from '../kernels/utf8.ts';
import { expectArity, ExpressionTypeError, type FunctionDef, type Params, requireKind } from './common.ts';

function sepOf(params: Params): Uint8Array {
  const sep = params['sep'];
  if (typeof sep !== 'string' || sep.length === 0) throw new ExpressionTypeError('str.split needs params.sep, a non-empty string');
  return utf8Encoder.encode(sep);
}

export const strSplit: FunctionDef = {
  name: 'str.split',
  freshOutput: true,
  resolve(fields, params, ctx) {
    expectArity(ctx, fields, 1);
    requireKind(ctx, fields, 0, ['utf8'], 'a utf8 (string) operand');
    sepOf(params);
    return DataType.list(DataType.utf8());
  },
  kernel(args, params, n, ctx) {
    const d = args[0]!;
    const type = ctx.outType.toArrow();
    if (d.typeId === arrow.Type.Null) return allNull(type, n);
    const sep = sepOf(params);
    const sl = sep.length;
    const o = d.valueOffsets as Int32Array,
      b = d.values as Uint8Array;
    // Pass 1: pieces per row (null rows: none). Pass 2: copy the pieces without separators.
    const listOffsets = new Int32Array(n + 1);
    let pieces = 0,
      bytes = 0;
    for (let i = 0; i < n; i++) {
      if (isValid(d, i)) {
        const s = o[i]!,
          e = o[i + 1]!;
        let c = 1;
        for (let p = indexOfBytes(b, s, e, sep); p >= 0; p = indexOfBytes(b, p + sl, e, sep)) c++;
        pieces += c;
        bytes += e - s - (c - 1) * sl;
      }
      listOffsets[i + 1] = pieces;
    }
    const childOffsets = new Int32Array(pieces + 1);
    const childBytes = new Uint8Array(bytes);
    let piece = 0,
      pos = 0;
    for (let i = 0; i < n; i++) {
      if (listOffsets[i + 1] === listOffsets[i]) continue;
      const e = o[i + 1]!;
      let s = o[i]!;
      for (;;) {
        const p = indexOfBytes(b, s, e, sep);
        const stop = p < 0 ? e : p;
        childBytes.set(b.subarray(s, stop), pos);
        pos += stop - s;
        childOffsets[++piece] = pos;
        if (p < 0) break;
        s = p + sl;
      }
    }
    const child = mkData(new arrow.Utf8(), pieces, null, childBytes, childOffsets);
    return mkData(type, n, validity0(d), undefined, listOffsets, [child]);
  },
};

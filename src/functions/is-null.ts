// is_null / not_null: read the validity bitmap; never null themselves.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { bitmapBytes, copyBits, invertBits } from '../kernels/bitmap.ts';
import { mkData } from '../kernels/data.ts';
import { expectArity, type FunctionDef } from './common.ts';

function validBits(d: arrow.Data, n: number): Uint8Array {
  const out = new Uint8Array(bitmapBytes(n));
  if (d.typeId === arrow.Type.Null) return out;
  if (d.nullCount === 0) {
    out.fill(0xff, 0, n >> 3);
    if (n & 7) out[n >> 3] = (1 << (n & 7)) - 1;
    return out;
  }
  copyBits(d.nullBitmap!, d.offset, out, 0, n);
  return out;
}

function make(name: 'is_null' | 'not_null'): FunctionDef {
  return {
    name,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      expectArity(ctx, fields, 1);
      return DataType.bool();
    },
    kernel(args, _params, n) {
      const bits = validBits(args[0]!, n);
      if (name === 'is_null') invertBits(bits, n);
      return mkData(new arrow.Bool(), n, null, bits);
    },
  };
}

export const isNull = make('is_null');
export const notNull = make('not_null');

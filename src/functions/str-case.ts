// str.lower / str.upper. Fast path: when every byte is ASCII, one SWAR loop (4 bytes per step) over
// the whole value buffer, offsets reused as they are. Otherwise ASCII rows keep the byte loop and
// only non-ASCII rows go through String.prototype.toLowerCase/toUpperCase (full Unicode rules,
// lengths may change: 'ß' -> 'SS').
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { validity0 } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { asciiCaseMap } from '../kernels/ascii.ts';
import { utf8Decoder, Utf8Writer } from '../kernels/utf8.ts';
import { expectArity, type FunctionDef, requireKind } from './common.ts';

function caseMap(d: arrow.Data, n: number, upper: boolean): arrow.Data {
  const type = new arrow.Utf8();
  if (d.typeId === arrow.Type.Null) return allNull(type, n);
  const o = d.valueOffsets as Int32Array,
    b = d.values as Uint8Array;
  const start = o[0]!,
    end = o[n]!;
  const { out, ascii } = asciiCaseMap(b, start, end, upper);
  if (ascii) {
    const offsets = start === 0 ? o.subarray(0, n + 1) : o.subarray(0, n + 1).map((x) => x - start);
    return mkData(type, n, validity0(d), out, offsets);
  }
  const w = new Utf8Writer(n, end - start + 16);
  for (let i = 0; i < n; i++) {
    const s = o[i]!,
      e = o[i + 1]!;
    let ascii = true;
    for (let k = s; k < e; k++)
      if (b[k]! >= 0x80) {
        ascii = false;
        break;
      }
    if (ascii) {
      w.writeBytes(out, s - start, e - start);
    } else {
      const str = utf8Decoder.decode(b.subarray(s, e));
      w.writeString(upper ? str.toUpperCase() : str.toLowerCase());
    }
    w.endRow();
  }
  return mkData(type, n, validity0(d), w.values(), w.offsets);
}

function make(name: 'str.lower' | 'str.upper'): FunctionDef {
  return {
    name,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      expectArity(ctx, fields, 1);
      requireKind(ctx, fields, 0, ['utf8'], 'a utf8 (string) operand');
      return DataType.utf8();
    },
    kernel(args, _params, n) {
      return caseMap(args[0]!, n, name === 'str.upper');
    },
  };
}

export const strLower = make('str.lower');
export const strUpper = make('str.upper');

// str.contains / str.starts_with / str.ends_with with a pattern expression (literal or column;
// plain substring, not regex). A literal needle searches the whole value buffer with Buffer#indexOf
// (native) and maps hits back to rows; column needles compare per row.
import * as arrow from 'apache-arrow';
import { DataType } from '../datatypes.ts';
import { andValidity, bitmapBytes } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { indexOfBytes } from '../kernels/utf8.ts';
import { expectArity, type FunctionDef, requireKind } from './common.ts';

type MatchOp = 'str.contains' | 'str.starts_with' | 'str.ends_with';

/** contains with a scalar needle, rows [0, n) of offsets o over bytes b. */
function containsScalar(o: Int32Array, b: Uint8Array, n: number, needle: Uint8Array, out: Uint8Array): void {
  const nl = needle.length;
  if (nl === 0) {
    for (let i = 0; i < n; i++) out[i >> 3]! |= 1 << (i & 7);
    return;
  }
  const end = o[n]!;
  const hay = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const pat = Buffer.from(needle.buffer, needle.byteOffset, nl);
  let from = o[0]!;
  let r = 0;
  while (r < n) {
    const pos = hay.indexOf(pat, from);
    if (pos < 0 || pos + nl > end) break;
    while (o[r + 1]! <= pos) r++;
    if (pos + nl <= o[r + 1]!) {
      out[r >> 3]! |= 1 << (r & 7);
      from = o[r + 1]!;
      r++;
    } else {
      from = pos + 1; // the hit straddles two rows
    }
  }
}

function matchKernel(op: MatchOp, h: arrow.Data, p: arrow.Data, n: number): arrow.Data {
  const type = new arrow.Bool();
  const hS = h.length !== n,
    pS = p.length !== n;
  if (h.typeId === arrow.Type.Null || p.typeId === arrow.Type.Null || (hS && h.nullCount > 0) || (pS && p.nullCount > 0)) {
    return allNull(type, n);
  }
  const out = new Uint8Array(bitmapBytes(n));
  const ho = h.valueOffsets as Int32Array,
    hb = h.values as Uint8Array;
  const po = p.valueOffsets as Int32Array,
    pb = p.values as Uint8Array;
  if (op === 'str.contains' && !hS && pS) {
    containsScalar(ho, hb, n, pb.subarray(po[0]!, po[1]!), out);
  } else {
    for (let i = 0; i < n; i++) {
      const hi = hS ? 0 : i,
        pi = pS ? 0 : i;
      const s = ho[hi]!,
        e = ho[hi + 1]!,
        ps = po[pi]!,
        pe = po[pi + 1]!;
      const nl = pe - ps;
      if (nl > e - s) continue;
      let hit: boolean;
      if (op === 'str.contains') {
        hit = indexOfBytes(hb, s, e, pb, ps, pe) >= 0;
      } else {
        const at = op === 'str.starts_with' ? s : e - nl;
        hit = true;
        for (let k = 0; k < nl; k++)
          if (hb[at + k] !== pb[ps + k]) {
            hit = false;
            break;
          }
      }
      if (hit) out[i >> 3]! |= 1 << (i & 7);
    }
  }
  return mkData(type, n, andValidity([h, p], n), out);
}

function make(name: MatchOp): FunctionDef {
  return {
    name,
    freshOutput: true,
    resolve(fields, _params, ctx) {
      expectArity(ctx, fields, 2);
      requireKind(ctx, fields, 0, ['utf8'], 'a utf8 (string) operand');
      requireKind(ctx, fields, 1, ['utf8'], 'a utf8 (string) pattern');
      return DataType.bool();
    },
    kernel(args, _params, n) {
      return matchKernel(name, args[0]!, args[1]!, n);
    },
  };
}

export const strContains = make('str.contains');
export const strStartsWith = make('str.starts_with');
export const strEndsWith = make('str.ends_with');

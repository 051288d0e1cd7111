// is_in(values): membership in a literal list (params.values). Null input -> null; null entries in
// the list are ignored (they never match). Values are converted to the column's type once.
import * as arrow from 'apache-arrow';
import { DataType, type Field } from '../datatypes.ts';
import { decodeLiteral, type LiteralJSON, type Scalar } from '../expressions.ts';
import { bitmapBytes, getBit, validity0 } from '../kernels/bitmap.ts';
import { allNull, mkData } from '../kernels/data.ts';
import { parseDate, parseTimestamp, ticksFromMillis, unitOf } from '../kernels/temporal.ts';
import { equalBytes, utf8Encoder } from '../kernels/utf8.ts';
import { describeArg, expectArity, ExpressionTypeError, type FunctionDef, type Params, type ResolveContext } from './common.ts';

function listOf(params: Params): Scalar[] {
  const v = params['values'];
  if (!Array.isArray(v)) throw new ExpressionTypeError('is_in needs params.values, a list of literals');
  return (v as LiteralJSON[]).map(decodeLiteral);
}

function kindOf(v: Scalar): string {
  if (v instanceof Date) return 'Date';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Converts a list value to the column's physical value, undefined if it can never match, or throws. */
function convert(v: Scalar, t: DataType, arrowType: arrow.DataType, fail: () => never): number | bigint | boolean | Uint8Array | undefined {
  if (t.isNumeric()) {
    if (typeof v !== 'number' && typeof v !== 'bigint') fail();
    if (t.isBigInt()) {
      if (typeof v === 'bigint') return v;
      return Number.isInteger(v) ? BigInt(v) : undefined;
    }
    const x = typeof v === 'bigint' ? Number(v) : v;
    if (t.isInteger() && !Number.isInteger(x)) return undefined;
    if (Number.isNaN(x)) return undefined; // IEEE: NaN equals nothing
    return t.kind === 'float32' ? Math.fround(x) : x;
  }
  switch (t.kind) {
    case 'utf8':
      if (typeof v !== 'string') fail();
      return utf8Encoder.encode(v);
    case 'binary':
      if (typeof v === 'string') return utf8Encoder.encode(v);
      if (!(v instanceof Uint8Array)) fail();
      return v;
    case 'bool':
      if (typeof v !== 'boolean') fail();
      return v;
    case 'date':
      if (v instanceof Date) return Math.floor(v.getTime() / 86400000);
      if (typeof v === 'string') return parseDate(v) ?? fail();
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      return fail();
    case 'timestamp': {
      const unit = unitOf(arrowType);
      if (v instanceof Date) return ticksFromMillis(v.getTime(), unit);
      if (typeof v === 'string') return parseTimestamp(v, unit) ?? fail();
      if (typeof v === 'bigint') return v;
      if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
      return fail();
    }
    default:
      return fail();
  }
}

function lookupValues(t: DataType, params: Params, fields: readonly Field[] | null, ctx: ResolveContext | null) {
  const arrowType = t.toArrow();
  const out: (number | bigint | boolean | Uint8Array)[] = [];
  for (const v of listOf(params)) {
    if (v === null) continue;
    const fail = (): never => {
      const what = fields && ctx ? describeArg(ctx, fields, 0) : String(t);
      throw new ExpressionTypeError(
        `is_in on ${what}: list value ${typeof v === 'string' ? JSON.stringify(v) : String(v)} (${kindOf(v)}) does not match type ${t}`,
      );
    };
    const c = convert(v, t, arrowType, fail);
    if (c !== undefined) out.push(c);
  }
  return out;
}

export const isIn: FunctionDef = {
  name: 'is_in',
  freshOutput: true,
  resolve(fields, params, ctx) {
    expectArity(ctx, fields, 1);
    const t = fields[0]!.type;
    if (t.kind !== 'null' && !(t.isNumeric() || t.isTemporal() || ['utf8', 'binary', 'bool'].includes(t.kind))) {
      throw new ExpressionTypeError(`is_in needs a number, string, bool, binary, date or timestamp, got ${describeArg(ctx, fields, 0)}`);
    }
    if (t.kind !== 'null') lookupValues(t, params, fields, ctx);
    else listOf(params);
    return DataType.bool();
  },
  kernel(args, params, n) {
    const d = args[0]!;
    const type = new arrow.Bool();
    if (d.typeId === arrow.Type.Null) return allNull(type, n);
    const t = DataType.fromArrow(d.type);
    const vals = lookupValues(t, params, null, null);
    const out = new Uint8Array(bitmapBytes(n));
    if (t.kind === 'utf8' || t.kind === 'binary') {
      // Candidates bucketed by byte length: most rows are rejected by one array lookup.
      const byLen: Uint8Array[][] = [];
      for (const v of vals as Uint8Array[]) (byLen[v.length] ??= []).push(v);
      const o = d.valueOffsets as Int32Array,
        bytes = d.values as Uint8Array;
      for (let i = 0; i < n; i++) {
        const s = o[i]!,
          e = o[i + 1]!;
        const cands = byLen[e - s];
        if (cands === undefined) continue;
        for (const c of cands) {
          if (equalBytes(bytes, s, e, c, 0, c.length)) {
            out[i >> 3]! |= 1 << (i & 7);
            break;
          }
        }
      }
    } else if (t.kind === 'bool') {
      const hasT = vals.includes(true),
        hasF = vals.includes(false);
      const bits = d.values as Uint8Array;
      for (let i = 0; i < n; i++) {
        const b = getBit(bits, d.offset + i);
        if (b ? hasT : hasF) out[i >> 3]! |= 1 << (i & 7);
      }
    } else {
      const v = d.values as unknown as ArrayLike<number>;
      if (vals.length <= 8) {
        const list = vals as number[];
        const m = list.length;
        for (let i = 0; i < n; i++) {
          const x = v[i]!;
          for (let k = 0; k < m; k++)
            if (x === list[k]) {
              out[i >> 3]! |= 1 << (i & 7);
              break;
            }
        }
      } else {
        const set = new Set(vals as number[]);
        for (let i = 0; i < n; i++) if (set.has(v[i]!)) out[i >> 3]! |= 1 << (i & 7);
      }
    }
    const valid = validity0(d);
    return mkData(type, n, valid === null ? null : valid.slice(), out);
  },
};

// The JS side of the conversion: the value type, and the checks and descriptions of JS values that
// inference and the builders share.
//
// Value mapping (Arrow -> JS, and what JS values each column type accepts on the way in):
//   null                          -> null
//   bool                          -> boolean
//   int8..int32, uint8..uint32    -> number           (accepts integral numbers, or bigints, in range)
//   int64, uint64                 -> bigint           (accepts integral numbers or bigints in range)
//   float32, float64              -> number           (accepts numbers; bigints are converted)
//   utf8                          -> string
//   binary                        -> Uint8Array       (reads are views into the Arrow buffer: do not mutate)
//   date                          -> Date at UTC midnight (accepts Date; the time of day is dropped)
//   timestamp                     -> Date             (accepts Date, or a bigint already in the column's unit).
//                                    A Date holds milliseconds: us/ns timestamps lose their sub-ms
//                                    part on read (rounded toward -infinity).
//   list, fixedSizeList           -> JsValue[]        (accepts arrays and typed arrays)
//   struct                        -> plain object     (accepts plain objects; missing fields are null,
//                                                      keys not in the struct are ignored)
// `undefined` is accepted wherever null is. Arrow Data may be sliced (nonzero `offset`) and may have no
// validity bitmap when it has no nulls: every reader (from-arrow.ts) handles both, following arrow-js's
// layout conventions (fixed-width `values` and `valueOffsets` start at the slice, bitmaps and bool bits
// are indexed with `offset`, struct and fixed-size-list children are sliced with their parent).
import { DataType, type DataTypeJSON } from '../datatypes.ts';

/** A plain JS value as a row or a UDF argument sees it (the mapping above). */
export type JsValue = null | boolean | number | bigint | string | Uint8Array | Date | JsValue[] | { [k: string]: JsValue };

export function typeStr(t: DataTypeJSON): string {
  return new DataType(t).toString();
}

export function isPlainObject(v: object): v is Record<string, unknown> {
  const p = Object.getPrototypeOf(v) as unknown;
  return p === Object.prototype || p === null;
}

export type AnyTypedArray =
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint8ClampedArray
  | Uint16Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

export function isTypedArray(v: unknown): v is AnyTypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

/** A JS value for error messages: kind, and a short form of the value. */
export function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string': {
      const s = v.length > 40 ? `${v.slice(0, 40)}…` : v;
      return `string ${JSON.stringify(s)}`;
    }
    case 'number':
      return `number ${String(v)}`;
    case 'bigint':
      return `bigint ${v}n`;
    case 'boolean':
      return `boolean ${v}`;
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
  }
  if (v instanceof Date) return `Date ${Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name} of length ${(v as AnyTypedArray).length ?? v.byteLength}`;
  const ctor = (v as object).constructor;
  if (isPlainObject(v as object)) {
    const keys = Object.keys(v as object);
    return `object {${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}}`;
  }
  return `${ctor?.name ?? 'object'} instance`;
}

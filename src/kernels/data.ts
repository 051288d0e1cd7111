// Building and inspecting arrow.Data straight from typed arrays (no builders: they run 10-1000x
// slower than plain loops). Layout conventions of Arrow JS, relied on by every kernel:
//  - validity bit of logical slot i is at `offset + i`; bool values too;
//  - fixed-width values are pre-sliced: `values[i]` is slot i (Data.slice subarrays them);
//  - utf8/binary/list `valueOffsets` are pre-sliced: slot i spans valueOffsets[i]..[i + 1] of the
//    unsliced bytes / child;
//  - fixed-size-list and struct children are pre-sliced: slot i is child slot i*size / i.
// Kernels return offset-0 Data. A Data of length 1 passed where n rows are expected is a scalar.
import * as arrow from 'apache-arrow';
import { bitmapBytes, bitsAt0, finishValidity } from './bitmap.ts';

export type NumArray = Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array | Float32Array | Float64Array;
export type BigArray = BigInt64Array | BigUint64Array;
export type TypedArray = NumArray | BigArray;
export type TypedArrayCtor =
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/** Low-level constructor: buffers as Arrow JS expects them (empty bitmap when nothing is null). */
export function mkData(
  type: arrow.DataType,
  length: number,
  validity: Uint8Array | null,
  values?: TypedArray | Uint8Array,
  valueOffsets?: Int32Array,
  children?: arrow.Data[],
): arrow.Data {
  const { nullBitmap, nullCount } = finishValidity(validity, length);
  const buffers = [valueOffsets, values, nullBitmap, undefined] as unknown as ConstructorParameters<typeof arrow.Data>[4];
  return new arrow.Data(type, 0, length, nullCount, buffers, children ?? []);
}

/** Same as mkData but with a known null count (skips the popcount). */
export function mkDataCounted(
  type: arrow.DataType,
  length: number,
  nullBitmap: Uint8Array | null,
  nullCount: number,
  values?: TypedArray | Uint8Array,
  valueOffsets?: Int32Array,
  children?: arrow.Data[],
): arrow.Data {
  const bm = nullCount === 0 || nullBitmap === null ? new Uint8Array(0) : nullBitmap;
  const buffers = [valueOffsets, values, bm, undefined] as unknown as ConstructorParameters<typeof arrow.Data>[4];
  return new arrow.Data(type, 0, length, nullCount === 0 ? 0 : nullCount, buffers, children ?? []);
}

export function nullTypeData(length: number): arrow.Data {
  return new arrow.Data(new arrow.Null(), 0, length, length);
}

/** The typed-array class holding a fixed-width arrow type's values. */
export function arrayCtor(type: arrow.DataType): TypedArrayCtor {
  switch (type.typeId) {
    case arrow.Type.Int: {
      const t = type as arrow.Int;
      switch (t.bitWidth) {
        case 8:
          return t.isSigned ? Int8Array : Uint8Array;
        case 16:
          return t.isSigned ? Int16Array : Uint16Array;
        case 32:
          return t.isSigned ? Int32Array : Uint32Array;
        default:
          return t.isSigned ? BigInt64Array : BigUint64Array;
      }
    }
    case arrow.Type.Float:
      return (type as arrow.Float).precision === arrow.Precision.SINGLE ? Float32Array : Float64Array;
    case arrow.Type.Date:
      return (type as arrow.Date_).unit === arrow.DateUnit.DAY ? Int32Array : BigInt64Array;
    case arrow.Type.Timestamp:
      return BigInt64Array;
    default:
      throw new TypeError(`${String(type)} is not a fixed-width primitive type`);
  }
}

/** Int, Float, Date, Timestamp: one typed-array slot per value. */
export function isPrimitive(type: arrow.DataType): boolean {
  const id = type.typeId;
  return id === arrow.Type.Int || id === arrow.Type.Float || id === arrow.Type.Date || id === arrow.Type.Timestamp;
}

/** Values stored in a BigInt64Array / BigUint64Array. */
export function isBigIntType(type: arrow.DataType): boolean {
  return isPrimitive(type) && (arrayCtor(type) === BigInt64Array || arrayCtor(type) === BigUint64Array);
}

export function fixedListSize(type: arrow.DataType): number {
  return (type as arrow.FixedSizeList).listSize;
}

/** A Data of n rows, every one null, with a valid layout for `type`. */
export function allNull(type: arrow.DataType, n: number): arrow.Data {
  const bm = new Uint8Array(bitmapBytes(n));
  switch (type.typeId) {
    case arrow.Type.Null:
      return nullTypeData(n);
    case arrow.Type.Bool:
      return mkDataCounted(type, n, bm, n, new Uint8Array(bitmapBytes(n)));
    case arrow.Type.Utf8:
    case arrow.Type.Binary:
      return mkDataCounted(type, n, bm, n, new Uint8Array(0), new Int32Array(n + 1));
    case arrow.Type.List: {
      const childType = (type as arrow.List).children[0]!.type;
      return mkDataCounted(type, n, bm, n, undefined, new Int32Array(n + 1), [allNull(childType, 0)]);
    }
    case arrow.Type.FixedSizeList: {
      const childType = (type as arrow.FixedSizeList).children[0]!.type;
      return mkDataCounted(type, n, bm, n, undefined, undefined, [allNull(childType, n * fixedListSize(type))]);
    }
    case arrow.Type.Struct:
      return mkDataCounted(
        type,
        n,
        bm,
        n,
        undefined,
        undefined,
        (type as arrow.Struct).children.map((f) => allNull(f.type, n)),
      );
    default:
      if (isPrimitive(type)) return mkDataCounted(type, n, bm, n, new (arrayCtor(type))(n));
      throw new TypeError(`unsupported Arrow type ${String(type)}`);
  }
}

/** A zero-row Data of `type`. */
export function emptyData(type: arrow.DataType): arrow.Data {
  return allNull(type, 0);
}

/**
 * Same buffers, new arrow type object: used to give results exactly the type the schema promises
 * (e.g. list child field names) without copying. Only for physically identical layouts.
 */
export function retype(d: arrow.Data, type: arrow.DataType): arrow.Data {
  if (d.type === type) return d;
  let children = d.children;
  if (type.typeId === arrow.Type.List || type.typeId === arrow.Type.FixedSizeList) {
    children = [retype(d.children[0]!, type.children[0]!.type)];
  } else if (type.typeId === arrow.Type.Struct) {
    children = d.children.map((c, i) => retype(c, type.children[i]!.type));
  }
  return d.clone(type, d.offset, d.length, (d as unknown as { _nullCount: number })._nullCount, undefined, children);
}

/** Structural equality of arrow types, ignoring field names and nullability of nested fields. */
export function sameLayout(a: arrow.DataType, b: arrow.DataType): boolean {
  if (a.typeId !== b.typeId) return false;
  switch (a.typeId) {
    case arrow.Type.Int:
      return (a as arrow.Int).bitWidth === (b as arrow.Int).bitWidth && (a as arrow.Int).isSigned === (b as arrow.Int).isSigned;
    case arrow.Type.Float:
      return (a as arrow.Float).precision === (b as arrow.Float).precision;
    case arrow.Type.Date:
      return (a as arrow.Date_).unit === (b as arrow.Date_).unit;
    case arrow.Type.Timestamp:
      return (a as arrow.Timestamp).unit === (b as arrow.Timestamp).unit;
    case arrow.Type.List:
      return sameLayout(a.children[0]!.type, b.children[0]!.type);
    case arrow.Type.FixedSizeList:
      return fixedListSize(a) === fixedListSize(b) && sameLayout(a.children[0]!.type, b.children[0]!.type);
    case arrow.Type.Struct:
      return (
        a.children.length === b.children.length &&
        a.children.every((f: arrow.Field, i: number) => f.name === b.children[i]!.name && sameLayout(f.type, b.children[i]!.type))
      );
    case arrow.Type.Null:
    case arrow.Type.Bool:
    case arrow.Type.Utf8:
    case arrow.Type.Binary:
      return true;
    default:
      return false;
  }
}

/** Logical slice [start, start + length) (zero-copy; arrow's own slice keeps its conventions). */
export function sliceData(d: arrow.Data, start: number, length: number): arrow.Data {
  if (start < 0 || length < 0 || start + length > d.length) {
    throw new RangeError(`slice [${start}, ${start + length}) out of range for ${d.length} rows`);
  }
  if (start === 0 && length === d.length) return d;
  return d.slice(start, length);
}

/**
 * The same values with a different validity (offset-0 bits, or null = all valid), zero-copy except
 * for bool values at a nonzero offset, which are re-based to offset 0.
 */
export function withValidity(d: arrow.Data, bits: Uint8Array | null): arrow.Data {
  const n = d.length;
  const { nullBitmap, nullCount } = finishValidity(bits, n);
  let values = d.values as Uint8Array | undefined;
  if (d.typeId === arrow.Type.Bool && d.offset !== 0) values = bitsAt0(values!, d.offset, n);
  if (d.typeId === arrow.Type.Null) return d;
  const buffers = [d.valueOffsets, values, nullBitmap, undefined] as unknown as ConstructorParameters<typeof arrow.Data>[4];
  return new arrow.Data(d.type, 0, n, nullCount, buffers, d.children);
}

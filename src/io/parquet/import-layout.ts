// Arrow C data interface (wasm32 layout): schema structs, typed-array kinds, bitmaps, arrow.Data assembly.
import * as arrow from 'apache-arrow';
import type { DataTypeJSON } from '../../datatypes.ts';
import { own } from '../../kernels/owned.ts';
import { utf8Decoder } from './stats.ts';

export interface FfiSchemaNode {
  format: string;
  name: string;
  children: FfiSchemaNode[];
  dictionary: FfiSchemaNode | null;
}

function readCString(u8: Uint8Array, ptr: number): string {
  let end = ptr;
  while (u8[end] !== 0) end++;
  return utf8Decoder.decode(u8.subarray(ptr, end));
}

export function readFfiSchema(mem: ArrayBuffer, ptr: number): FfiSchemaNode {
  const dv = new DataView(mem);
  const u8 = new Uint8Array(mem);
  const walk = (p: number): FfiSchemaNode => {
    const format = readCString(u8, dv.getUint32(p, true));
    const namePtr = dv.getUint32(p + 4, true);
    const name = namePtr ? readCString(u8, namePtr) : '';
    const nChildren = Number(dv.getBigInt64(p + 24, true));
    const childrenPtr = dv.getUint32(p + 32, true);
    const dictPtr = dv.getUint32(p + 36, true);
    const children: FfiSchemaNode[] = [];
    for (let i = 0; i < nChildren; i++) children.push(walk(dv.getUint32(childrenPtr + 4 * i, true)));
    return { format, name, children, dictionary: dictPtr ? walk(dictPtr) : null };
  };
  return walk(ptr);
}

export type AnyTypedArray =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | Float32Array
  | Float64Array;
export type TypedCtor = (new (
  length: number,
) => AnyTypedArray) &
  (new (
    buffer: ArrayBuffer,
    byteOffset?: number,
    length?: number,
  ) => AnyTypedArray) & { BYTES_PER_ELEMENT: number };

/** Physical element type of primitive C-data formats. */
export function formatCtor(fmt: string): TypedCtor | null {
  switch (fmt) {
    case 'c':
      return Int8Array as unknown as TypedCtor;
    case 'C':
      return Uint8Array as unknown as TypedCtor;
    case 's':
      return Int16Array as unknown as TypedCtor;
    case 'S':
      return Uint16Array as unknown as TypedCtor;
    case 'i':
    case 'tdD':
    case 'tts':
    case 'ttm':
      return Int32Array as unknown as TypedCtor;
    case 'I':
      return Uint32Array as unknown as TypedCtor;
    case 'l':
    case 'tdm':
    case 'ttu':
    case 'ttn':
      return BigInt64Array as unknown as TypedCtor;
    case 'L':
      return BigUint64Array as unknown as TypedCtor;
    case 'f':
      return Float32Array as unknown as TypedCtor;
    case 'g':
      return Float64Array as unknown as TypedCtor;
    default:
      if (fmt.startsWith('ts') || fmt.startsWith('tD')) return BigInt64Array as unknown as TypedCtor;
      return null;
  }
}

export function targetCtor(kind: DataTypeJSON['kind']): TypedCtor | null {
  switch (kind) {
    case 'int8':
      return Int8Array as unknown as TypedCtor;
    case 'uint8':
      return Uint8Array as unknown as TypedCtor;
    case 'int16':
      return Int16Array as unknown as TypedCtor;
    case 'uint16':
      return Uint16Array as unknown as TypedCtor;
    case 'int32':
    case 'date':
      return Int32Array as unknown as TypedCtor;
    case 'uint32':
      return Uint32Array as unknown as TypedCtor;
    case 'int64':
    case 'timestamp':
      return BigInt64Array as unknown as TypedCtor;
    case 'uint64':
      return BigUint64Array as unknown as TypedCtor;
    case 'float32':
      return Float32Array as unknown as TypedCtor;
    case 'float64':
      return Float64Array as unknown as TypedCtor;
    default:
      return null;
  }
}

export const INT_RANGE: Partial<Record<DataTypeJSON['kind'], [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
};

const EMPTY_BITMAP = new Uint8Array(0);
const POPCOUNT = new Uint8Array(256).map((_, i) => {
  let c = 0;
  for (let x = i; x; x >>= 1) c += x & 1;
  return c;
});

/** Count set bits among the first n bits. */
export function popcount(bits: Uint8Array, n: number): number {
  let c = 0;
  const full = n >> 3;
  for (let i = 0; i < full; i++) c += POPCOUNT[bits[i]!]!;
  const rem = n & 7;
  if (rem) c += POPCOUNT[bits[full]! & ((1 << rem) - 1)]!;
  return c;
}

type DataBuffers = ConstructorParameters<typeof arrow.Data>[4];

export function makeArrowData(
  type: arrow.DataType,
  length: number,
  nullCount: number,
  validity: Uint8Array | null,
  values?: ArrayBufferView,
  offsets?: Int32Array,
  children: arrow.Data[] = [],
): arrow.Data {
  // Every caller passes buffers it has just allocated (copies out of wasm memory, conversions): a
  // worker may move them instead of copying (kernels/owned.ts).
  own(offsets);
  own(values);
  if (nullCount > 0) own(validity);
  const buffers = [offsets, values, nullCount > 0 && validity ? validity : EMPTY_BITMAP] as unknown as DataBuffers;
  return new arrow.Data(type, 0, length, Math.max(nullCount, 0), buffers, children);
}

export interface ArrayHeader {
  length: number;
  nullCount: number;
  offset: number;
  nBuffers: number;
  buffersPtr: number;
  childrenPtr: number;
  dictPtr: number;
}

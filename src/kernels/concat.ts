// concat: several Data of one type -> one offset-0 Data (buffers copied once, nested types
// recurse into the child ranges the parts actually use).
import * as arrow from 'apache-arrow';
import { bitmapBytes, copyBits, hasNoNulls } from './bitmap.ts';
import { allNull as allNullOf, arrayCtor, fixedListSize, isPrimitive, mkData, nullTypeData, retype, type TypedArray } from './data.ts';

function setRange(b: Uint8Array, start: number, n: number): void {
  let i = start;
  const end = start + n;
  while (i < end && (i & 7) !== 0) {
    b[i >> 3]! |= 1 << (i & 7);
    i++;
  }
  const fullEnd = end & ~7;
  if (i < fullEnd) {
    b.fill(0xff, i >> 3, fullEnd >> 3);
    i = fullEnd;
  }
  while (i < end) {
    b[i >> 3]! |= 1 << (i & 7);
    i++;
  }
}

function concatValidity(parts: readonly arrow.Data[], n: number): Uint8Array | null {
  if (parts.every(hasNoNulls)) return null;
  const out = new Uint8Array(bitmapBytes(n));
  let pos = 0;
  for (const p of parts) {
    if (p.typeId === arrow.Type.Null) {
      /* all null: leave zeros */
    } else if (p.nullCount === 0) setRange(out, pos, p.length);
    else copyBits(p.nullBitmap!, p.offset, out, pos, p.length);
    pos += p.length;
  }
  return out;
}

/** Child range [start, end) a variable-size part uses. */
function childRange(p: arrow.Data): [number, number] {
  const o = p.valueOffsets as Int32Array;
  return [o[0]!, o[p.length]!];
}

function concatOffsets(parts: readonly arrow.Data[], n: number): Int32Array {
  const out = new Int32Array(n + 1);
  let pos = 0,
    base = 0;
  for (const p of parts) {
    const o = p.valueOffsets as Int32Array;
    const shift = base - o[0]!;
    for (let i = 1; i <= p.length; i++) out[pos + i] = o[i]! + shift;
    pos += p.length;
    base = out[pos]!;
  }
  return out;
}

/** One Data with the rows of all parts, in order. A single part is returned without copying. */
export function concatData(parts: readonly arrow.Data[], type: arrow.DataType): arrow.Data {
  if (parts.length === 1) return retype(parts[0]!, type);
  const n = parts.reduce((s, p) => s + p.length, 0);
  if (type.typeId === arrow.Type.Null) return nullTypeData(n);
  for (const p of parts) {
    if (p.typeId !== type.typeId && p.typeId !== arrow.Type.Null) {
      throw new TypeError(`concat: part of type ${String(p.type)} does not match ${String(type)}`);
    }
  }
  // Null-typed parts (e.g. an all-null literal column) become all-null parts of the target type.
  if (parts.some((p) => p.typeId === arrow.Type.Null)) {
    return concatData(
      parts.map((p) => (p.typeId === arrow.Type.Null ? allNullOf(type, p.length) : p)),
      type,
    );
  }
  const validity = concatValidity(parts, n);
  switch (type.typeId) {
    case arrow.Type.Bool: {
      const bits = new Uint8Array(bitmapBytes(n));
      let pos = 0;
      for (const p of parts) {
        copyBits(p.values as Uint8Array, p.offset, bits, pos, p.length);
        pos += p.length;
      }
      return mkData(type, n, validity, bits);
    }
    case arrow.Type.Utf8:
    case arrow.Type.Binary: {
      const offsets = concatOffsets(parts, n);
      const bytes = new Uint8Array(offsets[n]!);
      let pos = 0;
      for (const p of parts) {
        const [s, e] = childRange(p);
        bytes.set((p.values as Uint8Array).subarray(s, e), pos);
        pos += e - s;
      }
      return mkData(type, n, validity, bytes, offsets);
    }
    case arrow.Type.List: {
      const offsets = concatOffsets(parts, n);
      const childType = type.children[0]!.type;
      const children = parts.map((p) => {
        const [s, e] = childRange(p);
        return p.children[0]!.slice(s, e - s);
      });
      return mkData(type, n, validity, undefined, offsets, [concatData(children, childType)]);
    }
    case arrow.Type.FixedSizeList: {
      const size = fixedListSize(type);
      const children = parts.map((p) => p.children[0]!.slice(0, p.length * size));
      return mkData(type, n, validity, undefined, undefined, [concatData(children, type.children[0]!.type)]);
    }
    case arrow.Type.Struct: {
      const children = (type as arrow.Struct).children.map((f, j) =>
        concatData(
          parts.map((p) => p.children[j]!.slice(0, p.length)),
          f.type,
        ),
      );
      return mkData(type, n, validity, undefined, undefined, children);
    }
    default: {
      if (!isPrimitive(type)) throw new TypeError(`concat: unsupported Arrow type ${String(type)}`);
      const out = new (arrayCtor(type))(n) as TypedArray;
      let pos = 0;
      for (const p of parts) {
        (out as Float64Array).set((p.values as Float64Array).subarray(0, p.length), pos);
        pos += p.length;
      }
      return mkData(type, n, validity, out);
    }
  }
}

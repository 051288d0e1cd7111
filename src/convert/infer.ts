// Schema inference from JS values: each value's type, merged per column into a common supertype.
import { DataType, Field, Schema, type DataTypeJSON, type FieldJSON } from '../datatypes.ts';
import { describe, isPlainObject, isTypedArray, typeStr, type AnyTypedArray } from './js-value.ts';

// Singletons so that the per-value inference of scalar columns allocates nothing and merges by identity.
const T_NULL: DataTypeJSON = { kind: 'null' };
const T_BOOL: DataTypeJSON = { kind: 'bool' };
const T_INT64: DataTypeJSON = { kind: 'int64' };
const T_FLOAT64: DataTypeJSON = { kind: 'float64' };
const T_UTF8: DataTypeJSON = { kind: 'utf8' };
const T_BINARY: DataTypeJSON = { kind: 'binary' };
const T_TS_MS: DataTypeJSON = { kind: 'timestamp', unit: 'ms', tz: null };

class MergeError extends Error {
  constructor(
    readonly a: DataTypeJSON,
    readonly b: DataTypeJSON,
  ) {
    super('incompatible types');
  }
}

/** Arrow type of a typed array's elements (the zero-copy mapping of columnsToBatch). */
export function typedArrayType(a: AnyTypedArray): DataTypeJSON {
  if (a instanceof Float64Array) return T_FLOAT64;
  if (a instanceof Float32Array) return { kind: 'float32' };
  if (a instanceof Int32Array) return { kind: 'int32' };
  if (a instanceof Int16Array) return { kind: 'int16' };
  if (a instanceof Int8Array) return { kind: 'int8' };
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) return { kind: 'uint8' };
  if (a instanceof Uint16Array) return { kind: 'uint16' };
  if (a instanceof Uint32Array) return { kind: 'uint32' };
  if (a instanceof BigInt64Array) return T_INT64;
  return { kind: 'uint64' };
}

class UnsupportedValue extends Error {}

/**
 * Type of one JS value. A number is float64 whether or not it is integral: JS numbers are doubles,
 * and an int64 column would hand them back as bigints, which the code that made them does not
 * expect (Arrow JS, DuckDB's Node client and nodejs-polars infer float64 too). Only a bigint is int64.
 */
function inferValue(v: unknown): DataTypeJSON {
  if (v === null || v === undefined) return T_NULL;
  switch (typeof v) {
    case 'number':
      return T_FLOAT64;
    case 'bigint':
      return T_INT64;
    case 'string':
      return T_UTF8;
    case 'boolean':
      return T_BOOL;
    case 'object':
      break;
    default:
      throw new UnsupportedValue(`unsupported value ${describe(v)}`);
  }
  if (v instanceof Date) return T_TS_MS;
  if (v instanceof Uint8Array) return T_BINARY;
  if (Array.isArray(v)) {
    let child = T_NULL;
    for (let i = 0; i < v.length; i++) {
      const t = inferValue(v[i]);
      if (t !== child) child = mergeTypes(child, t);
    }
    return { kind: 'list', child };
  }
  if (isTypedArray(v)) return { kind: 'list', child: typedArrayType(v) };
  if (isPlainObject(v)) {
    const fields: FieldJSON[] = [];
    for (const k of Object.keys(v)) fields.push({ name: k, type: inferValue(v[k]), nullable: true });
    return { kind: 'struct', fields };
  }
  throw new UnsupportedValue(`unsupported value ${describe(v)}`);
}

export const INT_BITS: Partial<Record<DataTypeJSON['kind'], number>> = {
  int8: 8,
  int16: 16,
  int32: 32,
  int64: 64,
  uint8: 8,
  uint16: 16,
  uint32: 32,
  uint64: 64,
};

/** Common supertype of two inferred types, or MergeError. */
function mergeTypes(a: DataTypeJSON, b: DataTypeJSON): DataTypeJSON {
  if (a === b) return a;
  if (a.kind === 'null') return b;
  if (b.kind === 'null') return a;
  const ab = INT_BITS[a.kind],
    bb = INT_BITS[b.kind];
  const aNum = ab !== undefined || a.kind === 'float32' || a.kind === 'float64';
  const bNum = bb !== undefined || b.kind === 'float32' || b.kind === 'float64';
  if (aNum && bNum) {
    if (a.kind === b.kind) return a;
    // 64-bit integers surface as bigint, every other number type as number: a column mixing them
    // has no type whose values are what the caller passed in (float64 would round the bigints).
    if ((ab === 64) !== (bb === 64)) throw new MergeError(a, b);
    if (ab !== undefined && bb !== undefined) {
      if (a.kind[0] === b.kind[0]) return ab >= bb ? a : b; // same signedness: the wider one
      if (ab === 64) return T_INT64; // int64 + uint64
      // Mixed signedness: the narrowest signed type holding both (int8 + uint8 -> int16); past
      // 32 bits float64, exact for both and still a number (int64 would turn them into bigints).
      const u = a.kind[0] === 'u' ? ab : bb!,
        i = a.kind[0] === 'u' ? bb! : ab;
      const w = Math.max(2 * u, i);
      return w <= 32 ? { kind: `int${w}` as 'int16' | 'int32' } : T_FLOAT64;
    }
    return T_FLOAT64;
  }
  if (a.kind !== b.kind) throw new MergeError(a, b);
  switch (a.kind) {
    case 'list': {
      const child = mergeTypes(a.child, (b as typeof a).child);
      return child === a.child ? a : { kind: 'list', child };
    }
    case 'struct': {
      const bf = (b as typeof a).fields;
      let changed = bf.length !== a.fields.length;
      const fields = a.fields.map((f, i) => {
        const o = bf[i]?.name === f.name ? bf[i] : bf.find((g) => g.name === f.name);
        if (!o) {
          changed = true;
          return f;
        }
        const t = mergeTypes(f.type, o.type);
        if (t !== f.type) changed = true;
        return t === f.type ? f : { ...f, type: t };
      });
      if (!changed) return a;
      for (const g of bf) if (!fields.some((f) => f.name === g.name)) fields.push(g);
      return { kind: 'struct', fields };
    }
    case 'timestamp':
    case 'fixedSizeList':
      if (JSON.stringify(a) === JSON.stringify(b)) return a;
      throw new MergeError(a, b);
    default:
      return a;
  }
}

/** Common type of a column's non-null values (see `inferSchemaFromRecords`); errors name the column and row. */
export function inferColumn(name: string, values: ArrayLike<unknown>): DataTypeJSON {
  let t = T_NULL;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) continue;
    try {
      const vt = inferValue(v);
      if (vt !== t) t = mergeTypes(t, vt);
    } catch (e) {
      throw inferError(e, name, i, t, v);
    }
  }
  return t;
}

function inferError(e: unknown, name: string, row: number, prev: DataTypeJSON, v: unknown): Error {
  if (e instanceof MergeError) {
    let vt: DataTypeJSON | null = null;
    try {
      vt = inferValue(v);
    } catch {
      /* the value itself mixes types */
    }
    const big = (t: DataTypeJSON): boolean => INT_BITS[t.kind] === 64;
    const num = (t: DataTypeJSON): boolean => !big(t) && (INT_BITS[t.kind] !== undefined || t.kind === 'float32' || t.kind === 'float64');
    const mixesBigInt = (big(e.a) && num(e.b)) || (num(e.a) && big(e.b));
    const hint = mixesBigInt
      ? 'it mixes bigints and numbers: use bigints throughout for int64 or numbers for float64, or pass a schema'
      : 'pass a schema or make the values consistent';
    if (vt === null) {
      return new TypeError(
        `column '${name}', row ${row}: cannot infer one type for ${describe(v)}: it mixes ${typeStr(e.a)} and ${typeStr(e.b)}${mixesBigInt ? ` (${hint})` : ''}`,
      );
    }
    return new TypeError(
      `column '${name}': cannot infer one type: row ${row} has ${typeStr(vt)} (${describe(v)}) but earlier rows have ${typeStr(prev)}; ${hint}`,
    );
  }
  if (e instanceof UnsupportedValue) return new TypeError(`column '${name}', row ${row}: ${e.message}`);
  return e as Error;
}

/**
 * Schema of plain-object rows: the union of their keys in first-seen order; each column gets the
 * common type of its non-null values (see `inferValue`: numbers float64, bigints int64 (a column
 * mixing numbers and bigints is an error), Date timestamp[ms], Uint8Array binary, other
 * typed arrays list<their element type>, arrays list<merged element type>, plain objects struct
 * with unioned fields). A column with only null/undefined values gets the `null` type (it can
 * still be cast later; guessing utf8 would invent information). Incompatible types in one column
 * throw an Error naming the column, the row and both types.
 */
export function inferSchemaFromRecords(rows: readonly Record<string, unknown>[]): Schema {
  const index = new Map<string, number>();
  const names: string[] = [];
  const types: DataTypeJSON[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new TypeError(`row ${i} is not an object: ${describe(r)}`);
    for (const k of Object.keys(r)) {
      let j = index.get(k);
      if (j === undefined) {
        j = names.length;
        index.set(k, j);
        names.push(k);
        types.push(T_NULL);
      }
      const v = r[k];
      if (v === null || v === undefined) continue;
      const cur = types[j]!;
      try {
        const vt = inferValue(v);
        if (vt !== cur) types[j] = mergeTypes(cur, vt);
      } catch (e) {
        throw inferError(e, k, i, cur, v);
      }
    }
  }
  // Cloned: the inferred types share module-level singleton descriptors.
  return new Schema(names.map((n, j) => new Field(n, new DataType(structuredClone(types[j]!)), true)));
}

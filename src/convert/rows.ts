// Whole batches: plain-object rows and named columns -> RecordBatch, and a batch back to rows.
import * as arrow from 'apache-arrow';
import { DataType, Field, Schema } from '../datatypes.ts';
import { isValid, zipCols, zipper } from './from-arrow.ts';
import { inferColumn, inferSchemaFromRecords, typedArrayType } from './infer.ts';
import { describe, isTypedArray, type JsValue } from './js-value.ts';
import { bufs, build, EMPTY_BITMAP } from './to-arrow.ts';

function checkNonNullable(data: arrow.Data, field: Field): void {
  if (field.nullable || data.nullCount === 0) return;
  for (let i = 0; i < data.length; i++) {
    if (!isValid(data, i)) throw new TypeError(`column '${field.name}', row ${i}: null in non-nullable column (${field.type})`);
  }
}

function makeBatch(arrowSchema: arrow.Schema, children: arrow.Data[], length: number): arrow.RecordBatch {
  const struct = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, length, 0, bufs(undefined, undefined, EMPTY_BITMAP), children);
  return new arrow.RecordBatch(arrowSchema, struct as arrow.Data<arrow.Struct>);
}

/**
 * A RecordBatch from plain-object rows. Without `schema` the schema is inferred
 * (`inferSchemaFromRecords`). With it, each value is checked against its column type (error names
 * column, row and value); keys not in the schema are ignored and missing keys are null.
 */
export function recordsToBatch(rows: readonly Record<string, unknown>[], schema?: Schema): arrow.RecordBatch {
  const s = schema ?? inferSchemaFromRecords(rows);
  const n = rows.length;
  if (schema) {
    for (let i = 0; i < n; i++) {
      const r = rows[i];
      if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new TypeError(`row ${i} is not an object: ${describe(r)}`);
    }
  }
  const as = s.toArrow();
  const children = s.fields.map((f, j) => {
    const name = f.name;
    const col = new Array<unknown>(n);
    // A missing key must not pick up Object.prototype members (a column called 'toString').
    const inherited = name in Object.prototype;
    for (let i = 0; i < n; i++) {
      const r = rows[i]!;
      col[i] = inherited && !Object.hasOwn(r, name) ? undefined : r[name];
    }
    const data = build(col, n, f.type.json, as.fields[j]!.type as arrow.DataType, { what: `column '${name}'`, path: '', rowOf: null });
    checkNonNullable(data, f);
    return data;
  });
  return makeBatch(as, children, n);
}

/**
 * A RecordBatch from named columns. Typed arrays map zero-copy to their Arrow type (Float64Array ->
 * float64, Int32Array -> int32, BigInt64Array -> int64, Uint8Array -> uint8, ...): the batch shares
 * their memory, so later writes to the array show through. Plain arrays are inferred like record
 * values. With `schema`, columns are taken in schema order; a typed array whose element type differs
 * from the schema's is converted (copied), and a column missing from, or not in, the schema is an error.
 */
export function columnsToBatch(columns: Record<string, readonly unknown[] | ArrayLike<number> | ArrayLike<bigint>>, schema?: Schema): arrow.RecordBatch {
  const names = Object.keys(columns);
  let length = -1;
  let first = '';
  for (const name of names) {
    const c = columns[name];
    if (c === null || typeof c !== 'object' || typeof c.length !== 'number') {
      throw new TypeError(`column '${name}' is not an array or typed array: ${describe(c)}`);
    }
    if (length < 0) {
      length = c.length;
      first = name;
    } else if (c.length !== length) {
      const lens = names.map((m) => `'${m}' has ${columns[m]!.length}`).join(', ');
      throw new RangeError(`columns have different lengths: '${first}' has ${length} but '${name}' has ${c.length} (${lens})`);
    }
  }
  if (length < 0) length = 0;
  let s: Schema;
  if (schema) {
    for (const f of schema.fields)
      if (!Object.hasOwn(columns, f.name))
        throw new TypeError(`column '${f.name}' of the schema is missing from the columns (${names.map((m) => `'${m}'`).join(', ') || 'none'})`);
    for (const name of names)
      if (!schema.has(name)) throw new TypeError(`column '${name}' is not in the schema (${schema.names.map((m) => `'${m}'`).join(', ')})`);
    s = schema;
  } else {
    s = new Schema(
      names.map((name) => {
        const c = columns[name]!;
        const t = isTypedArray(c) ? typedArrayType(c) : inferColumn(name, c as ArrayLike<unknown>);
        return new Field(name, new DataType(structuredClone(t)), true);
      }),
    );
  }
  const as = s.toArrow();
  const children = s.fields.map((f, j) => {
    const c = columns[f.name]!;
    const at = as.fields[j]!.type as arrow.DataType;
    let data: arrow.Data;
    if (isTypedArray(c) && new DataType(typedArrayType(c)).equals(f.type)) {
      // Zero-copy: a Uint8Array view is re-wrapped only to drop Buffer's prototype, as arrow does.
      const values = c instanceof Uint8Array || c instanceof Uint8ClampedArray ? new Uint8Array(c.buffer, c.byteOffset, c.length) : c;
      data = new arrow.Data(at, 0, c.length, 0, bufs(undefined, values, EMPTY_BITMAP));
    } else {
      const vals = Array.isArray(c) ? c : Array.from(c as ArrayLike<unknown>);
      data = build(vals, length, f.type.json, at, { what: `column '${f.name}'`, path: '', rowOf: null });
    }
    checkNonNullable(data, f);
    return data;
  });
  return makeBatch(as, children, length);
}

/** Rows of a batch as plain objects keyed by column name (column-wise decode, then one generated zip). */
export function batchToRows(batch: arrow.RecordBatch): Record<string, JsValue>[] {
  const n = batch.numRows;
  const cols = zipCols(batch.data.children, 0, n);
  return zipper(
    batch.schema.fields.map((f) => f.name),
    cols,
  )(cols, n, null, 0) as Record<string, JsValue>[];
}

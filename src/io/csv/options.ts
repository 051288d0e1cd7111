// CSV options: the public option types, the `schema` option's validation, defaults and resolved options.
import { DataType, Field, Schema, type DataTypeJSON, type SchemaJSON } from '../../datatypes.ts';

export interface CsvOptions {
  /** Default ',' (tab for *.tsv files). */
  delimiter?: string;
  header?: boolean;
  /** Unquoted field values read as null (default ['']). Empty fields are null for non-string columns. */
  nullValues?: string[];
  /**
   * Names and types of the columns to read: a Schema, or `{ name: DataType }`. With a header, fields
   * are matched to header names (order free; header columns not in the schema are not read). A schema
   * whose names are none of the header's, with one field per column, renames the columns by position,
   * as it does without a header.
   */
  schema?: Schema;
  inferRows?: number;
  batchSize?: number;
  columns?: readonly string[];
}

/** A CSV schema option: a Schema, or an object mapping column names to DataTypes (in file order). */
export type CsvSchema = Schema | Readonly<Record<string, DataType>>;

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'an unknown class'}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * The `schema` option as a Schema: a Schema (also one from another copy of this package), or a plain
 * object `{ id: DataType.int64(), ... }` whose fields are nullable. Anything else is a TypeError that
 * says what is expected.
 */
export function csvSchemaOption(schema: unknown, where: string): Schema | undefined {
  if (schema === undefined) return undefined;
  if (schema instanceof Schema) return schema;
  const expected = `${where}: option 'schema' must be a Schema or an object mapping column names to DataTypes (e.g. { id: DataType.int64(), amount: DataType.float64() })`;
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new TypeError(`${expected}, got ${describeValue(schema)}`);
  const o = schema as { fields?: unknown; toJSON?: unknown };
  if (Array.isArray(o.fields) && typeof o.toJSON === 'function') return Schema.fromJSON((o.toJSON as () => SchemaJSON)());
  const proto: unknown = Object.getPrototypeOf(schema);
  if (proto !== Object.prototype && proto !== null) throw new TypeError(`${expected}, got ${describeValue(schema)}`);
  const entries = Object.entries(schema as Record<string, unknown>);
  if (entries.length === 0) throw new TypeError(`${expected}, got an empty object`);
  return new Schema(
    entries.map(([name, t]) => {
      if (t instanceof DataType) return new Field(name, t, true);
      // A DataType from another copy of this package carries the same JSON.
      const json = (t as { json?: { kind?: unknown } } | null)?.json;
      if (t && typeof t === 'object' && json && typeof json.kind === 'string') return new Field(name, new DataType(json as DataTypeJSON), true);
      throw new TypeError(`${expected}; column '${name}' is ${describeValue(t)}, not a DataType`);
    }),
  );
}

export interface WriteCsvOptions {
  delimiter?: string;
  header?: boolean;
  schema?: Schema;
}

const DEFAULT_BATCH_SIZE = 65536;
const DEFAULT_INFER_ROWS = 1000;
export const CHUNK = 1 << 20;
export const QUOTE = 0x22;
export const LF = 0x0a;
export const CR = 0x0d;

// ---------------------------------------------------------------------------------------------
// Options

export interface Resolved {
  delim: number;
  header: boolean;
  nulls: Uint8Array[];
  defaultNulls: boolean;
  inferRows: number;
  batchSize: number;
}

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

export function resolveOptions(opts: CsvOptions, file: string): Resolved {
  const d = opts.delimiter ?? (file.toLowerCase().endsWith('.tsv') ? '\t' : ',');
  if (d.length !== 1 || d.charCodeAt(0) > 127 || d === '"' || d === '\n' || d === '\r') {
    throw new RangeError(`CSV delimiter must be a single ASCII character other than a quote or newline, got ${JSON.stringify(d)}`);
  }
  const nullValues = opts.nullValues ?? [''];
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  return {
    delim: d.charCodeAt(0),
    header: opts.header ?? true,
    nulls: nullValues.map((v) => encoder.encode(v)),
    defaultNulls: nullValues.length === 1 && nullValues[0] === '',
    inferRows: opts.inferRows ?? DEFAULT_INFER_ROWS,
    batchSize,
  };
}

// Data types and schemas. A DataType is a plain JSON descriptor (plans ship as JSON) wrapped in a
// small class that maps to and from apache-arrow types.
import * as arrow from 'apache-arrow';

export type TimeUnit = 's' | 'ms' | 'us' | 'ns';

export type DataTypeJSON =
  | { kind: 'null' }
  | { kind: 'bool' }
  | { kind: 'int8' }
  | { kind: 'int16' }
  | { kind: 'int32' }
  | { kind: 'int64' }
  | { kind: 'uint8' }
  | { kind: 'uint16' }
  | { kind: 'uint32' }
  | { kind: 'uint64' }
  | { kind: 'float32' }
  | { kind: 'float64' }
  | { kind: 'utf8' }
  | { kind: 'binary' }
  | { kind: 'date' }
  | { kind: 'timestamp'; unit: TimeUnit; tz: string | null }
  | { kind: 'list'; child: DataTypeJSON }
  | { kind: 'fixedSizeList'; child: DataTypeJSON; size: number }
  | { kind: 'struct'; fields: FieldJSON[] };

export type DataTypeKind = DataTypeJSON['kind'];

/** What a list column accepts: arrays, and typed arrays for numeric children (e.g. embeddings). */
export type ListValue<T> = readonly (T | null)[] | (number extends T ? ArrayLike<number> : never);

export interface FieldJSON {
  name: string;
  type: DataTypeJSON;
  nullable: boolean;
}

const INTEGER_KINDS = new Set<DataTypeKind>(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64']);
const FLOAT_KINDS = new Set<DataTypeKind>(['float32', 'float64']);

/**
 * A column type. `T` is the JS values it accepts (phantom, contravariant: a UDF whose function
 * returns strings cannot declare `returnDtype: DataType.float64()`). A bare `DataType` is any type.
 */
export class DataType<T = never> {
  declare readonly __accepts?: (value: T) => void;
  constructor(readonly json: DataTypeJSON) {}

  static null(): DataType<null> {
    return new DataType({ kind: 'null' });
  }
  static bool(): DataType<boolean> {
    return new DataType({ kind: 'bool' });
  }
  static int8(): DataType<number> {
    return new DataType({ kind: 'int8' });
  }
  static int16(): DataType<number> {
    return new DataType({ kind: 'int16' });
  }
  static int32(): DataType<number> {
    return new DataType({ kind: 'int32' });
  }
  static int64(): DataType<bigint | number> {
    return new DataType({ kind: 'int64' });
  }
  static uint8(): DataType<number> {
    return new DataType({ kind: 'uint8' });
  }
  static uint16(): DataType<number> {
    return new DataType({ kind: 'uint16' });
  }
  static uint32(): DataType<number> {
    return new DataType({ kind: 'uint32' });
  }
  static uint64(): DataType<bigint | number> {
    return new DataType({ kind: 'uint64' });
  }
  static float32(): DataType<number> {
    return new DataType({ kind: 'float32' });
  }
  static float64(): DataType<number> {
    return new DataType({ kind: 'float64' });
  }
  static utf8(): DataType<string> {
    return new DataType({ kind: 'utf8' });
  }
  static string(): DataType<string> {
    return DataType.utf8();
  }
  static binary(): DataType<Uint8Array> {
    return new DataType({ kind: 'binary' });
  }
  /** Calendar date (days since the epoch, Arrow Date32). */
  static date(): DataType<Date> {
    return new DataType({ kind: 'date' });
  }
  static timestamp(unit: TimeUnit = 'us', tz: string | null = null): DataType<Date | bigint> {
    return new DataType({ kind: 'timestamp', unit, tz });
  }
  static list<T>(child: DataType<T>): DataType<ListValue<T>> {
    return new DataType({ kind: 'list', child: child.json });
  }
  static fixedSizeList<T>(child: DataType<T>, size: number): DataType<ListValue<T>> {
    if (!Number.isInteger(size) || size <= 0) throw new TypeError(`fixedSizeList size must be a positive integer, got ${size}`);
    return new DataType({ kind: 'fixedSizeList', child: child.json, size });
  }
  static struct<F extends Record<string, DataType<never>>>(fields: F): DataType<{ [K in keyof F]: F[K] extends DataType<infer V> ? V | null : never }> {
    return new DataType({
      kind: 'struct',
      fields: Object.entries(fields).map(([name, t]) => ({ name, type: t.json, nullable: true })),
    });
  }

  static fromJSON(json: DataTypeJSON): DataType {
    return new DataType(json);
  }
  toJSON(): DataTypeJSON {
    return this.json;
  }

  get kind(): DataTypeKind {
    return this.json.kind;
  }
  isInteger(): boolean {
    return INTEGER_KINDS.has(this.kind);
  }
  isFloat(): boolean {
    return FLOAT_KINDS.has(this.kind);
  }
  isNumeric(): boolean {
    return this.isInteger() || this.isFloat();
  }
  /** 64-bit integers surface in JS as bigint. */
  isBigInt(): boolean {
    return this.kind === 'int64' || this.kind === 'uint64';
  }
  isTemporal(): boolean {
    return this.kind === 'date' || this.kind === 'timestamp';
  }
  isNested(): boolean {
    return this.kind === 'list' || this.kind === 'fixedSizeList' || this.kind === 'struct';
  }

  /** Element type of list / fixedSizeList. */
  child(): DataType {
    const j = this.json;
    if (j.kind === 'list' || j.kind === 'fixedSizeList') return new DataType(j.child);
    throw new TypeError(`${this} has no child type`);
  }
  structFields(): Field[] {
    const j = this.json;
    if (j.kind !== 'struct') throw new TypeError(`${this} is not a struct`);
    return j.fields.map((f) => Field.fromJSON(f));
  }

  equals(other: DataType): boolean {
    return sameType(this.json, other.json);
  }

  toString(): string {
    return typeToString(this.json);
  }

  toArrow(): arrow.DataType {
    return toArrowType(this.json);
  }
  static fromArrow(t: arrow.DataType): DataType {
    return new DataType(fromArrowType(t));
  }
}

function sameType(a: DataTypeJSON, b: DataTypeJSON): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function typeToString(j: DataTypeJSON): string {
  switch (j.kind) {
    case 'timestamp':
      return `timestamp[${j.unit}${j.tz ? `, ${j.tz}` : ''}]`;
    case 'list':
      return `list<${typeToString(j.child)}>`;
    case 'fixedSizeList':
      return `fixed_size_list<${typeToString(j.child)}, ${j.size}>`;
    case 'struct':
      return `struct<${j.fields.map((f) => `${f.name}: ${typeToString(f.type)}`).join(', ')}>`;
    default:
      return j.kind;
  }
}

const ARROW_UNIT: Record<TimeUnit, arrow.TimeUnit> = {
  s: arrow.TimeUnit.SECOND,
  ms: arrow.TimeUnit.MILLISECOND,
  us: arrow.TimeUnit.MICROSECOND,
  ns: arrow.TimeUnit.NANOSECOND,
};

export function toArrowType(j: DataTypeJSON): arrow.DataType {
  switch (j.kind) {
    case 'null':
      return new arrow.Null();
    case 'bool':
      return new arrow.Bool();
    case 'int8':
      return new arrow.Int8();
    case 'int16':
      return new arrow.Int16();
    case 'int32':
      return new arrow.Int32();
    case 'int64':
      return new arrow.Int64();
    case 'uint8':
      return new arrow.Uint8();
    case 'uint16':
      return new arrow.Uint16();
    case 'uint32':
      return new arrow.Uint32();
    case 'uint64':
      return new arrow.Uint64();
    case 'float32':
      return new arrow.Float32();
    case 'float64':
      return new arrow.Float64();
    case 'utf8':
      return new arrow.Utf8();
    case 'binary':
      return new arrow.Binary();
    case 'date':
      return new arrow.DateDay();
    case 'timestamp':
      return new arrow.Timestamp(ARROW_UNIT[j.unit], j.tz);
    case 'list':
      return new arrow.List(new arrow.Field('item', toArrowType(j.child), true));
    case 'fixedSizeList':
      return new arrow.FixedSizeList(j.size, new arrow.Field('item', toArrowType(j.child), true));
    case 'struct':
      return new arrow.Struct(j.fields.map((f) => new arrow.Field(f.name, toArrowType(f.type), f.nullable)));
  }
}

export function fromArrowType(t: arrow.DataType): DataTypeJSON {
  switch (t.typeId) {
    case arrow.Type.Null:
      return { kind: 'null' };
    case arrow.Type.Bool:
      return { kind: 'bool' };
    case arrow.Type.Int: {
      const i = t as arrow.Int;
      return { kind: `${i.isSigned ? 'int' : 'uint'}${i.bitWidth}` as 'int8' } as DataTypeJSON;
    }
    case arrow.Type.Float: {
      const f = t as arrow.Float;
      if (f.precision === arrow.Precision.DOUBLE) return { kind: 'float64' };
      if (f.precision === arrow.Precision.SINGLE) return { kind: 'float32' };
      throw new TypeError('float16 columns are not supported');
    }
    case arrow.Type.Utf8:
    case arrow.Type.LargeUtf8:
      return { kind: 'utf8' };
    case arrow.Type.Binary:
    case arrow.Type.LargeBinary:
      return { kind: 'binary' };
    case arrow.Type.Date:
      return { kind: 'date' };
    case arrow.Type.Timestamp: {
      const ts = t as arrow.Timestamp;
      const unit = (Object.keys(ARROW_UNIT) as TimeUnit[]).find((u) => ARROW_UNIT[u] === ts.unit) ?? 'us';
      return { kind: 'timestamp', unit, tz: ts.timezone ?? null };
    }
    case arrow.Type.List:
      return { kind: 'list', child: fromArrowType((t as arrow.List).children[0]!.type) };
    case arrow.Type.FixedSizeList: {
      const l = t as arrow.FixedSizeList;
      return { kind: 'fixedSizeList', child: fromArrowType(l.children[0]!.type), size: l.listSize };
    }
    case arrow.Type.Dictionary:
      // Dictionary encoding is a physical detail: the logical type is the dictionary's values.
      return fromArrowType((t as arrow.Dictionary).dictionary);
    case arrow.Type.Struct:
      return {
        kind: 'struct',
        fields: (t as arrow.Struct).children.map((f) => ({ name: f.name, type: fromArrowType(f.type), nullable: f.nullable })),
      };
    default:
      throw new TypeError(`unsupported Arrow type ${String(t)}`);
  }
}

export class Field {
  constructor(
    readonly name: string,
    readonly type: DataType,
    readonly nullable = true,
  ) {}
  static fromJSON(j: FieldJSON): Field {
    return new Field(j.name, new DataType(j.type), j.nullable);
  }
  toJSON(): FieldJSON {
    return { name: this.name, type: this.type.json, nullable: this.nullable };
  }
  toString(): string {
    return `${this.name}: ${this.type}${this.nullable ? '' : ' not null'}`;
  }
}

export interface SchemaJSON {
  fields: FieldJSON[];
}

/** Ordered, uniquely named fields. */
export class Schema {
  readonly fields: readonly Field[];
  private readonly index: Map<string, number>;

  constructor(fields: readonly Field[]) {
    this.fields = fields;
    this.index = new Map();
    fields.forEach((f, i) => {
      if (this.index.has(f.name)) throw new Error(`duplicate column name '${f.name}' in schema`);
      this.index.set(f.name, i);
    });
  }

  static fromJSON(j: SchemaJSON): Schema {
    return new Schema(j.fields.map((f) => Field.fromJSON(f)));
  }
  toJSON(): SchemaJSON {
    return { fields: this.fields.map((f) => f.toJSON()) };
  }

  get names(): string[] {
    return this.fields.map((f) => f.name);
  }
  has(name: string): boolean {
    return this.index.has(name);
  }
  indexOf(name: string): number {
    return this.index.get(name) ?? -1;
  }

  /** The field called `name`, or an error that lists the columns that do exist. */
  field(name: string): Field {
    const i = this.index.get(name);
    if (i === undefined) {
      throw new ColumnNotFoundError(name, this.names);
    }
    return this.fields[i]!;
  }

  select(names: readonly string[]): Schema {
    return new Schema(names.map((n) => this.field(n)));
  }

  equals(other: Schema): boolean {
    return this.fields.length === other.fields.length && this.fields.every((f, i) => f.name === other.fields[i]!.name && f.type.equals(other.fields[i]!.type));
  }

  toArrow(): arrow.Schema {
    return new arrow.Schema(this.fields.map((f) => new arrow.Field(f.name, f.type.toArrow(), f.nullable)));
  }
  static fromArrow(s: arrow.Schema): Schema {
    return new Schema(s.fields.map((f) => new Field(f.name, DataType.fromArrow(f.type), f.nullable)));
  }

  toString(): string {
    const w = Math.max(6, ...this.fields.map((f) => f.name.length));
    return this.fields.map((f) => `${f.name.padEnd(w)}  ${f.type}${f.nullable ? '' : ' not null'}`).join('\n');
  }
}

export class ColumnNotFoundError extends Error {
  constructor(
    readonly column: string,
    readonly available: readonly string[],
    where?: string,
  ) {
    super(`column '${column}' not found${where ? ` in ${where}` : ''}; available columns: ${available.map((n) => `'${n}'`).join(', ') || '(none)'}`);
    this.name = 'ColumnNotFoundError';
  }
}

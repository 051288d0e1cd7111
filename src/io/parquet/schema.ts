// Parquet / Arrow schema -> DataType mapping (ARROW:schema when present, else the Parquet schema tree).
import * as arrow from 'apache-arrow';
import type { FileMetaData, SchemaElement, SchemaTree } from 'hyparquet';
import type { DataTypeJSON, FieldJSON, TimeUnit } from '../../datatypes.ts';

/** The Arrow schema arrow-rs embedded (`ARROW:schema`, base64 IPC message), or null. */
export function arrowSchemaFromMetadata(md: FileMetaData): arrow.Schema | null {
  const kv = md.key_value_metadata?.find((k) => k.key === 'ARROW:schema');
  if (!kv?.value) return null;
  try {
    const bytes = Buffer.from(kv.value, 'base64');
    const reader = arrow.RecordBatchReader.from(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    reader.open();
    return reader.schema ?? null;
  } catch {
    return null; // unreadable hint: the Parquet schema alone still describes the data
  }
}

/** A DataType, or a string saying why the column is unsupported. */
export type Mapped = DataTypeJSON | string;

export function mapArrowType(t: arrow.DataType): Mapped {
  switch (t.typeId) {
    case arrow.Type.Null:
      return { kind: 'null' };
    case arrow.Type.Bool:
      return { kind: 'bool' };
    case arrow.Type.Int: {
      const i = t as arrow.Int;
      return { kind: `${i.isSigned ? 'int' : 'uint'}${i.bitWidth}` } as DataTypeJSON;
    }
    case arrow.Type.Float: {
      const p = (t as arrow.Float).precision;
      return { kind: p === arrow.Precision.DOUBLE ? 'float64' : 'float32' };
    }
    case arrow.Type.Utf8:
    case arrow.Type.LargeUtf8:
    case arrow.Type.Utf8View:
      return { kind: 'utf8' };
    case arrow.Type.Binary:
    case arrow.Type.LargeBinary:
    case arrow.Type.BinaryView:
    case arrow.Type.FixedSizeBinary:
      return { kind: 'binary' };
    case arrow.Type.Date:
      return { kind: 'date' };
    case arrow.Type.Timestamp: {
      const ts = t as arrow.Timestamp;
      return { kind: 'timestamp', unit: ARROW_UNITS[ts.unit]!, tz: ts.timezone ?? null };
    }
    case arrow.Type.Time:
      return { kind: (t as arrow.Time).bitWidth === 32 ? 'int32' : 'int64' };
    case arrow.Type.Duration:
      return { kind: 'int64' };
    case arrow.Type.Decimal:
      return { kind: 'float64' };
    case arrow.Type.Dictionary:
      return mapArrowType((t as arrow.Dictionary).dictionary);
    case arrow.Type.List:
    case arrow.Type.LargeList: {
      const c = mapArrowType(t.children[0]!.type);
      return typeof c === 'string' ? c : { kind: 'list', child: c };
    }
    case arrow.Type.FixedSizeList: {
      const c = mapArrowType(t.children[0]!.type);
      return typeof c === 'string' ? c : { kind: 'fixedSizeList', child: c, size: (t as arrow.FixedSizeList).listSize };
    }
    case arrow.Type.Map: {
      // map<k, v> reads as list<struct<key, value>>: same physical layout.
      const entries = mapArrowType(t.children[0]!.type);
      return typeof entries === 'string' ? entries : { kind: 'list', child: entries };
    }
    case arrow.Type.Struct: {
      const fields: FieldJSON[] = [];
      for (const f of t.children as arrow.Field[]) {
        const m = mapArrowType(f.type);
        if (typeof m === 'string') return m;
        fields.push({ name: f.name, type: m, nullable: f.nullable });
      }
      return { kind: 'struct', fields };
    }
    default:
      return `Arrow type ${String(t)} is not supported`;
  }
}

const ARROW_UNITS: Record<number, TimeUnit> = {
  [arrow.TimeUnit.SECOND]: 's',
  [arrow.TimeUnit.MILLISECOND]: 'ms',
  [arrow.TimeUnit.MICROSECOND]: 'us',
  [arrow.TimeUnit.NANOSECOND]: 'ns',
};
export const PARQUET_UNITS: Record<string, TimeUnit> = { MILLIS: 'ms', MICROS: 'us', NANOS: 'ns' };

/** Parquet schema node -> DataType, following arrow-rs (what parquet-wasm returns) for files without ARROW:schema. */
export function mapParquetNode(node: SchemaTree): Mapped {
  const e = node.element;
  const inner = e.repetition_type === 'REPEATED' ? mapParquetInner(node) : null;
  if (inner !== null) return typeof inner === 'string' ? inner : { kind: 'list', child: inner }; // legacy bare repeated field
  return mapParquetInner(node);
}

function mapParquetInner(node: SchemaTree): Mapped {
  const e = node.element;
  if (e.type !== undefined) return mapParquetLeaf(e);
  const lt = e.logical_type?.type;
  const ct = e.converted_type;
  if (lt === 'LIST' || ct === 'LIST') {
    const rep = node.children[0];
    if (!rep || node.children.length !== 1) return `malformed LIST column '${e.name}'`;
    let element: Mapped;
    // Backward-compatibility rules of the Parquet LIST spec (2-level legacy layouts).
    if (rep.element.type !== undefined) element = mapParquetLeaf(rep.element);
    // A repeated group that is itself a LIST or MAP is a nested list, not a struct element
    // (old_list_structure.parquet: `repeated group array (LIST) { repeated int32 array }`).
    else if (isListOrMap(rep)) element = mapParquetInner(rep);
    else if (rep.children.length > 1 || rep.element.name === 'array' || rep.element.name === `${e.name}_tuple`) element = mapStruct(rep);
    else element = mapParquetNode(rep.children[0]!);
    return typeof element === 'string' ? element : { kind: 'list', child: element };
  }
  if (lt === 'MAP' || ct === 'MAP' || ct === 'MAP_KEY_VALUE') {
    const kv = node.children[0];
    if (kv && kv.children.length === 1) {
      // A map without values reads as the list of its keys (as arrow-rs and pyarrow do).
      const key = mapParquetInner(kv.children[0]!);
      return typeof key === 'string' ? key : { kind: 'list', child: key };
    }
    if (kv?.children.length !== 2) return `malformed MAP column '${e.name}'`;
    const entries = mapStruct(kv);
    return typeof entries === 'string' ? entries : { kind: 'list', child: entries };
  }
  return mapStruct(node);
}

function isListOrMap(node: SchemaTree): boolean {
  const lt = node.element.logical_type?.type;
  const ct = node.element.converted_type;
  return lt === 'LIST' || lt === 'MAP' || ct === 'LIST' || ct === 'MAP' || ct === 'MAP_KEY_VALUE';
}

function mapStruct(node: SchemaTree): Mapped {
  const fields: FieldJSON[] = [];
  for (const c of node.children) {
    const m = mapParquetNode(c);
    if (typeof m === 'string') return m;
    fields.push({ name: c.element.name, type: m, nullable: c.element.repetition_type !== 'REQUIRED' });
  }
  if (fields.length === 0) return `empty group '${node.element.name}'`;
  return { kind: 'struct', fields };
}

function mapParquetLeaf(e: SchemaElement): Mapped {
  const lt = e.logical_type;
  const ct = e.converted_type;
  if (lt?.type === 'DECIMAL' || ct === 'DECIMAL') return { kind: 'float64' };
  switch (e.type) {
    case 'BOOLEAN':
      return { kind: 'bool' };
    case 'INT32':
      if (lt?.type === 'INTEGER') return { kind: `${lt.isSigned ? 'int' : 'uint'}${lt.bitWidth}` } as DataTypeJSON;
      if (lt?.type === 'DATE' || ct === 'DATE') return { kind: 'date' };
      if (lt?.type === 'TIME' || ct === 'TIME_MILLIS') return { kind: 'int32' };
      switch (ct) {
        case 'INT_8':
          return { kind: 'int8' };
        case 'INT_16':
          return { kind: 'int16' };
        case 'UINT_8':
          return { kind: 'uint8' };
        case 'UINT_16':
          return { kind: 'uint16' };
        case 'UINT_32':
          return { kind: 'uint32' };
        default:
          return { kind: 'int32' };
      }
    case 'INT64':
      if (lt?.type === 'INTEGER') return { kind: lt.isSigned ? 'int64' : 'uint64' };
      if (lt?.type === 'TIMESTAMP') return { kind: 'timestamp', unit: PARQUET_UNITS[lt.unit]!, tz: lt.isAdjustedToUTC ? 'UTC' : null };
      if (ct === 'TIMESTAMP_MILLIS') return { kind: 'timestamp', unit: 'ms', tz: 'UTC' };
      if (ct === 'TIMESTAMP_MICROS') return { kind: 'timestamp', unit: 'us', tz: 'UTC' };
      if (ct === 'UINT_64') return { kind: 'uint64' };
      return { kind: 'int64' }; // plain, INT_64, TIME_MICROS/NANOS (ticks)
    case 'INT96':
      return { kind: 'timestamp', unit: 'ns', tz: null };
    case 'FLOAT':
      return { kind: 'float32' };
    case 'DOUBLE':
      return { kind: 'float64' };
    case 'BYTE_ARRAY':
      if (lt?.type === 'STRING' || lt?.type === 'ENUM' || lt?.type === 'JSON' || ct === 'UTF8' || ct === 'ENUM' || ct === 'JSON') return { kind: 'utf8' };
      return { kind: 'binary' };
    case 'FIXED_LEN_BYTE_ARRAY':
      if (lt?.type === 'FLOAT16') return { kind: 'float32' };
      if (ct === 'INTERVAL' || lt?.type === 'INTERVAL') return `INTERVAL column '${e.name}' is not supported`;
      return { kind: 'binary' };
    default:
      return `Parquet type ${String(e.type)} of '${e.name}' is not supported`;
  }
}

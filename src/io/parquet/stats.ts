// Row-group statistics (raw footer values) -> ColumnStats scalars of the column's DataType.
import type { SchemaElement, Statistics } from 'hyparquet';
import type { DataTypeJSON, TimeUnit } from '../../datatypes.ts';
import type { Scalar } from '../../expressions.ts';
import type { ColumnStats } from './types.ts';
import { PARQUET_UNITS } from './schema.ts';

// ---------------------------------------------------------------------------------------------
// Statistics

const UNIT_TICKS: Record<TimeUnit, bigint> = { s: 1n, ms: 1000n, us: 1000000n, ns: 1000000000n };
export const utf8Decoder = new TextDecoder();

export function convertStats(s: Statistics | undefined, type: DataTypeJSON, el: SchemaElement): ColumnStats {
  if (!s) return { min: null, max: null, nullCount: null };
  // Legacy min/max used signed byte-wise ordering: only trust them where that is the real order.
  const legacyOk =
    el.type === 'BOOLEAN' || el.type === 'FLOAT' || el.type === 'DOUBLE' || ((el.type === 'INT32' || el.type === 'INT64') && !isUnsignedElement(el));
  const rawMin = s.min_value ?? (legacyOk ? s.min : undefined);
  const rawMax = s.max_value ?? (legacyOk ? s.max : undefined);
  return {
    min: convertStat(rawMin, type, el, false),
    max: convertStat(rawMax, type, el, true),
    nullCount: s.null_count === undefined ? null : Number(s.null_count),
  };
}

function isUnsignedElement(el: SchemaElement): boolean {
  return (el.converted_type?.startsWith('UINT_') ?? false) || (el.logical_type?.type === 'INTEGER' && !el.logical_type.isSigned);
}

function convertStat(v: unknown, type: DataTypeJSON, el: SchemaElement, isMax: boolean): Scalar | null {
  if (v === undefined || v === null) return null;
  switch (type.kind) {
    case 'bool':
      return typeof v === 'boolean' ? v : null;
    case 'int8':
    case 'int16':
    case 'int32':
    case 'uint8':
    case 'uint16':
    case 'uint32':
      if (typeof v === 'number') return v;
      if (typeof v === 'bigint') return Number(v);
      return null;
    case 'int64':
    case 'uint64':
      if (typeof v === 'bigint') return v;
      if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
      return null;
    case 'float32':
    case 'float64':
      if (typeof v === 'number') return Number.isNaN(v) ? null : v;
      if (typeof v === 'bigint') return Number(v);
      if (v instanceof Uint8Array && (el.logical_type?.type === 'DECIMAL' || el.converted_type === 'DECIMAL')) {
        return decimalBytesToNumber(v, el.scale ?? (el.logical_type?.type === 'DECIMAL' ? el.logical_type.scale : 0));
      }
      return null;
    case 'utf8':
      if (typeof v === 'string') return v;
      if (v instanceof Uint8Array) return utf8Decoder.decode(v);
      return null;
    case 'binary':
      if (v instanceof Uint8Array) return v;
      if (typeof v === 'string') return new TextEncoder().encode(v);
      return null;
    case 'date':
      if (typeof v === 'number') return v;
      if (v instanceof Date) return Math.floor(v.getTime() / 86400000);
      return null;
    case 'timestamp': {
      if (typeof v !== 'bigint' || el.type !== 'INT64') return null; // INT96 statistics are unusable
      const lt = el.logical_type;
      let src: TimeUnit | null = null;
      if (lt?.type === 'TIMESTAMP') src = PARQUET_UNITS[lt.unit]!;
      else if (el.converted_type === 'TIMESTAMP_MILLIS') src = 'ms';
      else if (el.converted_type === 'TIMESTAMP_MICROS') src = 'us';
      return rescaleTicks(v, src ?? type.unit, type.unit, isMax);
    }
    default:
      return null;
  }
}

export function rescaleTicks(v: bigint, from: TimeUnit, to: TimeUnit, roundUp: boolean): bigint {
  const f = UNIT_TICKS[from];
  const t = UNIT_TICKS[to];
  if (f === t) return v;
  if (t > f) return v * (t / f);
  const d = f / t;
  let q = v / d; // truncates toward zero
  const r = v % d;
  if (r !== 0n) {
    if (v < 0n && !roundUp) q -= 1n; // floor for lower bounds
    if (v > 0n && roundUp) q += 1n; // ceil for upper bounds
  }
  return q;
}

/** Big-endian two's complement unscaled decimal -> number. */
function decimalBytesToNumber(b: Uint8Array, scale: number): number {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  if (b.length > 0 && b[0]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return Number(v) / 10 ** scale;
}

// Parquet writer properties: option validation, and each column's encoding chosen from a sample.
//
// parquet-rs (inside parquet-wasm) dictionary-encodes every column by default and falls back to PLAIN
// only once a dictionary outgrows its page. On a high-cardinality numeric column that is all wasted
// work: measured on 2M rows (id int64, unique and sorted; x float64, 60k distinct), encoding took 338 ms
// of CPU with dictionaries everywhere, 109 ms without, and 120 ms with a dictionary on x and
// DELTA_BINARY_PACKED on id (a 5.3 MB file instead of 17.5 MB). 'auto' makes that choice per column.
import type * as arrow from 'apache-arrow';
import type * as PW from 'parquet-wasm';
import { ColumnNotFoundError, type DataType, type Schema } from '../../datatypes.ts';
import type { ParquetColumnEncoding, ParquetCompression, WriteParquetOptions } from './types.ts';

const COMPRESSION: Record<ParquetCompression, keyof typeof PW.Compression> = {
  snappy: 'SNAPPY',
  zstd: 'ZSTD',
  gzip: 'GZIP',
  lz4: 'LZ4_RAW',
  brotli: 'BROTLI',
  none: 'UNCOMPRESSED',
};
const ENCODINGS = ['auto', 'dictionary', 'plain'] as const;
const COLUMN_ENCODINGS: readonly ParquetColumnEncoding[] = ['plain', 'dictionary', 'delta'];
const STATISTICS = { page: 'Page', chunk: 'Chunk', none: 'None' } as const;
const OPTION_NAMES: readonly (keyof WriteParquetOptions)[] = [
  'schema',
  'compression',
  'rowGroupSize',
  'encoding',
  'columnEncoding',
  'statistics',
  'dataPageSize',
];
/** parquet-rs's dictionary page limit: a dictionary past it falls back to PLAIN mid-chunk. */
const DICTIONARY_PAGE_LIMIT = 1 << 20;
/** Largest data page accepted: parquet-rs keeps a page in memory, and page sizes are i32 in the format. */
const MAX_DATA_PAGE_SIZE = 1 << 30;

const INTEGER_KINDS = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'date', 'timestamp']);
/** Bytes per value of the fixed-width kinds (their Parquet physical width). */
const WIDTH: Record<string, number> = {
  int8: 4,
  int16: 4,
  int32: 4,
  uint8: 4,
  uint16: 4,
  uint32: 4,
  date: 4,
  float32: 4,
  int64: 8,
  uint64: 8,
  timestamp: 8,
  float64: 8,
};

const quote = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : String(v));
const list = (xs: readonly string[]): string => xs.map((x) => `'${x}'`).join(', ');

/** Throws, naming the option, the value and the file, when a write option is unknown or out of range. */
export function checkWriteOptions(opts: WriteParquetOptions, schema: Schema | null, path: string): void {
  const where = `writing Parquet ${path}`;
  for (const k of Object.keys(opts)) {
    if (!(OPTION_NAMES as readonly string[]).includes(k))
      throw new RangeError(`unknown Parquet write option '${k}' (${where}); known options: ${list(OPTION_NAMES)}`);
  }
  const { compression, rowGroupSize, encoding, columnEncoding, statistics, dataPageSize } = opts;
  if (compression !== undefined && !Object.hasOwn(COMPRESSION, compression))
    throw new RangeError(`Parquet write option compression must be one of ${list(Object.keys(COMPRESSION))}, got ${quote(compression)} (${where})`);
  if (rowGroupSize !== undefined && (!Number.isInteger(rowGroupSize) || rowGroupSize <= 0))
    throw new RangeError(`Parquet write option rowGroupSize must be a positive integer, got ${quote(rowGroupSize)} (${where})`);
  if (encoding !== undefined && !(ENCODINGS as readonly string[]).includes(encoding))
    throw new RangeError(`Parquet write option encoding must be one of ${list(ENCODINGS)}, got ${quote(encoding)} (${where})`);
  if (statistics !== undefined && !Object.hasOwn(STATISTICS, statistics))
    throw new RangeError(`Parquet write option statistics must be one of ${list(Object.keys(STATISTICS))}, got ${quote(statistics)} (${where})`);
  if (dataPageSize !== undefined && (!Number.isInteger(dataPageSize) || dataPageSize <= 0 || dataPageSize > MAX_DATA_PAGE_SIZE))
    throw new RangeError(
      `Parquet write option dataPageSize must be a whole number of bytes from 1 to ${MAX_DATA_PAGE_SIZE}, got ${quote(dataPageSize)} (${where})`,
    );
  if (columnEncoding === undefined) return;
  if (typeof columnEncoding !== 'object' || columnEncoding === null || Array.isArray(columnEncoding))
    throw new TypeError(`Parquet write option columnEncoding must be an object of column name to ${list(COLUMN_ENCODINGS)} (${where})`);
  for (const [name, enc] of Object.entries(columnEncoding)) {
    if (!COLUMN_ENCODINGS.includes(enc))
      throw new RangeError(`Parquet write option columnEncoding['${name}'] must be one of ${list(COLUMN_ENCODINGS)}, got ${quote(enc)} (${where})`);
    if (!schema) continue;
    if (!schema.names.includes(name)) throw new ColumnNotFoundError(name, schema.names, `option columnEncoding (${where})`);
    const type = schema.field(name).type;
    // parquet-wasm addresses columns by a one-element path: nested leaves cannot be given their own encoding.
    if (type.isNested() || type.kind === 'null')
      throw new TypeError(
        `Parquet write option columnEncoding['${name}']: column '${name}' is ${type}; only top-level columns of a primitive type take an encoding (${where})`,
      );
    if (enc === 'delta' && !INTEGER_KINDS.has(type.kind))
      throw new TypeError(
        `Parquet write option columnEncoding['${name}'] = 'delta' needs an integer, date or timestamp column; '${name}' is ${type} (${where})`,
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing an encoding from a sample

/** Values sampled per column: enough for the estimate, cheap next to encoding a row group. */
const SAMPLE = 4096;
/** Bytes of string or binary values sampled at most: 4096 blobs of a megabyte would be 4 GB of keys. */
const SAMPLE_BYTES = 1 << 20;
/** Values wider than this never get a dictionary: its page would hold fewer than 64 of them. */
const MAX_DICTIONARY_VALUE = DICTIONARY_PAGE_LIMIT / 64;
/** Rows the writer gathers (from as many batches as it takes) before choosing: small batches alone say little. */
export const ENCODING_SAMPLE_ROWS = SAMPLE;
/** Consecutive values looked at for delta encoding (blocks of 128, as DELTA_BINARY_PACKED packs them). */
const DELTA_SAMPLE = 1024;

// apache-arrow's convention: a sliced Data's values and offsets start at its first row; only the
// validity bitmap (bit-addressed) is read at `offset + i`.
function isValid(data: arrow.Data, i: number): boolean {
  if (data.nullCount === 0 || !data.nullBitmap) return true;
  const j = data.offset + i;
  return (data.nullBitmap[j >> 3]! & (1 << (j & 7))) !== 0;
}

/** How often values recur in a sample: distinct values, and those seen once (f1) and twice (f2). */
interface Frequencies {
  distinct: number;
  f1: number;
  f2: number;
  /** Share of sampled rows whose next row holds the same value: how clustered the column is (sorted, in runs). */
  repeats: number;
}

/** Counts runs of equal neighbours in a sorted sample. */
function runs<T>(sorted: ArrayLike<T>): Omit<Frequencies, 'repeats'> {
  const f = { distinct: 0, f1: 0, f2: 0 };
  for (let i = 0; i < sorted.length; ) {
    let j = i + 1;
    while (j < sorted.length && sorted[j] === sorted[i]) j++;
    f.distinct++;
    if (j - i === 1) f.f1++;
    else if (j - i === 2) f.f2++;
    i = j;
  }
  return f;
}

type IntArray = Int8Array | Int16Array | Int32Array | BigInt64Array;
/** The same bytes as signed integers of the value's width: equal bits sort next to each other (floats too). */
function bitsOf(v: ArrayBufferView & { length: number; BYTES_PER_ELEMENT: number }): IntArray {
  switch (v.BYTES_PER_ELEMENT) {
    case 1:
      return new Int8Array(v.buffer, v.byteOffset, v.length);
    case 2:
      return new Int16Array(v.buffer, v.byteOffset, v.length);
    case 4:
      return new Int32Array(v.buffer, v.byteOffset, v.length);
    default:
      return new BigInt64Array(v.buffer, v.byteOffset, v.length);
  }
}

/**
 * Rows to sample: one at a random place in each of SAMPLE equal slices of the rows (every row of a
 * small sample). A plain stride can alias with periodic data: 4096 rows at a stride of 16 saw only
 * distinct values in a column that repeats each value six times per batch. Distinct rows, as a sample
 * with replacement would invent repeats in a unique column. A fixed seed keeps files reproducible.
 */
function samplePositions(n: number): Uint32Array {
  if (n <= SAMPLE) return Uint32Array.from({ length: n }, (_, i) => i);
  const at = new Uint32Array(SAMPLE);
  let seed = 0x9e3779b9; // xorshift32
  for (let k = 0; k < SAMPLE; k++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    // Integer slice bounds, so that neighbouring slices never yield the same row.
    const lo = Math.floor((k * n) / SAMPLE);
    const hi = Math.floor(((k + 1) * n) / SAMPLE);
    at[k] = lo + Math.floor(((seed >>> 0) / 2 ** 32) * (hi - lo));
  }
  return at;
}

/** The sampled rows of `parts` (one column's chunks, in order), each as its part and its row there. */
function* sampledRows(parts: readonly arrow.Data[]): Generator<[arrow.Data, number]> {
  const at = samplePositions(parts.reduce((n, d) => n + d.length, 0));
  let p = 0;
  let start = 0;
  for (const i of at) {
    while (i >= start + parts[p]!.length) start += parts[p++]!.length;
    yield [parts[p]!, i - start];
  }
}

/** Value frequencies in a sample of the column's rows, and the mean encoded width in bytes; null for kinds not sampled. */
function sampleValues(parts: readonly arrow.Data[], type: DataType): (Frequencies & { width: number }) | null {
  const width = WIDTH[type.kind];
  let pairs = 0;
  let same = 0;
  if (width !== undefined) {
    // A typed-array sort (native, fast even before the JIT warms up in a fresh worker) instead of a hash set.
    const views = new Map(parts.map((d) => [d, bitsOf(d.values as ArrayBufferView & { length: number; BYTES_PER_ELEMENT: number })]));
    const first = views.get(parts[0]!)!;
    const sample = new (first.constructor as new (n: number) => IntArray)(SAMPLE);
    let m = 0;
    for (const [data, i] of sampledRows(parts)) {
      if (!isValid(data, i)) continue;
      const bits = views.get(data)!;
      const v = bits[i]!;
      sample[m++] = v;
      if (i + 1 < data.length && isValid(data, i + 1)) {
        pairs++;
        if (bits[i + 1] === v) same++;
      }
    }
    return { ...runs<number | bigint>(sample.subarray(0, m).sort() as ArrayLike<number | bigint>), repeats: pairs ? same / pairs : 0, width };
  }
  if (type.kind === 'utf8' || type.kind === 'binary') {
    const keys: string[] = [];
    let total = 0;
    for (const [data, i] of sampledRows(parts)) {
      if (total > SAMPLE_BYTES) break; // large values: the rows sampled so far decide
      if (!isValid(data, i)) continue;
      const offsets = data.valueOffsets as Int32Array;
      const bytes = data.values as Uint8Array;
      const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const s = offsets[i]!;
      const e = offsets[i + 1]!;
      total += e - s;
      keys.push(buf.toString('latin1', s, e)); // one char per byte: equal keys iff equal bytes
      if (i + 1 < data.length && isValid(data, i + 1)) {
        pairs++;
        if (buf.compare(buf, e, offsets[i + 2]!, s, e) === 0) same++;
      }
    }
    // PLAIN stores a 4-byte length before each value.
    return { ...runs(keys.sort()), repeats: pairs ? same / pairs : 0, width: 4 + (keys.length ? total / keys.length : 0) };
  }
  return null;
}

/**
 * Distinct values expected in one row group of `rows` rows. Chao1 (bias-corrected: the unseen values
 * estimated from singletons and doubletons) for values spread over the batch; but a sample of single
 * rows sees a sorted or clustered column (each value in a run of 16) as all distinct, so the runs bound
 * it too: a row group holds at most one new value per run.
 */
function distinctPerRowGroup({ distinct, f1, f2, repeats }: Frequencies, rows: number): number {
  const domain = distinct + (f1 * (f1 - 1)) / (2 * (f2 + 1));
  return Math.min(domain * -Math.expm1(-rows / domain), Math.max(1, rows * (1 - repeats)));
}

/** Whether a dictionary fits its page and makes the column at least a quarter smaller than PLAIN. */
function dictionaryPays(distinct: number, width: number, rows: number): boolean {
  const dictBytes = distinct * width;
  if (dictBytes > DICTIONARY_PAGE_LIMIT * 0.9) return false;
  const indexBytes = (rows * Math.max(1, Math.ceil(Math.log2(distinct + 1)))) / 8;
  return dictBytes + indexBytes <= 0.75 * rows * width;
}

/** Whether DELTA_BINARY_PACKED packs consecutive values in at most half their width (sorted ids, timestamps). */
function deltaPays(parts: readonly arrow.Data[], type: DataType): boolean {
  const seq: bigint[] = [];
  for (const data of parts) {
    const values = data.values as ArrayLike<number | bigint>;
    for (let i = 0; i < data.length && seq.length <= DELTA_SAMPLE; i++) if (isValid(data, i)) seq.push(BigInt(values[i]!));
  }
  if (seq.length < 129) return false;
  let bits = 0;
  let blocks = 0;
  for (let b = 1; b + 128 <= seq.length; b += 128) {
    let lo = seq[b]! - seq[b - 1]!;
    let hi = lo;
    for (let i = b + 1; i < b + 128; i++) {
      const d = seq[i]! - seq[i - 1]!;
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    bits += (hi - lo).toString(2).length - (hi === lo ? 1 : 0);
    blocks++;
  }
  return bits / blocks <= (WIDTH[type.kind]! * 8) / 2;
}

/** The encoding 'auto' picks for a top-level column from its first values (`parts`, in order); null leaves parquet-rs's default. */
function chooseEncoding(parts: readonly arrow.Data[], type: DataType, rowGroupSize: number): ParquetColumnEncoding | null {
  if (parts.every((d) => d.length === d.nullCount)) return null;
  const sample = sampleValues(parts, type);
  if (!sample) return null; // bool (no dictionary in parquet-rs), null, nested: as parquet-rs does
  if (sample.width > MAX_DICTIONARY_VALUE) return 'plain';
  if (dictionaryPays(distinctPerRowGroup(sample, rowGroupSize), sample.width, rowGroupSize)) return 'dictionary';
  if (INTEGER_KINDS.has(type.kind) && deltaPays(parts, type)) return 'delta';
  return 'plain';
}

/**
 * Each top-level column's encoding: `columnEncoding` first, then under 'auto' a choice from `sample`
 * (the first batches to be written, in order, conformed to `schema`), else none (parquet-rs's default).
 */
export function columnEncodings(
  opts: WriteParquetOptions,
  schema: Schema,
  sample: readonly arrow.RecordBatch[],
  rowGroupSize: number,
): Map<string, ParquetColumnEncoding> {
  const out = new Map<string, ParquetColumnEncoding>();
  const batches = sample.filter((b) => b.numRows > 0);
  if ((opts.encoding ?? 'auto') === 'auto' && batches.length) {
    schema.fields.forEach((f, i) => {
      if (opts.columnEncoding?.[f.name] !== undefined) return;
      const enc = chooseEncoding(
        batches.map((b) => b.data.children[i]!),
        f.type,
        rowGroupSize,
      );
      if (enc) out.set(f.name, enc);
    });
  }
  for (const [name, enc] of Object.entries(opts.columnEncoding ?? {})) out.set(name, enc);
  return out;
}

/** parquet-wasm writer properties for these options and column encodings. */
export function writerProperties(
  pw: typeof PW,
  opts: WriteParquetOptions,
  rowGroupSize: number,
  encodings: ReadonlyMap<string, ParquetColumnEncoding>,
): PW.WriterProperties {
  let b = new pw.WriterPropertiesBuilder()
    .setCompression(pw.Compression[COMPRESSION[opts.compression ?? 'snappy']])
    .setMaxRowGroupSize(rowGroupSize)
    .setCreatedBy('fanout (parquet-wasm)');
  if (opts.statistics) b = b.setStatisticsEnabled(pw.EnabledStatistics[STATISTICS[opts.statistics]]);
  if (opts.dataPageSize) b = b.setDataPageSizeLimit(opts.dataPageSize);
  // 'plain' turns dictionaries off for nested leaves too; 'auto' and 'dictionary' leave them on.
  if (opts.encoding === 'plain') b = b.setDictionaryEnabled(false);
  for (const [name, enc] of encodings) {
    b = b.setColumnDictionaryEnabled(name, enc === 'dictionary');
    // With the dictionary on, this is its fallback encoding; PLAIN is parquet-rs's own choice for v1 pages.
    b = b.setColumnEncoding(name, enc === 'delta' ? pw.Encoding.DELTA_BINARY_PACKED : pw.Encoding.PLAIN);
  }
  return b.build();
}

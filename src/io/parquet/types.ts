// Parquet I/O's public types, defaults and read counters.
import type { Schema } from '../../datatypes.ts';
import type { Scalar } from '../../expressions.ts';

// ---------------------------------------------------------------------------------------------
// Public types

export interface ColumnStats {
  min: Scalar | null;
  max: Scalar | null;
  nullCount: number | null;
}
export interface RowGroupInfo {
  index: number;
  numRows: number;
  uncompressedBytes: number;
  compressedBytes: number;
  /**
   * Bytes of each top-level column's chunks in this row group (all its leaves), so partitions and
   * explain size a scan by the columns it reads, not the whole row group.
   */
  columnBytes: Record<string, { compressed: number; uncompressed: number }>;
  /** Top-level primitive columns only. min/max are bounds (writers may truncate long strings). */
  stats: Record<string, ColumnStats>;
}
export interface ParquetFileInfo {
  path: string;
  sizeBytes: number;
  numRows: number;
  schema: Schema;
  rowGroups: RowGroupInfo[];
  /** Columns left out of `schema` because no DataType represents them (interval, union...). */
  unsupportedColumns: { name: string; reason: string }[];
  /** Columns parquet-wasm reads wrongly (legacy layouts, INT96), by name, with why: read through hyparquet. */
  parquetWasmCaveats?: Record<string, string>;
}

/** A row range [start, end) within one row group. */
export interface RowRange {
  start: number;
  end: number;
}

export interface ReadParquetOptions {
  columns?: readonly string[];
  rowGroups?: readonly number[];
  /** Rows [start, end) of the selected row groups taken in order (a sub-row-group partition); only they are decoded. */
  rows?: { start: number; end: number };
  /** Stop after this many rows (after `rows`): the decoder reads no further. */
  limit?: number;
  batchSize?: number;
  schema?: Schema;
}

export type ParquetCompression = 'snappy' | 'zstd' | 'gzip' | 'lz4' | 'brotli' | 'none';
/** A top-level column's encoding: PLAIN, a dictionary (PLAIN past its page), or DELTA_BINARY_PACKED (integers). */
export type ParquetColumnEncoding = 'plain' | 'dictionary' | 'delta';
export interface WriteParquetOptions {
  schema?: Schema;
  /** Default 'snappy'. */
  compression?: ParquetCompression;
  /** Rows per row group; default 131072. */
  rowGroupSize?: number;
  /**
   * 'auto' (default): each top-level column from a sample of the first batch: a dictionary where it makes
   * the column at least a quarter smaller (low-cardinality strings and numbers), DELTA_BINARY_PACKED for
   * integer, date and timestamp columns whose neighbouring values are close (ids, event times), else PLAIN.
   * 'dictionary': a dictionary on every column, PLAIN once it outgrows its page (parquet-rs's default).
   * 'plain': no dictionaries. Nested columns keep parquet-rs's default under 'auto'.
   */
  encoding?: 'auto' | 'dictionary' | 'plain';
  /** Per top-level column of a primitive type, overriding `encoding`; 'delta' only for integer, date and timestamp columns. */
  columnEncoding?: Record<string, ParquetColumnEncoding>;
  /** Min/max/null statistics per page and column chunk ('page', default), per column chunk only, or none. Pruning reads the chunk statistics. */
  statistics?: 'page' | 'chunk' | 'none';
  /** Data page size limit in bytes (parquet-rs's default: 1 MiB). */
  dataPageSize?: number;
}
/** The writer options a DataFrame write takes (`writeParquet(dir, { parquet })`): all but the schema. */
export type ParquetWriterOptions = Omit<WriteParquetOptions, 'schema'>;

export const DEFAULT_BATCH_SIZE = 65536;
export const DEFAULT_ROW_GROUP_SIZE = 131072;

/** Process-wide read counters (tests and metrics use them to check streaming and pruning). */
export const readStats = { rowGroupsRead: 0, batchesRead: 0, rowsRead: 0, batchesBorrowed: 0 };

// Parquet I/O: footer inspection (sync, hyparquet on the file tail), streaming reads (parquet-wasm
// ParquetFile, one row group at a time, imported through the Arrow C data interface into batches
// that match our Schema exactly) and streaming writes (parquet-wasm transformParquetStream).
// Paths may be s3:// URIs: footers then come through the synchronous S3 facade, data through
// ranged GETs (S3Blob), writes through a multipart upload.
//
// types.ts (public types), wasm.ts (instance, panic guard, warm-up), footer.ts (local and S3),
// schema.ts (type mapping), stats.ts, import-layout.ts + import.ts (C data importer), read.ts, write.ts.
export {
  readStats,
  type ColumnStats,
  type ParquetColumnEncoding,
  type ParquetCompression,
  type ParquetWriterOptions,
  type WriteParquetOptions,
} from './types.ts';
export { warmParquet } from './wasm.ts';
export { inspectParquet } from './footer.ts';
export { readParquetBatches } from './read.ts';
export { checkParquetWriteNesting, writeParquetFile } from './write.ts';
export { checkWriteOptions } from './write-props.ts';

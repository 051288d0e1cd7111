// CSV I/O. Reading tokenizes bytes directly (RFC 4180: quotes, doubled quotes, CRLF/LF) and
// converts field byte ranges column by column into Arrow buffers (typed arrays, utf8 bytes copied
// as-is, validity bitmaps), never materializing a JS string per field except where a float needs
// the slow parsing path. Writing formats Arrow buffers straight into a reused byte buffer.
//
// options.ts, tokenizer.ts, parse.ts (values on bytes), builders.ts (columns), infer.ts (header,
// inference, schema resolution), read.ts, write.ts.
export { csvSchemaOption, type CsvOptions, type CsvSchema } from './options.ts';
export { inspectCsv } from './infer.ts';
export { readCsvBatches } from './read.ts';
export { writeCsvFile } from './write.ts';

// Streaming CSV reads: byte chunks tokenized and built column by column into record batches.
import * as arrow from 'apache-arrow';
import { ColumnNotFoundError } from '../../datatypes.ts';
import { objectHint, openObjectReader } from '../store/index.ts';
import { CHUNK, resolveOptions, type CsvOptions } from './options.ts';
import { CsvSyntaxError, Tokenizer } from './tokenizer.ts';
import { makeBuilder, type Block } from './builders.ts';
import { fileLayout, parseHeader } from './infer.ts';

// ---------------------------------------------------------------------------------------------
// Reading

/** Sequential reads of a file's bytes: positioned reads locally, one streamed GET on S3. */
interface ChunkSource {
  /** Up to `len` bytes at `pos` (S3: `pos` must follow the previous read) into `into`; 0 at the end. */
  read(into: Buffer, len: number, pos: number): Promise<number>;
  close(): Promise<void>;
}

async function openChunkSource(path: string): Promise<ChunkSource> {
  // S3: one GET read front to back, pinned to the ETag the schema was inferred from (a replaced
  // object fails instead of mis-parsing); locally positional reads into the caller's buffer.
  const etag = objectHint(path, Infinity)?.etag;
  return openObjectReader(path, etag === undefined ? {} : { etag });
}

/**
 * Stream a CSV file as Arrow record batches matching `schema.select(columns)` exactly. A value
 * that does not parse as its column's type is an error naming the file, line and column.
 */
export async function* readCsvBatches(path: string, opts: CsvOptions = {}): AsyncGenerator<arrow.RecordBatch> {
  const o = resolveOptions(opts, path);
  const { layout } = fileLayout(path, opts);
  const names = opts.columns ? [...opts.columns] : layout.schema.names;
  for (const n of names) if (!layout.schema.has(n)) throw new ColumnNotFoundError(n, layout.schema.names, path);
  const outSchema = layout.schema.select(names);
  const arrowSchema = outSchema.toArrow();
  const ncols = layout.fileNames.length;
  // The tokenizer stores every field of a record at [record * ncols + column] of the block arrays;
  // each builder reads its own column's slots from there.
  const slots = names.map((n) => layout.columnOf[layout.schema.indexOf(n)]!);
  const builders = outSchema.fields.map((f) => makeBuilder({ file: path, column: f.name, nulls: o.nulls, defaultNulls: o.defaultNulls }, f.type.json));

  const maxBlock = Math.max(1, Math.min(o.batchSize, 16384, Math.floor((1 << 20) / Math.max(1, ncols))));
  const tok = new Tokenizer(o.delim, maxBlock * ncols);
  tok.blankLinesAreRecords = ncols === 1;
  const block: Block = { buf: Buffer.alloc(0), fs: tok.fs, fe: tok.fe, ff: tok.ff, lines: new Int32Array(maxBlock), stride: ncols, count: 0 };
  const fh = await openChunkSource(path);
  let pending: Promise<{ bytes: Buffer; n: number }> | null = null;
  try {
    let buf = Buffer.allocUnsafe(2 * CHUNK);
    let start = 0;
    let end = 0;
    let filePos = 0;
    let eof = false;
    // The next chunk is read (in libuv's thread pool) while we parse the current one.
    const spare = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let which = 0;
    const readAhead = (): Promise<{ bytes: Buffer; n: number }> => {
      const bytes = spare[which]!;
      which ^= 1;
      return fh.read(bytes, CHUNK, filePos).then((n) => ({ bytes, n }));
    };
    pending = readAhead();
    const fill = async (): Promise<void> => {
      const { bytes, n } = await pending!;
      if (n === 0) {
        eof = true;
        pending = null;
        return;
      }
      filePos += n;
      pending = readAhead();
      if (start > 0) {
        buf.copy(buf, 0, start, end);
        end -= start;
        start = 0;
      }
      if (buf.length - end < n) {
        const b = Buffer.allocUnsafe(Math.max(buf.length * 2, end + n));
        buf.copy(b, 0, 0, end);
        buf = b;
      }
      bytes.copy(buf, end, 0, n);
      end += n;
      tok.resetScan();
    };

    // Header (or first record when there is none) fixes where data starts.
    for (;;) {
      await fill();
      const h = parseHeader(path, buf, end, eof, o, tok);
      if (h) {
        start = h.dataStart;
        tok.line = h.dataLine;
        tok.limit = ncols;
        [block.fs, block.fe, block.ff] = [tok.fs, tok.fe, tok.ff]; // in case the header grew them
        break;
      }
      if (eof) return;
    }

    let rows = 0;
    const flush = (): arrow.RecordBatch => {
      const children = builders.map((b, i) => b.finish(arrowSchema.fields[i]!.type));
      const data = new arrow.Data(new arrow.Struct(arrowSchema.fields), 0, rows, 0, undefined, children) as arrow.Data<arrow.Struct>;
      rows = 0;
      return new arrow.RecordBatch(arrowSchema, data);
    };

    for (;;) {
      // Tokenize a block of whole records from the buffer.
      let count = 0;
      let incomplete = false;
      const limit = Math.min(maxBlock, o.batchSize - rows);
      while (count < limit) {
        let p: number;
        tok.base = count * ncols;
        try {
          p = tok.record(buf, start, end, eof);
        } catch (e) {
          if (e instanceof CsvSyntaxError) throw new Error(`${path}: ${e.message}`);
          throw e;
        }
        if (p < 0) {
          incomplete = true;
          break;
        }
        start = p;
        if (tok.nf === 0) break; // EOF after blank lines
        if (tok.nf !== ncols) throw new Error(`${path}:${tok.recLine}: expected ${ncols} fields, found ${tok.nf}`);
        block.lines[count] = tok.recLine;
        count++;
      }
      if (count > 0) {
        block.buf = buf;
        block.count = count;
        for (let k = 0; k < builders.length; k++) builders[k]!.append(block, slots[k]!);
        rows += count;
        if (rows >= o.batchSize) yield flush();
      }
      if (incomplete || (count < limit && !eof)) {
        if (eof) break;
        await fill();
        continue;
      }
      if (eof && start >= end) break;
    }
    if (rows > 0) yield flush();
  } finally {
    if (pending) await pending.catch(() => undefined); // never close under an in-flight read
    await fh.close();
  }
}

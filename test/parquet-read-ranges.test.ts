// Local Parquet reads on positioned reads (FileBlob): only the projected column chunks are read, the
// next row group's chunks are fetched while the current one decodes, the file handle is closed; and
// row ranges / limits decode only their rows (issue 12, items 1 and 2).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { parquetMetadata } from 'hyparquet';
import { readParquet, setRunner } from '../src/index.ts';
import { readParquetBatches, readStats, warmParquet } from '../src/io/parquet/index.ts';
import { setParquetReaderCacheSize } from '../src/io/parquet/read.ts';
import { FileBlob } from '../src/io/store/file-blob.ts';
import { tempDir, writeSample } from './helpers.ts';

const ROWS = 30_000;
const GROUP = 10_000;
let file: string;

before(async () => {
  await warmParquet();
  file = join(tempDir('fanout-read-ranges-'), 'ranges.parquet');
  await writeSample(file, 0, ROWS, GROUP);
});

async function ids(batches: AsyncIterable<arrow.RecordBatch>): Promise<number[]> {
  const out: number[] = [];
  for await (const b of batches) for (const v of b.getChild('id')!) out.push(Number(v));
  return out;
}
const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

/** Byte ranges FileBlob reads from disk while `fn` runs. */
async function fetchesDuring<T>(fn: () => Promise<T>): Promise<{ result: T; reads: [number, number][] }> {
  const proto = FileBlob.prototype as unknown as { fetch(a: number, b: number): Promise<Uint8Array> };
  const orig = proto.fetch;
  const reads: [number, number][] = [];
  proto.fetch = function (this: FileBlob, a: number, b: number) {
    reads.push([a, b]);
    return orig.call(this, a, b);
  };
  try {
    return { result: await fn(), reads };
  } finally {
    proto.fetch = orig;
  }
}

/** [start, end) of column `name`'s chunk in each row group, from the footer. */
function chunkRanges(name: string): [number, number][] {
  const md = parquetMetadata(fs.readFileSync(file).buffer as ArrayBuffer);
  return md.row_groups.map((rg) => {
    const m = rg.columns.find((c) => c.meta_data!.path_in_schema[0] === name)!.meta_data!;
    const start = Math.min(Number(m.dictionary_page_offset ?? m.data_page_offset), Number(m.data_page_offset));
    return [start, start + Number(m.total_compressed_size)];
  });
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// FileHandle.close() finishes on libuv's threads: under load, an earlier read's close can land well
// after a fixed pause. So the count is taken once it has stopped moving, and an expected count may
// take up to 10 s to come about (a leaked descriptor never does: the assertion still fails).
async function settledFds(): Promise<number> {
  let last = openFds();
  for (let stable = 0; stable < 3; ) {
    await new Promise((r) => setTimeout(r, 30));
    const now = openFds();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}
async function fdsReach(want: number): Promise<number> {
  const until = Date.now() + 10_000;
  let now = openFds();
  while (now !== want && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    now = openFds();
  }
  return now;
}

describe('local Parquet reads on positioned reads', () => {
  it('reads the projected column chunks only, not the whole file', async () => {
    const size = fs.statSync(file).size;
    const { result, reads } = await fetchesDuring(() => ids(readParquetBatches(file, { columns: ['id'] })));
    assert.deepEqual(result, range(0, ROWS));
    const inData = reads.filter(([a]) => a < size - 8 - 4096); // leave the footer reads out
    assert.ok(inData.length > 0, 'the reader read the file through FileBlob');
    const wanted = chunkRanges('id');
    for (const [a, b] of inData) {
      assert.ok(
        wanted.some(([s, e]) => a >= s && b <= e),
        `read [${a}, ${b}) lies outside the 'id' column chunks ${JSON.stringify(wanted)}`,
      );
    }
    const bytes = inData.reduce((n, [a, b]) => n + b - a, 0);
    const idBytes = wanted.reduce((n, [a, b]) => n + b - a, 0);
    assert.ok(bytes <= idBytes, `read ${bytes} bytes of data, the 'id' chunks hold ${idBytes}`);
  });

  it("fetches the next row group's chunks before the current one is consumed", async () => {
    const wanted = chunkRanges('x');
    const fetchLog: [number, number][] = [];
    const proto = FileBlob.prototype as unknown as { fetch(a: number, b: number): Promise<Uint8Array> };
    const orig = proto.fetch;
    proto.fetch = function (this: FileBlob, a: number, b: number) {
      fetchLog.push([a, b]);
      return orig.call(this, a, b);
    };
    try {
      const it = readParquetBatches(file, { columns: ['x'], batchSize: 1000 });
      const first = await it.next();
      assert.equal(first.value?.numRows, 1000);
      const [s1, e1] = wanted[1]!;
      assert.ok(
        fetchLog.some(([a, b]) => a <= s1 && b >= e1),
        `row group 1's 'x' chunk [${s1}, ${e1}) was not prefetched during row group 0: ${JSON.stringify(fetchLog)}`,
      );
      await it.return(undefined);
    } finally {
      proto.fetch = orig;
    }
  });

  it('closes its file handle after a full read and after an early stop', async () => {
    // Readers share one open handle per file version (src/io/parquet/read.ts's bounded cache): with
    // the cache off every reader must close its own; with it on, reads reuse the one handle.
    setParquetReaderCacheSize(0);
    try {
      const before = await settledFds();
      await ids(readParquetBatches(file));
      for await (const _ of readParquetBatches(file, { batchSize: 100 })) break;
      assert.equal(await fdsReach(before), before, 'no file descriptor is left open');
    } finally {
      setParquetReaderCacheSize(4);
    }
    await ids(readParquetBatches(file));
    const cached = await settledFds();
    for (let i = 0; i < 5; i++) {
      await ids(readParquetBatches(file));
      for await (const _ of readParquetBatches(file, { batchSize: 100 })) break;
    }
    assert.equal(await fdsReach(cached), cached, 'cached readers reuse their handle instead of opening more');
  });

  it('a file whose size changed since its footer was read is an error naming it', async () => {
    const size = fs.statSync(file).size;
    const blob = new FileBlob(file, size + 10);
    await assert.rejects(blob.slice(0, 4).arrayBuffer(), (e: Error) => e.message.includes(file) && /changed while being read/.test(e.message));
    await blob.close();
  });

  it('a file rewritten at the same size since its footer was read is an error naming it', async () => {
    const st = fs.statSync(file);
    const blob = new FileBlob(file, st.size, st.mtimeMs - 5000);
    await assert.rejects(blob.slice(0, 4).arrayBuffer(), (e: Error) => e.message.includes(file) && /changed while being read/.test(e.message));
    await blob.close();
    const same = new FileBlob(file, st.size, st.mtimeMs);
    assert.equal((await same.slice(0, 4).arrayBuffer()).byteLength, 4);
    await same.close();
  });
});

describe('row ranges and limits decode only their rows', () => {
  it('rows inside one row group', async () => {
    const before = readStats.rowsRead;
    assert.deepEqual(await ids(readParquetBatches(file, { rows: { start: 12_345, end: 12_400 } })), range(12_345, 12_400));
    assert.equal(readStats.rowsRead - before, 55, 'only the 55 rows of the range were decoded');
  });

  it('rows across row groups, and over a row-group selection', async () => {
    assert.deepEqual(await ids(readParquetBatches(file, { rows: { start: 9_990, end: 20_010 }, batchSize: 4096 })), range(9_990, 20_010));
    // Over row groups [2, 0]: rows are counted in that order.
    assert.deepEqual(await ids(readParquetBatches(file, { rowGroups: [2, 0], rows: { start: 9_995, end: 10_005 } })), [
      ...range(29_995, 30_000),
      ...range(0, 5),
    ]);
    // Past the selected rows: an error naming the file, never fewer rows than asked for.
    await assert.rejects(
      ids(readParquetBatches(file, { rows: { start: 40_000, end: 50_000 } })),
      /row range \[40000, 50000\) out of range for row groups 0,1,2 of .*\(30000 rows\)/,
    );
    assert.deepEqual(await ids(readParquetBatches(file, { rows: { start: 5, end: 5 } })), []);
  });

  it('rows with no columns count rows from the footer', async () => {
    let n = 0;
    for await (const b of readParquetBatches(file, { columns: [], rows: { start: 100, end: 15_000 } })) n += b.numRows;
    assert.equal(n, 14_900);
  });

  it('a limit stops the decoder inside the row group', async () => {
    const before = readStats.rowsRead;
    assert.deepEqual(await ids(readParquetBatches(file, { limit: 7 })), range(0, 7));
    assert.deepEqual(await ids(readParquetBatches(file, { rows: { start: 9_998, end: 30_000 }, limit: 5 })), range(9_998, 10_003));
    assert.equal(readStats.rowsRead - before, 12);
  });

  it('limit(n) on a DataFrame decodes n rows, not a batch of the row group', async () => {
    setRunner('native', { workers: false });
    const before = readStats.rowsRead;
    const t = await readParquet(file).limit(3).toArrow();
    assert.equal(t.numRows, 3);
    assert.equal(readStats.rowsRead - before, 3);
  });

  it('bad ranges are errors naming the option and file', async () => {
    await assert.rejects(
      ids(readParquetBatches(file, { rows: { start: 10, end: 5 } })),
      (e: Error) => /rows must be/.test(e.message) && e.message.includes(file),
    );
    await assert.rejects(ids(readParquetBatches(file, { limit: -1 })), (e: Error) => /limit must be/.test(e.message) && e.message.includes(file));
  });
});

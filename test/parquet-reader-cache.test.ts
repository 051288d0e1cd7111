// Readers of the same local file version share its blob (one fd) and parquet-wasm ParquetFile across
// partitions, in a small LRU: results equal uncached reads, a changed file is read again, eviction
// frees the ParquetFile and closes the fd, and the wasm instance being replaced reopens the file.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as arrow from 'apache-arrow';
import { readParquetBatches, warmParquet } from '../src/io/parquet/index.ts';
import { parquetReaderCacheSize, setParquetReaderCacheSize } from '../src/io/parquet/read.ts';
import { getWasm } from '../src/io/parquet/wasm.ts';
import { tempDir, writeSample } from './helpers.ts';

const ROWS = 4000;
const GROUP = 1000;
let dir: string;
let file: string;

before(async () => {
  await warmParquet();
  dir = tempDir('fanout-reader-cache-');
  file = join(dir, 'cache.parquet');
  await writeSample(file, 0, ROWS, GROUP);
});

after(() => setParquetReaderCacheSize(4));

async function rows(batches: AsyncIterable<arrow.RecordBatch>): Promise<string[]> {
  const out: string[] = [];
  for await (const b of batches) for (const r of b) out.push(JSON.stringify(r.toJSON(), (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  return out;
}

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50)); // FileHandle.close() is asynchronous

/** Count parquet-wasm footer parses (ParquetFile.fromFile) and frees while `fn` runs. */
async function wasmCalls<T>(fn: () => Promise<T>): Promise<{ result: T; opens: number; frees: number }> {
  const PF = (await getWasm()).pw.ParquetFile as unknown as { fromFile: (b: unknown) => Promise<unknown>; prototype: { free(): void } };
  const fromFile = PF.fromFile;
  const free = PF.prototype.free;
  let opens = 0;
  let frees = 0;
  PF.fromFile = function (this: unknown, b: unknown) {
    opens++;
    return fromFile.call(this, b);
  };
  PF.prototype.free = function (this: unknown) {
    frees++;
    free.call(this);
  };
  try {
    return { result: await fn(), opens, frees };
  } finally {
    PF.fromFile = fromFile;
    PF.prototype.free = free;
  }
}

describe('parquet reader cache', () => {
  it('readers of one row group each parse the footer once and return what uncached readers return', async () => {
    setParquetReaderCacheSize(0);
    const uncached = await wasmCalls(async () => {
      const out: string[] = [];
      for (let g = 0; g < ROWS / GROUP; g++) out.push(...(await rows(readParquetBatches(file, { rowGroups: [g] }))));
      return out;
    });
    assert.equal(uncached.opens, ROWS / GROUP, 'without the cache each reader opens the file');
    setParquetReaderCacheSize(4);
    const cached = await wasmCalls(async () => {
      const out: string[] = [];
      for (let g = 0; g < ROWS / GROUP; g++) out.push(...(await rows(readParquetBatches(file, { rowGroups: [g] }))));
      return out;
    });
    assert.equal(cached.opens, 1, 'one ParquetFile serves every partition of the file');
    assert.equal(cached.frees, 0, 'the cached ParquetFile is kept');
    assert.equal(cached.result.length, ROWS);
    assert.deepEqual(cached.result, uncached.result);
    assert.deepEqual(cached.result, await rows(readParquetBatches(file)));
  });

  it('two interleaved readers of the same file each get their own rows', async () => {
    const a = readParquetBatches(file, { rowGroups: [0, 2], batchSize: 300 });
    const b = readParquetBatches(file, { rowGroups: [1, 3], columns: ['id'], batchSize: 250 });
    const ia: number[] = [];
    const ib: number[] = [];
    let da = false;
    let db = false;
    while (!da || !db) {
      if (!da) {
        const r = await a.next();
        if (r.done) da = true;
        else for (const v of r.value.getChild('id')!) ia.push(Number(v));
      }
      if (!db) {
        const r = await b.next();
        if (r.done) db = true;
        else for (const v of r.value.getChild('id')!) ib.push(Number(v));
      }
    }
    const span = (s: number): number[] => Array.from({ length: GROUP }, (_, i) => s + i);
    assert.deepEqual(ia, [...span(0), ...span(2000)]);
    assert.deepEqual(ib, [...span(1000), ...span(3000)]);
  });

  it('a file rewritten in place is read again, not served from the cache', async () => {
    const f = join(dir, 'changing.parquet');
    await writeSample(f, 0, ROWS, GROUP);
    const first = await rows(readParquetBatches(f, { rowGroups: [0] }));
    assert.ok(first[0]!.includes('"id":"0n"'), first[0]);
    await writeSample(f, 100_000, ROWS, GROUP); // same size and layout, other values
    const t = new Date(Date.now() + 10_000);
    fs.utimesSync(f, t, t); // a distinct mtime even on a coarse clock
    const fdsBefore = openFds();
    const again = await wasmCalls(() => rows(readParquetBatches(f, { rowGroups: [0] })));
    assert.ok(again.result[0]!.includes('"id":"100000n"'), `stale rows served: ${again.result[0]}`);
    assert.equal(again.opens, 1, 'the new version is opened');
    assert.equal(again.frees, 1, "the old version's ParquetFile is freed");
    await settle();
    assert.ok(openFds() <= fdsBefore, "the old version's fd is closed, the new one replaces it");
  });

  it('evicts past its bound: the fd is closed and the ParquetFile freed; many files keep the fd count bounded', async () => {
    setParquetReaderCacheSize(0);
    await settle();
    const base = openFds();
    setParquetReaderCacheSize(2);
    const files: string[] = [];
    for (let i = 0; i < 12; i++) {
      const f = join(dir, `many-${i}.parquet`);
      await writeSample(f, i * 10, 20, 10);
      files.push(f);
    }
    const { result, frees } = await wasmCalls(async () => {
      let peak = 0;
      for (const f of files) {
        const ids = await rows(readParquetBatches(f, { columns: ['id'] }));
        assert.equal(ids.length, 20);
        await settle();
        peak = Math.max(peak, openFds());
        assert.ok(parquetReaderCacheSize() <= 2);
      }
      return peak;
    });
    assert.ok(result <= base + 2, `open fds peaked at ${result}, ${base} before: at most 2 files stay open`);
    assert.ok(frees >= 10, `evicted ParquetFiles are freed (${frees} frees)`);
    setParquetReaderCacheSize(0);
    await settle();
    assert.equal(parquetReaderCacheSize(), 0);
    assert.equal(openFds(), base, 'emptying the cache closes every file');
    setParquetReaderCacheSize(4);
  });

  it('reopens the file on a new parquet-wasm instance once the old one is dead', async () => {
    const first = await rows(readParquetBatches(file, { rowGroups: [0] }));
    const old = await getWasm();
    old.dead = new Error('retired by the test'); // as after a trap: getWasm() now makes a fresh instance
    const { result, opens } = await wasmCalls(() => rows(readParquetBatches(file, { rowGroups: [1] })));
    assert.notEqual(await getWasm(), old);
    assert.equal(opens, 1, 'the ParquetFile is opened again on the new instance');
    assert.equal(result.length, GROUP);
    assert.notDeepEqual(result, first);
    assert.deepEqual([...first, ...result], (await rows(readParquetBatches(file))).slice(0, 2 * GROUP));
  });
});

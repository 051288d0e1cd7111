// Parquet writer options (issue 12): validation, the per-column encodings 'auto' picks from a sample,
// round trips of every type under each setting (read back by fanout and by DuckDB), reproducible
// bytes, and the dataset commit with the new defaults.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { parquetMetadata } from 'hyparquet';
import { ColumnNotFoundError, DataType, Field, Schema } from '../src/datatypes.ts';
import { fromArrow, fromRecords, readParquet, setRunner, shutdownWorkers } from '../src/index.ts';
import { readParquetBatches, warmParquet, writeParquetFile, type WriteParquetOptions } from '../src/io/parquet/index.ts';
import { DatasetWriter, readManifest } from '../src/io/writer.ts';
import { tempDir } from './helpers.ts';

let dir: string;
before(async () => {
  dir = tempDir('fanout-write-options-');
  await warmParquet();
});
after(() => shutdownWorkers());

/** Each column's encodings in row group 0, by top-level column name (nested: the first leaf). */
function encodings(path: string): Record<string, string[]> {
  const buf = fs.readFileSync(path);
  const md = parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer);
  const out: Record<string, string[]> = {};
  for (const c of md.row_groups[0]!.columns) {
    const name = c.meta_data!.path_in_schema[0]!;
    out[name] ??= [...c.meta_data!.encodings].sort();
  }
  return out;
}
const hasDictionary = (e: string[] | undefined): boolean => !!e?.includes('RLE_DICTIONARY');

// ---- every type, with columns shaped for each encoding -----------------------------------------

const N = 3000;
const SCHEMA = new Schema([
  new Field('rn', DataType.int32(), false),
  new Field('i8', DataType.int8()),
  new Field('i16', DataType.int16()),
  new Field('i32', DataType.int32()),
  new Field('i64', DataType.int64()),
  new Field('u8', DataType.uint8()),
  new Field('u16', DataType.uint16()),
  new Field('u32', DataType.uint32()),
  new Field('u64', DataType.uint64()),
  new Field('f32', DataType.float32()),
  new Field('f64', DataType.float64()),
  new Field('b', DataType.bool()),
  new Field('s', DataType.utf8()),
  new Field('text', DataType.utf8()),
  new Field('bin', DataType.binary()),
  new Field('d', DataType.date()),
  new Field('ts_ms', DataType.timestamp('ms', 'UTC')),
  new Field('ts_us', DataType.timestamp('us')),
  new Field('li', DataType.list(DataType.int32())),
  new Field('ls', DataType.list(DataType.utf8())),
  new Field('st', DataType.struct({ a: DataType.int64(), b: DataType.utf8() })),
  new Field('fsl', DataType.fixedSizeList(DataType.float64(), 3)),
]);

/** A deterministic pseudo-random sequence in [0, 1). */
function rand(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function rows(n: number): Record<string, unknown>[] {
  const r = rand(7);
  return Array.from({ length: n }, (_, i) => {
    const nul = i % 7 === 3;
    return {
      rn: i,
      i8: nul ? null : (i % 5) - 2, // low cardinality: dictionary
      i16: nul ? null : i * 3 - 4000, // steady steps: delta
      i32: nul ? null : Math.floor(i / 16) * 1000, // runs of 16: dictionary (a row sample sees them as distinct)
      i64: nul ? null : BigInt(i) * 1_000_000_007n - 5_000_000_000_000n, // sorted, unique: delta
      u8: i % 256,
      u16: nul ? null : Math.floor(r() * 65536), // random: plain
      u32: nul ? null : 4_000_000_000 - i * 13,
      u64: nul ? null : 18_000_000_000_000_000_000n + BigInt(Math.floor(r() * 1e9)),
      f32: nul ? null : Math.fround(r() * 100),
      f64: nul ? null : r() * 1e6 - 5e5, // unique: plain
      b: nul ? null : i % 3 === 0,
      s: nul ? null : ['alpha', 'beta', '', 'é€😀'][i % 4], // low cardinality: dictionary
      text: nul ? null : `row ${i} ${r().toString(36)}`, // unique: plain
      bin: nul ? null : Uint8Array.from({ length: i % 5 }, (_, k) => (i + k * 31) % 256),
      d: nul ? null : new Date(Date.UTC(2020, 0, 1) + i * 86_400_000), // one day apart: delta
      ts_ms: nul ? null : new Date(1_600_000_000_000 + i * 1000),
      ts_us: nul ? null : new Date(1_600_000_000_000 + i * 7),
      li: nul ? null : Array.from({ length: i % 4 }, (_, k) => (k === 1 ? null : i * 10 + k)),
      ls: nul ? null : Array.from({ length: i % 3 }, (_, k) => `e${i % 9}.${k}`),
      st: nul ? null : { a: i % 5 === 0 ? null : BigInt(i), b: `s${i % 13}` },
      fsl: nul ? null : [i, i + 0.5, i % 4 === 0 ? null : -i],
    };
  });
}

let table: arrow.Table;
let expected: Record<string, unknown>[];
before(async () => {
  table = await fromRecords(rows(N), SCHEMA).toArrow();
  expected = await fromArrow(table).toRows();
});

/** The 64-bit and temporal columns as raw integers (rows compare timestamps as Dates, i.e. to the millisecond). */
function raw(t: arrow.Table, name: string): (number | bigint | null)[] {
  const out: (number | bigint | null)[] = [];
  for (const d of t.getChild(name)!.data) {
    for (let i = 0; i < d.length; i++) {
      const j = d.offset + i; // the bitmap is bit-addressed from the unsliced start; values start at the slice
      const valid = d.nullCount === 0 || !d.nullBitmap || ((d.nullBitmap[j >> 3]! >> (j & 7)) & 1) === 1;
      out.push(valid ? (d.values as ArrayLike<number | bigint>)[i]! : null);
    }
  }
  return out;
}

async function writeAndCheck(name: string, opts: WriteParquetOptions): Promise<string> {
  const path = join(dir, `${name}.parquet`);
  // Small batches and row groups: several row groups, the encodings chosen from the first batch only.
  const r = await writeParquetFile(path, table.batches, { schema: SCHEMA, rowGroupSize: 1024, ...opts });
  assert.equal(r.rows, N);
  const back = await readParquet(path).toArrow();
  assert.deepEqual(await fromArrow(back).toRows(), expected, `${name}: rows read back`);
  for (const c of ['i64', 'u64', 'd', 'ts_ms', 'ts_us']) assert.deepEqual(raw(back, c), raw(table, c), `${name}: raw ${c}`);
  return path;
}

describe('Parquet writer options', () => {
  it("'auto' (the default) picks a dictionary, DELTA_BINARY_PACKED or PLAIN per column from a sample", async () => {
    const path = await writeAndCheck('auto', {});
    const e = encodings(path);
    for (const c of ['i8', 'i32', 's']) assert.ok(hasDictionary(e[c]), `${c} is dictionary-encoded: ${e[c]}`);
    for (const c of ['i16', 'i64', 'u32', 'd', 'ts_ms', 'ts_us']) {
      assert.ok(e[c]!.includes('DELTA_BINARY_PACKED') && !hasDictionary(e[c]), `${c} is delta-encoded: ${e[c]}`);
    }
    for (const c of ['u16', 'f32', 'f64', 'text']) assert.deepEqual(e[c], ['PLAIN', 'RLE'], `${c} is PLAIN without a dictionary`);
    // Nested columns keep parquet-rs's default (a dictionary).
    assert.ok(hasDictionary(e['ls']), `ls: ${e['ls']}`);
  });

  it("'dictionary' (parquet-rs's default, what fanout wrote before) and 'plain' round-trip every type too", async () => {
    const d = encodings(await writeAndCheck('dictionary', { encoding: 'dictionary' }));
    for (const c of ['i16', 'i64', 'f64', 'text', 'ls']) assert.ok(hasDictionary(d[c]), `${c}: ${d[c]}`);
    const p = encodings(await writeAndCheck('plain', { encoding: 'plain' }));
    for (const [c, enc] of Object.entries(p)) assert.ok(!hasDictionary(enc) && !enc.includes('DELTA_BINARY_PACKED'), `${c}: ${enc}`);
  });

  it('columnEncoding overrides the choice for the columns it names', async () => {
    const e = encodings(
      await writeAndCheck('override', {
        columnEncoding: { i64: 'plain', f64: 'dictionary', u16: 'delta', s: 'plain', b: 'plain' },
        statistics: 'chunk',
        dataPageSize: 4096,
        compression: 'zstd',
      }),
    );
    assert.deepEqual(e['i64'], ['PLAIN', 'RLE']);
    assert.ok(hasDictionary(e['f64']));
    assert.ok(e['u16']!.includes('DELTA_BINARY_PACKED'));
    assert.deepEqual(e['s'], ['PLAIN', 'RLE']);
    assert.ok(e['i16']!.includes('DELTA_BINARY_PACKED'), 'the other columns stay on auto');
  });

  it('a column whose name holds a dot takes its own encoding (parquet-wasm addresses columns by one path element)', async () => {
    const schema = new Schema([new Field('a.b', DataType.int64()), new Field('a', DataType.int64())]);
    const t = await fromRecords(
      Array.from({ length: 3000 }, (_, i) => ({ 'a.b': BigInt(i % 3), a: BigInt(i % 3) })),
      schema,
    ).toArrow();
    const path = join(dir, 'dotted.parquet');
    await writeParquetFile(path, t.batches, { columnEncoding: { 'a.b': 'delta', a: 'plain' } });
    assert.deepEqual(encodings(path), { 'a.b': ['DELTA_BINARY_PACKED', 'RLE'], a: ['PLAIN', 'RLE'] });
  });

  it('large binary values are sampled within a byte budget and written PLAIN', async () => {
    const blob = (i: number): Uint8Array => new Uint8Array(200_000).fill(i % 251);
    const schema = new Schema([new Field('blob', DataType.binary()), new Field('k', DataType.utf8())]);
    const t = await fromRecords(
      Array.from({ length: 300 }, (_, i) => ({ blob: blob(i), k: `k${i % 4}` })),
      schema,
    ).toArrow();
    const path = join(dir, 'blobs.parquet');
    await writeParquetFile(path, t.batches);
    const e = encodings(path);
    assert.deepEqual(e['blob'], ['PLAIN', 'RLE']);
    assert.ok(hasDictionary(e['k']), `k: ${e['k']}`);
    const back = await readParquet(path).toRows();
    assert.equal(back.length, 300);
    assert.deepEqual(back[7]!['blob'], blob(7));
  });

  it('statistics: page (default) writes the page index, chunk only the chunk statistics, none neither', async () => {
    const meta = async (statistics: WriteParquetOptions['statistics']) => {
      const path = join(dir, `stats-${statistics}.parquet`);
      await writeParquetFile(path, table.batches, { schema: SCHEMA, rowGroupSize: 1024, ...(statistics ? { statistics } : {}) });
      const buf = fs.readFileSync(path);
      return parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer).row_groups[0]!.columns[1]!;
    };
    const page = await meta(undefined);
    assert.ok(page.meta_data!.statistics && page.column_index_offset !== undefined, 'page: chunk statistics and a column index');
    const chunk = await meta('chunk');
    assert.ok(chunk.meta_data!.statistics?.min_value !== undefined && chunk.column_index_offset === undefined, 'chunk: statistics, no column index');
    const none = await meta('none');
    assert.ok(none.meta_data!.statistics?.min_value === undefined && none.column_index_offset === undefined, 'none: no min/max');
  });

  it('DuckDB reads the auto, dictionary and plain files as the same rows', async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    try {
      const files = ['auto', 'dictionary', 'plain', 'override'].map((n) => join(dir, `${n}.parquet`));
      for (const f of files) assert.ok(fs.existsSync(f), `${f} written by the tests above`);
      const count = await con.runAndReadAll(
        `SELECT count(*)::INTEGER AS n, count(DISTINCT rn)::INTEGER AS d, sum(i64)::VARCHAR AS s FROM read_parquet('${files[0]}')`,
      );
      assert.deepEqual(count.getRowObjectsJS(), [{ n: N, d: N, s: String(expected.reduce((a, r) => a + ((r['i64'] as bigint | null) ?? 0n), 0n)) }]);
      for (const other of files.slice(1)) {
        for (const [a, b] of [
          [files[0], other],
          [other, files[0]],
        ]) {
          const diff = await con.runAndReadAll(
            `SELECT count(*)::INTEGER AS n FROM (SELECT * FROM read_parquet('${a}') EXCEPT ALL SELECT * FROM read_parquet('${b}'))`,
          );
          assert.deepEqual(diff.getRowObjectsJS(), [{ n: 0 }], `${a} minus ${b}`);
        }
      }
    } finally {
      con.closeSync();
      db.closeSync();
    }
  });

  it('the same batches give the same bytes (the sample is deterministic)', async () => {
    const a = join(dir, 'same-a.parquet');
    const b = join(dir, 'same-b.parquet');
    await writeParquetFile(a, table.batches, { schema: SCHEMA });
    await writeParquetFile(b, table.batches, { schema: SCHEMA });
    assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)));
  });

  it('small batches: the choice waits for enough rows, from as many batches as it takes', async () => {
    const path = join(dir, 'small-batches.parquet');
    const schema = new Schema([new Field('id', DataType.int64()), new Field('s', DataType.utf8())]);
    const batches = (
      await fromRecords(
        Array.from({ length: 5000 }, (_, i) => ({ id: BigInt(i), s: `k${i % 3}` })),
        schema,
      ).toArrow()
    ).batches[0]!;
    const small = Array.from({ length: 100 }, (_, k) => batches.slice(k * 50, (k + 1) * 50));
    await writeParquetFile(path, small);
    const e = encodings(path);
    // One 50-row batch is too little to see that the ids step by one (delta needs 129 values).
    assert.ok(e['id']!.includes('DELTA_BINARY_PACKED'), `id: ${e['id']}`);
    assert.ok(hasDictionary(e['s']), `s: ${e['s']}`);
    assert.deepEqual(
      (await readParquet(path).toRows()).map((r) => r['id']),
      Array.from({ length: 5000 }, (_, i) => BigInt(i)),
    );
  });

  it('a column that repeats except on every 16th row gets a dictionary (a strided sample would see only distinct values)', async () => {
    const n = 65536;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = i % 16 === 0 ? i + 0.5 : (i % 997) * 1.25;
    const path = join(dir, 'periodic.parquet');
    const t = await fromRecords(
      Array.from(v, (x) => ({ v: x })),
      new Schema([new Field('v', DataType.float64())]),
    ).toArrow();
    await writeParquetFile(path, t.batches);
    assert.ok(hasDictionary(encodings(path)['v']));
    let sum = 0;
    for await (const b of readParquetBatches(path)) for (const x of b.getChild('v')!.toArray() as Float64Array) sum += x;
    assert.equal(
      sum,
      v.reduce((a, x) => a + x, 0),
    );
  });
});

describe('the IPC hand-off to parquet-wasm', () => {
  it('columns sharing or overlapping one buffer, in batches that grow and shrink, write and read back equal', async () => {
    const sizes = [10, 5000, 3, 20000, 1];
    const batches: arrow.RecordBatch[] = [];
    const want: { a: number; b: number; c: number }[] = [];
    for (const n of sizes) {
      const buf = Float64Array.from({ length: n + 1 }, (_, i) => i * 1.5 + n);
      const a = arrow.makeData({ type: new arrow.Float64(), length: n, data: buf.subarray(0, n) });
      const b = arrow.makeData({ type: new arrow.Float64(), length: n, data: buf.subarray(1, n + 1) }); // overlaps a by n-1 values
      const as = new arrow.Schema([
        new arrow.Field('a', new arrow.Float64()),
        new arrow.Field('b', new arrow.Float64()),
        new arrow.Field('c', new arrow.Float64()),
      ]);
      batches.push(new arrow.RecordBatch(as, arrow.makeData({ type: new arrow.Struct(as.fields), length: n, children: [a, b, a] }))); // c is a itself
      for (let i = 0; i < n; i++) want.push({ a: buf[i]!, b: buf[i + 1]!, c: buf[i]! });
    }
    const path = join(dir, 'aliased.parquet');
    assert.equal((await writeParquetFile(path, batches)).rows, want.length);
    assert.deepEqual(await readParquet(path).toRows(), want);
  });
});

describe('Parquet writer option validation', () => {
  const bad: [string, Record<string, unknown>, RegExp | typeof ColumnNotFoundError][] = [
    ['an unknown option', { compresion: 'snappy' }, /unknown Parquet write option 'compresion'.*known options: 'schema', 'compression'/],
    ['compression', { compression: 'lzo' }, /option compression must be one of 'snappy', .*got 'lzo'/],
    ['rowGroupSize', { rowGroupSize: 0 }, /option rowGroupSize must be a positive integer, got 0/],
    ['encoding', { encoding: 'delta' }, /option encoding must be one of 'auto', 'dictionary', 'plain', got 'delta'/],
    ['statistics', { statistics: 'rowgroup' }, /option statistics must be one of 'page', 'chunk', 'none', got 'rowgroup'/],
    ['dataPageSize 0', { dataPageSize: 0 }, /option dataPageSize must be a whole number of bytes from 1 to 1073741824, got 0/],
    ['dataPageSize 1.5', { dataPageSize: 1.5 }, /option dataPageSize .* got 1\.5/],
    ['dataPageSize 2 GiB', { dataPageSize: 2 ** 31 }, /option dataPageSize .* got 2147483648/],
    ['columnEncoding as a list', { columnEncoding: ['i64'] }, /option columnEncoding must be an object of column name to 'plain', 'dictionary', 'delta'/],
    ['a columnEncoding value', { columnEncoding: { i64: 'rle' } }, /option columnEncoding\['i64'\] must be one of 'plain', 'dictionary', 'delta', got 'rle'/],
    ['a columnEncoding column', { columnEncoding: { nope: 'plain' } }, ColumnNotFoundError],
    [
      'delta on a float',
      { columnEncoding: { f64: 'delta' } },
      /columnEncoding\['f64'\] = 'delta' needs an integer, date or timestamp column; 'f64' is float64/,
    ],
    ['a nested column', { columnEncoding: { li: 'plain' } }, /columnEncoding\['li'\]: column 'li' is list<int32>; only top-level columns of a primitive type/],
  ];
  for (const [what, opts, want] of bad) {
    it(`rejects ${what}, naming the option and the file, before reading a batch`, async () => {
      for (const withSchema of [true, false]) {
        const path = join(dir, `bad-${what.replace(/\W+/g, '-')}-${withSchema}.parquet`);
        let pulled = 0;
        const source = function* () {
          pulled++;
          yield table.batches[0]!;
        };
        await assert.rejects(writeParquetFile(path, source(), { ...(withSchema ? { schema: SCHEMA } : {}), ...opts } as WriteParquetOptions), (e: Error) => {
          if (want instanceof RegExp) assert.match(e.message, want);
          else assert.ok(e instanceof want && e.message.includes('option columnEncoding'), e.message);
          assert.ok(e.message.includes(path), `names the file: ${e.message}`);
          return true;
        });
        // Without a schema the first batch is read to learn it (the column checks need it); nothing is written.
        if (withSchema) assert.equal(pulled, 0, 'no batch read');
        assert.ok(!fs.existsSync(path), 'no file left');
      }
    });
  }

  it('DatasetWriter.writePart passes the options through, and the commit is unchanged', async () => {
    const out = join(dir, 'dataset');
    const w = await DatasetWriter.begin(out, { format: 'parquet' });
    await assert.rejects(w.writePart(1, table.batches, { schema: SCHEMA, encoding: 'bogus' as 'auto' }), /option encoding must be one of/);
    const p0 = await w.writePart(0, table.batches, { schema: SCHEMA, columnEncoding: { i64: 'plain' } });
    assert.ok(!fs.existsSync(join(out, '_SUCCESS')), 'nothing visible before the commit');
    const files = await w.commit([p0]);
    assert.deepEqual(
      readManifest(out)?.files.map((f) => f.path),
      files.map((f) => f.path.slice(out.length + 1)),
    );
    assert.deepEqual(encodings(files[0]!.path)['i64'], ['PLAIN', 'RLE']);
    assert.deepEqual(await readParquet(out).toRows(), expected);
  });

  it('DataFrame.writeParquet writes the auto encodings, in worker threads too', async () => {
    for (const workers of [false, true]) {
      setRunner('native', workers ? { workers: true, parallelism: 2, targetPartitionBytes: 1 } : { workers: false });
      try {
        const src = join(dir, `df-src-${workers}`);
        const out = join(dir, `df-out-${workers}`);
        await fromArrow(table).writeParquet(src);
        await readParquet(src).select('rn', 'i64', 's', 'f64').writeParquet(out);
        const files = fs.readdirSync(out).filter((f) => f.endsWith('.parquet'));
        assert.ok(files.length >= 1);
        const e = encodings(join(out, files[0]!));
        assert.ok(e['i64']!.includes('DELTA_BINARY_PACKED') && hasDictionary(e['s']) && !hasDictionary(e['f64']), JSON.stringify(e));
        const back = (await readParquet(out).toRows()).sort((a, b) => (a['rn'] as number) - (b['rn'] as number));
        assert.deepEqual(
          back,
          expected.map((r) => ({ rn: r['rn'], i64: r['i64'], s: r['s'], f64: r['f64'] })),
        );
      } finally {
        setRunner('native');
      }
    }
  });
});

describe('DataFrame.writeParquet(dir, { parquet })', () => {
  it('passes the writer options to every part: in-process, on worker threads, and in a hive layout', async () => {
    const src = join(dir, 'opts-src');
    await fromArrow(table).writeParquet(src);
    // Data in memory: one part, written on this thread.
    const mem = join(dir, 'opts-memory');
    await fromArrow(table)
      .select('rn', 'i64')
      .writeParquet(mem, { parquet: { encoding: 'plain' } });
    const memFile = fs.readdirSync(mem).find((f) => f.endsWith('.parquet'))!;
    assert.deepEqual(encodings(join(mem, memFile)), { rn: ['PLAIN', 'RLE'], i64: ['PLAIN', 'RLE'] });
    for (const workers of [false, true]) {
      setRunner('native', workers ? { workers: true, parallelism: 2, targetPartitionBytes: 1 } : { workers: false });
      try {
        const flat = join(dir, `opts-flat-${workers}`);
        await readParquet(src)
          .select('rn', 'i64', 's', 'f64')
          .writeParquet(flat, { parquet: { encoding: 'dictionary', columnEncoding: { i64: 'delta' } } });
        const hive = join(dir, `opts-hive-${workers}`);
        await readParquet(src)
          .select('rn', 'i8', 'i64', 'f64')
          .writeParquet(hive, { partitionBy: ['i8'], parquet: { encoding: 'plain' } });
        const files = (d: string): string[] =>
          (fs.readdirSync(d, { recursive: true }) as string[]).filter((f) => f.endsWith('.parquet')).map((f) => join(d, f));
        assert.ok(files(flat).length >= 1 && files(hive).length >= 5, `${files(flat).length} flat and ${files(hive).length} hive files`);
        for (const f of files(flat)) {
          const e = encodings(f);
          assert.ok(e['i64']!.includes('DELTA_BINARY_PACKED') && hasDictionary(e['f64']) && hasDictionary(e['s']), `${f}: ${JSON.stringify(e)}`);
        }
        for (const f of files(hive)) {
          for (const [c, enc] of Object.entries(encodings(f))) assert.ok(!hasDictionary(enc) && !enc.includes('DELTA_BINARY_PACKED'), `${f} ${c}: ${enc}`);
        }
        const back = (await readParquet(flat).toRows()).sort((a, b) => (a['rn'] as number) - (b['rn'] as number));
        assert.deepEqual(
          back,
          expected.map((r) => ({ rn: r['rn'], i64: r['i64'], s: r['s'], f64: r['f64'] })),
        );
        assert.equal(await readParquet(hive).count(), N);
      } finally {
        setRunner('native');
      }
    }
  });

  it('bad writer options fail before anything runs, naming the option', async () => {
    const df = fromArrow(table);
    const cases: [Record<string, unknown>, RegExp | typeof ColumnNotFoundError][] = [
      [{ parquet: { encoding: 'rle' } }, /option encoding must be one of 'auto', 'dictionary', 'plain', got 'rle'/],
      [{ parquet: { columnEncoding: { nope: 'plain' } } }, ColumnNotFoundError],
      [{ parquet: { columnEncoding: { f64: 'delta' } } }, /columnEncoding\['f64'\] = 'delta' needs an integer/],
      [{ parquet: { schema: SCHEMA } }, /option parquet.schema is not taken/],
      [{ parquet: 'zstd' }, /option 'parquet' must be an object of writer options/],
      [{ partitionBy: ['i8'], parquet: { columnEncoding: { i8: 'plain' } } }, /option parquet.columnEncoding names 'i8', a partitionBy column/],
    ];
    for (const [opts, want] of cases) {
      const out = join(dir, 'never-written');
      await assert.rejects(df.writeParquet(out, opts as never), want instanceof RegExp ? want : (e: Error) => e instanceof want);
      assert.ok(!fs.existsSync(out), `nothing written for ${JSON.stringify(opts)}`);
    }
    await assert.rejects(
      df.writeCsv(join(dir, 'never.csv'), { parquet: {} }),
      /writeCsv\(.*\): option 'parquet' \(Parquet writer options\) applies to writeParquet only/,
    );
  });

  // The serverless runner carries the options to its stages (test/aws-write-options.test.ts); bad ones
  // are refused before a run starts (no state machine here to reach).
  it('the serverless runner refuses bad writer options before anything runs', async () => {
    setRunner('aws', { stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:none', workBucket: 'none', region: 'us-east-1' });
    try {
      const src = join(dir, 'opts-src');
      await assert.rejects(
        readParquet(src).writeParquet('s3://none/out', { parquet: { encoding: 'rle' as never } }),
        /option encoding must be one of 'auto', 'dictionary', 'plain', got 'rle' \(writing Parquet s3:\/\/none\/out\)/,
      );
    } finally {
      setRunner('native');
    }
  });
});

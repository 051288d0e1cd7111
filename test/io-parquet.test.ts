// Parquet I/O: round trips of every DataType, projection, row-group selection, statistics,
// streaming, error reporting, and a DuckDB cross-check. Fixtures are generated into a temp dir.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { parquetMetadata } from 'hyparquet';
import { ColumnNotFoundError, DataType, Field, Schema, type DataTypeJSON } from '../src/datatypes.ts';
import { inspectParquet, readParquetBatches, readStats, warmParquet, writeParquetFile } from '../src/io/parquet/index.ts';

let dir: string;
before(async () => {
  dir = fs.mkdtempSync(join(tmpdir(), 'fanout-io-parquet-'));
  await warmParquet();
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// ---- fixtures -------------------------------------------------------------------------------

const N = 300;
type Row = Record<string, unknown>;

/** Deterministic rows for every supported type; every 7th value of a nullable column is null. */
function value(kind: string, i: number): unknown {
  if (i % 7 === 3) return null;
  switch (kind) {
    case 'i8':
      return (i % 200) - 100;
    case 'i16':
      return i * 97 - 15000;
    case 'i32':
      return i * 1_000_003 - 150_000_000;
    case 'i64':
      return BigInt(i) * 30_000_000_000_000_007n - 4_000_000_000_000_000_000n;
    case 'u8':
      return i % 256;
    case 'u16':
      return (i * 211) % 65536;
    case 'u32':
      return 4_000_000_000 - i * 13;
    case 'u64':
      return 18_000_000_000_000_000_000n + BigInt(i);
    case 'f32':
      return Math.fround(i / 8 - 10);
    case 'f64':
      return i === 5 ? NaN : i * Math.PI - 300;
    case 'b':
      return i % 3 === 0;
    case 's':
      return i % 11 === 1 ? '' : `v${i}-é€😀-${'x'.repeat(i % 5)}`;
    case 'bin':
      return Uint8Array.from({ length: i % 4 }, (_, k) => (i + k * 31) % 256);
    case 'd':
      return i * 37 - 5000; // days, negative before 1970
    case 'ts_s':
      return BigInt(i) * 86_399n - 10_000_000n;
    case 'ts_ms':
      return BigInt(i) * 3_600_001n + 1_600_000_000_000n;
    case 'ts_us':
      return BigInt(i) * 1_000_003n + 1_600_000_000_000_000n;
    case 'ts_ns':
      return BigInt(i) * 1_000_000_007n + 1_600_000_000_000_000_000n;
    case 'li':
      return Array.from({ length: i % 4 }, (_, k) => (k === 1 && i % 2 ? null : i * 10 + k));
    case 'ls':
      return Array.from({ length: i % 3 }, (_, k) => (k === 2 ? null : `e${i}.${k}`));
    case 'st':
      return { a: i % 5 === 0 ? null : BigInt(i), b: `s${i % 13}` };
    case 'fsl':
      return [i, i + 0.5, i % 4 === 0 ? null : -i];
    default:
      throw new Error(kind);
  }
}

const TYPES: Record<string, DataType> = {
  i8: DataType.int8(),
  i16: DataType.int16(),
  i32: DataType.int32(),
  i64: DataType.int64(),
  u8: DataType.uint8(),
  u16: DataType.uint16(),
  u32: DataType.uint32(),
  u64: DataType.uint64(),
  f32: DataType.float32(),
  f64: DataType.float64(),
  b: DataType.bool(),
  s: DataType.utf8(),
  bin: DataType.binary(),
  d: DataType.date(),
  ts_s: DataType.timestamp('s'),
  ts_ms: DataType.timestamp('ms', 'UTC'),
  ts_us: DataType.timestamp('us'),
  ts_ns: DataType.timestamp('ns', 'America/New_York'),
  li: DataType.list(DataType.int32()),
  ls: DataType.list(DataType.utf8()),
  st: DataType.struct({ a: DataType.int64(), b: DataType.utf8() }),
  fsl: DataType.fixedSizeList(DataType.float64(), 3),
};
const SCHEMA = new Schema(Object.entries(TYPES).map(([n, t]) => new Field(n, t, true)));

function expectedRows(start: number, count: number): Row[] {
  return Array.from({ length: count }, (_, j) => Object.fromEntries(SCHEMA.names.map((n) => [n, value(n, start + j)])));
}

/** An Arrow column of `type` holding `vals` (64-bit, date and timestamp values built from raw numbers). */
function column(type: DataTypeJSON, vals: unknown[]): arrow.Data {
  const at = new DataType(type).toArrow();
  const n = vals.length;
  const validity = new Uint8Array((n + 7) >> 3);
  let nulls = 0;
  vals.forEach((v, i) => {
    if (v === null) nulls++;
    else validity[i >> 3]! |= 1 << (i & 7);
  });
  const buffers = (values: ArrayBufferView): ConstructorParameters<typeof arrow.Data>[4] =>
    [undefined, values, nulls ? validity : new Uint8Array(0)] as unknown as ConstructorParameters<typeof arrow.Data>[4];
  switch (type.kind) {
    case 'int64':
    case 'timestamp':
      return new arrow.Data(at, 0, n, nulls, buffers(BigInt64Array.from(vals, (v) => (v as bigint | null) ?? 0n)));
    case 'uint64':
      return new arrow.Data(at, 0, n, nulls, buffers(BigUint64Array.from(vals, (v) => (v as bigint | null) ?? 0n)));
    case 'date':
      return new arrow.Data(at, 0, n, nulls, buffers(Int32Array.from(vals, (v) => (v as number | null) ?? 0)));
    case 'struct': {
      const children = type.fields.map((f) =>
        column(
          f.type,
          vals.map((v) => (v === null ? null : (v as Row)[f.name])),
        ),
      );
      return new arrow.Data(at, 0, n, nulls, [undefined, undefined, nulls ? validity : new Uint8Array(0)] as never, children);
    }
    case 'list': {
      const offsets = new Int32Array(n + 1);
      const flat: unknown[] = [];
      vals.forEach((v, i) => {
        if (v) flat.push(...(v as unknown[]));
        offsets[i + 1] = flat.length;
      });
      return new arrow.Data(at, 0, n, nulls, [offsets, undefined, nulls ? validity : new Uint8Array(0)] as never, [column(type.child, flat)]);
    }
    case 'fixedSizeList': {
      const flat = vals.flatMap((v) => (v ? (v as unknown[]) : Array<null>(type.size).fill(null)));
      return new arrow.Data(at, 0, n, nulls, [undefined, undefined, nulls ? validity : new Uint8Array(0)] as never, [column(type.child, flat)]);
    }
    default:
      return arrow.vectorFromArray(vals as never[], at as never).data[0]!.clone(at);
  }
}

function makeBatch(schema: Schema, rows: Row[]): arrow.RecordBatch {
  const as = schema.toArrow();
  const children = schema.fields.map((f) =>
    column(
      f.type.json,
      rows.map((r) => r[f.name]),
    ),
  );
  return new arrow.RecordBatch(as, new arrow.Data(new arrow.Struct(as.fields), 0, rows.length, 0, undefined, children) as arrow.Data<arrow.Struct>);
}

/** JS value of row i of a column, from raw buffers (exact for 64-bit and timestamps). */
function cell(d: arrow.Data, i: number, t: DataTypeJSON): unknown {
  const j = d.offset + i;
  if (d.nullCount > 0 && d.nullBitmap && d.nullBitmap.length && !((d.nullBitmap[j >> 3]! >> (j & 7)) & 1)) return null;
  switch (t.kind) {
    case 'bool':
      return ((d.values[j >> 3] >> (j & 7)) & 1) === 1;
    case 'utf8':
      return new TextDecoder().decode(d.values.subarray(d.valueOffsets[j], d.valueOffsets[j + 1]));
    case 'binary':
      return Uint8Array.from(d.values.subarray(d.valueOffsets[j], d.valueOffsets[j + 1]));
    case 'list': {
      const out = [];
      for (let k = d.valueOffsets[j]; k < d.valueOffsets[j + 1]; k++) out.push(cell(d.children[0]!, k, t.child));
      return out;
    }
    case 'fixedSizeList':
      return Array.from({ length: t.size }, (_, k) => cell(d.children[0]!, j * t.size + k, t.child));
    case 'struct':
      return Object.fromEntries(t.fields.map((f, k) => [f.name, cell(d.children[k]!, j, f.type)]));
    default:
      return d.values[j];
  }
}

function batchRows(b: arrow.RecordBatch, schema: Schema): Row[] {
  return Array.from({ length: b.numRows }, (_, i) => Object.fromEntries(schema.fields.map((f, k) => [f.name, cell(b.data.children[k]!, i, f.type.json)])));
}

async function readAll(path: string, opts: Parameters<typeof readParquetBatches>[1] = {}): Promise<{ rows: Row[]; batches: arrow.RecordBatch[] }> {
  const batches: arrow.RecordBatch[] = [];
  for await (const b of readParquetBatches(path, opts)) batches.push(b);
  const schema = (opts.schema ?? inspectParquet(path).schema).select(opts.columns ?? (opts.schema ?? inspectParquet(path).schema).names);
  return { rows: batches.flatMap((b) => batchRows(b, schema)), batches };
}

/** Exact physical layout check: one Arrow layout per DataType. */
function assertConforms(b: arrow.RecordBatch, schema: Schema): void {
  const expected = schema.toArrow();
  assert.deepEqual(
    b.schema.fields.map((f) => [f.name, String(f.type), f.nullable]),
    expected.fields.map((f) => [f.name, String(f.type), f.nullable]),
  );
  const check = (d: arrow.Data, t: arrow.DataType): void => {
    assert.equal(d.typeId, t.typeId, `${String(d.type)} vs ${String(t)}`);
    if (arrow.DataType.isUtf8(t) || arrow.DataType.isBinary(t) || arrow.DataType.isList(t)) assert.ok(d.valueOffsets instanceof Int32Array);
    (t.children ?? []).forEach((c: arrow.Field, i: number) => {
      check(d.children[i]!, c.type);
    });
  };
  expected.fields.forEach((f, i) => {
    check(b.data.children[i]!, f.type);
  });
}

const allFile = (): string => join(dir, 'all.parquet');
const ROW_GROUP = 64;

before(async () => {
  const rows = expectedRows(0, N);
  const batches = [makeBatch(SCHEMA, rows.slice(0, 100)), makeBatch(SCHEMA, rows.slice(100, 250)), makeBatch(SCHEMA, rows.slice(250))];
  const r = await writeParquetFile(allFile(), batches, { schema: SCHEMA, rowGroupSize: ROW_GROUP });
  assert.equal(r.rows, N);
  assert.equal(r.bytes, fs.statSync(allFile()).size);
});

// ---- tests ----------------------------------------------------------------------------------

describe('parquet round trip', () => {
  it('inspectParquet reports the written schema, row count and row groups', () => {
    const info = inspectParquet(allFile());
    assert.ok(info.schema.equals(SCHEMA), `${info.schema}`);
    assert.equal(info.numRows, N);
    assert.equal(info.rowGroups.length, Math.ceil(N / ROW_GROUP));
    assert.deepEqual(
      info.rowGroups.map((g) => g.numRows),
      [64, 64, 64, 64, 44],
    );
    assert.ok(info.rowGroups.every((g) => g.compressedBytes > 0 && g.uncompressedBytes > 0));
    assert.deepEqual(info.unsupportedColumns, []);
    assert.equal(inspectParquet(allFile()), info, 'cached by path, size and mtime');
  });

  it('reads every DataType back with identical values and the exact Arrow layout', async () => {
    const { rows, batches } = await readAll(allFile(), { batchSize: 50 });
    for (const b of batches) assertConforms(b, SCHEMA);
    assert.ok(batches.every((b) => b.numRows <= 50));
    const want = expectedRows(0, N);
    assert.equal(rows.length, N);
    for (let i = 0; i < N; i++) {
      for (const n of SCHEMA.names) {
        const got = rows[i]![n];
        const exp = want[i]![n];
        if (n === 'f32' && exp !== null) assert.equal(got, exp);
        else if (n === 'f64' && Number.isNaN(exp)) assert.ok(Number.isNaN(got as number));
        else if (n === 'fsl' && exp)
          assert.deepEqual(
            got,
            (exp as unknown[]).map((x) => x),
          );
        else assert.deepEqual(got, exp, `row ${i} column ${n}`);
      }
    }
  });

  it('projection returns only the requested columns, in the requested order', async () => {
    const { rows, batches } = await readAll(allFile(), { columns: ['st', 's', 'i64'] });
    for (const b of batches) {
      assert.deepEqual(b.schema.names, ['st', 's', 'i64']);
      assertConforms(b, SCHEMA.select(['st', 's', 'i64']));
    }
    assert.deepEqual(rows[10], { st: value('st', 10), s: value('s', 10), i64: value('i64', 10) });
    const none = await readAll(allFile(), { columns: [], batchSize: 100 });
    assert.equal(
      none.batches.reduce((n, b) => n + b.numRows, 0),
      N,
    );
    assert.ok(none.batches.every((b) => b.numCols === 0));
  });

  it('row-group selection reads only those row groups', async () => {
    const { rows } = await readAll(allFile(), { rowGroups: [3, 1], columns: ['i32'] });
    const want = [...expectedRows(192, 64), ...expectedRows(64, 64)].map((r) => ({ i32: r.i32 }));
    assert.deepEqual(rows, want);
    await assert.rejects(readAll(allFile(), { rowGroups: [9] }), /row group 9 out of range for .*all\.parquet/);
  });

  it('row-group statistics match the data', () => {
    const info = inspectParquet(allFile());
    for (const g of info.rowGroups) {
      const rows = expectedRows(g.index * ROW_GROUP, g.numRows);
      for (const n of ['i8', 'i32', 'i64', 'u32', 'u64', 'f32', 'b', 's', 'd', 'ts_ms', 'ts_us', 'ts_ns', 'ts_s']) {
        const vals = rows.map((r) => r[n]).filter((v) => v !== null);
        const sorted = [...vals].sort((a, b) =>
          typeof a === 'string'
            ? Buffer.compare(Buffer.from(a as string), Buffer.from(b as string))
            : (a as number) < (b as number)
              ? -1
              : (a as number) > (b as number)
                ? 1
                : 0,
        );
        const st = g.stats[n]!;
        assert.ok(st, `stats for ${n}`);
        assert.equal(st.nullCount, rows.length - vals.length, `${n} null count`);
        assert.deepEqual([st.min, st.max], [sorted[0], sorted.at(-1)], `${n} min/max in row group ${g.index}`);
      }
      assert.equal(g.stats.li, undefined, 'nested columns have no stats');
    }
  });

  it('streams: the first batches arrive before a later (corrupt) row group is decoded', async () => {
    const path = join(dir, 'corrupt-last.parquet');
    const bytes = fs.readFileSync(allFile());
    const md = parquetMetadata(bytes);
    const last = md.row_groups.at(-1)!;
    const bad = Buffer.from(bytes);
    for (const c of last.columns) {
      const m = c.meta_data!;
      const start = Number(m.dictionary_page_offset ?? m.data_page_offset);
      for (let i = start; i < start + Number(m.total_compressed_size); i++) bad[i] = (i * 131 + 7) & 255;
    }
    fs.writeFileSync(path, bad);
    const it = readParquetBatches(path, { columns: ['i32', 's'], batchSize: 1000 });
    const before = readStats.rowGroupsRead;
    const first = await it.next();
    assert.equal(first.value?.numRows, 64);
    assert.equal(readStats.rowGroupsRead - before, 1, 'only the first row group was decoded');
    let rows = 64;
    await assert.rejects(
      async () => {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          rows += r.value.numRows;
        }
      },
      (e: Error) => e.message.includes(path) && e.message.includes('row group 4'),
    );
    assert.equal(rows, 256, 'every intact row group was delivered');
    // The process survived and a later read works (parquet-wasm is re-instantiated after a trap).
    assert.equal((await readAll(allFile(), { columns: ['i8'] })).rows.length, N);

    // A reader in the middle of a row group when another file traps the shared instance carries on.
    const groupsBefore = readStats.rowGroupsRead;
    const a = readParquetBatches(allFile(), { columns: ['i32'], batchSize: 20 });
    const got: unknown[] = [];
    const take = (b: arrow.RecordBatch): void => {
      got.push(...batchRows(b, SCHEMA.select(['i32'])).map((r) => r.i32));
    };
    take((await a.next()).value as arrow.RecordBatch);
    await assert.rejects(readAll(path), /row group 4/);
    for await (const b of a) take(b);
    assert.deepEqual(
      got,
      expectedRows(0, N).map((r) => r.i32),
    );
    assert.equal(readStats.rowGroupsRead - groupsBefore, 5 + 4 + 1, 'the interrupted row group was decoded again');
  });

  it('zero batches still write a valid empty file with the schema', async () => {
    const path = join(dir, 'empty.parquet');
    const r = await writeParquetFile(path, [], { schema: SCHEMA });
    assert.equal(r.rows, 0);
    const info = inspectParquet(path);
    assert.ok(info.schema.equals(SCHEMA));
    assert.equal(info.numRows, 0);
    assert.equal((await readAll(path)).rows.length, 0);
    await assert.rejects(writeParquetFile(join(dir, 'noschema.parquet'), []), /no batches and no schema/);
  });

  it('rejects batches that do not fit the schema, leaving no file', async () => {
    const path = join(dir, 'mismatch.parquet');
    const s = new Schema([new Field('a', DataType.int32())]);
    const wrong = makeBatch(new Schema([new Field('a', DataType.int64())]), [{ a: 1n }]);
    await assert.rejects(writeParquetFile(path, [wrong], { schema: s }), /column 'a'.*Int64.*expected Int32/);
    assert.equal(fs.existsSync(path), false);
    async function* failing(): AsyncGenerator<arrow.RecordBatch> {
      yield makeBatch(s, [{ a: 1 }]);
      throw new Error('upstream failed');
    }
    await assert.rejects(writeParquetFile(path, failing(), { schema: s }), /upstream failed/);
    assert.equal(fs.existsSync(path), false);
  });

  it('reads dictionary-encoded and large-offset columns as plain utf8', async () => {
    const pw = await import('parquet-wasm');
    const dict = arrow.vectorFromArray(['a', 'b', null, 'a', 'ccc'], new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32()));
    const large = arrow.vectorFromArray(['x', null, 'yy', 'é', ''], new arrow.LargeUtf8());
    const t = new arrow.Table({ dict, large });
    const path = join(dir, 'dict.parquet');
    fs.writeFileSync(path, pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(t, 'stream'))));
    const info = inspectParquet(path);
    assert.equal(String(info.schema.field('dict').type), 'utf8');
    assert.equal(String(info.schema.field('large').type), 'utf8');
    const { rows, batches } = await readAll(path);
    assertConforms(batches[0]!, info.schema);
    assert.deepEqual(
      rows.map((r) => r.dict),
      ['a', 'b', null, 'a', 'ccc'],
    );
    assert.deepEqual(
      rows.map((r) => r.large),
      ['x', null, 'yy', 'é', ''],
    );
  });

  it('casts to a wider schema type when one is given (dataset schema unification)', async () => {
    const wide = new Schema([new Field('i32', DataType.int64()), new Field('f32', DataType.float64())]);
    const { rows, batches } = await readAll(allFile(), { columns: ['i32', 'f32'], schema: wide, rowGroups: [0] });
    assertConforms(batches[0]!, wide);
    assert.equal(rows[0]!.i32, BigInt(value('i32', 0) as number));
    assert.equal(rows[1]!.f32, value('f32', 1));
  });
});

describe('parquet errors name the file', () => {
  it('missing file, bad magic, truncated file, corrupt footer', () => {
    const missing = join(dir, 'nope.parquet');
    assert.throws(
      () => inspectParquet(missing),
      (e: Error) => e.message.includes(missing) && /not found/.test(e.message),
    );

    const notParquet = join(dir, 'text.parquet');
    fs.writeFileSync(notParquet, 'id,name\n1,hello\n2,world\n');
    assert.throws(
      () => inspectParquet(notParquet),
      (e: Error) => e.message.includes(notParquet) && /not a Parquet file/.test(e.message),
    );

    const bytes = fs.readFileSync(allFile());
    const half = join(dir, 'half.parquet');
    fs.writeFileSync(half, bytes.subarray(0, bytes.length >> 1));
    assert.throws(
      () => inspectParquet(half),
      (e: Error) => e.message.includes(half) && /truncated/.test(e.message),
    );

    const footer = join(dir, 'footer.parquet');
    const bad = Buffer.from(bytes);
    const len = bad.readUInt32LE(bad.length - 8);
    for (let i = bad.length - 8 - len; i < bad.length - 8; i++) bad[i] = (i * 7) & 255;
    fs.writeFileSync(footer, bad);
    assert.throws(
      () => inspectParquet(footer),
      (e: Error) => e.message.includes(footer) && /corrupt Parquet footer/.test(e.message),
    );

    const huge = join(dir, 'hugefooter.parquet');
    const h = Buffer.from(bytes);
    h.writeUInt32LE(0x7fffffff, h.length - 8);
    fs.writeFileSync(huge, h);
    assert.throws(
      () => inspectParquet(huge),
      (e: Error) => e.message.includes(huge) && /corrupt Parquet footer/.test(e.message),
    );
  });

  it('a missing column is a ColumnNotFoundError mentioning the file', async () => {
    await assert.rejects(
      readAll(allFile(), { columns: ['i8', 'nope'] }),
      (e: Error) => e instanceof ColumnNotFoundError && e.message.includes('nope') && e.message.includes(allFile()),
    );
  });
});

describe('DuckDB cross-check', () => {
  it("DuckDB reads our file with identical values, and we read DuckDB's file with identical values", async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    try {
      // 1. Ours -> DuckDB.
      const cols = ['i8', 'i16', 'i32', 'i64', 'u8', 'u16', 'u32', 'u64', 'f64', 'b', 's', 'bin', 'd', 'ts_ms', 'ts_us', 'li', 'ls', 'st'];
      const res = await con.runAndReadAll(`SELECT ${cols.map((c) => `"${c}"`).join(', ')},
          epoch_ms(ts_ms)::BIGINT AS ts_ms_raw, epoch_us(ts_us)::BIGINT AS ts_us_raw, (d - DATE '1970-01-01')::INTEGER AS d_raw
        FROM read_parquet('${allFile()}')`);
      const got = res.getRowObjectsJS();
      const want = expectedRows(0, N);
      assert.equal(got.length, N);
      for (let i = 0; i < N; i++) {
        const g = got[i]!;
        const w = want[i]!;
        for (const c of ['i8', 'i16', 'i32', 'u8', 'u16', 'u32', 'b', 's', 'li', 'ls']) assert.deepEqual(g[c], w[c], `duckdb row ${i} ${c}`);
        for (const c of ['i64', 'u64']) assert.equal(g[c], w[c], `duckdb row ${i} ${c}`);
        if (Number.isNaN(w.f64)) assert.ok(Number.isNaN(g.f64 as number));
        else assert.equal(g.f64, w.f64);
        assert.deepEqual(g.bin === null ? null : Uint8Array.from(g.bin as Uint8Array), w.bin);
        assert.equal(g.d_raw, w.d);
        assert.equal(g.ts_ms_raw, w.ts_ms);
        assert.equal(g.ts_us_raw, w.ts_us);
        assert.deepEqual(g.st, w.st);
      }

      // 2. DuckDB -> ours (no ARROW:schema hint: the Parquet logical types drive the mapping).
      const duckFile = join(dir, 'duck.parquet');
      await con.run(`COPY (SELECT i::INTEGER AS i, i::BIGINT * 1000000007 AS b, (i % 256)::UTINYINT AS ut, (i / 4)::DECIMAL(10,2) AS dec,
          CASE WHEN i % 5 = 0 THEN NULL ELSE 'v' || i END AS s, DATE '2020-01-01' + i::INTEGER AS d,
          TIMESTAMP '2020-01-01' + to_microseconds(i * 1000003) AS ts, TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds(i) AS tstz,
          [i, i + 1] AS li, {'x': i, 'y': 'a' || i} AS st, MAP {'k': i} AS m
        FROM range(2000) t(i)) TO '${duckFile}' (FORMAT parquet)`);
      const info = inspectParquet(duckFile);
      assert.equal(
        info.schema.toString(),
        new Schema([
          new Field('i', DataType.int32()),
          new Field('b', DataType.int64()),
          new Field('ut', DataType.uint8()),
          new Field('dec', DataType.float64()),
          new Field('s', DataType.utf8()),
          new Field('d', DataType.date()),
          new Field('ts', DataType.timestamp('us')),
          new Field('tstz', DataType.timestamp('us', 'UTC')),
          new Field('li', DataType.list(DataType.int64())),
          new Field('st', DataType.struct({ x: DataType.int64(), y: DataType.utf8() })),
          new Field(
            'm',
            DataType.list(
              new DataType({
                kind: 'struct',
                fields: [
                  { name: 'key', type: { kind: 'utf8' }, nullable: false },
                  { name: 'value', type: { kind: 'int64' }, nullable: true },
                ],
              }),
            ),
          ),
        ]).toString(),
      );
      assert.equal(info.numRows, 2000);
      const ours = (await readAll(duckFile)).rows;
      const ref = (
        await con.runAndReadAll(`SELECT i, b, ut, dec::DOUBLE AS dec, s, (d - DATE '1970-01-01')::INTEGER AS d,
          epoch_us(ts)::BIGINT AS ts, epoch_us(tstz)::BIGINT AS tstz, li, st FROM read_parquet('${duckFile}')`)
      ).getRowObjectsJS();
      assert.equal(ours.length, 2000);
      for (let i = 0; i < 2000; i++) {
        const o = ours[i]!;
        const r = ref[i]!;
        assert.deepEqual([o.i, o.b, o.ut, o.dec, o.s, o.d, o.ts, o.tstz], [r.i, r.b, r.ut, r.dec, r.s, r.d, r.ts, r.tstz], `row ${i}`);
        assert.deepEqual(o.li, r.li);
        assert.deepEqual(o.st, r.st);
        assert.deepEqual(o.m, [{ key: 'k', value: BigInt(i) }]);
      }
      const g0 = info.rowGroups[0]!.stats;
      assert.deepEqual([g0.b!.min, g0.b!.max, g0.d!.min, g0.d!.max, g0.s!.min, g0.s!.nullCount], [0n, 1999n * 1000000007n, 18262, 18262 + 1999, 'v1', 400]);
    } finally {
      con.closeSync();
      db.closeSync();
    }
  });
});

describe('nesting depth (issue 8)', () => {
  function nested(kind: 'list' | 'struct', levels: number): arrow.Table {
    let t: arrow.DataType = new arrow.Float64();
    let v: unknown = 1.5;
    for (let i = 0; i < levels; i++) {
      t = kind === 'list' ? new arrow.List(new arrow.Field('item', t, true)) : new arrow.Struct([new arrow.Field('s', t, true)]);
      v = kind === 'list' ? [v] : { s: v };
    }
    return new arrow.Table({ id: arrow.makeVector(Int32Array.of(1, 2)), deep: arrow.vectorFromArray([v, null], t) });
  }
  function leafOf(v: unknown, kind: 'list' | 'struct'): { levels: number; leaf: unknown } {
    let levels = 0;
    let x = v as { get(i: number): unknown; s?: unknown } | null;
    while (x !== null && typeof x === 'object') {
      levels++;
      x = (kind === 'struct' ? x.s : Array.isArray(x) ? x[0] : x.get(0)) as typeof x;
    }
    return { levels, leaf: x };
  }
  const tooDeep = (levels: number) => (e: Error) =>
    e instanceof RangeError &&
    e.message.includes("column 'deep'") &&
    e.message.includes(`nests ${levels} levels deep`) &&
    e.message.includes('at most 61 fields') &&
    e.message.includes('60 nested lists or structs');

  for (const kind of ['list', 'struct'] as const) {
    it(`${kind}: 60 levels write and read back; 61 and 64 fail before writing, naming the column, its depth and the limit`, async () => {
      const ok = join(dir, `deep-${kind}-60.parquet`);
      assert.deepEqual(await writeParquetFile(ok, nested(kind, 60).batches), { rows: 2, bytes: fs.statSync(ok).size });
      const back: arrow.RecordBatch[] = [];
      for await (const b of readParquetBatches(ok)) back.push(b);
      assert.deepEqual(leafOf(back[0]!.getChild('deep')!.get(0), kind), { levels: 60, leaf: 1.5 });
      for (const levels of [61, 64]) {
        const bad = join(dir, `deep-${kind}-${levels}.parquet`);
        await assert.rejects(writeParquetFile(bad, nested(kind, levels).batches), tooDeep(levels));
        assert.ok(!fs.existsSync(bad));
      }
    });
  }

  it('DataFrame.writeParquet fails before running anything; reading a 64-deep file (written by DuckDB) has no limit', async () => {
    const { fromArrow, readParquet } = await import('fanout');
    const out = join(dir, 'deep-df');
    await assert.rejects(fromArrow(nested('list', 64)).writeParquet(out), tooDeep(64));
    assert.ok(!fs.existsSync(out), 'nothing was created');
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const p = join(dir, 'duckdb-deep-64.parquet');
    try {
      let e = '1.5::DOUBLE';
      for (let i = 0; i < 64; i++) e = `[${e}]`;
      await con.run(`COPY (SELECT 1 AS id, ${e} AS deep) TO '${p}' (FORMAT parquet)`);
    } finally {
      con.closeSync();
      db.closeSync();
    }
    const rows = await readParquet(p).toRows();
    assert.equal(rows.length, 1);
    assert.deepEqual(leafOf(rows[0]!['deep'], 'list'), { levels: 64, leaf: 1.5 });
    // Writing it back is the case that used to fail with "Dyn casting error".
    await assert.rejects(readParquet(p).writeParquet(join(dir, 'deep-back')), tooDeep(64));
  });
});

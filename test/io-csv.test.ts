// CSV I/O: inference, parsing (quoting, newlines, chunk boundaries), errors with file/line/column,
// projection, and write -> read round trips. Fixtures are generated into a temp dir.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { parse as parseSync } from 'csv-parse/sync';
import { ColumnNotFoundError, DataType, Field, Schema, type DataTypeJSON } from '../src/datatypes.ts';
import { inspectCsv, readCsvBatches, writeCsvFile, type CsvOptions } from '../src/io/csv/index.ts';
import { col, readCsv } from 'fanout';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(join(tmpdir(), 'fanout-io-csv-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(text: string | Buffer, ext = 'csv'): string {
  const p = join(dir, `f${n++}.${ext}`);
  fs.writeFileSync(p, text);
  return p;
}

type Row = Record<string, unknown>;

function cell(d: arrow.Data, i: number, t: DataTypeJSON): unknown {
  const j = d.offset + i;
  if (t.kind === 'null') return null;
  if (d.nullCount > 0 && d.nullBitmap && d.nullBitmap.length && !((d.nullBitmap[j >> 3]! >> (j & 7)) & 1)) return null;
  switch (t.kind) {
    case 'bool':
      return ((d.values[j >> 3] >> (j & 7)) & 1) === 1;
    case 'utf8':
      return new TextDecoder().decode(d.values.subarray(d.valueOffsets[j], d.valueOffsets[j + 1]));
    case 'binary':
      return Uint8Array.from(d.values.subarray(d.valueOffsets[j], d.valueOffsets[j + 1]));
    default:
      return d.values[j];
  }
}

async function readRows(path: string, opts: CsvOptions = {}): Promise<{ rows: Row[]; batches: arrow.RecordBatch[]; schema: Schema }> {
  const batches: arrow.RecordBatch[] = [];
  for await (const b of readCsvBatches(path, opts)) batches.push(b);
  const full = opts.schema ?? inspectCsv(path, opts).schema;
  const schema = full.select(opts.columns ?? full.names);
  for (const b of batches) {
    assert.deepEqual(
      b.schema.fields.map((f) => [f.name, String(f.type)]),
      schema.toArrow().fields.map((f) => [f.name, String(f.type)]),
    );
  }
  const rows = batches.flatMap((b) =>
    Array.from({ length: b.numRows }, (_, i) => Object.fromEntries(schema.fields.map((f, k) => [f.name, cell(b.data.children[k]!, i, f.type.json)]))),
  );
  return { rows, batches, schema };
}

const days = (s: string): number => Date.parse(`${s}T00:00:00Z`) / 86400000;

describe('CSV inference', () => {
  it('infers bool, int64, float64, date, timestamp (naive, UTC, ns) and utf8; empty -> null', () => {
    const p = file(
      [
        'b,i,f,mixed,d,ts,tz,ns,s,empty,huge',
        'true,1,1.5,1,2020-01-01,2020-01-01 10:00:00,2020-01-01T10:00:00Z,2020-01-01T00:00:00.123456789,a,,1',
        'FALSE,-2,,2.5,2021-12-31,2020-01-01T10:00:00.5,2020-01-01T12:00:00+02:00,2020-01-01,b,,99999999999999999999',
        ',3,1e-3,3,,2020-01-01,,,,,',
      ].join('\n'),
    );
    const s = inspectCsv(p).schema;
    assert.deepEqual(
      s.fields.map((f) => `${f.name}:${f.type}`),
      [
        'b:bool',
        'i:int64',
        'f:float64',
        'mixed:float64',
        'd:date',
        'ts:timestamp[us]',
        'tz:timestamp[us, UTC]',
        'ns:timestamp[ns]',
        's:utf8',
        'empty:utf8',
        'huge:float64',
      ],
    );
    assert.equal(inspectCsv(p).sizeBytes, fs.statSync(p).size);
  });

  it('only looks at the first inferRows records', async () => {
    const p = file(`a\n${Array.from({ length: 20 }, (_, i) => i).join('\n')}\nnot-a-number\n`);
    assert.equal(String(inspectCsv(p).schema.field('a').type), 'utf8');
    assert.equal(String(inspectCsv(p, { inferRows: 5 }).schema.field('a').type), 'int64');
    await assert.rejects(
      readRows(p, { inferRows: 5 }),
      (e: Error) => e.message.includes(`${p}:22`) && e.message.includes("column 'a'") && e.message.includes('"not-a-number"') && e.message.includes('int64'),
    );
  });

  it('header: false names columns column_1..n; duplicate and empty header names are made unique', async () => {
    const p = file('1,x\n2,y\n');
    const { rows, schema } = await readRows(p, { header: false });
    assert.deepEqual(schema.names, ['column_1', 'column_2']);
    assert.deepEqual(rows, [
      { column_1: 1n, column_2: 'x' },
      { column_1: 2n, column_2: 'y' },
    ]);
    assert.deepEqual(inspectCsv(file('a,a,,b\n1,2,3,4\n')).schema.names, ['a', 'a_1', 'column_3', 'b']);
  });
});

describe('CSV parsing', () => {
  it('handles quotes, doubled quotes, delimiters and newlines in fields, CRLF, BOM, blank lines, no final newline', async () => {
    const p = file(
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('id,text,n\r\n1,"a, ""quoted"" word",10\r\n\r\n2,"two\nlines",\r\n3,"",30\n4,plain é€😀,40\n5,,50'),
      ]),
    );
    const { rows } = await readRows(p);
    assert.deepEqual(rows, [
      { id: 1n, text: 'a, "quoted" word', n: 10n },
      { id: 2n, text: 'two\nlines', n: null },
      { id: 3n, text: '', n: 30n },
      { id: 4n, text: 'plain é€😀', n: 40n },
      { id: 5n, text: null, n: 50n },
    ]);
  });

  it('nullValues, other delimiters, and quoting that protects strings from null', async () => {
    const p = file('a;b;c\nNA;"NA";1.5\nx;;NA\n', 'tsv');
    const { rows, schema } = await readRows(p, { delimiter: ';', nullValues: ['NA', ''] });
    assert.deepEqual(
      schema.fields.map((f) => String(f.type)),
      ['utf8', 'utf8', 'float64'],
    );
    assert.deepEqual(rows, [
      { a: null, b: 'NA', c: 1.5 },
      { a: 'x', b: null, c: null },
    ]);
    const t = file('a\tb\n1\t2\n');
    assert.deepEqual((await readRows(t, { delimiter: '\t' })).rows, [{ a: 1n, b: 2n }]);
    assert.deepEqual((await readRows(file('a\tb\n1\t2\n', 'tsv'))).rows, [{ a: 1n, b: 2n }], 'tab by default for .tsv');
  });

  it('a given schema sets names and types; values out of range are errors naming file, line and column', async () => {
    const schema = new Schema([
      new Field('u', DataType.uint8()),
      new Field('f', DataType.float32()),
      new Field('d', DataType.date()),
      new Field('t', DataType.timestamp('ms', 'UTC')),
      new Field('flag', DataType.bool()),
      new Field('raw', DataType.binary()),
    ]);
    const p = file('w,x,y,z,q,r\n255,0.5,2024-02-29,2020-01-01T00:00:01.5Z,1,YWI=\n0,-1e3,1970-01-01,1969-12-31 23:59:59.999,false,\n');
    const { rows } = await readRows(p, { schema });
    assert.deepEqual(rows, [
      { u: 255, f: 0.5, d: days('2024-02-29'), t: 1577836801500n, flag: true, raw: Uint8Array.from([97, 98]) },
      { u: 0, f: -1000, d: 0, t: -1n, flag: false, raw: null },
    ]);
    const bad = file('w,x,y,z,q,r\n1,1,2020-01-01,2020-01-01,true,x\n256,1,2020-01-01,2020-01-01,true,x\n');
    await assert.rejects(
      readRows(bad, { schema }),
      (e: Error) => e.message.includes(`${bad}:3`) && e.message.includes("column 'u'") && e.message.includes('uint8'),
    );
    const badDate = file('w,x,y,z,q,r\n1,1,2023-02-29,2020-01-01,true,x\n');
    await assert.rejects(readRows(badDate, { schema }), (e: Error) => e.message.includes(`${badDate}:2`) && e.message.includes("column 'd'"));
  });

  it('a schema naming a subset of the header columns maps them by name', async () => {
    const p = file('a,b,c\n1,x,2.5\n');
    const schema = new Schema([new Field('c', DataType.float64()), new Field('a', DataType.int32())]);
    assert.deepEqual((await readRows(p, { schema })).rows, [{ c: 2.5, a: 1 }]);
  });

  it('with a header, a schema in another order maps columns by name, not position (issue 8)', async () => {
    const p = file('amount,id\n2.5,1\n7.25,2\n');
    const schema = new Schema([new Field('id', DataType.int64()), new Field('amount', DataType.float64())]);
    assert.deepEqual((await readRows(p, { schema })).rows, [
      { id: 1n, amount: 2.5 },
      { id: 2n, amount: 7.25 },
    ]);
    // Through the DataFrame API, with a plain-object schema, a projection and a filter.
    assert.deepEqual(await readCsv(p, { schema: { id: DataType.int64(), amount: DataType.float64() } }).toRows(), [
      { id: 1n, amount: 2.5 },
      { id: 2n, amount: 7.25 },
    ]);
    assert.deepEqual(
      await readCsv(p, { schema: { id: DataType.int64(), amount: DataType.float64() } })
        .where(col('id').eq(2n))
        .select('amount')
        .toRows(),
      [{ amount: 7.25 }],
    );
    // Header columns the schema does not name are not read.
    const wide = file('note,amount,id\nhello,2.5,1\n');
    assert.deepEqual(await readCsv(wide, { schema: { id: DataType.int64(), amount: DataType.float64() } }).toRows(), [{ id: 1n, amount: 2.5 }]);
  });

  it('a schema field missing from the header is an error naming the column and the file', async () => {
    const p = file('amount,ident\n2.5,1\n');
    await assert.rejects(
      readRows(p, { schema: new Schema([new Field('id', DataType.int64()), new Field('amount', DataType.float64())]) }),
      (e: Error) => e instanceof ColumnNotFoundError && e.message.includes("column 'id'") && e.message.includes(p) && e.message.includes("'ident'"),
    );
    await assert.rejects(
      readCsv(p, { schema: { id: DataType.int64(), amount: DataType.float64(), qty: DataType.int32() } }).toRows(),
      (e: Error) => e.message.includes("column 'id'") && e.message.includes("also missing: 'qty'") && e.message.includes(p),
    );
    // Without a header, columns map by position.
    const bare = file('2.5,1\n');
    assert.deepEqual(await readCsv(bare, { header: false, schema: { amount: DataType.float64(), id: DataType.int64() } }).toRows(), [{ amount: 2.5, id: 1n }]);
  });

  it('the schema option is a Schema or { name: DataType }; anything else says what is expected', async () => {
    const p = file('id,amount\n1,2.5\n');
    const expected = /option 'schema' must be a Schema or an object mapping column names to DataTypes/;
    assert.throws(() => readCsv(p, { schema: ['id', 'amount'] as unknown as Schema }), expected);
    assert.throws(() => readCsv(p, { schema: 'id int64' as unknown as Schema }), expected);
    assert.throws(
      () => readCsv(p, { schema: { id: 'int64' } as unknown as Schema }),
      (e: Error) => expected.test(e.message) && e.message.includes('column \'id\' is string "int64", not a DataType'),
    );
    assert.throws(() => readCsv(p, { schema: new Map() as unknown as Schema }), /got an instance of Map/);
    // The lower-level reader takes the same forms.
    assert.deepEqual(inspectCsv(p, { schema: { amount: DataType.float32(), id: DataType.int32() } as unknown as Schema }).schema.names, ['amount', 'id']);
    const batches: arrow.RecordBatch[] = [];
    for await (const b of readCsvBatches(p, { schema: { amount: DataType.float32(), id: DataType.int32() } as unknown as Schema })) batches.push(b);
    assert.deepEqual([batches[0]!.getChild('amount')!.get(0), batches[0]!.getChild('id')!.get(0)], [2.5, 1]);
  });

  it('syntax errors name the file and line', async () => {
    const ragged = file('a,b\n1,2\n3\n');
    await assert.rejects(readRows(ragged), (e: Error) => e.message.includes(`${ragged}:3`) && /expected 2 fields, found 1/.test(e.message));
    const open = file('a,b\n1,"never closed\n2,3\n');
    await assert.rejects(readRows(open), (e: Error) => e.message.includes(open) && /unterminated quoted field starting at line 2/.test(e.message));
    const junk = file('a,b\n1,"x"y\n');
    await assert.rejects(readRows(junk), (e: Error) => e.message.includes(junk) && /after closing quote at line 2/.test(e.message));
    assert.throws(() => inspectCsv(join(dir, 'missing.csv')), /CSV file not found: .*missing\.csv/);
    assert.throws(() => inspectCsv(file('')), /empty CSV file/);
  });

  it('projection returns the requested columns in order; missing columns name the file', async () => {
    const p = file('a,b,c\n1,x,true\n2,y,false\n');
    const { rows } = await readRows(p, { columns: ['c', 'a'] });
    assert.deepEqual(rows, [
      { c: true, a: 1n },
      { c: false, a: 2n },
    ]);
    const counts = await readRows(p, { columns: [] });
    assert.equal(
      counts.batches.reduce((k, b) => k + b.numRows, 0),
      2,
    );
    await assert.rejects(readRows(p, { columns: ['zz'] }), (e: Error) => e instanceof ColumnNotFoundError && e.message.includes(p));
  });

  it('matches csv-parse on a multi-megabyte file with records spanning read chunks', async () => {
    const lines = ['id,name,score,note'];
    for (let i = 0; i < 60000; i++) {
      const note = i % 97 === 0 ? `"multi\nline ""${i}"", with, commas"` : i % 13 === 0 ? '' : `note ${i} ${'z'.repeat(i % 40)}`;
      lines.push(`${i},"name ${i}",${(i * 0.37 - 1000).toFixed(i % 5)},${note}`);
    }
    const p = file(`${lines.join('\r\n')}\r\n`);
    assert.ok(fs.statSync(p).size > 3 * (1 << 20));
    const { rows, batches } = await readRows(p, { batchSize: 7000 });
    assert.ok(batches.every((b) => b.numRows <= 7000));
    const ref = parseSync(fs.readFileSync(p), { columns: true }) as Record<string, string>[];
    assert.equal(rows.length, ref.length);
    for (let i = 0; i < ref.length; i++) {
      const r = ref[i]!;
      const g = rows[i]!;
      assert.equal(g.id, BigInt(r.id!));
      assert.equal(g.name, r.name);
      assert.equal(g.score, Number(r.score));
      assert.equal(g.note, r.note === '' ? null : r.note);
    }
  });
});

describe('CSV writing', () => {
  it('round-trips values, quoting as needed; nulls are empty and empty strings are ""', async () => {
    const schema = new Schema([
      new Field('i', DataType.int32()),
      new Field('big', DataType.int64()),
      new Field('u', DataType.uint64()),
      new Field('f', DataType.float64()),
      new Field('b', DataType.bool()),
      new Field('s', DataType.utf8()),
      new Field('d', DataType.date()),
      new Field('ts', DataType.timestamp('us')),
      new Field('tz', DataType.timestamp('ns', 'UTC')),
      new Field('l', DataType.list(DataType.int64())),
      new Field('st', DataType.struct({ x: DataType.float64(), y: DataType.utf8() })),
    ]);
    const t = arrow.tableFromArrays({
      i: Int32Array.from([1, -2, 3]),
      big: BigInt64Array.from([9007199254740993n, -1n, 0n]),
      u: BigUint64Array.from([18446744073709551615n, 0n, 1n]),
      f: Float64Array.from([0.1, -1e300, NaN]),
    });
    const s = arrow.vectorFromArray(['a,b', 'say "hi"\nthere', ''], new arrow.Utf8());
    const sNull = s.data[0]!.clone(s.type, 0, 3, 1, [s.data[0]!.valueOffsets, s.data[0]!.values, Uint8Array.from([0b011])] as never);
    const as = schema.toArrow();
    const mk = (f: number, v: arrow.Data): arrow.Data => v.clone(as.fields[f]!.type);
    const children = [
      mk(0, t.getChild('i')!.data[0]!),
      mk(1, t.getChild('big')!.data[0]!),
      mk(2, t.getChild('u')!.data[0]!),
      mk(3, t.getChild('f')!.data[0]!),
      mk(4, arrow.vectorFromArray([true, null, false], new arrow.Bool()).data[0]!),
      mk(5, sNull),
      new arrow.Data(as.fields[6]!.type, 0, 3, 0, [undefined, Int32Array.from([0, -1, 19000]), new Uint8Array(0)] as never),
      new arrow.Data(as.fields[7]!.type, 0, 3, 0, [undefined, BigInt64Array.from([0n, 1577836800123456n, -1n]), new Uint8Array(0)] as never),
      new arrow.Data(as.fields[8]!.type, 0, 3, 1, [undefined, BigInt64Array.from([1n, 0n, 1600000000123456789n]), Uint8Array.from([0b101])] as never),
      mk(9, arrow.vectorFromArray([[1n, 2n], [], null], as.fields[9]!.type as never).data[0]!),
      mk(10, arrow.vectorFromArray([{ x: 1.5, y: 'q"' }, null, { x: null, y: null }], as.fields[10]!.type as never).data[0]!),
    ];
    const batch = new arrow.RecordBatch(as, new arrow.Data(new arrow.Struct(as.fields), 0, 3, 0, undefined, children) as arrow.Data<arrow.Struct>);
    const p = join(dir, 'out.csv');
    const r = await writeCsvFile(p, [batch], { schema });
    assert.equal(r.rows, 3);
    const text = fs.readFileSync(p, 'utf8');
    assert.equal(r.bytes, Buffer.byteLength(text));
    assert.equal(
      text,
      [
        'i,big,u,f,b,s,d,ts,tz,l,st',
        '1,9007199254740993,18446744073709551615,0.1,true,"a,b",1970-01-01,1970-01-01T00:00:00.000000,1970-01-01T00:00:00.000000001Z,"[1,2]","{""x"":1.5,""y"":""q\\""""}"',
        '-2,-1,0,-1e+300,,"say ""hi""\nthere",1969-12-31,2020-01-01T00:00:00.123456,,[],',
        '3,0,1,NaN,false,,2022-01-08,1969-12-31T23:59:59.999999,2020-09-13T12:26:40.123456789Z,,"{""x"":null,""y"":null}"',
        '',
      ].join('\n'),
    );
    // Read back what CSV can carry as typed columns.
    const backSchema = new Schema([...schema.fields.slice(0, 9), new Field('l', DataType.utf8()), new Field('st', DataType.utf8())]);
    const back = await readRows(p, { schema: backSchema });
    assert.deepEqual(
      back.rows.map((x) => [x.i, x.big, x.u, x.b, x.s, x.d, x.ts, x.tz, x.l]),
      [
        [1, 9007199254740993n, 18446744073709551615n, true, 'a,b', 0, 0n, 1n, '[1,2]'],
        [-2, -1n, 0n, null, 'say "hi"\nthere', -1, 1577836800123456n, null, '[]'],
        [3, 0n, 1n, false, null, 19000, -1n, 1600000000123456789n, null],
      ],
    );
    assert.deepEqual(
      back.rows.map((x) => x.f),
      [0.1, -1e300, NaN],
    );
  });

  it('writes a header only for zero batches with a schema; DuckDB reads our CSV identically', async () => {
    const schema = new Schema([new Field('a', DataType.int64()), new Field('b', DataType.utf8())]);
    const p = join(dir, 'empty.csv');
    assert.deepEqual(await writeCsvFile(p, [], { schema }), { rows: 0, bytes: 4 });
    assert.equal(fs.readFileSync(p, 'utf8'), 'a,b\n');

    const rows = Array.from({ length: 500 }, (_, i) => ({ a: BigInt(i * 1000003), b: i % 9 === 0 ? null : `v,"${i}"\n${'é'.repeat(i % 3)}` }));
    const as = schema.toArrow();
    const batch = new arrow.RecordBatch(
      as,
      new arrow.Data(new arrow.Struct(as.fields), 0, rows.length, 0, undefined, [
        arrow.vectorFromArray(
          rows.map((r) => r.a),
          new arrow.Int64(),
        ).data[0]!,
        arrow.vectorFromArray(
          rows.map((r) => r.b),
          new arrow.Utf8(),
        ).data[0]!,
      ]) as arrow.Data<arrow.Struct>,
    );
    const q = join(dir, 'duck.csv');
    await writeCsvFile(q, [batch, batch], { schema });
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    try {
      const got = (await con.runAndReadAll(`SELECT a, b FROM read_csv('${q}', header = true, columns = {'a': 'BIGINT', 'b': 'VARCHAR'})`)).getRowObjectsJS();
      assert.equal(got.length, 1000);
      got.forEach((g, i) => {
        assert.deepEqual({ a: g.a, b: g.b }, rows[i % 500]);
      });
    } finally {
      con.closeSync();
      db.closeSync();
    }
    const ours = await readRows(q);
    assert.deepEqual(ours.rows.slice(0, 500), rows);
  });

  it('sliced batches write like their rows; binary round-trips; floats near 2^53 parse exactly', async () => {
    const { fromRecords } = await import('fanout');
    const rows = [0, 1, 2, 3, 4, 5].map((i) => ({
      i,
      s: i === 3 ? null : `s${i}`,
      b: i % 2 === 0,
      st: { a: i },
      l: [i, i + 1],
      bin: new Uint8Array([i, 255]),
    }));
    const t = await fromRecords(rows).toArrow();
    const dir = fs.mkdtempSync(join(tmpdir(), 'csv-slice-'));
    await writeCsvFile(join(dir, 'sliced.csv'), [t.batches[0]!.slice(2, 5)]);
    await writeCsvFile(join(dir, 'plain.csv'), (await fromRecords(rows.slice(2, 5)).toArrow()).batches);
    assert.equal(fs.readFileSync(join(dir, 'sliced.csv'), 'utf8'), fs.readFileSync(join(dir, 'plain.csv'), 'utf8'));
    const bin = await fromRecords([{ bin: new Uint8Array([1, 2, 255]) }]).toArrow();
    await writeCsvFile(join(dir, 'bin.csv'), bin.batches);
    const back: unknown[] = [];
    for await (const b of readCsvBatches(join(dir, 'bin.csv'), { schema: Schema.fromArrow(bin.schema) })) back.push(...b.getChild('bin')!.toArray());
    assert.deepEqual([...(back[0] as Uint8Array)], [1, 2, 255]);
    fs.writeFileSync(join(dir, 'f.csv'), 'x\n900719925474099.7\n');
    const xs: unknown[] = [];
    for await (const b of readCsvBatches(join(dir, 'f.csv'))) xs.push(...b.getChild('x')!.toArray());
    assert.equal(xs[0], Number('900719925474099.7'));
  });

  it('a one-column file keeps its null rows (written as blank lines)', async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), 'csv-one-'));
    const f = join(dir, 'one.csv');
    fs.writeFileSync(f, 's\na\n\nc\n');
    const got: unknown[] = [];
    for await (const b of readCsvBatches(f)) got.push(...b.getChild('s')!.toArray());
    assert.deepEqual(got, ['a', null, 'c']);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as arrow from 'apache-arrow';
import {
  batchToRows,
  columnsToBatch,
  dataToValues,
  inferSchemaFromRecords,
  recordsToBatch,
  valueAt,
  valuesToData,
  type JsValue,
} from '../src/convert/index.ts';
import { DataType, Field, Schema } from '../src/datatypes.ts';

const D = (iso: string): Date => new Date(iso);
const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

/** One column per type, nulls included, values exactly representable in their type. */
const allTypes = new Schema([
  new Field('b', DataType.bool()),
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
  new Field('s', DataType.utf8()),
  new Field('bin', DataType.binary()),
  new Field('d', DataType.date()),
  new Field('ts', DataType.timestamp('ms')),
  new Field('ts_s', DataType.timestamp('s', 'UTC')),
  new Field('ts_us', DataType.timestamp('us')),
  new Field('ts_ns', DataType.timestamp('ns')),
  new Field('l', DataType.list(DataType.int32())),
  new Field('fl', DataType.fixedSizeList(DataType.float32(), 2)),
  new Field('st', DataType.struct({ a: DataType.int64(), b: DataType.utf8() })),
  new Field('ls', DataType.list(DataType.struct({ k: DataType.utf8(), v: DataType.list(DataType.float64()) }))),
  new Field('n', DataType.null()),
]);

const allRows: Record<string, JsValue>[] = [
  {
    b: true,
    i8: -128,
    i16: -32768,
    i32: -2147483648,
    i64: -(2n ** 63n),
    u8: 255,
    u16: 65535,
    u32: 4294967295,
    u64: 2n ** 64n - 1n,
    f32: 1.5,
    f64: 0.1,
    s: 'hello',
    bin: bytes(0, 1, 255),
    d: D('2024-02-29'),
    ts: D('2024-01-02T03:04:05.678Z'),
    ts_s: D('2024-01-02T03:04:05Z'),
    ts_us: D('1969-12-31T23:59:59.999Z'),
    ts_ns: D('2262-04-11T23:47:16.854Z'),
    l: [1, 2, 3],
    fl: [0.5, -2],
    st: { a: 7n, b: 'x' },
    ls: [
      { k: 'p', v: [1.25] },
      { k: 'q', v: [] },
    ],
    n: null,
  },
  {
    b: null,
    i8: null,
    i16: null,
    i32: null,
    i64: null,
    u8: null,
    u16: null,
    u32: null,
    u64: null,
    f32: null,
    f64: null,
    s: null,
    bin: null,
    d: null,
    ts: null,
    ts_s: null,
    ts_us: null,
    ts_ns: null,
    l: null,
    fl: null,
    st: null,
    ls: null,
    n: null,
  },
  {
    b: false,
    i8: 127,
    i16: 32767,
    i32: 2147483647,
    i64: 2n ** 63n - 1n,
    u8: 0,
    u16: 0,
    u32: 0,
    u64: 0n,
    f32: -0.25,
    f64: Number.NaN,
    s: 'héllo wörld ✓ 🎉',
    bin: bytes(),
    d: D('1900-01-01'),
    ts: D('1960-06-15T12:00:00.001Z'),
    ts_s: D('1970-01-01T00:00:00Z'),
    ts_us: D('2024-05-05T05:05:05.005Z'),
    ts_ns: D('1677-09-21T00:12:43.146Z'),
    l: [],
    fl: [1, 2],
    st: { a: null, b: null },
    ls: [null, { k: null, v: null }, { k: 'r', v: [null, 2] }],
    n: null,
  },
  {
    b: true,
    i8: 0,
    i16: 1,
    i32: 2,
    i64: 3n,
    u8: 4,
    u16: 5,
    u32: 6,
    u64: 7n,
    f32: 8,
    f64: -Infinity,
    s: '',
    bin: bytes(104, 105),
    d: D('1970-01-01'),
    ts: D('1970-01-01T00:00:00Z'),
    ts_s: D('2000-01-01T00:00:00Z'),
    ts_us: D('2000-01-01T00:00:00Z'),
    ts_ns: D('2000-01-01T00:00:00Z'),
    l: [null, -1],
    fl: [3, 4],
    st: { a: -1n, b: '' },
    ls: [],
    n: null,
  },
];

/** Arrow's own (slow) reader, to check that our buffers mean what we think they mean. */
function arrowRead(batch: arrow.RecordBatch, name: string, i: number): unknown {
  const v: unknown = batch.getChild(name)!.get(i);
  return v;
}

describe('recordsToBatch / batchToRows', () => {
  it('round-trips every type, with nulls', () => {
    const batch = recordsToBatch(allRows, allTypes);
    assert.equal(batch.numRows, allRows.length);
    assert.deepEqual(Schema.fromArrow(batch.schema).toJSON(), allTypes.toJSON());
    assert.deepEqual(batchToRows(batch), allRows);
  });

  it('writes buffers that apache-arrow itself reads back the same', () => {
    const batch = recordsToBatch(allRows, allTypes);
    assert.equal(arrowRead(batch, 'i64', 0), -(2n ** 63n));
    assert.equal(arrowRead(batch, 'u64', 0), 2n ** 64n - 1n);
    assert.equal(arrowRead(batch, 'i8', 2), 127);
    assert.equal(arrowRead(batch, 'b', 2), false);
    assert.equal(arrowRead(batch, 'b', 1), null);
    assert.equal(arrowRead(batch, 's', 2), 'héllo wörld ✓ 🎉');
    assert.equal(arrowRead(batch, 's', 3), '');
    assert.equal(arrowRead(batch, 'd', 0), D('2024-02-29').getTime());
    assert.equal(arrowRead(batch, 'ts', 2), D('1960-06-15T12:00:00.001Z').getTime());
    assert.deepEqual([...(arrowRead(batch, 'l', 0) as arrow.Vector)], [1, 2, 3]);
    assert.deepEqual((arrowRead(batch, 'st', 0) as { toJSON(): unknown }).toJSON(), { a: 7n, b: 'x' });
    assert.equal(batch.getChild('s')!.nullCount, 1);
  });

  it('survives an IPC round trip (buffers are well formed)', () => {
    const batch = recordsToBatch(allRows, allTypes);
    const table = arrow.tableFromIPC(arrow.tableToIPC(new arrow.Table(batch)));
    assert.deepEqual(
      table.batches.flatMap((b) => batchToRows(b)),
      allRows,
    );
  });

  it('reads data built by apache-arrow (vectorFromArray, dictionaries)', () => {
    const table = arrow.tableFromArrays({
      f: Float64Array.from([1, 2.5]),
      s: ['a', 'b'],
    });
    assert.deepEqual(
      table.batches.flatMap((b) => batchToRows(b)),
      [
        { f: 1, s: 'a' },
        { f: 2.5, s: 'b' },
      ],
    );
    const dict = arrow.vectorFromArray(['x', null, 'y', 'x'], new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32()));
    assert.deepEqual(dataToValues(dict.data[0]!), ['x', null, 'y', 'x']);
    assert.deepEqual(dataToValues(dict.data[0]!.slice(1, 2)), [null, 'y']); // Data.slice(offset, length)
    assert.equal(valueAt(dict.data[0]!, 3), 'x');
    assert.deepEqual(dataToValues(dict.data[0]!, DataType.utf8()), ['x', null, 'y', 'x']);
    assert.throws(() => dataToValues(table.batches[0]!.getChild('f')!.data[0]!, DataType.utf8()), /Arrow type Float64 read as utf8/);
  });

  it('reads sliced batches and sliced data (offsets, bitmaps at odd bit positions)', () => {
    const rows = Array.from({ length: 37 }, (_, i) => allRows[i % allRows.length]!);
    const batch = recordsToBatch(rows, allTypes);
    for (const [start, len] of [
      [0, 37],
      [3, 11],
      [9, 1],
      [13, 24],
      [36, 1],
      [5, 0],
    ] as const) {
      const sliced = batch.slice(start, start + len);
      assert.deepEqual(batchToRows(sliced), rows.slice(start, start + len), `slice ${start}+${len}`);
      for (const f of allTypes.fields) {
        const data = sliced.getChild(f.name)!.data[0]!;
        const expected = rows.slice(start, start + len).map((r) => r[f.name]);
        assert.deepEqual(dataToValues(data, f.type), expected, `${f.name} slice ${start}+${len}`);
        for (let i = 0; i < len; i++) assert.deepEqual(valueAt(data, i), expected[i], `${f.name}[${i}] of slice ${start}`);
      }
    }
    // Data.slice directly, on a nested column sliced twice
    const ls = batch.getChild('ls')!.data[0]!.slice(2, 20).slice(1, 9);
    assert.deepEqual(
      dataToValues(ls),
      rows.slice(3, 12).map((r) => r.ls),
    );
  });

  it('handles data without a validity bitmap and with nullCount 0', () => {
    const data = arrow.makeData({ type: new arrow.Int32(), data: Int32Array.from([1, 2, 3]) });
    assert.equal(data.nullBitmap?.length ?? 0, 0);
    assert.deepEqual(dataToValues(data), [1, 2, 3]);
    assert.equal(valueAt(data, 2), 3);
    const noBitmap = new arrow.Data(new arrow.Float64(), 0, 2, 0, [undefined, Float64Array.from([1, 2])] as never);
    assert.deepEqual(dataToValues(noBitmap), [1, 2]);
    assert.throws(() => valueAt(data, 3), RangeError);
  });

  it('turns numbers into bigint for int64 columns and fills missing keys with null', () => {
    const s = new Schema([new Field('id', DataType.int64()), new Field('u', DataType.uint64()), new Field('name', DataType.utf8())]);
    const batch = recordsToBatch(
      [
        { id: 1, u: 2 ** 63 },
        { id: -5, name: 'x' },
        { id: 2 ** 53 + 2, u: 3n, extra: 'ignored' },
      ],
      s,
    );
    assert.deepEqual(batchToRows(batch), [
      { id: 1n, u: 2n ** 63n, name: null },
      { id: -5n, u: null, name: 'x' },
      { id: 2n ** 53n + 2n, u: 3n, name: null },
    ]);
  });

  it('keeps awkward column names safe (__proto__, toString)', () => {
    const s = new Schema([new Field('__proto__', DataType.int32()), new Field('toString', DataType.utf8()), new Field('a b"c', DataType.bool())]);
    const rows = [JSON.parse('{"__proto__": 1, "a b\\"c": true}') as Record<string, unknown>, { toString: 'x' }];
    const out = batchToRows(recordsToBatch(rows, s));
    assert.equal(Object.getPrototypeOf(out[0]), Object.prototype);
    assert.deepEqual(Object.keys(out[0]!), ['__proto__', 'toString', 'a b"c']);
    // biome-ignore lint/suspicious/noProto: the test is about a column named __proto__
    assert.equal(out[0]!['__proto__'], 1);
    assert.equal(out[0]!['toString'], null);
    assert.equal(out[1]!['toString'], 'x');
    assert.equal(out[1]!['a b"c'], null);
  });

  it('converts Dates to days for date columns and floors sub-ms timestamps', () => {
    const s = new Schema([new Field('d', DataType.date()), new Field('ns', DataType.timestamp('ns')), new Field('us', DataType.timestamp('us'))]);
    const batch = recordsToBatch([{ d: D('2024-03-01T23:59:59Z'), ns: -1n, us: 1_500n }], s);
    assert.deepEqual(batchToRows(batch), [{ d: D('2024-03-01'), ns: D('1969-12-31T23:59:59.999Z'), us: D('1970-01-01T00:00:00.001Z') }]);
    assert.equal((batch.getChild('ns')!.data[0]!.values as BigInt64Array)[0], -1n);
  });

  it('decodes non-ASCII, invalid UTF-8 and LargeUtf8 data', () => {
    const strs = ['ascii', 'ß', '日本', '🎉x', '', 'é'.repeat(100)];
    const data = valuesToData(strs, DataType.utf8());
    assert.deepEqual(dataToValues(data), strs);
    assert.deepEqual(dataToValues(data.slice(2, 3)), strs.slice(2, 5));
    // a value cut inside a multi-byte character, and an invalid byte: decoded per value with U+FFFD
    const raw = bytes(0xc3, 0xa9, 0x61, 0xff);
    const bad = new arrow.Data(new arrow.Utf8(), 0, 3, 0, [Int32Array.from([0, 1, 3, 4]), raw] as never);
    assert.deepEqual(dataToValues(bad), ['\ufffd', '\ufffda', '\ufffd']);
    const large = new arrow.Data(new arrow.LargeUtf8(), 0, 2, 0, [BigInt64Array.from([0n, 2n, 4n]), bytes(0x61, 0x62, 0x63, 0x64)] as never);
    assert.deepEqual(dataToValues(large), ['ab', 'cd']);
  });

  it('encodes strings exactly on both encoder paths (short loop, joined runs)', () => {
    const short = ['a', 'é', '日', '🎉', '', null, '\ud83d'];
    assert.deepEqual(dataToValues(valuesToData(short, DataType.utf8())), ['a', 'é', '日', '🎉', '', null, '\ufffd']);
    const long = ['plain ascii text here', null, 'ünïcödé téxt with 日本語 and 🎉🎉', 'x'.repeat(100), 'tail 🎉'];
    const data = valuesToData(long, DataType.utf8());
    assert.deepEqual(dataToValues(data), long);
    assert.deepEqual(Buffer.from(data.values as Uint8Array).toString('utf8'), long.join(''));
    // a lone high surrogate at the end of one value and a lone low one at the start of the next:
    // joined they would form one character, but each value must encode on its own
    const split = [`${'a'.repeat(20)}\ud83d`, `\ude00${'b'.repeat(20)}`];
    assert.deepEqual(dataToValues(valuesToData(split, DataType.utf8())), [`${'a'.repeat(20)}\ufffd`, `\ufffd${'b'.repeat(20)}`]);
    // more than one joined run (runs hold up to 2^24 UTF-16 units)
    const big = ['x'.repeat(9_000_000), 'é'.repeat(9_000_000), 'y'];
    assert.deepEqual(dataToValues(valuesToData(big, DataType.utf8())), big);
  });

  it('accepts typed arrays as list values', () => {
    const t = DataType.fixedSizeList(DataType.float32(), 3);
    const mixed = valuesToData([Float32Array.from([1, 2, 3]), null, [4, 5, 6]], t);
    assert.deepEqual(dataToValues(mixed), [[1, 2, 3], null, [4, 5, 6]]);
    // all typed arrays of the element type: bulk-copied
    const emb = valuesToData([Float32Array.from([1, 2, 3]), null, Float32Array.from([0.5, 6, 7])], t);
    assert.deepEqual(dataToValues(emb), [[1, 2, 3], null, [0.5, 6, 7]]);
    assert.deepEqual([...(emb.children[0]!.values as Float32Array)], [1, 2, 3, 0, 0, 0, 0.5, 6, 7]);
    const lists = valuesToData([BigInt64Array.from([1n]), BigInt64Array.from([]), null, BigInt64Array.from([2n, 3n])], DataType.list(DataType.int64()));
    assert.deepEqual(dataToValues(lists), [[1n], [], null, [2n, 3n]]);
    // another element type is converted value by value, and checked
    assert.deepEqual(dataToValues(valuesToData([Float64Array.from([1.5])], DataType.list(DataType.float32()))), [[1.5]]);
    assert.throws(() => valuesToData([Float64Array.from([1.5])], DataType.list(DataType.int32())), /row 0, list element: number 1.5 does not fit int32/);
    assert.throws(() => valuesToData([Float32Array.from([1, 2])], t), /row 0: expected fixed_size_list<float32, 3> with exactly 3 elements/);
  });
});

describe('schema checks', () => {
  const s = new Schema([
    new Field('id', DataType.int32()),
    new Field('tags', DataType.list(DataType.utf8())),
    new Field('p', DataType.struct({ name: DataType.utf8() })),
    new Field('req', DataType.utf8(), false),
  ]);
  const ok = { id: 1, tags: ['a'], p: { name: 'n' }, req: 'r' };

  it('names column, row and value for a value of the wrong type', () => {
    assert.throws(
      () => recordsToBatch([ok, ok, { ...ok, id: 'seven' }], s),
      (e: Error) => {
        assert.match(e.message, /column 'id'/);
        assert.match(e.message, /row 2/);
        assert.match(e.message, /"seven"/);
        assert.match(e.message, /int32/);
        return true;
      },
    );
  });

  it('reports out-of-range and non-integral numbers', () => {
    assert.throws(() => recordsToBatch([{ ...ok, id: 2 ** 31 }], s), /column 'id', row 0: number 2147483648 does not fit int32/);
    assert.throws(() => recordsToBatch([ok, { ...ok, id: 1.5 }], s), /row 1: number 1.5 does not fit int32/);
    assert.throws(() => valuesToData([1, 256], DataType.uint8(), "udf 'f'"), /udf 'f', row 1: number 256 does not fit uint8/);
    assert.throws(() => valuesToData([2n ** 63n], DataType.int64()), /does not fit int64/);
    assert.throws(() => valuesToData([-1], DataType.uint64()), /does not fit uint64/);
  });

  it('reports the top-level row for errors inside nested values', () => {
    assert.throws(() => recordsToBatch([ok, ok, ok, { ...ok, tags: ['a', 5] }], s), /column 'tags', row 3, list element: expected utf8, got number 5/);
    assert.throws(() => recordsToBatch([ok, { ...ok, p: { name: true } }], s), /column 'p', row 1, field 'name': expected utf8, got boolean true/);
    assert.throws(() => recordsToBatch([ok, { ...ok, p: [1] }], s), /column 'p', row 1: expected struct<name: utf8>, got array/);
    assert.throws(() => valuesToData([[1, 2], [1]], DataType.fixedSizeList(DataType.int32(), 2)), /row 1: expected .* exactly 2 elements/);
  });

  it('rejects nulls in non-nullable columns', () => {
    assert.throws(() => recordsToBatch([ok, { ...ok, req: null }], s), /column 'req', row 1: null in non-nullable column/);
  });

  it('rejects non-object rows', () => {
    assert.throws(() => recordsToBatch([ok, null as unknown as Record<string, unknown>], s), /row 1 is not an object/);
  });
});

describe('inferSchemaFromRecords', () => {
  it('applies the inference rules', () => {
    const schema = inferSchemaFromRecords([
      { i: 1, f: 1, mix: 1, big: 1n, s: 'a', b: true, d: D('2024-01-01'), bin: bytes(1), l: [1, 2], o: { a: 1 }, nul: null },
      { i: 2, f: 1.5, mix: null, big: 2n, s: null, b: false, d: null, bin: null, l: [], o: { b: 'x' }, late: 'z', emb: Float32Array.of(1) },
      { i: -3, f: 2, mix: 2.25, l: [null, 3.5], o: null },
    ]);
    assert.deepEqual(Object.fromEntries(schema.fields.map((f) => [f.name, f.type.toString()])), {
      // JS numbers are doubles, integral or not: float64; only bigints are int64.
      i: 'float64',
      f: 'float64',
      mix: 'float64',
      big: 'int64',
      s: 'utf8',
      b: 'bool',
      d: 'timestamp[ms]',
      bin: 'binary',
      l: 'list<float64>',
      o: 'struct<a: float64, b: utf8>',
      nul: 'null',
      late: 'utf8',
      emb: 'list<float32>',
    });
  });

  it('infers nested lists of structs and round-trips them', () => {
    const rows = [{ xs: [{ k: 'a', n: [1] }] }, { xs: [{ k: 'b' }, null] }];
    const schema = inferSchemaFromRecords(rows);
    assert.equal(schema.field('xs').type.toString(), 'list<struct<k: utf8, n: list<float64>>>');
    assert.deepEqual(batchToRows(recordsToBatch(rows)), [{ xs: [{ k: 'a', n: [1] }] }, { xs: [{ k: 'b', n: null }, null] }]);
    const big = [{ xs: [{ k: 'a', n: [1n] }] }, { xs: [{ k: 'b' }, null] }];
    assert.equal(inferSchemaFromRecords(big).field('xs').type.toString(), 'list<struct<k: utf8, n: list<int64>>>');
    assert.deepEqual(batchToRows(recordsToBatch(big)), [{ xs: [{ k: 'a', n: [1n] }] }, { xs: [{ k: 'b', n: null }, null] }]);
  });

  it('names the column, both types and the row for mixed types', () => {
    assert.throws(
      () => inferSchemaFromRecords([{ a: 1 }, { a: 2 }, { a: 'x' }]),
      (e: Error) => {
        assert.match(e.message, /column 'a'/);
        assert.match(e.message, /row 2/);
        assert.match(e.message, /utf8/);
        assert.match(e.message, /float64/);
        return true;
      },
    );
    assert.throws(() => inferSchemaFromRecords([{ a: [1] }, { a: ['x'] }]), /column 'a'.*row 1 has list<utf8>.*earlier rows have list<float64>/);
    assert.throws(() => inferSchemaFromRecords([{ a: [1, 'x'] }]), /column 'a', row 0: .*mixes float64 and utf8/);
    assert.throws(() => inferSchemaFromRecords([{ a: new Map() }]), /column 'a', row 0: unsupported value Map/);
  });

  it('infers float64 for JS numbers, integral or not, and int64 only for bigints', () => {
    const rows = [
      { n: 1, b: 1n, l: [1, 2], bl: [1n], o: { a: 1 } },
      { n: -3, b: -3n, l: [3], bl: [2n], o: { a: 2 } },
    ];
    const schema = inferSchemaFromRecords(rows);
    assert.deepEqual(
      schema.fields.map((f) => f.type.toString()),
      ['float64', 'int64', 'list<float64>', 'list<int64>', 'struct<a: float64>'],
    );
    // Rows come back as what went in: numbers as numbers (no 1n), bigints as bigints.
    assert.deepEqual(batchToRows(recordsToBatch(rows)), rows);
  });

  it('refuses a column mixing numbers and bigints, naming the column', () => {
    const mixed = /column 'a'.*row 1 .*mixes bigints and numbers/;
    assert.throws(() => inferSchemaFromRecords([{ a: 1n }, { a: 2 }]), mixed);
    assert.throws(() => inferSchemaFromRecords([{ a: 1 }, { a: 2n }]), mixed);
    assert.throws(() => inferSchemaFromRecords([{ a: [1n] }, { a: [2] }]), mixed);
    assert.throws(() => inferSchemaFromRecords([{ a: { x: 1n } }, { a: { x: 2.5 } }]), mixed);
    assert.throws(() => inferSchemaFromRecords([{ a: [1n, 2] }]), /column 'a', row 0: .*mixes int64 and float64 .*bigints and numbers/);
    assert.throws(() => columnsToBatch({ a: [1, 2n] }), mixed);
    // With a schema nothing is inferred: an int64 column takes numbers and bigints.
    const s = new Schema([new Field('a', DataType.int64(), true)]);
    assert.deepEqual(batchToRows(recordsToBatch([{ a: 1n }, { a: 2 }], s)), [{ a: 1n }, { a: 2n }]);
  });

  it('merges integer typed arrays of mixed signedness into a type whose values stay numbers', () => {
    const t = (rows: Record<string, unknown>[]): string => inferSchemaFromRecords(rows).field('a').type.toString();
    assert.equal(t([{ a: Int8Array.of(-1) }, { a: Uint8ClampedArray.of(200) }]), 'list<int16>');
    assert.equal(t([{ a: Int16Array.of(-1) }, { a: Uint16Array.of(200) }]), 'list<int32>');
    assert.equal(t([{ a: Int32Array.of(-1) }, { a: Uint8ClampedArray.of(200) }]), 'list<int32>');
    assert.equal(t([{ a: Int32Array.of(-1) }, { a: Uint32Array.of(2 ** 32 - 1) }]), 'list<float64>');
    assert.equal(t([{ a: BigInt64Array.of(-1n) }, { a: BigUint64Array.of(1n) }]), 'list<int64>');
    assert.throws(() => t([{ a: Int32Array.of(1) }, { a: BigInt64Array.of(1n) }]), /column 'a'.*bigints and numbers/);
    const rows = [{ a: Int32Array.of(-1) }, { a: Uint32Array.of(2 ** 32 - 1) }];
    assert.deepEqual(batchToRows(recordsToBatch(rows)), [{ a: [-1] }, { a: [2 ** 32 - 1] }]);
  });

  it('gives an empty schema for no rows', () => {
    const batch = recordsToBatch([]);
    assert.equal(batch.numCols, 0);
    assert.equal(batch.numRows, 0);
    assert.deepEqual(batchToRows(batch), []);
  });
});

describe('columnsToBatch', () => {
  it('maps typed arrays zero-copy', () => {
    const f = Float64Array.from([1.5, 2.5, 3.5]);
    const i = Int32Array.from([1, 2, 3]);
    const big = BigInt64Array.from([1n, 2n, 3n]);
    const batch = columnsToBatch({ f, i, big, s: ['a', null, 'c'] });
    assert.deepEqual(Object.fromEntries(Schema.fromArrow(batch.schema).fields.map((x) => [x.name, x.type.toString()])), {
      f: 'float64',
      i: 'int32',
      big: 'int64',
      s: 'utf8',
    });
    const fv = batch.getChild('f')!.data[0]!.values as Float64Array;
    assert.equal(fv, f);
    assert.equal(fv.buffer, f.buffer);
    assert.equal((batch.getChild('big')!.data[0]!.values as BigInt64Array).buffer, big.buffer);
    f[0] = 9;
    assert.deepEqual(batchToRows(batch)[0], { f: 9, i: 1, big: 1n, s: 'a' });
  });

  it('converts when the schema asks for another type, and checks schema coverage', () => {
    const s = new Schema([new Field('x', DataType.int64()), new Field('y', DataType.float32())]);
    const batch = columnsToBatch({ x: Int32Array.from([1, 2]), y: [0.5, null] }, s);
    assert.deepEqual(batchToRows(batch), [
      { x: 1n, y: 0.5 },
      { x: 2n, y: null },
    ]);
    assert.throws(() => columnsToBatch({ x: [1] }, s), /column 'y' of the schema is missing/);
    assert.throws(() => columnsToBatch({ x: [1], y: [1], z: [1] }, s), /column 'z' is not in the schema/);
    assert.throws(() => columnsToBatch({ x: ['a'], y: [1] }, s), /column 'x', row 0: expected int64, got string "a"/);
  });

  it('rejects columns of different lengths, naming them', () => {
    assert.throws(
      () => columnsToBatch({ a: [1, 2, 3], b: Float64Array.from([1, 2]) }),
      (e: Error) => {
        assert.match(e.message, /'a' has 3/);
        assert.match(e.message, /'b' has 2/);
        return true;
      },
    );
  });

  it('infers plain-array columns like records', () => {
    const batch = columnsToBatch({ a: [1, 2.5], b: [null, null], c: [[1], [2, 3]] });
    assert.deepEqual(
      Schema.fromArrow(batch.schema).fields.map((f) => f.type.toString()),
      ['float64', 'null', 'list<float64>'],
    );
    assert.throws(() => columnsToBatch({ a: [1, 'x'] }), /column 'a'.*row 1 has utf8/);
  });
});

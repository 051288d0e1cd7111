import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatTable, formatValue } from '../src/format.ts';
import { batchToRows, recordsToBatch } from '../src/convert/index.ts';
import { DataType, Field, Schema } from '../src/datatypes.ts';

const schema = new Schema([
  new Field('id', DataType.int64()),
  new Field('score', DataType.float64()),
  new Field('name', DataType.utf8()),
  new Field('ok', DataType.bool()),
  new Field('day', DataType.date()),
  new Field('tags', DataType.list(DataType.utf8())),
]);
const rows = [
  { id: 1n, score: 2, name: 'alice', ok: true, day: new Date('2024-01-02'), tags: ['a', 'b'] },
  { id: -20n, score: null, name: 'bob\nsmith', ok: null, day: null, tags: [] },
  { id: 300n, score: 0.125, name: null, ok: false, day: new Date('1999-12-31'), tags: null },
];

describe('formatTable', () => {
  it('renders an aligned table with name and type headers', () => {
    assert.equal(
      formatTable(schema, rows),
      [
        '┌───────┬─────────┬────────────┬───────┬────────────┬────────────┐',
        '│ id    ┆ score   ┆ name       ┆ ok    ┆ day        ┆ tags       │',
        '│ int64 ┆ float64 ┆ utf8       ┆ bool  ┆ date       ┆ list<utf8> │',
        '╞═══════╪═════════╪════════════╪═══════╪════════════╪════════════╡',
        '│     1 ┆     2.0 ┆ alice      ┆ true  ┆ 2024-01-02 ┆ ["a", "b"] │',
        '│   -20 ┆    null ┆ bob\\nsmith ┆ null  ┆ null       ┆ []         │',
        '│   300 ┆   0.125 ┆ null       ┆ false ┆ 1999-12-31 ┆ null       │',
        '└───────┴─────────┴────────────┴───────┴────────────┴────────────┘',
      ].join('\n'),
    );
  });

  it('formats what batchToRows returns', () => {
    const back = batchToRows(recordsToBatch(rows, schema));
    assert.equal(formatTable(schema, back), formatTable(schema, rows));
  });

  it('adds the footer variants', () => {
    const body = formatTable(schema, rows);
    assert.equal(formatTable(schema, rows, { totalRows: 10 }), `${body}\n(Showing first 3 of 10 rows)`);
    assert.equal(formatTable(schema, rows, { totalRows: null }), `${body}\n(Showing first 3 rows)`);
    assert.equal(formatTable(schema, rows, { totalRows: 3 }), body);
    assert.equal(formatTable(schema, rows, {}), body);
  });

  it('truncates long cells with an ellipsis and keeps wide characters aligned', () => {
    const s = new Schema([new Field('text', DataType.utf8()), new Field('n', DataType.int32())]);
    assert.equal(
      formatTable(
        s,
        [
          { text: 'abcdefghijklmnopqrstuvwxyz', n: 1 },
          { text: '日本語の文字列です', n: 22 },
        ],
        { maxColWidth: 10 },
      ),
      [
        '┌────────────┬───────┐',
        '│ text       ┆ n     │',
        '│ utf8       ┆ int32 │',
        '╞════════════╪═══════╡',
        '│ abcdefghi… ┆     1 │',
        '│ 日本語の…  ┆    22 │',
        '└────────────┴───────┘',
      ].join('\n'),
    );
    const long = formatTable(s, [{ text: 'x'.repeat(100), n: 0 }]);
    assert.ok(long.includes(`${'x'.repeat(29)}…`));
    assert.ok(!long.includes('x'.repeat(30)));
  });

  it('renders empty tables', () => {
    assert.equal(
      formatTable(new Schema([new Field('a', DataType.utf8())]), [], { totalRows: null }),
      ['┌──────┐', '│ a    │', '│ utf8 │', '└──────┘', '(Showing first 0 rows)'].join('\n'),
    );
    assert.equal(formatTable(new Schema([]), []), '(no columns)');
  });
});

describe('formatValue', () => {
  it('formats scalars', () => {
    assert.equal(formatValue(null, DataType.int64()), 'null');
    assert.equal(formatValue(12345678901234567890n, DataType.uint64()), '12345678901234567890');
    assert.equal(formatValue(3, DataType.int32()), '3');
    assert.equal(formatValue(3, DataType.float64()), '3.0');
    assert.equal(formatValue(-0, DataType.float64()), '-0.0');
    assert.equal(formatValue(1e21, DataType.float64()), '1e+21');
    assert.equal(formatValue(Number.NaN, DataType.float64()), 'NaN');
    assert.equal(formatValue(-Infinity, DataType.float64()), '-inf');
    assert.equal(formatValue(Math.fround(0.1), DataType.float32()), '0.1');
    assert.equal(formatValue(true, DataType.bool()), 'true');
    assert.equal(formatValue('tab\there', DataType.utf8()), 'tab\\there');
    assert.equal(formatValue(new Uint8Array([104, 105, 0, 34, 255]), DataType.binary()), 'b"hi\\x00\\"\\xff"');
  });

  it('formats dates and timestamps', () => {
    const t = new Date('2024-01-02T03:04:05.678Z');
    assert.equal(formatValue(new Date('2024-01-02'), DataType.date()), '2024-01-02');
    assert.equal(formatValue(t, DataType.timestamp('ms')), '2024-01-02T03:04:05.678');
    assert.equal(formatValue(t, DataType.timestamp('us', 'UTC')), '2024-01-02T03:04:05.678Z');
    assert.equal(formatValue(new Date('2024-01-02T03:04:05Z'), DataType.timestamp('s')), '2024-01-02T03:04:05');
  });

  it('formats nested values compactly', () => {
    const t = DataType.list(DataType.struct({ k: DataType.utf8(), v: DataType.list(DataType.float64()), 'odd key': DataType.int64() }));
    assert.equal(formatValue([{ k: 'a', v: [1, 2.5], 'odd key': 5n }, null], t), '[{k: "a", v: [1.0, 2.5], "odd key": 5}, null]');
    assert.equal(formatValue([], DataType.list(DataType.int64())), '[]');
    assert.equal(formatValue([[new Date('2020-02-02')]], DataType.list(DataType.list(DataType.date()))), '[[2020-02-02]]');
  });
});

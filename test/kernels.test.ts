// Physical kernels: bitmaps, take, filter, concat, cast, value round trips. Every kernel is checked
// against plain-JS reference computations, over every type (nested ones included), with nulls,
// sliced inputs (nonzero and non-byte-aligned offsets) and empty inputs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { DataType } from '../src/datatypes.ts';
import { copyBits, getBit, popcount, sliceBits } from '../src/kernels/bitmap.ts';
import { CastError, castData, castUnsupportedReason, conform } from '../src/kernels/cast.ts';
import { concatData } from '../src/kernels/concat.ts';
import { allNull, emptyData, mkData, retype, sliceData } from '../src/kernels/data.ts';
import { filterData, selection, selectionFromBits } from '../src/kernels/filter.ts';
import { repeatRow, take, takeSelected } from '../src/kernels/take.ts';
import { formatDate, formatTimestamp, parseDate, parseTimestamp } from '../src/kernels/temporal.ts';
import { physicalValues, physicalValuesToData, type PhysicalValue } from '../src/convert/index.ts';
import { zip } from '../src/kernels/zip.ts';
import { seededRandom } from './random.ts';

// ---------- deterministic random data ----------
const { rnd, ri, pick, maybe } = seededRandom(12345);

const item = (t: arrow.DataType) => new arrow.Field('item', t, true);
const STRINGS = ['', 'a', 'abc', 'Héllo', '日本語', 'emoji 🎉', 'x'.repeat(40), 'zeta', 'ß'];

interface TypeCase {
  name: string;
  type: arrow.DataType;
  gen: () => PhysicalValue;
}
const TYPES: TypeCase[] = [
  { name: 'int8', type: new arrow.Int8(), gen: () => ri(-128, 127) },
  { name: 'int16', type: new arrow.Int16(), gen: () => ri(-32768, 32767) },
  { name: 'int32', type: new arrow.Int32(), gen: () => ri(-2147483648, 2147483647) },
  { name: 'int64', type: new arrow.Int64(), gen: () => BigInt(ri(-1e9, 1e9)) * BigInt(ri(1, 1e9)) },
  { name: 'uint8', type: new arrow.Uint8(), gen: () => ri(0, 255) },
  { name: 'uint16', type: new arrow.Uint16(), gen: () => ri(0, 65535) },
  { name: 'uint32', type: new arrow.Uint32(), gen: () => ri(0, 4294967295) },
  { name: 'uint64', type: new arrow.Uint64(), gen: () => BigInt(ri(0, 1e9)) * BigInt(ri(1, 1e9)) },
  { name: 'float32', type: new arrow.Float32(), gen: () => Math.fround(rnd() * 200 - 100) },
  { name: 'float64', type: new arrow.Float64(), gen: () => rnd() * 1e6 - 5e5 },
  { name: 'bool', type: new arrow.Bool(), gen: () => rnd() < 0.5 },
  { name: 'utf8', type: new arrow.Utf8(), gen: () => pick(STRINGS) },
  { name: 'binary', type: new arrow.Binary(), gen: () => Uint8Array.from({ length: ri(0, 5) }, () => ri(0, 255)) },
  { name: 'date', type: new arrow.DateDay(), gen: () => ri(-30000, 30000) },
  { name: 'timestamp[us]', type: new arrow.TimestampMicrosecond(), gen: () => BigInt(ri(-1e9, 1e9)) * 1000003n },
  { name: 'list<int32>', type: new arrow.List(item(new arrow.Int32())), gen: () => Array.from({ length: ri(0, 3) }, () => maybe(() => ri(-5, 5))) },
  { name: 'list<utf8>', type: new arrow.List(item(new arrow.Utf8())), gen: () => Array.from({ length: ri(0, 3) }, () => maybe(() => pick(STRINGS))) },
  { name: 'fixed_size_list<float64, 2>', type: new arrow.FixedSizeList(2, item(new arrow.Float64())), gen: () => [maybe(() => rnd()), rnd()] },
  {
    name: 'struct<a: int32, b: utf8>',
    type: new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true), new arrow.Field('b', new arrow.Utf8(), true)]),
    gen: () => ({ a: maybe(() => ri(0, 9)), b: maybe(() => pick(STRINGS)) }),
  },
  {
    name: 'list<struct<a: int64>>',
    type: new arrow.List(item(new arrow.Struct([new arrow.Field('a', new arrow.Int64(), true)]))),
    gen: () => Array.from({ length: ri(0, 2) }, () => maybe(() => ({ a: maybe(() => BigInt(ri(0, 9))) }))),
  },
  {
    name: 'struct<l: list<int32>, s: struct<x: bool>>',
    type: new arrow.Struct([
      new arrow.Field('l', new arrow.List(item(new arrow.Int32())), true),
      new arrow.Field('s', new arrow.Struct([new arrow.Field('x', new arrow.Bool(), true)]), true),
    ]),
    gen: () => ({ l: maybe(() => [ri(0, 3)]), s: maybe(() => ({ x: maybe(() => rnd() < 0.5) })) }),
  },
];

function values(tc: TypeCase, n: number, pNull = 0.2): PhysicalValue[] {
  return Array.from({ length: n }, () => maybe(tc.gen, pNull));
}

/** The Data for `vals`, optionally built larger and sliced so that it has a nonzero offset. */
function build(tc: TypeCase, vals: PhysicalValue[], sliceAt = 0): arrow.Data {
  if (sliceAt === 0) return physicalValuesToData(vals, tc.type);
  const pad = values(tc, sliceAt);
  const tail = values(tc, 3);
  return physicalValuesToData([...pad, ...vals, ...tail], tc.type).slice(sliceAt, vals.length);
}

/** Normalizes what arrow's own Vector.get returns, to cross-check our readers and writers. */
function arrowValues(d: arrow.Data): unknown[] {
  const v = new arrow.Vector([d]);
  const norm = (x: unknown, t: arrow.DataType): unknown => {
    if (x === null || x === undefined) return null;
    if (t.typeId === arrow.Type.Date) return (x as number) / 86400000;
    if (t.typeId === arrow.Type.List || t.typeId === arrow.Type.FixedSizeList) {
      return [...(x as arrow.Vector)].map((e) => norm(e, t.children[0]!.type));
    }
    if (t.typeId === arrow.Type.Struct) {
      const row = x as Record<string, unknown>;
      return Object.fromEntries(t.children.map((f: arrow.Field) => [f.name, norm(row[f.name], f.type)]));
    }
    if (x instanceof Uint8Array) return Array.from(x);
    return x;
  };
  return Array.from({ length: d.length }, (_, i) => norm(v.get(i), d.type));
}

function ours(d: arrow.Data): unknown[] {
  const norm = (x: unknown): unknown => {
    if (x instanceof Uint8Array) return Array.from(x);
    if (Array.isArray(x)) return x.map(norm);
    if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, norm(v)]));
    return x;
  };
  return physicalValues(d).map(norm);
}

/** Checks a kernel result against expected JS values, with our reader and with arrow's. */
function check(d: arrow.Data, expected: readonly PhysicalValue[], tc?: TypeCase): void {
  assert.equal(d.length, expected.length, 'length');
  assert.deepEqual(physicalValues(d), expected);
  if (!tc || tc.type.typeId !== arrow.Type.Timestamp) assert.deepEqual(arrowValues(d), ours(d), 'arrow reads the same values');
  assert.equal(d.nullCount, expected.filter((x) => x === null).length, 'nullCount');
}

// ---------- tests ----------

describe('bitmaps', () => {
  it('popcount and copyBits at every alignment match a bit-by-bit reference', () => {
    const src = Uint8Array.from({ length: 20 }, () => ri(0, 255));
    for (const srcOff of [0, 1, 3, 8, 13]) {
      for (const dstOff of [0, 2, 8, 11]) {
        for (const n of [0, 1, 7, 8, 9, 33, 100]) {
          const dst = Uint8Array.from({ length: 24 }, () => ri(0, 255));
          const before = Uint8Array.from(dst);
          copyBits(src, srcOff, dst, dstOff, n);
          for (let i = 0; i < 24 * 8; i++) {
            const want = i >= dstOff && i < dstOff + n ? getBit(src, srcOff + i - dstOff) : getBit(before, i);
            assert.equal(getBit(dst, i), want, `bit ${i} (src ${srcOff}, dst ${dstOff}, n ${n})`);
          }
          let c = 0;
          for (let i = 0; i < n; i++) c += getBit(src, srcOff + i) ? 1 : 0;
          assert.equal(popcount(src, srcOff, n), c);
          assert.equal(popcount(sliceBits(src, srcOff, n), 0, n), c);
        }
      }
    }
  });
});

describe('values round trip', () => {
  for (const tc of TYPES) {
    it(`${tc.name}: physicalValuesToData -> physicalValues, as arrow reads it, also sliced`, () => {
      const vals = values(tc, 37);
      check(build(tc, vals), vals, tc);
      check(build(tc, vals, 13), vals, tc);
      check(build(tc, [], 5), [], tc);
    });
  }
  it('rejects values that do not fit the type', () => {
    assert.throws(() => physicalValuesToData([300], new arrow.Int8()), /does not fit type/);
    assert.throws(() => physicalValuesToData(['x'], new arrow.Int32()), /does not fit/);
    assert.throws(() => physicalValuesToData([1.5], new arrow.Int64()), /does not fit/);
    assert.throws(() => physicalValuesToData([2n ** 64n], new arrow.Uint64()), /does not fit/);
  });
  it('null type and all-null data of every type', () => {
    const d = physicalValuesToData([null, null], new arrow.Null());
    assert.equal(d.length, 2);
    assert.deepEqual(physicalValues(d), [null, null]);
    for (const tc of TYPES) check(allNull(tc.type, 4), [null, null, null, null]);
    for (const tc of TYPES) assert.equal(emptyData(tc.type).length, 0);
  });
});

describe('take', () => {
  for (const tc of TYPES) {
    it(`${tc.name}: gathers with repeats, negative indices (-> null) and sliced input`, () => {
      const vals = values(tc, 41);
      for (const off of [0, 1, 8, 11]) {
        const d = build(tc, vals, off);
        const idx = Int32Array.from({ length: 60 }, () => ri(-1, vals.length - 1));
        check(
          take(d, idx),
          Array.from(idx, (i) => (i < 0 ? null : vals[i]!)),
          tc,
        );
        check(take(d, new Int32Array(0)), [], tc);
        // consecutive runs (the variable-size fast path)
        const runs = Int32Array.from([0, 1, 2, 3, 10, 11, 12, 40, 5, 6]);
        check(
          take(d, runs),
          Array.from(runs, (i) => vals[i]!),
          tc,
        );
      }
    });
  }
  it('null type', () => {
    const d = physicalValuesToData([null, null, null], new arrow.Null());
    assert.deepEqual(physicalValues(take(d, Int32Array.from([2, 0]))), [null, null]);
  });
  it('rejects an index past the end', () => {
    assert.throws(() => take(physicalValuesToData([1, 2], new arrow.Int32()), Int32Array.from([2])), /out of range/);
  });
  it('repeatRow broadcasts one row of any type', () => {
    for (const tc of TYPES) {
      const vals = values(tc, 5, 0.3);
      const d = build(tc, vals, 3);
      check(repeatRow(d, 2, 4), [vals[2]!, vals[2]!, vals[2]!, vals[2]!], tc);
      check(repeatRow(d, 2, 0), [], tc);
    }
  });
});

describe('filter', () => {
  for (const tc of TYPES) {
    it(`${tc.name}: keeps rows where the mask is true (null mask -> dropped), sliced mask and data`, () => {
      const vals = values(tc, 50);
      const mask = Array.from({ length: 50 }, () => maybe(() => rnd() < 0.5));
      for (const off of [0, 3, 8]) {
        const d = build(tc, vals, off);
        const m = build({ name: 'bool', type: new arrow.Bool(), gen: () => true }, mask, off + 1);
        check(
          filterData(d, m),
          vals.filter((_, i) => mask[i] === true),
          tc,
        );
      }
    });
  }
  it('selection: all true returns the data itself, all false / empty gives nothing', () => {
    const d = physicalValuesToData([1, 2, 3], new arrow.Int32());
    assert.equal(filterData(d, physicalValuesToData([true, true, true], new arrow.Bool())), d);
    check(filterData(d, physicalValuesToData([false, null, false], new arrow.Bool())), []);
    assert.deepEqual(Array.from(selection(physicalValuesToData([true], new arrow.Bool()), 3)), [0, 1, 2]);
    assert.deepEqual(Array.from(selection(physicalValuesToData([null], new arrow.Bool()), 3)), []);
    assert.deepEqual(Array.from(selection(physicalValuesToData([], new arrow.Bool()), 0)), []);
  });
  it('selectionFromBits: every byte value, densities 0..1 and ragged tails match a bit-by-bit reference', () => {
    const reference = (bits: Uint8Array, n: number): number[] => Array.from({ length: n }, (_, i) => i).filter((i) => (bits[i >> 3]! >> (i & 7)) & 1);
    // every byte value in turn (the branch-free mixed-byte path, 0x00 and 0xff fast paths)
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const n of [2048, 2047, 2041, 9, 8, 7, 1, 0]) {
      const sel = selectionFromBits(all, n);
      assert.deepEqual(Array.from(sel), reference(all, n), `n=${n}`);
      assert.equal(sel.length, reference(all, n).length);
    }
    for (const density of [0, 0.01, 0.5, 0.97, 1]) {
      for (const n of [1000, 1003, 5]) {
        const bits = new Uint8Array((n + 7) >> 3);
        for (let i = 0; i < n; i++) if (rnd() < density) bits[i >> 3]! |= 1 << (i & 7);
        assert.deepEqual(Array.from(selectionFromBits(bits, n)), reference(bits, n), `density ${density}, n=${n}`);
      }
    }
  });
  it('takeSelected keeps int64 values whose bits are NaN doubles (-1, min, 0x7ff0...01) exact', () => {
    const vals = [-1n, -(2n ** 63n), 0x7ff0000000000001n, 0x7ff8000000000000n, -(2n ** 52n), 0n, 2n ** 63n - 1n, 5n];
    for (const type of [new arrow.Int64(), new arrow.TimestampMicrosecond()]) {
      const d = physicalValuesToData(vals, type);
      const sel = Int32Array.from([0, 1, 2, 3, 4, 6]);
      assert.deepEqual(
        physicalValues(takeSelected(d, sel)),
        Array.from(sel, (i) => vals[i]!),
      );
      assert.deepEqual(physicalValues(takeSelected(d.slice(2, 5), Int32Array.from([0, 2, 4]))), [vals[2], vals[4], vals[6]]);
    }
  });
  it('selection over many rows matches a reference', () => {
    const n = 1000;
    const mask = Array.from({ length: n }, () => maybe(() => rnd() < 0.3, 0.1));
    const sel = selection(build({ name: 'bool', type: new arrow.Bool(), gen: () => true }, mask, 5), n);
    assert.deepEqual(
      Array.from(sel),
      mask.flatMap((m, i) => (m === true ? [i] : [])),
    );
  });
});

describe('concat', () => {
  for (const tc of TYPES) {
    it(`${tc.name}: parts in order, sliced parts, empty parts, null-typed parts`, () => {
      const a = values(tc, 9),
        b = values(tc, 17),
        c = values(tc, 5);
      const parts = [build(tc, a, 3), build(tc, [], 0), build(tc, b, 0), build(tc, c, 7)];
      check(concatData(parts, tc.type), [...a, ...b, ...c], tc);
      const withNull = concatData([build(tc, a), physicalValuesToData([null, null], new arrow.Null())], tc.type);
      check(withNull, [...a, null, null], tc);
      check(concatData([], tc.type), [], tc);
    });
  }
  it('a single part is returned without copying', () => {
    const d = physicalValuesToData([1, 2], new arrow.Int32());
    assert.equal(concatData([d], new arrow.Int32()).values, d.values);
  });
});

describe('zip', () => {
  for (const tc of TYPES) {
    it(`${tc.name}: picks per row from either side, scalars on either side`, () => {
      const a = values(tc, 20),
        b = values(tc, 20);
      const bits = Array.from({ length: 20 }, () => rnd() < 0.5);
      const pick = new Uint8Array(3);
      bits.forEach((x, i) => {
        if (x) pick[i >> 3]! |= 1 << (i & 7);
      });
      check(
        zip(pick, build(tc, a, 2), build(tc, b, 9), 20, tc.type),
        bits.map((x, i) => (x ? a[i]! : b[i]!)),
        tc,
      );
      const s = build(tc, [b[0]!], 1);
      check(
        zip(pick, build(tc, a), s, 20, tc.type),
        bits.map((x, i) => (x ? a[i]! : b[0]!)),
        tc,
      );
      check(
        zip(pick, s, build(tc, a), 20, tc.type),
        bits.map((x, i) => (x ? b[0]! : a[i]!)),
        tc,
      );
    });
  }
});

describe('temporal helpers', () => {
  it('formats and parses dates and timestamps', () => {
    assert.equal(formatDate(0), '1970-01-01');
    assert.equal(formatDate(19723), '2024-01-01');
    assert.equal(formatDate(-1), '1969-12-31');
    assert.equal(parseDate('2024-02-29'), 19782);
    assert.equal(parseDate('2023-02-29'), null);
    assert.equal(parseDate('nope'), null);
    for (const d of [-100000, -1, 0, 59, 60, 365, 11016, 19782, 2932896]) assert.equal(parseDate(formatDate(d)), d);
    assert.equal(formatTimestamp(1500n, 'ms', null), '1970-01-01T00:00:01.500');
    assert.equal(formatTimestamp(-1n, 'us', 'UTC'), '1969-12-31T23:59:59.999999Z');
    assert.equal(formatTimestamp(1n, 's', null), '1970-01-01T00:00:01');
    assert.equal(parseTimestamp('1970-01-01T00:00:01.5', 'ms'), 1500n);
    assert.equal(parseTimestamp('1970-01-01 01:00:00+01:00', 's'), 0n);
    assert.equal(parseTimestamp('2024-01-01', 'ns'), 1704067200000000000n);
    assert.equal(parseTimestamp('2024-01-01T10:11:12.123456789Z', 'us'), 1704103872123456n);
    assert.equal(parseTimestamp('2024-13-01', 'us'), null);
  });
});

describe('cast', () => {
  const T = DataType;
  const cast = (vals: PhysicalValue[], from: arrow.DataType, to: DataType, sliceAt = 0) =>
    physicalValues(castData(build({ name: '', type: from, gen: () => null }, vals, sliceAt), to));

  it('int -> int: widening exact, narrowing out of range -> null', () => {
    assert.deepEqual(cast([1, -2, null, 127], new arrow.Int8(), T.int64()), [1n, -2n, null, 127n]);
    assert.deepEqual(cast([1, -2, null, 300], new arrow.Int32(), T.int8(), 0), [1, -2, null, null]);
    assert.deepEqual(cast([1, -2, null, 300], new arrow.Int32(), T.uint8(), 2), [1, null, null, null]);
    assert.deepEqual(cast([-1n, 2n ** 40n, 5n], new arrow.Int64(), T.int32()), [-1, null, 5]);
    assert.deepEqual(cast([-1n, 5n, null], new arrow.Int64(), T.uint64()), [null, 5n, null]);
    assert.deepEqual(cast([2n ** 63n, 5n], new arrow.Uint64(), T.int64()), [null, 5n]);
    assert.deepEqual(cast([4294967295, 0], new arrow.Uint32(), T.int32()), [null, 0]);
    assert.deepEqual(cast([-5, 7], new arrow.Int16(), T.uint64()), [null, 7n]);
  });
  it('float -> int truncates; NaN, infinities and overflow -> null', () => {
    assert.deepEqual(cast([1.9, -1.9, NaN, Infinity, 3e9, null], new arrow.Float64(), T.int32()), [1, -1, null, null, null, null]);
    assert.deepEqual(cast([1.9, -2.5, 2 ** 62, -(2 ** 63), 2 ** 63, NaN], new arrow.Float64(), T.int64()), [1n, -2n, 2n ** 62n, -(2n ** 63n), null, null]);
    assert.deepEqual(cast([1.5, -1, 2 ** 64], new arrow.Float64(), T.uint64()), [1n, null, null]);
    assert.deepEqual(cast([-123456789.75], new arrow.Float64(), T.int64()), [-123456789n]);
  });
  it('int -> float, int64 -> float64 correctly rounded, float64 -> float32', () => {
    assert.deepEqual(cast([1, null, -3], new arrow.Int32(), T.float64()), [1, null, -3]);
    const big = [2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n, -5n];
    assert.deepEqual(
      cast(big, new arrow.Int64(), T.float64()),
      big.map((x) => Number(x)),
    );
    assert.deepEqual(cast([2n ** 64n - 1n], new arrow.Uint64(), T.float64()), [Number(2n ** 64n - 1n)]);
    assert.deepEqual(cast([0.1], new arrow.Float64(), T.float32()), [Math.fround(0.1)]);
  });
  it('bool <-> numeric', () => {
    assert.deepEqual(cast([true, false, null], new arrow.Bool(), T.int32()), [1, 0, null]);
    assert.deepEqual(cast([true, false], new arrow.Bool(), T.int64(), 3), [1n, 0n]);
    assert.deepEqual(cast([true, false], new arrow.Bool(), T.float64()), [1, 0]);
    assert.deepEqual(cast([0, 2, NaN, null], new arrow.Float64(), T.bool()), [false, true, true, null]);
    assert.deepEqual(cast([0n, -(2n ** 40n)], new arrow.Int64(), T.bool()), [false, true]);
  });
  it('anything -> utf8', () => {
    assert.deepEqual(cast([1, -2, null], new arrow.Int32(), T.utf8(), 5), ['1', '-2', null]);
    assert.deepEqual(cast([0.1, 1e21, NaN, -Infinity], new arrow.Float64(), T.utf8()), ['0.1', '1e+21', 'NaN', '-Infinity']);
    assert.deepEqual(cast([Math.fround(0.1), 3], new arrow.Float32(), T.utf8()), ['0.1', '3']);
    assert.deepEqual(cast([-(2n ** 63n)], new arrow.Int64(), T.utf8()), ['-9223372036854775808']);
    assert.deepEqual(cast([true, false, null], new arrow.Bool(), T.utf8(), 6), ['true', 'false', null]);
    assert.deepEqual(cast([19723, null], new arrow.DateDay(), T.utf8()), ['2024-01-01', null]);
    assert.deepEqual(cast([1704103872123456n], new arrow.TimestampMicrosecond(), T.utf8()), ['2024-01-01T10:11:12.123456']);
    assert.deepEqual(cast([1500n], new arrow.TimestampMillisecond('UTC'), T.utf8()), ['1970-01-01T00:00:01.500Z']);
    assert.deepEqual(cast([[1, null], null, []], new arrow.List(item(new arrow.Int32())), T.utf8()), ['[1, null]', null, '[]']);
    assert.deepEqual(cast([{ a: 1, b: 'x' }], TYPES[18]!.type, T.utf8()), ['{a: 1, b: "x"}']);
    assert.deepEqual(cast([Uint8Array.from([104, 105])], new arrow.Binary(), T.utf8()), ['hi']);
    assert.throws(() => cast([Uint8Array.from([0xff])], new arrow.Binary(), T.utf8()), CastError);
    // a character split across two rows is invalid in each
    assert.throws(() => cast([Uint8Array.from([0xc3]), Uint8Array.from([0xa9])], new arrow.Binary(), T.utf8()), CastError);
  });
  it('utf8 -> numbers, bool, date, timestamp; bad text raises CastError naming the value', () => {
    assert.deepEqual(cast([' 12 ', '-7', null, '+3'], new arrow.Utf8(), T.int32(), 2), [12, -7, null, 3]);
    assert.deepEqual(cast(['9223372036854775807', '-1'], new arrow.Utf8(), T.int64()), [2n ** 63n - 1n, -1n]);
    assert.deepEqual(cast(['1.5', '-2e3', 'NaN', 'inf', '-Infinity', '.5'], new arrow.Utf8(), T.float64()), [1.5, -2000, NaN, Infinity, -Infinity, 0.5]);
    assert.deepEqual(cast(['true', 'FALSE', '1', 'no'], new arrow.Utf8(), T.bool()), [true, false, true, false]);
    assert.deepEqual(cast(['2024-01-01', null], new arrow.Utf8(), T.date()), [19723, null]);
    assert.deepEqual(cast(['2024-01-01T00:00:01Z'], new arrow.Utf8(), T.timestamp('ms')), [1704067201000n]);
    assert.deepEqual(cast(['a'], new arrow.Utf8(), T.binary()), [Uint8Array.from([97])]);
    const bad: [string, DataType, string][] = [
      ['12x', T.int32(), '1'],
      ['', T.int32(), '1'],
      ['1.5', T.int64(), '1'],
      ['300', T.uint8(), '1'],
      ['abc', T.float64(), '1'],
      ['maybe', T.bool(), 'true'],
      ['2024-02-30', T.date(), '2024-02-28'],
      ['yesterday', T.timestamp(), '2024-01-01'],
      ['99999999999999999999', T.int64(), '1'],
    ];
    for (const [s, to, good] of bad) {
      assert.throws(
        () => cast([good, s], new arrow.Utf8(), to),
        (e: unknown) => {
          assert.ok(e instanceof CastError);
          assert.equal(e.value, s);
          assert.equal(e.row, 1);
          assert.match(e.message, new RegExp(`"${s}".*${String(to).replace(/[[\]]/g, '.')}`));
          return true;
        },
      );
    }
  });
  it('int <-> date / timestamp, timestamp units, date <-> timestamp', () => {
    assert.deepEqual(cast([19723, null], new arrow.Int32(), T.date()), [19723, null]);
    assert.deepEqual(cast([19723], new arrow.DateDay(), T.int64()), [19723n]);
    assert.deepEqual(cast([5n], new arrow.Int64(), T.timestamp('ms')), [5n]);
    assert.deepEqual(cast([5], new arrow.Int32(), T.timestamp('s')), [5n]);
    assert.deepEqual(cast([1999n, -1n], new arrow.TimestampMillisecond(), T.timestamp('s')), [1n, -1n]);
    assert.deepEqual(cast([2n], new arrow.TimestampSecond(), T.timestamp('ns')), [2000000000n]);
    assert.deepEqual(cast([2n ** 62n], new arrow.TimestampSecond(), T.timestamp('ns')), [null]);
    assert.deepEqual(cast([1n, 86400000000n - 1n, -1n], new arrow.TimestampMicrosecond(), T.date()), [0, 0, -1]);
    assert.deepEqual(cast([1, -1], new arrow.DateDay(), T.timestamp('ms')), [86400000n, -86400000n]);
    assert.deepEqual(cast([123n], new arrow.TimestampMillisecond(), T.int64()), [123n]);
    assert.deepEqual(cast([123n], new arrow.TimestampMillisecond(), T.timestamp('ms', 'UTC')), [123n]);
  });
  it('nested casts and null -> anything', () => {
    assert.deepEqual(cast([[1, null], null, [3]], new arrow.List(item(new arrow.Int32())), T.list(T.float64()), 2), [[1, null], null, [3]]);
    assert.deepEqual(cast([[1, 2], null], new arrow.FixedSizeList(2, item(new arrow.Int32())), T.list(T.utf8())), [['1', '2'], null]);
    assert.deepEqual(cast([{ a: 1, b: 'x' }, null], TYPES[18]!.type, T.struct({ b: T.utf8(), a: T.int64() })), [{ b: 'x', a: 1n }, null]);
    for (const tc of TYPES) {
      const d = castData(physicalValuesToData([null, null], new arrow.Null()), DataType.fromArrow(tc.type));
      check(d, [null, null]);
    }
  });
  it('unsupported casts are reported before running', () => {
    assert.match(castUnsupportedReason(T.float64(), T.date())!, /cannot cast float64 to date/);
    assert.match(castUnsupportedReason(T.list(T.int32()), T.int32())!, /cannot cast/);
    assert.match(castUnsupportedReason(T.struct({ a: T.int32() }), T.struct({ c: T.int32() }))!, /no field 'c'/);
    assert.equal(castUnsupportedReason(T.int32(), T.utf8()), null);
    assert.throws(() => castData(physicalValuesToData([1.5], new arrow.Float64()), T.date()), TypeError);
  });
  it('conform converts large offsets and millisecond dates, retypes matching layouts without copying', () => {
    const lu = new arrow.Data(new arrow.LargeUtf8(), 0, 2, 0, [BigInt64Array.from([0n, 1n, 3n]), Uint8Array.from([97, 98, 99]), new Uint8Array(0)] as never);
    assert.deepEqual(physicalValues(conform(lu, T.utf8())), ['a', 'bc']);
    const dm = new arrow.Data(new arrow.DateMillisecond(), 0, 2, 0, [undefined, BigInt64Array.from([86400000n, -86400000n]), new Uint8Array(0)] as never);
    assert.deepEqual(physicalValues(conform(dm, T.date())), [1, -1]);
    const l = physicalValuesToData([[1]], new arrow.List(new arrow.Field('element', new arrow.Int32(), true)));
    const c = conform(l, T.list(T.int32()));
    assert.equal(c.children[0]!.values, l.children[0]!.values);
    assert.equal((c.type as arrow.List).children[0]!.name, 'item');
    assert.deepEqual(physicalValues(conform(physicalValuesToData([1, 2], new arrow.Int32()), T.int64())), [1n, 2n]);
  });
  it('helpers: retype, sliceData', () => {
    const d = physicalValuesToData([1, 2, 3], new arrow.Int32());
    assert.equal(retype(d, d.type), d);
    assert.deepEqual(physicalValues(sliceData(d, 1, 2)), [2, 3]);
    assert.throws(() => sliceData(d, 2, 2), RangeError);
    assert.deepEqual(physicalValues(mkData(new arrow.Int32(), 2, Uint8Array.from([1]), Int32Array.from([5, 6]))), [5, null]);
  });
});

// The aggregation and join fast paths, against plain Map references and DuckDB: GroupTable's dense
// index for one 32-bit key (complete over its range, grown as keys arrive, hash slots only for
// outliers and nulls), lookupInts straight from a column's values (groupBy and the join's probe
// side), and the sum's per-group "has a value" flags skipped on null-free batches.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, Field, fromRecords, readParquet, Schema, setRunner } from 'fanout';
import { GroupTable, KeyEncoder } from '../src/relational/keys.ts';
import { HashAggregator } from '../src/aggregate/hash-aggregate.ts';
import { DataType } from '../src/datatypes.ts';
import { seededRandom } from './random.ts';
import { tempDir } from './helpers.ts';
import { openDuckDb } from './duckdb.ts';

/** A reference: key string -> group id in first-seen order. */
class RefTable {
  readonly ids = new Map<string, number>();
  lookup(keys: readonly (number | null)[], insert: boolean): number[] {
    return keys.map((k) => {
      const s = k === null ? 'null' : String(k);
      let g = this.ids.get(s);
      if (g === undefined && insert) this.ids.set(s, (g = this.ids.size));
      return g ?? -1;
    });
  }
}

/** One int32 key k and sum(f) as sf, sum(i: int32) as si, count(fc) as c, mean(fm) as m: the fused dense path's aggregates. */
function fourAggregates(): { input: arrow.Schema; out: arrow.Schema; agg: HashAggregator } {
  const keyField = new arrow.Field('k', new arrow.Int32(), true);
  const specs = [
    { fn: 'sum' as const, inType: DataType.float64().json, outType: DataType.float64().json, name: 'sf' },
    { fn: 'sum' as const, inType: DataType.int32().json, outType: DataType.int64().json, name: 'si' },
    { fn: 'count' as const, inType: DataType.float64().json, outType: DataType.int64().json, name: 'c' },
    { fn: 'mean' as const, inType: DataType.float64().json, outType: DataType.float64().json, name: 'm' },
  ];
  const input = new arrow.Schema([
    keyField,
    ...['f', 'i', 'fc', 'fm'].map((n) => new arrow.Field(n, n === 'i' ? new arrow.Int32() : new arrow.Float64(), true)),
  ]);
  const out = new arrow.Schema([
    keyField,
    new arrow.Field('sf', new arrow.Float64(), true),
    new arrow.Field('si', new arrow.Int64(), true),
    new arrow.Field('c', new arrow.Int64(), true),
    new arrow.Field('m', new arrow.Float64(), true),
  ]);
  return { input, out, agg: new HashAggregator([keyField], specs, 'update') };
}

function intData(values: Int32Array, nulls: boolean[] | null): arrow.Data {
  const v = arrow.makeVector(values).data[0]!;
  if (!nulls) return v;
  const bm = new Uint8Array((values.length + 7) >> 3);
  let nullCount = 0;
  nulls.forEach((isNull, i) => {
    if (isNull) nullCount++;
    else bm[i >> 3]! |= 1 << (i & 7);
  });
  return arrow.makeData({ type: new arrow.Int32(), length: values.length, nullCount, nullBitmap: bm, data: values });
}

describe('GroupTable with one 32-bit key', () => {
  it('dense index, outliers, nulls and probes agree with a Map, through lookup and lookupInts alike', () => {
    const { ri, rnd } = seededRandom(5);
    for (const shape of ['dense', 'sequential', 'outliers', 'negative', 'sparse'] as const) {
      const table = new GroupTable(2);
      const enc = new KeyEncoder([DataType.int32()]);
      const ref = new RefTable();
      let start = 0;
      for (let batch = 0; batch < 12; batch++) {
        const n = ri(1, 3000);
        const values = new Int32Array(n);
        const nulls: boolean[] = [];
        for (let i = 0; i < n; i++) {
          values[i] =
            shape === 'dense'
              ? ri(0, 50)
              : shape === 'sequential'
                ? start + i
                : shape === 'outliers'
                  ? rnd() < 0.02
                    ? ri(-2_000_000_000, 2_000_000_000)
                    : ri(100, 900)
                  : shape === 'negative'
                    ? ri(-5000, -4000)
                    : ri(0, 1 << 30);
          nulls.push(batch > 3 && rnd() < 0.05);
        }
        start += n;
        const keys = [...values].map((v, i) => (nulls[i] ? null : v));
        const insert = batch % 4 !== 3;
        const want = ref.lookup(keys, insert);
        const out = new Int32Array(n);
        // Alternate the two entry points over the same table.
        if (batch % 2) {
          const d = intData(values, nulls.some(Boolean) ? nulls : null);
          table.lookupInts(d.values as Int32Array, d.nullCount ? d.nullBitmap! : null, d.offset, n, insert, out);
        } else {
          const d = intData(values, nulls.some(Boolean) ? nulls : null);
          table.lookup(enc.encode([d], n, insert), n, insert, out);
        }
        assert.deepEqual([...out], want, `${shape}, batch ${batch} (insert ${insert})`);
        assert.equal(table.count, ref.ids.size);
      }
      // Probing without insert (a join's probe side): absent keys are -1, present ones found.
      const probe = new Int32Array(
        [...ref.ids.keys()]
          .filter((k) => k !== 'null')
          .map(Number)
          .slice(0, 50)
          .concat([2_147_483_647, -2_147_483_648]),
      );
      const got = table.lookupInts(probe, null, 0, probe.length, false, new Int32Array(probe.length));
      assert.deepEqual([...got], ref.lookup([...probe], false), `${shape}: probe`);
    }
  });

  it('a sliced column (non-zero offset, nulls) reads the right values and validity bits', () => {
    const values = Int32Array.from({ length: 100 }, (_, i) => i % 7);
    const nulls = Array.from({ length: 100 }, (_, i) => i % 5 === 0);
    const sliced = intData(values, nulls).slice(13, 50);
    const table = new GroupTable(2);
    const out = new Int32Array(50);
    table.lookupInts(sliced.values as Int32Array, sliced.nullBitmap!, sliced.offset, 50, true, out);
    const ref = new RefTable();
    const want = ref.lookup(
      Array.from({ length: 50 }, (_, i) => (nulls[13 + i] ? null : values[13 + i]!)),
      true,
    );
    assert.deepEqual([...out], want);
  });
});

describe('sum skips per-row flags on null-free batches', () => {
  it('groups with only nulls stay null; a later value makes them non-null; matches a reference', () => {
    const { ri, rnd } = seededRandom(11);
    const keyField = new arrow.Field('k', new arrow.Int32(), true);
    const spec = { fn: 'sum' as const, inType: DataType.float64().json, outType: DataType.float64().json, name: 's' };
    const schema = new arrow.Schema([keyField, new arrow.Field('s', new arrow.Float64(), true)]);
    const agg = new HashAggregator([keyField], [spec], 'update');
    const ref = new Map<number, number | null>();
    for (let batch = 0; batch < 20; batch++) {
      const n = ri(1, 500);
      const keys = Int32Array.from({ length: n }, () => ri(0, 40 + batch * 10));
      // Every third batch is null-free; the others have many nulls (whole groups of only nulls).
      const hasNulls = batch % 3 !== 0;
      const nulls = Array.from({ length: n }, (_, i) => hasNulls && (keys[i]! % 4 === 0 || rnd() < 0.3));
      const vals = Float64Array.from({ length: n }, () => ri(0, 100));
      const bm = new Uint8Array((n + 7) >> 3);
      nulls.forEach((isNull, i) => {
        if (!isNull) bm[i >> 3]! |= 1 << (i & 7);
      });
      const nullCount = nulls.filter(Boolean).length;
      const v = arrow.makeData({ type: new arrow.Float64(), length: n, nullCount, nullBitmap: nullCount ? bm : null, data: vals });
      const k = arrow.makeVector(keys).data[0]!;
      agg.push(new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children: [k, v] })));
      for (let i = 0; i < n; i++) {
        const prev = ref.has(keys[i]!) ? ref.get(keys[i]!)! : null;
        ref.set(keys[i]!, nulls[i] ? prev : (prev ?? 0) + vals[i]!);
      }
    }
    const out = agg.drainResult(schema);
    const got = new Map<number, number | null>();
    for (let i = 0; i < out.numRows; i++) got.set(out.getChildAt(0)!.get(i) as number, out.getChildAt(1)!.get(i) as number | null);
    assert.deepEqual(got, ref);
    assert.ok(
      [...ref.values()].some((x) => x === null),
      'some group has only nulls',
    );
  });
});

describe('fused dense path: one int32 key, sum / count / mean in one loop per aggregate', () => {
  it('new keys and outliers mid-batch, nulls, an int32 value column: bit-identical to a row-order reference, and the path is taken', () => {
    const { ri, rnd } = seededRandom(23);
    const { input, out, agg } = fourAggregates();
    // Reference in row order: the same additions in the same order give the same doubles.
    type Ref = { sf: number | null; si: number | null; c: number; sum: number | null; n: number };
    const ref = new Map<number | null, Ref>();
    let fusable = 0;
    for (let batch = 0; batch < 40; batch++) {
      const n = ri(1, 3000);
      const keys = new Int32Array(n);
      const keyNull: boolean[] = [];
      const fNull: boolean[] = [];
      const f = new Float64Array(n);
      const iv = new Int32Array(n);
      for (let r = 0; r < n; r++) {
        // Mostly 8 known keys; from batch 5 on, now and then a new key or an outlier mid-batch.
        const x = rnd();
        keys[r] = batch >= 5 && x < 0.002 ? ri(-2_000_000_000, 2_000_000_000) : batch >= 5 && x < 0.004 ? ri(8, 300) : ri(0, 7);
        keyNull.push(batch % 7 === 6 && rnd() < 0.05);
        // The first batch leaves key 3 with only nulls (its sum is null until a later value).
        fNull.push(batch % 5 === 4 ? rnd() < 0.2 : batch === 0 && keys[r] === 3);
        f[r] = Math.round(rnd() * 1e6) / 7;
        iv[r] = ri(-1000, 1000);
      }
      const bm = (nulls: boolean[]): { nullCount: number; nullBitmap: Uint8Array | null } => {
        const b = new Uint8Array((n + 7) >> 3);
        nulls.forEach((isNull, r) => {
          if (!isNull) b[r >> 3]! |= 1 << (r & 7);
        });
        const nullCount = nulls.filter(Boolean).length;
        return { nullCount, nullBitmap: nullCount ? b : null };
      };
      const kd = arrow.makeData({ type: new arrow.Int32(), length: n, ...bm(keyNull), data: keys });
      const fd = arrow.makeData({ type: new arrow.Float64(), length: n, ...bm(fNull), data: f });
      const id = arrow.makeData({ type: new arrow.Int32(), length: n, nullCount: 0, data: iv });
      agg.push(new arrow.RecordBatch(input, arrow.makeData({ type: new arrow.Struct(input.fields), length: n, nullCount: 0, children: [kd, fd, id, fd, fd] })));
      // Batches the fused path may take: after the first (no index yet), no nulls in keys or values.
      if (batch > 0 && !kd.nullCount && !fd.nullCount) fusable += n;
      for (let r = 0; r < n; r++) {
        const k = keyNull[r] ? null : keys[r]!;
        const e = ref.get(k) ?? { sf: null, si: null, c: 0, sum: null, n: 0 };
        if (!fNull[r]) {
          e.sf = (e.sf ?? 0) + f[r]!;
          e.c++;
          e.sum = (e.sum ?? 0) + f[r]!;
          e.n++;
        }
        e.si = (e.si ?? 0) + iv[r]!;
        ref.set(k, e);
      }
    }
    const res = agg.drainResult(out);
    assert.equal(res.numRows, ref.size);
    for (let g = 0; g < res.numRows; g++) {
      const k = res.getChildAt(0)!.get(g) as number | null;
      const e = ref.get(k)!;
      const at = (c: number): unknown => res.getChildAt(c)!.get(g);
      assert.ok(Object.is(at(1), e.sf), `sum(f) of key ${String(k)}: ${String(at(1))} vs ${String(e.sf)}`);
      assert.equal(at(2), e.si === null ? null : BigInt(e.si), `sum(i) of key ${String(k)}`);
      assert.equal(at(3), BigInt(e.c), `count of key ${String(k)}`);
      assert.ok(Object.is(at(4), e.n ? e.sum! / e.n : null), `mean of key ${String(k)}`);
    }
    assert.ok(ref.get(3)!.sf !== null, 'key 3 got values after a batch of only nulls');
    // Most rows of those batches went through the fused loops: a new key or an outlier costs a short stretch of group ids.
    assert.ok(agg.fusedRows > 0.8 * fusable && agg.fusedRows <= fusable, `fused rows: ${agg.fusedRows} of ${fusable}`);
  });
});

describe('slot loops: a full dense index (every key in its range is a group)', () => {
  // Keys 0..9 around a base, at int32's ends too (the unsigned range check's edge: base + len = 2^31).
  for (const [label, base] of [
    ['negative base', -5],
    ['top of int32', 2 ** 31 - 10],
    ['bottom of int32', -(2 ** 31)],
  ] as const) {
    it(`${label}: bit-identical to a row-order reference with outliers and new keys mid-batch, and the slot loops take the rows`, () => {
      const { ri, rnd } = seededRandom(41);
      const { input, out, agg } = fourAggregates();
      type Ref = { sf: number; si: number; c: number };
      const ref = new Map<number, Ref>();
      // The far key: outside any index over the others (it wraps around in (key - base) >>> 0).
      const far = base < 0 ? 2 ** 31 - 1 : -(2 ** 31);
      let slottable = 0;
      for (let batch = 0; batch < 30; batch++) {
        const n = ri(200, 4000);
        const keys = new Int32Array(n);
        const f = new Float64Array(n);
        const iv = new Int32Array(n);
        for (let r = 0; r < n; r++) {
          const x = rnd();
          // Keys 0..7 first; 8 and 9 (next to the range: the index widens, then is full again) and
          // the far key (never in the index) now and then from batch 10 on.
          const off = batch >= 10 && x < 0.002 ? 8 + ri(0, 1) : ri(0, 7);
          keys[r] = batch >= 10 && x > 0.998 ? far : base + off;
          // Magnitudes far apart, so the order of additions shows in the low bits; -0, infinities.
          const y = rnd();
          f[r] = y < 0.01 ? 1e17 : y < 0.02 ? -1e17 : y < 0.025 ? -0 : Math.round(rnd() * 1e6) / 7;
          if (batch === 20 && r === 5) f[r] = Number.POSITIVE_INFINITY;
          iv[r] = ri(-1000, 1000);
        }
        const kd = arrow.makeData({ type: new arrow.Int32(), length: n, nullCount: 0, data: keys });
        const fd = arrow.makeData({ type: new arrow.Float64(), length: n, nullCount: 0, data: f });
        const id = arrow.makeData({ type: new arrow.Int32(), length: n, nullCount: 0, data: iv });
        agg.push(
          new arrow.RecordBatch(input, arrow.makeData({ type: new arrow.Struct(input.fields), length: n, nullCount: 0, children: [kd, fd, id, fd, fd] })),
        );
        if (batch > 0) slottable += n;
        for (let r = 0; r < n; r++) {
          const e = ref.get(keys[r]!) ?? { sf: 0, si: 0, c: 0 };
          e.sf += f[r]!;
          e.si += iv[r]!;
          e.c++;
          ref.set(keys[r]!, e);
        }
      }
      const res = agg.drainResult(out);
      assert.equal(res.numRows, ref.size);
      assert.equal(ref.size, 11, 'keys 0..9 and the far key');
      for (let g = 0; g < res.numRows; g++) {
        const k = res.getChildAt(0)!.get(g) as number;
        const e = ref.get(k)!;
        const at = (c: number): unknown => res.getChildAt(c)!.get(g);
        assert.ok(Object.is(at(1), e.sf), `sum(f) of key ${k}: ${String(at(1))} vs ${e.sf}`);
        assert.equal(at(2), BigInt(e.si), `sum(i) of key ${k}`);
        assert.equal(at(3), BigInt(e.c), `count of key ${k}`);
        assert.ok(Object.is(at(4), e.sf / e.c), `mean of key ${k}`);
      }
      // Most rows after the first batch took the slot loops (an outlier or a new key stops a run for a stretch).
      assert.ok(agg.slotRows > 0.8 * slottable && agg.slotRows <= agg.fusedRows, `slot rows: ${agg.slotRows} of ${slottable} (fused ${agg.fusedRows})`);
    });
  }

  it('an index with holes (keys 0, 2, 4, ...) keeps the lookup loops: the same sums', () => {
    const keyField = new arrow.Field('k', new arrow.Int32(), true);
    const specs = [{ fn: 'sum' as const, inType: DataType.float64().json, outType: DataType.float64().json, name: 's' }];
    const input = new arrow.Schema([keyField, new arrow.Field('v', new arrow.Float64(), true)]);
    const agg = new HashAggregator([keyField], specs, 'update');
    const ref = new Map<number, number>();
    for (let batch = 0; batch < 5; batch++) {
      const n = 1000;
      const keys = Int32Array.from({ length: n }, (_, r) => 2 * ((r * 7 + batch) % 6));
      const v = Float64Array.from({ length: n }, (_, r) => (r % 3 === 0 ? 1e16 : r / 3));
      for (let r = 0; r < n; r++) ref.set(keys[r]!, (ref.get(keys[r]!) ?? 0) + v[r]!);
      const kd = arrow.makeData({ type: new arrow.Int32(), length: n, nullCount: 0, data: keys });
      const vd = arrow.makeData({ type: new arrow.Float64(), length: n, nullCount: 0, data: v });
      agg.push(new arrow.RecordBatch(input, arrow.makeData({ type: new arrow.Struct(input.fields), length: n, nullCount: 0, children: [kd, vd] })));
    }
    const res = agg.drainResult(new arrow.Schema([keyField, new arrow.Field('s', new arrow.Float64(), true)]));
    for (let g = 0; g < res.numRows; g++) assert.ok(Object.is(res.getChildAt(1)!.get(g), ref.get(res.getChildAt(0)!.get(g) as number)));
    assert.equal(res.numRows, 6);
    assert.ok(agg.fusedRows > 3000, `fused rows ${agg.fusedRows}`);
    assert.equal(agg.slotRows, 0);
  });
});

describe('join on one integer key (the probe reads the key column directly)', () => {
  it('every join kind matches DuckDB: nulls, duplicate build keys, outliers, an all-matching probe', async () => {
    const dir = tempDir('fanout-fastpaths-');
    const { ri, rnd } = seededRandom(17);
    const key = (): number | null => (rnd() < 0.05 ? null : rnd() < 0.03 ? ri(-2_000_000_000, 2_000_000_000) : ri(0, 400));
    const left = Array.from({ length: 6000 }, (_, n) => ({ a: key(), n }));
    const right = Array.from({ length: 500 }, (_, m) => ({ a: key(), label: `r${m}` }));
    const ls = new Schema([new Field('a', DataType.int32(), true), new Field('n', DataType.int32(), false)]);
    const rs = new Schema([new Field('a', DataType.int32(), true), new Field('label', DataType.utf8(), false)]);
    setRunner('native', { batchSize: 1024 });
    await fromRecords(left, ls).writeParquet(join(dir, 'l'));
    await fromRecords(right, rs).writeParquet(join(dir, 'r'));
    // Every left row matches exactly one right row: the probe output keeps the left columns as they are.
    const uniq = Array.from({ length: 401 }, (_, a) => ({ a, label: `u${a}` }));
    await fromRecords(uniq, rs).writeParquet(join(dir, 'u'));
    const duckDb = await openDuckDb();
    const L = `read_parquet('${join(dir, 'l')}/*.parquet')`;
    const R = `read_parquet('${join(dir, 'r')}/*.parquet')`;
    const canon = (rows: Record<string, unknown>[]): string[] =>
      rows
        .map((r) =>
          JSON.stringify(
            Object.keys(r)
              .sort()
              .map((k) => [k, r[k] === undefined ? null : r[k]]),
          ),
        )
        .sort();
    try {
      const sql = { inner: 'INNER', left: 'LEFT', right: 'RIGHT', outer: 'FULL OUTER', semi: 'SEMI', anti: 'ANTI' } as const;
      for (const how of ['inner', 'left', 'right', 'outer', 'semi', 'anti'] as const) {
        const got = await readParquet(join(dir, 'l'))
          .join(readParquet(join(dir, 'r')), { on: 'a', how })
          .toRows();
        const cols = how === 'semi' || how === 'anti' ? 'a, n' : 'a, n, label';
        const want = await duckDb.query(`SELECT ${cols} FROM ${L} AS l ${sql[how]} JOIN ${R} AS r USING (a)`);
        assert.equal(got.length, want.length, `${how}: rows`);
        assert.deepEqual(canon(got), canon(want), how);
      }
      const all = await readParquet(join(dir, 'l'))
        .where(col('a').notNull().and(col('a').ge(0)).and(col('a').le(400)))
        .join(readParquet(join(dir, 'u')), { on: 'a' })
        .toRows();
      assert.ok(all.length > 5000);
      for (const r of all) assert.equal(r.label, `u${String(r.a)}`);
      assert.deepEqual(
        all.map((r) => r.n),
        [...all.map((r) => r.n as number)].sort((x, y) => x - y),
        'left order kept',
      );
    } finally {
      duckDb.close();
      setRunner('native');
    }
  });
});

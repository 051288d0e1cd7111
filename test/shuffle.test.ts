// The serverless shuffle's pieces without the harness: the bucket hash agrees for equal keys whatever
// else a batch holds (strings by bytes, not by an encoder's ids), an exchange that spills to local
// files uploads the same buckets as one that does not, and a map partition that fails writes no bucket.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { DataType } from 'fanout';
import { hashBuckets, shuffleKeys, writeExchange, type ShuffleContext } from '../src/aws/shuffle.ts';
import { LocalStore } from '../src/io/store/index.ts';
import type { SchemaJSON } from '../src/datatypes.ts';
import { tempDir } from './helpers.ts';

const strings = (xs: (string | null)[]): arrow.Data => arrow.vectorFromArray(xs, new arrow.Utf8()).data[0]!;

describe('shuffle bucket hash', () => {
  it('equal strings get equal buckets in any batch (bytes, not dictionary ids); nulls share one', () => {
    const a = ['x', 'hot', null, 'y', 'hot', 'z'];
    const b = ['z', 'q', 'hot', null, 'x', 'y', 'r'];
    const ba = hashBuckets([strings(a)], [DataType.utf8()], a.length, 8);
    const bb = hashBuckets([strings(b)], [DataType.utf8()], b.length, 8);
    const of = (xs: (string | null)[], bs: Int32Array) => new Map(xs.map((x, i) => [x, bs[i]!]));
    const ma = of(a, ba);
    const mb = of(b, bb);
    for (const k of ['x', 'hot', null, 'y', 'z']) assert.equal(ma.get(k), mb.get(k), `key ${k}`);
    assert.ok(new Set(bb).size > 1, 'keys spread over buckets');
    // A slice (offset data) hashes its rows as they are.
    const sliced = arrow.vectorFromArray(b, new arrow.Utf8()).slice(2).data[0]!;
    assert.deepEqual([...hashBuckets([sliced], [DataType.utf8()], b.length - 2, 8)], [...bb.subarray(2)]);
  });

  it('numbers by value: -0 with 0, every NaN together; several key columns combine', () => {
    const f = arrow.makeVector(new Float64Array([0, -0, Number.NaN, -Number.NaN, 1.5])).data[0]!;
    const bs = hashBuckets([f], [DataType.float64()], 5, 16);
    assert.equal(bs[0], bs[1]);
    assert.equal(bs[2], bs[3]);
    const ids = arrow.makeVector(new BigInt64Array([1n, 2n, 1n, 2n])).data[0]!;
    const ks = strings(['a', 'a', 'b', 'a']);
    const two = hashBuckets([ids, ks], [DataType.int64(), DataType.utf8()], 4, 64);
    assert.equal(two[1], two[3]);
    assert.ok(two[0] !== two[2] || two[0] !== two[1], 'not one bucket for everything');
  });
});

const SCHEMA: SchemaJSON = {
  fields: [
    { name: 'k', type: { kind: 'utf8' }, nullable: true },
    { name: 'v', type: { kind: 'int64' }, nullable: false },
  ],
} as SchemaJSON;

function batch(from: number, n: number): arrow.RecordBatch {
  const ks = Array.from({ length: n }, (_, i) => ((from + i) % 7 === 0 ? null : `key${(from + i) % 23}`));
  return new arrow.RecordBatch({
    k: arrow.vectorFromArray(ks, new arrow.Utf8()).data[0]!,
    v: arrow.makeVector(BigInt64Array.from({ length: n }, (_, i) => BigInt(from + i))).data[0]!,
  });
}

async function* batches(count: number, failAt = -1): AsyncGenerator<arrow.RecordBatch> {
  for (let i = 0; i < count; i++) {
    if (i === failAt) throw new Error('the map partition failed');
    yield batch(i * 100, 100);
  }
}

function context(budgetBytes: number): ShuffleContext {
  return {
    store: new LocalStore(tempDir()),
    runId: 'shuffle-unit',
    shardKey: (s, p) => `runs/shuffle-unit/stage-${s}/part-${p}.arrow`,
    markerKey: (s, p) => `runs/shuffle-unit/stage-${s}/metrics-${p}.json`,
    batchSize: 1000,
    budgetBytes,
  };
}

async function bucketRows(c: ShuffleContext, buckets: number[]): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const b of buckets) {
    const t = arrow.tableFromIPC(await c.store.get(shuffleKeys.bucket(c.runId, 0, 0, b)));
    out.set(
      b,
      t
        .toArray()
        .map((r) => `${r.k}:${r.v}`)
        .sort(),
    );
  }
  return out;
}

describe('exchange sink', () => {
  it('spilling to local files under a tiny budget uploads the same buckets, rows in order', async () => {
    const big = context(1 << 30);
    const tiny = context(1);
    const exchange = { kind: 'hash' as const, keys: ['k'], partitions: 4 };
    const a = await writeExchange(big, 0, 0, exchange, batches(10), SCHEMA);
    const b = await writeExchange(tiny, 0, 0, exchange, batches(10), SCHEMA);
    assert.deepEqual(a.buckets, b.buckets);
    assert.ok(a.buckets.length > 1);
    assert.deepEqual(await bucketRows(big, a.buckets), await bucketRows(tiny, b.buckets));
    const total = [...(await bucketRows(tiny, b.buckets)).values()].reduce((n, rows) => n + rows.length, 0);
    assert.equal(total, 1000);
    // Within a bucket the rows keep their arrival order (v increases), spilled batches first.
    const first = arrow.tableFromIPC(await tiny.store.get(shuffleKeys.bucket(tiny.runId, 0, 0, b.buckets[0]!)));
    const vs = first.getChild('v')!.toArray() as BigInt64Array;
    for (let i = 1; i < vs.length; i++) assert.ok(vs[i]! > vs[i - 1]!);
  });

  it('a map partition that fails writes no bucket at all (so it never looks whole)', async () => {
    const c = context(1);
    await assert.rejects(writeExchange(c, 0, 0, { kind: 'hash', keys: ['k'], partitions: 4 }, batches(10, 6), SCHEMA), /the map partition failed/);
    assert.deepEqual(await c.store.list('runs/shuffle-unit/stage-0/shuffle/'), []);
  });
});

// Bad input to the relational operators gets an error naming the column (or option) at fault, at
// call time; and the memory budget's default is a quarter of the machine's memory, as documented.
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { describe, it } from 'node:test';
import { col, fromRecords, setRunner } from 'fanout';
import { resolveEmbeddedOptions } from '../src/runners/options.ts';

const df = fromRecords([{ k: 'a', l: [1, 2], n: 1, s: 'x' }]);
const other = fromRecords([{ k: 1, l: [1], n: 2 }]);

describe('relational bad input', () => {
  it('columns that cannot be keys, sorted or ordered are named with their type', () => {
    const key = /column 'l' is list<float64>, which cannot be a key \(lists and structs cannot be hashed\)/;
    assert.throws(() => df.groupBy('l').agg(col('n').sum()), key);
    assert.throws(() => df.join(df, { on: 'l' }), key);
    assert.throws(() => df.distinct('l'), key);
    assert.throws(() => df.repartition(2, 'l'), key);
    assert.throws(() => df.agg(col('l').countDistinct()), /countDistinct: column 'l' is list<float64>, which cannot be a key/);
    assert.throws(() => df.agg(col('l').min()), /min: column 'l' is list<float64>, expected an orderable column/);
    assert.throws(() => df.sort('l'), /sort: column 'l' is list<float64>, which cannot be sorted/);
    assert.throws(() => df.groupBy('k').agg(col('s').sum()), /sum: column 's' is utf8, expected a numeric column/);
    assert.throws(() => df.join(other, { on: 'k' }), /join: key column 'k' is utf8 on the left but 'k' is float64 on the right/);
  });

  it('memoryBudgetBytes: a positive integer, by default a quarter of the machine', () => {
    assert.equal(resolveEmbeddedOptions().memoryBudgetBytes, Math.floor(totalmem() / 4));
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => setRunner('native', { memoryBudgetBytes: bad }), /runner option 'memoryBudgetBytes' must be a positive integer, got /);
    }
    setRunner('native');
  });
});

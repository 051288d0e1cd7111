import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { col, DataType, func } from 'fanout';
import { containsUdf, udfCalls, type ExprNode } from '../src/expressions.ts';
import { udfsOf } from '../src/physical.ts';
import { callsGenerator } from '../src/udf.ts';

const inner = func((x: number) => x + 1, { returnDtype: DataType.float64(), name: 'walkInner' });
// Takes number | null: a generator's output is null for a row that yields nothing (onEmpty 'null').
const outer = func((x: number | null) => (x ?? 0) * 2, { returnDtype: DataType.float64(), name: 'walkOuter' });
const gen = func(
  function* (x: number) {
    yield x;
    yield x;
  },
  { returnDtype: DataType.float64(), name: 'walkGen' },
);

describe('one UDF walker (udfCalls)', () => {
  it('finds UDF calls under alias, cast, functions and other UDFs, outer before inner', () => {
    const e: ExprNode = outer(inner(col('x')).add(1))
      .cast(DataType.float32())
      .alias('y')
      .toJSON();
    assert.deepEqual(
      [...udfCalls(e)].map((c) => c.name),
      ['walkOuter', 'walkInner'],
    );
    assert.equal(containsUdf(e), true);
    assert.equal(containsUdf(col('x').add(1).alias('z').toJSON()), false);
    assert.deepEqual(
      udfsOf([{ type: 'project', exprs: [e], schema: { fields: [] } }]).map((u) => u.name),
      ['walkOuter', 'walkInner'],
    );
  });

  it("sees a generator UDF nested in another UDF's arguments", () => {
    assert.equal(
      callsGenerator(
        outer(gen(col('x')))
          .alias('g')
          .toJSON(),
      ),
      true,
    );
    assert.equal(callsGenerator(outer(inner(col('x'))).toJSON()), false);
  });
});

// The fused paths of filter + project (src/eval.ts: FilterProject, the compiled float64 arithmetic;
// src/executor.ts: a scan's pushed filter or a filter op fused with the project after it) against
// the general path they replace (evalTuning switches them off): same types, same validity, same
// value bytes, NaN payloads, -0 and infinities included.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { col, fromArrow, readParquet, setRunner } from 'fanout';
import { DataType, Field, Schema } from '../src/datatypes.ts';
import { col as typedCol, lit as typedLit, type Expr, type ExprNode, type Scalar } from '../src/expressions.ts';
import { evalTuning, evaluate, FilterProject, filterBatch, inferField, projectBatch } from '../src/eval.ts';
import { selectionFromBits } from '../src/kernels/filter.ts';
import { writeParquetFile } from '../src/io/parquet/index.ts';
import { seededRandom } from './random.ts';
import { tempDir } from './helpers.ts';

const c = (name: string): Expr<never> => typedCol(name) as unknown as Expr<never>;
const l = (v: Scalar): Expr<never> => typedLit(v) as unknown as Expr<never>;
const { rnd, ri } = seededRandom(20261130);

after(() => {
  evalTuning.fusedArithmetic = true;
  evalTuning.fusedFilterProject = true;
  evalTuning.reuseSelection = true;
});

/** Doubles that stress bit-exactness: NaNs with payloads, signed zeros, infinities, tiny and huge values. */
const SPECIAL = [Number.NaN, -0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5e-324, -1.7976931348623157e308, 1, -1, 0.5, 3];
function specialDoubles(n: number): Float64Array {
  const out = new Float64Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const k = ri(0, 9);
    if (k < 3) out[i] = SPECIAL[ri(0, SPECIAL.length - 1)]!;
    else if (k === 3) {
      // A NaN with a payload (and either sign).
      bits[2 * i] = ri(1, 0xffff);
      bits[2 * i + 1] = (ri(0, 1) ? 0xfff80000 : 0x7ff80000) | ri(0, 0xffff);
    } else out[i] = (rnd() - 0.5) * 10 ** ri(-5, 5);
  }
  return out;
}

/** A batch of float64 columns x, y (y with nulls when asked), an int64 id and a utf8 s; `off` slices it. */
function batch(n: number, nulls: boolean, off = 0): arrow.RecordBatch {
  const m = n + off + 3;
  const x = specialDoubles(m);
  const yv = specialDoubles(m);
  const y = arrow.makeData({
    type: new arrow.Float64(),
    length: m,
    data: yv,
    nullBitmap: nulls ? Uint8Array.from({ length: (m + 7) >> 3 }, () => ri(0, 255)) : null,
  });
  const id = BigInt64Array.from({ length: m }, (_, i) => BigInt(i) * (i % 2 ? -1n : 1n) - 1n);
  const s = arrow.vectorFromArray(
    Array.from({ length: m }, (_, i) => (i % 7 === 0 ? null : `s${i}`)),
    new arrow.Utf8(),
  );
  const b = new arrow.RecordBatch({
    x: arrow.makeData({ type: new arrow.Float64(), length: m, data: x }),
    y,
    id: arrow.makeData({ type: new arrow.Int64(), length: m, data: id }),
    s: s.data[0]!,
  });
  return off || m !== n ? b.slice(off, off + n) : b;
}

/** Everything that must match: type, length, null count, validity bits and value bytes of valid slots. */
function sameData(a: arrow.Data, b: arrow.Data, what: string): void {
  assert.equal(String(a.type), String(b.type), `${what}: type`);
  assert.equal(a.length, b.length, `${what}: length`);
  assert.equal(a.nullCount, b.nullCount, `${what}: null count`);
  for (let i = 0; i < a.length; i++) {
    const va = a.nullCount === 0 || ((a.nullBitmap![(a.offset + i) >> 3]! >> ((a.offset + i) & 7)) & 1) === 1;
    const vb = b.nullCount === 0 || ((b.nullBitmap![(b.offset + i) >> 3]! >> ((b.offset + i) & 7)) & 1) === 1;
    assert.equal(va, vb, `${what}: validity of row ${i}`);
  }
  if (a.values instanceof Float64Array || a.values instanceof BigInt64Array) {
    const ba = new Uint8Array(a.values.buffer, a.values.byteOffset, a.length * 8);
    const bb = new Uint8Array((b.values as Float64Array).buffer, (b.values as Float64Array).byteOffset, b.length * 8);
    assert.deepEqual(ba, bb, `${what}: value bytes`);
  } else {
    assert.deepEqual(new arrow.Vector([a]).toArray(), new arrow.Vector([b]).toArray(), `${what}: values`);
  }
}

function both<T>(fn: () => T): [T, T] {
  evalTuning.fusedArithmetic = false;
  const general = fn();
  evalTuning.fusedArithmetic = true;
  return [general, fn()];
}

const ARITH: [string, Expr][] = [
  ['x * 2 + 1', c('x').mul(2).add(1)],
  ['1 - x / 3', l(1).sub(c('x').div(3))],
  ['x * x - x', c('x').mul(c('x')).sub(c('x'))],
  ['(x + y) % 0.75', c('x').add(c('y')).mod(0.75)],
  ['x / y * (2 * 3)', c('x').div(c('y')).mul(l(2).mul(3))],
  ['x - -0.0', c('x').sub(-0)],
  ['(x * 1e308) * 10', c('x').mul(1e308).mul(10)],
];

describe('compiled float64 arithmetic', () => {
  it('gives the bytes, validity and type of the per-kernel path (NaN payloads, -0, infinities, nulls, sliced columns)', () => {
    for (const nulls of [false, true]) {
      for (const off of [0, 5]) {
        const b = batch(1003, nulls, off);
        for (const [name, e] of ARITH) {
          const [general, fused] = both(() => evaluate(e.node, b));
          sameData(fused, general, `${name} (nulls ${nulls}, offset ${off})`);
        }
      }
    }
  });

  it('leaves other trees to the general path: int operands, casts, null literals, a bare column', () => {
    const b = new arrow.RecordBatch({
      i: arrow.makeData({ type: new arrow.Int32(), length: 4, data: Int32Array.of(1, -2, 2147483647, 0) }),
      x: arrow.makeData({ type: new arrow.Float64(), length: 4, data: Float64Array.of(1.5, -0, Number.NaN, 2) }),
    });
    for (const e of [c('i').mul(2).add(1), c('i').add(c('x')), c('x').add(l(null)), c('x'), c('x').cast(DataType.float64()).mul(2)]) {
      const [general, fused] = both(() => evaluate(e.node, b));
      sameData(fused, general, String(e.node.op));
    }
  });
});

describe('FilterProject', () => {
  const outputs: [string, Expr][] = [
    ['id', c('id')],
    ['y2', c('x').mul(2).add(1)],
    ['s', c('s')],
    ['xy', c('x').mul(c('y'))],
    ['x', c('x')],
    ['id1', c('id').add(1)],
  ];
  const exprs: ExprNode[] = outputs.map(([n, e]) => e.alias(n).node);

  function compare(b: arrow.RecordBatch, pred: ExprNode, what: string): void {
    const schema = Schema.fromArrow(b.schema);
    const outSchema = new Schema(exprs.map((e) => inferField(e, schema)));
    evalTuning.fusedArithmetic = false;
    const general = projectBatch(filterBatch(b, pred), exprs, outSchema);
    evalTuning.fusedArithmetic = true;
    const fp = new FilterProject(pred, { exprs, schema: outSchema });
    // Twice through one operator: the selection buffer and the bound expressions are reused.
    for (const round of [1, 2]) {
      const fused = fp.apply(b);
      assert.equal(fused.numRows, general.numRows, `${what}: rows (round ${round})`);
      assert.deepEqual(
        fused.schema.fields.map((f) => `${f.name}: ${f.type}`),
        general.schema.fields.map((f) => `${f.name}: ${f.type}`),
      );
      for (let i = 0; i < outputs.length; i++) sameData(fused.data.children[i]!, general.data.children[i]!, `${what}: ${outputs[i]![0]} (round ${round})`);
    }
  }

  it('equals projectBatch(filterBatch(...)) for every selectivity, with and without nulls, on sliced batches', () => {
    for (const nulls of [false, true]) {
      for (const off of [0, 3]) {
        const b = batch(2000, nulls, off);
        for (const t of [-2, -1e-3, 0, 0.5, 1e3, 1e300]) compare(b, c('x').gt(t).node, `x > ${t} (nulls ${nulls}, offset ${off})`);
        compare(b, c('y').lt(0).node, `y < 0 (nulls ${nulls}, offset ${off})`);
        compare(
          b,
          c('x')
            .gt(-1)
            .and(c('x').le(c('y').mul(2))).node,
          `and (nulls ${nulls}, offset ${off})`,
        );
        compare(b, c('x').lt(-1).or(c('x').gt(1)).not().node, `not(or) (nulls ${nulls}, offset ${off})`);
        compare(b, c('x').eq(c('x')).and(c('x').neq(0)).node, `not NaN and not zero (nulls ${nulls}, offset ${off})`);
        compare(b, c('x').gt(-1e308).or(c('x').isNull()).node, `all rows (nulls ${nulls})`);
        compare(b, l(false).node, `no rows (nulls ${nulls})`);
      }
    }
  });

  it('without a projection it equals filterBatch: every column gathered, an all-pass batch returned as is', () => {
    for (const nulls of [false, true]) {
      const b = batch(1500, nulls, 2);
      for (const pred of [
        c('x').gt(0.5),
        c('x').mul(2).le(c('y')),
        c('y').neq(0),
        c('x').eq(c('x')),
        c('x').gt(-1e308).or(c('x').isNull()),
        l(false),
        c('x').ge(0).and(c('y').lt(1).not()),
      ]) {
        evalTuning.fusedArithmetic = false;
        const general = filterBatch(b, pred.node);
        evalTuning.fusedArithmetic = true;
        const fp = new FilterProject(pred.node, null);
        for (const round of [1, 2]) {
          const fused = fp.apply(b);
          assert.equal(fused.numRows, general.numRows, `rows (round ${round})`);
          assert.equal(fused === b, general === b, 'the batch itself when every row passes');
          assert.deepEqual(fused.schema.fields.map(String), general.schema.fields.map(String));
          for (let i = 0; i < b.numCols; i++) sameData(fused.data.children[i]!, general.data.children[i]!, `column ${i} (nulls ${nulls}, round ${round})`);
        }
      }
    }
  });

  it('rejects a predicate that is not bool, like filterBatch', () => {
    const b = batch(10, false);
    const fp = new FilterProject(c('x').node, { exprs: [c('id').node], schema: new Schema([new Field('id', DataType.int64(), true)]) });
    assert.throws(() => fp.apply(b), /filter predicate must be bool, got col\(x\) \(float64\)/);
  });

  it('selectionFromBits writes into a scratch buffer when it is big enough, and allocates otherwise', () => {
    const bits = Uint8Array.of(0b10110101, 0xff, 0, 0b1);
    const fresh = selectionFromBits(bits, 25);
    const scratch = new Int32Array(64);
    const viewed = selectionFromBits(bits, 25, scratch);
    assert.deepEqual([...viewed], [...fresh]);
    assert.equal(viewed.buffer, scratch.buffer);
    assert.notEqual(selectionFromBits(bits, 25, new Int32Array(4)).buffer.byteLength, 16);
  });
});

describe('without code generation from strings', () => {
  it('the compiled paths fall back to the general one (node --disallow-code-generation-from-strings)', () => {
    const code = `
      import * as arrow from 'apache-arrow';
      import { col } from './src/expressions.ts';
      import { evaluate, FilterProject } from './src/eval.ts';
      import { DataType, Field, Schema } from './src/datatypes.ts';
      const b = new arrow.RecordBatch({ x: arrow.makeData({ type: new arrow.Float64(), length: 4, data: Float64Array.of(0.25, 0.75, -1, 2) }) });
      const y = col('x').mul(2).add(1).node;
      const fp = new FilterProject(col('x').gt(0.5).node, { exprs: [y], schema: new Schema([new Field('y', DataType.float64(), true)]) });
      console.log(JSON.stringify([[...new arrow.Vector([evaluate(y, b)]).toArray()], [...fp.apply(b).getChildAt(0).toArray()]]));`;
    const repo = join(import.meta.dirname, '..');
    const p = spawnSync(
      process.execPath,
      ['--disallow-code-generation-from-strings', '--conditions=development', '--import', 'tsx', '--input-type=module', '-e', code],
      {
        cwd: repo,
        encoding: 'utf8',
      },
    );
    assert.equal(p.status, 0, p.stderr);
    assert.deepEqual(JSON.parse(p.stdout.trim().split('\n').at(-1)!), [
      [1.5, 2.5, -1, 5],
      [2.5, 5],
    ]);
  });
});

describe('the executor fuses a filter with the project after it', () => {
  const rows = 30_000;
  let file = '';
  const x = specialDoubles(rows);
  const table = new arrow.Table({
    id: arrow.makeVector(BigInt64Array.from({ length: rows }, (_, i) => BigInt(i))),
    x: arrow.makeVector(x),
    s: arrow.vectorFromArray(
      Array.from({ length: rows }, (_, i) => `r${i % 13}`),
      new arrow.Utf8(),
    ),
  });

  async function run(df: () => { toArrow(): Promise<arrow.Table> }): Promise<{ general: arrow.Table; fused: arrow.Table; applied: number }> {
    let applied = 0;
    const apply = FilterProject.prototype.apply;
    FilterProject.prototype.apply = function (this: FilterProject, b: arrow.RecordBatch) {
      applied++;
      return apply.call(this, b);
    };
    try {
      evalTuning.fusedFilterProject = false;
      evalTuning.fusedArithmetic = false;
      const general = await df().toArrow();
      evalTuning.fusedFilterProject = true;
      evalTuning.fusedArithmetic = true;
      const before = applied;
      const fused = await df().toArrow();
      assert.equal(before, 0, 'the general path does not use FilterProject');
      return { general, fused, applied };
    } finally {
      FilterProject.prototype.apply = apply;
    }
  }

  function sameTables(a: arrow.Table, b: arrow.Table): void {
    assert.equal(a.numRows, b.numRows);
    assert.deepEqual(a.schema.names, b.schema.names);
    const bytes = (v: Float64Array): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    for (const name of a.schema.names as string[]) {
      const ca = a.getChild(name)!,
        cb = b.getChild(name)!;
      if (ca.type.typeId === arrow.Type.Float) {
        assert.deepEqual(bytes(ca.toArray() as Float64Array), bytes(cb.toArray() as Float64Array), `${name}: value bytes`);
      } else assert.deepEqual(ca.toArray(), cb.toArray(), name);
    }
  }

  it("a Parquet scan's pushed filter runs fused with the projection, rows and bytes unchanged", async () => {
    file = join(tempDir(), 'fp.parquet');
    await writeParquetFile(file, table.batches, { rowGroupSize: 7000 });
    setRunner('native', { workers: false, batchSize: 4096 });
    const df = () => readParquet(file).where(col('x').gt(0.25)).select('id', col('x').mul(2).add(1).alias('y'), 's');
    const { general, fused, applied } = await run(df);
    assert.ok(applied > 0, 'FilterProject ran');
    assert.ok(general.numRows > 0 && general.numRows < rows);
    sameTables(fused, general);
    // A pushed limit still counts filtered rows.
    const limited = await run(() => readParquet(file).where(col('x').gt(0.25)).select('id', col('x').mul(2).add(1).alias('y')).limit(5000));
    assert.equal(limited.fused.numRows, 5000);
    sameTables(limited.fused, limited.general);
  });

  it('a pushed filter without a projection, and a filter op alone, run through FilterProject too', async () => {
    setRunner('native', { workers: false, batchSize: 4096 });
    for (const df of [() => readParquet(file).where(col('x').ge(0.5)), () => fromArrow(table).where(col('x').mul(col('x')).gt(0.2))]) {
      const { general, fused, applied } = await run(df);
      assert.ok(applied > 0, 'FilterProject ran');
      assert.ok(general.numRows > 0 && general.numRows < rows);
      sameTables(fused, general);
    }
  });

  it('a filter op followed by a project op (in-memory source) runs fused too', async () => {
    setRunner('native', { workers: false });
    const df = () =>
      fromArrow(table)
        .where(col('x').lt(0))
        .select(col('x').sub(col('x').mul(3)).alias('z'), 'id');
    const { general, fused, applied } = await run(df);
    assert.ok(applied > 0, 'FilterProject ran');
    sameTables(fused, general);
    // The source's own columns are read, never overwritten.
    assert.deepEqual(new Uint8Array((table.getChild('x')!.toArray() as Float64Array).buffer), new Uint8Array(x.buffer));
  });
});

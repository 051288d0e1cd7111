// Expression typing and evaluation: every builtin function against plain-JS reference computations,
// null rules (three-valued logic tables), type errors (messages name the columns and types), casts,
// sliced batches, empty batches, and the batch operations (filter, take, explode, project, concat).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { ColumnNotFoundError, DataType, Field, Schema } from '../src/datatypes.ts';
import { col as typedCol, lit as typedLit, type Expr, type ExprNode, type Scalar } from '../src/expressions.ts';
import { CastError, concatBatches, evaluate, explodeBatch, ExpressionTypeError, filterBatch, inferField, projectBatch, takeBatch } from '../src/eval.ts';
import { physicalValues, physicalValuesToData, type PhysicalValue } from '../src/convert/index.ts';
import { seededRandom } from './random.ts';

// ---------- helpers ----------
// These tests exercise the untyped engine (any value type in any position), so they build
// expressions without the builder's phantom value types.
const col = (name: string): Expr<never> => typedCol(name) as unknown as Expr<never>;
const lit = (v: Scalar): Expr<never> => typedLit(v) as unknown as Expr<never>;
const { rnd, ri, pick, maybe } = seededRandom(987654321);
const item = (t: arrow.DataType) => new arrow.Field('item', t, true);

type Cols = Record<string, [arrow.DataType, readonly unknown[]]>;

function batchOf(cols: Cols): arrow.RecordBatch {
  const data: Record<string, arrow.Data> = {};
  for (const [name, [type, vals]] of Object.entries(cols)) data[name] = physicalValuesToData(vals, type);
  return new arrow.RecordBatch(data);
}

/** Same rows as `cols`, but every column is a slice (nonzero, unaligned offset) of a longer one. */
function slicedBatchOf(cols: Cols, off = 5): arrow.RecordBatch {
  const padded: Cols = {};
  for (const [name, [type, vals]] of Object.entries(cols)) padded[name] = [type, [...vals.slice(0, off), ...vals, ...vals.slice(0, 3)]];
  const b = batchOf(padded);
  const n = Object.values(cols)[0]![1].length;
  return b.slice(off, off + n);
}

const ev = (e: Expr, b: arrow.RecordBatch) => physicalValues(evaluate(e.node, b));
const schemaOf = (b: arrow.RecordBatch) => Schema.fromArrow(b.schema);
const typeOf = (e: Expr, b: arrow.RecordBatch) => String(inferField(e.node, schemaOf(b)).type);

function throwsType(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ExpressionTypeError, `expected ExpressionTypeError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message "${e.message}" should contain "${p}"`);
    return true;
  });
}

// ---------- numeric fixtures ----------
const NUMERIC: [string, arrow.DataType, () => number | bigint][] = [
  ['int8', new arrow.Int8(), () => ri(-128, 127)],
  ['int16', new arrow.Int16(), () => ri(-32768, 32767)],
  ['int32', new arrow.Int32(), () => pick([ri(-100, 100), ri(-2147483648, 2147483647), 0])],
  ['int64', new arrow.Int64(), () => pick([BigInt(ri(-100, 100)), BigInt(ri(-1e9, 1e9)) * 1000000007n, 0n, 2n ** 63n - 1n])],
  ['uint8', new arrow.Uint8(), () => ri(0, 255)],
  ['uint16', new arrow.Uint16(), () => ri(0, 65535)],
  ['uint32', new arrow.Uint32(), () => pick([ri(0, 100), ri(0, 4294967295)])],
  ['uint64', new arrow.Uint64(), () => pick([BigInt(ri(0, 100)), BigInt(ri(0, 1e9)) * 1000000007n, 2n ** 64n - 1n])],
  ['float32', new arrow.Float32(), () => Math.fround(pick([rnd() * 200 - 100, 0, ri(-5, 5)]))],
  ['float64', new arrow.Float64(), () => pick([rnd() * 1e6 - 5e5, 0, ri(-5, 5), 0.5])],
];
const N = 40;
const numCols: Cols = {};
for (const [name, type, gen] of NUMERIC) numCols[name] = [type, Array.from({ length: N }, () => maybe(gen))];
const numBatch = batchOf(numCols);
const numSliced = slicedBatchOf(numCols, 7);

const INT_ARRAY: Record<string, { new (n: number): ArrayLike<number> & { [i: number]: number } }> = {
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
};

function promote(a: string, b: string): string {
  if (a === b) return a;
  const fl = (k: string) => k.startsWith('float');
  if (fl(a) || fl(b)) return a === 'float32' && b === 'float32' ? 'float32' : 'float64';
  const w = (k: string) => Number(k.replace(/\D/g, ''));
  const s = (k: string) => k.startsWith('int');
  if (s(a) === s(b)) return `${s(a) ? 'int' : 'uint'}${Math.max(w(a), w(b))}`;
  const [si, un] = s(a) ? [a, b] : [b, a];
  if (w(un) < w(si)) return si;
  if (w(un) < 64) return `int${w(un) * 2}`;
  return 'float64';
}

/** Plain-JS reference of arithmetic in the result type `k` (wrapping ints, IEEE floats). */
function refArith(op: string, a: unknown, b: unknown, k: string): PhysicalValue {
  if (a === null || b === null) return null;
  if (op === 'div') {
    const r = Number(a) / Number(b);
    return k === 'float32' ? Math.fround(r) : r;
  }
  if (k.startsWith('float')) {
    const x = Number(a),
      y = Number(b);
    const r = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x % y;
    return k === 'float32' ? Math.fround(r) : r;
  }
  const x = BigInt(a as number),
    y = BigInt(b as number);
  if (op === 'mod' && y === 0n) return null;
  const r = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x % y;
  if (k === 'int64') return BigInt.asIntN(64, r);
  if (k === 'uint64') return BigInt.asUintN(64, r);
  const arr = new INT_ARRAY[k]!(1);
  arr[0] = Number(BigInt.asIntN(64, r) & 0xffffffffn);
  return arr[0]!;
}

// ---------- tests ----------

describe('inferField', () => {
  const b = batchOf({
    price: [new arrow.Float64(), [1.5]],
    name: [new arrow.Utf8(), ['a']],
    id: [new arrow.Int64(), [1n]],
    d: [new arrow.DateDay(), [1]],
    tags: [new arrow.List(item(new arrow.Utf8())), [['x']]],
    s: [new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true), new arrow.Field('b', new arrow.Utf8(), true)]), [{ a: 1, b: 'x' }]],
    f: [new arrow.Bool(), [true]],
  });
  const schema = schemaOf(b);

  it('names follow exprName: column, alias, literal, first argument', () => {
    assert.equal(inferField(col('price').mul(2).node, schema).name, 'price');
    assert.equal(inferField(col('price').mul(2).alias('p2').node, schema).name, 'p2');
    assert.equal(inferField(lit(3).node, schema).name, 'literal');
    assert.equal(inferField(lit(3).add(col('price')).node, schema).name, 'literal');
    assert.equal(inferField(col('price').cast(DataType.int32()).node, schema).name, 'price');
    assert.equal(inferField(col('price').isNull().node, schema).nullable, false);
  });

  it('type errors name both columns and both types', () => {
    throwsType(
      () => inferField(col('price').add(col('name')).node, schema),
      'cannot add col(price) (float64) and col(name) (utf8): add needs numeric operands',
    );
    throwsType(() => inferField(col('name').sub(col('price')).node, schema), 'col(name) (utf8)', 'col(price) (float64)', 'subtract');
    throwsType(() => inferField(col('d').add(1).node, schema), 'col(d) (date)', 'date/timestamp');
    throwsType(() => inferField(col('name').gt(5).node, schema), 'col(name) (utf8)', 'lit(5) (int32)', 'compare');
    throwsType(() => inferField(col('id').eq(col('name')).node, schema), 'col(id) (int64)', 'col(name) (utf8)');
    throwsType(() => inferField(col('price').and(col('f')).node, schema), 'col(price) (float64)', 'bool');
    throwsType(() => inferField(col('price').not().node, schema), 'col(price) (float64)');
    throwsType(() => inferField(col('id').str.upper().node, schema), 'col(id) (int64)', 'utf8');
    throwsType(() => inferField(col('name').str.contains(col('id')).node, schema), 'col(id) (int64)');
    throwsType(() => inferField(col('name').list.get(0).node, schema), 'col(name) (utf8)', 'list');
    throwsType(() => inferField(col('s').struct.get('zz').node, schema), "'zz'", "'a', 'b'", 'col(s)');
    throwsType(() => inferField(col('tags').struct.get('a').node, schema), 'col(tags) (list<utf8>)');
    throwsType(() => inferField(col('price').ifElse(1, 2).node, schema), 'col(price) (float64)', 'bool');
    throwsType(() => inferField(col('f').ifElse(col('name'), col('price')).node, schema), 'col(name) (utf8)', 'col(price) (float64)');
    throwsType(() => inferField(col('name').fillNull(0).node, schema), 'col(name) (utf8)', 'lit(0) (int32)');
    throwsType(() => inferField(col('name').isIn([1, 2]).node, schema), 'col(name) (utf8)', 'list value 1');
    throwsType(() => inferField(col('d').cast(DataType.float64()).node, schema), 'cannot cast date to float64');
    throwsType(() => inferField(col('name').between(1, 2).node, schema), 'col(name) (utf8)');
    throwsType(() => inferField(col('d').gt('not a date').node, schema), 'not a date');
    throwsType(() => inferField({ op: 'call', fn: 'nope' as 'add', args: [] }, schema), "unknown function 'nope'");
  });

  it('unknown columns raise ColumnNotFoundError listing the columns', () => {
    assert.throws(
      () => inferField(col('nope').add(1).node, schema),
      (e: unknown) => e instanceof ColumnNotFoundError && /'price'/.test(e.message),
    );
  });

  it('UDF nodes use the udfType hook, or fail clearly without it', () => {
    const node: ExprNode = { op: 'udf', name: 'embed', args: [col('name').node] };
    throwsType(() => inferField(node, schema), "UDF 'embed'", 'udfType');
    let seen: Field[] = [];
    const f = inferField(node, schema, {
      udfType: (n, args) => {
        seen = args;
        assert.equal(n.name, 'embed');
        return DataType.list(DataType.float32());
      },
    });
    assert.equal(String(f.type), 'list<float32>');
    assert.equal(f.name, 'name');
    assert.equal(String(seen[0]!.type), 'utf8');
    throwsType(() => evaluate(node, b, schema, { udfType: () => DataType.int32() }), 'executor');
  });

  it('numeric promotion', () => {
    const cases: [string, string, string][] = [
      ['int32', 'int64', 'int64'],
      ['int32', 'float64', 'float64'],
      ['float32', 'float32', 'float32'],
      ['uint8', 'int32', 'int32'],
      ['int8', 'uint8', 'int16'],
      ['uint32', 'int32', 'int64'],
      ['uint64', 'int64', 'float64'],
      ['uint8', 'uint16', 'uint16'],
      ['float32', 'int8', 'float64'],
      ['float32', 'float64', 'float64'],
      ['int16', 'uint16', 'int32'],
      ['uint64', 'uint8', 'uint64'],
    ];
    for (const [a, c, want] of cases) {
      assert.equal(typeOf(col(a).add(col(c)), numBatch), want, `${a} + ${c}`);
      assert.equal(typeOf(col(c).mul(col(a)), numBatch), want, `${c} * ${a}`);
    }
    assert.equal(typeOf(col('int32').div(col('int32')), numBatch), 'float64');
    assert.equal(typeOf(col('float32').div(col('float32')), numBatch), 'float32');
    assert.equal(typeOf(col('int64').div(2), numBatch), 'float64');
  });

  it('weak literals take the column type when the value fits', () => {
    const cases: [Expr, string][] = [
      [col('int64').add(1), 'int64'],
      [col('uint8').add(1), 'uint8'],
      [col('uint8').add(300), 'int32'],
      [col('uint32').add(-1), 'int64'],
      [col('float32').add(1.5), 'float32'],
      [col('float32').mul(2), 'float32'],
      [col('int32').add(1.5), 'float64'],
      [lit(1).add(lit(2)), 'int32'],
      [lit(1).add(lit(2.5)), 'float64'],
      [lit(1).sub(col('int16')), 'int16'],
      [col('int64').fillNull(0), 'int64'],
      [col('int8').add(lit(null)), 'int8'],
      [col('uint64').add(5), 'uint64'],
      [col('int64').add(3000000000), 'float64'],
      [col('int64').add(lit(3000000000n)), 'int64'],
    ];
    for (const [e, want] of cases) assert.equal(typeOf(e, numBatch), want, e.toString());
  });
});

describe('arithmetic', () => {
  const ops = ['add', 'sub', 'mul', 'div', 'mod'] as const;
  for (const [a] of NUMERIC) {
    it(`${a} with every numeric type, both orders, plain and sliced batches`, () => {
      for (const [c] of NUMERIC) {
        const k = promote(a, c);
        for (const op of ops) {
          const e = col(a)[op](col(c));
          const want = numCols[a]![1].map((x, i) => refArith(op, x, numCols[c]![1][i], op === 'div' ? (k === 'float32' ? 'float32' : 'float64') : k));
          assert.deepEqual(ev(e, numBatch), want, e.toString());
          assert.deepEqual(ev(e, numSliced), want, `${e} (sliced)`);
        }
      }
    });
  }

  it('scalar operands on either side, and literal-only expressions broadcast', () => {
    for (const [a] of NUMERIC) {
      const vals = numCols[a]![1];
      for (const op of ops) {
        const k = a; // weak literal: 3 fits every numeric type
        const kk = op === 'div' ? (a === 'float32' ? 'float32' : 'float64') : k;
        const s = 3;
        assert.deepEqual(
          ev(col(a)[op](s), numBatch),
          vals.map((x) => refArith(op, x, s, kk)),
          `${a} ${op} 3`,
        );
        assert.deepEqual(
          ev(lit(s)[op](col(a)), numSliced),
          vals.map((x) => refArith(op, s, x, kk)),
          `3 ${op} ${a}`,
        );
      }
    }
    assert.deepEqual(ev(lit(2).mul(3).add(1), numBatch), Array(N).fill(7));
    assert.deepEqual(ev(lit(7).mod(0), numBatch), Array(N).fill(null));
    assert.deepEqual(ev(col('float64').mul(lit(null)), numBatch), Array(N).fill(null));
    assert.deepEqual(ev(lit(null).add(lit(null)), numBatch), Array(N).fill(null));
  });

  it('overflow wraps, integer mod by zero is null, float division follows IEEE', () => {
    const b = batchOf({
      i: [new arrow.Int32(), [2147483647, -2147483648, 7, -7, null, 65536]],
      j: [new arrow.Int32(), [1, -1, 0, 2, 1, 65536]],
      l: [new arrow.Int64(), [2n ** 63n - 1n, -(2n ** 63n), 7n, -7n, null, 3n]],
      u: [new arrow.Uint8(), [255, 0, 1, 2, 3, 4]],
      f: [new arrow.Float64(), [1, -1, 0, 5.5, null, NaN]],
    });
    assert.deepEqual(ev(col('i').add(col('j')), b), [-2147483648, 2147483647, 7, -5, null, 131072]);
    assert.deepEqual(ev(col('i').mul(col('j')), b), [2147483647, -2147483648, 0, -14, null, 0]);
    assert.deepEqual(ev(col('i').mod(col('j')), b), [0, 0, null, -1, null, 0]);
    assert.deepEqual(ev(col('i').mod(0), b), Array(6).fill(null));
    assert.deepEqual(ev(col('l').add(1), b), [-(2n ** 63n), -(2n ** 63n) + 1n, 8n, -6n, null, 4n]);
    assert.deepEqual(ev(col('l').mod(col('j')), b), [0n, 0n, null, -1n, null, 3n]);
    assert.deepEqual(ev(col('u').add(1), b), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(ev(col('u').sub(2), b), [253, 254, 255, 0, 1, 2]);
    assert.deepEqual(ev(col('i').div(col('j')), b), [2147483647, 2147483648, Infinity, -3.5, null, 1]);
    assert.deepEqual(ev(col('f').div(0), b), [Infinity, -Infinity, NaN, Infinity, null, NaN]);
    assert.deepEqual(ev(col('f').mod(0), b), [NaN, NaN, NaN, NaN, null, NaN]);
    assert.deepEqual(ev(col('f').mod(2), b), [1, -1, 0, 1.5, null, NaN]);
  });

  it('neg on signed and float types; unsigned is a type error', () => {
    for (const [a] of NUMERIC) {
      if (a.startsWith('uint')) {
        throwsType(() => evaluate(col(a).neg().node, numBatch), `col(${a}) (${a})`, 'unsigned');
        continue;
      }
      const want = numCols[a]![1].map((x) => (x === null ? null : a.startsWith('float') ? -(x as number) : refArith('sub', 0, x, a)));
      assert.deepEqual(ev(col(a).neg(), numSliced), want, a);
    }
    throwsType(() => evaluate(lit('x').neg().node, numBatch), 'lit("x") (utf8)');
  });

  it('does not modify its input columns (temporaries are reused, columns never)', () => {
    const before = physicalValues(numBatch.getChild('float64')!.data[0]!);
    ev(col('float64').mul(2).add(1).neg().sub(col('float64')), numBatch);
    ev(col('float64').add(1), numBatch);
    ev(lit(1).sub(col('float64').mul(3)), numBatch);
    assert.deepEqual(physicalValues(numBatch.getChild('float64')!.data[0]!), before);
    const x = numCols['float64']![1];
    assert.deepEqual(
      ev(col('float64').mul(2).add(col('float64').mul(2)), numBatch),
      x.map((v) => (v === null ? null : (v as number) * 2 + (v as number) * 2)),
    );
  });
});

/** Reference comparison: numbers/bigints exactly, strings by UTF-8 bytes (= code points). */
function refCmp(op: string, a: unknown, b: unknown): boolean | null {
  if (a === null || b === null) return null;
  let c: number;
  if (typeof a === 'string') c = Buffer.compare(Buffer.from(a), Buffer.from(b as string));
  else if (a instanceof Uint8Array) c = Buffer.compare(Buffer.from(a), Buffer.from(b as Uint8Array));
  else if (typeof a === 'boolean') c = Number(a) - Number(b);
  else {
    const x = a as number,
      y = b as number;
    if (Number.isNaN(x) || Number.isNaN(y)) return op === 'neq';
    c = x < y ? -1 : x > y ? 1 : 0;
  }
  switch (op) {
    case 'eq':
      return c === 0;
    case 'neq':
      return c !== 0;
    case 'lt':
      return c < 0;
    case 'le':
      return c <= 0;
    case 'gt':
      return c > 0;
    default:
      return c >= 0;
  }
}

describe('comparisons', () => {
  const ops = ['eq', 'neq', 'lt', 'le', 'gt', 'ge'] as const;
  it('every pair of numeric types, exactly (bigint vs number included)', () => {
    for (const [a] of NUMERIC) {
      for (const [c] of NUMERIC) {
        for (const op of ops) {
          const e = col(a)[op](col(c));
          const want = numCols[a]![1].map((x, i) => refCmp(op, x, numCols[c]![1][i]));
          assert.deepEqual(ev(e, numBatch), want, e.toString());
          assert.deepEqual(ev(e, numSliced), want, `${e} (sliced)`);
        }
      }
    }
  });

  it('scalars on either side, weak and fractional literals, against big values', () => {
    for (const [a] of NUMERIC) {
      for (const op of ops) {
        for (const s of [5, 2.5, -1, 3000000000]) {
          const vals = numCols[a]![1];
          assert.deepEqual(
            ev(col(a)[op](s), numBatch),
            vals.map((x) => refCmp(op, x, s)),
            `${a} ${op} ${s}`,
          );
          assert.deepEqual(
            ev(lit(s)[op](col(a)), numSliced),
            vals.map((x) => refCmp(op, s, x)),
            `${s} ${op} ${a}`,
          );
        }
      }
    }
    const b = batchOf({ id: [new arrow.Int64(), [2n ** 53n, 2n ** 53n + 1n, null]] });
    assert.deepEqual(ev(col('id').eq(lit(2n ** 53n + 1n)), b), [false, true, null]);
    assert.deepEqual(ev(col('id').gt(9007199254740992), b), [false, true, null]);
  });

  const strs = ['', 'a', 'ab', 'b', 'B', 'é', 'e', '\uffff', '😀', 'zeta', null, 'Ab', 'abc'];
  const strBatch = batchOf({
    s: [new arrow.Utf8(), strs],
    t: [new arrow.Utf8(), [...strs].reverse()],
    b: [new arrow.Bool(), strs.map((_, i) => (i % 5 === 4 ? null : i % 2 === 0))],
    c: [new arrow.Bool(), strs.map((_, i) => (i % 7 === 6 ? null : i % 3 === 0))],
    x: [new arrow.Binary(), strs.map((s) => (s === null ? null : new TextEncoder().encode(s)))],
    y: [new arrow.Binary(), [...strs].reverse().map((s) => (s === null ? null : new TextEncoder().encode(s)))],
  });
  it('utf8 and binary compare byte-wise (code point order), bools with false < true', () => {
    for (const op of ops) {
      for (const batch of [strBatch, slicedBatchOf({ s: [new arrow.Utf8(), strs], t: [new arrow.Utf8(), [...strs].reverse()] }, 3)]) {
        const s = physicalValues(batch.getChild('s')!.data[0]!),
          t = physicalValues(batch.getChild('t')!.data[0]!);
        assert.deepEqual(
          ev(col('s')[op](col('t')), batch),
          s.map((x, i) => refCmp(op, x, t[i])),
          op,
        );
        assert.deepEqual(
          ev(col('s')[op]('ab'), batch),
          s.map((x) => refCmp(op, x, 'ab')),
          `${op} 'ab'`,
        );
        assert.deepEqual(
          ev(lit('b')[op](col('s')), batch),
          s.map((x) => refCmp(op, 'b', x)),
          `'b' ${op}`,
        );
      }
      const xb = physicalValues(strBatch.getChild('x')!.data[0]!),
        yb = physicalValues(strBatch.getChild('y')!.data[0]!);
      assert.deepEqual(
        ev(col('x')[op](col('y')), strBatch),
        xb.map((v, i) => refCmp(op, v, yb[i])),
        `binary ${op}`,
      );
      const bv = physicalValues(strBatch.getChild('b')!.data[0]!),
        cv = physicalValues(strBatch.getChild('c')!.data[0]!);
      assert.deepEqual(
        ev(col('b')[op](col('c')), strBatch),
        bv.map((v, i) => refCmp(op, v, cv[i])),
        `bool ${op}`,
      );
      assert.deepEqual(
        ev(col('b')[op](true), strBatch),
        bv.map((v) => refCmp(op, v, true)),
        `bool ${op} true`,
      );
      assert.deepEqual(
        ev(lit(false)[op](col('b')), strBatch),
        bv.map((v) => refCmp(op, false, v)),
        `false ${op} bool`,
      );
    }
  });

  it('dates and timestamps: across units, date vs timestamp, string literals parsed', () => {
    const days = [0, 19723, -1, null, 19724];
    const b = batchOf({
      d: [new arrow.DateDay(), days],
      ms: [new arrow.TimestampMillisecond(), [0n, 1704067200000n, -1n, 5n, 1704153600001n]],
      us: [new arrow.TimestampMicrosecond('UTC'), [0n, 1704067200000000n, -1000n, null, 1704153600000000n]],
    });
    assert.deepEqual(ev(col('ms').eq(col('us')), b), [true, true, true, null, false]);
    assert.deepEqual(ev(col('ms').lt(col('us')), b), [false, false, false, null, false]);
    assert.deepEqual(ev(col('d').eq(col('ms')), b), [true, true, false, null, false]);
    assert.deepEqual(ev(col('d').le(col('us')), b), [true, true, true, null, true]);
    assert.deepEqual(ev(col('d').ge('2024-01-01'), b), [false, true, false, null, true]);
    assert.deepEqual(ev(col('ms').gt(lit(new Date(Date.UTC(2024, 0, 1)))), b), [false, false, false, false, true]);
    assert.deepEqual(ev(col('us').lt('2024-01-01T00:00:00.000001Z'), b), [true, true, true, null, false]);
  });
});

describe('three-valued logic', () => {
  const T = [true, true, true, false, false, false, null, null, null];
  const U = [true, false, null, true, false, null, true, false, null];
  const b = batchOf({ a: [new arrow.Bool(), T], b: [new arrow.Bool(), U] });
  const sb = slicedBatchOf({ a: [new arrow.Bool(), T], b: [new arrow.Bool(), U] }, 3);
  it('and / or / not truth tables (columns, sliced)', () => {
    const AND = [true, false, null, false, false, false, null, false, null];
    const OR = [true, true, true, true, false, null, true, null, null];
    for (const batch of [b, sb]) {
      assert.deepEqual(ev(col('a').and(col('b')), batch), AND);
      assert.deepEqual(ev(col('a').or(col('b')), batch), OR);
      assert.deepEqual(ev(col('a').not(), batch), [false, false, false, true, true, true, null, null, null]);
      assert.deepEqual(ev(col('b').and(col('a')), batch), AND);
      assert.deepEqual(ev(col('b').or(col('a')), batch), OR);
    }
  });
  it('with scalar operands', () => {
    assert.deepEqual(ev(col('b').and(false), b), Array(9).fill(false));
    assert.deepEqual(ev(lit(true).or(col('b')), b), Array(9).fill(true));
    assert.deepEqual(ev(col('b').and(true), b), U);
    assert.deepEqual(ev(col('b').or(false), b), U);
    assert.deepEqual(
      ev(col('b').and(lit(null)), b),
      U.map((x) => (x === false ? false : null)),
    );
    assert.deepEqual(
      ev(lit(null).or(col('b')), b),
      U.map((x) => (x === true ? true : null)),
    );
    assert.deepEqual(ev(lit(null).not(), b), Array(9).fill(null));
    assert.deepEqual(ev(lit(false).and(lit(null)), b), Array(9).fill(false));
  });
  it('is_null / not_null are never null', () => {
    assert.deepEqual(
      ev(col('a').isNull(), sb),
      T.map((x) => x === null),
    );
    assert.deepEqual(
      ev(col('a').notNull(), sb),
      T.map((x) => x !== null),
    );
    assert.deepEqual(ev(lit(null).isNull(), b), Array(9).fill(true));
    assert.deepEqual(
      ev(col('float64').isNull(), numSliced),
      numCols['float64']![1].map((x) => x === null),
    );
  });
});

describe('is_in, between, fill_null, if_else', () => {
  const cols: Cols = {
    i: [new arrow.Int32(), [1, 2, 3, null, 5]],
    l: [new arrow.Int64(), [1n, 2n, 2n ** 60n, null, 5n]],
    f: [new arrow.Float32(), [0.1, 0.5, NaN, null, 2]],
    s: [new arrow.Utf8(), ['a', 'é', 'abc', null, '']],
    t: [new arrow.Bool(), [true, false, true, null, false]],
    d: [new arrow.DateDay(), [19723, 0, 1, null, 2]],
    ts: [new arrow.TimestampMillisecond(), [1704067200000n, 0n, 1n, null, 2n]],
    c: [new arrow.Bool(), [true, false, null, true, null]],
    g: [new arrow.Int32(), [10, 20, 30, 40, 50]],
  };
  for (const [label, b] of [
    ['', batchOf(cols)],
    [' (sliced)', slicedBatchOf(cols, 3)],
  ] as const) {
    it(`is_in over numbers, bigints, floats, strings, bools, dates, timestamps; null input -> null${label}`, () => {
      assert.deepEqual(ev(col('i').isIn([1, 5, null]), b), [true, false, false, null, true]);
      assert.deepEqual(ev(col('i').isIn([1.5, 2n]), b), [false, true, false, null, false]);
      assert.deepEqual(ev(col('l').isIn([2n ** 60n, 1]), b), [true, false, true, null, false]);
      assert.deepEqual(ev(col('f').isIn([0.1, NaN]), b), [true, false, false, null, false]);
      assert.deepEqual(ev(col('s').isIn(['é', '', 'ab']), b), [false, true, false, null, true]);
      assert.deepEqual(ev(col('t').isIn([false]), b), [false, true, false, null, true]);
      assert.deepEqual(ev(col('d').isIn(['2024-01-01', new Date(86400000)]), b), [true, false, true, null, false]);
      assert.deepEqual(ev(col('ts').isIn([new Date(Date.UTC(2024, 0, 1)), 2n]), b), [true, false, false, null, true]);
      assert.deepEqual(ev(col('i').isIn([]), b), [false, false, false, null, false]);
      const many = Array.from({ length: 20 }, (_, k) => k * 5);
      assert.deepEqual(ev(col('i').isIn(many), b), [false, false, false, null, true]);
      throwsType(() => evaluate(col('t').isIn([1]).node, b), 'col(t) (bool)');
    });
    it(`between is inclusive; any null operand gives null${label}`, () => {
      assert.deepEqual(ev(col('i').between(2, 5), b), [false, true, true, null, true]);
      assert.deepEqual(ev(col('g').between(col('i'), 30), b), [true, true, true, null, false]);
      assert.deepEqual(ev(col('i').between(lit(null), 3), b), Array(5).fill(null));
      assert.deepEqual(ev(col('l').between(2, 2n ** 60n), b), [false, true, true, null, true]);
      assert.deepEqual(ev(col('s').between('a', 'b'), b), [true, false, true, null, false]);
      assert.deepEqual(ev(col('d').between('1970-01-02', '2030-01-01'), b), [true, false, true, null, true]);
      assert.deepEqual(ev(col('f').between(0, 1), b), [true, true, false, null, false]);
      assert.deepEqual(ev(lit(3).between(col('i'), col('g')), b), [true, true, true, null, false]);
    });
    it(`fill_null with literals, columns, common supertypes, nested values${label}`, () => {
      assert.deepEqual(ev(col('i').fillNull(0), b), [1, 2, 3, 0, 5]);
      assert.deepEqual(ev(col('l').fillNull(-1), b), [1n, 2n, 2n ** 60n, -1n, 5n]);
      assert.deepEqual(typeOf(col('i').fillNull(0.5), b), 'float64');
      assert.deepEqual(ev(col('i').fillNull(0.5), b), [1, 2, 3, 0.5, 5]);
      assert.deepEqual(ev(col('i').fillNull(col('g')), b), [1, 2, 3, 40, 5]);
      assert.deepEqual(ev(col('s').fillNull('?'), b), ['a', 'é', 'abc', '?', '']);
      assert.deepEqual(ev(col('c').fillNull(col('t')), b), [true, false, true, true, false]);
      assert.deepEqual(ev(col('i').fillNull(lit(null)), b), [1, 2, 3, null, 5]);
      assert.deepEqual(ev(lit(null).fillNull(col('g')), b), [10, 20, 30, 40, 50]);
      assert.deepEqual(ev(col('ts').fillNull(col('d')), b), [1704067200000n, 0n, 1n, null, 2n]);
      const n = batchOf({ l: [new arrow.List(item(new arrow.Int32())), [[1], null, []]], m: [new arrow.List(item(new arrow.Int64())), [null, [2n], null]] });
      assert.deepEqual(typeOf(col('l').fillNull(col('m')), n), 'list<int64>');
      assert.deepEqual(ev(col('l').fillNull(col('m')), n), [[1n], [2n], []]);
      const x = numCols['float64']![1];
      assert.deepEqual(
        ev(col('float64').fillNull(-1), numSliced),
        x.map((v) => v ?? -1),
      );
    });
    it(`if_else: null condition takes otherwise; null literal branches; supertypes${label}`, () => {
      assert.deepEqual(ev(col('c').ifElse(col('i'), col('g')), b), [1, 20, 30, null, 50]);
      assert.deepEqual(ev(col('c').ifElse(col('s'), 'no'), b), ['a', 'no', 'no', null, 'no']);
      assert.deepEqual(ev(col('c').ifElse(lit(null), col('g')), b), [null, 20, 30, null, 50]);
      assert.deepEqual(ev(col('c').ifElse(col('l'), 0), b), [1n, 0n, 0n, null, 0n]);
      assert.deepEqual(typeOf(col('c').ifElse(col('i'), 0.5), b), 'float64');
      assert.deepEqual(ev(col('c').ifElse(1, 2), b), [1, 2, 2, 1, 2]);
      assert.deepEqual(ev(lit(true).ifElse(col('g'), 0), b), [10, 20, 30, 40, 50]);
      assert.deepEqual(ev(lit(null).ifElse(col('g'), 0), b), [0, 0, 0, 0, 0]);
      assert.deepEqual(ev(col('c').ifElse(col('t'), false), b), [true, false, false, null, false]);
      assert.deepEqual(ev(col('c').ifElse(col('d'), col('ts')), b), [1704067200000n, 0n, 1n, null, 2n]);
      const n = batchOf({
        c: [new arrow.Bool(), [true, false, null]],
        s1: [new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true)]), [{ a: 1 }, { a: 2 }, null]],
        s2: [new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true)]), [{ a: 9 }, null, { a: 3 }]],
      });
      assert.deepEqual(ev(col('c').ifElse(col('s1'), col('s2')), n), [{ a: 1 }, null, { a: 3 }]);
    });
  }
});

describe('string functions', () => {
  const strs = ['hello', 'Héllo wörld', '', null, 'straße', '日本語テキスト', 'emoji 🎉!', 'ABC def', 'x'.repeat(70)];
  const cols: Cols = { s: [new arrow.Utf8(), strs], p: [new arrow.Utf8(), ['ll', 'wö', '', 'a', null, '本', '🎉', 'DEF', 'xx']] };
  const b = batchOf(cols),
    sb = slicedBatchOf(cols, 5);
  const mapS = (f: (s: string) => unknown) => strs.map((s) => (s === null ? null : f(s)));
  it('length counts code points', () => {
    for (const batch of [b, sb])
      assert.deepEqual(
        ev(col('s').str.length(), batch),
        mapS((s) => [...s].length),
      );
    const ascii = batchOf({ s: [new arrow.Utf8(), ['abc', '', null, 'de']] });
    assert.deepEqual(ev(col('s').str.length(), ascii), [3, 0, null, 2]);
  });
  it('upper / lower: ASCII fast path and full Unicode', () => {
    for (const batch of [b, sb]) {
      assert.deepEqual(
        ev(col('s').str.upper(), batch),
        mapS((s) => s.toUpperCase()),
      );
      assert.deepEqual(
        ev(col('s').str.lower(), batch),
        mapS((s) => s.toLowerCase()),
      );
    }
    const words = Array.from({ length: 50 }, () => maybe(() => Array.from({ length: ri(0, 30) }, () => String.fromCharCode(ri(32, 126))).join('')));
    for (const off of [0, 1, 2, 3]) {
      const ab = slicedBatchOf({ s: [new arrow.Utf8(), words] }, off + 4);
      assert.deepEqual(
        ev(col('s').str.upper(), ab),
        words.map((s) => s?.toUpperCase() ?? null),
      );
      assert.deepEqual(
        ev(col('s').str.lower(), ab),
        words.map((s) => s?.toLowerCase() ?? null),
      );
    }
  });
  it('contains / starts_with / ends_with with literal and column needles', () => {
    for (const batch of [b, sb]) {
      for (const needle of ['l', 'll', 'llo', '', 'ö', '🎉', 'zz', 'x'.repeat(69)]) {
        assert.deepEqual(
          ev(col('s').str.contains(needle), batch),
          mapS((s) => s.includes(needle)),
          `contains ${needle}`,
        );
        assert.deepEqual(
          ev(col('s').str.startsWith(needle), batch),
          mapS((s) => s.startsWith(needle)),
          `starts ${needle}`,
        );
        assert.deepEqual(
          ev(col('s').str.endsWith(needle), batch),
          mapS((s) => s.endsWith(needle)),
          `ends ${needle}`,
        );
      }
      const p = physicalValues(batch.getChild('p')!.data[0]!) as (string | null)[];
      const both = (f: (s: string, q: string) => boolean) => strs.map((s, i) => (s === null || p[i] === null ? null : f(s, p[i]!)));
      assert.deepEqual(
        ev(col('s').str.contains(col('p')), batch),
        both((s, q) => s.includes(q)),
      );
      assert.deepEqual(
        ev(col('s').str.startsWith(col('p')), batch),
        both((s, q) => s.startsWith(q)),
      );
      assert.deepEqual(
        ev(col('s').str.endsWith(col('p')), batch),
        both((s, q) => s.endsWith(q)),
      );
      assert.deepEqual(
        ev(lit('hello world').str.contains(col('p')), batch),
        p.map((q) => (q === null ? null : 'hello world'.includes(q))),
      );
      assert.deepEqual(ev(col('s').str.contains(lit(null)), batch), Array(strs.length).fill(null));
    }
    // a match that straddles two rows must not count
    const st = batchOf({ s: [new arrow.Utf8(), ['ab', 'cd', 'abcd', 'xa', 'bc']] });
    assert.deepEqual(ev(col('s').str.contains('bc'), st), [false, false, true, false, true]);
  });
  it('split -> list<utf8>', () => {
    const sp = ['a,b', '', ',', 'a,,b,', null, 'no-sep', ',x'];
    for (const batch of [batchOf({ s: [new arrow.Utf8(), sp] }), slicedBatchOf({ s: [new arrow.Utf8(), sp] }, 2)]) {
      assert.deepEqual(
        ev(col('s').str.split(','), batch),
        sp.map((s) => (s === null ? null : s.split(','))),
      );
      assert.deepEqual(
        ev(col('s').str.split(',b'), batch),
        sp.map((s) => (s === null ? null : s.split(',b'))),
      );
    }
    assert.equal(typeOf(col('s').str.split(','), b), 'list<utf8>');
    throwsType(() => evaluate(col('x').str.split(',').node, batchOf({ x: [new arrow.Int32(), [1]] })), 'col(x) (int32)');
  });
});

describe('list and struct functions', () => {
  const lists = [[1, 2, 3], [], null, [4], [null, 5]];
  const cols: Cols = {
    l: [new arrow.List(item(new arrow.Int32())), lists],
    ls: [new arrow.List(item(new arrow.Utf8())), [['a', 'b'], null, [], ['c'], [null]]],
    fl: [new arrow.FixedSizeList(2, item(new arrow.Float64())), [[1, 2], [3, null], null, [5, 6], [7, 8]]],
    st: [
      new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true), new arrow.Field('b', new arrow.Utf8(), true)]),
      [{ a: 1, b: 'x' }, null, { a: null, b: 'y' }, { a: 4, b: null }, { a: 5, b: 'z' }],
    ],
    nested: [
      new arrow.Struct([new arrow.Field('inner', new arrow.Struct([new arrow.Field('v', new arrow.Bool(), true)]), true)]),
      [{ inner: { v: true } }, { inner: null }, null, { inner: { v: false } }, { inner: { v: null } }],
    ],
  };
  const b = batchOf(cols),
    sb = slicedBatchOf(cols, 3);
  it('list.length and list.get (negative index, out of range -> null) on list and fixed-size list', () => {
    for (const batch of [b, sb]) {
      assert.deepEqual(ev(col('l').list.length(), batch), [3, 0, null, 1, 2]);
      assert.deepEqual(ev(col('fl').list.length(), batch), [2, 2, null, 2, 2]);
      assert.deepEqual(ev(col('l').list.get(0), batch), [1, null, null, 4, null]);
      assert.deepEqual(ev(col('l').list.get(-1), batch), [3, null, null, 4, 5]);
      assert.deepEqual(ev(col('l').list.get(2), batch), [3, null, null, null, null]);
      assert.deepEqual(ev(col('l').list.get(-4), batch), [null, null, null, null, null]);
      assert.deepEqual(ev(col('ls').list.get(0), batch), ['a', null, null, 'c', null]);
      assert.deepEqual(ev(col('fl').list.get(1), batch), [2, null, null, 6, 8]);
      assert.deepEqual(ev(col('fl').list.get(-2), batch), [1, 3, null, 5, 7]);
      assert.deepEqual(ev(col('fl').list.get(2), batch), [null, null, null, null, null]);
    }
    assert.equal(typeOf(col('ls').list.get(0), b), 'utf8');
  });
  it('struct.get: a null struct row nulls the field; nested access', () => {
    for (const batch of [b, sb]) {
      assert.deepEqual(ev(col('st').struct.get('a'), batch), [1, null, null, 4, 5]);
      assert.deepEqual(ev(col('st').struct.get('b'), batch), ['x', null, 'y', null, 'z']);
      assert.deepEqual(ev(col('nested').struct.get('inner').struct.get('v'), batch), [true, null, null, false, null]);
    }
    // no struct nulls: the child Data is returned as is
    const plain = batchOf({ st: [new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true)]), [{ a: 1 }, { a: 2 }]] });
    assert.equal(evaluate(col('st').struct.get('a').node, plain).values, plain.getChild('st')!.data[0]!.children[0]!.values);
  });
});

describe('cast expressions', () => {
  const b = batchOf({
    s: [new arrow.Utf8(), ['1', '2', 'abc', null]],
    i: [new arrow.Int64(), [1n, -1n, 300n, null]],
    f: [new arrow.Float64(), [1.9, -2.5, NaN, null]],
  });
  it('runs the cast kernel and reports bad values with the column', () => {
    assert.deepEqual(ev(col('i').cast(DataType.uint8()), b), [1, null, null, null]);
    assert.deepEqual(ev(col('f').cast(DataType.int32()), b), [1, -2, null, null]);
    assert.deepEqual(ev(col('i').cast(DataType.utf8()), b), ['1', '-1', '300', null]);
    assert.deepEqual(ev(lit('42').cast(DataType.int32()).add(1), b), [43, 43, 43, 43]);
    assert.throws(
      () => evaluate(col('s').cast(DataType.int32()).node, b),
      (e: unknown) => {
        assert.ok(e instanceof CastError);
        assert.match(e.message, /col\(s\) \(utf8\) to int32/);
        assert.match(e.message, /"abc"/);
        assert.equal(e.value, 'abc');
        return true;
      },
    );
    throwsType(() => evaluate(lit('abc').cast(DataType.int32()).node, b), 'lit("abc")', 'int32');
    throwsType(() => inferField(col('f').cast(DataType.date()).node, schemaOf(b)), 'float64', 'date');
  });
});

describe('evaluate', () => {
  it('result type is exactly inferField(...).type.toArrow(), for every function', () => {
    const b = batchOf({
      x: [new arrow.Float64(), [1, null]],
      i: [new arrow.Int64(), [1n, 2n]],
      s: [new arrow.Utf8(), ['a', null]],
      l: [new arrow.List(new arrow.Field('element', new arrow.Int32(), true)), [[1], null]],
      st: [new arrow.Struct([new arrow.Field('a', new arrow.List(item(new arrow.Utf8())), true)]), [{ a: ['x'] }, null]],
    });
    const schema = schemaOf(b);
    const exprs: Expr[] = [
      col('x'),
      col('l'),
      col('x').add(1),
      col('i').mul(col('x')),
      col('i').div(2),
      col('x').neg(),
      col('i').mod(2),
      col('x').gt(0),
      col('s').eq('a'),
      col('x').gt(0).and(col('s').isNull()),
      col('x').isIn([1]),
      col('x').between(0, 1),
      col('x').fillNull(0),
      col('x').gt(0).ifElse(col('l'), lit(null)),
      col('s').str.length(),
      col('s').str.upper(),
      col('s').str.contains('a'),
      col('s').str.split(','),
      col('l').list.length(),
      col('l').list.get(0),
      col('st').struct.get('a'),
      col('i').cast(DataType.timestamp('ns', 'UTC')),
      lit([1, 2]),
      lit({ a: 1 }),
      lit(new Date(0)),
      lit(null),
      lit(new Uint8Array([1])),
    ];
    for (const e of exprs) {
      const d = evaluate(e.node, b);
      const want = inferField(e.node, schema).type.toArrow();
      assert.equal(d.length, 2, e.toString());
      assert.ok(arrow.util.compareTypes(d.type, want), `${e}: ${String(d.type)} vs ${String(want)}`);
      assert.equal(String(d.type), String(want));
      if (d.typeId === arrow.Type.List) assert.equal((d.type as arrow.List).children[0]!.name, 'item', e.toString());
    }
  });

  it('literal expressions broadcast to the batch length (including 0 rows)', () => {
    const b = batchOf({ x: [new arrow.Int32(), [1, 2, 3]] });
    assert.deepEqual(ev(lit(5), b), [5, 5, 5]);
    assert.deepEqual(ev(lit('s'), b), ['s', 's', 's']);
    assert.deepEqual(ev(lit([1, null]), b), [
      [1, null],
      [1, null],
      [1, null],
    ]);
    assert.deepEqual(ev(lit(null), b), [null, null, null]);
    const empty = batchOf({ x: [new arrow.Int32(), []] });
    assert.deepEqual(ev(lit(5).add(1), empty), []);
  });

  it('empty batches through every function', () => {
    const e = batchOf({
      x: [new arrow.Float64(), []],
      s: [new arrow.Utf8(), []],
      b: [new arrow.Bool(), []],
      l: [new arrow.List(item(new arrow.Int32())), []],
      st: [new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true)]), []],
    });
    const exprs: Expr[] = [
      col('x').add(1),
      col('x').div(col('x')),
      col('x').neg(),
      col('x').lt(1),
      col('b').and(col('b')),
      col('b').not(),
      col('x').isNull(),
      col('x').isIn([1]),
      col('x').between(0, 1),
      col('x').fillNull(0),
      col('b').ifElse(col('x'), 0),
      col('s').str.length(),
      col('s').str.upper(),
      col('s').str.contains('a'),
      col('s').str.split(','),
      col('l').list.length(),
      col('l').list.get(0),
      col('st').struct.get('a'),
      col('x').cast(DataType.utf8()),
    ];
    for (const ex of exprs) assert.deepEqual(ev(ex, e), [], ex.toString());
  });

  it('uses a given schema and conforms columns to it', () => {
    const b = batchOf({ x: [new arrow.Int32(), [1, 2]] });
    const schema = new Schema([new Field('x', DataType.int64())]);
    const d = evaluate(col('x').add(1).node, b, schema);
    assert.equal(String(d.type), 'Int64');
    assert.deepEqual(physicalValues(d), [2n, 3n]);
    assert.throws(() => evaluate(col('y').node, b, new Schema([new Field('y', DataType.int32())])), ColumnNotFoundError);
  });
});

// ---------- batch operations ----------
const ALL_TYPES: Cols = {
  i: [new arrow.Int64(), [1n, 2n, 3n, 4n, 5n, 6n]],
  x: [new arrow.Float64(), [0.1, 0.9, null, 0.7, 0.2, 0.6]],
  s: [new arrow.Utf8(), ['a', 'bb', null, 'dddd', 'é', '']],
  t: [new arrow.Bool(), [true, null, false, true, false, true]],
  l: [new arrow.List(item(new arrow.Int32())), [[1], [], null, [2, 3], [4, null], [5]]],
  st: [
    new arrow.Struct([new arrow.Field('a', new arrow.Int32(), true), new arrow.Field('l', new arrow.List(item(new arrow.Utf8())), true)]),
    [{ a: 1, l: ['x'] }, null, { a: 3, l: null }, { a: 4, l: [] }, { a: null, l: ['y', 'z'] }, { a: 6, l: ['w'] }],
  ],
  fl: [new arrow.FixedSizeList(2, item(new arrow.Int32())), [[1, 2], [3, 4], null, [5, null], [7, 8], [9, 10]]],
};
const rowsOf = (b: arrow.RecordBatch) => b.schema.fields.map((f, j) => [f.name, physicalValues(b.data.children[j]!)] as const);
const colVals = (name: string, idx: number[]) => idx.map((i) => ALL_TYPES[name]![1][i] as PhysicalValue);

describe('filterBatch / takeBatch', () => {
  const b = batchOf(ALL_TYPES),
    sb = slicedBatchOf(ALL_TYPES, 4);
  it('keeps rows where the predicate is true; null predicate rows are dropped', () => {
    for (const batch of [b, sb]) {
      const out = filterBatch(batch, col('x').gt(0.5).node);
      const keep = [1, 3, 5];
      assert.equal(out.numRows, 3);
      for (const [name, vals] of rowsOf(out)) assert.deepEqual(vals, colVals(name, keep), name);
      assert.ok(arrow.util.compareSchemas(out.schema, batch.schema));
    }
  });
  it('returns the batch itself when every row passes, an empty batch when none does', () => {
    assert.equal(filterBatch(b, col('i').gt(0).node), b);
    assert.equal(filterBatch(b, lit(true).node), b);
    const none = filterBatch(sb, col('i').gt(100).node);
    assert.equal(none.numRows, 0);
    assert.equal(none.schema.fields.length, 7);
    assert.equal(filterBatch(b, lit(null).node).numRows, 0);
    assert.equal(filterBatch(batchOf({ x: [new arrow.Int32(), []] }), col('x').gt(1).node).numRows, 0);
  });
  it('rejects non-bool predicates', () => {
    throwsType(() => filterBatch(b, col('x').add(1).node), 'col(x) + lit(1) (float64)', 'bool');
  });
  it('takeBatch gathers every column type, negative index -> null row', () => {
    for (const batch of [b, sb]) {
      const out = takeBatch(batch, Int32Array.from([5, 0, -1, 2, 2]));
      for (const [name, vals] of rowsOf(out)) {
        assert.deepEqual(
          vals,
          [5, 0, -1, 2, 2].map((i) => (i < 0 ? null : (ALL_TYPES[name]![1][i] as PhysicalValue))),
          name,
        );
      }
    }
    assert.equal(takeBatch(b, new Int32Array(0)).numRows, 0);
  });
});

describe('explodeBatch', () => {
  it('one row per element, other columns repeated; null or empty list -> one null row', () => {
    for (const batch of [batchOf(ALL_TYPES), slicedBatchOf(ALL_TYPES, 2)]) {
      const out = explodeBatch(batch, ['l']);
      const rows = [0, 1, 2, 3, 3, 4, 4, 5];
      assert.equal(out.numRows, 8);
      for (const [name, vals] of rowsOf(out)) {
        if (name === 'l') assert.deepEqual(vals, [1, null, null, 2, 3, 4, null, 5]);
        else assert.deepEqual(vals, colVals(name, rows), name);
      }
      assert.equal(String(out.schema.fields.find((f) => f.name === 'l')!.type), 'Int32');
      const fx = explodeBatch(batch, ['fl']);
      assert.deepEqual(physicalValues(fx.getChild('fl')!.data[0]!), [1, 2, 3, 4, null, 5, null, 7, 8, 9, 10]);
      assert.deepEqual(physicalValues(fx.getChild('i')!.data[0]!), [1n, 1n, 2n, 2n, 3n, 4n, 4n, 5n, 5n, 6n, 6n]);
    }
  });
  it('several columns explode together when their lengths match', () => {
    const b = batchOf({
      id: [new arrow.Int32(), [1, 2, 3]],
      a: [new arrow.List(item(new arrow.Utf8())), [['x', 'y'], null, []]],
      c: [new arrow.List(item(new arrow.Float64())), [[1, 2], [], null]],
    });
    const out = explodeBatch(b, ['a', 'c']);
    assert.deepEqual(rowsOf(out), [
      ['id', [1, 1, 2, 3]],
      ['a', ['x', 'y', null, null]],
      ['c', [1, 2, null, null]],
    ]);
    const bad = batchOf({ a: [new arrow.List(item(new arrow.Int32())), [[1], [1, 2]]], c: [new arrow.List(item(new arrow.Int32())), [[1], [1]]] });
    assert.throws(() => explodeBatch(bad, ['a', 'c']), /'a' \(2 elements\) and 'c' \(1 elements\).*row 1/);
  });
  it('errors on non-list columns; handles empty batches; single-element rows reuse other columns', () => {
    throwsType(() => explodeBatch(batchOf(ALL_TYPES), ['s']), 'col(s) (utf8)', 'list');
    const e = explodeBatch(batchOf({ l: [new arrow.List(item(new arrow.Int32())), []], x: [new arrow.Int32(), []] }), ['l']);
    assert.equal(e.numRows, 0);
    const one = batchOf({ l: [new arrow.List(item(new arrow.Int32())), [[1], [2]]], x: [new arrow.Utf8(), ['a', 'b']] });
    const o = explodeBatch(one, ['l']);
    assert.equal(o.getChild('x')!.data[0]!, one.getChild('x')!.data[0]!);
  });
});

describe('projectBatch / concatBatches', () => {
  it('evaluates into the output schema; bare columns are reused without copying', () => {
    const b = batchOf(ALL_TYPES);
    const out = projectBatch(
      b,
      [col('s').node, col('x').mul(2).alias('x2').node, col('i').node],
      new Schema([new Field('s', DataType.utf8()), new Field('x2', DataType.float64()), new Field('id', DataType.float64())]),
    );
    assert.deepEqual(
      out.schema.fields.map((f) => f.name),
      ['s', 'x2', 'id'],
    );
    assert.equal(out.data.children[0]!.values, b.getChild('s')!.data[0]!.values);
    assert.equal(out.data.children[0]!.valueOffsets, b.getChild('s')!.data[0]!.valueOffsets);
    assert.deepEqual(physicalValues(out.data.children[1]!), [0.2, 1.8, null, 1.4, 0.4, 1.2]);
    assert.deepEqual(physicalValues(out.data.children[2]!), [1, 2, 3, 4, 5, 6]);
    assert.equal(out.numRows, 6);
    const empty = projectBatch(batchOf({ x: [new arrow.Int32(), []] }), [lit(1).node], new Schema([new Field('one', DataType.int32())]));
    assert.equal(empty.numRows, 0);
  });
  it('concatenates batches (columns matched by name; sliced batches; none at all)', () => {
    const a = batchOf(ALL_TYPES),
      c = slicedBatchOf(ALL_TYPES, 3);
    const schema = Schema.fromArrow(a.schema);
    const out = concatBatches([a, c, a.slice(2, 4)], schema);
    assert.equal(out.numRows, 14);
    for (const [name, vals] of rowsOf(out)) {
      const v = ALL_TYPES[name]![1] as PhysicalValue[];
      assert.deepEqual(vals, [...v, ...v, ...v.slice(2, 4)], name);
    }
    const reordered = new Schema([schema.field('s'), schema.field('i')]);
    assert.deepEqual(
      rowsOf(concatBatches([a], reordered)).map(([n]) => n),
      ['s', 'i'],
    );
    const none = concatBatches([], schema);
    assert.equal(none.numRows, 0);
    assert.equal(none.schema.fields.length, 7);
  });
});

describe('interop', () => {
  it('kernel results (from sliced inputs) survive an Arrow IPC round trip', () => {
    const b = batchOf({
      x: [new arrow.Float64(), [0.1, null, 0.7, 0.9, 2]],
      s: [new arrow.Utf8(), ['ab', 'Héllo', null, 'xyz', 'q']],
      l: [new arrow.List(item(new arrow.Int32())), [[1, 2], null, [], [3], [null]]],
      i: [new arrow.Int64(), [1n, 2n, null, 4n, 5n]],
      t: [new arrow.Bool(), [true, null, false, true, true]],
    }).slice(1, 5);
    const exprs = [
      col('x').mul(2),
      col('s').str.upper(),
      col('s').str.split('l'),
      col('l').list.get(0),
      col('x').gt(0.5),
      col('i').add(1),
      col('s'),
      col('x').cast(DataType.utf8()),
      col('x').fillNull(0),
      col('t').and(col('x').gt(1)),
      col('l'),
    ];
    const schema = schemaOf(b);
    const out = projectBatch(
      b,
      exprs.map((e) => e.node),
      new Schema(exprs.map((e, i) => new Field(`c${i}`, inferField(e.node, schema).type))),
    );
    for (const batch of [out, filterBatch(b, col('x').gt(0.5).node), explodeBatch(b, ['l'])]) {
      const back = arrow.tableFromIPC(arrow.tableToIPC(new arrow.Table(batch))).batches[0]!;
      assert.equal(back.numRows, batch.numRows);
      for (let j = 0; j < batch.numCols; j++) assert.deepEqual(physicalValues(back.data.children[j]!), physicalValues(batch.data.children[j]!));
    }
  });
});

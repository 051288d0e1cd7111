// Type-level tests (checked by `npm run typecheck`, never executed): a UDF call's value type is what
// arrives at runtime (issue 10 item 1): nullable under onError 'null' / 'log' and for a generator
// that may yield nothing (onEmpty 'null', the default); a cls method's returnDtype is checked
// against the method's return type, as func's is.
import type * as arrow from 'apache-arrow';
import { cls, type ClsOptions, DataType, type Expr, fromColumns, func, type OnError } from 'fanout';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function expectType<T extends true>(_?: T): void { /* compile-time only */ }
type ValueOfExpr<E> = E extends Expr<infer T> ? T : never;

const df = fromColumns({ x: [1, 2], id: [1n, 2n], s: ['a', 'b'] });

// The example: on an int64 column a (x: number) UDF is a compile error; on JS numbers it is fine.
const twice = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'tv.twice' });
df.withColumn('y', twice(df.col('x')));
// @ts-expect-error 'id' holds bigints (int64): x * 2 would throw "Cannot mix BigInt and other types"
df.withColumn('y', twice(df.col('id')));

// onError: 'raise' (the default) never yields null; 'null' and 'log' do.
expectType<Equal<ValueOfExpr<ReturnType<typeof twice>>, number>>();
const orNull = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'tv.orNull', onError: 'null' });
expectType<Equal<ValueOfExpr<ReturnType<typeof orNull>>, number | null>>();
const logged = func(async (x: number) => x * 2, { returnDtype: DataType.float64(), name: 'tv.logged', onError: 'log' });
expectType<Equal<ValueOfExpr<ReturnType<typeof logged>>, number | null>>();
const raised = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'tv.raised', onError: 'raise' });
expectType<Equal<ValueOfExpr<ReturnType<typeof raised>>, number>>();
declare const someOnError: OnError;
const maybe = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'tv.maybe', onError: someOnError });
expectType<Equal<ValueOfExpr<ReturnType<typeof maybe>>, number | null>>();
// A nullable output cannot feed a parameter that does not take null.
// @ts-expect-error orNull(...) may be null
df.withColumn('z', twice(orNull(df.col('x'))));
async function rows(): Promise<void> {
  const r = await df.withColumn('y', orNull(df.col('x'))).toRows();
  // @ts-expect-error the column may hold null
  const y: number = r[0]!.y;
  const ok: number | null = r[0]!.y;
  void y; void ok;
}
void rows;

// Batch UDFs too.
const batchNull = func.batch((v: arrow.Vector) => new Float64Array(v.length), { returnDtype: DataType.float64(), name: 'tv.batchNull', onError: 'null' });
expectType<Equal<ValueOfExpr<ReturnType<typeof batchNull>>, number | null>>();
const batchRaise = func.batch((v: arrow.Vector) => new Float64Array(v.length), { returnDtype: DataType.float64(), name: 'tv.batchRaise' });
expectType<Equal<ValueOfExpr<ReturnType<typeof batchRaise>>, number>>();

// Generators: a row yielding nothing gives null unless onEmpty is 'drop'.
const gen = func(function* (s: string) { yield s; }, { returnDtype: DataType.utf8(), name: 'tv.gen' });
expectType<Equal<ValueOfExpr<ReturnType<typeof gen>>, string | null>>();
const genDrop = func(function* (s: string) { yield s; }, { returnDtype: DataType.utf8(), name: 'tv.genDrop', onEmpty: 'drop' });
expectType<Equal<ValueOfExpr<ReturnType<typeof genDrop>>, string>>();

// cls: a method's returnDtype must accept what the method returns (today also checked at runtime).
class Model {
  constructor(readonly path: string) {}
  score(x: number): number { return x; }
  label(x: number): string { return String(x); }
  async tags(s: string): Promise<string[]> { return [s]; }
  embed(v: arrow.Vector): Float32Array { return new Float32Array(v.length); }
  *split(s: string): Generator<string> { yield* s.split(','); }
}
cls(Model, { methods: { score: { returnDtype: DataType.float64() }, label: { returnDtype: DataType.utf8() } } });
// @ts-expect-error score returns a number, not a string
cls(Model, { methods: { score: { returnDtype: DataType.utf8() } } });
// @ts-expect-error label returns a string, not float64
cls(Model, { methods: { label: { returnDtype: DataType.float64() } } });
// @ts-expect-error an async method is unwrapped: string[] is not list<float64>
cls(Model, { methods: { tags: { returnDtype: DataType.list(DataType.float64()) } } });
cls(Model, { methods: { tags: { returnDtype: DataType.list(DataType.utf8()) } } });
// A batch method: its result's elements (a Float32Array: numbers).
cls(Model, { methods: { embed: { batch: true, returnDtype: DataType.float32() } } });
// @ts-expect-error Float32Array elements are numbers, not strings
cls(Model, { methods: { embed: { batch: true, returnDtype: DataType.utf8() } } });

// Method value types: the method's result, nullable under onError 'null' / 'log' (its own or the class's).
const M = cls(Model, {
  onError: 'log',
  methods: { score: { returnDtype: DataType.float64(), onError: 'raise' }, label: { returnDtype: DataType.utf8() }, tags: { returnDtype: DataType.list(DataType.utf8()) } },
});
const m = new M('m.onnx');
expectType<Equal<ValueOfExpr<ReturnType<typeof m.score>>, number>>();
expectType<Equal<ValueOfExpr<ReturnType<typeof m.label>>, string | null>>();
expectType<Equal<ValueOfExpr<ReturnType<typeof m.tags>>, string[] | null>>();
// Only configured methods become UDFs.
// @ts-expect-error 'embed' was not configured
void m.embed;
const N = cls(Model, { methods: { score: { returnDtype: DataType.float64(), onError: 'null' }, embed: { batch: true, returnDtype: DataType.float32() } } });
const n = new N('m.onnx');
expectType<Equal<ValueOfExpr<ReturnType<typeof n.score>>, number | null>>();
expectType<Equal<ValueOfExpr<ReturnType<typeof n.embed>>, number>>();
// All methods with a class-level returnDtype.
const all = new (cls(Model, { returnDtype: DataType.float64() }))('m.onnx');
void all.score; void all.label;

// Generator methods: null for a row yielding nothing unless onEmpty is 'drop' (the method's or the class's).
const g = new (cls(Model, { methods: { split: { returnDtype: DataType.utf8() } } }))('m.onnx');
expectType<Equal<ValueOfExpr<ReturnType<typeof g.split>>, string | null>>();
const gd = new (cls(Model, { onEmpty: 'drop', methods: { split: { returnDtype: DataType.utf8() } } }))('m.onnx');
expectType<Equal<ValueOfExpr<ReturnType<typeof gd.split>>, string>>();
// Options from a variable typed ClsOptions: whatever it may hold, so onError may give null.
const loose: ClsOptions<Model> = { methods: { score: { returnDtype: DataType.float64() } } };
const l = new (cls(Model, loose))('m.onnx');
expectType<Equal<ValueOfExpr<ReturnType<typeof l.score>>, number | null>>();

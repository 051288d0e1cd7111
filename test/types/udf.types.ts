// Type-level tests of the UDF API (checked by `npm run typecheck`, never executed).
import type * as arrow from 'apache-arrow';
import { cls, col, DataType, fromRecords, func } from 'fanout';

// The declared return type must accept what the function returns.
func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 't1' });
// @ts-expect-error a string is not float64
func((x: number) => x.toFixed(1), { returnDtype: DataType.float64(), name: 't2' });
func(async (x: number) => String(x), { returnDtype: DataType.utf8(), name: 't3' });
// @ts-expect-error async result is unwrapped: string is not bool
func(async (x: number) => String(x), { returnDtype: DataType.bool(), name: 't4' });
func(function* (s: string) { yield s.length; }, { returnDtype: DataType.int32(), name: 't5' });
// @ts-expect-error generator yields numbers, not strings
func(function* (s: string) { yield s.length; }, { returnDtype: DataType.utf8(), name: 't6' });
// int64 columns accept bigint and number
func((x: number) => BigInt(x), { returnDtype: DataType.int64(), name: 't7' });
// structs and lists
func((s: string) => ({ a: s, b: 1 }), { returnDtype: DataType.struct({ a: DataType.utf8(), b: DataType.float64() }), name: 't8' });
func((s: string) => s.split(','), { returnDtype: DataType.list(DataType.utf8()), name: 't9' });
// @ts-expect-error list of strings is not list of floats
func((s: string) => s.split(','), { returnDtype: DataType.list(DataType.float64()), name: 't10' });
// A batch UDF may return a typed array.
func.batch((v: arrow.Vector) => new Float64Array(v.length), { returnDtype: DataType.float64(), name: 't11' });

// Arguments are checked against column types where TypeScript knows them.
const df = fromRecords([{ name: 'a', price: 1.5 }]);
const half = func((x: number) => x / 2, { returnDtype: DataType.float64(), name: 't12' });
df.withColumn('h', half(df.col('price')));
df.withColumn('h', half(col('price'))); // untyped col(): accepted
df.withColumn('h', half(3)); // constants pass through
// @ts-expect-error 'name' is a string column
df.withColumn('h', half(df.col('name')));
// @ts-expect-error a string constant for a number parameter
df.withColumn('h', half('3'));
const typed = df.withColumn('h', half(df.col('price')));
async function check(): Promise<void> {
  const r = await typed.toRows();
  const h: number = r[0]!.h;
  void h;
}
void check;

// cls: methods become UDFs with the method's argument types.
class Model {
  constructor(readonly path: string) {}
  score(x: number): number { return x; }
}
const M = cls(Model, { methods: { score: { returnDtype: DataType.float64() } } });
const m = new M('model.onnx');
df.withColumn('s', m.score(df.col('price')));
// @ts-expect-error constructor arguments are checked
new M(42);
// @ts-expect-error method argument types are checked
df.withColumn('s', m.score(df.col('name')));

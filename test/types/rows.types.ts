// Type-level tests (checked by `npm run typecheck`, never executed): the static row types of the
// in-memory sources are what arrives at runtime (issue 10 item 1). JS numbers are float64 and come
// back as numbers, bigints are int64 and come back as bigints, typed arrays map to their Arrow type.
import { col, DataType, fromColumns, fromRecords, func, readParquet, Schema, Field } from 'fanout';

/** Exact type equality (mutual assignability is too loose for unions with null). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function expectType<T extends true>(_?: T): void { /* compile-time only */ }
type RowOf<D> = D extends { toRows(): Promise<(infer R)[]> } ? R : never;

const double = func((x: number) => x * 2, { returnDtype: DataType.float64(), name: 'types.rows.double' });
const inc = func((x: bigint) => x + 1n, { returnDtype: DataType.int64(), name: 'types.rows.inc' });

// fromColumns of JS numbers: float64, number rows; a (x: number) UDF is fine.
const nums = fromColumns({ x: [1, 2] });
nums.withColumn('y', double(nums.col('x')));
nums.withColumn('y', double(col('x')));
expectType<Equal<RowOf<typeof nums>, { x: number }>>();

// bigint / BigInt64Array columns are int64: rows hold bigints, and a (x: number) UDF is a compile error.
const bigs = fromColumns({ x: [1n, 2n], t: new BigInt64Array(2), u: new BigUint64Array(2) });
expectType<Equal<RowOf<typeof bigs>, { x: bigint; t: bigint; u: bigint }>>();
// @ts-expect-error an int64 column holds bigints, not numbers
bigs.withColumn('y', double(bigs.col('x')));
// @ts-expect-error BigInt64Array is int64
bigs.withColumn('y', double(bigs.col('t')));
bigs.withColumn('y', inc(bigs.col('x')));
// @ts-expect-error a (x: bigint) UDF on a float64 column
nums.withColumn('y', inc(nums.col('x')));

// Typed arrays: their Arrow type, all number except the 64-bit ones.
const typed = fromColumns({ i: new Int32Array(1), f: new Float32Array(1), b: new Uint8Array(1), l: [new Float32Array(2)], bl: [new BigInt64Array(1)], bin: [new Uint8Array(1)] });
expectType<Equal<RowOf<typeof typed>, { i: number; f: number; b: number; l: number[]; bl: bigint[]; bin: Uint8Array }>>();

// fromRecords: the same mapping, nested; undefined and missing keys come back as null.
const recs = fromRecords([{ n: 1, b: 2n, s: 'a', d: new Date(0), l: [1.5], o: { k: 1, m: 2n }, opt: undefined as string | undefined, emb: new Float64Array(2) }]);
expectType<Equal<RowOf<typeof recs>, {
  n: number; b: bigint; s: string; d: Date; l: number[]; o: { k: number; m: bigint }; opt: string | null; emb: number[];
}>>();
recs.withColumn('y', double(recs.col('n')));
// @ts-expect-error 'b' is an int64 (bigint) column
recs.withColumn('y', double(recs.col('b')));
const optional: { a: number; z?: string }[] = [{ a: 1 }];
const optRecs = fromRecords(optional);
expectType<Equal<RowOf<typeof optRecs>, { a: number; z: string | null }>>();

// With a schema the values are converted to its types: the row type is the caller's to state.
const schema = new Schema([new Field('x', DataType.int64(), true)]);
const withSchema = fromRecords<{ x: bigint }>([{ x: 1 }], schema);
expectType<Equal<RowOf<typeof withSchema>, { x: bigint }>>();
// @ts-expect-error the int64 column holds bigints
withSchema.withColumn('y', double(withSchema.col('x')));
const untypedCols = fromColumns({ x: [1] }, schema);
expectType<Equal<RowOf<typeof untypedCols>, Record<string, unknown>>>();

// readParquet rows are unknown unless stated.
const pq = readParquet('never-read.parquet');
expectType<Equal<RowOf<typeof pq>, Record<string, unknown>>>();

// Type-level tests (checked by `npm run typecheck`, never executed): result rows of groupBy/agg,
// distinct, sort, join and concat (issue 13 item 1).
import { fromRecords } from 'fanout';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function expectType<T extends true>(_?: T): void {
  /* compile-time only */
}
type RowOf<D> = D extends { toRows(): Promise<(infer R)[]> } ? R : never;

const sales = fromRecords([{ region: 'eu', amount: 1, n: 1n }]);
const names = fromRecords([{ region: 'eu', name: 'Europe' }]);

// Keys keep their types; each aggregate is named by its alias and nullable (SQL), but for the counts (0 over no rows).
const g = sales.groupBy('region').agg(sales.col('amount').sum().alias('total'), sales.col('n').sum().alias('nsum'), sales.col('amount').count().alias('c'));
expectType<Equal<RowOf<typeof g>, { region: string; total: number | bigint | null; nsum: bigint | null; c: bigint }>>();
const counts = sales.agg(sales.col('n').countDistinct().alias('d'), sales.col('n').count().alias('c'), sales.col('n').max().alias('m'));
expectType<Equal<RowOf<typeof counts>, { d: bigint; c: bigint; m: bigint | null }>>();

const whole = sales.agg(sales.col('amount').mean().alias('m'), sales.col('region').list().alias('all'));
expectType<Equal<RowOf<typeof whole>, { m: number | null; all: (string | null)[] | null }>>();

// distinct, sort, concat keep the row type.
expectType<Equal<RowOf<ReturnType<typeof sales.distinct>>, RowOf<typeof sales>>>();
expectType<Equal<RowOf<ReturnType<typeof sales.sort>>, RowOf<typeof sales>>>();
expectType<Equal<RowOf<ReturnType<typeof sales.concat>>, RowOf<typeof sales>>>();

// Joins: inner adds the right columns; left makes them nullable; semi keeps the left rows.
const inner = sales.join(names, { on: 'region' });
expectType<Equal<RowOf<typeof inner>, { region: string; amount: number; n: bigint; name: string }>>();
const left = sales.join(names, { on: 'region', how: 'left' });
expectType<Equal<RowOf<typeof left>, { region: string; amount: number; n: bigint; name: string | null }>>();
const semi = sales.join(names, { on: 'region', how: 'semi' });
expectType<Equal<RowOf<typeof semi>, RowOf<typeof sales>>>();

// @ts-expect-error a key that is not a column
sales.groupBy('nope');

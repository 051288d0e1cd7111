// Type-level tests: checked by `npm run typecheck` (tsc), never executed. Each @ts-expect-error
// line must be an error, so the typed DataFrame API cannot silently degrade to `any`.
import { col, fromRecords, lit, type DataFrame } from 'fanout';

const df = fromRecords([{ id: 1n, name: 'a', price: 1.5, tags: ['x'] }]);

// Column names are checked against the row type.
df.col('name');
// @ts-expect-error typo'd column
df.col('nmae');
// @ts-expect-error unknown column in select
df.select('nope');
// @ts-expect-error unknown column in exclude
df.exclude('nope');
// @ts-expect-error only list columns... and only existing ones in explode
df.explode('missing');

// The row type flows through transforms.
const narrowed = df.select('id', 'price');
// @ts-expect-error 'name' was not selected
narrowed.col('name');

const added = df.withColumn('double', df.col('price').mul(2));
const d: DataFrame<{ id: bigint; name: string; price: number; tags: string[]; double: number }> = added;
void d;
// @ts-expect-error 'price' was excluded
df.exclude('price').col('price');

const exploded = df.explode('tags');
async function rows(): Promise<void> {
  const r = await exploded.toRows();
  const tag: string = r[0]!.tags;
  // @ts-expect-error after explode, tags is an element, not an array
  const arr: string[] = r[0]!.tags;
  void tag; void arr;
  const typed = await df.toRows();
  const id: bigint = typed[0]!.id;
  // @ts-expect-error int64 columns come back as bigint
  const idNum: number = typed[0]!.id;
  void id; void idNum;
}
void rows;

// Expressions: comparisons yield boolean expressions usable in where().
df.where(df.col('price').gt(lit(1)).and(col('name').eq('a')));
// @ts-expect-error alias needs a string
df.col('price').alias(3);

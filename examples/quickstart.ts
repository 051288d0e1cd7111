// Quick start: generates a small orders dataset (once), then runs a lazy pipeline with a row-wise,
// a batch and a stateful UDF on the embedded runner, and shows the plan, the result and the metrics.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { col, fromColumns, readParquet } from 'fanout';
import { bucket, Scorer, withTax } from './udfs.ts';

const dataDir = join(import.meta.dirname, 'data', 'orders');

async function generate(): Promise<void> {
  const n = 200_000;
  const regions = ['north', 'south', 'east', 'west'];
  const id = new BigInt64Array(n);
  const amount = new Float64Array(n);
  const region: string[] = new Array(n);
  let s = 42;
  const rand = (): number => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < n; i++) {
    id[i] = BigInt(i);
    amount[i] = Math.round(rand() * 100_000) / 100;
    region[i] = regions[Math.floor(rand() * 4)]!;
  }
  await fromColumns({ id, amount, region }).writeParquet(dataDir);
  console.log(`generated ${n} orders in ${dataDir}`);
}

if (!existsSync(join(dataDir, '_SUCCESS'))) await generate();

const scorer = new Scorer(3);
const df = readParquet(dataDir)
  .where(col('amount').gt(50))
  .withColumns({
    size: bucket(col('amount')),
    gross: withTax(col('amount')),
    score: scorer.score(col('region'), col('amount')),
  })
  .where(col('region').isIn(['north', 'east']));

console.log(await df.explain({ showAll: true }));
console.log();
const result = await df.collect();
await result.show(10);
console.log(`rows: ${await result.count()}`);
console.log('metrics:');
for (const [name, m] of Object.entries(result.metrics)) {
  console.log(
    `  ${name}: rows in ${m.rowsIn}, out ${m.rowsOut}, calls ${m.calls}, ${m.timeMs.toFixed(0)} ms${Object.keys(m.counters).length ? `, counters ${JSON.stringify(m.counters)}` : ''}`,
  );
}

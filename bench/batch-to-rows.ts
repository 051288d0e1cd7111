// Rows-out bench: batchToRows (Arrow record batch -> plain JS objects, what toRows/iterRows pay per
// row) on (int64, float64, utf8) columns. Informational: a rate, never a pass/fail timing.
// Appends to bench/report.md. Moved here from test/convert.test.ts so the suite stays fast.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { batchToRows, columnsToBatch } from '../src/convert/index.ts';

const ROWS = Number(process.env['BENCH_ROWS_OUT'] ?? 200_000);
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 3);

const ids = new BigInt64Array(ROWS);
const xs = new Float64Array(ROWS);
const texts = new Array<string>(ROWS);
for (let i = 0; i < ROWS; i++) {
  ids[i] = BigInt(i);
  xs[i] = i / 3;
  texts[i] = `row ${i} lorem ipsum dolor sit amet`;
}
const batch = columnsToBatch({ id: ids, x: xs, text: texts });

let best = Infinity;
for (let r = 0; r < REPEAT; r++) {
  const t0 = performance.now();
  const rows = batchToRows(batch);
  best = Math.min(best, performance.now() - t0);
  if (rows.length !== ROWS) throw new Error(`batchToRows returned ${rows.length} rows, expected ${ROWS}`);
}
const line = `batchToRows (int64, float64, utf8): ${(ROWS / best / 1000).toFixed(2)} M rows/s (best of ${REPEAT}, ${ROWS} rows)`;
console.log(line);
appendFileSync(join(import.meta.dirname, 'report.md'), `\n## Rows out\n\n${line}.\n`);

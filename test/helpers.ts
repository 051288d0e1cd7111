// Shared test fixtures: temp dirs and small generated Parquet files (nothing binary is committed).
import * as arrow from 'apache-arrow';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { writeParquetFile, type WriteParquetOptions } from '../src/io/parquet/index.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix = 'fanout-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

const CATEGORIES = ['alpha', 'beta', 'gamma', 'delta'];

/** Deterministic rows: id int64 (start..), x float64 in [0,1), category utf8, n int32 with nulls, tags list<utf8>. */
export function sampleBatch(start: number, rows: number): arrow.RecordBatch {
  const id = new BigInt64Array(rows);
  const x = new Float64Array(rows);
  const n = new Int32Array(rows);
  const cat: string[] = [];
  const tags: (string[] | null)[] = [];
  const nValid: (number | null)[] = [];
  for (let i = 0; i < rows; i++) {
    const k = start + i;
    id[i] = BigInt(k);
    x[i] = ((k * 7919) % 1000) / 1000;
    n[i] = k % 10;
    nValid.push(k % 10 === 3 ? null : k % 10);
    cat.push(CATEGORIES[k % CATEGORIES.length]!);
    tags.push(k % 5 === 0 ? null : Array.from({ length: k % 3 }, (_, j) => `t${j}`));
  }
  return new arrow.Table({
    id: arrow.makeVector(id),
    x: arrow.makeVector(x),
    category: arrow.vectorFromArray(cat, new arrow.Utf8()),
    n: arrow.vectorFromArray(nValid, new arrow.Int32()),
    tags: arrow.vectorFromArray(tags, new arrow.List(new arrow.Field('item', new arrow.Utf8(), true))),
  }).batches[0]!;
}

/** The same rows as plain objects, for reference computations. */
export function sampleRows(start: number, rows: number): { id: bigint; x: number; category: string; n: number | null; tags: string[] | null }[] {
  return Array.from({ length: rows }, (_, i) => {
    const k = start + i;
    return {
      id: BigInt(k),
      x: ((k * 7919) % 1000) / 1000,
      category: CATEGORIES[k % CATEGORIES.length]!,
      n: k % 10 === 3 ? null : k % 10,
      tags: k % 5 === 0 ? null : Array.from({ length: k % 3 }, (_, j) => `t${j}`),
    };
  });
}

/** Writes `rows` sample rows starting at `start` into one Parquet file with the given row-group size. */
export async function writeSample(path: string, start: number, rows: number, rowGroupSize: number, opts: WriteParquetOptions = {}): Promise<void> {
  const batches: arrow.RecordBatch[] = [];
  for (let s = 0; s < rows; s += rowGroupSize) batches.push(sampleBatch(start + s, Math.min(rowGroupSize, rows - s)));
  await writeParquetFile(path, batches, { ...opts, rowGroupSize });
}

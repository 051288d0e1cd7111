// Shared by the parquet-testing corpus tests: the vendored files, pyarrow's expectations (expected.json)
// and the canonical value encoding gen_expected.py uses, computed from fanout's batches.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type * as arrow from 'apache-arrow';
import type { DataTypeJSON } from '../src/datatypes.ts';
import { inspectParquet, readParquetBatches } from '../src/io/parquet/index.ts';

export const ROOT = join(import.meta.dirname, 'fixtures', 'parquet-testing');

export interface ExpectedColumn {
  name: string;
  pyarrowType: string;
  type: DataTypeJSON;
  sha256: string;
  values?: string[];
  head?: string[];
}
export type Expected = { numRows: number; columns: ExpectedColumn[] } | { pyarrowError: string };
export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const EXPECTED = (JSON.parse(fs.readFileSync(join(ROOT, 'expected.json'), 'utf8')) as { files: Record<string, Expected> }).files;

// ---- canonical values: the same encoding as gen_expected.py ------------------------------------

const f64 = new DataView(new ArrayBuffer(8));
function floatCanon(v: number): string {
  if (Number.isNaN(v)) return 'fNaN';
  f64.setFloat64(0, v);
  return `f${hex(new Uint8Array(f64.buffer.slice(0)))}`;
}

export function canon(d: arrow.Data, t: DataTypeJSON, i: number): string {
  if (!d.getValid(i)) return 'N';
  switch (t.kind) {
    case 'null':
      return 'N';
    case 'bool': {
      const bits = d.values as Uint8Array;
      const k = d.offset + i;
      return (bits[k >> 3]! >> (k & 7)) & 1 ? 'T' : 'F';
    }
    case 'float32':
    case 'float64':
      return floatCanon((d.values as Float64Array)[i]!);
    case 'utf8':
    case 'binary': {
      const o = d.valueOffsets as Int32Array;
      return (t.kind === 'utf8' ? 's' : 'b') + hex((d.values as Uint8Array).subarray(o[i]!, o[i + 1]!));
    }
    case 'list': {
      const o = d.valueOffsets as Int32Array;
      const out: string[] = [];
      for (let j = o[i]!; j < o[i + 1]!; j++) out.push(canon(d.children[0]!, t.child, j));
      return `[${out.join(',')}]`;
    }
    case 'fixedSizeList': {
      const out: string[] = [];
      for (let j = 0; j < t.size; j++) out.push(canon(d.children[0]!, t.child, i * t.size + j));
      return `[${out.join(',')}]`;
    }
    case 'struct':
      return `{${t.fields.map((f, k) => canon(d.children[k]!, f.type, i)).join(',')}}`;
    default:
      return String((d.values as BigInt64Array | Int32Array)[i]!); // integers, date (days), timestamp (ticks)
  }
}

/** Type JSON without nullability (pyarrow and the Parquet schema disagree on it for nested fields). */
function shape(t: DataTypeJSON): unknown {
  switch (t.kind) {
    case 'list':
      return { kind: 'list', child: shape(t.child) };
    case 'fixedSizeList':
      return { kind: 'fixedSizeList', size: t.size, child: shape(t.child) };
    case 'struct':
      return { kind: 'struct', fields: t.fields.map((f) => ({ name: f.name, type: shape(f.type) })) };
    default:
      return t;
  }
}

export interface Read {
  numRows: number;
  columns: { name: string; type: DataTypeJSON; values: string[] }[];
}

export async function readAll(path: string): Promise<Read> {
  const info = inspectParquet(path);
  const fields = info.schema.fields;
  const values: string[][] = fields.map(() => []);
  let numRows = 0;
  for await (const b of readParquetBatches(path)) {
    numRows += b.numRows;
    fields.forEach((f, c) => {
      const d = b.getChildAt(c)!.data[0]!;
      assert.equal(d.offset, 0, `${path}: column ${f.name} batch data has an offset`);
      for (let i = 0; i < b.numRows; i++) values[c]!.push(canon(d, f.type.json, i));
    });
  }
  if (info.unsupportedColumns.length) {
    // A column left out of the schema must never be dropped silently: readParquet of all columns names it.
    throw new Error(`unsupported columns in ${path}: ${info.unsupportedColumns.map((u) => `${u.name}: ${u.reason}`).join('; ')}`);
  }
  return { numRows, columns: fields.map((f, c) => ({ name: f.name, type: f.type.json, values: values[c]! })) };
}

export function compare(file: string, got: Read, exp: { numRows: number; columns: ExpectedColumn[] }): void {
  assert.equal(got.numRows, exp.numRows, `${file}: row count`);
  assert.deepEqual(
    got.columns.map((c) => c.name),
    exp.columns.map((c) => c.name),
    `${file}: column names`,
  );
  for (const [k, e] of exp.columns.entries()) {
    const g = got.columns[k]!;
    assert.deepEqual(shape(g.type), shape(e.type), `${file}: type of column '${e.name}' (pyarrow: ${e.pyarrowType})`);
    const digest = createHash('sha256').update(g.values.join('\n')).digest('hex');
    if (digest === e.sha256 || (e.values && e.values.length === g.values.length && e.values.every((v, j) => v === g.values[j]))) continue;
    const ref = e.values ?? e.head!;
    const i = ref.findIndex((v, j) => g.values[j] !== v);
    assert.fail(
      `${file}: values of column '${e.name}' differ from pyarrow's` +
        (i >= 0 ? ` (row ${i}: got ${g.values[i]}, pyarrow ${ref[i]})` : ' (beyond the stored head)'),
    );
  }
}

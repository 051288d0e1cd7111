// The apache/parquet-testing corpus (vendored under test/fixtures/parquet-testing, see its README):
// every file is either read exactly as pyarrow reads it (expected.json, generated once by
// gen_expected.py; this test is Node-only) or refused with an error naming the file, the column and
// the feature. Never a silent wrong result. (The s3:// reads: parquet-corpus-s3.test.ts.)
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { inspectParquet, readParquetBatches, warmParquet } from '../src/io/parquet/index.ts';
import { readParquet } from '../src/dataframe.ts';
import { EXPECTED, ROOT, canon, compare, hex, readAll, type ExpectedColumn, type Read } from './parquet-corpus-helpers.ts';

const hasZstd = typeof (zlib as unknown as Record<string, unknown>).zstdDecompressSync === 'function';

/**
 * Files fanout refuses, with what the error must say (besides the file path, always required).
 * Data files here are ones pyarrow reads too: each entry is a feature fanout does not support.
 */
const REFUSED: Record<string, RegExp> = {
  // pyarrow wraps the year-9999 and year-290000 INT96 values around int64 nanoseconds (wrong instants);
  // fanout decodes INT96 exactly (hyparquet) and refuses values that do not fit.
  'data/int96_from_spark.parquet': /column 'a' of .*: INT96 timestamp 253402225200000000000 ns does not fit timestamp\[ns\].*wrap/,
  // A dictionary page longer than its values (pyarrow tolerates it); arrow-rs traps on it.
  'data/nation.dict-malformed.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
};

/** bad_data/ files (and data/ files pyarrow refuses too) must fail cleanly; this is what their message says. */
const CORRUPT: Record<string, RegExp> = {
  'bad_data/ARROW-GH-41317.parquet': /failed to decode row group 0 of .*: parquet unsupported page type: INDEX_PAGE/,
  'bad_data/ARROW-GH-41321.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
  'bad_data/ARROW-GH-45185.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
  'bad_data/ARROW-GH-47662.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
  'bad_data/ARROW-RS-GH-6229-DICTHEADER.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
  'bad_data/ARROW-RS-GH-6229-LEVELS.parquet': /failed to decode row group 0 of .*: parquet-wasm aborted .*corrupt/,
  'bad_data/PARQUET-1481.parquet': /corrupt Parquet footer in /,
  'data/encrypt_columns_plaintext_footer.parquet.encrypted':
    /encrypted Parquet columns are not supported \(column 'float_field' uses Parquet modular encryption\)/,
  'data/uniform_encryption.parquet.encrypted': /encrypted Parquet files are not supported/,
};

/**
 * Files pyarrow refuses that fanout reads on purpose, with the values they hold (from the corpus's
 * README): Presto/Trino wrote map keys as optional; arrow-rs accepts such maps (arrow-rs PR 5630).
 */
const READ_DESPITE_PYARROW: Record<string, { numRows: number; columns: ExpectedColumn[] }> = {
  'data/incorrect_map_schema.parquet': {
    numRows: 1,
    columns: [
      {
        name: 'my_map',
        pyarrowType: '(refused)',
        sha256: '',
        type: {
          kind: 'list',
          child: {
            kind: 'struct',
            fields: [
              { name: 'key', type: { kind: 'utf8' }, nullable: true },
              { name: 'value', type: { kind: 'utf8' }, nullable: true },
            ],
          },
        },
        // MAP(ARRAY['name', 'parent'], ARRAY['report', 'another']), entries in the order Presto stored them
        values: [`[{s${hex(Buffer.from('parent'))},s${hex(Buffer.from('another'))}},{s${hex(Buffer.from('name'))},s${hex(Buffer.from('report'))}}]`],
      },
    ],
  },
};

async function outcome(file: string): Promise<{ ok: Read } | { error: Error }> {
  try {
    return { ok: await readAll(join(ROOT, file)) };
  } catch (e) {
    return { error: e as Error };
  }
}

before(() => warmParquet());

describe('parquet-testing corpus', () => {
  it('vendors a file for every expectation and an expectation for every file', () => {
    const onDisk = ['data', 'bad_data']
      .flatMap((d) =>
        (fs.readdirSync(join(ROOT, d), { recursive: true }) as string[]).filter((f) => fs.statSync(join(ROOT, d, f)).isFile()).map((f) => `${d}/${f}`),
      )
      .sort();
    assert.deepEqual(onDisk, Object.keys(EXPECTED).sort());
    for (const f of [...Object.keys(REFUSED), ...Object.keys(CORRUPT)]) assert.ok(EXPECTED[f], `listed file ${f} is vendored`);
  });

  for (const [file, exp] of Object.entries(EXPECTED)) {
    it(file, async () => {
      const r = await outcome(file);
      const expectsError = REFUSED[file] ?? CORRUPT[file];
      if (process.env.CORPUS_REPORT) {
        console.log(`CORPUS ${file}: ${'error' in r ? `ERROR ${r.error.message}` : 'read'}`);
      }
      const despite = READ_DESPITE_PYARROW[file];
      if (despite) {
        if ('error' in r) throw r.error;
        compare(file, r.ok, despite);
        return;
      }
      if ('pyarrowError' in exp || expectsError) {
        assert.ok('error' in r, `${file} must be refused (pyarrow: ${'pyarrowError' in exp ? exp.pyarrowError : 'reads it'}), fanout read it`);
        assert.ok(r.error.message.includes(join(ROOT, file)), `${file}: error names the file: ${r.error.message}`);
        assert.ok(expectsError, `${file}: refused with an unlisted message: ${r.error.message}`);
        assert.match(r.error.message, expectsError);
        return;
      }
      if ('error' in r) throw r.error;
      compare(file, r.ok, exp);
    });
  }

  it('projects and batches a file read through hyparquet like one read through parquet-wasm', async () => {
    // repeated_no_annotation.parquet: 'phoneNumbers' holds a repeated group without a LIST annotation
    // (arrow-rs reads 0 of its 6 rows, of every column, 'id' included).
    const path = join(ROOT, 'data/repeated_no_annotation.parquet');
    assert.deepEqual(Object.keys(inspectParquet(path).parquetWasmCaveats ?? {}).sort(), ['id', 'phoneNumbers']);
    const ids: unknown[] = [];
    for await (const b of readParquetBatches(path, { columns: ['id'] })) ids.push(...b.getChild('id')!.toArray());
    assert.deepEqual(ids, [1, 2, 3, 4, 5, 6]);
    const sizes: number[] = [];
    const phones: string[] = [];
    for await (const b of readParquetBatches(path, { columns: ['phoneNumbers'], batchSize: 4 })) {
      sizes.push(b.numRows);
      assert.deepEqual(b.schema.names, ['phoneNumbers']);
      const d = b.getChildAt(0)!.data[0]!;
      const t = inspectParquet(path).schema.field('phoneNumbers').type.json;
      for (let i = 0; i < b.numRows; i++) phones.push(canon(d, t, i));
    }
    assert.deepEqual(sizes, [4, 2]);
    const exp = EXPECTED['data/repeated_no_annotation.parquet'];
    assert.ok(exp && 'columns' in exp);
    assert.deepEqual(phones, exp.columns.find((c) => c.name === 'phoneNumbers')!.values);
  });

  it('a row group parquet-wasm decodes short is an error, never a short read', async () => {
    // Without the caveat (the cached footer info, edited here), arrow-rs returns 0 of 6 rows.
    const path = join(ROOT, 'data/repeated_no_annotation.parquet');
    const info = inspectParquet(path);
    const saved = info.parquetWasmCaveats;
    info.parquetWasmCaveats = {};
    try {
      await assert.rejects(
        async () => {
          for await (const _ of readParquetBatches(path, { columns: ['id'] })) {
            /* drain */
          }
        },
        (e: Error) => e.message.includes(path) && /parquet-wasm decoded 0 rows of columns 'id', the footer says 6/.test(e.message),
      );
    } finally {
      info.parquetWasmCaveats = saved;
    }
  });
});

describe('a column no DataType represents is never dropped silently', () => {
  // Injected into the cached footer info (the corpus has no INTERVAL column): before, readParquet
  // left such a column out of the DataFrame's schema without a word (map_no_value.parquet lost one).
  it('readParquet and readParquetBatches of all columns name it; a projection without it reads', async () => {
    const path = join(ROOT, 'data/alltypes_plain.parquet');
    const info = inspectParquet(path);
    info.unsupportedColumns.push({ name: 'span', reason: "INTERVAL column 'span' is not supported" });
    try {
      const msg = /column 'span' of .*alltypes_plain\.parquet cannot be read: INTERVAL column 'span' is not supported/;
      assert.throws(() => readParquet(path), msg);
      assert.throws(() => readParquet(path, { columns: ['id', 'span'] }), msg);
      await assert.rejects(async () => {
        for await (const _ of readParquetBatches(path)) {
          /* drain */
        }
      }, msg);
      const rows = await readParquet(path, { columns: ['id'] }).toRows();
      assert.equal(rows.length, 8);
    } finally {
      info.unsupportedColumns.pop();
    }
  });
});

describe('the hyparquet reader on other files of the corpus', () => {
  // Routed through hyparquet by editing the cached footer info: its decompressors and value
  // conversion must agree with pyarrow as parquet-wasm does.
  for (const f of [
    'data/concatenated_gzip_members.parquet',
    'data/alltypes_plain.parquet',
    'data/nested_structs.rust.parquet',
    'data/nullable.impala.parquet',
    'data/byte_array_decimal.parquet',
    'data/fixed_length_decimal.parquet',
    'data/datapage_v2.snappy.parquet',
  ]) {
    it(f, async () => {
      const path = join(ROOT, f);
      const info = inspectParquet(path);
      const saved = info.parquetWasmCaveats;
      info.parquetWasmCaveats = Object.fromEntries(info.schema.names.map((n) => [n, 'test']));
      try {
        const exp = EXPECTED[f]!;
        assert.ok('columns' in exp);
        const r = await outcome(f);
        if (f === 'data/nullable.impala.parquet') {
          // MAP columns: hyparquet returns JS objects, which lose key types; refused, not guessed.
          assert.ok(
            'error' in r && /MAP values are not supported in files read by the fallback reader/.test(r.error.message) && r.error.message.includes(path),
            'error' in r ? r.error.message : 'read',
          );
          return;
        }
        if (f === 'data/nested_structs.rust.parquet' && !hasZstd) {
          // ZSTD: Node's zlib has it from 22.15 on; before, a clear refusal naming the file and codec.
          assert.ok(
            'error' in r && /unsupported compression codec: ZSTD/.test(r.error.message) && r.error.message.includes(path),
            'error' in r ? r.error.message : 'read',
          );
          return;
        }
        if ('error' in r) throw r.error;
        compare(f, r.ok, exp);
      } finally {
        info.parquetWasmCaveats = saved;
      }
    });
  }
});

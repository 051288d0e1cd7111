// The cold path: what a fresh process loads for `import 'fanout'` and a first read of a plain Parquet
// path (bench/cold-start.ts measures its time). Libraries only some calls need are loaded on first
// use: cli-progress (a progress bar), tinyglobby and picomatch (glob patterns), hyparquet's reader
// (files parquet-wasm cannot read; the footer parser is all a plain read loads). parquet-wasm's
// module is compiled on V8's background threads while the rest of the package loads, and opening a
// file reads its footer and page indexes at once while the instance loads.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { isDynamicPattern as tinyglobbyIsDynamic } from 'tinyglobby';
import { isDynamicPattern } from '../src/io/glob.ts';
import { inspectLocal } from '../src/io/parquet/footer.ts';
import { readParquetBatches } from '../src/io/parquet/read.ts';
import { FileBlob } from '../src/io/store/file-blob.ts';
import { tempDir, writeSample } from './helpers.ts';

const repo = join(import.meta.dirname, '..');

interface Loaded {
  /** URLs of the ES modules loaded (file: URLs relative to the repo). */
  esm: string[];
  /** CommonJS modules loaded (paths relative to the repo). */
  cjs: string[];
  rows: number;
}

/** Run `body` (ES module code, after `import 'fanout'`) in a fresh process and list what it loaded. */
function loadsOf(body: string): Loaded {
  const code = `
import { register, createRequire } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const esm = [];
let done;
const sentinel = 'data:text/javascript,export%20default%201';
const seen = new Promise((r) => (done = r));
port1.on('message', (u) => (u === sentinel ? done() : esm.push(u)));
register(${JSON.stringify(join(import.meta.dirname, 'fixtures', 'record-loads.mjs'))}, import.meta.url, { data: { port: port2 }, transferList: [port2] });
const fanout = await import('fanout');
let rows = 0;
${body}
await import(sentinel); // the port keeps order: every earlier load has been posted once this arrives
await seen;
port1.close();
const cjs = Object.keys(createRequire(import.meta.url).cache);
const rel = (s) => s.replace('file://', '').replace(${JSON.stringify(`${repo}/`)}, '');
console.log(JSON.stringify({ esm: esm.map(rel), cjs: cjs.map(rel), rows }));
`;
  const p = spawnSync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo, encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout.trim().split('\n').pop()!) as Loaded;
}

const lazy = [
  /node_modules\/cli-progress\//,
  /node_modules\/tinyglobby\//,
  /node_modules\/picomatch\//,
  /node_modules\/fdir\//,
  /node_modules\/hyparquet\/src\/(index|node|read)\.js/,
];
const offenders = (l: Loaded): string[] => [...l.esm, ...l.cjs].filter((u) => lazy.some((re) => re.test(u)));

describe('cold start', () => {
  let file: string;
  before(async () => {
    file = join(tempDir('fanout-cold-'), 'plain.parquet');
    await writeSample(file, 0, 100, 50);
  });

  it("import 'fanout' loads neither cli-progress, tinyglobby, picomatch nor hyparquet's reader", () => {
    const l = loadsOf('');
    // The recorder works: it saw the package's own modules and apache-arrow.
    assert.ok(
      l.esm.some((u) => u.endsWith('src/index.ts')),
      `src/index.ts among ${l.esm.length} modules`,
    );
    assert.ok(l.esm.some((u) => u.includes('node_modules/apache-arrow/')));
    assert.deepEqual(offenders(l), []);
  });

  it('a first limit(1) of a plain path loads only the footer parser of hyparquet; a glob loads tinyglobby', () => {
    const plain = loadsOf(`rows = (await fanout.readParquet(${JSON.stringify(file)}).limit(1).toArrow()).numRows;`);
    assert.equal(plain.rows, 1);
    assert.ok(plain.esm.some((u) => u.endsWith('node_modules/hyparquet/src/metadata.js')));
    assert.deepEqual(offenders(plain), []);
    const glob = loadsOf(`rows = (await fanout.readParquet(${JSON.stringify(join(file, '..', '*.parquet'))}).limit(2).toArrow()).numRows;`);
    assert.equal(glob.rows, 2);
    assert.ok(
      glob.cjs.some((u) => u.includes('node_modules/tinyglobby/')),
      'the glob was expanded by tinyglobby',
    );
  });

  it('parquet-wasm is compiled once, in the background from import on: the first read compiles nothing synchronously', () => {
    const code = `
const counts = { sync: 0, async: 0 };
const W = globalThis.WebAssembly;
const Module = W.Module;
const compile = W.compile;
// parquet-wasm's module is the one over 1 MB (Node compiles small ones of its own, e.g. its CJS lexer).
const big = (bytes) => bytes.byteLength > 1e6;
W.Module = function (bytes) { if (big(bytes)) counts.sync++; return new Module(bytes); };
W.compile = (bytes) => { if (big(bytes)) counts.async++; return compile.call(W, bytes); };
const fanout = await import('fanout');
const t = await fanout.readParquet(${JSON.stringify(file)}).limit(1).toArrow();
console.log(JSON.stringify({ ...counts, rows: t.numRows }));
`;
    const p = spawnSync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo, encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    assert.deepEqual(JSON.parse(p.stdout.trim().split('\n').pop()!), { sync: 0, async: 1, rows: 1 });
  });

  it("parquet-wasm's compile starts while `import 'fanout'` evaluates, not after it returns", () => {
    // Reading the module's bytes asynchronously took ~10 turns of the event loop, which the ESM loader
    // and the caller held: the compile began after the import returned and a cold first read waited for it.
    const code = `
const fanout = await import('fanout');
const W = globalThis.WebAssembly;
const compile = W.compile;
const Module = W.Module;
let late = 0;
W.compile = (bytes) => { if (bytes.byteLength > 1e6) late++; return compile.call(W, bytes); };
W.Module = function (bytes) { if (bytes.byteLength > 1e6) late++; return new Module(bytes); };
const t = await fanout.readParquet(${JSON.stringify(file)}).limit(1).toArrow();
console.log(JSON.stringify({ late, rows: t.numRows }));
`;
    const p = spawnSync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo, encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    assert.deepEqual(JSON.parse(p.stdout.trim().split('\n').pop()!), { late: 0, rows: 1 });
  });

  it('opening a local file in parquet-wasm reads its footer and page indexes in one read', async () => {
    const path = join(tempDir('fanout-cold-tail-'), 'tail.parquet');
    await writeSample(path, 0, 300, 100);
    const { chunks, tailStart } = inspectLocal(path);
    const size = statSync(path).size;
    const dataEnd = Math.max(...chunks.flatMap((g) => [...g.values()].flat().map(([, end]) => end)));
    assert.ok(tailStart !== undefined && tailStart >= dataEnd && tailStart < size - 8, `tail [${tailStart}, ${size}) after the data (${dataEnd})`);
    const proto = FileBlob.prototype as unknown as { fetch(a: number, b: number): Promise<Uint8Array> };
    const fetch = proto.fetch;
    const reads: [number, number][] = [];
    proto.fetch = function (this: FileBlob, a: number, b: number) {
      if (this.path === path) reads.push([a, b]);
      return fetch.call(this, a, b);
    };
    try {
      let rows = 0;
      for await (const b of readParquetBatches(path, { limit: 1, rowGroups: [1] })) rows += b.numRows;
      assert.equal(rows, 1);
    } finally {
      proto.fetch = fetch;
    }
    // One read of the tail (before: the last 8 bytes, then the footer, then the page indexes, one after
    // the other), and the row group's column chunks.
    assert.deepEqual(
      reads.filter(([a]) => a >= dataEnd),
      [[tailStart, size]],
    );
    assert.ok(reads.length > 1 && reads.every(([a, b]) => a >= dataEnd || b <= dataEnd));
  });

  it("isDynamicPattern's fast path agrees with tinyglobby's", () => {
    const cases = [
      'data/part-0.parquet',
      '/abs/dir/file.parquet',
      's3-like/key=1/x.parquet',
      'C:\\dir\\file.parquet',
      'a\\b',
      'a.b-c_d~e,f;g=h%20',
      'dir/*.parquet',
      'dir/**/x.parquet',
      'file?.parquet',
      'file[0-9].parquet',
      'file[!0-9].parquet',
      '!negated.parquet',
      'not!negated',
      'a{b,c}.parquet',
      'a{b}.parquet',
      'a{1..3}.parquet',
      'a@(b|c).parquet',
      'a+(b).parquet',
      'a!(b).parquet',
      '(group)',
      'dir/a\\*b',
      'x]',
      'y}',
      'z)',
      '+plus',
      '@at',
    ];
    for (const c of cases) assert.equal(isDynamicPattern(c), tinyglobbyIsDynamic(c), c);
  });
});

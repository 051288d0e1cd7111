// The TypeScript examples in README.md and docs/*.md compile and, where self-contained, run.
//
// What is checked:
// - Every ```ts / ```typescript block is typechecked with the project's tsconfig options. A block is
//   a module of its own (`export {}` is appended), so it declares everything it uses: a fragment such
//   as `df.withColumn(...)` imports or declares its `df` itself.
// - Relative imports in a block (`./examples/pipeline.ts`) are relative to the repository root, where
//   the README's commands run; `fanout` and `fanout/local` resolve through the package's own exports
//   (the `development` condition: the sources).
// - A block preceded by `<!-- run -->` (the nearest non-blank line before the fence) is also run with
//   tsx in a fresh working directory and must exit 0. `<!-- run: orders -->` first generates the named
//   data set there (see FIXTURES). Blocks that need AWS, a running harness or files we cannot make stay
//   typecheck-only, unmarked.
// - The README's UDF table: the `example` cell of each row whose first cell starts with `func`,
//   `func.batch` or `cls` is typechecked inside a small wrapper (imports, plus a `Model` class for `cls`)
//   and run, since UDF options are validated when the UDF is defined.
//
// The generated files live under .tmp/ (git-ignored) inside the repository, so that the package
// self-reference `fanout` resolves as it does for the repository's own examples.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { fromColumns } from '../src/index.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

interface Example {
  /** `README.md:42` (the line of the opening fence, or of the table row). */
  where: string;
  code: string;
  /** For a block: the doc line of the fence, so generated line n is doc line `fence + n`. */
  fence?: number;
  /** undefined: typecheck only; otherwise the fixture names to generate ('' entries excluded). */
  run?: string[];
}

/** Data sets a `<!-- run: name -->` block may ask for, generated in its working directory. */
const FIXTURES: Record<string, (cwd: string) => Promise<void>> = {
  // README "A pipeline": readParquet('data/orders/') with id (int64) and amount (float64).
  orders: async (cwd) => {
    const n = 200;
    await fromColumns({
      id: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
      amount: Float64Array.from({ length: n }, (_, i) => (i * 7) % 150),
    }).writeParquet(join(cwd, 'data/orders'));
  },
};

const FENCE = /^```(ts|typescript)\s*$/;
const RUN_MARKER = /^<!--\s*run(?::\s*([\w\s,-]*))?\s*-->$/;

function extractBlocks(file: string, text: string): Example[] {
  const lines = text.split('\n');
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!FENCE.test(lines[i]!.trim())) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!);
    assert.ok(i < lines.length, `${file}:${start + 1}: unterminated code block`);
    let prev = start - 1;
    while (prev >= 0 && lines[prev]!.trim() === '') prev--;
    const marker = prev >= 0 ? RUN_MARKER.exec(lines[prev]!.trim()) : null;
    const example: Example = { where: `${file}:${start + 1}`, code: body.join('\n'), fence: start + 1 };
    if (marker) example.run = (marker[1] ?? '').split(/[\s,]+/).filter((s) => s !== '');
    out.push(example);
  }
  return out;
}

/** The table cells of `| func… | … | `example` |` rows (the column headed `example`). */
function extractTableExamples(file: string, text: string): Example[] {
  const out: Example[] = [];
  const lines = text.split('\n');
  let exampleCol = -1;
  lines.forEach((line, i) => {
    if (!line.startsWith('|')) {
      exampleCol = -1;
      return;
    }
    const cells = splitRow(line);
    const header = cells.findIndex((c) => c.trim() === 'example');
    if (header >= 0) {
      exampleCol = header;
      return;
    }
    if (exampleCol < 0 || !/^`(func|func\.batch|cls)\b/.test(cells[0]!.trim())) return;
    const cell = cells[exampleCol]?.trim() ?? '';
    const code = /^`(.*)`$/.exec(cell)?.[1];
    assert.ok(code, `${file}:${i + 1}: the example cell is not one inline code span: ${cell}`);
    out.push({ where: `${file}:${i + 1}`, code: `export const example = ${code};`, run: [] });
  });
  return out;
}

/** Splits a Markdown table row on `|` outside inline code (the examples contain `=>`, not `|`, but be safe). */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cur = '';
  let inCode = false;
  for (const ch of line.slice(1, line.trimEnd().endsWith('|') ? line.trimEnd().length - 1 : undefined)) {
    if (ch === '`') inCode = !inCode;
    if (ch === '|' && !inCode) {
      cells.push(cur);
      cur = '';
    } else cur += ch;
  }
  cells.push(cur);
  return cells;
}

// Imports and a `Model` class the table cells use (they are one-expression examples).
const TABLE_PRELUDE = [
  "import * as arrow from 'apache-arrow';",
  "import { cls, DataType, func } from 'fanout';",
  'class Model {',
  '  embed(v: arrow.Vector) { return new Float32Array(v.length); }',
  '}',
  '',
].join('\n');

const examples: Example[] = [];
for (const doc of DOCS) {
  const text = readFileSync(join(ROOT, doc), 'utf8');
  examples.push(...extractBlocks(doc, text));
  if (doc === 'README.md') examples.push(...extractTableExamples(doc, text).map((e) => ({ ...e, code: TABLE_PRELUDE + e.code })));
}

// Probes that keep the checks honest: the harness must see a type error through the `fanout`
// import, and must fail a run of the UDF-table cell as it used to be (an anonymous `func` without
// `name`, which throws when defined).
const TYPE_PROBE = "import { col } from 'fanout';\nexport const n: number = col('x');";
const OLD_FUNC_CELL = `${TABLE_PRELUDE}export const example = func((x: number) => x * 2, { returnDtype: DataType.float64() });`;

const TMP = join(ROOT, '.tmp');
let dir = '';
const files = new Map<Example, string>();
const probes = { types: '', oldFuncCell: '' };

/** Relative specifiers are relative to the repository root (see the header). */
function rebaseRelativeImports(code: string, from: string): string {
  const up = relative(from, ROOT).split('\\').join('/');
  return code.replace(/((?:from|import)\s*\(?\s*['"])\.\//g, `$1${up}/`);
}

before(() => {
  mkdirSync(TMP, { recursive: true });
  dir = mkdtempSync(join(TMP, 'docs-examples-'));
  examples.forEach((e, i) => {
    const file = join(dir, `example-${i}-${e.where.replace(/[^\w]+/g, '-')}.ts`);
    writeFileSync(file, `${rebaseRelativeImports(e.code, dir)}\nexport {};\n`);
    files.set(e, file);
  });
  probes.types = join(dir, 'probe-types.ts');
  writeFileSync(probes.types, `${TYPE_PROBE}\n`);
  probes.oldFuncCell = join(dir, 'probe-old-func-cell.ts');
  writeFileSync(probes.oldFuncCell, `${OLD_FUNC_CELL}\n`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('docs examples', () => {
  test('the docs have the examples this test expects', () => {
    assert.ok(examples.filter((e) => e.where.startsWith('README.md')).length >= 8, 'README code blocks and UDF-table cells found');
    assert.ok(
      examples.some((e) => e.where.startsWith('docs/')),
      'docs/*.md code blocks found',
    );
    assert.equal(examples.filter((e) => /^export const example = /m.test(e.code)).length, 3, 'func, func.batch and cls rows of the UDF table');
    for (const e of examples) for (const f of e.run ?? []) assert.ok(FIXTURES[f], `${e.where}: unknown fixture "${f}" in its <!-- run --> marker`);
  });

  test('every example typechecks with the project tsconfig', () => {
    const config = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile);
    assert.equal(config.error, undefined);
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
    const program = ts.createProgram({ rootNames: [...files.values(), probes.types], options: { ...parsed.options, noEmit: true } });
    const probe = program.getSourceFile(probes.types)!;
    const probeErrors = program.getSemanticDiagnostics(probe).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    assert.equal(probeErrors.length, 1, `the type probe gets exactly its one error: ${probeErrors.join('; ')}`);
    assert.match(probeErrors[0]!, /not assignable to type 'number'/);
    const problems: string[] = [];
    for (const [e, file] of files) {
      const sf = program.getSourceFile(file);
      assert.ok(sf, file);
      const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
      for (const d of diags) {
        const line = d.start === undefined ? undefined : sf.getLineAndCharacterOfPosition(d.start).line + 1;
        const at = line === undefined ? e.where : e.fence !== undefined ? `${e.where.split(':')[0]}:${e.fence + line}` : `${e.where} (wrapper line ${line})`;
        problems.push(`${at}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      }
    }
    assert.deepEqual(problems, [], `examples that do not typecheck:\n${problems.join('\n')}\n--- generated files in ${dir}`);
  });

  for (const e of examples.filter((x) => x.run !== undefined)) {
    test(`runs: ${e.where}`, async () => {
      const cwd = mkdtempSync(join(dir, 'cwd-'));
      for (const f of e.run ?? []) await FIXTURES[f]!(cwd);
      const file = files.get(e)!;
      const r = await runNode(['--conditions=development', '--import', 'tsx', resolve(file)], cwd);
      assert.equal(r.code, 0, `${e.where} exited ${r.code}:\n${r.output}\n--- code:\n${e.code}`);
    });
  }

  test('a run fails on an example that throws (the UDF-table cell before it named its function)', async () => {
    const r = await runNode(['--conditions=development', '--import', 'tsx', probes.oldFuncCell], dir);
    assert.notEqual(r.code, 0, r.output);
    assert.match(r.output, /func\(fn, opts\): an anonymous function needs \{ name \}/);
  });
});

function runNode(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, FANOUT_PROGRESS: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b));
    child.stderr.on('data', (b: Buffer) => (output += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

// fanout as users get it: built (`npm run build`'s declarations + esbuild bundle, scripts/build.ts), packed (npm pack), installed into a project of its
// own, and a TypeScript pipeline run from that project embedded, on worker threads and on the local
// harness (Lambda worker threads, an ECS child process for its GPU UDF), with .ts, .mts and .js UDF
// modules, under `node --import tsx`, the `tsx` CLI, and tsx
// registered programmatically (no loader flag at all).
//
// Offline and quick: the build goes to a temporary outDir (the repo's dist/ is never touched), and
// the package is unpacked into the project's node_modules as `npm install <tarball>` would, its
// dependencies found in the repo's node_modules through a symlinked node_modules one directory up
// (Node's resolution walks up to it). `npm install --offline` cannot do it: npm's cache holds the
// lockfile's tarballs but not the registry metadata that resolving fanout's version ranges needs.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { before, describe, it } from 'node:test';
import { buildPackage, ENTRY_POINTS } from '../scripts/build.ts';
import { tempDir } from './helpers.ts';

const repo = join(import.meta.dirname, '..');
const fixture = join(import.meta.dirname, 'fixtures', 'packed-project');
let project: string;
/** The same project with fanout linked (a symlink to the unpacked build, as `npm link` makes). */
let linked: string;
/** The bundle's files (dist/*.js), each with the sources in it, from the build. */
let bundled: Record<string, string[]>;

before(async () => {
  const started = Date.now();
  const root = tempDir('fanout-packed-');
  const stage = join(root, 'stage');
  mkdirSync(stage);
  for (const f of ['package.json', 'README.md']) copyFileSync(join(repo, f), join(stage, f));
  // `npm run build`'s own code (declarations + the esbuild bundle), without a second type check
  // (that is `npm run typecheck`'s job).
  bundled = await buildPackage({ outDir: join(stage, 'dist'), check: false });
  const packed = execFileSync('npm', ['pack', stage, '--pack-destination', root, '--ignore-scripts', '--silent'], { cwd: root, encoding: 'utf8' });
  const tarball = join(root, packed.trim().split('\n').pop()!);
  project = join(root, 'project');
  const installed = join(project, 'node_modules', 'fanout');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'), 'dir');
  for (const f of readdirSync(fixture)) copyFileSync(join(fixture, f), join(project, f));
  // Linked: Node loads fanout from its real path, outside any node_modules, where udf.ts tells its
  // own stack frames from the user's by the bundled file's URL alone.
  linked = join(root, 'linked');
  mkdirSync(join(linked, 'node_modules'), { recursive: true });
  symlinkSync(stage, join(linked, 'node_modules', 'fanout'), 'dir');
  for (const f of readdirSync(fixture)) copyFileSync(join(fixture, f), join(linked, f));
  // A programmatic registration: the process has no loader flag for workers to inherit.
  writeFileSync(join(project, 'register.mjs'), "import { register } from 'tsx/esm/api';\nregister();\nawait import('./main.ts');\n");
  console.log(`# packed-package: built, packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

/** Runs `node <args>` in the project; resolves with the rows main.ts prints, or fails with its stderr. */
function runProject(args: string[], cwd = project): Promise<Record<string, unknown>[]> {
  const env: Record<string, string | undefined> = { ...process.env };
  // With a (pretend) GPU, the partitions with the GPU UDF run in child processes of the pool.
  if (args.includes('gpu')) Object.assign(env, { FANOUT_NUM_GPUS: '1', PACKED_EXPECT_DEVICE: '1' });
  // The test runner's own settings must not reach the user's process.
  delete env['NODE_OPTIONS'];
  delete env['NODE_TEST_CONTEXT'];
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`node ${args.join(' ')} exited with ${code}:\n${stderr.slice(-4000)}`));
        return;
      }
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>[]);
    });
  });
}

/** The rows main.ts must print: each UDF module's column, computed where `thread` says. */
function assertRows(rows: Record<string, unknown>[], thread: 'main' | 'worker' | 'process'): void {
  assert.equal(rows.length, 40);
  rows.forEach((r, i) => {
    const x = i / 4;
    assert.deepEqual(r, { x, twice: x * 2, label: `x=${x}`, thread, thrice: x * 3 });
  });
}

/** This process's environment without the test runner's own settings, which must not reach the user's process. */
function userEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env['NODE_OPTIONS'];
  delete env['NODE_TEST_CONTEXT'];
  return env;
}

const tsxCli = (): string => createRequire(join(project, 'package.json')).resolve('tsx/cli');

describe('the packed package runs a TypeScript pipeline from a project of its own', () => {
  it('embedded (in-process), under node --import tsx', async () => {
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'embedded']), 'main');
  });

  it('on worker threads (.ts, .mts and .js UDF modules), under node --import tsx', async () => {
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'workers']), 'worker');
  });

  // With FANOUT_NUM_GPUS the GPU UDF runs in an actor process of its own (PACKED_EXPECT_DEVICE makes it
  // throw anywhere without CUDA_VISIBLE_DEVICES); the CPU UDFs, `thread` among them, stay on worker threads.
  it("in the pool's GPU child processes (FANOUT_NUM_GPUS=1), under node --import tsx", async () => {
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'gpu']), 'worker');
  });

  it("on the local harness (startLocalCloud({ pipeline: 'pipeline.ts' }), Lambdas in worker threads), under node --import tsx", async () => {
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'cloud']), 'worker');
  });

  it('on worker threads, GPU child processes and the harness under the tsx CLI (tsx main.ts)', async () => {
    assertRows(await runProject([tsxCli(), 'main.ts', 'workers']), 'worker');
    assertRows(await runProject([tsxCli(), 'main.ts', 'gpu']), 'worker');
    assertRows(await runProject([tsxCli(), 'main.ts', 'cloud']), 'worker');
  });

  it('on worker threads, GPU child processes and the harness with tsx registered programmatically (no loader flag)', async () => {
    assertRows(await runProject(['register.mjs', 'workers']), 'worker');
    assertRows(await runProject(['register.mjs', 'gpu']), 'worker');
    assertRows(await runProject(['register.mjs', 'cloud']), 'worker');
  });

  it('linked (a symlink to the build, outside node_modules): UDF modules resolved in worker threads and on the harness', async () => {
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'workers'], linked), 'worker');
    assertRows(await runProject(['--import', 'tsx', 'main.ts', 'cloud'], linked), 'worker');
  });

  it("the package's `fanout` bin (package.json's bin, bundled) runs from the installed package", () => {
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules', 'fanout', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const bin = join(project, 'node_modules', 'fanout', pkg.bin['fanout']!);
    const work = tempDir('fanout-packed-work-');
    const env: Record<string, string | undefined> = { ...process.env };
    delete env['NODE_OPTIONS'];
    delete env['NODE_TEST_CONTEXT'];
    // An empty work directory: the command loads, parses and reads the (empty) run history.
    assert.equal(execFileSync(process.execPath, [bin, 'runs', 'list', '--work', work], { cwd: project, env, encoding: 'utf8' }).trim(), 'no runs');
    assert.match(execFileSync(process.execPath, [bin, '--help'], { cwd: project, env, encoding: 'utf8' }), /runs[\s\S]*dashboard/);
  });

  it("the bundle holds each of fanout's modules once (one copy of its state per thread) and every file loaded by path", () => {
    const installed = join(project, 'node_modules', 'fanout');
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, { default: string }>;
      bin: Record<string, string>;
    };
    const files = new Set(readdirSync(join(installed, 'dist')).filter((f) => f.endsWith('.js')));
    assert.deepEqual(new Set(Object.keys(bundled)), files, 'the installed dist/*.js are the bundle, nothing else');
    for (const name of Object.keys(ENTRY_POINTS)) assert.ok(files.has(`${name}.js`), `entry dist/${name}.js is in the package`);
    for (const target of [pkg.exports['.']!.default, pkg.exports['./local']!.default, pkg.bin['fanout']!]) {
      assert.ok(files.has(target.replace(/^\.\/dist\//, '')), `${target} is a bundled file`);
    }
    // Module state exists once per thread only if each module is in one file, whichever entries load it.
    const owners = new Map<string, string[]>();
    for (const [out, inputs] of Object.entries(bundled)) for (const i of inputs) owners.set(i, [...(owners.get(i) ?? []), out]);
    for (const m of ['src/udf.ts', 'src/runner.ts', 'src/io/parquet/wasm.ts', 'src/runners/embedded.ts', 'src/telemetry/index.ts', 'src/io/s3/client.ts']) {
      assert.equal(owners.get(m)?.length, 1, `${m} is in exactly one bundled file (${owners.get(m)?.join(', ')})`);
    }
    for (const [m, outs] of owners) assert.equal(outs.length, 1, `${m} is bundled once, not into ${outs.join(', ')}`);
  });

  it('`import "fanout"` loads no optional library and no lazy chunk: the bundle keeps the lazy import()s lazy', () => {
    // An ES module loader hook logs every module loaded; require.cache has what CommonJS loaded.
    const log = join(project, 'loaded.txt');
    writeFileSync(
      join(project, 'trace.mjs'),
      [
        "import { appendFileSync } from 'node:fs';",
        "import { createRequire, register } from 'node:module';",
        `register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(
          `import { appendFileSync } from 'node:fs'; export async function load(url, ctx, next) { if (url.startsWith('file:')) appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); }`,
        )}));`,
        'const req = createRequire(import.meta.url);',
        `process.on('exit', () => { for (const f of Object.keys(req.cache)) appendFileSync(${JSON.stringify(log)}, new URL('file://' + f).href + '\\n'); });`,
        '',
      ].join('\n'),
    );
    writeFileSync(log, '');
    const env = userEnv();
    const p = spawnSync(process.execPath, ['--import', './trace.mjs', '--input-type=module', '-e', "await import('fanout');"], {
      cwd: project,
      env,
      encoding: 'utf8',
    });
    assert.equal(p.status, 0, p.stderr);
    const loaded = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const dist = pathToFileURL(join(project, 'node_modules', 'fanout', 'dist')).href;
    const own = loaded.filter((u) => u.startsWith(`${dist}/`)).map((u) => u.slice(dist.length + 1));
    assert.ok(own.includes('index.js'), own.join(', '));
    for (const f of own) assert.ok(f in bundled, `${f} is a bundled file`);
    // The chunks that only import() reaches: the OTel SDK, the dashboard.
    for (const lazy of ['src/telemetry/sdk.ts', 'src/dashboard/server.ts']) {
      const chunk = Object.keys(bundled).find((f) => bundled[f]!.includes(lazy))!;
      assert.ok(chunk && !own.includes(chunk), `${lazy}'s chunk ${chunk} is not loaded by the import`);
    }
    const packages = new Set(loaded.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((n): n is string => !!n && n !== 'fanout'));
    for (const lazy of [
      '@aws-sdk/client-sfn',
      '@aws-sdk/client-s3',
      '@opentelemetry/sdk-trace-base',
      'cli-progress',
      'tinyglobby',
      'picomatch',
      'parquet-wasm',
      'synckit',
      'aws-embedded-metrics',
      'commander',
    ]) {
      assert.ok(!packages.has(lazy), `${lazy} is not loaded by \`import 'fanout'\` (loaded: ${[...packages].join(', ')})`);
    }
    assert.ok(packages.has('apache-arrow'), [...packages].join(', '));
    // Only hyparquet's footer parser (src/metadata.js and its imports), not its index.
    assert.ok(!loaded.some((u) => /\/node_modules\/hyparquet\/src\/(index|read)\.js$/.test(u)), "hyparquet's reader is not loaded");
  });

  it('the harness pieces load from the installed package: the Lambda handlers, and the ECS agent run as a script', async () => {
    const installed = join(project, 'node_modules', 'fanout', 'dist');
    const env = userEnv();
    const handlers = ['plan', 'stage', 'finalize', 'failure'].map((n) => pathToFileURL(join(installed, `${n}.js`)).href);
    const check = `for (const h of ${JSON.stringify(handlers)}) { const m = await import(h); if (typeof m.handler !== 'function') throw new Error(h + ' exports no handler'); } console.log('ok');`;
    assert.equal(execFileSync(process.execPath, ['--input-type=module', '-e', check], { cwd: project, env, encoding: 'utf8' }).trim(), 'ok');
    // ecs-agent.js starts its polling loop only when run as the main script (an import.meta.url check
    // that the bundle must keep in its own file). Its first failed poll (nothing listens on port 9)
    // comes after its signal handlers are in place: SIGTERM then stops it cleanly.
    const agent = spawn(process.execPath, [join(installed, 'ecs-agent.js'), '--endpoint', 'http://127.0.0.1:9'], {
      cwd: project,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise<number | null>((res) => agent.once('exit', (code) => res(code)));
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`ecs-agent.js did not start polling in 20 s: ${stderr}`)), 20_000);
      agent.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('ecs-agent: watching http://127.0.0.1:9') && stderr.includes('ecs-agent: polling http://127.0.0.1:9 failed')) {
          clearTimeout(timer);
          res();
        }
      });
    }).finally(() => agent.kill('SIGTERM'));
    assert.equal(await exited, 0, stderr);
  });
});

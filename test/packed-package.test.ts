// fanout as users get it: built (tsc to dist/), packed (npm pack), installed into a project of its
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
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { tempDir } from './helpers.ts';

const repo = join(import.meta.dirname, '..');
const fixture = join(import.meta.dirname, 'fixtures', 'packed-project');
let project: string;

before(() => {
  const started = Date.now();
  const root = tempDir('fanout-packed-');
  const stage = join(root, 'stage');
  mkdirSync(stage);
  for (const f of ['package.json', 'README.md']) copyFileSync(join(repo, f), join(stage, f));
  const tsc = createRequire(join(repo, 'package.json')).resolve('typescript/bin/tsc');
  // No source maps: from a temporary outDir they would name sources outside the package, which
  // source-mapped stacks (tsx enables them) would then report as the frames of fanout's own files.
  // --noCheck: the same output, without a second type check (that is `npm run typecheck`'s job).
  const build = ['-p', 'tsconfig.build.json', '--outDir', join(stage, 'dist'), '--sourceMap', 'false', '--declarationMap', 'false', '--noCheck'];
  execFileSync(process.execPath, [tsc, ...build], { cwd: repo, stdio: 'inherit' });
  const packed = execFileSync('npm', ['pack', stage, '--pack-destination', root, '--ignore-scripts', '--silent'], { cwd: root, encoding: 'utf8' });
  const tarball = join(root, packed.trim().split('\n').pop()!);
  project = join(root, 'project');
  const installed = join(project, 'node_modules', 'fanout');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'), 'dir');
  for (const f of readdirSync(fixture)) copyFileSync(join(fixture, f), join(project, f));
  // A programmatic registration: the process has no loader flag for workers to inherit.
  writeFileSync(join(project, 'register.mjs'), "import { register } from 'tsx/esm/api';\nregister();\nawait import('./main.ts');\n");
  console.log(`# packed-package: built, packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

/** Runs `node <args>` in the project; resolves with the rows main.ts prints, or fails with its stderr. */
function runProject(args: string[]): Promise<Record<string, unknown>[]> {
  const env: Record<string, string | undefined> = { ...process.env };
  // With a (pretend) GPU, the partitions with the GPU UDF run in child processes of the pool.
  if (args.includes('gpu')) Object.assign(env, { FANOUT_NUM_GPUS: '1', PACKED_EXPECT_DEVICE: '1' });
  // The test runner's own settings must not reach the user's process.
  delete env['NODE_OPTIONS'];
  delete env['NODE_TEST_CONTEXT'];
  const child = spawn(process.execPath, args, { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

  it("the package's `fanout` bin (dist/src/cli/bin.js) runs from the installed package", () => {
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
});

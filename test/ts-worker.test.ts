import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isTypeScriptModule, splitLoaderFlags, startTsWorker, tsWorkerExecArgv } from '../src/runners/ts-worker.ts';
import { tempDir } from './helpers.ts';

describe('startTsWorker', () => {
  it('runs a TypeScript entry in a worker thread with its workerData', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n'); // an ES module, like the repo's sources
    const entry = join(dir, 'echo-worker.ts');
    writeFileSync(
      entry,
      [
        "import { parentPort, workerData } from 'node:worker_threads';",
        'const n: number = (workerData as { n: number }).n;',
        'parentPort!.postMessage(n * 2);',
        '',
      ].join('\n'),
    );
    const url = pathToFileURL(entry);
    assert.ok(tsWorkerExecArgv(url));
    const w = startTsWorker(url, { workerData: { n: 21 } });
    const [msg] = (await once(w, 'message')) as [number];
    assert.equal(msg, 42);
    await w.terminate();
  });

  it('needs no tsx for built JavaScript', () => {
    assert.equal(tsWorkerExecArgv(pathToFileURL(fileURLToPath(import.meta.url).replace(/\.ts$/, '.js'))), null);
  });

  it("gives a JavaScript entry (fanout's dist) the process's loader, so it can import the user's TypeScript", async () => {
    // This test process runs under `--import tsx`; a worker thread on Node 20 would not apply it.
    assert.ok(splitLoaderFlags(process.execArgv).loaders.length > 0, 'the test runs under a loader flag');
    const dir = tempDir();
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(dir, 'user.mts'), 'export const n: number = 7;\n');
    const entry = join(dir, 'entry.js');
    writeFileSync(
      entry,
      [
        "import { parentPort } from 'node:worker_threads';",
        `const { n } = await import(${JSON.stringify(pathToFileURL(join(dir, 'user.mts')).href)});`,
        'parentPort.postMessage(n * 6);',
        '',
      ].join('\n'),
    );
    const w = startTsWorker(pathToFileURL(entry));
    const [msg] = (await once(w, 'message')) as [number];
    assert.equal(msg, 42);
    await w.terminate();
  });
});

/**
 * Runs, in a fresh node with `nodeArgs`, a main.mjs in `dir` that starts ./entry.mjs with
 * startTsWorker and prints the worker's first message; returns that message.
 */
function workerMessage(dir: string, nodeArgs: string[]): unknown {
  const src = pathToFileURL(join(import.meta.dirname, '..', 'src', 'runners', 'ts-worker.ts')).href;
  writeFileSync(
    join(dir, 'main.mjs'),
    [
      `import { startTsWorker } from ${JSON.stringify(src)};`,
      "const w = startTsWorker(new URL('./entry.mjs', import.meta.url));",
      "w.once('message', (m) => { console.log(JSON.stringify(m)); void w.terminate(); });",
      "w.once('error', (e) => { console.error(e); process.exitCode = 1; });",
      '',
    ].join('\n'),
  );
  return JSON.parse(execFileSync(process.execPath, ['--no-warnings', ...nodeArgs, 'main.mjs'], { cwd: dir, encoding: 'utf8' }).trim());
}

describe('startTsWorker replays the process loader flags', () => {
  it('a relative --import runs once in the worker, a --loader resolves there', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(dir, 'pre.mjs'), 'globalThis.preloaded = (globalThis.preloaded ?? 0) + 1;\n');
    writeFileSync(
      join(dir, 'loader.mjs'),
      "export async function resolve(spec, ctx, next) { return spec === 'virtual:n' ? { url: 'data:text/javascript,export default 41', shortCircuit: true } : next(spec, ctx); }\n",
    );
    writeFileSync(
      join(dir, 'entry.mjs'),
      "import { parentPort } from 'node:worker_threads';\nconst n = (await import('virtual:n')).default;\nparentPort.postMessage({ preloaded: globalThis.preloaded, n });\n",
    );
    const tsx = import.meta.resolve('tsx');
    assert.deepEqual(workerMessage(dir, ['--import', tsx, '--import', './pre.mjs', '--loader', './loader.mjs']), { preloaded: 1, n: 41 });
  });
});

describe('startTsWorker under V8 and process-wide flags', () => {
  it('starts a worker under --import tsx with --max-old-space-size, --expose-gc and --stack-size, which Node refuses in a worker execArgv', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(dir, 'user.mts'), 'export const n: number = 6;\n');
    writeFileSync(
      join(dir, 'entry.mjs'),
      [
        "import { parentPort } from 'node:worker_threads';",
        "const { n } = await import('./user.mts');",
        'parentPort.postMessage({ n: n * 7, conditions: process.execArgv.filter((a) => a.startsWith("--conditions")) });',
        '',
      ].join('\n'),
    );
    const tsx = import.meta.resolve('tsx');
    const flags = ['--max-old-space-size=4096', '--expose-gc', '--stack-size=2000', '--conditions=development', '--import', tsx];
    // The worker ran the user's TypeScript; the per-thread option it may take (--conditions) was kept.
    assert.deepEqual(workerMessage(dir, flags), { n: 42, conditions: ['--conditions=development'] });
  });
});

describe('splitLoaderFlags / isTypeScriptModule', () => {
  it('finds --import, --loader and --experimental-loader in both spellings, in order', () => {
    const { loaders, rest } = splitLoaderFlags([
      '--conditions=development',
      '--import',
      'tsx',
      '--loader=./l.mjs',
      '--experimental-loader',
      'x',
      '--require',
      'p.cjs',
    ]);
    assert.deepEqual(loaders, [
      { kind: 'import', spec: 'tsx' },
      { kind: 'loader', spec: './l.mjs' },
      { kind: 'loader', spec: 'x' },
    ]);
    assert.deepEqual(rest, ['--conditions=development', '--require', 'p.cjs']);
  });

  it('knows .ts, .mts and .cts (paths and file URLs, with a query) from JavaScript', () => {
    for (const m of ['/a/b.ts', 'file:///a/b.mts?x=1', '/a/b.cts']) assert.ok(isTypeScriptModule(m), m);
    for (const m of ['/a/b.js', 'file:///a/b.mjs', '/a/ts']) assert.ok(!isTypeScriptModule(m), m);
  });
});

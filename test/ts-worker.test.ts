import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startTsWorker, tsWorkerExecArgv } from '../src/runners/ts-worker.ts';
import { tempDir } from './helpers.ts';

describe('startTsWorker', () => {
  it('runs a TypeScript entry in a worker thread with its workerData', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n'); // an ES module, like the repo's sources
    const entry = join(dir, 'echo-worker.ts');
    writeFileSync(entry, [
      "import { parentPort, workerData } from 'node:worker_threads';",
      'const n: number = (workerData as { n: number }).n;',
      'parentPort!.postMessage(n * 2);',
      '',
    ].join('\n'));
    const url = pathToFileURL(entry);
    assert.ok(tsWorkerExecArgv(url));
    const w = startTsWorker(url, { workerData: { n: 21 } });
    const [msg] = await once(w, 'message') as [number];
    assert.equal(msg, 42);
    await w.terminate();
  });

  it('needs no tsx for built JavaScript', () => {
    assert.equal(tsWorkerExecArgv(pathToFileURL(fileURLToPath(import.meta.url).replace(/\.ts$/, '.js'))), null);
  });
});

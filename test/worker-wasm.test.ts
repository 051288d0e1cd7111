// A pool worker does not read and compile parquet-wasm's 5 MB module again: it is handed this
// process's compiled WebAssembly.Module (in its workerData, or in a message when the compile was
// still running at the spawn), which saves each worker ~25 ms of CPU at its start. Each worker
// says in its 'ready' message where its module came from.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { after, before, describe, it } from 'node:test';
import { readParquet, setRunner, shutdownWorkers } from 'fanout';
import type { FromWorker, ToWorker } from '../src/runners/protocol.ts';
import { poolTestHooks } from '../src/runners/pool.ts';
import { startTsWorker } from '../src/runners/ts-worker.ts';
import { parquetWasmCompiled, parquetWasmSource } from '../src/io/parquet/wasm.ts';
import { tempDir, writeSample } from './helpers.ts';

const workerUrl = new URL('../src/runners/worker.ts', import.meta.url);

/** The first 'ready' or 'fatal' message of a worker started on the pool's entry with `workerData`. */
async function readyOf(workerData: object, send?: ToWorker): Promise<{ msg: FromWorker; worker: Worker }> {
  const worker = startTsWorker(workerUrl, { workerData });
  const msg = await new Promise<FromWorker>((resolve, reject) => {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready' || m.type === 'fatal') resolve(m);
    });
    worker.once('error', reject);
    if (send) worker.postMessage(send);
  });
  return { msg, worker };
}

let dir: string;
before(async () => {
  dir = tempDir();
  for (let k = 0; k < 3; k++) await writeSample(join(dir, `p${k}.parquet`), k * 4000, 4000, 4000);
});

after(async () => {
  poolTestHooks.onMessage = undefined;
  setRunner('native');
  await shutdownWorkers();
});

describe("parquet-wasm's compiled module is handed to worker threads", () => {
  it("the pool's workers report the parent's module, and read correctly with it", async () => {
    assert.equal(parquetWasmSource(), 'file'); // this (main) thread compiled the file itself
    assert.ok(await parquetWasmCompiled());
    const sources: string[] = [];
    poolTestHooks.onMessage = (m) => {
      if (m.type === 'ready') sources.push(m.parquetWasm);
    };
    try {
      await shutdownWorkers();
      // More than 2 threads: every partition runs on the workers (a fresh pool of 3).
      setRunner('native', { workers: true, parallelism: 3, targetPartitionBytes: 1 });
      const rows = await readParquet(dir).select('id').toRows();
      assert.equal(rows.length, 12_000);
      assert.deepEqual(
        rows.map((r) => Number(r.id)).sort((a, b) => a - b),
        Array.from({ length: 12_000 }, (_, i) => i),
      );
    } finally {
      poolTestHooks.onMessage = undefined;
      setRunner('native');
      await shutdownWorkers();
    }
    assert.ok(sources.length >= 1, 'a worker started');
    assert.deepEqual(
      sources.filter((s) => s !== 'workerData'),
      [],
      `workers compiled parquet-wasm themselves: ${sources.join(', ')}`,
    );
  });

  it("in a fresh process, a pool started at once gets the module when the parent's compile is done", () => {
    // The first action right after the import: the pool spawns while this process's compile runs.
    const code = `
import { readParquet, setRunner } from 'fanout';
import { parquetWasmModule } from './src/io/parquet/wasm.ts';
import { poolTestHooks } from './src/runners/pool.ts';
const sources = [];
poolTestHooks.onMessage = (m) => { if (m.type === 'ready') sources.push(m.parquetWasm); };
const readyAtStart = parquetWasmModule() !== null;
setRunner('native', { workers: true, parallelism: 3, targetPartitionBytes: 1 });
const rows = await readParquet(${JSON.stringify(dir)}).select('id').toRows();
console.log(JSON.stringify({ readyAtStart, sources, rows: rows.length }));
process.exit(0);
`;
    const p = spawnSync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: join(import.meta.dirname, '..'),
      encoding: 'utf8',
    });
    assert.equal(p.status, 0, p.stderr);
    const out = JSON.parse(p.stdout.trim().split('\n').pop()!) as { readyAtStart: boolean; sources: string[]; rows: number };
    assert.equal(out.rows, 12_000);
    assert.ok(out.sources.length >= 1, 'a worker started');
    // The compile takes ~30 ms on V8's threads from the import on, so it is still running here;
    // the workers spawned then get the module in a message.
    assert.deepEqual(
      out.sources.filter((s) => s !== (out.readyAtStart ? 'workerData' : 'message')),
      [],
      `workers' modules: ${out.sources.join(', ')}`,
    );
  });

  it("a worker spawned while the parent's compile runs waits for the module in a message", async () => {
    const module = await parquetWasmCompiled();
    const { msg, worker } = await readyOf({ parquetWasm: 'posted' }, { type: 'parquetWasm', taskId: 0, module });
    await worker.terminate();
    assert.deepEqual(msg, { type: 'ready', parquetWasm: 'message' });
  });

  it("a worker whose parent's compile failed (null posted) compiles the file itself", async () => {
    const { msg, worker } = await readyOf({ parquetWasm: 'posted' }, { type: 'parquetWasm', taskId: 0, module: null });
    await worker.terminate();
    assert.deepEqual(msg, { type: 'ready', parquetWasm: 'file' });
  });

  it('a worker started without a module (another caller of the entry) compiles the file itself', async () => {
    const { msg, worker } = await readyOf({});
    await worker.terminate();
    assert.deepEqual(msg, { type: 'ready', parquetWasm: 'file' });
  });
});

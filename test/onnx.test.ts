import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildMlp, mlpForwardJs, randomInput } from '../examples/models/mlp.ts';
import { createOnnxSession, cudaUnavailableReason, onnxProviders, runFloatModel } from '../src/onnx.ts';

const TOL = 1e-5;
const model = buildMlp({ inputDim: 64, hidden: 256, outputDim: 16, seed: 42 });
const { inputDim, outputDim } = model.weights;
const dir = mkdtempSync(join(tmpdir(), 'fanout-onnx-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function assertClose(actual: Float32Array, expected: Float32Array, tol = TOL): void {
  assert.equal(actual.length, expected.length, 'length');
  let worst = 0;
  let at = -1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(worst <= tol, `max |diff| ${worst} at ${at} (got ${actual[at]}, want ${expected[at]})`);
}

function assertRowsSumToOne(probs: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += probs[r * cols + c]!;
    assert.ok(Math.abs(s - 1) <= TOL, `row ${r} sums to ${s}`);
  }
}

function captureWarn(t: TestContext): string[] {
  const lines: string[] = [];
  t.mock.method(console, 'warn', (...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
  });
  return lines;
}

describe('examples/models/mlp', () => {
  it('builds the same bytes for the same seed, different for another', () => {
    const again = buildMlp({ inputDim: 64, hidden: 256, outputDim: 16, seed: 42 });
    assert.deepEqual(again.bytes, model.bytes);
    const other = buildMlp({ inputDim: 64, hidden: 256, outputDim: 16, seed: 43 });
    assert.notDeepEqual(other.bytes, model.bytes);
    // ~4 bytes per parameter plus a small header.
    const params = 64 * 256 + 256 + 256 * 16 + 16;
    assert.ok(model.bytes.length > params * 4 && model.bytes.length < params * 4 + 1024, `${model.bytes.length} bytes`);
  });

  it('CLI writes the same model to a file', async () => {
    const out = join(dir, 'cli.onnx');
    const cli = fileURLToPath(new URL('../examples/models/mlp.ts', import.meta.url));
    // cwd = repo root so `--import tsx` resolves from this package's node_modules.
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    await promisify(execFile)(process.execPath, ['--import', 'tsx', cli, out, '--seed', '42'], { cwd });
    assert.deepEqual(new Uint8Array(readFileSync(out)), model.bytes);
  });
});

describe('src/onnx', () => {
  it('lists providers, cpu included', () => {
    const providers = onnxProviders();
    assert.ok(providers.includes('cpu'), providers.join(','));
  });

  it('loads from bytes on CPU and matches the JS reference for batch 1, 7, 1024', async () => {
    const { session, provider } = await createOnnxSession(model.bytes);
    try {
      assert.equal(provider, 'cpu');
      assert.deepEqual(session.inputNames, [model.inputName]);
      assert.deepEqual(session.outputNames, [model.outputName]);
      for (const rows of [1, 7, 1024]) {
        const input = randomInput(rows, inputDim, 1000 + rows);
        const got = await runFloatModel(session, input, rows, inputDim);
        assert.equal(got.length, rows * outputDim);
        assertClose(got, mlpForwardJs(model.weights, input, rows));
        assertRowsSumToOne(got, rows, outputDim);
      }
    } finally {
      await session.release();
    }
  });

  it('loads from a file path', async () => {
    const path = join(dir, 'mlp.onnx');
    writeFileSync(path, model.bytes);
    const { session } = await createOnnxSession(path, { intraOpNumThreads: 2 });
    try {
      const input = randomInput(7, inputDim, 7);
      assertClose(await runFloatModel(session, input, 7, inputDim), mlpForwardJs(model.weights, input, 7));
    } finally {
      await session.release();
    }
  });

  it('honours subarray offsets, longer buffers and zero rows; returns fresh arrays', async () => {
    const { session } = await createOnnxSession(model.bytes);
    try {
      const rows = 5;
      const big = randomInput(rows + 3, inputDim, 99);
      // A view that starts 2 rows in: ORT must read from byteOffset, not from the buffer's start.
      const view = big.subarray(2 * inputDim);
      const expected = mlpForwardJs(model.weights, view.slice(0, rows * inputDim), rows);
      const a = await runFloatModel(session, view, rows, inputDim);
      assertClose(a, expected);
      const aCopy = a.slice();
      const b = await runFloatModel(session, randomInput(rows, inputDim, 1), rows, inputDim);
      assert.deepEqual(a, aCopy, 'first result overwritten by the second run');
      assert.notEqual(a.buffer, b.buffer);
      assert.equal((await runFloatModel(session, new Float32Array(0), 0, inputDim)).length, 0);
    } finally {
      await session.release();
    }
  });

  it('maxRowsPerRun splits the batch and gives the same rows', async () => {
    const { session } = await createOnnxSession(model.bytes);
    try {
      const rows = 1000;
      const input = randomInput(rows, inputDim, 11);
      const whole = await runFloatModel(session, input, rows, inputDim);
      for (const maxRowsPerRun of [1, 300, 999, 1000, 4096]) {
        const split = await runFloatModel(session, input, rows, inputDim, { maxRowsPerRun });
        assertClose(split, whole, 1e-6);
      }
      assertClose(whole, mlpForwardJs(model.weights, input, rows));
      await assert.rejects(runFloatModel(session, input, rows, inputDim, { maxRowsPerRun: 0 }), RangeError);
    } finally {
      await session.release();
    }
  });

  it('rejects bad shapes with clear errors', async () => {
    const { session } = await createOnnxSession(model.bytes);
    try {
      await assert.rejects(runFloatModel(session, new Float32Array(10), 1, inputDim), /needs 64/);
      await assert.rejects(runFloatModel(session, new Float32Array(2 * 32), 2, 32), /input|dimension|Got/i);
      await assert.rejects(runFloatModel(session, new Float32Array(4), 1.5, 2), RangeError);
    } finally {
      await session.release();
    }
  });

  it('gpu: true falls back to CPU with one warning when CUDA is unavailable, same results', async (t) => {
    const warnings = captureWarn(t);
    const { session, provider } = await createOnnxSession(model.bytes, { gpu: true, deviceId: 0 });
    try {
      if (provider === 'cuda') {
        // Only on a machine with the CUDA EP libraries and a GPU: no fallback, no warning.
        assert.equal(warnings.length, 0);
        t.diagnostic('CUDA provider available: fallback path not exercised');
      } else {
        const reason = cudaUnavailableReason();
        assert.equal(warnings.length, 1, warnings.join('\n'));
        assert.ok(!warnings[0]!.includes('\n'), 'one line');
        assert.match(warnings[0]!, /gpu requested, using CPU/);
        if (reason) assert.ok(warnings[0]!.includes(reason));
      }
      const rows = 1024;
      const input = randomInput(rows, inputDim, 5);
      const got = await runFloatModel(session, input, rows, inputDim);
      assertClose(got, mlpForwardJs(model.weights, input, rows), provider === 'cuda' ? 1e-4 : TOL);
      assertRowsSumToOne(got, rows, outputDim);
    } finally {
      await session.release();
    }
  });

  it('fails clearly on a corrupt (truncated) model and on a missing file', async (t) => {
    const warnings = captureWarn(t);
    const truncated = model.bytes.slice(0, Math.floor(model.bytes.length / 2));
    await assert.rejects(createOnnxSession(truncated), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /cannot load ONNX model from \d+-byte buffer/);
      assert.match(e.message, /protobuf parsing failed.*truncated/i);
      return true;
    });
    // Same error (not a fallback warning) when the GPU was requested: the CPU retry fails the same way.
    await assert.rejects(createOnnxSession(truncated, { gpu: true }), /cannot load ONNX model/);
    assert.ok(warnings.length <= 1);
    const missing = join(dir, 'nope.onnx');
    await assert.rejects(createOnnxSession(missing), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.includes(missing), e.message);
      return true;
    });
  });
});

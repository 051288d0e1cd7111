// The ONNX example's UDF in a pipeline: results match a plain-JS forward pass of the same model,
// the session is created once per worker, and a GPU slot without CUDA falls back to CPU.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { col, fromColumns, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { buildMlp, mlpForwardJs, type MlpWeights } from '../examples/models/mlp.ts';
import { CLASSES, Scorer } from '../examples/onnx-udfs.ts';
import { tempDir } from './helpers.ts';

let modelPath: string;
let weights: MlpWeights;
const N = 3000;
const x = Float64Array.from({ length: N }, (_, i) => Math.cos(i / 37) * 3);

function reference(): Float32Array {
  return mlpForwardJs(weights, Float32Array.from(x), N);
}

before(() => {
  const m = buildMlp({ inputDim: 1, hidden: 32, outputDim: CLASSES, seed: 11 });
  weights = m.weights;
  modelPath = join(tempDir(), 'mlp.onnx');
  writeFileSync(modelPath, m.bytes);
});
after(async () => {
  delete process.env['FANOUT_NUM_GPUS'];
  setRunner('native');
  await shutdownWorkers();
});

function assertClose(rows: Record<string, unknown>[], ref: Float32Array): void {
  assert.equal(rows.length, N);
  let maxDiff = 0;
  rows.forEach((r, i) => {
    const p = r['probs'] as number[];
    assert.equal(p.length, CLASSES);
    for (let k = 0; k < CLASSES; k++) maxDiff = Math.max(maxDiff, Math.abs(p[k]! - ref[i * CLASSES + k]!));
  });
  assert.ok(maxDiff < 1e-5, `max difference ${maxDiff}`);
}

describe('ONNX cls UDF', () => {
  it('scores a float column in batches; matches the JS reference; loads the model once', async () => {
    const orig = console.warn;
    console.warn = () => undefined; // the "no GPU, runs on CPU" notice
    try {
      setRunner('native', { workers: false });
      const df = fromColumns({ x }).withColumn('probs', new Scorer(modelPath).probs(col('x')));
      const out = await df.collect();
      assertClose(await out.toRows(), reference());
      const m = out.metrics['MlpScorer.probs']!;
      assert.equal(m.counters['model_loads'], 1);
      assert.equal(m.calls, Math.ceil(N / 1024));
      assert.equal(m.counters['inferred'], N);
    } finally {
      console.warn = orig;
    }
  });

  it('on GPU slots (faked) each child process loads once, falls back to CPU, same results', async () => {
    const dir = tempDir();
    const half = N / 3;
    for (let k = 0; k < 3; k++) await fromColumns({ x: x.slice(k * half, (k + 1) * half) }).writeParquet(join(dir, `part${k}`));
    process.env['FANOUT_NUM_GPUS'] = '1';
    setRunner('native', { workers: 'auto' });
    const df = readParquet([0, 1, 2].map((k) => join(dir, `part${k}`))).withColumn('probs', new Scorer(modelPath).probs(col('x')));
    const out = await df.collect();
    assertClose(await out.toRows(), reference());
    // numGpus 0.5 on one device: two instances, each loading the model once.
    const loads = out.metrics['MlpScorer.probs']!.counters['model_loads']!;
    assert.ok(loads >= 1 && loads <= 2, `model loaded ${loads} times`);
  });
});

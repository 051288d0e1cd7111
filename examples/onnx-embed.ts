// ONNX inference as a UDF: generates a tiny MLP (1 -> 32 -> 4, softmax) in code, then scores a
// float column with a `cls` UDF that creates its InferenceSession once per worker.
// Run: npx tsx --conditions=development examples/onnx-embed.ts
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { col, fromColumns } from 'fanout';
import { buildMlp } from './models/mlp.ts';
import { CLASSES, Scorer } from './onnx-udfs.ts';

const modelPath = join(import.meta.dirname, 'models', 'mlp-1x32x4.onnx');
if (!existsSync(modelPath)) {
  mkdirSync(join(import.meta.dirname, 'models'), { recursive: true });
  writeFileSync(modelPath, buildMlp({ inputDim: 1, hidden: 32, outputDim: CLASSES, seed: 7 }).bytes);
}

const n = 10_000;
const x = Float64Array.from({ length: n }, (_, i) => Math.sin(i / 100));
const scorer = new Scorer(modelPath);
const df = fromColumns({ x })
  .withColumn('probs', scorer.probs(col('x')))
  .withColumn('top', col('probs').list.get(0));
console.log(await df.explain());
const out = await df.collect();
await out.show(5);
console.log(out.metrics['MlpScorer.probs']);

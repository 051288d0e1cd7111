// A stateful ONNX UDF: the model is loaded once per worker (the constructor), then every batch of
// a float column is scored in one inference call. On a GPU slot (the engine sets
// CUDA_VISIBLE_DEVICES) it asks for the CUDA provider, falling back to CPU with a warning.
import type * as arrow from 'apache-arrow';
import { cls, createOnnxSession, DataType, metrics, runFloatModel } from 'fanout';

export const CLASSES = 4;

export class MlpScorer {
  private readonly session: ReturnType<typeof createOnnxSession>;
  constructor(modelPath: string) {
    metrics.increment('model_loads');
    this.session = createOnnxSession(modelPath, { gpu: process.env['CUDA_VISIBLE_DEVICES'] !== undefined });
  }

  /** Class probabilities for each value of a float column. */
  async probs(x: arrow.Vector): Promise<Float32Array[]> {
    const { session } = await this.session;
    const input = Float32Array.from(x.toArray() as Float64Array);
    const out = await runFloatModel(session, input, x.length, 1);
    metrics.increment('inferred', x.length);
    return Array.from({ length: x.length }, (_, i) => out.subarray(i * CLASSES, (i + 1) * CLASSES));
  }
}

export const Scorer = cls(MlpScorer, {
  name: 'MlpScorer',
  concurrency: 2,
  numGpus: 0.5,
  methods: { probs: { returnDtype: DataType.fixedSizeList(DataType.float32(), CLASSES), batch: true, batchSize: 1024 } },
});

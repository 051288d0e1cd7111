// Builds a deterministic tiny MLP (Gemm → Relu → Gemm → Softmax) as ONNX bytes, entirely in code:
// no .onnx file ships in any package here and nothing may be downloaded.
//
//   tsx examples/models/mlp.ts out.onnx [--input 64] [--hidden 256] [--output 16] [--seed 42]
import { realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
// onnx-proto is CommonJS assigning `module.exports = $root`; Node's ESM loader cannot see `onnx` as a
// named export, so only the default import works at runtime.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export interface MlpOptions {
  inputDim: number;
  hidden: number;
  outputDim: number;
  seed: number;
}

/** Row-major weights: w1 is [inputDim, hidden], w2 is [hidden, outputDim] (Gemm without transB). */
export interface MlpWeights {
  inputDim: number;
  hidden: number;
  outputDim: number;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

export interface MlpModel {
  bytes: Uint8Array;
  weights: MlpWeights;
  inputName: string;
  outputName: string;
}

export const MLP_DEFAULTS: MlpOptions = { inputDim: 64, hidden: 256, outputDim: 16, seed: 42 };

// IR 8 is the newest onnx-proto (ONNX 1.10) knows and well inside what onnxruntime 1.30 accepts;
// opset 13 gives Softmax the per-row (axis=-1) semantics rather than opset<13's flatten-to-2D.
const IR_VERSION = 8;
const OPSET = 13;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** mulberry32: tiny seeded PRNG so the same seed always yields the same bytes. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(rand: () => number, n: number, limit: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * limit;
  return out;
}

export function makeMlpWeights(opts: MlpOptions): MlpWeights {
  const { inputDim, hidden, outputDim, seed } = opts;
  for (const [k, v] of Object.entries({ inputDim, hidden, outputDim })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`buildMlp: ${k} must be a positive integer, got ${v}`);
  }
  const rand = mulberry32(seed);
  // Glorot-uniform limits keep logits O(1), so softmax outputs are not saturated and comparisons mean something.
  return {
    inputDim,
    hidden,
    outputDim,
    w1: uniform(rand, inputDim * hidden, Math.sqrt(6 / (inputDim + hidden))),
    b1: uniform(rand, hidden, 0.1),
    w2: uniform(rand, hidden * outputDim, Math.sqrt(6 / (hidden + outputDim))),
    b2: uniform(rand, outputDim, 0.1),
  };
}

/** Little-endian float32 bytes as TensorProto.raw_data requires, independent of host endianness. */
function rawFloats(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  return out;
}

function initializer(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: FLOAT, rawData: rawFloats(data) };
}

function floatValueInfo(name: string, dims: Array<number | string>): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

export function buildMlp(opts: Partial<MlpOptions> = {}): MlpModel {
  const weights = makeMlpWeights({ ...MLP_DEFAULTS, ...opts });
  const { inputDim, hidden, outputDim } = weights;
  const inputName = 'input';
  const outputName = 'probs';
  const model: onnxProto.onnx.IModelProto = {
    irVersion: IR_VERSION,
    producerName: 'fanout-examples',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: 'mlp',
      node: [
        { opType: 'Gemm', name: 'fc1', input: [inputName, 'w1', 'b1'], output: ['h'] },
        { opType: 'Relu', name: 'relu', input: ['h'], output: ['h_relu'] },
        { opType: 'Gemm', name: 'fc2', input: ['h_relu', 'w2', 'b2'], output: ['logits'] },
        {
          opType: 'Softmax',
          name: 'softmax',
          input: ['logits'],
          output: [outputName],
          attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }],
        },
      ],
      initializer: [
        initializer('w1', [inputDim, hidden], weights.w1),
        initializer('b1', [hidden], weights.b1),
        initializer('w2', [hidden, outputDim], weights.w2),
        initializer('b2', [outputDim], weights.b2),
      ],
      // Symbolic batch dimension so any row count can be fed.
      input: [floatValueInfo(inputName, ['batch', inputDim])],
      output: [floatValueInfo(outputName, ['batch', outputDim])],
    },
  };
  const err = onnx.ModelProto.verify(model);
  if (err) throw new Error(`buildMlp: invalid ModelProto: ${err}`);
  // protobufjs returns a Node Buffer that may be a view into a shared pool; copy to an exact, plain Uint8Array.
  const bytes = new Uint8Array(onnx.ModelProto.encode(model).finish());
  return { bytes, weights, inputName, outputName };
}

/** Plain-JS reference forward pass (float64 accumulation), row-major input [rows, inputDim]. */
export function mlpForwardJs(weights: MlpWeights, input: Float32Array, rows: number): Float32Array {
  const { inputDim, hidden, outputDim, w1, b1, w2, b2 } = weights;
  if (input.length < rows * inputDim) {
    throw new RangeError(`mlpForwardJs: input has ${input.length} values, need ${rows} x ${inputDim}`);
  }
  const out = new Float32Array(rows * outputDim);
  const h = new Float64Array(hidden);
  const logits = new Float64Array(outputDim);
  for (let r = 0; r < rows; r++) {
    const xOff = r * inputDim;
    for (let j = 0; j < hidden; j++) h[j] = b1[j]!;
    for (let k = 0; k < inputDim; k++) {
      const x = input[xOff + k]!;
      const wOff = k * hidden;
      for (let j = 0; j < hidden; j++) h[j]! += x * w1[wOff + j]!;
    }
    for (let o = 0; o < outputDim; o++) logits[o] = b2[o]!;
    for (let j = 0; j < hidden; j++) {
      const v = Math.max(h[j]!, 0);
      if (v === 0) continue;
      const wOff = j * outputDim;
      for (let o = 0; o < outputDim; o++) logits[o]! += v * w2[wOff + o]!;
    }
    let max = -Infinity;
    for (let o = 0; o < outputDim; o++) if (logits[o]! > max) max = logits[o]!;
    let sum = 0;
    for (let o = 0; o < outputDim; o++) {
      logits[o] = Math.exp(logits[o]! - max);
      sum += logits[o]!;
    }
    const oOff = r * outputDim;
    for (let o = 0; o < outputDim; o++) out[oOff + o] = logits[o]! / sum;
  }
  return out;
}

/** Deterministic input rows in [-1, 1), for tests and examples. */
export function randomInput(rows: number, cols: number, seed: number): Float32Array {
  return uniform(mulberry32(seed), rows * cols, 1);
}

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  const args = process.argv.slice(2);
  const opts: Partial<MlpOptions> = {};
  const flags: Record<string, keyof MlpOptions> = {
    '--input': 'inputDim',
    '--hidden': 'hidden',
    '--output': 'outputDim',
    '--seed': 'seed',
  };
  let outPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const key = flags[a];
    if (key) {
      const v = Number(args[++i]);
      if (!Number.isFinite(v)) throw new Error(`mlp: ${a} needs a number`);
      opts[key] = v;
    } else if (!outPath && !a.startsWith('--')) {
      outPath = a;
    } else {
      console.error(`mlp: unexpected argument ${a}`);
      process.exit(2);
    }
  }
  if (!outPath) {
    console.error('usage: tsx examples/models/mlp.ts out.onnx [--input 64] [--hidden 256] [--output 16] [--seed 42]');
    process.exit(2);
  }
  const { bytes, weights } = buildMlp(opts);
  writeFileSync(outPath, bytes);
  console.log(`wrote ${outPath}: MLP ${weights.inputDim}→${weights.hidden}→${weights.outputDim}+softmax, ${bytes.length} bytes`);
}

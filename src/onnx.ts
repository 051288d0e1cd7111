// ONNX Runtime helper for UDF classes: session creation with provider choice/fallback, and a
// float32 [rows, cols] → float32 runner.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';

type Ort = typeof import('onnxruntime-node');

export interface OnnxSessionOptions {
  /** Try the CUDA execution provider first; falls back to CPU with one console.warn line. */
  gpu?: boolean;
  /** Intra-op threads for the CPU provider. Default 1: on 2 cores one thread beat ORT's default. */
  intraOpNumThreads?: number;
  /** CUDA device ordinal, relative to CUDA_VISIBLE_DEVICES (which the engine narrows per worker). Default 0. */
  deviceId?: number;
}

export type OnnxProvider = 'cuda' | 'cpu';

export interface OnnxSessionHandle {
  session: InferenceSession;
  provider: OnnxProvider;
}

const requireCjs = createRequire(import.meta.url);
let ortModule: Ort | undefined;

// Loaded lazily (and synchronously, it is CommonJS) so importing the engine does not load the ~20 MB
// native binding, nor fail on a platform without one, unless a UDF actually uses ONNX.
function ort(): Ort {
  return (ortModule ??= requireCjs('onnxruntime-node') as Ort);
}

/** Execution providers this onnxruntime-node build knows, e.g. ['cpu', 'webgpu', 'cuda', 'tensorrt'].
 * Listed is not usable: 'cuda' appears even when its libraries were never installed; see cudaUnavailableReason. */
export function onnxProviders(): string[] {
  return ort()
    .listSupportedBackends()
    .map((b) => b.name);
}

/** Why the CUDA provider cannot work here, or undefined if it is worth trying. */
export function cudaUnavailableReason(): string | undefined {
  const backend = ort()
    .listSupportedBackends()
    .find((b) => b.name === 'cuda');
  if (!backend) return `this onnxruntime-node build has no CUDA execution provider (${process.platform}/${process.arch})`;
  if (backend.bundled) return undefined;
  // The npm package leaves the CUDA EP out (too large); its install script fetches these files next to
  // the binding. Checking for them up front avoids ORT printing two native error lines to stderr on
  // every attempt, and gives a more useful reason than "Failed to load shared library".
  const libs =
    process.platform === 'win32'
      ? ['onnxruntime_providers_shared.dll', 'onnxruntime_providers_cuda.dll']
      : ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];
  let binDir: string;
  try {
    binDir = join(dirname(requireCjs.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined; // unknown layout: just try
  }
  if (!existsSync(binDir)) return undefined;
  const missing = libs.filter((f) => !existsSync(join(binDir, f)));
  if (missing.length > 0) {
    return `CUDA execution provider libraries are not installed (missing ${missing.join(', ')} in ${binDir}; onnxruntime-node's install script downloads them)`;
  }
  return undefined;
}

function describeModel(model: string | Uint8Array): string {
  return typeof model === 'string' ? model : `${model.byteLength}-byte buffer`;
}

function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // ORT messages can carry ANSI colour codes and newlines; keep the warning to one line.
  return (
    msg
      // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI escapes (ESC is a control character)
      .replace(/\x1b\[[0-9;]*m/g, '')
      .replace(/\s*\n\s*/g, ' ')
      .trim()
  );
}

async function create(model: string | Uint8Array, options: InferenceSession.SessionOptions): Promise<InferenceSession> {
  const { InferenceSession } = ort();
  // Separate calls: the overloads do not accept a `string | Uint8Array` union.
  return typeof model === 'string' ? InferenceSession.create(model, options) : InferenceSession.create(model, options);
}

export async function createOnnxSession(modelPathOrBytes: string | Uint8Array, opts: OnnxSessionOptions = {}): Promise<OnnxSessionHandle> {
  const intraOpNumThreads = opts.intraOpNumThreads ?? 1;
  if (!Number.isInteger(intraOpNumThreads) || intraOpNumThreads < 0) {
    throw new RangeError(`createOnnxSession: intraOpNumThreads must be a non-negative integer (0 = ORT default), got ${intraOpNumThreads}`);
  }
  const base: InferenceSession.SessionOptions = {
    intraOpNumThreads,
    // Sequential execution: the MLP-style graphs UDFs run have no parallel branches worth a thread.
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };

  if (opts.gpu) {
    const deviceId = opts.deviceId ?? 0;
    let reason = cudaUnavailableReason();
    if (reason === undefined) {
      try {
        // 'cpu' listed after 'cuda' lets ORT place ops CUDA lacks on the CPU inside the same session.
        const session = await create(modelPathOrBytes, {
          ...base,
          executionProviders: [{ name: 'cuda', deviceId }, 'cpu'],
        });
        return { session, provider: 'cuda' };
      } catch (e) {
        reason = `CUDA session failed (device ${deviceId}): ${oneLine(e)}`;
      }
    }
    console.warn(`fanout onnx: gpu requested, using CPU instead: ${reason}`);
  }

  try {
    const session = await create(modelPathOrBytes, { ...base, executionProviders: ['cpu'] });
    return { session, provider: 'cpu' };
  } catch (e) {
    const msg = oneLine(e);
    const hint = /protobuf parsing failed/i.test(msg) ? ' (truncated or not an ONNX ModelProto?)' : '';
    throw new Error(`createOnnxSession: cannot load ONNX model from ${describeModel(modelPathOrBytes)}: ${msg}${hint}`, {
      cause: e,
    });
  }
}

export interface RunFloatModelOptions {
  /**
   * Split the batch into runs of at most this many rows and concatenate the outputs. Only for models
   * whose rows are independent (the usual batch dimension). Measured on 2 vCPUs, MLP 64→256→16, 65,536
   * rows: 52 ms in one run, 33 ms in runs of 4,096–16,384, 27 ms in runs of 1,024, because the
   * [rows, 256] intermediate then stays in cache. Default: one run.
   */
  maxRowsPerRun?: number;
}

/**
 * Feeds `input` as a float32 [rows, cols] tensor to the session's single input and returns its single
 * output's data (a fresh array per call, safe to keep). `input` may be longer than rows*cols (e.g. a
 * reused buffer); only the first rows*cols values are used, without copying.
 */
export async function runFloatModel(
  session: InferenceSession,
  input: Float32Array,
  rows: number,
  cols: number,
  opts: RunFloatModelOptions = {},
): Promise<Float32Array> {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`runFloatModel: bad shape [${rows}, ${cols}]`);
  }
  const n = rows * cols;
  if (input.length < n) {
    throw new RangeError(`runFloatModel: input has ${input.length} values, shape [${rows}, ${cols}] needs ${n}`);
  }
  if (session.inputNames.length !== 1 || session.outputNames.length !== 1) {
    throw new Error(
      `runFloatModel: model must have exactly one input and one output, has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}]`,
    );
  }
  const chunk = opts.maxRowsPerRun ?? rows;
  if (opts.maxRowsPerRun !== undefined && (!Number.isInteger(chunk) || chunk < 1)) {
    throw new RangeError(`runFloatModel: maxRowsPerRun must be a positive integer, got ${chunk}`);
  }
  if (chunk >= rows) return (await runOnce(session, input.subarray(0, n), rows, cols)).data;

  let out: Float32Array | undefined;
  let width = 0;
  for (let r = 0; r < rows; r += chunk) {
    const m = Math.min(chunk, rows - r);
    const part = await runOnce(session, input.subarray(r * cols, (r + m) * cols), m, cols);
    if (part.dims[0] !== m || part.data.length % m !== 0) {
      throw new Error(`runFloatModel: maxRowsPerRun needs an output with one row per input row; got dims [${part.dims.join(', ')}] for ${m} rows`);
    }
    if (!out) {
      width = part.data.length / m;
      out = new Float32Array(rows * width);
    } else if (part.data.length !== m * width) {
      throw new Error(`runFloatModel: output row width changed between runs (${width} then ${part.data.length / m})`);
    }
    out.set(part.data, r * width);
  }
  return out!;
}

async function runOnce(session: InferenceSession, data: Float32Array, rows: number, cols: number): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  const { Tensor } = ort();
  // Note: onnxruntime-node runs inference synchronously on this thread (after a setImmediate), so a
  // large batch blocks the event loop for its duration. The tensor wraps `data` without copying.
  const results = await session.run({ [inputName]: new Tensor('float32', data, [rows, cols]) });
  const out = results[outputName];
  if (!out || !('data' in out) || !(out.data instanceof Float32Array)) {
    const type = out && 'type' in out ? out.type : 'missing';
    throw new Error(`runFloatModel: output '${outputName}' is not a float32 tensor (got ${String(type)})`);
  }
  return { data: out.data, dims: out.dims };
}

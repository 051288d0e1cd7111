// GPUs on this machine and how GPU UDF instances share them. CUDA reads CUDA_VISIBLE_DEVICES once at
// start-up, so each GPU instance is a child process started with its own device list.
import { execFileSync } from 'node:child_process';

let detected: number | null = null;

/** GPUs available: FANOUT_NUM_GPUS, else `nvidia-smi -L`, else 0. */
export function detectGpus(): number {
  const env = process.env['FANOUT_NUM_GPUS'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`FANOUT_NUM_GPUS must be a non-negative integer, got '${env}'`);
    return n;
  }
  if (detected !== null) return detected;
  try {
    const out = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    detected = countNvidiaSmiGpus(out);
  } catch {
    detected = 0;
  }
  return detected;
}

/** GPUs in `nvidia-smi -L` output ("GPU 0: NVIDIA H200 (UUID: GPU-…)", one line each). */
export function countNvidiaSmiGpus(listing: string): number {
  return listing.split('\n').filter((l) => /^GPU \d+:/.test(l.trim())).length;
}

/**
 * CUDA_VISIBLE_DEVICES for each instance of a UDF asking `numGpus` per instance: whole numbers get
 * whole, distinct devices; fractions pack floor(1/numGpus) instances onto each device.
 */
export function gpuSlots(numGpus: number, totalGpus: number, maxInstances?: number | null): string[] {
  if (numGpus <= 0) return [];
  if (numGpus > totalGpus) throw new Error(`asks for numGpus ${numGpus} per instance, but ${totalGpus} GPU(s) are available`);
  const slots: string[] = [];
  if (numGpus >= 1) {
    const per = Math.ceil(numGpus);
    for (let first = 0; first + per <= totalGpus; first += per) {
      slots.push(Array.from({ length: per }, (_, k) => first + k).join(','));
    }
  } else {
    const perDevice = Math.max(1, Math.floor(1 / numGpus + 1e-9));
    // Fill device 0, then 1, ...: instance k goes to device floor(k / perDevice).
    for (let k = 0; k < totalGpus * perDevice; k++) slots.push(String(Math.floor(k / perDevice)));
  }
  return maxInstances ? slots.slice(0, maxInstances) : slots;
}

// The UDF instances of a GPU stage inside one ECS task: as on the embedded runner, each GPU UDF runs
// in an actor pool of child processes with their own CUDA_VISIBLE_DEVICES, sized by the stage's
// placement (placement.ts): `instancesPerTask` instances, so fractional GPUs share the task's device
// (two numGpus 0.5 instances on GPU 0 of a one-GPU task). A task that sees no GPU (an emulator, a
// CPU-only image) calls the UDFs in-slot, as before.
import { udfsOf } from '../physical.ts';
import { detectGpus, gpuSlots } from '../resources.ts';
import { ActorRouter, shutdownActors, type ActorSpec } from '../runners/actors.ts';
import { runtime, type UdfRuntime } from '../udf-exec.ts';
import type { StageJSON } from './stages.ts';

/** The runtime a GPU stage's partitions run with in this task (its actor pools), and how to end them; null: in-slot. */
export function gpuSlotRuntime(stage: StageJSON): { rt: UdfRuntime; close(): Promise<void> } | null {
  if (stage.executor !== 'ecs-gpu') return null;
  const gpus = detectGpus();
  if (gpus === 0) return null;
  const perTask = stage.placement?.executor === 'ecs-gpu' ? stage.placement.instancesPerTask : 1;
  const specs = new Map<string, ActorSpec>();
  for (const u of udfsOf(stage.ops)) {
    const { numGpus } = u.options;
    if (numGpus <= 0 || !u.moduleUrl) continue;
    let devices: string[];
    try {
      // Whole GPUs: one instance on the task's GPUs; fractions: `perTask` instances packed onto the devices.
      devices = gpuSlots(numGpus, gpus, numGpus < 1 ? perTask : 1);
    } catch (e) {
      throw new Error(`UDF '${u.name}' ${(e as Error).message} in this ECS task`);
    }
    specs.set(u.name, { size: devices.length, devices, modules: [u.moduleUrl] });
  }
  if (specs.size === 0) return null;
  const rt = runtime.fork();
  rt.remote = new ActorRouter(specs);
  return { rt, close: shutdownActors };
}

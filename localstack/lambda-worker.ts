// A local "Lambda container": a worker thread that imports one handler module and runs invocations
// one at a time, like a warm Lambda execution environment.
import { parentPort, workerData } from 'node:worker_threads';

interface Invoke { id: number; event: unknown; functionName: string; deadline: number }
const { file } = workerData as { file: string };
const port = parentPort!;
const mod = (await import(file)) as { handler?: (event: unknown, context: unknown) => unknown };
if (typeof mod.handler !== 'function') throw new Error(`${file} exports no handler`);

port.on('message', async (m: Invoke) => {
  const context = {
    functionName: m.functionName,
    awsRequestId: `local-${m.id}`,
    getRemainingTimeInMillis: () => Math.max(0, m.deadline - Date.now()),
  };
  try {
    const result = await mod.handler!(m.event, context);
    port.postMessage({ id: m.id, ok: true, result: result ?? null });
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    port.postMessage({ id: m.id, ok: false, error: { name: err.name, message: err.message, stack: err.stack ?? '' } });
  }
});
port.postMessage({ ready: true });

// A local "Lambda container": a worker thread that imports one handler module and runs invocations
// one at a time, like a warm Lambda execution environment.
import { inspect } from 'node:util';
import { parentPort, workerData } from 'node:worker_threads';

interface Invoke {
  id: number;
  event: unknown;
  functionName: string;
  deadline: number;
}
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
    port.postMessage({ id: m.id, ok: false, error: serializeThrown(e) });
  }
});
port.postMessage({ ready: true });

/**
 * errorType / errorMessage / trace of anything a handler throws. An Error keeps its own; anything
 * else is described by its `message` or inspected (a real Lambda would report "[object Object]").
 */
function serializeThrown(e: unknown): { name: string; message: string; stack: string } {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack ?? '' };
  const o = typeof e === 'object' && e !== null ? (e as { name?: unknown; message?: unknown; stack?: unknown }) : null;
  const name = typeof o?.name === 'string' && o.name ? o.name : e === null ? 'null' : typeof e === 'object' ? (e.constructor?.name ?? 'Object') : typeof e;
  const message = typeof o?.message === 'string' ? o.message : typeof e === 'string' ? e : inspect(e, { depth: 4, breakLength: Infinity });
  return { name, message, stack: typeof o?.stack === 'string' ? o.stack : '' };
}

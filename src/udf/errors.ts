// Failures of UDF calls: the error type, per-call timeouts, and retries with backoff.
import type { UdfDefinition } from '../udf.ts';
import type { UdfStats } from './metrics.ts';

export class UdfError extends Error {
  constructor(
    message: string,
    readonly udf: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'UdfError';
    if (cause instanceof Error && cause.stack) this.stack = `${this.name}: ${message}\n  caused by: ${cause.stack}`;
  }
}

export function wrapError(err: unknown, what: string): Error {
  const msg = err instanceof Error ? err.message : String(err);
  const e = new Error(`${what}: ${msg}`);
  if (err instanceof Error && err.stack) e.stack = `${e.message}\n  caused by: ${err.stack}`;
  return e;
}

export function errText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Bounds an asynchronous result by the UDF's `timeoutMs`: a call still pending then fails (and is
 * abandoned: JS cannot cancel it). The timer is ref'd, so a never-settling promise cannot let the
 * process exit before the timeout fires. Synchronous values pass through untouched.
 */
export function timed<T>(def: UdfDefinition, v: T): T | Promise<Awaited<T>> {
  const ms = def.options.timeoutMs;
  if (ms === null || !isThenable(v)) return v;
  return new Promise<Awaited<T>>((resolve, reject) => {
    const timer = setTimeout(() => {
      const e = new Error(`UDF '${def.name}' call timed out after ${ms} ms (timeoutMs)`);
      e.name = 'TimeoutError';
      reject(e);
    }, ms);
    (v as PromiseLike<Awaited<T>>).then(
      (r) => {
        clearTimeout(timer);
        resolve(r);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * The wait before retry number `attempt` (0-based): exponential backoff with full jitter (a random
 * wait up to retryBackoffMs * 2^attempt), raised to the `retryAfterMs` the failed attempt's error
 * carries (a service's Retry-After), and never over retryBackoffMaxMs. The wait lies between attempts:
 * timeoutMs bounds each attempt, not the waits.
 */
export function retryDelayMs(def: UdfDefinition, attempt: number, err: unknown): number {
  const { retryBackoffMs, retryBackoffMaxMs } = def.options;
  const jittered = Math.random() * Math.min(retryBackoffMaxMs, retryBackoffMs * 2 ** Math.min(attempt, 52));
  return Math.min(retryBackoffMaxMs, Math.max(jittered, retryAfterMsOf(err)));
}

/** The `retryAfterMs` an error carries (a finite number > 0), else 0. */
function retryAfterMsOf(err: unknown): number {
  const v = typeof err === 'object' && err !== null ? (err as { retryAfterMs?: unknown }).retryAfterMs : undefined;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

let retrySleep: (ms: number) => Promise<void> = sleep;

/** Tests only: replaces the wait between retries (e.g. to record the delays); null restores it. */
export function setRetrySleepForTests(fn: ((ms: number) => Promise<void>) | null): void {
  retrySleep = fn ?? sleep;
}

export async function withRetries<T>(def: UdfDefinition, stats: UdfStats, call: () => T | Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      stats.calls++;
      return await call();
    } catch (err) {
      if (attempt >= def.options.maxRetries) throw err;
      stats.retries++;
      await retrySleep(retryDelayMs(def, attempt, err));
    }
  }
}

/** The remaining `maxRetries` attempts after a failed first one, with backoff. */
export async function retryLater<T>(def: UdfDefinition, stats: UdfStats, call: () => T, firstError: unknown): Promise<Awaited<T>> {
  let last = firstError;
  for (let attempt = 0; attempt < def.options.maxRetries; attempt++) {
    stats.retries++;
    await retrySleep(retryDelayMs(def, attempt, last));
    try {
      stats.calls++;
      return await call();
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

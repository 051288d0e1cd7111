// UDF metrics: per-UDF statistics, summed across workers, and custom counters callable from inside a UDF.
import { AsyncLocalStorage } from 'node:async_hooks';

export interface UdfStats {
  rowsIn: number;
  rowsOut: number;
  calls: number;
  retries: number;
  errors: number;
  timeMs: number;
  counters: Record<string, number>;
}

/** Per-UDF statistics of one run, summed across workers. */
export type RunMetrics = Record<string, UdfStats>;

export function emptyStats(): UdfStats {
  return { rowsIn: 0, rowsOut: 0, calls: 0, retries: 0, errors: 0, timeMs: 0, counters: {} };
}

export function mergeMetrics(into: RunMetrics, from: RunMetrics): RunMetrics {
  for (const [name, s] of Object.entries(from)) {
    const t = (into[name] ??= emptyStats());
    t.rowsIn += s.rowsIn;
    t.rowsOut += s.rowsOut;
    t.calls += s.calls;
    t.retries += s.retries;
    t.errors += s.errors;
    t.timeMs += s.timeMs;
    for (const [k, v] of Object.entries(s.counters)) t.counters[k] = (t.counters[k] ?? 0) + v;
  }
  return into;
}

// Shared through globalThis (like the UDF registry): a UDF module that imported `metrics` from
// another copy of fanout must still find the stats of the call that the executing copy runs.
const METRICS_KEY = Symbol.for('fanout.udf.metricsStore');
export const current: AsyncLocalStorage<UdfStats> = ((globalThis as Record<symbol, unknown>)[METRICS_KEY] ??=
  new AsyncLocalStorage<UdfStats>()) as AsyncLocalStorage<UdfStats>;
let warnedOutside = false;

/** Custom counters, callable from inside a UDF (sync or async); summed per UDF in `df.metrics`. */
export const metrics = {
  increment(name: string, amount = 1): void {
    const s = current.getStore();
    if (!s) {
      if (!warnedOutside) console.warn(`fanout: metrics.increment('${name}') called outside a UDF; ignored`);
      warnedOutside = true;
      return;
    }
    s.counters[name] = (s.counters[name] ?? 0) + amount;
  },
};

// Live progress for long actions: a bar for partitions with rows, rate and ETA, and a line per UDF
// with its rows, calls, errors and custom counters (only on a TTY; FANOUT_PROGRESS=0 turns it off),
// and the same figures as ProgressEvents for an action's `onProgress` callback (always).
import { createRequire } from 'node:module';
import type cliProgressNs from 'cli-progress';
import type { RunMetrics, UdfStats } from './udf-exec.ts';

export interface ProgressSink {
  partitionDone(): void;
  rows(n: number): void;
  udfs(m: RunMetrics): void;
  stop(): void;
}

/**
 * What an action's `onProgress` callback receives after each finished partition (on the AWS
 * runner: after each poll that found finished partitions, so one event may cover several).
 */
export interface ProgressEvent {
  /** Partition tasks finished (on AWS: over all stages, so a 2-stage run of 10 partitions has 20). */
  partitionsDone: number;
  partitionsTotal: number;
  /** Rows written by the finished partition tasks (on AWS: summed over the stages' shards). */
  rows: number;
  /** UDF metrics of the finished partitions so far (a copy: the caller may keep it). */
  metrics: RunMetrics;
  elapsedMs: number;
  /** Remaining time at the rate so far; null until a partition has finished. */
  etaMs: number | null;
}

export type ProgressListener = (event: ProgressEvent) => void;

// cli-progress is required on the first bar shown, not by `import 'fanout'` (cold start: ~10 ms).
const requireCjs = createRequire(import.meta.url);
let cliProgressModule: typeof cliProgressNs | undefined;
const cliProgress = (): typeof cliProgressNs => (cliProgressModule ??= requireCjs('cli-progress') as typeof cliProgressNs);

const NOOP: ProgressSink = { partitionDone() {}, rows() {}, udfs() {}, stop() {} };

export function progressEnabled(): boolean {
  const env = process.env['FANOUT_PROGRESS'];
  if (env === '0' || env === 'false') return false;
  if (env === '1' || env === 'true') return true;
  return Boolean(process.stderr.isTTY) && !process.env['CI'];
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(Math.round(n));
}

function fmtDuration(ms: number | null): string {
  if (ms === null) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function udfLine(name: string, s: UdfStats): string {
  const counters = Object.entries(s.counters)
    .map(([k, v]) => `${k}=${fmt(v)}`)
    .join(' ');
  return `udf ${name}: in ${fmt(s.rowsIn)} out ${fmt(s.rowsOut)} calls ${fmt(s.calls)}${s.retries ? ` retries ${s.retries}` : ''}${s.errors ? ` errors ${s.errors}` : ''}${counters ? ` | ${counters}` : ''}`;
}

/** Time left if the remaining partitions take as long as the finished ones did on average. */
export function estimateEtaMs(done: number, total: number, elapsedMs: number): number | null {
  if (done <= 0 || total <= 0) return null;
  return Math.max(0, (elapsedMs / done) * Math.max(0, total - done));
}

/**
 * Progress for one action over `partitions` partitions: a bar when `enabled`, and `listener` called
 * after each finished partition (a no-op when neither).
 */
export function startProgress(
  label: string,
  partitions: number,
  udfNames: readonly string[],
  enabled = progressEnabled(),
  listener?: ProgressListener,
): ProgressSink {
  if (!enabled && !listener) return NOOP;
  const t0 = performance.now();
  let rows = 0;
  let done = 0;
  let metrics: RunMetrics = {};
  const bars = enabled ? cliProgress() : null;
  const multi = bars
    ? new bars.MultiBar(
        {
          stream: process.stderr,
          clearOnComplete: false,
          hideCursor: true,
          format: '{label} [{bar}] {value}/{total} partitions | {rows} rows | {rate} rows/s | ETA {eta}',
          barsize: 24,
          fps: 5,
          noTTYOutput: true, // only reached when forced on (FANOUT_PROGRESS=1) or on a TTY
          notTTYSchedule: 1000,
        },
        bars.Presets.shades_classic,
      )
    : null;
  const main = multi?.create(partitions, 0, { label, rows: '0', rate: '0', eta: '?' });
  const lines = new Map<string, cliProgressNs.SingleBar>();
  if (multi)
    for (const n of udfNames)
      lines.set(
        n,
        multi.create(1, 0, { line: udfLine(n, { rowsIn: 0, rowsOut: 0, calls: 0, retries: 0, errors: 0, timeMs: 0, counters: {} }) }, { format: '  {line}' }),
      );
  const elapsed = (): number => performance.now() - t0;
  const tick = (): void => {
    if (!main) return;
    const ms = elapsed();
    main.update(done, {
      rows: fmt(rows),
      rate: fmt(rows / Math.max(1e-3, ms / 1000)),
      eta: done >= partitions ? '0s' : fmtDuration(estimateEtaMs(done, partitions, ms)),
    });
  };
  let pending = false;
  let warned = false;
  const emit = (): void => {
    if (!pending || !listener) return;
    pending = false;
    const ms = elapsed();
    try {
      listener({
        partitionsDone: done,
        partitionsTotal: partitions,
        rows,
        metrics: structuredClone(metrics),
        elapsedMs: ms,
        etaMs: estimateEtaMs(done, partitions, ms),
      });
    } catch (e) {
      // A failing callback must not fail (or, from a microtask, crash) the run it watches.
      if (!warned) console.warn(`fanout: onProgress callback threw (further errors not shown): ${e instanceof Error ? e.message : String(e)}`);
      warned = true;
    }
  };
  return {
    partitionDone() {
      done++;
      tick();
      // Runners report a partition's metrics right after it is done (udfs()), in the same turn:
      // the event goes out once they are in.
      if (listener && !pending) {
        pending = true;
        queueMicrotask(emit);
      }
    },
    rows(n) {
      rows += n;
      tick();
    },
    udfs(m) {
      metrics = m;
      for (const [name, s] of Object.entries(m)) lines.get(name)?.update(0, { line: udfLine(name, s) });
    },
    stop() {
      emit();
      tick();
      multi?.stop();
    },
  };
}

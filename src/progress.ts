// Live progress for long actions: a bar for partitions with rows and rate, and a line per UDF with
// its rows, calls, errors and custom counters. Only on a TTY; FANOUT_PROGRESS=0 turns it off.
import cliProgress from 'cli-progress';
import type { RunMetrics, UdfStats } from './udf-exec.ts';

export interface ProgressSink {
  partitionDone(): void;
  rows(n: number): void;
  udfs(m: RunMetrics): void;
  stop(): void;
}

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

function udfLine(name: string, s: UdfStats): string {
  const counters = Object.entries(s.counters).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
  return `udf ${name}: in ${fmt(s.rowsIn)} out ${fmt(s.rowsOut)} calls ${fmt(s.calls)}${s.retries ? ` retries ${s.retries}` : ''}${s.errors ? ` errors ${s.errors}` : ''}${counters ? ` | ${counters}` : ''}`;
}

/** Progress for one action over `partitions` partitions (a no-op when disabled). */
export function startProgress(label: string, partitions: number, udfNames: readonly string[], enabled = progressEnabled()): ProgressSink {
  if (!enabled) return NOOP;
  const multi = new cliProgress.MultiBar({
    stream: process.stderr,
    clearOnComplete: false,
    hideCursor: true,
    format: '{label} [{bar}] {value}/{total} partitions | {rows} rows | {rate} rows/s',
    barsize: 24,
    fps: 5,
    noTTYOutput: true, // only reached when forced on (FANOUT_PROGRESS=1) or on a TTY
    notTTYSchedule: 1000,
  }, cliProgress.Presets.shades_classic);
  const t0 = performance.now();
  let rows = 0;
  let done = 0;
  const main = multi.create(partitions, 0, { label, rows: '0', rate: '0' });
  const lines = new Map<string, cliProgress.SingleBar>();
  for (const n of udfNames) lines.set(n, multi.create(1, 0, { line: udfLine(n, { rowsIn: 0, rowsOut: 0, calls: 0, retries: 0, errors: 0, timeMs: 0, counters: {} }) }, { format: '  {line}' }));
  const tick = (): void => {
    const secs = Math.max(1e-3, (performance.now() - t0) / 1000);
    main.update(done, { rows: fmt(rows), rate: fmt(rows / secs) });
  };
  return {
    partitionDone() { done++; tick(); },
    rows(n) { rows += n; tick(); },
    udfs(m) {
      for (const [name, s] of Object.entries(m)) lines.get(name)?.update(0, { line: udfLine(name, s) });
    },
    stop() { tick(); multi.stop(); },
  };
}

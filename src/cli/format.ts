// How `fanout runs` prints run records: aligned text tables for people, the records themselves with --json.
import type { RunDetail, RunListEntry } from '../aws/history.ts';

/** Columns padded to their widest cell; numbers right-aligned. */
export function textTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [header, ...rows].map((r) => r.map((c) => String(c)));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.some((r) => typeof r[i] === 'number') && rows.every((r) => typeof r[i] === 'number' || r[i] === ''));
  return cells
    .map((r) =>
      r
        .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function duration(from: string, to: string | undefined): string {
  const ms = (to ? Date.parse(to) : Date.now()) - Date.parse(from);
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function formatRunList(runs: readonly RunListEntry[]): string {
  if (runs.length === 0) return 'no runs';
  return textTable(
    ['RUN', 'STATE', 'STARTED', 'TIME', 'PARTITIONS', 'ROWS', 'INPUT'],
    runs.map((r) => [
      r.runId,
      r.state,
      r.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
      duration(r.createdAt, r.finishedAt),
      `${r.done}/${r.partitions}`,
      r.rows ?? '',
      r.input,
    ]),
  );
}

export function formatRunDetail(r: RunDetail): string {
  const lines = [
    `run ${r.runId}: ${r.state}${r.error ? ` — ${r.error.split('\n')[0]}` : ''}`,
    `  started ${r.createdAt}${r.finishedAt ? `, finished ${r.finishedAt} (${duration(r.createdAt, r.finishedAt)})` : `, running for ${duration(r.createdAt, undefined)}`}`,
    `  input   ${r.input}`,
    `  output  ${r.output ?? '(kept in the work location)'}`,
  ];
  if (r.rows !== undefined) lines.push(`  rows    ${r.rows}${r.files ? ` in ${r.files.length} file(s)` : ''}`);
  for (const s of r.stageViews) {
    lines.push(
      '',
      `stage ${s.index} (${s.executor}${s.udfs.length ? `: ${s.udfs.join(', ')}` : ''}): ${s.done}/${s.partitions.length} done${s.failed ? `, ${s.failed} failed` : ''}`,
    );
    lines.push(
      textTable(
        ['PART', 'STATE', 'ROWS', 'MS', 'SOURCE / ERROR'],
        s.partitions.map((p) => [p.partition, p.state, p.rows ?? '', p.elapsedMs ?? '', p.error ?? p.source]),
      )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  }
  const udfs = Object.entries(r.metrics);
  if (udfs.length) {
    lines.push('', 'UDF metrics:');
    lines.push(
      textTable(
        ['UDF', 'ROWS IN', 'ROWS OUT', 'CALLS', 'RETRIES', 'ERRORS', 'MS', 'COUNTERS'],
        udfs.map(([name, s]) => [
          name,
          s.rowsIn,
          s.rowsOut,
          s.calls,
          s.retries,
          s.errors,
          Math.round(s.timeMs),
          Object.entries(s.counters)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        ]),
      )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  }
  return lines.join('\n');
}

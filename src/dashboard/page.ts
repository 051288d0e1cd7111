// The dashboard's one page: plain HTML, CSS and a script that renders the JSON API (/api/runs,
// /api/runs/<id>) with DOM calls (text goes in as textContent, never as HTML: error messages and
// file names are data). A timeline per stage is drawn as SVG bars from the partitions' start and
// end times. It polls every 2 s while the shown run is running.
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fanout runs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
  body { margin: 0; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header a { color: #9cc3ff; }
  main { padding: 16px 20px; }
  table { border-collapse: collapse; background: #fff; width: 100%; margin: 8px 0 16px; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
  th { background: #eef0f3; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { padding: 1px 6px; border-radius: 3px; font-size: 12px; color: #fff; }
  .running { background: #2f6fd6; } .succeeded, .done { background: #2e8b57; } .partial { background: #c98a00; }
  .failed { background: #c0392b; } .pending { background: #8a94a6; } .cancelled { background: #6b4fa0; }
  .error { color: #a02418; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; }
  section.stage { background: #fff; padding: 8px 12px; margin: 12px 0; border: 1px solid #e3e6ea; }
  svg.timeline { width: 100%; background: #fbfbfc; border: 1px solid #eef0f3; }
  .muted { color: #6b7384; }
  a.run { cursor: pointer; }
</style>
</head>
<body>
<header><h1>fanout runs</h1><a href="#">all runs</a><span id="work" class="muted"></span><span id="updated" class="muted"></span></header>
<main id="main"><p class="muted">loading…</p></main>
<script>
"use strict";
const main = document.getElementById('main');
let timer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'onclick') e.onclick = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const badge = (s) => el('span', { class: 'state ' + s, 'data-state': s }, s);
const ms = (from, to) => {
  const d = (to ? Date.parse(to) : Date.now()) - Date.parse(from);
  if (!isFinite(d) || d < 0) return '';
  return d < 1000 ? d + ' ms' : d < 120000 ? (d / 1000).toFixed(1) + ' s' : Math.floor(d / 60000) + ' min ' + Math.round((d % 60000) / 1000) + ' s';
};
function table(head, rows, numeric) {
  return el('table', {}, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c, i) => el('td', numeric && numeric[i] ? { class: 'num' } : {}, c))))));
}
async function api(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function stamp() { document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString(); }

async function showList() {
  const { work, runs } = await api('/api/runs');
  document.getElementById('work').textContent = work;
  main.replaceChildren(el('h2', {}, 'Runs'), runs.length === 0 ? el('p', { class: 'muted' }, 'no runs yet') :
    table(['run', 'state', 'started', 'time', 'partitions', 'rows', 'input', 'error'], runs.map((r) => [
      el('a', { class: 'run', href: '#run=' + encodeURIComponent(r.runId) }, r.runId), badge(r.state), r.createdAt, ms(r.createdAt, r.finishedAt),
      r.done + '/' + r.partitions, r.rows === undefined ? '' : r.rows, r.input, r.error ? el('span', { class: 'error' }, r.error.split('\\n')[0]) : '']),
      [false, false, false, false, true, true, false, false]));
  stamp();
  schedule(runs.some((r) => r.state === 'running'), showList);
}

function timeline(stage, t0, t1) {
  const W = 1000, row = 14, parts = stage.partitions, H = Math.max(1, parts.length) * row + 20;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'timeline'); svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H); svg.setAttribute('preserveAspectRatio', 'none');
  svg.style.height = Math.min(H, 400) + 'px';
  const x = (t) => ((Date.parse(t) - t0) / Math.max(1, t1 - t0)) * (W - 10) + 5;
  const colors = { done: '#2e8b57', failed: '#c0392b', pending: '#c8ced8' };
  parts.forEach((p, i) => {
    const start = p.startedAt || p.finishedAt, end = p.finishedAt || p.startedAt;
    if (!start) return;
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('x', String(x(start))); r.setAttribute('y', String(i * row + 2));
    r.setAttribute('width', String(Math.max(3, x(end) - x(start)))); r.setAttribute('height', String(row - 4));
    r.setAttribute('fill', colors[p.state]); r.setAttribute('data-partition', String(p.partition));
    const title = document.createElementNS(NS, 'title');
    title.textContent = 'partition ' + p.partition + ': ' + p.state + (p.elapsedMs !== undefined ? ', ' + p.elapsedMs + ' ms' : '') + (p.rows !== undefined ? ', ' + p.rows + ' rows' : '') + (p.error ? '\\n' + p.error : '');
    r.append(title); svg.append(r);
  });
  const axis = document.createElementNS(NS, 'text');
  axis.setAttribute('x', '5'); axis.setAttribute('y', String(H - 4)); axis.setAttribute('font-size', '11'); axis.setAttribute('fill', '#6b7384');
  axis.textContent = '0 … ' + ((t1 - t0) / 1000).toFixed(1) + ' s after the run started';
  svg.append(axis);
  return svg;
}

async function showRun(id) {
  const r = await api('/api/runs/' + encodeURIComponent(id));
  const t0 = Date.parse(r.createdAt);
  const times = r.stageViews.flatMap((s) => s.partitions.flatMap((p) => [p.startedAt, p.finishedAt])).filter(Boolean).map((t) => Date.parse(t));
  const t1 = Math.max(t0 + 1, ...times, r.finishedAt ? Date.parse(r.finishedAt) : (r.state === 'running' ? Date.now() : t0 + 1));
  const failures = r.stageViews.flatMap((s) => s.partitions.filter((p) => p.error).map((p) => [s.index, p.partition, p.source, el('span', { class: 'error' }, p.error)]));
  const udfs = Object.entries(r.metrics);
  main.replaceChildren(
    el('h2', {}, 'Run ', r.runId, ' ', badge(r.state)),
    table(['started', 'finished', 'time', 'input', 'output', 'rows'], [[r.createdAt, r.finishedAt || '', ms(r.createdAt, r.finishedAt), r.input, r.output || '(work location)', r.rows === undefined ? '' : r.rows]]),
    r.error ? el('div', { id: 'run-error' }, el('h3', {}, 'Error'), el('p', { class: 'error' }, r.error)) : '',
    failures.length ? el('div', { id: 'failures' }, el('h3', {}, 'Failed partitions'), table(['stage', 'partition', 'source', 'error'], failures)) : '',
    ...r.stageViews.map((s) => el('section', { class: 'stage', 'data-stage': String(s.index) },
      el('h3', {}, 'Stage ' + s.index + ' (' + s.executor + (s.udfs.length ? ': ' + s.udfs.join(', ') : '') + ') — ' + s.done + '/' + s.partitions.length + ' done' + (s.failed ? ', ' + s.failed + ' failed' : '')),
      timeline(s, t0, t1),
      el('details', {}, el('summary', {}, 'partitions'),
        table(['partition', 'state', 'rows', 'ms', 'source', 'error'], s.partitions.map((p) => [p.partition, badge(p.state), p.rows === undefined ? '' : p.rows, p.elapsedMs === undefined ? '' : p.elapsedMs, p.source, p.error ? el('span', { class: 'error' }, p.error) : '']), [true, false, true, true, false, false])))),
    el('h3', {}, 'UDF metrics'),
    udfs.length ? table(['UDF', 'rows in', 'rows out', 'calls', 'retries', 'errors', 'ms', 'counters'], udfs.map(([n, m]) => [n, m.rowsIn, m.rowsOut, m.calls, m.retries, m.errors, Math.round(m.timeMs), Object.entries(m.counters).map(([k, v]) => k + '=' + v).join(' ')]), [false, true, true, true, true, true, true, false]) : el('p', { class: 'muted' }, 'no UDF metrics'),
  );
  stamp();
  schedule(r.state === 'running', () => showRun(id));
}

function schedule(live, again) {
  clearTimeout(timer);
  if (live) timer = setTimeout(() => again().catch(fail), 2000);
}
function fail(e) { main.replaceChildren(el('p', { class: 'error', id: 'load-error' }, 'cannot load: ' + e.message)); }
function render() {
  const m = /^#run=(.+)$/.exec(location.hash);
  (m ? showRun(decodeURIComponent(m[1])) : showList()).catch(fail);
}
window.addEventListener('hashchange', render);
render();
</script>
</body>
</html>
`;

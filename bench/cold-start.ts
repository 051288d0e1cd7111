// `npm run bench:cold`: a cold process's `import 'fanout'` + first `readParquet(file).limit(1)` to Arrow,
// against Daft's cold `import daft` + `daft.read_parquet(file).limit(1).to_arrow()` (issue 12's target
// "cold limit(1) <= Daft"). fanout runs from the built `dist/` as users run it (no development
// condition, no tsx: `npm run build` first); Daft runs under PEERS_PYTHON (default python3) and is
// skipped with a message when it is not installed. The two alternate in fresh processes for
// COLD_ROUNDS rounds (default 7); the table has medians. Never part of `npm test`.
// COLD_COMPARE=<dir>: also runs fanout from another checkout's built dist/ (e.g. a base commit), in
// the same alternation: an A/B of two builds under the same load.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const ROUNDS = Number(process.env['COLD_ROUNDS'] ?? 7);
const file = process.env['BENCH_FILE'] ?? join(root, 'bench', 'data', 'bench-2000000.parquet');
const python = process.env['PEERS_PYTHON'] ?? 'python3';

// Each child prints one JSON line: wall ms of the import and of the first limit(1), the process's
// CPU ms (all threads) and its main thread's (Linux: /proc schedstat; the critical path on an idle
// machine, where background compiles and I/O run on other cores), and how long that main thread was
// blocked (waiting for I/O or another thread, not for a core: the part of an idle machine's wall time
// that is not main-thread CPU). The parent also times the whole process, start included.
const nodeChild = `
import { readFileSync } from 'node:fs';
const cpu = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
const sched = () => { try { return readFileSync('/proc/self/task/' + process.pid + '/schedstat', 'utf8').split(' ').map((x) => Number(x) / 1e6); } catch { return [NaN, NaN]; } };
const mainCpu = () => sched()[0];
const s0 = sched();
const t0 = performance.now();
const { readParquet } = await import('fanout');
const t1 = performance.now();
const importCpu = cpu(), importMain = mainCpu();
const t = await readParquet(${JSON.stringify(file)}).limit(1).toArrow();
const t2 = performance.now();
const s2 = sched();
if (t.numRows !== 1) throw new Error('expected 1 row, got ' + t.numRows);
console.log(JSON.stringify({ import: t1 - t0, first: t2 - t1, cpu: cpu(), main: mainCpu(), importCpu, importMain, blocked: t2 - t0 - (s2[0] - s0[0]) - (s2[1] - s0[1]) }));
process.exit(0);
`;
const pyChild = `
import json, os, time, sys
def sched():
    try:
        with open(f"/proc/self/task/{os.getpid()}/schedstat") as f:
            return [int(x) / 1e6 for x in f.read().split()[:2]]
    except OSError:
        return [float("nan"), float("nan")]
def main_cpu():
    return sched()[0]
s0 = sched()
t0 = time.perf_counter()
try:
    import daft
except ImportError as e:
    print(json.dumps({"skipped": str(e)})); sys.exit(0)
t1 = time.perf_counter()
import_cpu, import_main = time.process_time() * 1e3, main_cpu()
t = daft.read_parquet(${JSON.stringify(file)}).limit(1).to_arrow()
t2 = time.perf_counter()
s2 = sched()
assert t.num_rows == 1, t.num_rows
print(json.dumps({"import": (t1 - t0) * 1e3, "first": (t2 - t1) * 1e3, "cpu": time.process_time() * 1e3, "main": main_cpu(), "importCpu": import_cpu, "importMain": import_main, "blocked": (t2 - t0) * 1e3 - (s2[0] - s0[0]) - (s2[1] - s0[1]), "version": daft.__version__}))
`;

interface Run {
  process: number;
  import: number;
  first: number;
  cpu: number;
  main: number;
  /** CPU ms (all threads / the main thread) when the import had finished. */
  importCpu: number;
  importMain: number;
  /**
   * Import + first limit(1): ms the main thread was neither running nor waiting for a core (schedstat's
   * run-queue wait), i.e. waiting for I/O or another thread's work. Unlike wall time it does not grow with
   * the machine's load, so it shows waits on the critical path even when other processes share the cores.
   */
  blocked: number;
}

let crashes = 0;
function runChild(cmd: string, args: string[], cwd: string, attempt = 1): (Run & { version?: string }) | { skipped: string } {
  const t0 = performance.now();
  const p = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  const wall = performance.now() - t0;
  if (p.error) return { skipped: `${cmd}: ${p.error.message}` };
  if (p.status !== 0) {
    const why = `${cmd} ${args[0]} exited with ${p.status ?? p.signal}: ${p.stderr.trim().split('\n').slice(-5).join('\n')}`;
    // Daft's interpreter now and then aborts while finalizing, after its result (a GIL state error
    // at exit): such a run is repeated, and counted in the output.
    if (attempt >= 3) throw new Error(why);
    crashes++;
    console.error(`cold start: repeating a run: ${why.split('\n')[0]}`);
    return runChild(cmd, args, cwd, attempt + 1);
  }
  const r = JSON.parse(p.stdout.trim().split('\n').pop()!) as Omit<Run, 'process'> & { skipped?: string; version?: string };
  if (r.skipped) return { skipped: r.skipped };
  return { ...r, process: wall };
}

if (!existsSync(file)) {
  console.log(`cold start skipped: no input at ${file} (run \`npm run bench\` once, or set BENCH_FILE)`);
  process.exit(0);
}
/** The built file `import 'fanout'` loads in checkout `dir` (its package.json's exports["."].default). */
function builtEntry(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { exports: Record<string, { default: string }> };
  return join(dir, pkg.exports['.']!.default);
}
const dist = builtEntry(root);
if (!existsSync(dist)) {
  console.log('cold start skipped: no dist/ (run `npm run build` first: the bench measures the built package, as users run it)');
  process.exit(0);
}
const compare = process.env['COLD_COMPARE'];
if (compare && !existsSync(builtEntry(compare))) throw new Error(`COLD_COMPARE=${compare}: no built ${builtEntry(compare)} (build that checkout first)`);
const newestSource = Math.max(...readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' }).map((f) => statSync(join(root, 'src', f)).mtimeMs));
if (statSync(dist).mtimeMs < newestSource) console.log('warning: src/ changed after the last build: run `npm run build` (this measures dist/)');

// The child's `import('fanout')` resolves from its working directory: each checkout's own package.json exports.
const engines: { name: string; cmd: string; args: string[]; cwd: string; runs: Run[]; version?: string; skipped?: string }[] = [
  { name: 'fanout', cmd: process.execPath, args: ['--input-type=module', '-e', nodeChild], cwd: root, runs: [] },
  { name: 'Daft', cmd: python, args: ['-c', pyChild], cwd: root, runs: [] },
  ...(compare ? [{ name: `fanout @ ${compare}`, cmd: process.execPath, args: ['--input-type=module', '-e', nodeChild], cwd: compare, runs: [] }] : []),
];
const load0 = loadavg()[0]!;
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which engine starts each round, so that neither always runs right after the other.
  for (const e of r % 2 ? [...engines].reverse() : engines) {
    if (e.skipped) continue;
    const res = runChild(e.cmd, e.args, e.cwd);
    if ('skipped' in res) {
      e.skipped = res.skipped;
      continue;
    }
    e.version ??= res.version;
    e.runs.push(res);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const cols = ['process', 'import', 'first', 'cpu', 'main', 'importCpu', 'importMain', 'blocked'] as const;
const med = (e: (typeof engines)[number]) => Object.fromEntries(cols.map((c) => [c, median(e.runs.map((x) => x[c]))])) as Record<(typeof cols)[number], number>;
console.log(
  `cold start: fresh process, import + first readParquet(file).limit(1) to Arrow; medians of ${ROUNDS} alternated rounds; load average ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}${crashes ? `; ${crashes} crashed run(s) repeated` : ''}`,
);
console.log(
  '| engine | whole process | import | first limit(1) | import + limit(1) | CPU, all threads | CPU, main thread | import: CPU / main thread | main thread blocked |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
const ms = (x: number): string => `${x.toFixed(0)} ms`;
for (const e of engines) {
  if (e.skipped) {
    console.log(`| ${e.name} | skipped: ${e.skipped} | | | | | | | |`);
    continue;
  }
  const m = med(e);
  const both = median(e.runs.map((x) => x.import + x.first));
  console.log(
    `| ${e.name}${e.version ? ` ${e.version}` : ` (node ${process.version})`} | ${ms(m.process)} | ${ms(m.import)} | ${ms(m.first)} | ${ms(both)} | ${ms(m.cpu)} | ${ms(m.main)} | ${ms(m.importCpu)} / ${ms(m.importMain)} | ${ms(m.blocked)} |`,
  );
}
const [f, d] = engines;
if (!d!.skipped && d!.runs.length && f!.runs.length) {
  const both = (e: (typeof engines)[number]): number => median(e.runs.map((x) => x.import + x.first));
  console.log(
    `fanout / Daft: whole process ${(med(f!).process / med(d!).process).toFixed(2)}x, import + limit(1) ${(both(f!) / both(d!)).toFixed(2)}x, CPU ${(med(f!).cpu / med(d!).cpu).toFixed(2)}x, main-thread CPU ${(med(f!).main / med(d!).main).toFixed(2)}x (target <= 1x)`,
  );
}
const c = engines[2];
if (c?.runs.length && f!.runs.length) {
  const r = (k: (typeof cols)[number]): string => `${(med(f!)[k] / med(c)[k]).toFixed(2)}x`;
  console.log(
    `fanout / ${c.name}: CPU ${r('cpu')}, main-thread CPU ${r('main')}, import CPU ${r('importCpu')}, import main-thread CPU ${r('importMain')}; main thread blocked ${ms(med(f!).blocked)} against ${ms(med(c).blocked)}`,
  );
}

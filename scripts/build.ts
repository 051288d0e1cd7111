// `npm run build`: the package's dist/ — tsc's declarations (dist/src/**/*.d.ts, for the "types"
// conditions) and ONE esbuild bundle of fanout's own modules (dist/*.js), its dependencies left as
// imports (--packages=external).
//
// Why a bundle: a cold `import 'fanout'` spent most of its time in Node 20's ES module loader over
// ~150 of fanout's files (resolve, read, compile, link each); a few chunks load in ~30% less CPU
// (docs/performance.md, "Cold start: bundled dist/").
//
// The layout, and why it is flat: every file that something loads BY PATH is an entry point here,
// and all entries and chunks are written to ONE directory, so the `new URL('./worker.js',
// import.meta.url)`-style paths in the sources (runners/pool.ts, io/s3/sync.ts,
// localstack/lambda-runtime.ts, localstack/index.ts, localstack/ecs-agent.ts) resolve from whichever
// chunk their code lands in. All entries are built in one esbuild call with code splitting, so each
// module is in exactly one output file: one copy of its state (runner, UDF registry, caches) per
// thread, whichever entries a thread loads; lazy `import()`s stay separate chunks, loaded when called.
// Like cdk/bundling.ts's Lambda bundles: ESM, names kept (UDF names default to function and class
// names), no minification, no source maps (a mapped stack would name src/udf.ts instead of the chunk,
// and udf.ts tells its own frames from the user's by its file URL).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve } from 'node:path';
import * as esbuild from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');

/** Output name (dist/<name>.js) -> the source loaded by path: the package exports, the bin, and the files threads and processes start. */
export const ENTRY_POINTS: Record<string, string> = {
  index: 'src/index.ts', // "."
  local: 'localstack/index.ts', // "./local"
  bin: 'src/cli/bin.ts', // "bin"
  worker: 'src/runners/worker.ts', // runners/pool.ts: worker threads and GPU child processes
  's3-sync-worker': 'src/io/s3/s3-sync-worker.ts', // io/s3/sync.ts: synckit's worker
  'lambda-worker': 'localstack/lambda-worker.ts', // localstack/lambda-runtime.ts: a local Lambda environment
  'ecs-agent': 'localstack/ecs-agent.ts', // runnable on its own (emulator mode)
  // localstack/index.ts and ecs-agent.ts: the harness's Lambda handlers and ECS task.
  plan: 'lambdas/plan.ts',
  stage: 'lambdas/stage.ts',
  finalize: 'lambdas/finalize.ts',
  failure: 'lambdas/failure.ts',
  'ecs-task': 'lambdas/ecs-task.ts',
};

export interface BuildOptions {
  /** Where dist/ goes (default: the repo's dist/). Emptied first: chunk names change with their content. */
  outDir?: string;
  /** Type-check while emitting declarations (default true; `npm run typecheck` does the same check). */
  check?: boolean;
}

/** Builds dist/ (declarations + bundle); returns the bundle's files (relative to outDir), each with the sources in it (relative to the repo). */
export async function buildPackage(opts: BuildOptions = {}): Promise<Record<string, string[]>> {
  const outDir = resolve(ROOT, opts.outDir ?? 'dist');
  rmSync(outDir, { recursive: true, force: true });
  const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  const args = ['-p', 'tsconfig.build.json', '--outDir', outDir];
  if (opts.check === false) args.push('--noCheck');
  execFileSync(process.execPath, [tsc, ...args], { cwd: ROOT, stdio: 'inherit' });
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: ENTRY_POINTS,
    outdir: outDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    keepNames: true,
    minify: false,
    sourcemap: false,
    chunkNames: '[name]-[hash]',
    metafile: true,
    logLevel: 'warning',
  });
  // One esbuild call with splitting puts each module in one output; this guards the layout's
  // promise (one copy of module state per thread) against a build split into several calls.
  const owners = new Map<string, string[]>();
  for (const [out, o] of Object.entries(result.metafile.outputs)) {
    for (const input of Object.keys(o.inputs)) owners.set(input, [...(owners.get(input) ?? []), out]);
  }
  for (const [input, outs] of owners) {
    if (outs.length > 1) throw new Error(`build: ${input} is bundled into ${outs.length} files (${outs.join(', ')}): its state would exist twice`);
  }
  return Object.fromEntries(Object.entries(result.metafile.outputs).map(([f, o]) => [relative(outDir, resolve(ROOT, f)), Object.keys(o.inputs)]));
}

if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) {
  const files = await buildPackage();
  console.log(`build: dist/ has the declarations and ${Object.keys(files).length} bundled files`);
}

// Run history: what the serverless run lifecycle writes under `runs/<runId>/` of a work location
// (plan.json, per-partition completion markers and error records, summary.json, failure.json),
// read back as runs, stages and partitions. The `fanout runs` command and the dashboard both read
// it, from an S3 work bucket or a local work directory, with no other state of their own.
import { mapLimit } from '../concurrency.ts';
import { storeFor, type ObjectStore } from '../io/store/index.ts';
import type { RunMetrics } from '../udf/metrics.ts';
import { mergeMetrics } from '../udf/metrics.ts';
import { checkRunId, describePartitionInput, describeSource, keys, stagePartitions, type RunPlan, type RunSummary } from './run.ts';

/** A run's state as its records tell it. */
export type RunState = 'running' | 'succeeded' | 'partial' | 'failed' | 'cancelled';

/** Written by whoever stops a run's execution (the runner on abort, `fanout runs cancel`). */
export interface CancelRecord {
  at: string;
  by: string;
}

/** Where a run's cancellation is recorded, below the work location's base key. */
export const cancelKey = (runId: string): string => `runs/${checkRunId(runId)}/cancelled.json`;

/** Records that `runId` was cancelled, so histories stop showing it as running. */
export async function recordCancel(work: string, runId: string, by: string): Promise<void> {
  const { store, base } = workLocation(work);
  const record: CancelRecord = { at: new Date().toISOString(), by };
  await store.put(base + cancelKey(runId), JSON.stringify(record), { contentType: 'application/json' });
}

export interface RunListEntry {
  runId: string;
  state: RunState;
  createdAt: string;
  finishedAt?: string;
  /** The input as the plan names it (the first partition's file, and how many files). */
  input: string;
  output: string | null;
  stages: number;
  partitions: number;
  /** Partitions of the last stage with a completion marker. */
  done: number;
  rows?: number;
  error?: string;
}

export interface PartitionView {
  partition: number;
  source: string;
  state: 'done' | 'failed' | 'pending';
  rows?: number;
  bytes?: number;
  elapsedMs?: number;
  startedAt?: string;
  finishedAt?: string;
  /** The failed partition's error: its name and message, as the worker recorded it. */
  error?: string;
}

export interface StageView {
  index: number;
  executor: string;
  udfs: string[];
  done: number;
  failed: number;
  partitions: PartitionView[];
}

export interface RunDetail extends RunListEntry {
  stageViews: StageView[];
  /** UDF stats: the summary's for a finished run, else the finished partitions' so far. */
  metrics: RunMetrics;
  files?: RunSummary['files'];
  failedPartitions?: RunSummary['failedPartitions'];
}

interface MarkerRecord {
  rows: number;
  bytes: number;
  metrics: RunMetrics;
  elapsedMs?: number;
  startedAt?: string;
  finishedAt?: string;
}
interface ErrorRecord {
  name: string;
  message: string;
  at: string;
}

/** The store and the key prefix of a work location (`s3://bucket[/prefix]` or a directory). */
function workLocation(work: string): { store: ObjectStore; base: string } {
  const { store, key } = storeFor(work, 'work locations');
  return { store, base: key === '' || key.endsWith('/') ? key : `${key}/` };
}

async function json<T>(store: ObjectStore, key: string): Promise<T | null> {
  const got = await store.getOrNull(key);
  return got ? (JSON.parse(new TextDecoder().decode(got.bytes)) as T) : null;
}

function inputOf(plan: RunPlan): string {
  const first = plan.sources[0];
  if (!first) return '(no input)';
  const files = new Set(plan.sources.map((s) => ('path' in s ? s.path : describeSource(s))));
  const one = 'path' in first ? first.path : describeSource(first);
  return files.size > 1 ? `${one} (+${files.size - 1} files)` : one;
}

function stateOf(summary: (RunSummary & { complete?: boolean }) | null, failure: RunSummary | null, cancel: CancelRecord | null): RunState {
  if (summary?.status === 'SUCCEEDED') return summary.complete === false ? 'partial' : 'succeeded';
  // A stopped execution may also leave failure.json (the runner records how it ended): cancelled says why.
  if (cancel) return 'cancelled';
  if (failure || summary?.status === 'FAILED') return 'failed';
  return 'running';
}

const markerIndex = (key: string, kind: 'metrics' | 'error'): number | null => {
  const m = new RegExp(`/${kind}-(\\d+)\\.json$`).exec(key);
  return m ? Number(m[1]) : null;
};

async function entryFor(store: ObjectStore, base: string, runId: string): Promise<{ entry: RunListEntry; plan: RunPlan; summary: RunSummary | null } | null> {
  const k = (key: string) => base + key;
  const plan = await json<RunPlan>(store, k(keys.plan(runId)));
  if (!plan) return null;
  const [summary, failure, cancel, last] = await Promise.all([
    json<RunSummary & { complete?: boolean }>(store, k(keys.summary(runId))),
    json<RunSummary>(store, k(keys.failure(runId))),
    json<CancelRecord>(store, k(cancelKey(runId))),
    plan.stages.length ? store.list(k(keys.stagePrefix(runId, plan.stages.length - 1))) : Promise.resolve([]),
  ]);
  const state = stateOf(summary, failure, cancel);
  const finished = summary ?? failure;
  const entry: RunListEntry = {
    runId,
    state,
    createdAt: plan.createdAt,
    input: inputOf(plan),
    output: plan.output?.uri ?? null,
    stages: plan.stages.length,
    // The last stage's: `done` counts its markers (after an exchange it has its own partition count).
    partitions: stagePartitions(plan, plan.stages.length - 1),
    done: last.filter((key) => markerIndex(key, 'metrics') !== null).length,
  };
  if (state === 'cancelled' && cancel) entry.finishedAt = cancel.at;
  else if (finished?.finishedAt) entry.finishedAt = finished.finishedAt;
  if (summary?.status === 'SUCCEEDED') entry.rows = summary.rows;
  const error = state === 'cancelled' && cancel ? `cancelled (${cancel.by})` : (failure?.error ?? summary?.error);
  if (error) entry.error = error;
  return { entry, plan, summary: summary ?? failure };
}

/** The runs under `work`, newest first (by the plan's creation time). */
export async function listRuns(work: string, opts: { limit?: number } = {}): Promise<RunListEntry[]> {
  const { store, base } = workLocation(work);
  const listing = await store.listObjects(`${base}runs/`, { delimiter: '/' });
  const ids = listing.prefixes
    .map((p) => /([^/]+)\/?$/.exec(p)?.[1] ?? '')
    .filter((id) => {
      try {
        return checkRunId(id) === id;
      } catch {
        return false; // not a run's directory
      }
    });
  const entries = (await mapLimit(ids, 8, async (id) => (await entryFor(store, base, id))?.entry ?? null)).filter((e): e is RunListEntry => e !== null);
  entries.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.runId.localeCompare(a.runId));
  return opts.limit !== undefined ? entries.slice(0, opts.limit) : entries;
}

/** One run with its stages and partitions (markers and error records), or a clear error when it has no plan. */
export async function describeRun(work: string, runId: string): Promise<RunDetail> {
  checkRunId(runId);
  const { store, base } = workLocation(work);
  const got = await entryFor(store, base, runId);
  if (!got) throw new Error(`run ${runId}: no plan at ${store.uri(base + keys.plan(runId))} (is ${work} the work location of the runs?)`);
  const { entry, plan, summary } = got;
  const metrics: RunMetrics = {};
  const stageViews: StageView[] = [];
  for (const stage of plan.stages) {
    const listed = await store.list(base + keys.stagePrefix(runId, stage.index));
    const done = new Set<number>();
    const failed = new Set<number>();
    for (const key of listed) {
      const m = markerIndex(key, 'metrics');
      if (m !== null) done.add(m);
      const e = markerIndex(key, 'error');
      if (e !== null) failed.add(e);
    }
    const indices = Array.from({ length: stagePartitions(plan, stage.index) }, (_, p) => p);
    const partitions = await mapLimit(indices, 16, async (p): Promise<PartitionView> => {
      const view: PartitionView = { partition: p, source: describePartitionInput(plan, stage.index, p), state: 'pending' };
      if (done.has(p)) {
        const m = await json<MarkerRecord>(store, base + keys.metrics(runId, stage.index, p));
        view.state = 'done';
        if (m) {
          view.rows = m.rows;
          view.bytes = m.bytes;
          if (m.elapsedMs !== undefined) view.elapsedMs = m.elapsedMs;
          if (m.startedAt) view.startedAt = m.startedAt;
          if (m.finishedAt) view.finishedAt = m.finishedAt;
          if (!summary) mergeMetrics(metrics, m.metrics);
        }
      } else if (failed.has(p)) {
        const e = await json<ErrorRecord>(store, base + keys.error(runId, stage.index, p));
        view.state = 'failed';
        if (e) {
          view.error = `${e.name}: ${e.message}`;
          view.finishedAt = e.at;
        }
      }
      return view;
    });
    stageViews.push({
      index: stage.index,
      executor: stage.executor,
      udfs: stage.udfs,
      done: partitions.filter((p) => p.state === 'done').length,
      failed: partitions.filter((p) => p.state === 'failed').length,
      partitions,
    });
  }
  const detail: RunDetail = { ...entry, stageViews, metrics: summary?.metrics ?? metrics };
  if (summary?.files) detail.files = summary.files;
  if (summary?.failedPartitions) detail.failedPartitions = summary.failedPartitions;
  return detail;
}

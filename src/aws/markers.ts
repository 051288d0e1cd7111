// Reads a running run's completion markers (`stage-<k>/metrics-<p>.json`: rows, bytes, UDF metrics)
// as they appear, for live progress. Stages run one after another, so each poll lists only the
// marker keys of the first unfinished stage (and the next ones once it finishes), and GETs only
// markers it has not read yet, a bounded number at a time: a poll costs one LIST plus one GET per
// newly finished partition, not a listing of every shard and marker of the run.
import { mapLimit } from '../concurrency.ts';
import { listS3 } from '../io/s3/index.ts';
import { getJson, NotFoundError, S3Store, type ObjectStore } from '../io/store/index.ts';
import type { RunMetrics } from '../udf-exec.ts';
import { keys, stagePartitions, type RunPlan } from './run.ts';

/** The fields of a completion marker that progress uses (run.ts writes them). */
export interface MarkerInfo {
  stage: number;
  partition: number;
  rows: number;
  bytes: number;
  metrics: RunMetrics;
  elapsedMs?: number;
}

const MARKER = /\/metrics-(\d+)\.json$/;

export class MarkerWatcher {
  private readonly seen: Set<string>[];
  private readonly expected: number[];
  /** Per stage: the first partition whose marker was not read yet (every one before it was). */
  private readonly next: number[];
  /** Index of the first stage not all of whose markers were read. */
  private current = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly plan: RunPlan,
    private readonly concurrency = 16,
  ) {
    this.seen = plan.stages.map(() => new Set<string>());
    this.next = plan.stages.map(() => 0);
    this.expected = plan.stages.map((s) => stagePartitions(plan, s.index));
  }

  /** Partition tasks over all stages. */
  get total(): number {
    return this.expected.reduce((a, b) => a + b, 0);
  }

  /** The markers that appeared since the last poll. */
  async poll(): Promise<MarkerInfo[]> {
    const found: MarkerInfo[] = [];
    while (this.current < this.plan.stages.length) {
      const stage = this.plan.stages[this.current]!.index;
      const seen = this.seen[this.current]!;
      const listed = await this.listMarkers(stage, this.next[this.current]!);
      const fresh = listed.filter((k) => MARKER.test(k) && !seen.has(k));
      const read = await mapLimit(fresh, this.concurrency, async (key) => {
        try {
          return { key, marker: await getJson<Omit<MarkerInfo, 'stage' | 'partition'>>(this.store, key) };
        } catch (e) {
          // Listed, then gone: the run was overwritten or cleaned up; the next poll says.
          if (e instanceof NotFoundError) return null;
          throw e;
        }
      });
      for (const r of read) {
        if (!r) continue;
        seen.add(r.key);
        found.push({ ...r.marker, stage, partition: Number(MARKER.exec(r.key)![1]) });
      }
      let n = this.next[this.current]!;
      while (n < this.expected[this.current]! && seen.has(keys.metrics(this.plan.runId, stage, n))) n++;
      this.next[this.current] = n;
      if (seen.size < this.expected[this.current]!) break;
      this.current++;
    }
    return found;
  }

  /**
   * The stage's marker keys; on S3 only those after partition `from - 1`'s (StartAfter: every
   * marker before it was read), so a poll late in a large stage does not list every marker again.
   * Keys sort in partition order while partition numbers have at most five digits (keys.metrics pads to five).
   */
  private async listMarkers(stage: number, from: number): Promise<string[]> {
    const prefix = `${keys.stagePrefix(this.plan.runId, stage)}metrics-`;
    if (!(this.store instanceof S3Store) || from === 0 || stagePartitions(this.plan, stage) > 100_000) return this.store.list(prefix);
    const { objects } = await listS3(this.store.uri(prefix), { startAfter: keys.metrics(this.plan.runId, stage, from - 1) });
    return objects.map((o) => o.key);
  }
}

// Reads a running run's completion markers (`stage-<k>/metrics-<p>.json`: rows, bytes, UDF metrics)
// as they appear, for live progress. Stages run one after another, so each poll lists only the
// marker keys of the first unfinished stage (and the next ones once it finishes), and GETs only
// markers it has not read yet, a bounded number at a time: a poll costs one LIST plus one GET per
// newly finished partition, not a listing of every shard and marker of the run.
import { mapLimit } from '../concurrency.ts';
import { getJson, NotFoundError, type ObjectStore } from '../io/store/index.ts';
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
  /** Index of the first stage not all of whose markers were read. */
  private current = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly plan: RunPlan,
    private readonly concurrency = 16,
  ) {
    this.seen = plan.stages.map(() => new Set<string>());
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
      const listed = await this.store.list(`${keys.stagePrefix(this.plan.runId, stage)}metrics-`);
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
      if (seen.size < this.expected[this.current]!) break;
      this.current++;
    }
    return found;
  }
}

// Reads a running run's completion markers (`stage-<k>/metrics-<p>.json`: rows, bytes, UDF metrics)
// as they appear, for live progress. Stages run one after another, so each poll lists only the
// marker keys of the first unfinished stage (and the next ones once it finishes), and GETs only
// markers it has not read yet, a bounded number at a time: a poll costs one LIST plus one GET per
// newly finished partition, not a listing of every shard and marker of the run. With `deferMs`, a
// stage whose Stage invocations run several partitions each reads their markers from the batch each
// invocation writes at its end (run.ts writeMarkerBatch): one GET per invocation, not per partition.
import { mapLimit } from '../concurrency.ts';
import { listS3 } from '../io/s3/index.ts';
import { getJson, NotFoundError, S3Store, type ObjectStore } from '../io/store/index.ts';
import type { RunMetrics } from '../udf-exec.ts';
import { keys, stagePartitions, type MarkerBatch, type RunPlan } from './run.ts';

/** The fields of a completion marker that progress uses (run.ts writes them). */
export interface MarkerInfo {
  stage: number;
  partition: number;
  rows: number;
  bytes: number;
  metrics: RunMetrics;
  elapsedMs?: number;
  /** A small result committed in place: its ETag and bytes (base64), see run.ts PartitionMarker. */
  result?: { etag: string; data: string };
}

const MARKER = /\/metrics-(\d+)\.json$/;

type Marker = Omit<MarkerInfo, 'stage' | 'partition'>;

export class MarkerWatcher {
  private readonly seen: Set<string>[];
  private readonly expected: number[];
  /** Per stage: the first partition whose marker was not read yet (every one before it was). */
  private readonly next: number[];
  /** Index of the first stage not all of whose markers were read. */
  private current = 0;
  /** When each listed but unread marker key was first listed (ms): its GET waits up to deferMs for a batch. */
  private readonly firstListed = new Map<string, number>();
  /** Marker batches already read, and the markers they hold (with the batch's last-modified time) by marker key. */
  private readonly batchesRead = new Set<string>();
  private readonly fromBatches = new Map<string, { marker: Marker; at: number }>();

  /**
   * @param deferMs how long a listed marker of a batched stage may wait for its invocation's marker
   *   batch before it is read on its own (0: every marker is read on its own, when listed)
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly plan: RunPlan,
    private readonly concurrency = 16,
    private readonly deferMs = 0,
  ) {
    this.seen = plan.stages.map(() => new Set<string>());
    this.next = plan.stages.map(() => 0);
    this.expected = plan.stages.map((s) => stagePartitions(plan, s.index));
  }

  /** Partition tasks over all stages. */
  get total(): number {
    return this.expected.reduce((a, b) => a + b, 0);
  }

  /**
   * The markers that appeared since the last poll. `final` (the execution ended, so every batch
   * that will be written was): nothing is deferred.
   */
  async poll(final = false): Promise<MarkerInfo[]> {
    const found: MarkerInfo[] = [];
    while (this.current < this.plan.stages.length) {
      const planned = this.plan.stages[this.current]!;
      const stage = planned.index;
      const seen = this.seen[this.current]!;
      const batched = this.deferMs > 0 && (planned.partitionsPerInvocation ?? 1) > 1;
      const listed = await this.listMarkers(stage, this.next[this.current]!, batched);
      const fresh = listed.filter((o) => MARKER.test(o.key) && !seen.has(o.key));
      let direct = fresh;
      if (batched && fresh.length) {
        const now = Date.now();
        for (const o of fresh) if (!this.firstListed.has(o.key)) this.firstListed.set(o.key, now);
        const due = (key: string): boolean => final || now - this.firstListed.get(key)! >= this.deferMs;
        // The batches are listed only when a marker is due: a poll in between costs one LIST, as without batches.
        if (fresh.some((o) => due(o.key))) await this.readBatches(stage);
        direct = [];
        for (const o of fresh) {
          const b = this.fromBatches.get(o.key);
          // The batch's copy only when the marker is not newer than it (a marker written again
          // after its batch, say when the partition ran again, is read itself), as in Finalize.
          if (b && o.lastModified <= b.at) {
            this.take(o.key, b.marker, stage, found);
            this.fromBatches.delete(o.key);
          } else if (due(o.key)) direct.push(o);
        }
      }
      const read = await mapLimit(direct, this.concurrency, async ({ key }) => {
        try {
          return { key, marker: await getJson<Marker>(this.store, key) };
        } catch (e) {
          // Listed, then gone: the run was overwritten or cleaned up; the next poll says.
          if (e instanceof NotFoundError) return null;
          throw e;
        }
      });
      for (const r of read) if (r) this.take(r.key, r.marker, stage, found);
      let n = this.next[this.current]!;
      while (n < this.expected[this.current]! && seen.has(keys.metrics(this.plan.runId, stage, n))) n++;
      this.next[this.current] = n;
      if (seen.size < this.expected[this.current]!) break;
      this.current++;
      this.fromBatches.clear();
    }
    return found;
  }

  private take(key: string, marker: Marker, stage: number, found: MarkerInfo[]): void {
    this.seen[this.current]!.add(key);
    this.firstListed.delete(key);
    found.push({ ...marker, stage, partition: Number(MARKER.exec(key)![1]) });
  }

  /** Reads the stage's marker batches not read yet (best effort: a marker without one is read itself). */
  private async readBatches(stage: number): Promise<void> {
    const prefix = `${keys.stagePrefix(this.plan.runId, stage)}markers-`;
    const { objects } = await this.store.listObjects(prefix);
    const unread = objects.filter((o) => o.key.endsWith('.json') && !this.batchesRead.has(o.key));
    const batches = await mapLimit(unread, this.concurrency, async (o) => ({
      o,
      batch: await getJson<MarkerBatch>(this.store, o.key).catch((e: unknown) => (e instanceof NotFoundError ? null : Promise.reject(e))),
    }));
    for (const { o, batch } of batches) {
      this.batchesRead.add(o.key);
      for (const [p, marker] of Object.entries(batch?.markers ?? {})) {
        const n = Number(p);
        if (Number.isInteger(n) && n >= 0) this.fromBatches.set(keys.metrics(this.plan.runId, stage, n), { marker, at: o.lastModified });
      }
    }
  }

  /**
   * The stage's marker objects; on S3 only those after partition `from - 1`'s (StartAfter: every
   * marker before it was read), so a poll late in a large stage does not list every marker again.
   * Keys sort in partition order while partition numbers have at most five digits (keys.metrics pads to five).
   * `withTimes`: last-modified times are needed (to match markers with batches); otherwise they are 0.
   */
  private async listMarkers(stage: number, from: number, withTimes: boolean): Promise<{ key: string; lastModified: number }[]> {
    const prefix = `${keys.stagePrefix(this.plan.runId, stage)}metrics-`;
    if (!(this.store instanceof S3Store) || from === 0 || stagePartitions(this.plan, stage) > 100_000) {
      if (withTimes) return (await this.store.listObjects(prefix)).objects;
      return (await this.store.list(prefix)).map((key) => ({ key, lastModified: 0 }));
    }
    const { objects } = await listS3(this.store.uri(prefix), { startAfter: keys.metrics(this.plan.runId, stage, from - 1) });
    return objects;
  }
}

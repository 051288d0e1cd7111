// Memory accounting and spilling for the relational operators: each operator reports the bytes it
// holds (hash tables, buffered batches) to a MemoryBudget; over the budget it writes what it holds
// to local Arrow IPC files (one file per batch, so reading back holds one batch at a time).
import * as arrow from 'apache-arrow';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unaliasBatch } from '../ipc-alias.ts';

/** Counters over the process's relational operators (tests and benches read them). */
export interface RelationalStats {
  /** Spill files written. */
  spillFiles: number;
  /** Bytes written to spill files. */
  spilledBytes: number;
  /** Most bytes the relational operators held at once (their own accounting). */
  peakBytesHeld: number;
  /**
   * Rows phase one of an aggregation (groupBy, distinct) aggregated into partial states on this
   * thread. Each thread counts its own: with worker threads, the partitions' rows are counted there.
   */
  partialRowsAggregated: number;
  /** Partial-state rows phase two merged into its final table on this thread. */
  stateRowsMerged: number;
  /** Raw rows phase two aggregated itself on this thread (phase one passed them on, or did not run). */
  rawRowsAggregated: number;
}

type AggregateCounter = 'partialRowsAggregated' | 'stateRowsMerged' | 'rawRowsAggregated';

const stats: RelationalStats = { spillFiles: 0, spilledBytes: 0, peakBytesHeld: 0, partialRowsAggregated: 0, stateRowsMerged: 0, rawRowsAggregated: 0 };
let held = 0;

export function countAggregateRows(counter: AggregateCounter, rows: number): void {
  stats[counter] += rows;
}

/** The counters since the last reset. */
export function relationalStats(): RelationalStats {
  return { ...stats };
}

/** Zeroes the counters (e.g. before a measured action). */
export function resetRelationalStats(): void {
  stats.spillFiles = 0;
  stats.spilledBytes = 0;
  stats.partialRowsAggregated = 0;
  stats.stateRowsMerged = 0;
  stats.rawRowsAggregated = 0;
  stats.peakBytesHeld = held;
}

/** One operator's share of the held bytes; `set` replaces its figure, `release` drops it. */
export class MemoryShare {
  private mine = 0;
  constructor(readonly budget: number) {}
  set(bytes: number): void {
    held += bytes - this.mine;
    this.mine = bytes;
    if (held > stats.peakBytesHeld) stats.peakBytesHeld = held;
  }
  get bytes(): number {
    return this.mine;
  }
  release(): void {
    this.set(0);
  }
}

/** Bytes a batch's buffers take. */
export function batchBytes(b: arrow.RecordBatch): number {
  return b.data.children.reduce((n, c) => n + c.byteLength, 0);
}

/** A directory of spill files, removed by close(). */
export class SpillDir {
  private dir: string | null = null;
  private next = 0;

  private path(): string {
    this.dir ??= mkdtempSync(join(tmpdir(), 'fanout-spill-'));
    return join(this.dir, `${this.next++}.arrow`);
  }

  /** Writes one batch as an Arrow IPC stream file; returns its path. */
  write(batch: arrow.RecordBatch): string {
    const p = this.path();
    const bytes = arrow.tableToIPC(new arrow.Table([unaliasBatch(batch)]), 'stream');
    writeFileSync(p, bytes);
    stats.spillFiles++;
    stats.spilledBytes += bytes.byteLength;
    return p;
  }

  close(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

/** The batches of spill files, one file in memory at a time. */
export function* readSpill(files: readonly string[]): Generator<arrow.RecordBatch> {
  for (const f of files) {
    const t = arrow.tableFromIPC(readFileSync(f));
    yield* t.batches;
  }
}

/** Slices of at most `size` rows. */
export function* slices(b: arrow.RecordBatch, size: number): Generator<arrow.RecordBatch> {
  if (b.numRows <= size) {
    if (b.numRows) yield b;
    return;
  }
  for (let s = 0; s < b.numRows; s += size) yield b.slice(s, Math.min(b.numRows, s + size));
}

// The embedded runner's options (also the local-work options of any other runner), apart from the
// runner itself so that the Runner interface can name them without an import cycle.
import { availableParallelism, totalmem } from 'node:os';

export interface EmbeddedOptions {
  /** Partitions run at once (worker threads). Default: available cores. */
  parallelism?: number;
  /**
   * Worker threads: always, never, or 'auto' (when the scan is big enough to repay their start-up).
   * A limit pushed into the scan that one batch covers runs in-process even with `true`.
   */
  workers?: boolean | 'auto';
  /** 'auto' uses workers when the scan reads at least this many bytes. Default 16 MiB. */
  workerThresholdBytes?: number;
  /** Rows per batch read from files. Default 65,536. */
  batchSize?: number;
  /** Batches a worker's partition may have in flight to the consumer at once. Default 4. */
  prefetch?: number;
  /**
   * Bytes of result batches that the partitions running on workers may hold, all together, before
   * the consumer takes them: a partition runs ahead of the one being consumed up to its share
   * (this / parallelism). Default 128 MiB.
   */
  prefetchBytes?: number;
  /** Row-group packing target for partitions (uncompressed bytes). Default 32 MiB. */
  targetPartitionBytes?: number;
  /** Output in input order (default). `false`: batches as partitions produce them (faster with workers). */
  preserveOrder?: boolean;
  /** Make a GPU UDF on a machine without GPUs an error instead of a warning (then it runs on CPU). */
  strictResources?: boolean;
  /**
   * Bytes the relational operators (groupBy, join, sort, distinct, repartition) may hold before
   * they spill to local Arrow IPC files. Default: a quarter of the machine's memory.
   */
  memoryBudgetBytes?: number;
}

export interface ResolvedEmbeddedOptions {
  parallelism: number;
  workers: boolean | 'auto';
  workerThresholdBytes: number;
  batchSize: number;
  prefetch: number;
  prefetchBytes: number;
  targetPartitionBytes: number;
  preserveOrder: boolean;
  strictResources: boolean;
  memoryBudgetBytes: number;
}

export function resolveEmbeddedOptions(o: EmbeddedOptions = {}): ResolvedEmbeddedOptions {
  const positive = (v: number | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`runner option '${name}' must be a positive integer, got ${String(v)}`);
    return v;
  };
  return {
    parallelism: positive(o.parallelism, 'parallelism', availableParallelism()),
    workers: o.workers ?? 'auto',
    workerThresholdBytes: o.workerThresholdBytes ?? 16 << 20,
    batchSize: positive(o.batchSize, 'batchSize', 65536),
    prefetch: positive(o.prefetch, 'prefetch', 4),
    prefetchBytes: positive(o.prefetchBytes, 'prefetchBytes', 128 << 20),
    targetPartitionBytes: positive(o.targetPartitionBytes, 'targetPartitionBytes', 32 << 20),
    preserveOrder: o.preserveOrder ?? true,
    strictResources: o.strictResources ?? false,
    memoryBudgetBytes: positive(o.memoryBudgetBytes, 'memoryBudgetBytes', Math.floor(totalmem() / 4)),
  };
}

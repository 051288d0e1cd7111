// What a runner is: it executes a logical plan for an action. DataFrame calls these methods on the
// current runner (setRunner / getRunner) and never asks which runner it is. A runner takes a plan,
// never a DataFrame, so runners never import the DataFrame (no import circle).
import type * as arrow from 'apache-arrow';
import type { MemorySources } from '../executor.ts';
import type { ParquetWriterOptions } from '../io/parquet/index.ts';
import type { WrittenFile } from '../io/writer.ts';
import type { PlanNode } from '../plan.ts';
import type { ProgressListener } from '../progress.ts';
import type { RunMetrics } from '../udf-exec.ts';
import type { ResolvedEmbeddedOptions } from './options.ts';

/** What an action gives the runner besides the plan. */
export interface ActionContext {
  /** In-memory batches the plan reads, by source id. */
  memory: MemorySources;
  /** Aborts the action: reads and UDF calls stop, it rejects with an AbortError, a write commits nothing. */
  signal?: AbortSignal;
  /**
   * Receives the action's UDF metrics. Not called when nothing ran UDFs, so a DataFrame keeps the
   * metrics of the run that made its data (show() on a collected result).
   */
  onMetrics?(metrics: RunMetrics): void;
  /** Called after each finished partition with the run's progress so far (rows, UDF metrics, ETA). */
  onProgress?: ProgressListener;
}

/** Where and how `write` puts the result. */
export interface DatasetSinkSpec {
  uri: string;
  format: 'parquet' | 'csv';
  /** 'error': refuse a directory that already holds output; 'overwrite'; 'append'; 'overwrite-partitions' (with partitionBy). */
  mode: 'error' | 'overwrite' | 'append' | 'overwrite-partitions';
  /** Hive layout: one `key=value/` directory level per column, the columns left out of the files. */
  partitionBy?: string[];
  /** Parquet writer options (validated by DataFrame.write). */
  parquet?: ParquetWriterOptions;
}

/** One partition of the result, in order. */
export interface ResultPartition {
  index: number;
  batches: AsyncIterable<arrow.RecordBatch>;
}

export interface ExplainRequest {
  /** Also describe the serverless stages (a serverless runner always does). */
  stages?: boolean;
}

export interface Runner {
  /** For messages and explain ('native', 'aws', ...); DataFrame never branches on it. */
  readonly name: string;
  /** The embedded options this runner uses for local work (in-memory plans, reading results). */
  readonly options: ResolvedEmbeddedOptions;
  /** The result as one ordered stream of batches. */
  stream(plan: PlanNode, ctx: ActionContext): AsyncIterable<arrow.RecordBatch>;
  /** The result partition by partition, in order (a global operator makes it one partition). */
  partitions(plan: PlanNode, ctx: ActionContext): AsyncIterable<ResultPartition>;
  /** Writes the result as a dataset, committed atomically; resolves with the committed files. */
  write(plan: PlanNode, sink: DatasetSinkSpec, ctx: ActionContext): Promise<WrittenFile[]>;
  /** Explain's physical part for an optimized plan: partitions, placement, stages. */
  describe(optimized: PlanNode, req?: ExplainRequest): string;
}

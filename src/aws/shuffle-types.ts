// The serverless shuffle as plan data (plan.json): what a map stage's partitions write instead of a
// plain shard (an exchange sink) and what a stage after an exchange reads (its input operator).
// A leaf module (types only), so stages.ts, shuffle-plan.ts and shuffle.ts share it without cycles.
import type { DataTypeJSON, SchemaJSON } from '../datatypes.ts';
import type { AggSpec } from '../aggregate/hash-aggregate.ts';
import type { JoinOutput } from '../join/hash-join.ts';
import type { OpJSON, SourceJSON } from '../physical.ts';
import type { JoinHow, SortKey } from '../plan.ts';

/** Where a map stage's partitions send their output instead of one shard. */
export type ExchangeSinkJSON =
  /**
   * Rows split by key hash into `partitions` bucket files (`stage-<s>/shuffle/<p>/<b>.arrow`); with
   * `partial`, each partition first aggregates its rows (the first `keys` columns are the keys, then
   * one input column per aggregate) and ships the partial state instead.
   */
  | { kind: 'hash'; keys: string[]; partitions: number; partial?: { aggs: AggSpec[] } }
  /** Rows split by sorted key ranges, the boundaries read from stage `boundariesStage`'s file. */
  | { kind: 'range'; keys: SortKey[]; partitions: number; boundariesStage: number }
  /** The plain shard, plus a sample of the sort keys (`stage-<s>/sample/<p>.arrow`) for the boundaries step. */
  | { kind: 'sample'; keys: SortKey[] };

/** The stage a join side or a reduce reads, with its partition count. */
export interface StageRef {
  stage: number;
  partitions: number;
}

/** What a stage's partition p reads when it is not the previous stage's shard p (or stage 0's scan). */
export type StageInputJSON =
  /** Its own scan (the first stage of another input: a join's other side). */
  | { kind: 'scan'; sources: SourceJSON[] }
  /** Shard p of an earlier stage (not the one just before it). */
  | { kind: 'shard'; stage: number }
  /** The partitions of several inputs one after another (concat): p counts across them. */
  | { kind: 'concat'; inputs: StageRef[] }
  /** Bucket p of every map partition, as it is (keyed repartition). */
  | { kind: 'repartition'; from: StageRef }
  /** Bucket p of every map partition's partial state, merged (the final aggregation): keys first, then the aggregates. */
  | { kind: 'aggregate'; from: StageRef; keys: number; aggs: AggSpec[]; schema: SchemaJSON }
  /**
   * Build (right) and probe (left) of a join: partitioned, bucket p of both sides; broadcast, the
   * probe side's shard p against every shard of the (small) build side.
   */
  | {
      kind: 'join';
      strategy: 'partitioned' | 'broadcast';
      how: JoinHow;
      left: StageRef;
      right: StageRef;
      leftKeys: number[];
      rightKeys: number[];
      keyTypes: DataTypeJSON[];
      leftSchema: SchemaJSON;
      rightSchema: SchemaJSON;
      schema: SchemaJSON;
      outputs: JoinOutput[];
      /**
       * A broadcast join fused into the probe side's stage: partition p reads this input and runs
       * these operators (no UDFs) itself, instead of reading shard p of `left`, which is then not run.
       */
      probe?: { input: StageInputJSON; ops: OpJSON[] };
    }
  /** One partition: reads every sample of `from` and writes `partitions - 1` range boundaries. */
  | { kind: 'boundaries'; from: StageRef; keys: SortKey[]; partitions: number; keyTypes: DataTypeJSON[] }
  /**
   * One partition: every shard of `from`, in partition order (a global limit below an operator: each
   * map partition kept at most n rows, the stage's own limit keeps the first n overall).
   */
  | { kind: 'gather'; from: StageRef }
  /** Bucket p of every map partition (one key range), sorted. */
  | { kind: 'sort'; from: StageRef; keys: SortKey[]; schema: SchemaJSON };

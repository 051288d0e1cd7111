// What the telemetry modules share: the span interfaces and plain helpers (no SDK here).
import type { PartitionOutcome } from '../executor.ts';
import type { SourceJSON } from '../physical.ts';

export type SpanAttributes = Record<string, string | number | boolean | string[] | number[]>;

/** One partition's record, as the driver measured it (wherever it ran). */
export interface PartitionRecord {
  index: number;
  source: SourceJSON;
  /** Absent when the partition failed before reporting (a worker's error): the span then starts at `failedSince`. */
  outcome?: PartitionOutcome;
  error?: unknown;
  /** Epoch ms the caller handed the partition out (used when there is no outcome). */
  failedSince?: number;
  /** Extra attributes (the serverless stage index). */
  attributes?: SpanAttributes;
}

/** A span being recorded (a run or a stage) that partitions and child spans hang under. */
export interface TraceSpan {
  /** W3C traceparent of this span, for another process to continue the trace. */
  readonly traceparent: string;
  child(name: string, attributes?: SpanAttributes): TraceSpan;
  partition(rec: PartitionRecord): void;
  setAttributes(attributes: SpanAttributes): void;
  end(error?: unknown): void;
}

/** A span recorded after the fact, under ids decided before (see sdk.ts). */
export interface FinishedSpan {
  name: string;
  /** The span's own traceparent (its trace and span id). */
  self: string;
  /** Its parent's; null for a root span. */
  parent: string | null;
  attributes: SpanAttributes;
  start: number;
  end: number;
  error?: unknown;
}

export function parseTraceparent(tp: string | null | undefined): { traceId: string; spanId: string; flags: string } | null {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp ?? '');
  return m ? { traceId: m[1]!, spanId: m[2]!, flags: m[3]! } : null;
}

/** The partition source range as span attributes: file and row groups, batch range, shard key. */
export function sourceAttributes(src: SourceJSON): SpanAttributes {
  switch (src.kind) {
    case 'parquet':
      return src.rowGroups ? { 'fanout.source.file': src.path, 'fanout.source.row_groups': src.rowGroups } : { 'fanout.source.file': src.path };
    case 'csv':
      return { 'fanout.source.file': src.path };
    case 'memory':
      return { 'fanout.source.batches': `${src.start}..${src.end}` };
    case 'shard':
      return { 'fanout.source.shard': src.key };
    case 'multi': {
      const files = src.parts.flatMap((p) => {
        const a = sourceAttributes(p)['fanout.source.file'];
        return typeof a === 'string' ? [a] : [];
      });
      return { 'fanout.source.files': files, 'fanout.source.parts': src.parts.length };
    }
  }
}

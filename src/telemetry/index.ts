// OpenTelemetry, off and free unless the standard OTEL_* variables ask for it: this module only reads
// the environment; the SDK (./sdk.ts and @opentelemetry/*) is imported on the first traced action.
// Spans are recorded from what the partition driver already measures (its PartitionOutcome: start,
// wall time, rows, per-UDF stats), so a partition that ran on a worker thread, in a GPU child or in a
// Lambda is exported where its outcome arrives, under the right parent, and never one span per row.
import { createHash, randomBytes } from 'node:crypto';
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

/**
 * Whether OTel export is on: OTEL_SDK_DISABLED=true turns it off; otherwise an OTLP endpoint
 * (OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT) or an explicit OTEL_TRACES_EXPORTER /
 * OTEL_METRICS_EXPORTER other than `none` turns it on.
 */
export function telemetryEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env['OTEL_SDK_DISABLED'] ?? '').trim().toLowerCase() === 'true') return false;
  if (env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT']) return true;
  const on = (v: string | undefined): boolean => !!v && v.split(',').some((x) => x.trim() !== '' && x.trim() !== 'none');
  return on(env['OTEL_TRACES_EXPORTER']) || on(env['OTEL_METRICS_EXPORTER']);
}

type Sdk = typeof import('./sdk.ts');
let sdk: Promise<Sdk> | null = null;

function loadSdk(): Promise<Sdk> {
  sdk ??= import('./sdk.ts');
  return sdk;
}

/**
 * Starts a span (a run, or a serverless step) when telemetry is on; null (nothing loaded) when off.
 * `parent` is a W3C traceparent from another process (the runner, plan.json).
 */
export async function startSpan(name: string, attributes: SpanAttributes, parent?: string | null): Promise<TraceSpan | null> {
  if (!telemetryEnabled()) return null;
  return (await loadSdk()).startSpan(name, attributes, parent ?? null);
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

/** Records a finished span when telemetry is on (see FinishedSpan). */
export async function emitSpan(span: FinishedSpan): Promise<void> {
  if (!telemetryEnabled()) return;
  (await loadSdk()).emitSpan(span);
}

export function parseTraceparent(tp: string | null | undefined): { traceId: string; spanId: string; flags: string } | null {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp ?? '');
  return m ? { traceId: m[1]!, spanId: m[2]!, flags: m[3]! } : null;
}

/** A fresh root traceparent: a trace whose root span is emitted later, by whoever ends it. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

/**
 * The traceparent of a child of `parent` named `label`, the same in every process that asks: the
 * serverless stage spans, under which each Lambda's partitions hang before Finalize emits the stage.
 */
export function derivedTraceparent(parent: string, label: string): string | null {
  const p = parseTraceparent(parent);
  if (!p) return null;
  const id = createHash('sha256').update(`${p.traceId}/${p.spanId}/${label}`).digest('hex').slice(0, 16);
  return `00-${p.traceId}-${id}-${p.flags}`;
}

/** Exports everything recorded so far (call before an action resolves or a Lambda returns). */
export async function flushTelemetry(): Promise<void> {
  if (!sdk) return;
  try {
    await (await sdk).flush();
  } catch (e) {
    // An unreachable collector must not fail the run it observes: say so (once) and go on.
    if (!warnedFlush) console.warn(`fanout: OpenTelemetry export failed: ${e instanceof Error ? e.message : String(e)}`);
    warnedFlush = true;
  }
}
let warnedFlush = false;

/** Ends `span` (with error status when `error` is given) and flushes; a no-op without a span. */
export async function endSpan(span: TraceSpan | null | undefined, error?: unknown): Promise<void> {
  if (!span) return;
  span.end(error);
  await flushTelemetry();
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

/** An embedded action's spans: `fanout.run` and its one `fanout.stage`, which partitions record under. */
export interface ActionTrace {
  stage: TraceSpan;
  /** Ends both spans and exports them: the action resolves after its spans are sent. */
  end(error?: unknown): Promise<void>;
}

/** Starts an embedded action's run and stage spans; null (and nothing loaded) when OTel is off. */
export async function traceAction(
  action: string,
  physical: { partitions: readonly unknown[]; udfs: readonly { name: string }[] },
  attributes: SpanAttributes = {},
): Promise<ActionTrace | null> {
  const run = await startSpan('fanout.run', { 'fanout.runner': 'embedded', 'fanout.action': action, ...attributes });
  if (!run) return null;
  const stage = run.child('fanout.stage', {
    'fanout.stage': 0,
    'fanout.partitions': physical.partitions.length,
    'fanout.udfs': physical.udfs.map((u) => u.name),
  });
  return {
    stage,
    async end(error?: unknown): Promise<void> {
      stage.end(error);
      await endSpan(run, error);
    },
  };
}

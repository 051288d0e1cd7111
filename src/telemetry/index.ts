// OpenTelemetry, off and free unless the standard OTEL_* variables ask for it: this module only reads
// the environment; the SDK (./sdk.ts and @opentelemetry/*) is imported on the first traced action.
// Spans are recorded from what the partition driver already measures (its PartitionOutcome: start,
// wall time, rows, per-UDF stats), so a partition that ran on a worker thread, in a GPU child or in a
// Lambda is exported where its outcome arrives, under the right parent, and never one span per row.
import { createHash, randomBytes } from 'node:crypto';
import { parseTraceparent, type FinishedSpan, type SpanAttributes, type TraceSpan } from './common.ts';

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

/** Records a finished span when telemetry is on (see FinishedSpan). */
export async function emitSpan(span: FinishedSpan): Promise<void> {
  if (!telemetryEnabled()) return;
  (await loadSdk()).emitSpan(span);
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

/**
 * Exports everything recorded so far. Lambda handlers and the AWS runner call it before they
 * return; an embedded action does not (its spans and metrics go out in the background, see
 * traceAction), so a program that ends with process.exit() should await this (or shutdownWorkers) first.
 */
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

/** An embedded action's spans: `fanout.run` and its one `fanout.stage`, which partitions record under. */
export interface ActionTrace {
  stage: TraceSpan;
  /**
   * Ends both spans. It does not wait for the export: the SDK's BatchSpanProcessor and periodic
   * metric reader send in the background (OTEL_BSP_SCHEDULE_DELAY, OTEL_METRIC_EXPORT_INTERVAL), and
   * shutdownWorkers(), flushTelemetry() and the process's exit flush what is left. Awaiting two OTLP
   * round trips at the end of every action was a fixed cost per action (issue 14's overhead).
   */
  end(error?: unknown): void;
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
    end(error?: unknown): void {
      stage.end(error);
      run.end(error);
    },
  };
}

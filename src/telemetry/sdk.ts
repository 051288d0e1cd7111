// The OpenTelemetry SDK side of ./index.ts, imported only when OTEL_* turns telemetry on. Providers
// are private to fanout (not registered globally), so an application's own OTel setup is untouched;
// spans get explicit parents (W3C traceparent strings), so no context manager is needed either.
import { ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Context, type Counter, type Span } from '@opentelemetry/api';
import { getNumberFromEnv, W3CTraceContextPropagator } from '@opentelemetry/core';
import { AggregationTemporalityPreference, OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  RandomIdGenerator,
  type IdGenerator,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { UdfStats } from '../udf/metrics.ts';
import { parseTraceparent, sourceAttributes, type FinishedSpan, type PartitionRecord, type SpanAttributes, type TraceSpan } from './common.ts';

const env = process.env;
const list = (v: string | undefined, dflt: string): string[] =>
  (v ?? dflt)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

const resource = defaultResource()
  .merge(resourceFromAttributes({ 'service.name': 'fanout' }))
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default name.
  .merge(detectResources({ detectors: [envDetector] }));

// Spans and metrics are exported in the background (an action does not wait for them), at the
// standard OTEL_BSP_* / OTEL_METRIC_EXPORT_* settings, which this SDK version does not read itself.
const num = (k: string): number | undefined => {
  const v = getNumberFromEnv(k);
  return v !== undefined && v > 0 ? v : undefined;
};
const batchOptions = {
  scheduledDelayMillis: num('OTEL_BSP_SCHEDULE_DELAY') ?? 5000,
  maxQueueSize: num('OTEL_BSP_MAX_QUEUE_SIZE') ?? 2048,
  maxExportBatchSize: num('OTEL_BSP_MAX_EXPORT_BATCH_SIZE') ?? 512,
  exportTimeoutMillis: num('OTEL_BSP_EXPORT_TIMEOUT') ?? 30_000,
};
const spanProcessors: SpanProcessor[] = [];
for (const e of list(env['OTEL_TRACES_EXPORTER'], 'otlp')) {
  // The OTLP exporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / _HEADERS / _TIMEOUT itself.
  if (e === 'otlp') spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter(), batchOptions));
  else if (e === 'console') spanProcessors.push(new BatchSpanProcessor(new ConsoleSpanExporter(), batchOptions));
  else if (e !== 'none') console.warn(`fanout: OTEL_TRACES_EXPORTER=${e} is not supported (otlp, console, none); ignored`);
}
// Spans whose ids were decided earlier, in another process (a serverless stage, whose partitions
// already hang under it; an S3-triggered run's root), are emitted with those ids: the generator
// hands out a forced id for the one synchronous startSpan call that asks for it.
const random = new RandomIdGenerator();
let forced: { traceId?: string; spanId: string } | null = null;
const idGenerator: IdGenerator = {
  generateTraceId: () => forced?.traceId ?? random.generateTraceId(),
  generateSpanId: () => forced?.spanId ?? random.generateSpanId(),
};
const tracerProvider = new BasicTracerProvider({ resource, spanProcessors, idGenerator });
const tracer = tracerProvider.getTracer('fanout');
/** Whether anything was recorded since the last flush began (the exit hook flushes only then). */
let pending = false;

const readers: MetricReader[] = [];
const exportIntervalMillis = num('OTEL_METRIC_EXPORT_INTERVAL') ?? 60_000;
const exportTimeoutMillis = Math.min(num('OTEL_METRIC_EXPORT_TIMEOUT') ?? 30_000, exportIntervalMillis);
for (const e of list(env['OTEL_METRICS_EXPORTER'], 'otlp')) {
  // Exported every interval and on each flush (Lambda invocations, shutdownWorkers, exit).
  // Delta unless OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE says otherwise: each Lambda
  // invocation flushes, and a reused Lambda thread re-sending its cumulative totals would read as
  // new calls to anything that sums exports.
  const exporter = env['OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE']
    ? new OTLPMetricExporter()
    : new OTLPMetricExporter({ temporalityPreference: AggregationTemporalityPreference.DELTA });
  if (e === 'otlp') readers.push(new PeriodicExportingMetricReader({ exporter, exportIntervalMillis, exportTimeoutMillis }));
  else if (e === 'console')
    readers.push(new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis, exportTimeoutMillis }));
  else if (e !== 'none') console.warn(`fanout: OTEL_METRICS_EXPORTER=${e} is not supported (otlp, console, none); ignored`);
}
const meterProvider = new MeterProvider({ resource, readers });
const meter = meterProvider.getMeter('fanout');
const instruments = {
  rows: meter.createCounter('fanout.partition.rows', { description: 'rows out of partitions' }),
  partitions: meter.createCounter('fanout.partitions', { description: 'partitions run (fanout.error=true: failed)' }),
  partitionMs: meter.createHistogram('fanout.partition.duration', { unit: 'ms', description: 'partition wall time' }),
  rowsIn: meter.createCounter('fanout.udf.rows_in', { description: 'rows into a UDF' }),
  rowsOut: meter.createCounter('fanout.udf.rows_out', { description: 'rows out of a UDF' }),
  calls: meter.createCounter('fanout.udf.calls', { description: 'UDF calls (rows for row-wise, batches for batch UDFs)' }),
  retries: meter.createCounter('fanout.udf.retries', { description: 'UDF call retries' }),
  errors: meter.createCounter('fanout.udf.errors', { description: 'failed UDF calls' }),
  udfMs: meter.createHistogram('fanout.udf.duration', { unit: 'ms', description: "a UDF's time in one partition" }),
  counter: meter.createCounter('fanout.udf.counter', { description: 'metrics.increment(name) from inside a UDF; fanout.counter names it' }),
};

/** Each counter's name, for the keys of CounterSums. */
const counterNames = new Map<Counter, string>(Object.entries(instruments).map(([k, v]) => [v as Counter, k]));

const propagator = new W3CTraceContextPropagator();

function contextOf(traceparent: string | null): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, { traceparent }, { get: (c, k) => c[k as 'traceparent'], keys: (c) => Object.keys(c) });
}

function traceparentOf(span: Span): string {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier['traceparent'] ?? '';
}

function fail(span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
}

class RecordingSpan implements TraceSpan {
  readonly traceparent: string;
  private readonly ctx: Context;
  private readonly sums = new CounterSums();
  private queue: PartitionRecord[] = [];
  private queuedAt = 0;
  constructor(
    private readonly span: Span,
    private readonly base: Attributes,
  ) {
    this.traceparent = traceparentOf(span);
    this.ctx = trace.setSpan(ROOT_CONTEXT, span);
  }

  child(name: string, attributes: SpanAttributes = {}): TraceSpan {
    const attrs = { ...this.base, ...attributes };
    return new RecordingSpan(tracer.startSpan(name, { attributes: attrs }, this.ctx), this.base);
  }

  setAttributes(attributes: SpanAttributes): void {
    this.span.setAttributes(attributes);
  }

  /**
   * Queues the partition's record; its spans and metrics are made in one loop later (when the
   * queue is PARTITION_QUEUE long or a second old at the next partition, when this span ends, or on
   * any flush). Made one at a time between partitions, after the pipeline's decoding has evicted
   * the SDK's code and data from the caches, they cost the action's thread much more CPU than in one
   * loop (bench/run.ts's OTel case: recording ~15 -> ~8.5 ms per action of 32 partitions).
   */
  partition(rec: PartitionRecord): void {
    pending = true;
    if (this.queue.length === 0) {
      this.queuedAt = Date.now();
      queued.add(this);
    }
    this.queue.push(rec);
    if (this.queue.length >= PARTITION_QUEUE || Date.now() - this.queuedAt >= 1000) this.drain();
  }

  /** Records the queued partitions (see partition). */
  drain(): void {
    queued.delete(this);
    const q = this.queue;
    this.queue = [];
    for (const rec of q) this.record(rec);
  }

  private record(rec: PartitionRecord): void {
    const o = rec.outcome;
    const end = o ? o.startedAt + o.elapsedMs : Date.now();
    const start = o ? o.startedAt : (rec.failedSince ?? end);
    const common: Attributes = rec.attributes ? { ...this.base, ...rec.attributes } : this.base;
    // Metrics carry no run id: one series per run would grow a metrics backend without bound.
    const labels: Attributes = rec.attributes ?? NO_LABELS;
    const attrs: Attributes = { ...common, 'fanout.partition': rec.index, ...sourceAttributes(rec.source) };
    if (o) Object.assign(attrs, { 'fanout.rows_out': o.rows, 'fanout.bytes': o.bytes });
    const span = tracer.startSpan('fanout.partition', { attributes: attrs, startTime: start }, this.ctx);
    const failed = rec.error !== undefined;
    if (failed) fail(span, rec.error);
    const pctx = trace.setSpan(ROOT_CONTEXT, span);
    // One span per UDF per partition: its batches aggregated. Its time is the UDF's summed call
    // time, laid from the partition's start (calls interleave with reads, so it is not a timeline).
    for (const [name, s] of Object.entries(o?.metrics ?? {})) {
      const udfAttrs: Attributes = { ...common, 'fanout.partition': rec.index, ...udfAttributes(name, s) };
      const u = tracer.startSpan('fanout.udf', { attributes: udfAttrs, startTime: start }, pctx);
      if (s.errors > 0) u.setStatus({ code: SpanStatusCode.ERROR, message: `${s.errors} failed call(s) of ${name}` });
      u.end(start + Math.min(s.timeMs, end - start));
      recordUdfMetrics(this.sums, name, s, labels);
    }
    span.end(end);
    this.sums.add(instruments.partitions, labels, failed ? 'error' : 'ok', () => ({ ...labels, 'fanout.error': failed }), 1);
    if (o) {
      this.sums.add(instruments.rows, labels, '', () => labels, o.rows);
      instruments.partitionMs.record(o.elapsedMs, labels);
    }
  }

  end(error?: unknown): void {
    pending = true;
    this.drain();
    this.sums.record();
    if (error !== undefined) fail(this.span, error);
    this.span.end();
  }
}

/** Partitions queued before their spans are made (see RecordingSpan.partition). */
const PARTITION_QUEUE = 64;
/** The spans with queued partitions, drained before any flush. */
const queued = new Set<RecordingSpan>();

const NO_LABELS: Attributes = Object.freeze({});
/** The metric attributes of a UDF without other labels (the embedded runner's): made once per UDF name. */
const udfLabels = new Map<string, Attributes>();

/**
 * Counter increments summed in plain numbers while a span is open and added to the instruments when
 * it ends (before any export): one SDK call per series and span instead of one per partition (each
 * call hashes its attribute set). Histograms still record each partition's value.
 */
class CounterSums {
  private readonly sums = new Map<string, { counter: Counter; attrs: Attributes; value: number }>();

  add(counter: Counter, labels: Attributes, series: string, attrs: () => Attributes, value: number): void {
    const key = `${counterNames.get(counter)}\u0000${labels === NO_LABELS ? '' : JSON.stringify(labels)}\u0000${series}`;
    const s = this.sums.get(key);
    if (s) s.value += value;
    else this.sums.set(key, { counter, attrs: attrs(), value });
  }

  record(): void {
    for (const s of this.sums.values()) s.counter.add(s.value, s.attrs);
    this.sums.clear();
  }
}

function udfAttributes(name: string, s: UdfStats): Attributes {
  const a: Attributes = {
    'fanout.udf.name': name,
    'fanout.udf.rows_in': s.rowsIn,
    'fanout.udf.rows_out': s.rowsOut,
    'fanout.udf.calls': s.calls,
    'fanout.udf.retries': s.retries,
    'fanout.udf.errors': s.errors,
    'fanout.udf.time_ms': Math.round(s.timeMs * 1000) / 1000,
  };
  for (const [k, v] of Object.entries(s.counters)) a[`fanout.udf.counter.${k}`] = v;
  return a;
}

function recordUdfMetrics(sums: CounterSums, name: string, s: UdfStats, common: Attributes): void {
  let a = common === NO_LABELS ? udfLabels.get(name) : undefined;
  if (!a) {
    a = { ...common, 'fanout.udf.name': name };
    if (common === NO_LABELS) udfLabels.set(name, a);
  }
  const attrs = a;
  const udf = (): Attributes => attrs;
  sums.add(instruments.rowsIn, common, name, udf, s.rowsIn);
  sums.add(instruments.rowsOut, common, name, udf, s.rowsOut);
  sums.add(instruments.calls, common, name, udf, s.calls);
  if (s.retries) sums.add(instruments.retries, common, name, udf, s.retries);
  sums.add(instruments.errors, common, name, udf, s.errors);
  instruments.udfMs.record(s.timeMs, attrs);
  for (const [k, v] of Object.entries(s.counters)) sums.add(instruments.counter, common, `${name}\u0000${k}`, () => ({ ...attrs, 'fanout.counter': k }), v);
}

export function startSpan(name: string, attributes: SpanAttributes, parent: string | null): TraceSpan {
  // Attributes that identify the run ride on every descendant, so one query finds its spans.
  const base: Attributes = {};
  if (attributes['fanout.run_id'] !== undefined) base['fanout.run_id'] = attributes['fanout.run_id'];
  return new RecordingSpan(tracer.startSpan(name, { attributes }, contextOf(parent)), base);
}

/** Records a span that already happened, with the span id (and, for a root, trace id) of `self`. */
export function emitSpan(s: FinishedSpan): void {
  const self = parseTraceparent(s.self);
  if (!self) throw new Error(`not a W3C traceparent: ${s.self}`);
  forced = s.parent ? { spanId: self.spanId } : { traceId: self.traceId, spanId: self.spanId };
  let span: Span;
  try {
    span = tracer.startSpan(s.name, { attributes: s.attributes, startTime: s.start }, contextOf(s.parent));
  } finally {
    forced = null;
  }
  if (s.error !== undefined) fail(span, s.error);
  span.end(s.end);
  pending = true;
}

export async function flush(): Promise<void> {
  for (const s of [...queued]) s.drain();
  pending = false;
  await Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
}

// The export timers are unref'd, so a program that simply ends would drop what is still queued:
// once the event loop is empty, flush it (the flush's requests keep the process alive until sent;
// then beforeExit comes again, with nothing pending). process.exit() skips this: flushTelemetry().
process.on('beforeExit', () => {
  if (pending) flush().catch((e: unknown) => console.warn(`fanout: OpenTelemetry export failed at exit: ${e instanceof Error ? e.message : String(e)}`));
});

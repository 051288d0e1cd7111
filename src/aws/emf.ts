// CloudWatch metrics of a deployed pipeline, as embedded-metric-format (EMF) log lines: after each
// partition the Stage Lambda and the GPU task print the partition's figures and its UDFs' stats,
// and CloudWatch Logs extracts them into metrics. Printing keeps PutMetricData calls (and their
// latency, throttling and IAM grant) off the hot path. On only where the construct sets
// FANOUT_METRICS=emf, so local runs and tests print nothing.
import type { RunMetrics } from '../udf/metrics.ts';

export const EMF_NAMESPACE = 'fanout';

export interface PartitionFigures {
  runId: string;
  stage: number;
  partition: number;
  rows: number;
  bytes: number;
  elapsedMs: number;
  metrics: RunMetrics;
}

/** Prints the EMF lines of one finished partition when FANOUT_METRICS=emf; a no-op otherwise. */
export async function publishPartitionMetrics(p: PartitionFigures, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env['FANOUT_METRICS'] !== 'emf') return;
  // The library reads its settings from the environment and starts detecting where it runs as it
  // loads; outside Lambda its detection would probe the EC2 metadata endpoint (the network) and
  // then send to a CloudWatch agent. So choose before loading it: Lambda adds the function's
  // metadata; 'Local' prints plain lines (the ECS task's awslogs driver ships them).
  process.env['AWS_EMF_ENVIRONMENT'] ??= process.env['AWS_LAMBDA_FUNCTION_NAME'] ? 'Lambda' : 'Local';
  process.env['AWS_EMF_NAMESPACE'] ??= EMF_NAMESPACE;
  // Loaded on first use: the engine and local runs never need it.
  const { createMetricsLogger, Unit } = await import('aws-embedded-metrics');
  const pipeline = env['FANOUT_METRICS_PIPELINE'] || 'fanout';
  const loggers = [];

  const part = createMetricsLogger();
  part.setDimensions({ Pipeline: pipeline, Stage: String(p.stage) });
  part.putMetric('PartitionMs', p.elapsedMs, Unit.Milliseconds);
  part.putMetric('Rows', p.rows, Unit.Count);
  part.putMetric('Bytes', p.bytes, Unit.Bytes);
  part.setProperty('runId', p.runId);
  part.setProperty('partition', p.partition);
  loggers.push(part);

  for (const [udf, s] of Object.entries(p.metrics)) {
    const u = createMetricsLogger();
    u.setDimensions({ Pipeline: pipeline, Udf: udf });
    u.putMetric('RowsIn', s.rowsIn, Unit.Count);
    u.putMetric('RowsOut', s.rowsOut, Unit.Count);
    u.putMetric('Calls', s.calls, Unit.Count);
    u.putMetric('Retries', s.retries, Unit.Count);
    u.putMetric('Errors', s.errors, Unit.Count);
    u.putMetric('TimeMs', s.timeMs, Unit.Milliseconds);
    u.setProperty('runId', p.runId);
    u.setProperty('stage', p.stage);
    u.setProperty('partition', p.partition);
    loggers.push(u);
    // One line per counter: the counter's name is a dimension, so the dashboard can SEARCH them all.
    for (const [counter, value] of Object.entries(s.counters)) {
      const c = createMetricsLogger();
      c.setDimensions({ Pipeline: pipeline, Udf: udf, Counter: counter });
      c.putMetric('Count', value, Unit.Count);
      c.setProperty('runId', p.runId);
      loggers.push(c);
    }
  }
  for (const l of loggers) await l.flush();
}

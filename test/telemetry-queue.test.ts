// Partition spans are queued and made in one loop (src/telemetry/sdk.ts, RecordingSpan.partition):
// a flush while their stage is still open must export them, and so must the stage's end.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { flushTelemetry, startSpan } from '../src/telemetry/index.ts';
import { OtlpReceiver } from './telemetry-helpers.ts';

let receiver: OtlpReceiver;

before(async () => {
  process.env['OTEL_BSP_SCHEDULE_DELAY'] = '600000';
  process.env['OTEL_METRIC_EXPORT_INTERVAL'] = '600000';
  receiver = await OtlpReceiver.start();
  process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
});

after(async () => {
  for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_METRIC_EXPORT_INTERVAL']) delete process.env[k];
  await receiver.stop();
});

const outcome = (index: number) => ({
  index,
  rows: 10,
  bytes: 0,
  path: '',
  metrics: { 'q.udf': { rowsIn: 10, rowsOut: 10, calls: 10, retries: 0, errors: 0, timeMs: 1, counters: {} } },
  elapsedMs: 2,
  startedAt: Date.now() - 2,
});

describe('OpenTelemetry partition queue', () => {
  it('a flush exports the partitions of a stage that is still open; its end exports the rest', async () => {
    const run = await startSpan('fanout.run', { 'fanout.runner': 'embedded', 'fanout.action': 'queue-test' });
    assert.ok(run);
    const stage = run.child('fanout.stage', { 'fanout.stage': 0 });
    for (let i = 0; i < 3; i++) stage.partition({ index: i, source: { kind: 'memory', id: 'q', start: i, end: i + 1 }, outcome: outcome(i) });
    await flushTelemetry();
    const early = receiver.spans();
    assert.deepEqual(
      early
        .filter((s) => s.name === 'fanout.partition')
        .map((s) => s.attrs['fanout.partition'])
        .sort(),
      [0, 1, 2],
    );
    assert.equal(early.filter((s) => s.name === 'fanout.udf').length, 3, 'one UDF span per partition');
    assert.equal(early.filter((s) => s.name === 'fanout.stage').length, 0, 'the stage is still open');
    // A failed partition after the flush: exported (with error status) when the stage ends.
    stage.partition({ index: 3, source: { kind: 'memory', id: 'q', start: 3, end: 4 }, error: new Error('queued boom'), failedSince: Date.now() });
    stage.end();
    run.end();
    await flushTelemetry();
    const parts = receiver.spans().filter((s) => s.name === 'fanout.partition');
    assert.equal(parts.length, 4);
    const failed = parts.find((s) => s.attrs['fanout.partition'] === 3);
    assert.equal(failed?.status.code, 2);
    assert.match(String(failed?.status.message), /queued boom/);
    const stages = receiver.spans().filter((s) => s.name === 'fanout.stage');
    assert.equal(stages.length, 1);
    for (const p of parts) assert.equal(p.parentSpanId, stages[0]!.spanId, 'partitions hang under their stage');
  });
});

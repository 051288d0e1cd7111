// CloudWatch for a deployed pipeline: the construct's dashboard, alarms and X-Ray tracing
// (aws-cdk-lib/assertions on the example stack and on a stack with an alarm topic), and the
// embedded-metric-format lines the Stage Lambda and the GPU task print per partition.
import assert from 'node:assert/strict';
import { before, describe, it, mock } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { createApp } from '../cdk/app.ts';
import { EMF_NAMESPACE, publishPartitionMetrics } from '../src/aws/emf.ts';
import { tempDir } from './helpers.ts';

process.env['CDK_VALIDATION'] = 'false';
const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

type Json = Record<string, unknown>;
let template: Template;
let resources: Record<string, { Type: string; Properties: Json }>;
let pipelinePath: string;

before(async () => {
  const made = await createApp({ outdir: tempDir('fanout-cdk-mon-'), nag: false, context: SKIP_BUNDLING });
  pipelinePath = made.stack.pipeline.node.path;
  const tpl = made.app.synth().getStackByName(made.stack.stackName).template as { Resources: typeof resources };
  resources = tpl.Resources;
  template = Template.fromJSON(tpl);
});

/** The dashboard body with its intrinsics flattened to text (Ref -> <Id>). */
function dashboardBody(): string {
  const dash = Object.values(resources).find((r) => r.Type === 'AWS::CloudWatch::Dashboard');
  assert.ok(dash, 'a dashboard');
  const body = dash.Properties['DashboardBody'] as unknown;
  const flat = (v: unknown): string => {
    if (typeof v === 'string') return v;
    if (Array.isArray(v)) return v.map(flat).join('');
    const o = v as Json;
    if (Array.isArray(o['Fn::Join'])) return ((o['Fn::Join'] as [string, unknown[]])[1] ?? []).map(flat).join('');
    if (typeof o['Ref'] === 'string') return `<${o['Ref']}>`;
    if (Array.isArray(o['Fn::GetAtt'])) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
    return JSON.stringify(o);
  };
  return flat(body);
}

describe('CloudWatch and X-Ray in the synthesized stack', () => {
  it('every Lambda is traced with X-Ray, and so is the state machine', () => {
    const fns = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    assert.ok(fns.length >= 4);
    for (const f of fns) assert.deepEqual(f.Properties['TracingConfig'], { Mode: 'Active' });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { TracingConfiguration: { Enabled: true } });
  });

  it('the Stage Lambda and the GPU task print EMF metrics under the pipeline dimension', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ FANOUT_METRICS: 'emf', FANOUT_METRICS_PIPELINE: pipelinePath }) },
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'FANOUT_METRICS', Value: 'emf' },
            { Name: 'FANOUT_METRICS_PIPELINE', Value: pipelinePath },
          ]),
        }),
      ],
    });
  });

  it('alarms on failed and on timed-out executions (plain metrics: emulators refuse metric math) and on the rule dead-letter queue', () => {
    const alarms = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Alarm');
    assert.equal(alarms.length, 3);
    for (const a of alarms) {
      assert.equal(a.Properties['Metrics'], undefined, 'no metric-math alarm');
      assert.equal(a.Properties['Threshold'], 1);
      assert.equal(a.Properties['ComparisonOperator'], 'GreaterThanOrEqualToThreshold');
      assert.equal(a.Properties['TreatMissingData'], 'notBreaching');
      assert.equal(a.Properties['AlarmActions'], undefined, 'no topic, no actions');
    }
    assert.deepEqual(alarms.map((a) => `${a.Properties['Namespace']}/${a.Properties['MetricName']}`).sort(), [
      'AWS/SQS/ApproximateNumberOfMessagesVisible',
      'AWS/States/ExecutionsFailed',
      'AWS/States/ExecutionsTimedOut',
    ]);
  });

  it('the dashboard shows executions, stage times, Lambda errors and throttles, GPU tasks and UDF metrics', () => {
    const body = dashboardBody();
    for (const m of [
      'ExecutionsStarted',
      'ExecutionsSucceeded',
      'ExecutionsFailed',
      'ExecutionsAborted',
      'ExecutionTime',
      'Errors',
      'Throttles',
      'Duration',
      'RunningTaskCount',
    ]) {
      assert.ok(body.includes(`"${m}"`), `dashboard metric ${m}`);
    }
    const search = (by: string, metric: string) => `SEARCH('{${EMF_NAMESPACE},Pipeline,${by}} Pipeline=\\"${pipelinePath}\\" MetricName=\\"${metric}\\"'`;
    for (const [by, metric] of [
      ['Stage', 'PartitionMs'],
      ['Udf', 'RowsOut'],
      ['Udf', 'Errors'],
      ['Udf,Counter', 'Count'],
    ] as const) {
      assert.ok(body.includes(search(by, metric)), `dashboard search ${by} ${metric} in ${body.slice(0, 400)}…`);
    }
  });

  it('an alarm topic gets alarm and OK notifications; monitoring: false leaves it all out', async () => {
    const { FanoutPipeline } = await import('../cdk/fanout-pipeline.ts');
    const { EXAMPLE_ENTRY } = await import('../cdk/app.ts');
    const { App } = await import('aws-cdk-lib');
    const s3 = await import('aws-cdk-lib/aws-s3');
    const app = new App({ outdir: tempDir('fanout-cdk-mon2-'), context: SKIP_BUNDLING });
    const stack = new Stack(app, 'Mon');
    const topic = new sns.Topic(stack, 'Alarms');
    const bucket = new s3.Bucket(stack, 'In');
    new FanoutPipeline(stack, 'P', {
      entry: EXAMPLE_ENTRY,
      input: { bucket, prefix: 'in/' },
      gpu: false,
      monitoring: { alarmTopic: topic, dashboardName: 'fanout-runs' },
    });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::CloudWatch::Alarm', 3);
    const topicRef = { Ref: stack.getLogicalId(topic.node.defaultChild as sns.CfnTopic) };
    for (const a of Object.values(t.findResources('AWS::CloudWatch::Alarm'))) {
      assert.deepEqual((a as { Properties: Json }).Properties['AlarmActions'], [topicRef]);
      assert.deepEqual((a as { Properties: Json }).Properties['OKActions'], [topicRef]);
    }
    t.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'fanout-runs' });

    const off = new Stack(new App({ outdir: tempDir('fanout-cdk-mon3-'), context: SKIP_BUNDLING }), 'Off');
    new FanoutPipeline(off, 'P', { entry: EXAMPLE_ENTRY, gpu: false, monitoring: false });
    const t2 = Template.fromStack(off);
    t2.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    t2.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
  });
});

describe('embedded metric format lines', () => {
  const figures = {
    runId: 'r1',
    stage: 1,
    partition: 3,
    rows: 250,
    bytes: 4096,
    elapsedMs: 812,
    metrics: { embed: { rowsIn: 250, rowsOut: 250, calls: 2, retries: 1, errors: 0, timeMs: 640, counters: { cache_hits: 17 } } },
  };

  it('print nothing unless FANOUT_METRICS=emf', async () => {
    const log = mock.method(console, 'log', () => undefined);
    try {
      await publishPartitionMetrics(figures, {});
      assert.equal(log.mock.callCount(), 0);
    } finally {
      log.mock.restore();
    }
  });

  it('one line for the partition, one per UDF and one per counter, each a valid EMF document', async () => {
    const lines: string[] = [];
    const log = mock.method(console, 'log', (s: string) => void lines.push(s));
    try {
      await publishPartitionMetrics(figures, { FANOUT_METRICS: 'emf', FANOUT_METRICS_PIPELINE: 'Stack/P' });
    } finally {
      log.mock.restore();
    }
    const docs = lines.map(
      (l) =>
        JSON.parse(l) as Json & {
          _aws: { Timestamp: number; CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }> };
        },
    );
    assert.equal(docs.length, 3);
    for (const d of docs) {
      assert.equal(typeof d._aws.Timestamp, 'number');
      const [cw] = d._aws.CloudWatchMetrics;
      assert.equal(cw?.Namespace, EMF_NAMESPACE);
      // Every dimension and metric named in the directive has its value at the root.
      for (const k of [...(cw?.Dimensions.flat() ?? []), ...(cw?.Metrics.map((m) => m.Name) ?? [])]) assert.ok(k in d, `${k} at the root`);
      assert.equal(d['Pipeline'], 'Stack/P');
    }
    const [part, udf, counter] = docs as [Json & (typeof docs)[0], Json & (typeof docs)[0], Json & (typeof docs)[0]];
    assert.deepEqual(part._aws.CloudWatchMetrics[0]?.Dimensions, [['Pipeline', 'Stage']]);
    assert.equal(part['Stage'], '1');
    assert.equal(part['PartitionMs'], 812);
    assert.equal(part['Rows'], 250);
    assert.equal(part['runId'], 'r1');
    assert.deepEqual(udf._aws.CloudWatchMetrics[0]?.Dimensions, [['Pipeline', 'Udf']]);
    assert.equal(udf['Udf'], 'embed');
    assert.equal(udf['Retries'], 1);
    assert.deepEqual(
      udf._aws.CloudWatchMetrics[0]?.Metrics.find((m) => m.Name === 'TimeMs'),
      { Name: 'TimeMs', Unit: 'Milliseconds' },
    );
    assert.deepEqual(counter._aws.CloudWatchMetrics[0]?.Dimensions, [['Pipeline', 'Udf', 'Counter']]);
    assert.equal(counter['Counter'], 'cache_hits');
    assert.equal(counter['Count'], 17);
  });
});

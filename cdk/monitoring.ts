// FanoutPipeline's CloudWatch: a dashboard of runs (executions, stage and partition durations, Lambda
// errors and throttles, GPU tasks, UDF metrics) and alarms on failed executions and on the input
// rule's dead-letter queue. The UDF and partition figures come from the embedded-metric-format log
// lines the Stage Lambda and the GPU task print (src/aws/emf.ts): CloudWatch Logs turns them into
// metrics, so the dashboard reads them with SEARCH expressions and needs no UDF names at synth time.
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { EMF_NAMESPACE } from '../src/aws/emf.ts';

/** The construct's `monitoring` prop. */
export interface FanoutMonitoringProps {
  /** Alarm (and OK) notifications go here. @default none: the alarms only change state */
  readonly alarmTopic?: sns.ITopic;
  /** @default CloudFormation's generated name */
  readonly dashboardName?: string;
  /** Failed (or, for the second alarm, timed-out) executions within one 5-minute period that raise the alarm. @default 1 */
  readonly failedExecutionsThreshold?: number;
}

export interface MonitoringOptions extends FanoutMonitoringProps {
  /** The `Pipeline` dimension of the EMF metrics (the construct's path). */
  readonly pipelineName: string;
  readonly stateMachine: sfn.StateMachine;
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  readonly cluster?: ecs.ICluster;
  readonly deadLetterQueue?: sqs.IQueue;
}

export interface FanoutMonitoring {
  readonly dashboard: cloudwatch.Dashboard;
  readonly failedExecutionsAlarm: cloudwatch.Alarm;
  readonly timedOutExecutionsAlarm: cloudwatch.Alarm;
  readonly deadLetterAlarm?: cloudwatch.Alarm;
}

const PERIOD = Duration.minutes(5);

/** A SEARCH over this pipeline's EMF metrics, one line per value of `by` (a dimension). */
function emfSearch(pipeline: string, by: string, metric: string, stat: string, label: string): cloudwatch.MathExpression {
  // Quotes inside the search string would end it: the construct path has none, but be safe.
  const p = pipeline.replace(/"/g, '');
  return new cloudwatch.MathExpression({
    expression: `SEARCH('{${EMF_NAMESPACE},Pipeline,${by}} Pipeline="${p}" MetricName="${metric}"', '${stat}', ${PERIOD.toSeconds()})`,
    label,
    period: PERIOD,
  });
}

export function addMonitoring(scope: Construct, o: MonitoringOptions): FanoutMonitoring {
  const sm = o.stateMachine;
  const fns = Object.entries(o.functions);
  const sum = { period: PERIOD, statistic: cloudwatch.Stats.SUM };

  // Two plain alarms rather than one metric-math alarm (failed + timed out): the same on AWS, and
  // LocalStack-compatible emulators (MiniStack) refuse metric-math alarms.
  const executionsAlarm = (id: string, metric: cloudwatch.Metric, what: string): cloudwatch.Alarm =>
    new cloudwatch.Alarm(scope, id, {
      alarmDescription: `fanout: a run ${what} (runs/<runId>/failure.json in the work bucket says which partition and why)`,
      metric,
      threshold: o.failedExecutionsThreshold ?? 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  const failedExecutionsAlarm = executionsAlarm('FailedExecutionsAlarm', sm.metricFailed(sum), 'failed');
  const timedOutExecutionsAlarm = executionsAlarm('TimedOutExecutionsAlarm', sm.metricTimedOut(sum), 'timed out');
  let deadLetterAlarm: cloudwatch.Alarm | undefined;
  if (o.deadLetterQueue) {
    deadLetterAlarm = new cloudwatch.Alarm(scope, 'DeadLetterAlarm', {
      alarmDescription: 'fanout: an upload did not start a run (StartExecution failed); the event waits in the rule dead-letter queue',
      metric: o.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: cloudwatch.Stats.MAXIMUM }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }
  if (o.alarmTopic) {
    const action = new actions.SnsAction(o.alarmTopic);
    for (const a of [failedExecutionsAlarm, timedOutExecutionsAlarm, deadLetterAlarm]) {
      a?.addAlarmAction(action);
      a?.addOkAction(action);
    }
  }

  const dashboard = new cloudwatch.Dashboard(scope, 'Dashboard', {
    ...(o.dashboardName ? { dashboardName: o.dashboardName } : {}),
    defaultInterval: Duration.hours(24),
  });
  const graph = (title: string, left: cloudwatch.IMetric[], width = 8): cloudwatch.GraphWidget => new cloudwatch.GraphWidget({ title, left, width, height: 6 });
  dashboard.addWidgets(
    graph('Runs (executions)', [sm.metricStarted(sum), sm.metricSucceeded(sum), sm.metricFailed(sum), sm.metricAborted(sum), sm.metricTimedOut(sum)]),
    graph('Run time', [
      sm.metricTime({ period: PERIOD, statistic: cloudwatch.Stats.AVERAGE }),
      sm.metricTime({ period: PERIOD, statistic: cloudwatch.Stats.p(90) }),
    ]),
    new cloudwatch.AlarmStatusWidget({
      title: 'Alarms',
      alarms: [failedExecutionsAlarm, timedOutExecutionsAlarm, ...(deadLetterAlarm ? [deadLetterAlarm] : [])],
      width: 8,
      height: 6,
    }),
  );
  dashboard.addWidgets(
    graph('Partition time by stage (ms, avg)', [emfSearch(o.pipelineName, 'Stage', 'PartitionMs', 'Average', '')]),
    graph('Rows written by stage', [emfSearch(o.pipelineName, 'Stage', 'Rows', 'Sum', '')]),
    graph(
      'Lambda duration (ms, p90)',
      fns.map(([role, fn]) => fn.metricDuration({ period: PERIOD, statistic: cloudwatch.Stats.p(90), label: role })),
    ),
  );
  dashboard.addWidgets(
    graph(
      'Lambda errors',
      fns.map(([role, fn]) => fn.metricErrors({ ...sum, label: role })),
    ),
    graph(
      'Lambda throttles',
      fns.map(([role, fn]) => fn.metricThrottles({ ...sum, label: role })),
    ),
    graph(
      o.cluster ? 'GPU tasks running' : 'Rule dead-letter queue',
      o.cluster
        ? [
            new cloudwatch.Metric({
              namespace: 'ECS/ContainerInsights',
              metricName: 'RunningTaskCount',
              dimensionsMap: { ClusterName: o.cluster.clusterName },
              period: Duration.minutes(1),
              statistic: cloudwatch.Stats.MAXIMUM,
            }),
          ]
        : o.deadLetterQueue
          ? [o.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: cloudwatch.Stats.MAXIMUM })]
          : [],
    ),
  );
  dashboard.addWidgets(
    graph('UDF rows out', [emfSearch(o.pipelineName, 'Udf', 'RowsOut', 'Sum', '')]),
    graph('UDF errors and retries', [
      emfSearch(o.pipelineName, 'Udf', 'Errors', 'Sum', 'errors'),
      emfSearch(o.pipelineName, 'Udf', 'Retries', 'Sum', 'retries'),
    ]),
    graph('UDF counters', [emfSearch(o.pipelineName, 'Udf,Counter', 'Count', 'Sum', '')]),
  );
  return { dashboard, failedExecutionsAlarm, timedOutExecutionsAlarm, ...(deadLetterAlarm ? { deadLetterAlarm } : {}) };
}

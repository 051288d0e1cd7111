// FanoutPipeline's input trigger: S3 "Object Created" events of the watched prefix (through
// EventBridge) start one run each, with a dead-letter queue for deliveries that failed.
import { Duration, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';

// Pure, and also used by the offline harness, so the local rule matches the deployed one.
/** The EventBridge pattern of the input rule: S3 "Object Created" in `bucketName` under `prefix` (and ending with `suffix`). */
export function objectCreatedPattern(
  bucketName: string,
  prefix: string,
  suffix: string,
): { source: string[]; 'detail-type': string[]; detail: { bucket: { name: string[] }; object: { key: Record<string, string>[] } } } {
  const key: Record<string, string>[] = [];
  // A pattern value may hold one operator: prefix and suffix together need the wildcard form.
  if (prefix && suffix) key.push({ wildcard: `${escapeWildcard(prefix)}*${escapeWildcard(suffix)}` });
  else if (suffix) key.push({ suffix });
  else key.push({ prefix });
  return { source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: [bucketName] }, object: { key } } };
}

function escapeWildcard(s: string): string {
  return s.replace(/[\\*]/g, (c) => `\\${c}`);
}

/** Resolved settings (FanoutPipeline validates the props and applies the defaults). */
export interface InputTriggerOptions {
  readonly stateMachine: sfn.IStateMachine;
  readonly bucket: s3.IBucket;
  /** Normalized: '' or ending with '/'. */
  readonly prefix: string;
  readonly suffix: string;
  readonly enableEventBridge: boolean;
  /** Where each run commits, as `s3://bucket/prefix` (the event id is appended); null: the work bucket. */
  readonly outputBase: string | null;
}

/**
 * Creates the dead-letter queue and the rule in `scope` itself (not a child construct), so construct
 * paths and logical IDs are those of the pipeline's earlier single-file version.
 */
export function addInputTrigger(scope: Construct, o: InputTriggerOptions): { rule: events.Rule; deadLetterQueue: sqs.Queue } {
  if (o.enableEventBridge) enableEventBridge(o.bucket);
  const deadLetterQueue = new sqs.Queue(scope, 'RuleDeadLetterQueue', {
    enforceSSL: true,
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    retentionPeriod: Duration.days(14),
  });
  Validations.of(deadLetterQueue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself the dead-letter queue of the input rule (uploads whose StartExecution failed).',
  });
  const outputUri = o.outputBase !== null ? `${o.outputBase}${events.EventField.eventId}/` : null;
  const rule = new events.Rule(scope, 'InputRule', {
    description: `fanout: start a run for each object created under s3://<input>/${o.prefix}${o.suffix ? `*${o.suffix}` : ''}`,
    eventPattern: objectCreatedPattern(o.bucket.bucketName, o.prefix, o.suffix),
    targets: [
      new targets.SfnStateMachine(o.stateMachine, {
        // The Plan handler's RunEvent. The event id is the run id: a redelivered event reuses the
        // plan already written for it instead of starting a second, different run.
        input: events.RuleTargetInput.fromObject({
          // literal: the uploaded key is read as one object, never expanded as a glob (issue 8).
          input: { uri: `s3://${events.EventField.fromPath('$.detail.bucket.name')}/${events.EventField.fromPath('$.detail.object.key')}`, literal: true },
          output: outputUri,
          runId: events.EventField.eventId,
        }),
        deadLetterQueue,
        retryAttempts: 8,
        maxEventAge: Duration.hours(6),
      }),
    ],
  });
  return { rule, deadLetterQueue };
}

function enableEventBridge(bucket: s3.IBucket): void {
  const cfn = bucket.node.defaultChild;
  // A bucket of this app without L2 notifications: the CloudFormation property, no custom resource.
  if (cfn instanceof s3.CfnBucket && !bucket.node.tryFindChild('Notifications')) {
    cfn.addPropertyOverride('NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled', true);
  } else {
    bucket.enableEventBridgeNotification();
  }
}

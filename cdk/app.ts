// The CDK app: one environment-agnostic stack with a FanoutPipeline over examples/pipeline.ts,
// an input bucket (uploads under incoming/ start runs) and an output bucket (results/<runId>/).
// `npx cdk synth` needs no credentials, no Docker and no network: AZs come from Fn::GetAZs, the
// GPU AMI from an SSM parameter at deploy time, the Lambdas are bundled by the local esbuild and
// the GPU image is only staged (built by `cdk deploy`). cdk-nag's AwsSolutions pack runs on synth.
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App, CfnOutput, RemovalPolicy, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct } from 'constructs';
import { emulatorMode } from './emulator.ts';
import { FanoutPipeline, type FanoutPipelineProps } from './fanout-pipeline.ts';

export const EXAMPLE_ENTRY = fileURLToPath(new URL('../examples/pipeline.ts', import.meta.url));
export const STACK_NAME = 'FanoutExample';
export const INPUT_PREFIX = 'incoming/';
export const OUTPUT_PREFIX = 'results/';

export interface FanoutExampleStackProps extends StackProps {
  /** Overrides for the pipeline (tests vary GPU and Lambda settings). */
  pipeline?: Partial<Omit<FanoutPipelineProps, 'input' | 'output'>>;
}

export class FanoutExampleStack extends Stack {
  readonly pipeline: FanoutPipeline;
  readonly inputBucket: s3.Bucket;
  readonly outputBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: FanoutExampleStackProps = {}) {
    super(scope, id, props);
    const bucket = (name: string, what: string): s3.Bucket => {
      const b = new s3.Bucket(this, name, {
        encryption: s3.BucketEncryption.S3_MANAGED,
        enforceSSL: true,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        // Data outlives the stack; `cdk destroy` leaves these buckets (empty and delete them by hand).
        removalPolicy: RemovalPolicy.RETAIN,
      });
      Validations.of(b).acknowledge({
        id: 'AwsSolutions-S1',
        reason: `Example ${what} bucket; enable server access logs to a log bucket of your account where auditing requires it.`,
      });
      return b;
    };
    this.inputBucket = bucket('InputBucket', 'input');
    this.outputBucket = bucket('OutputBucket', 'output');
    // `-c fanout:emulator=true` (localstack/scripts/deploy.sh): the pipeline leaves out what
    // emulators lack and says so (cdk/emulator.ts); it reads `fanout:amiId` itself there. Elsewhere
    // `-c fanout:amiId=ami-…` replaces the SSM public parameter of the ECS GPU AMI.
    const amiId = emulatorMode(this) ? undefined : (this.node.tryGetContext('fanout:amiId') as string | undefined);
    // `-c fanout:stageReservedConcurrency=N`: reserve N concurrent Stage invocations (unset: none, so
    // the example deploys in accounts with a small concurrency quota).
    const reserved = this.node.tryGetContext('fanout:stageReservedConcurrency') as string | number | undefined;
    this.pipeline = new FanoutPipeline(this, 'Pipeline', {
      entry: EXAMPLE_ENTRY,
      input: { bucket: this.inputBucket, prefix: INPUT_PREFIX, suffix: '.parquet' },
      output: { bucket: this.outputBucket, prefix: OUTPUT_PREFIX },
      gpu: {
        instanceType: 'g5.xlarge',
        minCapacity: 0,
        maxCapacity: 2,
        ...(amiId
          ? { machineImage: ec2.MachineImage.genericLinux({ [process.env['CDK_DEFAULT_REGION'] ?? process.env['AWS_REGION'] ?? 'us-east-1']: amiId }) }
          : {}),
      },
      ...(reserved !== undefined ? { lambda: { stageReservedConcurrency: Number(reserved) } } : {}),
      ...props.pipeline,
    });
    new CfnOutput(this, 'InputBucketName', { value: this.inputBucket.bucketName, description: `Upload Parquet files under s3://<this>/${INPUT_PREFIX}` });
    new CfnOutput(this, 'InputPrefix', { value: INPUT_PREFIX });
    new CfnOutput(this, 'OutputBucketName', { value: this.outputBucket.bucketName, description: `Results: s3://<this>/${OUTPUT_PREFIX}<runId>/` });
    new CfnOutput(this, 'WorkBucketName', { value: this.pipeline.workBucket.bucketName, description: 'Run plans, shards and summaries: runs/<runId>/' });
    new CfnOutput(this, 'StateMachineArn', { value: this.pipeline.stateMachine.stateMachineArn });
  }
}

export interface CreateAppOptions {
  /** Cloud assembly directory. @default CDK_OUTDIR (set by the CLI) or cdk.out */
  outdir?: string;
  /** Run cdk-nag's AwsSolutions pack on synth (unacknowledged errors fail it). @default true */
  nag?: boolean;
  context?: Record<string, unknown>;
  stack?: FanoutExampleStackProps;
}

/** Imports the pipeline (its UDFs size the Stage Lambda and the GPU task), then builds the app. */
export async function createApp(opts: CreateAppOptions = {}): Promise<{ app: App; stack: FanoutExampleStack }> {
  await import(pathToFileURL(EXAMPLE_ENTRY).href);
  const app = new App({ ...(opts.outdir ? { outdir: opts.outdir } : {}), ...(opts.context ? { context: opts.context } : {}) });
  const stack = new FanoutExampleStack(app, STACK_NAME, {
    description: 'fanout example: serverless UDF pipeline (Step Functions, Lambda, ECS GPU) triggered by S3 uploads',
    ...opts.stack,
  });
  if (opts.nag ?? true) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { app } = await createApp();
  app.synth();
}

// The container environment every ECS stage task (GPU on EC2, CPU on Fargate) starts with: the same
// variables the Stage Lambda gets, so lambdas/ecs-task.ts runs the one stage executor the same way.
import { Stack, Validations } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';

/** In the task image (cdk/gpu-task/Dockerfile): the bundled pipeline entry. */
export const GPU_IMAGE_PIPELINE = '/app/dist/pipeline.js';

export function stageTaskEnvironment(scope: Construct, workBucket: s3.IBucket, metricsPipeline: string): Record<string, string> {
  return {
    FANOUT_WORK_BUCKET: workBucket.bucketName,
    FANOUT_PIPELINE: GPU_IMAGE_PIPELINE,
    FANOUT_PROGRESS: '0',
    // Partition and UDF metrics as embedded-metric-format lines in the task's log (src/aws/emf.ts), as the Stage Lambda prints them.
    FANOUT_METRICS: 'emf',
    FANOUT_METRICS_PIPELINE: metricsPipeline,
    // The ECS agent does not set it for EC2 tasks; without it S3 calls go to us-east-1 first.
    AWS_REGION: Stack.of(scope).region,
  };
}

/** cdk-nag's ECS2 (environment variables): nothing secret is in them. */
export function acknowledgeTaskEnvironment(td: ecs.TaskDefinition): void {
  Validations.of(td).acknowledge({
    id: 'AwsSolutions-ECS2',
    reason: 'The environment holds a bucket name and a module path, no secrets; run-specific values come as RunTask overrides.',
  });
}

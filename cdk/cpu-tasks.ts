// FanoutPipeline's Fargate task definitions: CPU stages beyond Lambda's limits (more than 10 GB or
// 15 minutes, declared with a UDF's `aws.runOn: 'fargate'` or estimated from its requests) run as
// one Fargate task per partition, through the same ECS entrypoint as GPU stages (lambdas/ecs-task.ts),
// in a CPU image built from the GPU task's Dockerfile without CUDA. One task definition per sizing
// class (src/aws/placement.ts), sharing one task role, execution role, log group and security group.
import type { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { fargateTaskDefinitionId, type FargatePlacement } from '../src/aws/placement.ts';
import { acknowledgeWildcard, grantList, type ObjectGrants, RUNS_PREFIX, S3_DELETE, S3_READ, S3_WRITE } from './grants.ts';
import { acknowledgeTaskEnvironment, stageTaskEnvironment } from './task-environment.ts';

export const CPU_CONTAINER_NAME = 'fanout-cpu';
/** Provisioning and image pull before a Fargate task's partition starts: added to the class timeout in the state machine. */
export const FARGATE_STARTUP_GRACE_SECONDS = 600;

export interface FargateTasksOptions {
  readonly cluster: ecs.ICluster;
  /** The `Pipeline` dimension of the tasks' EMF metrics (src/aws/emf.ts). */
  readonly metricsPipeline: string;
  readonly vpc: ec2.IVpc;
  /** Public subnets (the default VPC): tasks get a public IP to reach S3 and ECR without a NAT gateway. */
  readonly publicSubnets: boolean;
  readonly classes: readonly FargatePlacement[];
  /** The image for an architecture (the GPU task's Dockerfile, CPU-only). */
  readonly image: (architecture: 'x86_64' | 'arm64') => ecs.ContainerImage;
  readonly workBucket: s3.IBucket;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  readonly grants: ObjectGrants;
}

export interface FargateTasks {
  /** By sizing class key. */
  readonly taskDefinitions: Record<string, ecs.FargateTaskDefinition>;
  readonly taskRole: iam.Role;
  readonly executionRole: iam.Role;
  readonly securityGroup: ec2.SecurityGroup;
}

export function addFargateTasks(scope: Construct, o: FargateTasksOptions): FargateTasks {
  const taskRole = new iam.Role(scope, 'FargateTaskRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: 'fanout Fargate tasks (CPU stages beyond Lambda): read inputs; read and write shards under runs/ of the work bucket',
  });
  const executionRole = new iam.Role(scope, 'FargateExecutionRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: 'fanout Fargate tasks: pull the task image and write the task log group',
  });
  const securityGroup = new ec2.SecurityGroup(scope, 'FargateTaskSecurityGroup', {
    vpc: o.vpc,
    description: 'fanout Fargate tasks: no inbound; outbound HTTPS (TCP 443) only, to ECR, CloudWatch Logs and S3',
    allowAllOutbound: false,
  });
  securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS endpoints (ECR, CloudWatch Logs, S3)');
  const taskLogs = new logs.LogGroup(scope, 'FargateTaskLogs', { retention: o.logRetention, removalPolicy: o.removalPolicy });
  const taskDefinitions: Record<string, ecs.FargateTaskDefinition> = {};
  for (const c of o.classes) {
    const td = new ecs.FargateTaskDefinition(scope, fargateTaskDefinitionId(c.key), {
      cpu: c.cpu,
      memoryLimitMiB: c.memoryMiB,
      ephemeralStorageGiB: c.ephemeralStorageGiB,
      runtimePlatform: {
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        cpuArchitecture: c.architecture === 'arm64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
      },
      taskRole,
      executionRole,
    });
    td.addContainer(CPU_CONTAINER_NAME, {
      containerName: CPU_CONTAINER_NAME,
      image: o.image(c.architecture),
      essential: true,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'cpu', logGroup: taskLogs }),
      environment: stageTaskEnvironment(scope, o.workBucket, o.metricsPipeline),
    });
    acknowledgeTaskEnvironment(td);
    taskDefinitions[c.key] = td;
  }
  // A Fargate task is the Stage function on ECS: shards under runs/ (its inputs: grantReadInput).
  o.grants.grant(taskRole, o.workBucket, `${RUNS_PREFIX}*`, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
  grantList(taskRole, o.workBucket, RUNS_PREFIX);
  acknowledgeWildcard(executionRole, 'Resource::*', 'Pulling the task image needs ecr:GetAuthorizationToken, which accepts only "*".');
  return { taskDefinitions, taskRole, executionRole, securityGroup };
}

// FanoutPipeline's GPU capacity: an ECS cluster whose auto scaling group of GPU instances scales to
// zero (managed scaling through a capacity provider), the instances' role and security group, and
// the task definition that runs GPU stages (the Stage handler on ECS, one task per worker slot).
import { type RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledgeTaskEnvironment, stageTaskEnvironment } from './task-environment.ts';
import { acknowledgeWildcard, grantList, type ObjectGrants, RUNS_PREFIX, S3_DELETE, S3_READ, S3_WRITE } from './grants.ts';

export const GPU_CONTAINER_NAME = 'fanout-gpu';
export { GPU_IMAGE_PIPELINE } from './task-environment.ts';

/** Resolved settings (FanoutPipeline validates the props and applies the defaults). */
export interface GpuCapacityOptions {
  readonly instanceType: ec2.InstanceType;
  readonly machineImage: ec2.IMachineImage;
  readonly minCapacity: number;
  readonly maxCapacity: number;
  readonly rootVolumeGiB: number;
  readonly task: { readonly gpus: number; readonly memoryReservationMiB: number; readonly cpu: number };
  readonly image: ecs.ContainerImage;
  /** A VPC of the user's (instances in its private subnets with egress), else a new one (public subnets). */
  readonly vpc?: ec2.IVpc;
  readonly workBucket: s3.IBucket;
  /** The `Pipeline` dimension of the task's EMF metrics. */
  readonly metricsPipeline: string;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  readonly grants: ObjectGrants;
}

export interface GpuCapacity {
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.Cluster;
  readonly capacityProvider: ecs.AsgCapacityProvider;
  readonly instanceRole: iam.Role;
  readonly instanceSecurityGroup: ec2.SecurityGroup;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  /** Per-stage resources: the capacity provider of another GPU instance type (own launch template and auto scaling group), once per type. */
  capacityFor(instanceType: ec2.InstanceType): ecs.AsgCapacityProvider;
  /** Per-stage resources: a task definition of another GPU class (its GPUs, memory and CPU), with the default one's roles, image and logs. */
  addTaskDefinition(id: string, task: { readonly gpus: number; readonly memoryReservationMiB: number; readonly cpu: number }): ecs.Ec2TaskDefinition;
}

/**
 * Creates the GPU capacity in `scope` itself (not a child construct), so construct paths and
 * logical IDs are those of the pipeline's earlier single-file version.
 */
export function addGpuCapacity(scope: Construct, o: GpuCapacityOptions): GpuCapacity {
  const vpc = o.vpc ?? defaultVpc(scope, o.logRetention, o.removalPolicy);
  const cluster = new ecs.Cluster(scope, 'Cluster', { vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });
  // What the instances and their bridge-mode tasks reach is all HTTPS: the ECS agent's endpoints,
  // ECR (API, registry, layers in S3), CloudWatch Logs and S3 (through the gateway endpoint in
  // the default VPC: its prefix list lies within 0.0.0.0/0) — public AWS endpoints without NAT or
  // interface endpoints, hence any IPv4 on 443 only. DNS (the VPC resolver), NTP (Amazon Time
  // Sync) and instance metadata are not subject to security groups.
  const instanceSg = new ec2.SecurityGroup(scope, 'GpuInstanceSecurityGroup', {
    vpc,
    description: 'fanout GPU instances: no inbound; outbound HTTPS (TCP 443) only, to ECS, ECR, CloudWatch Logs and S3',
    allowAllOutbound: false,
  });
  instanceSg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS endpoints (ECS agent, ECR, CloudWatch Logs, S3)');
  const taskLogs = new logs.LogGroup(scope, 'GpuTaskLogs', { retention: o.logRetention, removalPolicy: o.removalPolicy });
  const instanceRole = new iam.Role(scope, 'GpuInstanceRole', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: 'fanout GPU container instances (ECS agent)',
  });
  // The ECS agent's permissions as cluster.addAsgCapacityProvider grants them, except that logs
  // go to the task log group only (CDK grants logs:CreateLogStream/PutLogEvents on '*'). The launch template gets an
  // immutable view of the role so CDK's own grant is dropped; these statements replace it.
  instanceRole.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'EcsAgentContainerInstance',
      actions: [
        'ecs:DeregisterContainerInstance',
        'ecs:RegisterContainerInstance',
        'ecs:SubmitAttachmentStateChanges',
        'ecs:SubmitContainerStateChange',
        'ecs:SubmitTaskStateChange',
      ],
      resources: [cluster.clusterArn],
    }),
  );
  instanceRole.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'EcsAgentPoll',
      actions: ['ecs:Poll', 'ecs:StartTelemetrySession'],
      resources: ['*'],
      conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
    }),
  );
  instanceRole.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'EcsAgentDiscoveryAndRegistryToken',
      actions: ['ecs:DiscoverPollEndpoint', 'ecr:GetAuthorizationToken'],
      resources: ['*'],
    }),
  );
  // The awslogs driver uses the task execution role (granted by CDK); an agent configured to use
  // the instance's credentials instead still reaches only this group.
  instanceRole.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'GpuTaskLogs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [taskLogs.logGroupArn],
    }),
  );
  // One launch template, auto scaling group and capacity provider per instance type; the default
  // type keeps the ids of the single-type construct.
  const providers = new Map<string, ecs.AsgCapacityProvider>();
  const capacityFor = (instanceType: ec2.InstanceType): ecs.AsgCapacityProvider => {
    const type = instanceType.toString();
    const known = providers.get(type);
    if (known) return known;
    const suffix = providers.size === 0 ? '' : pascalType(type);
    const launchTemplate = new ec2.LaunchTemplate(scope, `GpuLaunchTemplate${suffix}`, {
      instanceType,
      machineImage: o.machineImage,
      userData: ec2.UserData.forLinux(),
      role: instanceRole.withoutPolicyUpdates(),
      securityGroup: instanceSg,
      // IMDSv2 with one hop: containers (one hop further) cannot take the instance's credentials.
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      blockDevices: [
        { deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(o.rootVolumeGiB, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) },
      ],
    });
    const asg = new autoscaling.AutoScalingGroup(scope, `GpuAutoScalingGroup${suffix}`, {
      vpc,
      vpcSubnets: o.vpc ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } : { subnetType: ec2.SubnetType.PUBLIC },
      launchTemplate,
      minCapacity: suffix ? 0 : o.minCapacity,
      maxCapacity: o.maxCapacity,
    });
    Validations.of(asg).acknowledge({
      id: 'AwsSolutions-AS3',
      reason: 'ECS managed scaling drives this group; scaling activity is visible in the ECS capacity provider and CloudTrail, no SNS consumer exists.',
    });
    const provider = new ecs.AsgCapacityProvider(scope, `GpuCapacityProvider${suffix}`, {
      autoScalingGroup: asg,
      enableManagedScaling: true,
      enableManagedTerminationProtection: true,
      targetCapacityPercent: 100,
      machineImageType: ecs.MachineImageType.AMAZON_LINUX_2,
    });
    cluster.addAsgCapacityProvider(provider);
    providers.set(type, provider);
    return provider;
  };
  const capacityProvider = capacityFor(o.instanceType);

  const containerFor = (td: ecs.Ec2TaskDefinition, task: GpuCapacityOptions['task']): void => {
    td.addContainer(GPU_CONTAINER_NAME, {
      containerName: GPU_CONTAINER_NAME,
      image: o.image,
      gpuCount: task.gpus,
      memoryReservationMiB: task.memoryReservationMiB,
      cpu: task.cpu,
      essential: true,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'gpu', logGroup: taskLogs }),
      environment: stageTaskEnvironment(scope, o.workBucket, o.metricsPipeline),
    });
    acknowledgeTaskEnvironment(td);
  };
  const taskDefinition = new ecs.Ec2TaskDefinition(scope, 'GpuTaskDefinition', {
    // Bridge: the task uses the instance's network (public subnet, or the given VPC's egress);
    // awsvpc would need NAT or interface endpoints and spends the GPU instances' few ENIs.
    networkMode: ecs.NetworkMode.BRIDGE,
  });
  containerFor(taskDefinition, o.task);
  const addTaskDefinition = (id: string, task: GpuCapacityOptions['task']): ecs.Ec2TaskDefinition => {
    // The default task definition's roles: one set of grants (runs/, the inputs) covers every GPU class.
    const td = new ecs.Ec2TaskDefinition(scope, id, {
      networkMode: ecs.NetworkMode.BRIDGE,
      taskRole: taskDefinition.taskRole,
      executionRole: taskDefinition.obtainExecutionRole(),
    });
    containerFor(td, task);
    return td;
  };
  // A GPU task is the Stage function on ECS: shards under runs/ (its inputs: grantReadInput).
  o.grants.grant(taskDefinition.taskRole, o.workBucket, `${RUNS_PREFIX}*`, [...S3_READ, ...S3_WRITE, ...S3_DELETE]);
  grantList(taskDefinition.taskRole, o.workBucket, RUNS_PREFIX);
  return { vpc, cluster, capacityProvider, instanceRole, instanceSecurityGroup: instanceSg, taskDefinition, capacityFor, addTaskDefinition };
}

/** cdk-nag IAM5 findings of the GPU capacity that AWS APIs force: calls that accept only '*'. */
export function acknowledgeGpuWildcards(gpu: Pick<GpuCapacity, 'instanceRole' | 'taskDefinition'>): void {
  acknowledgeWildcard(
    gpu.instanceRole,
    'Resource::*',
    'ECS agent calls DiscoverPollEndpoint and ecr:GetAuthorizationToken accept only "*"; Poll/StartTelemetrySession are limited to this cluster by the ecs:cluster condition.',
  );
  acknowledgeWildcard(gpu.taskDefinition, 'Resource::*', 'Pulling the task image needs ecr:GetAuthorizationToken, which accepts only "*".');
}

/** A new VPC for the instances: 2 AZs, public subnets only (no NAT gateway), S3 gateway endpoint, flow logs of rejected traffic. */
export function defaultVpc(scope: Construct, logRetention: logs.RetentionDays, removalPolicy: RemovalPolicy): ec2.Vpc {
  const flowLogs = new logs.LogGroup(scope, 'VpcFlowLogs', { retention: logRetention, removalPolicy });
  return new ec2.Vpc(scope, 'Vpc', {
    // Env-agnostic: two AZs via Fn::GetAZs, no lookup at synth.
    maxAzs: 2,
    // No NAT gateway (a fixed hourly cost while idle): instances sit in public subnets with no
    // inbound rule and reach S3 through the free gateway endpoint.
    natGateways: 0,
    subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20, mapPublicIpOnLaunch: true }],
    gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
    flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.REJECT } },
    // true would add a custom-resource Lambda; the default group is attached to nothing here.
    restrictDefaultSecurityGroup: false,
  });
}

/** 'g6.12xlarge' -> 'G612xlarge': an instance type as a construct id suffix. */
function pascalType(type: string): string {
  return type
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
}

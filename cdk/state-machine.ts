// FanoutPipeline's state machine: the generic definition of src/aws/state-machine.ts (Plan -> per
// stage a Map over partitions on the Stage function, or over GPU worker slots on ECS -> Finalize;
// Failure on errors) bound to this deployment's functions and GPU task, with a role that may invoke
// exactly those, run exactly that task, and start its own Distributed Map children.
import { ArnFormat, type RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { buildStateMachineDefinition } from '../src/aws/state-machine.ts';
import { acknowledgeWildcard, MAP_RESULTS_PREFIX, nagText } from './grants.ts';

/** Resolved settings (FanoutPipeline validates the props and applies the defaults). */
export interface RunStateMachineOptions {
  readonly functions: {
    readonly plan: lambda.IFunction;
    readonly stage: lambda.IFunction;
    readonly finalize: lambda.IFunction;
    readonly failure: lambda.IFunction;
  };
  /** Per-stage resources: the Stage functions of the other Lambda sizing classes (by class key). */
  readonly stageClassFunctions?: Readonly<Record<string, lambda.IFunction>>;
  /** The GPU capacity, when the pipeline has one (GPU stages fail with fanout.NoGpuResources otherwise). */
  readonly gpu?: {
    readonly cluster: ecs.Cluster;
    readonly taskDefinition: ecs.Ec2TaskDefinition;
    readonly containerName: string;
    /** @default none: the cluster's default strategy (emulator mode, which has no provider) */
    readonly capacityProvider?: string;
    /** Other GPU classes (key -> task definition and its instance type's capacity provider). */
    readonly classes?: Readonly<Record<string, { taskDefinition: ecs.Ec2TaskDefinition; capacityProvider: string }>>;
  };
  /** Fargate task definitions of CPU stages beyond Lambda (by class key). */
  readonly fargate?: {
    readonly cluster: ecs.ICluster;
    readonly taskDefinitions: Readonly<Record<string, ecs.FargateTaskDefinition>>;
    readonly containerName: string;
    readonly subnets: string[];
    readonly securityGroups: string[];
    readonly assignPublicIp: boolean;
    readonly timeoutSeconds: number;
  };
  readonly workBucket: s3.IBucket;
  readonly distributed: boolean;
  readonly lambdaTimeoutSeconds: number;
  readonly ecsTimeoutSeconds: number;
  readonly maxConcurrency?: number;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
}

/** The id of the Distributed Map's policy, under the pipeline. */
const MAP_POLICY_ID = 'DistributedMapPolicy';

/**
 * Creates the state machine in `scope` itself (not a child construct), so construct paths and
 * logical IDs are those of the pipeline's earlier single-file version.
 */
export function addRunStateMachine(scope: Construct, o: RunStateMachineOptions): sfn.StateMachine {
  const stack = Stack.of(scope);
  const fns = o.functions;
  const definition = buildStateMachineDefinition({
    planFunctionArn: fns.plan.functionArn,
    stageFunctionArn: fns.stage.functionArn,
    ...(o.stageClassFunctions && Object.keys(o.stageClassFunctions).length
      ? { stageFunctions: Object.fromEntries(Object.entries(o.stageClassFunctions).map(([k, f]) => [k, f.functionArn])) }
      : {}),
    ...(o.fargate
      ? {
          fargate: {
            clusterArn: o.fargate.cluster.clusterArn,
            containerName: o.fargate.containerName,
            subnets: o.fargate.subnets,
            securityGroups: o.fargate.securityGroups,
            assignPublicIp: o.fargate.assignPublicIp,
            taskDefinitions: Object.fromEntries(Object.entries(o.fargate.taskDefinitions).map(([k, td]) => [k, td.taskDefinitionArn])),
            timeoutSeconds: o.fargate.timeoutSeconds,
          },
        }
      : {}),
    finalizeFunctionArn: fns.finalize.functionArn,
    failureFunctionArn: fns.failure.functionArn,
    ...(o.gpu
      ? {
          ecs: {
            clusterArn: o.gpu.cluster.clusterArn,
            taskDefinitionArn: o.gpu.taskDefinition.taskDefinitionArn,
            containerName: o.gpu.containerName,
            subnets: [],
            securityGroups: [],
            ...(o.gpu.capacityProvider ? { capacityProvider: o.gpu.capacityProvider } : {}),
            ...(o.gpu.classes && Object.keys(o.gpu.classes).length
              ? {
                  taskDefinitions: Object.fromEntries(
                    Object.entries(o.gpu.classes).map(([k, c]) => [
                      k,
                      { taskDefinitionArn: c.taskDefinition.taskDefinitionArn, capacityProvider: c.capacityProvider },
                    ]),
                  ),
                }
              : {}),
          },
        }
      : {}),
    distributed: o.distributed,
    lambdaTimeoutSeconds: o.lambdaTimeoutSeconds,
    ecsTimeoutSeconds: o.ecsTimeoutSeconds,
    ...(o.maxConcurrency !== undefined ? { maxConcurrency: o.maxConcurrency } : {}),
  });
  const sfnLogs = new logs.LogGroup(scope, 'StateMachineLogs', { retention: o.logRetention, removalPolicy: o.removalPolicy });
  const sm = new sfn.StateMachine(scope, 'StateMachine', {
    definitionBody: sfn.DefinitionBody.fromString(stack.toJsonString(definition)),
    stateMachineType: sfn.StateMachineType.STANDARD,
    logs: { destination: sfnLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: true,
  });
  sm.addToRolePolicy(
    new iam.PolicyStatement({
      sid: 'InvokeFanoutFunctions',
      actions: ['lambda:InvokeFunction'],
      resources: [fns.plan, fns.stage, fns.finalize, fns.failure, ...Object.values(o.stageClassFunctions ?? {})].map((f) => f.functionArn),
    }),
  );
  if (o.gpu) {
    const { cluster, taskDefinition: td } = o.gpu;
    sm.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'RunGpuTasks',
        actions: ['ecs:RunTask'],
        resources: [td.taskDefinitionArn, ...Object.values(o.gpu.classes ?? {}).map((c) => c.taskDefinition.taskDefinitionArn)],
        conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
      }),
    );
    sm.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'WatchGpuTasks',
        actions: ['ecs:DescribeTasks', 'ecs:StopTask'],
        resources: [ecsTasksArn(cluster)],
      }),
    );
    sm.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'PassGpuTaskRoles',
        actions: ['iam:PassRole'],
        resources: [td.taskRole.roleArn, td.obtainExecutionRole().roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    // ecs:runTask.sync learns that a task stopped from this managed rule.
    sm.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'EcsSyncEvents',
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForECSTaskRule' })],
      }),
    );
  }
  if (o.fargate) {
    const tds = Object.values(o.fargate.taskDefinitions);
    const cluster = o.fargate.cluster;
    sm.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'RunFargateTasks',
        actions: ['ecs:RunTask'],
        resources: tds.map((td) => td.taskDefinitionArn),
        conditions: { ArnEquals: { 'ecs:cluster': cluster.clusterArn } },
      }),
    );
    if (!o.gpu) {
      sm.addToRolePolicy(new iam.PolicyStatement({ sid: 'WatchEcsTasks', actions: ['ecs:DescribeTasks', 'ecs:StopTask'], resources: [ecsTasksArn(cluster)] }));
      sm.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'EcsSyncEvents',
          actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
          resources: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForECSTaskRule' })],
        }),
      );
    }
    const first = tds[0];
    if (first) {
      sm.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'PassFargateTaskRoles',
          actions: ['iam:PassRole'],
          resources: [first.taskRole.roleArn, first.obtainExecutionRole().roleArn],
          conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
        }),
      );
    }
  }
  // Distributed Map: the machine starts child executions of itself and reads/writes S3 for them.
  // A separate policy, so the state machine does not depend on a statement naming its own ARN.
  const mapPolicy = new iam.Policy(scope, MAP_POLICY_ID, {
    statements: [
      new iam.PolicyStatement({ sid: 'StartChildExecutions', actions: ['states:StartExecution'], resources: [sm.stateMachineArn] }),
      new iam.PolicyStatement({
        sid: 'ManageChildExecutions',
        actions: ['states:DescribeExecution', 'states:StopExecution', 'states:RedriveExecution'],
        // Map Run children are named execution:<machine>/<label>:<id>.
        resources: [childExecutionsArn(sm)],
      }),
      new iam.PolicyStatement({ sid: 'ReadPartitionLists', actions: ['s3:GetObject'], resources: [o.workBucket.arnForObjects('runs/*')] }),
      new iam.PolicyStatement({
        sid: 'WriteMapResults',
        actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
        resources: [o.workBucket.arnForObjects(`${MAP_RESULTS_PREFIX}*`)],
      }),
    ],
  });
  sm.role.attachInlinePolicy(mapPolicy);
  return sm;
}

/** cdk-nag IAM5 findings of the state machine's role and its Distributed Map policy, each with its reason. */
export function acknowledgeStateMachineWildcards(scope: Construct, sm: sfn.StateMachine, workBucket: s3.IBucket, cluster: ecs.ICluster | undefined): void {
  const render = (v: unknown): string => nagText(Stack.of(scope).resolve(v));
  const mapPolicy = scope.node.findChild(MAP_POLICY_ID);
  acknowledgeWildcard(
    mapPolicy,
    `Resource::${render(workBucket.arnForObjects('runs/*'))}`,
    'The Distributed Map reads the partition lists the Plan step writes under runs/<runId>/.',
  );
  acknowledgeWildcard(
    mapPolicy,
    `Resource::${render(workBucket.arnForObjects(`${MAP_RESULTS_PREFIX}*`))}`,
    'Step Functions writes Distributed Map results under this prefix with generated keys.',
  );
  acknowledgeWildcard(
    mapPolicy,
    `Resource::${render(childExecutionsArn(sm))}`,
    "Distributed Map child executions have generated names, all under this machine's own map runs.",
  );
  acknowledgeWildcard(sm, 'Resource::*', 'Step Functions log delivery (logs:*LogDelivery*) and X-Ray tracing APIs accept only "*".');
  if (cluster) {
    acknowledgeWildcard(
      sm,
      `Resource::${render(ecsTasksArn(cluster))}`,
      'ECS tasks get generated ids; DescribeTasks/StopTask are limited to tasks of this cluster.',
    );
  }
}

function childExecutionsArn(sm: sfn.StateMachine): string {
  return Stack.of(sm).formatArn({
    service: 'states',
    resource: 'execution',
    resourceName: `${sm.stateMachineName}/*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

function ecsTasksArn(cluster: ecs.ICluster): string {
  return Stack.of(cluster).formatArn({ service: 'ecs', resource: 'task', resourceName: `${cluster.clusterName}/*` });
}

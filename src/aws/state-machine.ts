// The Step Functions definition (Amazon States Language, JSONPath flavour) that runs a serverless
// pipeline: Plan -> Stages (one at a time; each stage fans out over partitions on Lambda, or over
// GPU worker slots on ECS) -> Finalize. Plan and Finalize failures go through a path that records
// the error before failing; a failing stage fails the execution in the Stages Map itself, so a
// RedriveExecution re-enters it (see Stages). `{ runId, resume: true }` as input resumes a run.
// State payloads carry indices and S3 keys only; partition lists live in S3 (ItemReader) or are
// generated in the state (States.ArrayRange), so no payload grows with the data.

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type AslStateType = 'Task' | 'Pass' | 'Map' | 'Parallel' | 'Choice' | 'Wait' | 'Succeed' | 'Fail';

export interface AslRetrier {
  ErrorEquals: string[];
  IntervalSeconds?: number;
  MaxAttempts?: number;
  BackoffRate?: number;
  MaxDelaySeconds?: number;
  JitterStrategy?: 'FULL' | 'NONE';
}

export interface AslCatcher {
  ErrorEquals: string[];
  Next: string;
  ResultPath?: string | null;
}

/** A Choice condition: `Variable` plus one comparison operator, or And/Or/Not. */
export interface AslChoiceCondition {
  Variable?: string;
  And?: AslChoiceCondition[];
  Or?: AslChoiceCondition[];
  Not?: AslChoiceCondition;
  [operator: string]: JsonValue | AslChoiceCondition | AslChoiceCondition[] | undefined;
}
export type AslChoiceRule = AslChoiceCondition & { Next: string };

export interface AslItemProcessor extends AslStateMachine {
  ProcessorConfig?: { Mode: 'INLINE' } | { Mode: 'DISTRIBUTED'; ExecutionType: 'STANDARD' | 'EXPRESS' };
}

export interface AslResourceConfig {
  Resource: string;
  Parameters?: JsonObject;
  ReaderConfig?: { InputType?: 'JSON' | 'JSONL' | 'CSV' | 'MANIFEST' | 'PARQUET'; MaxItems?: number; [key: string]: JsonValue | undefined };
}

export interface AslState {
  Type: AslStateType;
  Comment?: string;
  Next?: string;
  End?: boolean;
  InputPath?: string | null;
  OutputPath?: string | null;
  ResultPath?: string | null;
  Parameters?: JsonObject;
  ResultSelector?: JsonObject;
  Result?: JsonValue;
  // Task
  Resource?: string;
  TimeoutSeconds?: number;
  TimeoutSecondsPath?: string;
  HeartbeatSeconds?: number;
  Retry?: AslRetrier[];
  Catch?: AslCatcher[];
  // Choice
  Choices?: AslChoiceRule[];
  Default?: string;
  // Map
  ItemsPath?: string;
  ItemSelector?: JsonObject;
  ItemProcessor?: AslItemProcessor;
  Iterator?: AslStateMachine;
  ItemReader?: AslResourceConfig;
  ResultWriter?: AslResourceConfig;
  ItemBatcher?: JsonObject;
  MaxConcurrency?: number;
  MaxConcurrencyPath?: string;
  ToleratedFailurePercentage?: number;
  ToleratedFailureCount?: number;
  ToleratedFailurePercentagePath?: string;
  ToleratedFailureCountPath?: string;
  Label?: string;
  // Parallel
  Branches?: AslStateMachine[];
  // Fail
  Error?: string;
  Cause?: string;
  ErrorPath?: string;
  CausePath?: string;
  // Wait
  Seconds?: number;
}

export interface AslStateMachine {
  Comment?: string;
  StartAt: string;
  States: Record<string, AslState>;
}

export interface AslDefinition extends AslStateMachine {
  /** Execution-wide limit; unset here: every Task has its own TimeoutSeconds. */
  TimeoutSeconds?: number;
}

export interface StateMachineResources {
  planFunctionArn: string;
  /** The main Stage function: runs lambda stages whose sizing class has no function of its own. */
  stageFunctionArn: string;
  /**
   * Per-stage resources: a Stage function per Lambda sizing class (class key -> ARN, see placement.ts);
   * the definition routes each lambda stage by its plan's `sizing`. Unset or empty: every lambda stage
   * runs on stageFunctionArn (and the definition has no routing states).
   */
  stageFunctions?: Record<string, string>;
  /** ECS Fargate capacity for CPU stages beyond Lambda's limits (executor 'fargate'). */
  fargate?: FargateResources;
  finalizeFunctionArn: string;
  failureFunctionArn: string;
  ecs?: {
    clusterArn: string;
    taskDefinitionArn: string;
    containerName: string;
    subnets: string[];
    securityGroups: string[];
    capacityProvider?: string;
    /** GPU sizing classes (key -> task definition and the capacity provider of its instance type); others use taskDefinitionArn. */
    taskDefinitions?: Record<string, { taskDefinitionArn: string; capacityProvider?: string }>;
  };
  /** Distributed Map for CPU stages (AWS), so concurrency can reach thousands. */
  distributed?: boolean;
  /** Per partition task, default 900. */
  lambdaTimeoutSeconds?: number;
  /** Per GPU task, default 6 h. */
  ecsTimeoutSeconds?: number;
  /** Cap for CPU Map (per stage value comes from the plan). */
  maxConcurrency?: number;
}

export const DEFAULT_LAMBDA_TIMEOUT_SECONDS = 900;
export const DEFAULT_ECS_TIMEOUT_SECONDS = 6 * 3600;
/** Headroom of a Lambda Task over the function's own timeout: the function should time out first
 *  (error Sandbox.Timedout, with a clear cause); the state timeout is only the backstop. */
export const LAMBDA_STATE_TIMEOUT_GRACE_SECONDS = 30;
/** States.ArrayRange (inline partition lists) returns at most 1000 items; beyond that use distributed. */
export const INLINE_MAX_PARTITIONS = 1000;

export const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
export const ECS_RUN_TASK_SYNC = 'arn:aws:states:::ecs:runTask.sync';
export const S3_GET_OBJECT = 'arn:aws:states:::s3:getObject';
export const S3_PUT_OBJECT = 'arn:aws:states:::s3:putObject';

/** Errors a handler reports for a failing UDF (UdfError, udf/errors.ts): never retried by the state machine. */
export const DETERMINISTIC_ERRORS = ['UdfError'];
/** Errors of the Lambda service itself (not of the handler): always worth retrying. */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
];
/** A timed-out function or state is not retried: a partition that ran 15 minutes once will
 *  most likely do it again, and each retry would cost another full timeout. */
export const TIMEOUT_ERRORS = ['States.Timeout', 'Sandbox.Timedout'];
/** RunTask refusals that clear up by themselves: API errors, throttling and, with .sync, a
 *  non-empty `failures` list (AmazonECS.Unknown), e.g. RESOURCE:GPU while capacity scales out. */
export const ECS_TRANSIENT_ERRORS = [
  'ECS.AmazonECSException',
  'ECS.ServerException',
  'ECS.SdkClientException',
  'ECS.LimitExceededException',
  'AmazonECS.Unknown',
];

function lambdaServiceRetries(): AslRetrier[] {
  return [
    { ErrorEquals: TIMEOUT_ERRORS, MaxAttempts: 0 },
    { ErrorEquals: LAMBDA_SERVICE_ERRORS, IntervalSeconds: 1, BackoffRate: 2, MaxAttempts: 6, MaxDelaySeconds: 30, JitterStrategy: 'FULL' },
    // Throttling is expected when a stage fans out wide: wait longer, more often.
    { ErrorEquals: ['Lambda.TooManyRequestsException'], IntervalSeconds: 2, BackoffRate: 2, MaxAttempts: 10, MaxDelaySeconds: 60, JitterStrategy: 'FULL' },
  ];
}

function lambdaTask(functionArn: string, payload: JsonObject | string, timeoutSeconds: number, extra: Partial<AslState>): AslState {
  return {
    Type: 'Task',
    Resource: LAMBDA_INVOKE,
    Parameters: typeof payload === 'string' ? { FunctionName: functionArn, 'Payload.$': payload } : { FunctionName: functionArn, Payload: payload },
    TimeoutSeconds: timeoutSeconds + LAMBDA_STATE_TIMEOUT_GRACE_SECONDS,
    Retry: lambdaServiceRetries(),
    ...extra,
  };
}

/** `[0, step, 2·step, …]` below n, from a path to n, as one intrinsic (ASL has no arithmetic operators). */
function rangeOf(countPath: string, step: string | number = 1): string {
  return `States.ArrayRange(0, States.MathAdd(${countPath}, -1), ${step})`;
}

export function buildStateMachineDefinition(r: StateMachineResources): AslDefinition {
  const lambdaTimeout = r.lambdaTimeoutSeconds ?? DEFAULT_LAMBDA_TIMEOUT_SECONDS;
  const ecsTimeout = r.ecsTimeoutSeconds ?? DEFAULT_ECS_TIMEOUT_SECONDS;
  if (!(lambdaTimeout >= 1 && lambdaTimeout <= 900)) throw new Error(`lambdaTimeoutSeconds must be 1..900 (the Lambda limit), got ${lambdaTimeout}`);
  if (!(ecsTimeout >= 1)) throw new Error(`ecsTimeoutSeconds must be >= 1, got ${ecsTimeout}`);
  const distributed = r.distributed ?? false;

  // ---- one partition on Lambda ----
  const runPartition = lambdaTask(r.stageFunctionArn, '$', lambdaTimeout, {
    Retry: [
      ...lambdaServiceRetries(),
      // A UDF that threw is deterministic: the same rows fail the same way, so retrying only costs
      // (issue: 6 invocations for 4 partitions). Listed before the catch-all, which it overrides.
      { ErrorEquals: DETERMINISTIC_ERRORS, MaxAttempts: 0 },
      // A handler that crashes once (a cold-start hiccup, a flaky read) gets two more tries.
      { ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 1, BackoffRate: 2, MaxAttempts: 2, JitterStrategy: 'FULL' },
    ],
    // Each iteration returns {}: a Map's result array then stays ~3 bytes per partition.
    OutputPath: null,
    End: true,
  });

  const partitionItemSelector: JsonObject = {
    'runId.$': '$.runId',
    'workBucket.$': '$.workBucket',
    'stage.$': '$.stage.index',
    'partition.$': '$$.Map.Item.Value',
  };
  const lambdaRouting = stageFunctionRouting(r);
  if (lambdaRouting) {
    // The function of the stage's sizing class, chosen by SelectStageFunction, travels with each item.
    runPartition.Parameters = { 'FunctionName.$': '$.stageFunction', 'Payload.$': '$' };
    partitionItemSelector['stageFunction.$'] = '$.stageFunction';
  }
  // Many tiny partitions share an invocation (the plan's stage.partitionsPerInvocation): a
  // Distributed Map batches its items (the Stage handler gets { Items }); an inline Map steps its
  // index range by that many and each item says how many partitions it runs (count).
  const itemBatcher: JsonObject = { MaxItemsPerBatchPath: '$.stage.partitionsPerInvocation' };
  if (lambdaRouting && distributed) {
    // A batched child's input is { Items, BatchInput }: the class's function travels in BatchInput.
    itemBatcher['BatchInput'] = { 'stageFunction.$': '$.stageFunction' };
    runPartition.Parameters = { 'FunctionName.$': '$.BatchInput.stageFunction', 'Payload.$': '$' };
  }
  const inlineItemSelector: JsonObject = { ...partitionItemSelector, 'count.$': '$.stage.partitionsPerInvocation' };
  const partitionsMap: AslState = distributed
    ? {
        Type: 'Map',
        Comment: 'Distributed Map: one child workflow per partition; indices come from s3://workBucket/itemsKey.',
        ItemReader: {
          Resource: S3_GET_OBJECT,
          ReaderConfig: { InputType: 'JSON' },
          Parameters: { 'Bucket.$': '$.workBucket', 'Key.$': '$.stage.itemsKey' },
        },
        ItemSelector: partitionItemSelector,
        ItemBatcher: itemBatcher,
        ItemProcessor: {
          ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
          StartAt: 'RunPartition',
          States: { RunPartition: runPartition },
        },
        // Child results go to S3, not into the state: without it the result array is capped by
        // the 256 KiB payload limit (~85k partitions).
        ResultWriter: { Resource: S3_PUT_OBJECT, Parameters: { 'Bucket.$': '$.workBucket', Prefix: 'fanout-sfn-map-results' } },
        MaxConcurrencyPath: '$.stage.concurrency',
        // Tolerated failures (tolerance.ts): the Map Run fails only past these; Finalize then commits
        // what succeeded. From the plan, so one definition serves every run.
        ToleratedFailurePercentagePath: '$.stage.toleratedFailurePercentage',
        ToleratedFailureCountPath: '$.stage.toleratedFailureCount',
        Label: 'Partitions',
        ResultPath: null,
        End: true,
      }
    : {
        Type: 'Map',
        Comment: `Inline Map over States.ArrayRange indices (at most ${INLINE_MAX_PARTITIONS} partitions).`,
        ItemsPath: '$.range.indices',
        ItemSelector: inlineItemSelector,
        ItemProcessor: {
          ProcessorConfig: { Mode: 'INLINE' },
          StartAt: 'RunPartition',
          States: { RunPartition: runPartition },
        },
        MaxConcurrencyPath: '$.stage.concurrency',
        ResultPath: null,
        End: true,
      };
  // A deployment-wide cap wins over the plan's per-stage value.
  if (r.maxConcurrency !== undefined) {
    if (!(Number.isInteger(r.maxConcurrency) && r.maxConcurrency >= 1)) throw new Error(`maxConcurrency must be a positive integer, got ${r.maxConcurrency}`);
  }

  const stageStates: Record<string, AslState> = {};
  const lambdaEntry = distributed ? 'Partitions' : 'PartitionIndices';
  const gpuRouting = r.ecs ? gpuTaskRouting(r.ecs, 'SlotIndices') : null;
  const ecsEntry = r.ecs ? (gpuRouting ? 'SelectGpuTask' : 'SlotIndices') : 'NoGpuResources';
  const lambdaNext = r.maxConcurrency !== undefined ? 'CapConcurrency' : lambdaEntry;
  if (lambdaRouting) Object.assign(stageStates, lambdaRouting(lambdaNext));
  stageStates.RouteStage = {
    Type: 'Choice',
    Choices: [
      {
        Or: [
          { Variable: '$.stage.partitions', NumericLessThanEquals: 0 },
          // A resumed run: every partition of this stage already has its completion marker.
          {
            And: [
              { Variable: '$.stage.remaining', IsPresent: true },
              { Variable: '$.stage.remaining', NumericLessThanEquals: 0 },
            ],
          },
        ],
        Next: 'EmptyStage',
      },
      { Variable: '$.stage.executor', StringEquals: 'lambda', Next: lambdaRouting ? 'SelectStageFunction' : lambdaNext },
      { Variable: '$.stage.executor', StringEquals: 'ecs-gpu', Next: ecsEntry },
      ...(r.fargate ? [{ Variable: '$.stage.executor', StringEquals: 'fargate', Next: 'SelectFargateTask' }] : []),
    ],
    Default: 'UnknownExecutor',
  };
  if (r.fargate) Object.assign(stageStates, fargateStates(r.fargate));
  if (gpuRouting) Object.assign(stageStates, gpuRouting.states);
  stageStates.EmptyStage = { Type: 'Succeed', Comment: 'A stage without partitions has nothing to run.' };
  stageStates.UnknownExecutor = {
    Type: 'Fail',
    Error: 'fanout.UnknownExecutor',
    Cause: `the plan has a stage whose executor is not one of ${r.fargate ? "'lambda', 'fargate'" : "'lambda'"} and 'ecs-gpu'${r.fargate ? '' : " (a 'fargate' stage needs a deployment with Fargate resources)"}`,
  };
  if (r.maxConcurrency !== undefined) {
    // min(stage.concurrency, cap) without arithmetic: a Choice and a Pass that overwrites the value.
    stageStates.CapConcurrency = {
      Type: 'Choice',
      Choices: [{ Variable: '$.stage.concurrency', NumericGreaterThan: r.maxConcurrency, Next: 'ApplyConcurrencyCap' }],
      Default: lambdaEntry,
    };
    stageStates.ApplyConcurrencyCap = { Type: 'Pass', Result: r.maxConcurrency, ResultPath: '$.stage.concurrency', Next: lambdaEntry };
  }
  if (!distributed) {
    stageStates.PartitionIndices = {
      Type: 'Pass',
      Comment: `States.ArrayRange yields at most ${INLINE_MAX_PARTITIONS} items; larger stages need distributed: true.`,
      // Stepped by partitionsPerInvocation: the first partition of each invocation.
      Parameters: { 'indices.$': rangeOf('$.stage.partitions', '$.stage.partitionsPerInvocation') },
      ResultPath: '$.range',
      Next: 'Partitions',
    };
  }
  stageStates.Partitions = partitionsMap;

  if (r.ecs) {
    const e = r.ecs;
    const params: JsonObject = {
      Cluster: e.clusterArn,
      TaskDefinition: e.taskDefinitionArn,
      Overrides: {
        ContainerOverrides: [
          {
            Name: e.containerName,
            Environment: [
              { Name: 'FANOUT_RUN_ID', 'Value.$': '$.runId' },
              // ECS environment values must be strings.
              { Name: 'FANOUT_STAGE', 'Value.$': "States.Format('{}', $.stage)" },
              { Name: 'FANOUT_SLOT', 'Value.$': "States.Format('{}', $.slot)" },
              { Name: 'FANOUT_SLOTS', 'Value.$': "States.Format('{}', $.slots)" },
              { Name: 'FANOUT_WORK_BUCKET', 'Value.$': '$.workBucket' },
            ],
          },
        ],
      },
    };
    // GPUs need EC2 capacity; without a named provider the cluster's default strategy applies.
    if (e.capacityProvider) params.CapacityProviderStrategy = [{ CapacityProvider: e.capacityProvider, Weight: 1 }];
    if (gpuRouting) {
      // The task definition and capacity provider of the stage's GPU class (SelectGpuTask), carried by each slot.
      delete params.TaskDefinition;
      params['TaskDefinition.$'] = '$.gpuTask.taskDefinition';
      if (e.capacityProvider) params.CapacityProviderStrategy = [{ 'CapacityProvider.$': '$.gpuTask.capacityProvider', Weight: 1 }];
    }
    if (e.subnets.length > 0) {
      params.NetworkConfiguration = { AwsvpcConfiguration: { Subnets: e.subnets, SecurityGroups: e.securityGroups } };
    }
    stageStates.SlotIndices = {
      Type: 'Pass',
      Parameters: { 'indices.$': rangeOf('$.stage.slots') },
      ResultPath: '$.range',
      Next: 'GpuSlots',
    };
    stageStates.GpuSlots = {
      Type: 'Map',
      Comment: 'One ECS task per slot; slot s processes partitions i with i % slots == s, loading models once.',
      ItemsPath: '$.range.indices',
      ItemSelector: {
        'runId.$': '$.runId',
        'workBucket.$': '$.workBucket',
        'stage.$': '$.stage.index',
        'slots.$': '$.stage.slots',
        'slot.$': '$$.Map.Item.Value',
        ...(gpuRouting ? { 'gpuTask.$': '$.gpuTask' } : {}),
      },
      MaxConcurrencyPath: '$.stage.slots',
      ItemProcessor: {
        ProcessorConfig: { Mode: 'INLINE' },
        StartAt: 'RunGpuSlot',
        States: {
          RunGpuSlot: {
            Type: 'Task',
            Resource: ECS_RUN_TASK_SYNC,
            Parameters: params,
            // No HeartbeatSeconds: with .sync the container would have to call SendTaskHeartbeat
            // with the task token, which it is not given; TimeoutSeconds bounds the wait instead.
            TimeoutSeconds: ecsTimeout,
            Retry: [
              { ErrorEquals: ['States.Timeout'], MaxAttempts: 0 },
              { ErrorEquals: ECS_TRANSIENT_ERRORS, IntervalSeconds: 10, BackoffRate: 2, MaxAttempts: 6, MaxDelaySeconds: 300, JitterStrategy: 'FULL' },
              // A task that stopped badly (non-zero exit, instance reclaimed): one more go; a
              // slot's shards are deterministic, so a rerun overwrites rather than duplicates.
              { ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 30, BackoffRate: 2, MaxAttempts: 1, JitterStrategy: 'FULL' },
            ],
            OutputPath: null,
            End: true,
          },
        },
      },
      ResultPath: null,
      End: true,
    };
  } else {
    stageStates.NoGpuResources = {
      Type: 'Fail',
      Error: 'fanout.NoGpuResources',
      Cause: 'the plan has an ecs-gpu stage but the state machine was built without ECS resources',
    };
  }

  const catchAll = (next: string): AslCatcher[] => [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: next }];

  return {
    Comment: 'fanout serverless pipeline: Plan -> Stages (Lambda partitions / ECS GPU slots) -> Finalize',
    StartAt: 'Plan',
    States: {
      Plan: lambdaTask(r.planFunctionArn, '$', lambdaTimeout, {
        ResultSelector: { 'runId.$': '$.Payload.runId', 'workBucket.$': '$.Payload.workBucket', 'stages.$': '$.Payload.stages' },
        ResultPath: '$.plan',
        Catch: catchAll('PlanFailedRoute'),
        Next: 'Stages',
      }),
      // Without a plan the run id is the input's, if it named one (a bare $.runId on a missing field
      // would raise an uncatchable States.Runtime); the bucket comes from the handler's environment.
      PlanFailedRoute: {
        Type: 'Choice',
        Choices: [{ Variable: '$.runId', IsPresent: true, Next: 'PlanFailedWithRunId' }],
        Default: 'PlanFailed',
      },
      PlanFailedWithRunId: { Type: 'Pass', Parameters: { plan: { 'runId.$': '$.runId', workBucket: null }, 'error.$': '$.error' }, Next: 'RecordFailure' },
      PlanFailed: { Type: 'Pass', Parameters: { plan: { runId: null, workBucket: null }, 'error.$': '$.error' }, Next: 'RecordFailure' },
      Stages: {
        Type: 'Map',
        Comment: 'Stages run one after another: a stage reads the shards its predecessor wrote.',
        ItemsPath: '$.plan.stages',
        ItemSelector: { 'runId.$': '$.plan.runId', 'workBucket.$': '$.plan.workBucket', 'stage.$': '$$.Map.Item.Value' },
        MaxConcurrency: 1,
        ItemProcessor: { ProcessorConfig: { Mode: 'INLINE' }, StartAt: 'RouteStage', States: stageStates },
        ResultPath: null,
        // No Catch: a failing stage fails the execution *here*, so RedriveExecution re-enters this Map,
        // which redrives only the failed stage and, in it, only the failed partitions (a Catch ->
        // RecordFailure -> Fail path would make the Fail state the one a redrive re-enters, and
        // fail again). The failing partition records its own error (run.ts), the runner the rest.
        Next: 'Finalize',
      },
      Finalize: lambdaTask(
        r.finalizeFunctionArn,
        // No 'output' here: it is optional in the input (a missing path would fail the run uncatchably),
        // and Finalize takes the output from the plan.
        { 'runId.$': '$.plan.runId', 'workBucket.$': '$.plan.workBucket' },
        lambdaTimeout,
        { ResultSelector: { 'result.$': '$.Payload' }, ResultPath: '$.finalize', Catch: catchAll('RecordFailure'), Next: 'Summarize' },
      ),
      Summarize: {
        Type: 'Pass',
        Parameters: { 'runId.$': '$.plan.runId', 'workBucket.$': '$.plan.workBucket', 'result.$': '$.finalize.result' },
        Next: 'Succeeded',
      },
      Succeeded: { Type: 'Succeed' },
      RecordFailure: lambdaTask(r.failureFunctionArn, { 'runId.$': '$.plan.runId', 'workBucket.$': '$.plan.workBucket', 'error.$': '$.error' }, lambdaTimeout, {
        ResultPath: null,
        // Failing to record must not hide the original error: go on to Failed either way.
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.recordFailureError', Next: 'Failed' }],
        Next: 'Failed',
      }),
      Failed: { Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Per-stage resources: the routing of a stage's sizing class (placement.ts) to its Stage function,
// GPU task definition and capacity provider, or Fargate task definition.

/** ECS Fargate capacity for CPU stages beyond Lambda's limits: one task per partition. */
export interface FargateResources {
  clusterArn: string;
  containerName: string;
  subnets: string[];
  securityGroups: string[];
  /** Tasks in public subnets need a public IP to reach S3 and ECR (no NAT gateway). */
  assignPublicIp: boolean;
  /** Fargate sizing classes: key -> task definition ARN. */
  taskDefinitions: Record<string, string>;
  /** Runs stages whose class has no task definition (the local harness); unset: such a stage fails with fanout.NoFargateTaskDefinition. */
  fallbackTaskDefinitionArn?: string;
  /** The Fargate task state's timeout: the largest class's timeoutSeconds plus provisioning and image pull. */
  timeoutSeconds: number;
}

/** Present and equal: a Choice on a missing path would fail the execution (States.Runtime). */
function sizingIs(key: string): AslChoiceCondition {
  return {
    And: [
      { Variable: '$.stage.sizing', IsPresent: true },
      { Variable: '$.stage.sizing', StringEquals: key },
    ],
  };
}

/** SelectStageFunction and its Pass states, when some sizing class has a function other than the main one. */
function stageFunctionRouting(r: StateMachineResources): ((next: string) => Record<string, AslState>) | null {
  const classes = Object.entries(r.stageFunctions ?? {}).filter(([, arn]) => arn !== r.stageFunctionArn);
  if (classes.length === 0) return null;
  return (next) => {
    const states: Record<string, AslState> = {
      SelectStageFunction: {
        Type: 'Choice',
        Comment: "The Stage function of the stage's sizing class; the main one for a class without its own.",
        Choices: classes.map(([key], i) => ({ ...sizingIs(key), Next: `UseStageFunction${i + 1}` })),
        Default: 'UseMainStageFunction',
      },
      UseMainStageFunction: { Type: 'Pass', Result: r.stageFunctionArn, ResultPath: '$.stageFunction', Next: next },
    };
    classes.forEach(([key, arn], i) => {
      states[`UseStageFunction${i + 1}`] = { Type: 'Pass', Comment: `sizing class ${key}`, Result: arn, ResultPath: '$.stageFunction', Next: next };
    });
    return states;
  };
}

/** SelectGpuTask and its Pass states, when GPU classes have task definitions of their own. */
function gpuTaskRouting(e: NonNullable<StateMachineResources['ecs']>, next: string): { states: Record<string, AslState> } | null {
  const classes = Object.entries(e.taskDefinitions ?? {});
  if (classes.length === 0) return null;
  const task = (t: { taskDefinitionArn: string; capacityProvider?: string }): JsonObject => ({
    taskDefinition: t.taskDefinitionArn,
    capacityProvider: t.capacityProvider ?? e.capacityProvider ?? null,
  });
  const states: Record<string, AslState> = {
    SelectGpuTask: {
      Type: 'Choice',
      Comment: "The task definition and capacity provider (instance type) of the stage's GPU class.",
      Choices: classes.map(([key], i) => ({ ...sizingIs(key), Next: `UseGpuTask${i + 1}` })),
      Default: 'UseDefaultGpuTask',
    },
    UseDefaultGpuTask: { Type: 'Pass', Result: task(e), ResultPath: '$.gpuTask', Next: next },
  };
  classes.forEach(([key, t], i) => {
    states[`UseGpuTask${i + 1}`] = { Type: 'Pass', Comment: `GPU class ${key}`, Result: task(t), ResultPath: '$.gpuTask', Next: next };
  });
  return { states };
}

/** The Fargate path of a stage: its class's task definition, then one ECS task per partition. */
function fargateStates(f: FargateResources): Record<string, AslState> {
  if (!(Number.isInteger(f.timeoutSeconds) && f.timeoutSeconds >= 1))
    throw new Error(`fargate.timeoutSeconds must be a positive integer, got ${f.timeoutSeconds}`);
  const classes = Object.entries(f.taskDefinitions);
  const states: Record<string, AslState> = {};
  const use = (name: string, arn: string, comment: string): void => {
    states[name] = { Type: 'Pass', Comment: comment, Result: arn, ResultPath: '$.fargateTask', Next: 'FargateIndices' };
  };
  const fallback = f.fallbackTaskDefinitionArn !== undefined ? 'UseFallbackFargateTask' : 'NoFargateTaskDefinition';
  if (classes.length === 0 && f.fallbackTaskDefinitionArn !== undefined) {
    use('SelectFargateTask', f.fallbackTaskDefinitionArn, 'Every Fargate stage runs on the one task definition.');
  } else {
    states.SelectFargateTask = {
      Type: 'Choice',
      Comment: "The task definition of the stage's Fargate sizing class.",
      Choices: classes.length ? classes.map(([key], i) => ({ ...sizingIs(key), Next: `UseFargateTask${i + 1}` })) : [{ ...sizingIs(''), Next: fallback }],
      Default: fallback,
    };
    for (const [i, [key, arn]] of classes.entries()) use(`UseFargateTask${i + 1}`, arn, `Fargate class ${key}`);
    if (f.fallbackTaskDefinitionArn !== undefined) use('UseFallbackFargateTask', f.fallbackTaskDefinitionArn, 'A class without a task definition of its own.');
    else
      states.NoFargateTaskDefinition = {
        Type: 'Fail',
        Error: 'fanout.NoFargateTaskDefinition',
        Cause:
          "the plan has a Fargate stage whose sizing class has no task definition in this deployment: redeploy with the pipeline's UDFs (FanoutPipeline udfs)",
      };
  }
  states.FargateIndices = {
    Type: 'Pass',
    Comment: `States.ArrayRange yields at most ${INLINE_MAX_PARTITIONS} items: a Fargate stage has at most that many partitions.`,
    Parameters: { 'indices.$': rangeOf('$.stage.partitions') },
    ResultPath: '$.range',
    Next: 'FargatePartitions',
  };
  states.FargatePartitions = {
    Type: 'Map',
    Comment: 'One Fargate task per partition (slot p of `partitions` slots), through the ECS entrypoint GPU stages use.',
    ItemsPath: '$.range.indices',
    ItemSelector: {
      'runId.$': '$.runId',
      'workBucket.$': '$.workBucket',
      'stage.$': '$.stage.index',
      'slots.$': '$.stage.partitions',
      'slot.$': '$$.Map.Item.Value',
      'taskDefinition.$': '$.fargateTask',
    },
    MaxConcurrencyPath: '$.stage.concurrency',
    ItemProcessor: {
      ProcessorConfig: { Mode: 'INLINE' },
      StartAt: 'RunFargateTask',
      States: {
        RunFargateTask: {
          Type: 'Task',
          Resource: ECS_RUN_TASK_SYNC,
          Parameters: {
            Cluster: f.clusterArn,
            'TaskDefinition.$': '$.taskDefinition',
            LaunchType: 'FARGATE',
            NetworkConfiguration: {
              AwsvpcConfiguration: { Subnets: f.subnets, SecurityGroups: f.securityGroups, AssignPublicIp: f.assignPublicIp ? 'ENABLED' : 'DISABLED' },
            },
            Overrides: { ContainerOverrides: [{ Name: f.containerName, Environment: ecsTaskEnvironment() }] },
          },
          TimeoutSeconds: f.timeoutSeconds,
          Retry: [
            { ErrorEquals: ['States.Timeout'], MaxAttempts: 0 },
            { ErrorEquals: ECS_TRANSIENT_ERRORS, IntervalSeconds: 10, BackoffRate: 2, MaxAttempts: 6, MaxDelaySeconds: 300, JitterStrategy: 'FULL' },
            { ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 30, BackoffRate: 2, MaxAttempts: 1, JitterStrategy: 'FULL' },
          ],
          OutputPath: null,
          End: true,
        },
      },
    },
    ResultPath: null,
    End: true,
  };
  return states;
}

/** The run, stage and slot an ECS task (GPU or Fargate) works on, as container environment overrides. */
function ecsTaskEnvironment(): JsonValue[] {
  return [
    { Name: 'FANOUT_RUN_ID', 'Value.$': '$.runId' },
    // ECS environment values must be strings.
    { Name: 'FANOUT_STAGE', 'Value.$': "States.Format('{}', $.stage)" },
    { Name: 'FANOUT_SLOT', 'Value.$': "States.Format('{}', $.slot)" },
    { Name: 'FANOUT_SLOTS', 'Value.$': "States.Format('{}', $.slots)" },
    { Name: 'FANOUT_WORK_BUCKET', 'Value.$': '$.workBucket' },
  ];
}

// ---------------------------------------------------------------------------------------------
// Validation of basic ASL rules (a cheap local check; AWS validates more on CreateStateMachine).

const TERMINAL_TYPES = new Set<AslStateType>(['Succeed', 'Fail']);
const KNOWN_TYPES = new Set<AslStateType>(['Task', 'Pass', 'Map', 'Parallel', 'Choice', 'Wait', 'Succeed', 'Fail']);
/** AWS limit on state names. */
const MAX_STATE_NAME = 80;

/** Every problem found, as `path: message` lines; empty when the definition passes. */
export function validateStateMachineDefinition(def: AslStateMachine): string[] {
  const errors: string[] = [];
  const seenNames = new Map<string, string>();
  validateScope(def, '', errors, seenNames);
  return errors;
}

function validateScope(sm: AslStateMachine, where: string, errors: string[], seenNames: Map<string, string>): void {
  const at = (name: string) => `${where}${name}`;
  const states = sm.States ?? {};
  const names = Object.keys(states);
  if (names.length === 0) errors.push(`${where || '/'}: States is empty`);
  if (!(sm.StartAt in states)) errors.push(`${where || '/'}: StartAt '${sm.StartAt}' is not a state`);
  const target = (from: string, field: string, next: string | undefined) => {
    if (next === undefined) return;
    if (!(next in states)) errors.push(`${at(from)}: ${field} '${next}' is not a state in this scope`);
  };
  for (const [name, s] of Object.entries(states)) {
    // State names are unique across the whole machine, nested scopes included.
    const prev = seenNames.get(name);
    if (prev !== undefined) errors.push(`${at(name)}: state name also used at ${prev}`);
    else seenNames.set(name, at(name));
    if (name.length > MAX_STATE_NAME) errors.push(`${at(name)}: name longer than ${MAX_STATE_NAME} characters`);
    if (!KNOWN_TYPES.has(s.Type)) {
      errors.push(`${at(name)}: unknown Type '${String(s.Type)}'`);
      continue;
    }
    if (s.Type === 'Choice') {
      if (s.Next !== undefined || s.End !== undefined) errors.push(`${at(name)}: a Choice state has neither Next nor End`);
      if (!s.Choices || s.Choices.length === 0) errors.push(`${at(name)}: Choice without Choices`);
      for (const [i, c] of (s.Choices ?? []).entries()) {
        if (typeof c.Next !== 'string') errors.push(`${at(name)}: Choices[${i}] has no Next`);
        else target(name, `Choices[${i}].Next`, c.Next);
      }
      target(name, 'Default', s.Default);
    } else if (TERMINAL_TYPES.has(s.Type)) {
      if (s.Next !== undefined || s.End !== undefined) errors.push(`${at(name)}: a ${s.Type} state is terminal: no Next or End`);
      if (s.Type === 'Fail') {
        if (s.Error !== undefined && s.ErrorPath !== undefined) errors.push(`${at(name)}: both Error and ErrorPath`);
        if (s.Cause !== undefined && s.CausePath !== undefined) errors.push(`${at(name)}: both Cause and CausePath`);
      }
    } else {
      const hasNext = typeof s.Next === 'string';
      const hasEnd = s.End === true;
      if (hasNext === hasEnd) errors.push(`${at(name)}: needs exactly one of Next or End: true`);
      target(name, 'Next', s.Next);
    }
    if (s.Type === 'Task') {
      if (typeof s.Resource !== 'string' || s.Resource.length === 0) errors.push(`${at(name)}: Task without Resource`);
      if (s.TimeoutSeconds === undefined && s.TimeoutSecondsPath === undefined) errors.push(`${at(name)}: Task without TimeoutSeconds (it could wait forever)`);
      if (s.TimeoutSeconds !== undefined && !(Number.isInteger(s.TimeoutSeconds) && s.TimeoutSeconds >= 1))
        errors.push(`${at(name)}: TimeoutSeconds must be a positive integer`);
      if (s.HeartbeatSeconds !== undefined && s.TimeoutSeconds !== undefined && s.HeartbeatSeconds >= s.TimeoutSeconds)
        errors.push(`${at(name)}: HeartbeatSeconds must be below TimeoutSeconds`);
    }
    if (s.Retry) validateErrorMatchers(s.Retry, `${at(name)}: Retry`, errors);
    if (s.Catch) {
      validateErrorMatchers(s.Catch, `${at(name)}: Catch`, errors);
      for (const [i, c] of s.Catch.entries()) target(name, `Catch[${i}].Next`, c.Next);
    }
    if ((s.Retry || s.Catch) && !['Task', 'Map', 'Parallel'].includes(s.Type)) errors.push(`${at(name)}: Retry/Catch only on Task, Map and Parallel`);
    if (s.Type === 'Map') {
      const proc = s.ItemProcessor ?? s.Iterator;
      if (!proc) errors.push(`${at(name)}: Map without ItemProcessor`);
      else validateScope(proc, `${at(name)}/`, errors, seenNames);
      const mode = s.ItemProcessor?.ProcessorConfig?.Mode ?? 'INLINE';
      if (s.ItemReader && mode !== 'DISTRIBUTED') errors.push(`${at(name)}: ItemReader needs ProcessorConfig.Mode DISTRIBUTED`);
      if (s.ResultWriter && mode !== 'DISTRIBUTED') errors.push(`${at(name)}: ResultWriter needs ProcessorConfig.Mode DISTRIBUTED`);
      if (s.ItemBatcher && mode !== 'DISTRIBUTED') errors.push(`${at(name)}: ItemBatcher needs ProcessorConfig.Mode DISTRIBUTED`);
      if (s.MaxConcurrency !== undefined && s.MaxConcurrencyPath !== undefined) errors.push(`${at(name)}: both MaxConcurrency and MaxConcurrencyPath`);
    }
    if (s.Type === 'Parallel') {
      if (!s.Branches || s.Branches.length === 0) errors.push(`${at(name)}: Parallel without Branches`);
      for (const [i, b] of (s.Branches ?? []).entries()) validateScope(b, `${at(name)}/Branches[${i}]/`, errors, seenNames);
    }
  }
  // Every state must be reachable from StartAt (AWS rejects unreachable states).
  const reachable = new Set<string>();
  const stack = sm.StartAt in states ? [sm.StartAt] : [];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (reachable.has(n)) continue;
    reachable.add(n);
    const s = states[n]!;
    for (const t of [s.Next, s.Default, ...(s.Choices ?? []).map((c) => c.Next), ...(s.Catch ?? []).map((c) => c.Next)]) {
      if (typeof t === 'string' && t in states && !reachable.has(t)) stack.push(t);
    }
  }
  for (const n of names) if (!reachable.has(n)) errors.push(`${at(n)}: not reachable from StartAt`);
}

function validateErrorMatchers(list: { ErrorEquals: string[] }[], where: string, errors: string[]): void {
  for (const [i, m] of list.entries()) {
    if (!Array.isArray(m.ErrorEquals) || m.ErrorEquals.length === 0) errors.push(`${where}[${i}]: empty ErrorEquals`);
    else if (m.ErrorEquals.includes('States.ALL') && (m.ErrorEquals.length > 1 || i !== list.length - 1)) {
      errors.push(`${where}[${i}]: States.ALL must appear alone and in the last entry`);
    }
  }
}

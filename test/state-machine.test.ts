// The generated state machine, run end to end on the local Step Functions endpoint through
// @aws-sdk/client-sfn, with small fake handlers standing in for the Plan/Stage/Finalize/Failure
// Lambdas and the ECS GPU tasks (no engine here: the lifecycle functions have their own tests).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import {
  DescribeExecutionCommand,
  DescribeStateMachineCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  type DescribeExecutionCommandOutput,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import {
  normalizeDefinitionForLocal,
  startLocalStepFunctions,
  type EcsTaskParams,
  type LambdaContextLike,
  type LocalStepFunctions,
} from '../localstack/stepfunctions/index.ts';
import { LIB_VERSION, installHooks, type LibModule } from '../localstack/stepfunctions/hooks.ts';
import {
  LAMBDA_SERVICE_ERRORS,
  buildStateMachineDefinition,
  validateStateMachineDefinition,
  type AslDefinition,
  type AslState,
  type AslStateMachine,
  type StateMachineResources,
} from '../src/aws/state-machine.ts';

const fnArn = (n: string) => `arn:aws:lambda:us-east-1:123456789012:function:fanout-${n}`;
const ARN = { plan: fnArn('plan'), stage: fnArn('stage'), finalize: fnArn('finalize'), failure: fnArn('failure') };

function resources(distributed: boolean, extra: Partial<StateMachineResources> = {}): StateMachineResources {
  return {
    planFunctionArn: ARN.plan,
    stageFunctionArn: ARN.stage,
    finalizeFunctionArn: ARN.finalize,
    failureFunctionArn: ARN.failure,
    ecs: {
      clusterArn: 'arn:aws:ecs:us-east-1:123456789012:cluster/fanout',
      taskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/fanout-gpu:3',
      containerName: 'worker',
      subnets: ['subnet-1'],
      securityGroups: ['sg-1'],
      capacityProvider: 'gpu-asg',
    },
    distributed,
    lambdaTimeoutSeconds: 60,
    ...extra,
  };
}

const EXECUTION_INPUT = { pipeline: 'file:///pipelines/p.ts', input: { uri: 's3://in/data/' }, output: 's3://out/result/' };

interface StageSpec {
  executor: 'lambda' | 'ecs-gpu';
  partitions: number;
  concurrency: number;
  slots: number;
}

interface PartitionEvent {
  runId: string;
  stage: number;
  partition: number;
}

interface Call {
  stage: number;
  partition: number;
  start: number;
  end: number;
}

function isBatch(event: unknown): event is { Items: PartitionEvent[] } {
  return typeof event === 'object' && event !== null && Array.isArray((event as { Items?: unknown }).Items);
}

/** Fake Lambdas and ECS runner that record what they were given. */
function fakes(
  stages: StageSpec[],
  behave: {
    stage?: (e: PartitionEvent, attempt: number, ctx: LambdaContextLike) => Promise<unknown>;
    stageTimeoutSeconds?: number;
    plan?: () => Promise<void>;
    ecs?: (p: EcsTaskParams) => Promise<void>;
  } = {},
) {
  const s3 = new Map<string, string>();
  const log = {
    plan: [] as unknown[],
    partitions: [] as Call[],
    attempts: new Map<string, number>(),
    ecs: [] as Record<string, string>[],
    finalize: [] as unknown[],
    failure: [] as unknown[],
    eventBytes: [] as number[],
  };
  const seen = (event: unknown) => log.eventBytes.push(Buffer.byteLength(JSON.stringify(event)));
  const runId = 'run-0001';
  const workBucket = 'work';
  const lambdas = {
    [ARN.plan]: {
      timeoutSeconds: 10,
      handler: async (event: unknown) => {
        seen(event);
        log.plan.push(event);
        await behave.plan?.();
        const out = stages.map((s, index) => {
          const itemsKey = `runs/${runId}/stage-${index}/items.json`;
          s3.set(`${workBucket}/${itemsKey}`, JSON.stringify(Array.from({ length: s.partitions }, (_, i) => i)));
          // As the Plan step returns it: the Distributed Map's tolerated-failure thresholds too (0: none).
          return { index, ...s, itemsKey, toleratedFailurePercentage: 0, toleratedFailureCount: 0, partitionsPerInvocation: 1 };
        });
        return { runId, workBucket, stages: out };
      },
    },
    [ARN.stage]: {
      timeoutSeconds: behave.stageTimeoutSeconds ?? 10,
      handler: async (event: unknown, ctx: LambdaContextLike) => {
        seen(event);
        // A Distributed Map batches its items ({ Items }, one per batch here: partitionsPerInvocation 1).
        const e = (isBatch(event) ? event.Items[0] : event) as PartitionEvent;
        const k = `${e.stage}/${e.partition}`;
        const attempt = (log.attempts.get(k) ?? 0) + 1;
        log.attempts.set(k, attempt);
        const start = performance.now();
        const result = behave.stage ? await behave.stage(e, attempt, ctx) : { rows: 1 };
        log.partitions.push({ stage: e.stage, partition: e.partition, start, end: performance.now() });
        return result;
      },
    },
    [ARN.finalize]: {
      timeoutSeconds: 10,
      handler: async (event: unknown) => {
        seen(event);
        log.finalize.push(event);
        return { rows: log.partitions.length, committed: true };
      },
    },
    [ARN.failure]: {
      timeoutSeconds: 10,
      handler: async (event: unknown) => {
        seen(event);
        log.failure.push(event);
        return { recorded: true };
      },
    },
  };
  const runEcsTask = async (p: EcsTaskParams) => {
    seen(p.environment);
    log.ecs.push(p.environment);
    if (behave.ecs) return behave.ecs(p);
    // A GPU slot processes partitions i with i % SLOTS == SLOT, like the real worker.
    const stage = Number(p.environment.FANOUT_STAGE);
    const slot = Number(p.environment.FANOUT_SLOT);
    const slots = Number(p.environment.FANOUT_SLOTS);
    for (let i = slot; i < stages[stage]!.partitions; i += slots) {
      const start = performance.now();
      await new Promise((r) => setTimeout(r, 2));
      log.partitions.push({ stage, partition: i, start, end: performance.now() });
    }
  };
  const getObject = async (bucket: string, key: string) => {
    const v = s3.get(`${bucket}/${key}`);
    if (v === undefined) throw new Error(`NoSuchKey: ${key}`);
    return v;
  };
  return { log, handlers: { lambdas, runEcsTask, getObject }, runId, workBucket };
}

const servers: LocalStepFunctions[] = [];
const clients: SFNClient[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(servers.map((s) => s.stop()));
});

async function harness(def: AslDefinition, handlers: Parameters<typeof startLocalStepFunctions>[0]['handlers']) {
  const server = await startLocalStepFunctions({ definition: def, handlers });
  servers.push(server);
  const sfn = new SFNClient({ endpoint: server.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  clients.push(sfn);
  return { server, sfn };
}

async function waitDone(sfn: SFNClient, executionArn: string, timeoutMs = 20_000): Promise<DescribeExecutionCommandOutput> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (d.status !== 'RUNNING') return d;
    if (Date.now() > deadline) throw new Error(`execution still RUNNING after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

async function execute(sfn: SFNClient, stateMachineArn: string, input: object = EXECUTION_INPUT) {
  const start = performance.now();
  const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify(input) }));
  assert.ok(executionArn);
  const d = await waitDone(sfn, executionArn);
  return { executionArn, d, ms: performance.now() - start };
}

async function history(sfn: SFNClient, executionArn: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 500, nextToken }));
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}

function eachState(sm: AslStateMachine, fn: (name: string, s: AslState) => void): void {
  for (const [name, s] of Object.entries(sm.States)) {
    fn(name, s);
    const sub = s.ItemProcessor ?? s.Iterator;
    if (sub) eachState(sub, fn);
    for (const b of s.Branches ?? []) eachState(b, fn);
  }
}

const THREE_STAGES: StageSpec[] = [
  { executor: 'lambda', partitions: 5, concurrency: 3, slots: 0 },
  { executor: 'lambda', partitions: 4, concurrency: 2, slots: 0 },
  { executor: 'ecs-gpu', partitions: 6, concurrency: 1, slots: 2 },
];

function assertSmallEvents(bytes: number[]): void {
  assert.ok(bytes.length > 0);
  const max = Math.max(...bytes);
  assert.ok(max < 4096, `a handler event has ${max} bytes`);
}

describe('state machine definition', () => {
  for (const distributed of [false, true]) {
    it(`is valid ASL (distributed: ${distributed})`, async () => {
      const def = buildStateMachineDefinition(resources(distributed));
      assert.deepEqual(validateStateMachineDefinition(def), []);
      assert.deepEqual(JSON.parse(JSON.stringify(def)), def, 'JSON-serializable');
      // The interpreter's own validator (asl-validator, schema incl. Distributed Map fields) agrees.
      const { StateMachine } = await import('aws-local-stepfunctions');
      assert.doesNotThrow(() => new StateMachine(def as never));

      let tasks = 0;
      eachState(def, (name, s) => {
        if (s.Type !== 'Task') return;
        tasks++;
        assert.ok(s.TimeoutSeconds && s.TimeoutSeconds > 0, `${name} has TimeoutSeconds`);
        if (s.Resource === 'arn:aws:states:::lambda:invoke') {
          const errors = (s.Retry ?? []).flatMap((r) => r.ErrorEquals);
          for (const e of [...LAMBDA_SERVICE_ERRORS, 'Lambda.TooManyRequestsException']) assert.ok(errors.includes(e), `${name} retries ${e}`);
          for (const r of s.Retry ?? []) if (r.MaxAttempts !== 0) assert.equal(r.JitterStrategy, 'FULL', `${name}: jittered backoff`);
        }
      });
      assert.equal(tasks, 5, 'Plan, RunPartition, RunGpuSlot, Finalize, RecordFailure');

      const stages = def.States.Stages!;
      assert.equal(stages.MaxConcurrency, 1, 'stages run in order');
      const inner = stages.ItemProcessor!.States;
      const partitions = inner.Partitions!;
      const run = partitions.ItemProcessor!.States.RunPartition!;
      assert.deepEqual(run.Retry!.find((r) => r.ErrorEquals.includes('States.TaskFailed'))?.MaxAttempts, 2);
      // Issue 11: a UDF's error is deterministic: its retrier (MaxAttempts 0) comes before the catch-all one.
      const udfRetrier = run.Retry!.findIndex((r) => r.ErrorEquals.includes('UdfError'));
      assert.ok(udfRetrier >= 0 && run.Retry![udfRetrier]!.MaxAttempts === 0, 'UdfError is not retried');
      assert.ok(udfRetrier < run.Retry!.findIndex((r) => r.ErrorEquals.includes('States.TaskFailed')));
      assert.equal(def.States.Stages!.Catch, undefined, 'a failing stage fails the execution in Stages (redrivable)');
      if (distributed) {
        assert.equal(partitions.ToleratedFailurePercentagePath, '$.stage.toleratedFailurePercentage');
        assert.equal(partitions.ToleratedFailureCountPath, '$.stage.toleratedFailureCount');
      }
      assert.equal(partitions.MaxConcurrencyPath, '$.stage.concurrency');
      if (distributed) {
        assert.deepEqual(partitions.ItemProcessor!.ProcessorConfig, { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
        assert.equal(partitions.ItemReader!.Resource, 'arn:aws:states:::s3:getObject');
        assert.deepEqual(partitions.ItemReader!.ReaderConfig, { InputType: 'JSON' });
        assert.equal(inner.PartitionIndices, undefined);
      } else {
        assert.match(
          String(inner.PartitionIndices!.Parameters!['indices.$']),
          /^States\.ArrayRange\(0, States\.MathAdd\(\$\.stage\.partitions, -1\), \$\.stage\.partitionsPerInvocation\)$/,
        );
        assert.equal(partitions.ItemReader, undefined);
      }
      const env = (
        inner.GpuSlots!.ItemProcessor!.States.RunGpuSlot!.Parameters as { Overrides: { ContainerOverrides: { Environment: { Name: string }[] }[] } }
      ).Overrides.ContainerOverrides[0]!.Environment.map((e) => e.Name);
      assert.deepEqual(env, ['FANOUT_RUN_ID', 'FANOUT_STAGE', 'FANOUT_SLOT', 'FANOUT_SLOTS', 'FANOUT_WORK_BUCKET']);
      assert.ok(JSON.stringify(def).length < 16_384);
    });
  }

  it('validator reports broken definitions', () => {
    const def = buildStateMachineDefinition(resources(false));
    const broken = JSON.parse(JSON.stringify(def)) as AslDefinition;
    broken.States.Stages!.Next = 'Nowhere';
    delete broken.States.Stages!.ItemProcessor!.States.Partitions!.ItemProcessor!.States.RunPartition!.TimeoutSeconds;
    delete broken.States.Summarize!.Next;
    broken.States.Orphan = { Type: 'Succeed' };
    const errors = validateStateMachineDefinition(broken).join('\n');
    assert.match(errors, /Stages: Next 'Nowhere' is not a state/);
    assert.match(errors, /RunPartition: Task without TimeoutSeconds/);
    assert.match(errors, /Summarize: needs exactly one of Next or End/);
    assert.match(errors, /Orphan: not reachable/);
    const dup = JSON.parse(JSON.stringify(def)) as AslDefinition;
    dup.States.Stages!.ItemProcessor!.States.Plan = { Type: 'Succeed' };
    dup.States.Stages!.ItemProcessor!.States.RouteStage!.Default = 'Plan';
    assert.match(validateStateMachineDefinition(dup).join('\n'), /Plan: state name also used/);
  });

  it('without ECS resources a GPU stage fails cleanly, and maxConcurrency caps the CPU Map', () => {
    const def = buildStateMachineDefinition({ ...resources(false), ecs: undefined, maxConcurrency: 100 });
    assert.deepEqual(validateStateMachineDefinition(def), []);
    const inner = def.States.Stages!.ItemProcessor!.States;
    assert.equal(inner.NoGpuResources!.Type, 'Fail');
    assert.equal(inner.GpuSlots, undefined);
    assert.equal(inner.ApplyConcurrencyCap!.Result, 100);
  });

  it('is normalized for the local interpreter only where it must be', () => {
    const def = buildStateMachineDefinition(resources(true));
    const { definition, notes } = normalizeDefinitionForLocal(def);
    // Distributed -> inline, ItemReader -> a reader task, ItemBatcher -> harness tasks, and the tolerated-failure thresholds -> harness tasks.
    assert.equal(notes.length, 4, notes.join('; '));
    assert.match(notes[3]!, /Partitions: tolerated failures counted by Partitions\.IterationFailed and Partitions\.ToleratedFailures/);
    const inner = definition.States.Stages!.ItemProcessor!.States;
    assert.deepEqual(inner.Partitions!.ItemProcessor!.ProcessorConfig, { Mode: 'INLINE' });
    assert.equal(inner.Partitions!.ItemReader, undefined);
    assert.equal(inner.Partitions!.ResultWriter, undefined);
    assert.equal(inner.Partitions!.ItemBatcher, undefined);
    assert.equal(inner['Partitions.ItemReader']!.Next, 'Partitions.ItemBatcher');
    assert.equal(inner['Partitions.ItemBatcher']!.Next, 'Partitions');
    // Each iteration runs in the tolerance wrapper (a Parallel with a Catch); inside it, the batch
    // fetch starts the child, as the child of a batched Distributed Map starts with its batch.
    assert.equal(inner.Partitions!.ItemProcessor!.StartAt, 'Partitions.Iteration');
    const iteration = inner.Partitions!.ItemProcessor!.States['Partitions.Iteration']!;
    assert.equal(iteration.Type, 'Parallel');
    const branch = (iteration as { Branches: { StartAt: string; States: Record<string, { Next?: string }> }[] }).Branches[0]!;
    assert.equal(branch.StartAt, 'Partitions.Batch');
    assert.equal(branch.States['Partitions.Batch']!.Next, 'RunPartition');
    assert.equal(inner.RouteStage!.Choices![1]!.Next, 'Partitions.ItemReader');
    assert.deepEqual(validateStateMachineDefinition(definition), []);
    // Everything else is untouched.
    const strip = (d: AslDefinition) => JSON.stringify({ ...d, States: { ...d.States, Stages: undefined } });
    assert.equal(strip(definition), strip(def));
  });

  it('the harness hooks are pinned to the aws-local-stepfunctions version they patch, and say so when its internals are missing', async () => {
    // The hooks rely on StateMachine.prototype.run/execute internals: the installed version, the
    // package.json pin and the version the hooks name must be the same exact version.
    const installed = JSON.parse(await readFile(new URL('../node_modules/aws-local-stepfunctions/package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { devDependencies: Record<string, string> };
    assert.equal(installed.version, LIB_VERSION);
    assert.equal(pkg.devDependencies['aws-local-stepfunctions'], LIB_VERSION, 'pinned exactly, without a range');
    class WithoutInternals {}
    assert.throws(
      () => installHooks(WithoutInternals as unknown as LibModule['StateMachine']),
      (e: Error) => e.message.includes(`aws-local-stepfunctions ${LIB_VERSION}`) && e.message.includes('run/execute not found'),
    );
  });
});

describe('local Step Functions harness', () => {
  for (const distributed of [false, true]) {
    it(`runs plan → lambda stages → GPU stage → finalize (distributed: ${distributed})`, async () => {
      const f = fakes(THREE_STAGES);
      const { server, sfn } = await harness(buildStateMachineDefinition(resources(distributed)), f.handlers);
      const { executionArn, d } = await execute(sfn, server.stateMachineArn);
      assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);

      assert.deepEqual(f.log.plan, [EXECUTION_INPUT], 'Plan gets the execution input');
      // Every (stage, partition) exactly once.
      const seen = f.log.partitions.map((c) => `${c.stage}/${c.partition}`).sort();
      const expected = THREE_STAGES.flatMap((s, i) => Array.from({ length: s.partitions }, (_, p) => `${i}/${p}`)).sort();
      assert.deepEqual(seen, expected);
      // Stages in order: a stage starts after every partition of the one before has finished.
      for (let s = 1; s < THREE_STAGES.length; s++) {
        const prevEnd = Math.max(...f.log.partitions.filter((c) => c.stage === s - 1).map((c) => c.end));
        const nextStart = Math.min(...f.log.partitions.filter((c) => c.stage === s).map((c) => c.start));
        assert.ok(prevEnd <= nextStart, `stage ${s} started before stage ${s - 1} finished`);
      }
      // GPU slots: one ECS task per slot, with the right environment.
      const envs = [...f.log.ecs].sort((a, b) => Number(a.FANOUT_SLOT) - Number(b.FANOUT_SLOT));
      assert.deepEqual(
        envs,
        [0, 1].map((slot) => ({ FANOUT_RUN_ID: f.runId, FANOUT_STAGE: '2', FANOUT_SLOT: String(slot), FANOUT_SLOTS: '2', FANOUT_WORK_BUCKET: f.workBucket })),
      );
      // Finalize takes the output from the plan; the input's optional `output` is not read by path.
      assert.deepEqual(f.log.finalize, [{ runId: f.runId, workBucket: f.workBucket }]);
      assert.deepEqual(f.log.failure, []);
      assert.deepEqual(JSON.parse(d.output!), { runId: f.runId, workBucket: f.workBucket, result: { rows: 15, committed: true } });
      assert.ok(d.startDate instanceof Date && d.stopDate instanceof Date && d.stopDate >= d.startDate);
      assertSmallEvents(f.log.eventBytes);

      const events = await history(sfn, executionArn);
      const types = events.map((e) => e.type);
      assert.equal(types[0], 'ExecutionStarted');
      assert.equal(types.at(-1), 'ExecutionSucceeded');
      for (const t of [
        'TaskStateEntered',
        'TaskScheduled',
        'TaskSucceeded',
        'MapStateEntered',
        'MapIterationStarted',
        'MapIterationSucceeded',
        'ChoiceStateEntered',
      ])
        assert.ok(types.includes(t as never), t);
      const ran = events.filter((e) => e.type === 'TaskStateEntered' && e.stateEnteredEventDetails?.name === 'RunPartition').length;
      assert.equal(ran, 9);
      assert.deepEqual(
        events.map((e) => e.id),
        events.map((_, i) => i + 1),
      );

      const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: server.stateMachineArn }));
      assert.equal(listed.executions?.[0]?.executionArn, executionArn);
      assert.equal(listed.executions?.[0]?.status, 'SUCCEEDED');
      const sm = await sfn.send(new DescribeStateMachineCommand({ stateMachineArn: server.stateMachineArn }));
      assert.equal(sm.status, 'ACTIVE');
      assert.equal(
        JSON.parse(sm.definition!).States.Stages.ItemProcessor.States.Partitions.ItemProcessor.ProcessorConfig.Mode,
        distributed ? 'DISTRIBUTED' : 'INLINE',
        'the definition as given',
      );
    });
  }

  it('retries a partition whose handler throws once', async () => {
    const f = fakes(THREE_STAGES.slice(0, 1), {
      stage: async (e, attempt) => {
        if (e.partition === 1 && attempt === 1) throw new Error('flaky read');
        return { rows: 1 };
      },
    });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { executionArn, d } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);
    assert.equal(f.log.attempts.get('0/1'), 2);
    for (const p of [0, 2, 3, 4]) assert.equal(f.log.attempts.get(`0/${p}`), 1);
    const failed = (await history(sfn, executionArn)).filter((e) => e.type === 'TaskFailed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.taskFailedEventDetails?.error, 'Error');
    assert.equal(JSON.parse(failed[0]!.taskFailedEventDetails!.cause!).errorMessage, 'flaky read');
  });

  // Issue 11: the stage fails the execution in the Stages Map itself (no Catch -> RecordFailure -> Fail,
  // whose Fail state is what a redrive would re-enter); the failing partition and the runner record it.
  it('a partition that always fails fails the execution in the Stages Map, where a redrive re-enters it', async () => {
    class PartitionError extends Error {
      override name = 'PartitionError';
    }
    const f = fakes(THREE_STAGES, {
      stage: async (e) => {
        if (e.stage === 1 && e.partition === 2) throw new PartitionError('corrupt shard 2');
        return { rows: 1 };
      },
    });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { executionArn, d } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'PartitionError');
    const cause = JSON.parse(d.cause!) as { errorType: string; errorMessage: string };
    assert.deepEqual([cause.errorType, cause.errorMessage], ['PartitionError', 'corrupt shard 2']);
    assert.equal(f.log.attempts.get('1/2'), 3, 'first try + 2 retries');
    assert.deepEqual(f.log.failure, [], 'no RecordFailure step: the failed state is the Stages Map');
    const entered = (await history(sfn, executionArn)).filter((e) => e.type?.endsWith('StateEntered')).map((e) => e.stateEnteredEventDetails?.name);
    assert.ok(!entered.includes('Failed') && !entered.includes('RecordFailure'), entered.join(', '));
    assert.deepEqual(f.log.finalize, []);
    assert.deepEqual(f.log.ecs, [], 'later stages never start');
    assertSmallEvents(f.log.eventBytes);
  });

  it('a failing Plan is recorded with a null run id', async () => {
    const f = fakes(THREE_STAGES, {
      plan: async () => {
        throw new TypeError('no such pipeline');
      },
    });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { d } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'TypeError');
    assert.equal(f.log.failure.length, 1);
    assert.deepEqual((f.log.failure[0] as { runId: unknown; workBucket: unknown }).runId, null);
    assert.deepEqual(f.log.partitions, []);
  });

  it('a Lambda that exceeds its timeout fails its task (not retried)', async () => {
    const f = fakes(THREE_STAGES.slice(0, 1), {
      stageTimeoutSeconds: 1,
      stage: async (e, _attempt, ctx) => {
        assert.ok(ctx.getRemainingTimeInMillis() > 0 && ctx.getRemainingTimeInMillis() <= 1000);
        assert.equal(ctx.functionName, 'fanout-stage');
        assert.ok(ctx.awsRequestId);
        if (e.partition === 0) await new Promise((r) => setTimeout(r, 1500));
        return { rows: 1 };
      },
    });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { executionArn, d, ms } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'Sandbox.Timedout');
    assert.match(d.cause!, /Task timed out after 1\.00 seconds/);
    assert.ok(ms < 3000, `failed after ${ms.toFixed(0)} ms: at the function's timeout, without retries`);
    assert.equal(f.log.attempts.get('0/0'), 1, 'a timeout is not retried');
    assert.equal(f.log.failure.length, 0, 'a stage fails in the Stages Map (redrivable), without RecordFailure');
    const failed = (await history(sfn, executionArn)).filter((e) => e.type === 'TaskFailed');
    assert.equal(failed[0]?.taskFailedEventDetails?.error, 'Sandbox.Timedout');
  });

  it('a result over the 256 KiB payload limit fails the execution uncaught (States.DataLimitExceeded)', async () => {
    const f = fakes(THREE_STAGES.slice(0, 1), { stage: async (e) => (e.partition === 3 ? { blob: 'x'.repeat(300_000) } : { rows: 1 }) });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { d } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'States.DataLimitExceeded');
    assert.equal(f.log.attempts.get('0/3'), 1, 'not retried');
    assert.deepEqual(f.log.failure, [], 'States.ALL does not catch it, as on AWS');
  });

  it('the inline form refuses more than 1000 partitions (the local interpreter: States.Runtime, uncaught)', async () => {
    const f = fakes([{ executor: 'lambda', partitions: 1001, concurrency: 8, slots: 0 }]);
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { d } = await execute(sfn, server.stateMachineArn);
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'States.Runtime');
    assert.match(d.cause!, /1000 items/);
    assert.deepEqual(f.log.partitions, []);
  });

  it('StopExecution aborts the execution and stops its ECS tasks', async () => {
    let signalled = 0;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const f = fakes([{ executor: 'ecs-gpu', partitions: 4, concurrency: 1, slots: 2 }], {
      ecs: (p) =>
        new Promise<void>((_, reject) => {
          started();
          p.signal.addEventListener('abort', () => {
            signalled++;
            reject(new Error('killed'));
          });
        }),
    });
    const { server, sfn } = await harness(buildStateMachineDefinition(resources(false)), f.handlers);
    const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn: server.stateMachineArn, input: JSON.stringify(EXECUTION_INPUT) }));
    await running;
    await sfn.send(new StopExecutionCommand({ executionArn, error: 'UserCancelled', cause: 'test' }));
    const d = await waitDone(sfn, executionArn!);
    assert.equal(d.status, 'ABORTED');
    assert.equal(d.error, 'UserCancelled');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(signalled, 2, 'both slot tasks were told to stop');
    const events = await history(sfn, executionArn!);
    assert.equal(events.at(-1)?.type, 'ExecutionAborted');
    await assert.rejects(sfn.send(new DescribeExecutionCommand({ executionArn: `${executionArn}-nope` })), { name: 'ExecutionDoesNotExist' });
  });

  it('runs a 600-partition stage with small payloads', async (t) => {
    const stages: StageSpec[] = [{ executor: 'lambda', partitions: 600, concurrency: 64, slots: 0 }];
    for (const distributed of [true, false]) {
      const f = fakes(stages);
      const { server, sfn } = await harness(buildStateMachineDefinition(resources(distributed)), f.handlers);
      const { executionArn, d, ms } = await execute(sfn, server.stateMachineArn);
      assert.equal(d.status, 'SUCCEEDED', `${d.error}: ${d.cause}`);
      assert.equal(f.log.partitions.length, 600);
      assert.equal(new Set(f.log.partitions.map((c) => c.partition)).size, 600);
      assertSmallEvents(f.log.eventBytes);
      const events = await history(sfn, executionArn);
      // No state's input or output grows with the partition count beyond a few bytes per item.
      let maxState = 0;
      for (const e of events) {
        const text = e.stateEnteredEventDetails?.input ?? e.stateExitedEventDetails?.output;
        if (text) maxState = Math.max(maxState, Buffer.byteLength(text));
      }
      assert.ok(maxState < 16_384, `largest state payload ${maxState} bytes`);
      // The history is complete: one iteration and one task per partition, in id order.
      const iterations = events.filter((e) => e.type === 'MapIterationSucceeded' && e.mapIterationSucceededEventDetails?.name === 'Partitions');
      assert.deepEqual(
        iterations.map((e) => e.mapIterationSucceededEventDetails!.index).sort((a, b) => a! - b!),
        Array.from({ length: 600 }, (_, i) => i),
      );
      assert.equal(events.filter((e) => e.type === 'TaskStateExited' && e.stateExitedEventDetails?.name === 'RunPartition').length, 600);
      assert.equal(events.find((e) => e.type === 'MapStateStarted' && e.mapStateStartedEventDetails?.length === 600) !== undefined, true);
      t.diagnostic(
        `distributed=${distributed}: 600 partitions in ${ms.toFixed(0)} ms (${(ms / 600).toFixed(2)} ms/partition), ${events.length} history events, largest state ${maxState} B, largest handler event ${Math.max(...f.log.eventBytes)} B`,
      );
    }
  });
});

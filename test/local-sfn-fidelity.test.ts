// The local Step Functions API (localstack/stepfunctions/) against @aws-sdk/client-sfn: histories on
// Catch and failure paths as AWS writes them, Map semantics after a failed iteration, and the read
// operations AWS tools call (ListStateMachines, DescribeStateMachineForExecution, ListMapRuns,
// DescribeMapRun, tags). Also what `npm run local` prints for a failed stage (localstack/run-progress.ts).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  DescribeStateMachineForExecutionCommand,
  GetExecutionHistoryCommand,
  ListMapRunsCommand,
  ListStateMachinesCommand,
  ListTagsForResourceCommand,
  SFNClient,
  StartExecutionCommand,
  TagResourceCommand,
  UntagResourceCommand,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import { RunProgress } from '../localstack/run-progress.ts';
import { startLocalStepFunctions, type LocalStepFunctions } from '../localstack/stepfunctions/index.ts';
import { buildStateMachineDefinition, type AslDefinition } from '../src/aws/state-machine.ts';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

const FN = 'arn:aws:lambda:us-east-1:000000000000:function:work';
const servers: LocalStepFunctions[] = [];
const clients: SFNClient[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(servers.map((s) => s.stop()));
});

class ItemError extends Error {
  override name = 'ItemError';
}

type Handler = (event: Record<string, unknown>) => Promise<unknown>;

async function harness(definition: AslDefinition, handler: Handler, lambdas: Record<string, Handler> = {}) {
  const all: Record<string, Handler> = { [FN]: handler, ...lambdas };
  const server = await startLocalStepFunctions({
    definition,
    handlers: {
      lambdas: Object.fromEntries(
        Object.entries(all).map(([arn, h]) => [arn, { timeoutSeconds: 10, handler: (e: unknown) => h(e as Record<string, unknown>) }]),
      ),
      getObject: async (bucket, key) => {
        throw new Error(`no object s3://${bucket}/${key} here`);
      },
    },
  });
  servers.push(server);
  const sfn = new SFNClient({ endpoint: server.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  clients.push(sfn);
  return { server, sfn };
}

async function run(sfn: SFNClient, stateMachineArn: string, input: object) {
  const { executionArn } = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify(input) }));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (d.status !== 'RUNNING') return { executionArn: executionArn!, d };
    if (Date.now() > deadline) throw new Error(`${executionArn} still RUNNING after 20 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function history(sfn: SFNClient, executionArn: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000, nextToken }));
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}

/** `Type` or `Type:name` / `Type:map#index` per event, for readable sequence assertions. */
const label = (e: HistoryEvent): string => {
  const it = e.mapIterationStartedEventDetails ?? e.mapIterationSucceededEventDetails ?? e.mapIterationFailedEventDetails ?? e.mapIterationAbortedEventDetails;
  if (it) return `${e.type}:${it.name}#${it.index}`;
  const name = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name;
  return name ? `${e.type}:${name}` : e.type!;
};

const mapOf = (items: string, processor: AslDefinition['States'][string]['ItemProcessor'], extra: object = {}) => ({
  Type: 'Map' as const,
  ItemsPath: items,
  ItemProcessor: processor,
  ...extra,
});
const taskProcessor = (mode: 'INLINE' | 'DISTRIBUTED' = 'INLINE') => ({
  ProcessorConfig: mode === 'DISTRIBUTED' ? { Mode: 'DISTRIBUTED' as const, ExecutionType: 'STANDARD' as const } : { Mode: 'INLINE' as const },
  StartAt: 'Work',
  States: { Work: { Type: 'Task' as const, Resource: FN, End: true } },
});

describe('local Step Functions: histories on Catch and failure paths', () => {
  it('a caught Task failure: TaskFailed, then TaskStateExited and the Catch target, never TaskSucceeded', async () => {
    const def: AslDefinition = {
      StartAt: 'T',
      States: {
        T: { Type: 'Task', Resource: FN, Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Handled' }], Next: 'Handled' },
        Handled: { Type: 'Pass', End: true },
      },
    };
    const { server, sfn } = await harness(def, async () => {
      throw new ItemError('bad row');
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, {});
    assert.equal(d.status, 'SUCCEEDED');
    const events = (await history(sfn, executionArn)).map(label);
    assert.deepEqual(events, [
      'ExecutionStarted',
      'TaskStateEntered:T',
      'TaskScheduled',
      'TaskStarted',
      'TaskFailed',
      'TaskStateExited:T',
      'PassStateEntered:Handled',
      'PassStateExited:Handled',
      'ExecutionSucceeded',
    ]);
  });

  it('MaxConcurrency 1: no iteration starts after one failed; a caught Map logs MapStateFailed, never MapStateSucceeded', async () => {
    const calls: number[] = [];
    const def: AslDefinition = {
      StartAt: 'M',
      States: {
        M: mapOf('$.items', taskProcessor(), {
          MaxConcurrency: 1,
          Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Handled' }],
          Next: 'Handled',
        }),
        Handled: { Type: 'Pass', End: true },
      },
    };
    const { server, sfn } = await harness(def, async (e) => {
      calls.push(Number(e['i']));
      if (e['i'] === 0) throw new ItemError('item 0');
      return {};
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, { items: [{ i: 0 }, { i: 1 }, { i: 2 }] });
    assert.equal(d.status, 'SUCCEEDED');
    assert.deepEqual(calls, [0], 'iterations 1 and 2 never start');
    const events = (await history(sfn, executionArn)).map(label);
    assert.deepEqual(events, [
      'ExecutionStarted',
      'MapStateEntered:M',
      'MapStateStarted',
      'MapIterationStarted:M#0',
      'TaskStateEntered:Work',
      'TaskScheduled',
      'TaskStarted',
      'TaskFailed',
      'MapIterationFailed:M#0',
      'MapStateFailed',
      'MapStateExited:M',
      'PassStateEntered:Handled',
      'PassStateExited:Handled',
      'ExecutionSucceeded',
    ]);
  });

  it('iterations in flight when the Map fails are aborted, and what they do afterwards is not in the history', async () => {
    const def: AslDefinition = {
      StartAt: 'M',
      States: {
        M: mapOf('$.items', taskProcessor(), {
          MaxConcurrency: 3,
          Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Later' }],
          Next: 'Later',
        }),
        // The execution goes on after the Map while the aborted iterations' tasks still finish.
        Later: { Type: 'Wait', Seconds: 1, End: true },
      },
    };
    const { server, sfn } = await harness(def, async (e) => {
      if (e['i'] === 0) throw new ItemError('item 0');
      await new Promise((r) => setTimeout(r, 300));
      return {};
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, { items: [{ i: 0 }, { i: 1 }, { i: 2 }] });
    assert.equal(d.status, 'SUCCEEDED');
    const events = await history(sfn, executionArn);
    const labels = events.map(label);
    const ended = (i: number) => labels.filter((l) => /^MapIteration(Succeeded|Failed|Aborted):M#/.test(l) && l.endsWith(`#${i}`));
    for (const i of [0, 1, 2]) assert.equal(ended(i).length, 1, `iteration ${i} ends once: ${ended(i).join(', ')}`);
    assert.deepEqual(ended(0), ['MapIterationFailed:M#0']);
    assert.deepEqual([...ended(1), ...ended(2)], ['MapIterationAborted:M#1', 'MapIterationAborted:M#2']);
    assert.ok(!labels.includes('MapStateSucceeded'));
    assert.ok(!labels.includes('TaskSucceeded'), 'the aborted iterations finishing later are not logged');
    assert.deepEqual(labels.slice(labels.indexOf('MapStateFailed')), [
      'MapStateFailed',
      'MapStateExited:M',
      'WaitStateEntered:Later',
      'WaitStateExited:Later',
      'ExecutionSucceeded',
    ]);
  });

  it('an uncaught iteration failure: TaskFailed, MapIterationFailed, MapStateFailed, ExecutionFailed', async () => {
    const def: AslDefinition = { StartAt: 'M', States: { M: mapOf('$.items', taskProcessor(), { MaxConcurrency: 1, End: true }) } };
    const { server, sfn } = await harness(def, async () => {
      throw new ItemError('always');
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, { items: [1, 2] });
    assert.equal(d.status, 'FAILED');
    assert.equal(d.error, 'ItemError');
    const labels = (await history(sfn, executionArn)).map(label);
    assert.deepEqual(labels.slice(-4), ['TaskFailed', 'MapIterationFailed:M#0', 'MapStateFailed', 'ExecutionFailed']);
    assert.ok(!labels.includes('MapIterationStarted:M#1'));
  });
});

describe('local Step Functions: read operations and tags', () => {
  it('ListStateMachines, DescribeStateMachineForExecution, TagResource / UntagResource / ListTagsForResource', async () => {
    const def: AslDefinition = { StartAt: 'P', States: { P: { Type: 'Pass', End: true } } };
    const { server, sfn } = await harness(def, async () => ({}));
    const list = await sfn.send(new ListStateMachinesCommand({}));
    assert.deepEqual(
      list.stateMachines?.map((m) => [m.stateMachineArn, m.type]),
      [[server.stateMachineArn, 'STANDARD']],
    );
    assert.ok(list.stateMachines?.[0]?.creationDate instanceof Date);
    const { executionArn } = await run(sfn, server.stateMachineArn, {});
    const forExec = await sfn.send(new DescribeStateMachineForExecutionCommand({ executionArn }));
    assert.equal(forExec.stateMachineArn, server.stateMachineArn);
    assert.deepEqual(JSON.parse(forExec.definition!), def);
    assert.ok(forExec.roleArn);
    await assert.rejects(
      sfn.send(new DescribeStateMachineForExecutionCommand({ executionArn: `${executionArn}-missing` })),
      (e: Error) => e.name === 'ExecutionDoesNotExist',
    );

    const resourceArn = server.stateMachineArn;
    await sfn.send(
      new TagResourceCommand({
        resourceArn,
        tags: [
          { key: 'team', value: 'data' },
          { key: 'env', value: 'local' },
        ],
      }),
    );
    await sfn.send(new TagResourceCommand({ resourceArn, tags: [{ key: 'env', value: 'test' }] }));
    await sfn.send(new UntagResourceCommand({ resourceArn, tagKeys: ['team'] }));
    assert.deepEqual((await sfn.send(new ListTagsForResourceCommand({ resourceArn }))).tags, [{ key: 'env', value: 'test' }]);
    await assert.rejects(sfn.send(new ListTagsForResourceCommand({ resourceArn: `${resourceArn}-other` })), (e: Error) => e.name === 'ResourceNotFound');
  });

  it('a Distributed Map is a Map Run: MapRunStarted / MapRunSucceeded / MapRunFailed, ListMapRuns, DescribeMapRun', async () => {
    const def: AslDefinition = {
      StartAt: 'Ok',
      States: {
        Ok: mapOf('$.items', taskProcessor('DISTRIBUTED'), { Label: 'Fine', MaxConcurrency: 2, ResultPath: null, Next: 'Bad' }),
        Bad: mapOf(
          '$.items',
          {
            ...taskProcessor('DISTRIBUTED'),
            StartAt: 'Work2',
            States: { Work2: { Type: 'Task', Resource: FN, Parameters: { 'i.$': '$.i', fail: true }, End: true } },
          },
          { End: true },
        ),
      },
    };
    const { sfn, server } = await harness(def, async (e) => {
      if (e['fail'] && e['i'] === 1) throw new ItemError('item 1');
      return {};
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, { items: [{ i: 0 }, { i: 1 }, { i: 2 }] });
    assert.equal(d.status, 'FAILED');
    const labels = (await history(sfn, executionArn)).map(label);
    assert.ok(labels.includes('MapRunStarted') && labels.includes('MapRunSucceeded') && labels.includes('MapRunFailed'), labels.join(' '));
    assert.ok(labels.indexOf('MapRunSucceeded') < labels.indexOf('MapStateSucceeded'));
    assert.ok(labels.indexOf('MapRunFailed') < labels.lastIndexOf('MapStateFailed'));

    const runs = (await sfn.send(new ListMapRunsCommand({ executionArn }))).mapRuns ?? [];
    assert.equal(runs.length, 2);
    // Newest first, as AWS lists them.
    const [bad, ok] = runs;
    assert.match(ok!.mapRunArn!, /^arn:aws:states:us-east-1:000000000000:mapRun:fanout-local\/Fine:[0-9a-f-]{36}$/);
    assert.equal(ok!.stateMachineArn, `${server.stateMachineArn}/Fine`);
    assert.match(bad!.mapRunArn!, /:mapRun:fanout-local\/Bad:/);
    const okRun = await sfn.send(new DescribeMapRunCommand({ mapRunArn: ok!.mapRunArn }));
    assert.equal(okRun.status, 'SUCCEEDED');
    assert.equal(okRun.executionArn, executionArn);
    assert.equal(okRun.maxConcurrency, 2);
    assert.deepEqual([okRun.itemCounts?.total, okRun.itemCounts?.succeeded, okRun.itemCounts?.failed], [3, 3, 0]);
    assert.ok(okRun.stopDate instanceof Date);
    const badRun = await sfn.send(new DescribeMapRunCommand({ mapRunArn: bad!.mapRunArn }));
    assert.equal(badRun.status, 'FAILED');
    assert.equal(badRun.itemCounts?.failed, 1);
    assert.equal(badRun.itemCounts?.total, 3);
    await assert.rejects(sfn.send(new DescribeMapRunCommand({ mapRunArn: `${ok!.mapRunArn}0` })), (e: Error) => e.name === 'ResourceNotFound');
  });
});

describe('npm run local: what it prints for a failed stage', () => {
  it('the pipeline definition with stage 0 failing: "stage 0 (lambda) failed", never "done", and stage 1 never starts', async () => {
    const arn = (n: string) => `arn:aws:lambda:us-east-1:000000000000:function:fanout-${n}`;
    const definition = buildStateMachineDefinition({
      planFunctionArn: arn('plan'),
      stageFunctionArn: arn('stage'),
      finalizeFunctionArn: arn('finalize'),
      failureFunctionArn: arn('failure'),
      distributed: false,
    });
    const stageCalls: number[] = [];
    const plan = async () => ({
      runId: 'run-1',
      workBucket: 'work',
      stages: [0, 1].map((index) => ({ index, executor: 'lambda', partitions: 2, concurrency: 2, slots: 0, itemsKey: `runs/run-1/stage-${index}/items.json` })),
    });
    const { server, sfn } = await harness(definition, async () => ({}), {
      [arn('plan')]: plan,
      [arn('stage')]: async (e) => {
        stageCalls.push(Number(e['stage']));
        if (e['stage'] === 0 && e['partition'] === 1) throw new ItemError('partition 1 is corrupt');
        return { rows: 1 };
      },
      [arn('finalize')]: async () => ({ rows: 0 }),
      [arn('failure')]: async () => ({ recorded: true }),
    });
    const { executionArn, d } = await run(sfn, server.stateMachineArn, { input: { uri: 's3://in/x.parquet' } });
    assert.equal(d.status, 'FAILED');
    assert.ok(!stageCalls.includes(1), 'stage 1 never starts');
    const progress = new RunProgress('[run]');
    const lines = progress.onEvents(await history(sfn, executionArn));
    assert.ok(lines.includes('[run] stage 0 (lambda) failed'), lines.join('\n'));
    assert.ok(!lines.some((l) => / done$/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => l.startsWith('[run] stage 1')), lines.join('\n'));
  });
});

// Failures on the serverless path name the UDF, the partition, its input and the original message:
// in the error the Stage handler throws, in what the Lambda runtime reports, in failure.json and in
// the RunFailedError the AWS runner throws, whichever stage (first, middle, last, ECS) fails.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { col, readParquet, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { type LambdaError, LocalLambda } from '../localstack/lambda-runtime.ts';
import { keys, planRun, preparePlan, runStagePartition, type RunSummary } from '../src/aws/run.ts';
import { buildStateMachineDefinition, type AslState } from '../src/aws/state-machine.ts';
import { LocalStore } from '../src/io/store/index.ts';
import { getS3Object, putS3Object } from '../src/io/s3/index.ts';
import { LOCAL_ARNS } from '../localstack/index.ts';
import { boom, failFirst, failGpu, failLast, failMiddle, gpuOk } from './fixtures/failing-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

const pipelineFile = join(import.meta.dirname, 'fixtures', 'failing-pipeline.ts');
let localInput: string;

before(async () => {
  // ids 3000..4999 in row groups of 500: id 4242 is row 242 of row group 2, i.e. partition 2.
  localInput = join(tempDir(), 'ids.parquet');
  await writeSample(localInput, 3000, 2000, 500);
});

describe('partition errors (no services)', () => {
  it('a UDF failing in a non-final stage rejects with an Error naming the UDF, partition, file and message', async () => {
    const work = new LocalStore(tempDir());
    const df = readParquet(localInput)
      .withColumn('a', boom(col('id'), col('x')))
      .withColumn('g', gpuOk(col('x')));
    const plan = planRun(df.plan, { pipeline: pathToFileURL(pipelineFile).href, targetPartitionBytes: 1 });
    assert.deepEqual(
      plan.stages.map((s) => s.executor),
      ['lambda', 'ecs-gpu'],
    );
    await preparePlan(work, plan, 'work');
    const err = await runStagePartition(work, plan.runId, 0, 2).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error, `an Error, not ${JSON.stringify(err)}`);
    assert.equal(err.name, 'UdfError', 'the original error name (Lambda errorType) is kept');
    assert.match(err.message, /UDF 'errs\.boom'/);
    assert.match(err.message, /first at row 242\b/);
    assert.match(err.message, /boom: id 4242 is cursed/);
    assert.match(err.message, new RegExp(`run ${plan.runId}, stage 0 \\(lambda\\), partition 2: .*ids\\.parquet row groups 2`));
    // The other partitions of the stage are fine.
    await runStagePartition(work, plan.runId, 0, 1);
    assert.ok(!(await work.exists(keys.metrics(plan.runId, 0, 2))), 'no completion marker for the failed partition');
  });

  it('the local Lambda runtime reports thrown non-Errors by their content, never "[object Object]"', async () => {
    const fn = new LocalLambda('throwing', pathToFileURL(join(import.meta.dirname, 'fixtures', 'throwing-handler.ts')).href, {
      timeoutSeconds: 30,
      concurrency: 1,
    });
    try {
      const seen: LambdaError[] = [];
      for (const kind of ['object', 'message', 'number']) {
        seen.push(
          await fn.invoke({ kind }).then(
            () => assert.fail('should throw'),
            (e: LambdaError) => e,
          ),
        );
      }
      for (const e of seen) assert.doesNotMatch(e.message, /\[object Object\]/);
      assert.equal(seen[0]!.name, 'Object');
      assert.match(seen[0]!.message, /E_CURSED/);
      assert.match(seen[0]!.message, /the partition is cursed/);
      assert.equal(seen[1]!.name, 'StreamAborted');
      assert.equal(seen[1]!.message, 'the stream was aborted');
      assert.equal(seen[2]!.name, 'number');
      assert.equal(seen[2]!.message, '42');
    } finally {
      await fn.stop();
    }
  });
});

/** The generated definition, with the GPU task's retry after a failure 1 s instead of 30 s (a test needs no backoff). */
function quickRetryDefinition() {
  const def = buildStateMachineDefinition({
    planFunctionArn: LOCAL_ARNS.plan,
    stageFunctionArn: LOCAL_ARNS.stage,
    finalizeFunctionArn: LOCAL_ARNS.finalize,
    failureFunctionArn: LOCAL_ARNS.failure,
    ecs: {
      clusterArn: LOCAL_ARNS.cluster,
      taskDefinitionArn: LOCAL_ARNS.taskDefinition,
      containerName: 'fanout-gpu',
      subnets: ['subnet-local'],
      securityGroups: ['sg-local'],
    },
    distributed: true,
    lambdaTimeoutSeconds: 120,
  });
  let patched = 0;
  const walk = (states: Record<string, AslState>): void => {
    for (const [name, s] of Object.entries(states)) {
      if (name === 'RunGpuSlot')
        for (const r of s.Retry ?? [])
          if (r.ErrorEquals.includes('States.TaskFailed')) {
            r.IntervalSeconds = 1;
            patched++;
          }
      const proc = s.ItemProcessor ?? s.Iterator;
      if (proc) walk(proc.States);
      for (const b of s.Branches ?? []) walk(b.States);
    }
  };
  walk(def.States);
  assert.equal(patched, 1, 'found the GPU task retrier');
  return def;
}

describe('local cloud: a failing UDF is named wherever the run fails', () => {
  let cloud: LocalCloud;
  let input: string;

  before(async () => {
    cloud = await startLocalCloud({ pipeline: pipelineFile, lambdaConcurrency: 2, definition: quickRetryDefinition() });
    await putS3Object(`s3://${cloud.inputBucket}/ids/ids.parquet`, readFileSync(localInput));
    input = `s3://${cloud.inputBucket}/ids/`;
  });

  after(async () => {
    setRunner('native');
    await shutdownWorkers();
    await cloud?.stop();
  });

  const cases = [
    {
      name: 'the first of two CPU stages (non-final)',
      df: failFirst,
      stage: 0,
      executor: 'lambda',
      udf: 'errs.boom',
      message: 'boom: id 4242 is cursed',
      via: false,
    },
    { name: 'a CPU stage in the middle', df: failMiddle, stage: 2, executor: 'lambda', udf: 'errs.boom', message: 'boom: id 4242 is cursed', via: true },
    { name: 'the last stage', df: failLast, stage: 2, executor: 'lambda', udf: 'errs.boom', message: 'boom: id 4242 is cursed', via: true },
    { name: 'the ECS (GPU) stage', df: failGpu, stage: 1, executor: 'ecs-gpu', udf: 'errs.gpuBoom', message: 'gpu boom: id 4242 is cursed', via: true },
  ] as const;

  for (const c of cases) {
    it(`a UDF failing in ${c.name}`, async () => {
      setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
      const err = await c
        .df({ uri: input })
        .collect()
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof Error && err.name === 'RunFailedError', `RunFailedError, got ${String(err)}`);
      const runId = (err as Error & { runId: string }).runId;
      const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const where = new RegExp(
        `stage ${c.stage} \\(${c.executor}\\), partition 2: s3://${cloud.inputBucket}/ids/ids\\.parquet row groups 2${c.via ? `, through stage ${c.stage - 1}'s shard` : ''}`,
      );
      assert.match(err.message, new RegExp(`UDF '${esc(c.udf)}'`), `names the UDF: ${err.message}`);
      assert.match(err.message, where, `names the partition and its input: ${err.message}`);
      assert.match(err.message, new RegExp(esc(c.message)), `has the original message: ${err.message}`);
      assert.match(err.message, new RegExp(`^run ${runId} failed`));
      assert.doesNotMatch(err.message, /\[object Object\]/);
      const failure = JSON.parse(Buffer.from(await getS3Object(`s3://${cloud.workBucket}/${keys.failure(runId)}`)).toString()) as RunSummary;
      assert.equal(failure.status, 'FAILED');
      assert.match(failure.error!, new RegExp(`UDF '${esc(c.udf)}'`));
      assert.match(failure.error!, where);
      assert.match(failure.error!, new RegExp(esc(c.message)));
      assert.deepEqual(
        failure.partitionErrors?.map((p) => [p.stage, p.partition]),
        [[c.stage, 2]],
      );
      assert.ok(failure.failedPartitions?.some((f) => f.stage === c.stage && f.partitions.includes(2)));
      // What Step Functions reported (the Lambda's errorType/errorMessage, the ECS task's stop
      // reason with the first line of its error) carries the message too, not "[object Object]".
      assert.match(failure.stateMachineError!, new RegExp(esc(c.message)), failure.stateMachineError);
      assert.doesNotMatch(failure.stateMachineError!, /\[object Object\]/);
    });
  }
});

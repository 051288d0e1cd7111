// The synthesized CDK app, run offline: the template's state machine (DefinitionString resolved to
// local ARNs), the Lambda bundles from the cloud assembly (each in its own worker-thread "container"
// with the function's environment), the rule's EventPattern and input transformer applied to S3
// "Object Created" events. Upload a Parquet file under the watched prefix; the result appears under
// the output prefix with its _SUCCESS manifest.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { readParquet, setRunner, shutdownWorkers } from 'fanout';
import { createApp, EXAMPLE_ENTRY, INPUT_PREFIX, OUTPUT_PREFIX } from '../cdk/app.ts';
import { startAppHarness, type AppHarness } from '../localstack/app-harness.ts';
import { applyInputTransformer, jsonPathGet, matchesEventPattern, objectCreatedEvent } from '../localstack/eventbridge.ts';
import { objectCreatedPattern } from '../cdk/fanout-pipeline.ts';
import pipeline from '../examples/pipeline.ts';
import { resolvePipelineSpec } from '../src/aws/run.ts';
import { getS3ObjectOrNull, listS3, putS3Object } from '../src/io/s3/index.ts';
import { tempDir, writeSample } from './helpers.ts';

describe('EventBridge semantics of the harness', () => {
  const event = objectCreatedEvent('in', { key: 'incoming/a b.parquet', size: 10, etag: '"abc"' }, 1);

  it('matches exact values, arrays as OR, nested objects, prefix/suffix/wildcard', () => {
    assert.ok(matchesEventPattern(objectCreatedPattern('in', 'incoming/', '.parquet'), event));
    assert.ok(!matchesEventPattern(objectCreatedPattern('other', 'incoming/', '.parquet'), event), 'another bucket');
    assert.ok(!matchesEventPattern(objectCreatedPattern('in', 'other/', '.parquet'), event), 'another prefix');
    assert.ok(!matchesEventPattern(objectCreatedPattern('in', 'incoming/', '.csv'), event), 'another suffix');
    assert.ok(matchesEventPattern(objectCreatedPattern('in', 'incoming/', ''), event));
    assert.ok(matchesEventPattern(objectCreatedPattern('in', '', '.parquet'), event));
    assert.ok(matchesEventPattern({ source: ['aws.ec2', 'aws.s3'] }, event), 'array = OR');
    assert.ok(!matchesEventPattern({ source: ['aws.ec2'] }, event));
    assert.ok(!matchesEventPattern({ detail: { object: { missing: ['x'] } } }, event), 'an absent field never equals');
    assert.ok(matchesEventPattern({ resources: ['arn:aws:s3:::in'] }, event), 'an event array matches when any element does');
    assert.ok(matchesEventPattern({ detail: { object: { key: [{ wildcard: 'incoming/*.parquet' }] } } }, event));
    assert.ok(!matchesEventPattern({ detail: { object: { key: [{ wildcard: 'incoming/*/x.parquet' }] } } }, event));
    assert.ok(matchesEventPattern({ detail: { object: { key: [{ prefix: { 'equals-ignore-case': 'INCOMING/' } }] } } }, event));
  });

  it('anything-but, numeric, exists, equals-ignore-case, cidr, $or', () => {
    assert.ok(matchesEventPattern({ detail: { reason: [{ 'anything-but': ['CopyObject', 'CompleteMultipartUpload'] }] } }, event));
    assert.ok(!matchesEventPattern({ detail: { reason: [{ 'anything-but': 'PutObject' }] } }, event));
    assert.ok(!matchesEventPattern({ detail: { object: { key: [{ 'anything-but': { prefix: 'incoming/' } }] } } }, event));
    assert.ok(matchesEventPattern({ detail: { object: { size: [{ numeric: ['>', 0, '<=', 10] }] } } }, event));
    assert.ok(!matchesEventPattern({ detail: { object: { size: [{ numeric: ['>', 10] }] } } }, event));
    assert.ok(matchesEventPattern({ detail: { object: { 'version-id': [{ exists: false }], etag: [{ exists: true }] } } }, event));
    assert.ok(matchesEventPattern({ 'detail-type': [{ 'equals-ignore-case': 'object created' }] }, event));
    assert.ok(matchesEventPattern({ detail: { 'source-ip-address': [{ cidr: '127.0.0.0/8' }] } }, event));
    assert.ok(matchesEventPattern({ $or: [{ source: ['nope'] }, { detail: { bucket: { name: ['in'] } } }] }, event));
    assert.ok(!matchesEventPattern({ $or: [{ source: ['nope'] }, { detail: { bucket: { name: ['out'] } } }] }, event));
  });

  it('input transformer: quoted placeholders get escaped text, unquoted ones JSON values', () => {
    const t = {
      InputPathsMap: { key: '$.detail.object.key', size: '$.detail.object.size', id: '$.id', obj: '$.detail.bucket' },
      InputTemplate: '{"uri":"s3://x/<key>","size":<size>,"runId":<id>,"bucket":<obj>,"text":"<obj>"}',
    };
    const out = JSON.parse(applyInputTransformer(t, event, { arn: 'arn:r', name: 'r' })) as Record<string, unknown>;
    assert.deepEqual(out, { uri: 's3://x/incoming/a b.parquet', size: 10, runId: event['id'], bucket: { name: 'in' }, text: '{"name":"in"}' });
    assert.equal(
      applyInputTransformer({ InputTemplate: 'rule <aws.events.rule-name> saw <k>', InputPathsMap: { k: '$.detail.object.key' } }, event, {
        arn: 'a',
        name: 'r1',
      }),
      'rule r1 saw incoming/a b.parquet',
    );
    assert.equal(jsonPathGet(event, '$.detail-type'), 'Object Created');
    assert.equal(jsonPathGet(event, '$.resources[0]'), 'arn:aws:s3:::in');
  });
});

describe('the synthesized app, offline (cdk.out -> local S3, EventBridge, Step Functions, Lambda bundles, ECS)', () => {
  let h: AppHarness;
  let inputBucket: string;
  let outputBucket: string;
  const local = tempDir('fanout-cdk-e2e-');

  before(async () => {
    // A fresh cloud assembly of the app (bundles built by the local esbuild), as `npx cdk synth` writes it.
    const cdkOut = tempDir('fanout-cdk-out-');
    const { app } = await createApp({ outdir: cdkOut, nag: false });
    const saved = process.env['CDK_VALIDATION'];
    process.env['CDK_VALIDATION'] = 'false';
    try {
      app.synth();
    } finally {
      if (saved === undefined) delete process.env['CDK_VALIDATION'];
      else process.env['CDK_VALIDATION'] = saved;
    }
    h = await startAppHarness({ cdkOut, pipeline: EXAMPLE_ENTRY, lambdaConcurrency: 2, pollIntervalMs: 100 });
    const pattern = h.rules[0]!.pattern as { detail: { bucket: { name: string[] } } };
    inputBucket = pattern.detail.bucket.name[0]!;
    const out = Object.values(h.buckets).find((b) => b !== inputBucket && b !== h.workBucket);
    assert.ok(out, 'an output bucket');
    outputBucket = out;
  });

  after(async () => {
    setRunner('native');
    await shutdownWorkers();
    await h?.stop();
  });

  it('runs the bundles from the cloud assembly, each with its template environment', () => {
    for (const f of Object.values(h.functions)) {
      assert.ok(f.assetDir.includes('asset.'), f.assetDir);
      assert.equal(f.timeoutSeconds, 900);
      // The template's relative FANOUT_PIPELINE names the bundle's own index.mjs in the copy it runs.
      assert.equal(f.environment['LAMBDA_TASK_ROOT'], f.codeDir);
      assert.equal(resolvePipelineSpec(f.environment['FANOUT_PIPELINE']!, f.environment), pathToFileURL(join(f.codeDir, 'index.mjs')).href);
      assert.equal(f.environment['FANOUT_WORK_BUCKET'], h.workBucket);
    }
    assert.equal(h.definition.StartAt, 'Plan');
    assert.equal(h.rules.length, 1);
  });

  it('an upload under the watched prefix starts a run whose output lands under the output prefix, _SUCCESS last', async () => {
    const file = join(local, 'orders.parquet');
    await writeSample(file, 0, 6000, 1500);
    // Not matching: another prefix, another suffix. They must not start runs.
    await putS3Object(`s3://${inputBucket}/elsewhere/orders.parquet`, readFileSync(file));
    await putS3Object(`s3://${inputBucket}/${INPUT_PREFIX}notes.txt`, 'not parquet');
    // A poll already under way may have listed before the second upload: the next one sees both.
    await h.bridge.poll();
    await h.bridge.poll();
    assert.equal(h.bridge.executions.length, 0);
    assert.ok(h.bridge.events.length >= 2, 'both objects produced events');

    const started = h.bridge.nextExecution(30_000);
    await putS3Object(`s3://${inputBucket}/${INPUT_PREFIX}orders.parquet`, readFileSync(file));
    const ex = await started;
    const input = JSON.parse(ex.input) as { input: { uri: string; literal: boolean }; output: string; runId: string };
    assert.equal(input.runId, ex.event['id']);
    // literal: the uploaded key is read as exactly one object, never expanded as a glob.
    assert.deepEqual(input.input, { uri: `s3://${inputBucket}/${INPUT_PREFIX}orders.parquet`, literal: true });
    assert.equal(input.output, `s3://${outputBucket}/${OUTPUT_PREFIX}${input.runId}/`);

    const done = await h.waitForExecution(ex.executionArn, 180_000);
    assert.equal(done.status, 'SUCCEEDED', `${done.error}: ${done.cause}`);
    const manifest = await getS3ObjectOrNull(`${input.output}_SUCCESS`);
    assert.ok(manifest, '_SUCCESS written');
    const listed = await listS3(input.output);
    assert.ok(
      listed.objects.some((o) => /part-\d+.*\.parquet$/.test(o.key)),
      'part files',
    );
    assert.ok(!listed.objects.some((o) => o.key.includes('_temporary')), 'no temporary files left');

    setRunner('native', { workers: false });
    const got = await readParquet(input.output).toRows();
    const want = await pipeline({ uri: file }).toRows();
    assert.ok(want.length > 0);
    assert.deepEqual(got, want);
    const stats = h.cloud.stats();
    assert.equal(stats['plan'], 1);
    assert.ok(stats['stage']! >= 1, 'the CPU stage ran on the Stage bundle');
    assert.ok(stats['ecsTasks']! >= 1, 'the GPU stage ran as an ECS task');
    assert.equal(h.bridge.executions.length, 1);
  });

  it('a bad upload fails the run through the Failure bundle, which records it', async () => {
    const started = h.bridge.nextExecution(30_000);
    await putS3Object(`s3://${inputBucket}/${INPUT_PREFIX}broken.parquet`, 'this is not a parquet file');
    const ex = await started;
    const done = await h.waitForExecution(ex.executionArn, 120_000);
    assert.equal(done.status, 'FAILED');
    assert.ok(h.cloud.stats()['failure']! >= 1);
    const runId = (JSON.parse(ex.input) as { runId: string }).runId;
    const listed = await listS3(`s3://${outputBucket}/${OUTPUT_PREFIX}${runId}/`);
    assert.deepEqual(listed.objects, [], 'nothing committed');
  });
});

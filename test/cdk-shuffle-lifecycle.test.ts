// Issue 13 item 3: "shuffle shards are cleaned by the bucket's lifecycle". The construct's work
// bucket expires objects under its rules' prefixes; every file a serverless run with a shuffle
// writes (bucket files, sort samples and boundaries, shards, markers, error records, results,
// the plan and its item lists) must lie under one of them. The keys come from the code that writes
// them (src/aws/run.ts keys, src/aws/shuffle.ts shuffleKeys), so a new file kind outside runs/ fails here.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, type CfnElement, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { EXAMPLE_ENTRY } from '../cdk/app.ts';
import { FanoutPipeline } from '../cdk/fanout-pipeline.ts';
import { keys } from '../src/aws/run.ts';
import { shuffleKeys } from '../src/aws/shuffle.ts';

type Rule = { Prefix?: string; ExpirationInDays?: number; Status?: string };

describe('the work bucket lifecycle covers every shuffle file', () => {
  it('each key a shuffle run writes is under an enabled expiring rule of the construct', () => {
    const st = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Lifecycle');
    const p = new FanoutPipeline(st, 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'cpu' }], workRetention: Duration.days(3) });
    const tpl = Template.fromStack(st).toJSON() as { Resources: Record<string, { Properties: { LifecycleConfiguration?: { Rules: Rule[] } } }> };
    const bucket = tpl.Resources[st.getLogicalId(p.workBucket.node.defaultChild as CfnElement)]!;
    const expiring = (bucket.Properties.LifecycleConfiguration?.Rules ?? []).filter(
      (r) => r.Status === 'Enabled' && typeof r.Prefix === 'string' && r.Prefix.length > 0 && r.ExpirationInDays === 3,
    );
    assert.ok(expiring.length >= 1, JSON.stringify(bucket.Properties.LifecycleConfiguration));
    const run = '20261130120000-0123abcd';
    const written = [
      shuffleKeys.bucket(run, 0, 7, 2),
      shuffleKeys.sample(run, 0, 7),
      shuffleKeys.boundaries(run, 1),
      keys.shard(run, 2, 7),
      keys.metrics(run, 0, 7),
      keys.error(run, 0, 7),
      keys.result(run, 7),
      keys.plan(run),
      keys.items(run, 1),
      keys.summary(run),
      keys.failure(run),
      `${keys.stagePrefix(run, 3)}input-7`,
    ];
    for (const k of written) {
      assert.ok(
        expiring.some((r) => k.startsWith(r.Prefix!)),
        `${k} is under no expiring rule (${expiring.map((r) => r.Prefix).join(', ')})`,
      );
    }
  });
});

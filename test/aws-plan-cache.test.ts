// A warm worker's plan cache (src/aws/run.ts loadPlan): keyed by the plan object's URI, so two work
// buckets' runs with one run id never share a plan, and bounded, so a warm environment serving run
// after run does not keep every plan it has read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PLAN_VERSION, keys, loadPlan } from '../src/aws/run.ts';
import { LocalStore, putJson } from '../src/io/store/index.ts';
import { tempDir } from './helpers.ts';

/** The fields loadPlan checks, and one that tells plans apart. */
function plan(runId: string, tag: string): Record<string, unknown> {
  return { version: PLAN_VERSION, runId, tag };
}

describe('loadPlan cache', () => {
  it('two work buckets with a run of the same id each get their own plan', async () => {
    const a = new LocalStore(tempDir('fanout-plan-a-'));
    const b = new LocalStore(tempDir('fanout-plan-b-'));
    await putJson(a, keys.plan('same-id'), plan('same-id', 'bucket a'));
    await putJson(b, keys.plan('same-id'), plan('same-id', 'bucket b'));
    assert.equal(((await loadPlan(a, 'same-id')) as unknown as { tag: string }).tag, 'bucket a');
    assert.equal(((await loadPlan(b, 'same-id')) as unknown as { tag: string }).tag, 'bucket b');
  });

  it('keeps the recently used plans and lets older ones go', async () => {
    const store = new LocalStore(tempDir('fanout-plan-lru-'));
    const tag = async (id: string): Promise<string> => ((await loadPlan(store, id)) as unknown as { tag: string }).tag;
    await putJson(store, keys.plan('first'), plan('first', 'v1'));
    await putJson(store, keys.plan('kept'), plan('kept', 'v1'));
    assert.equal(await tag('first'), 'v1');
    assert.equal(await tag('kept'), 'v1');
    // Rewritten behind the cache: a cached plan is served as read, an evicted one is read again.
    await putJson(store, keys.plan('first'), plan('first', 'v2'));
    await putJson(store, keys.plan('kept'), plan('kept', 'v2'));
    for (let i = 0; i < 20; i++) {
      await putJson(store, keys.plan(`run-${i}`), plan(`run-${i}`, 'v1'));
      assert.equal(await tag(`run-${i}`), 'v1');
      assert.equal(await tag('kept'), 'v1', 'a plan in use stays cached'); // used again each time: never the oldest
    }
    assert.equal(await tag('first'), 'v2', 'the plan not used since 20 others were read was let go');
  });
});

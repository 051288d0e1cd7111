// Issue 11 item 2: the construct's toleratedFailurePercentage / toleratedFailureCount props reach the
// Plan function (the plans it makes for S3-triggered runs carry them), are validated naming the prop,
// and need the Distributed Map; the state machine reads the thresholds from the plan.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { EXAMPLE_ENTRY } from '../cdk/app.ts';
import { FanoutPipeline } from '../cdk/fanout-pipeline.ts';

const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
type Props = Partial<ConstructorParameters<typeof FanoutPipeline>[2]>;

function make(props: Props): { p: FanoutPipeline; st: Stack } {
  const st = new Stack(new App({ context: SKIP_BUNDLING }), 'Tolerance');
  return { p: new FanoutPipeline(st, 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'cpu' }], ...props }), st };
}

function envOf(st: Stack, fn: { node: { defaultChild?: unknown } }): Record<string, unknown> {
  const tpl = Template.fromStack(st).toJSON() as { Resources: Record<string, { Properties: { Environment?: { Variables?: Record<string, unknown> } } }> };
  return tpl.Resources[st.getLogicalId(fn.node.defaultChild as CfnElement)]!.Properties.Environment?.Variables ?? {};
}

describe('FanoutPipeline tolerated failures', () => {
  it('sets the Plan function environment from the props, and nothing without them', () => {
    const { p, st } = make({ toleratedFailurePercentage: 20, toleratedFailureCount: 3 });
    const env = envOf(st, p.functions.plan);
    assert.equal(env['FANOUT_TOLERATED_FAILURE_PERCENTAGE'], '20');
    assert.equal(env['FANOUT_TOLERATED_FAILURE_COUNT'], '3');
    assert.equal(envOf(st, p.functions.stage)['FANOUT_TOLERATED_FAILURE_PERCENTAGE'], undefined, 'only the Plan function plans');
    const def = JSON.stringify(Template.fromStack(st).toJSON());
    assert.match(def, /ToleratedFailurePercentagePath\\":\\"\$\.stage\.toleratedFailurePercentage/);
    const plain = make({});
    assert.equal(envOf(plain.st, plain.p.functions.plan)['FANOUT_TOLERATED_FAILURE_PERCENTAGE'], undefined);
  });

  it('validates the props, naming them, and needs the Distributed Map', () => {
    assert.throws(() => make({ toleratedFailurePercentage: 101 }), /FanoutPipeline: toleratedFailurePercentage must be a number from 0 to 100, got 101/);
    assert.throws(() => make({ toleratedFailureCount: -1 }), /FanoutPipeline: toleratedFailureCount must be a non-negative integer, got -1/);
    assert.throws(() => make({ toleratedFailureCount: 1, distributed: false }), /need distributed: true/);
  });
});

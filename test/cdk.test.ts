// The CDK deployment (cdk/): the example stack's resources and wiring checked with
// aws-cdk-lib/assertions, cdk-nag's AwsSolutions pack, and one full `npx cdk synth` to cdk.out
// (offline, no credentials, Docker forbidden). Assertion synths skip bundling and CloudFormation
// validation (CDK_VALIDATION=false) to stay fast; the CLI synth does both.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { App, CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { createApp, EXAMPLE_ENTRY, INPUT_PREFIX, OUTPUT_PREFIX, STACK_NAME, type FanoutExampleStack } from '../cdk/app.ts';
import { FanoutPipeline, objectCreatedPattern, registeredUdfHints } from '../cdk/fanout-pipeline.ts';
import { col, DataType, fromRecords, func } from 'fanout';
import { buildStateMachineDefinition, type AslDefinition, type AslState } from '../src/aws/state-machine.ts';
import { tempDir } from './helpers.ts';

process.env['CDK_VALIDATION'] = 'false';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

type Json = Record<string, unknown>;
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Json };

/** Intrinsics as text, the way cdk-nag prints them: Ref -> <Id>, GetAtt -> <Id.Attr>, joins concatenated. */
function flat(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(flat);
  if (v && typeof v === 'object') {
    const o = v as Json;
    if (typeof o['Ref'] === 'string') return `<${o['Ref']}>`;
    if (Array.isArray(o['Fn::GetAtt'])) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
    if (Array.isArray(o['Fn::Join'])) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts
        .map((p) => {
          const f = flat(p);
          return typeof f === 'string' ? f : JSON.stringify(f);
        })
        .join(sep);
    }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, flat(x)]));
  }
  return v;
}

const arr = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

let stack: FanoutExampleStack;
let template: Template;
let tpl: { Resources: Record<string, { Type: string; Properties: Json }> };
let id: (c: { node: { defaultChild?: unknown } }) => string;

function policyStatements(roleLogicalId: string): Statement[] {
  const out: Statement[] = [];
  for (const r of Object.values(tpl.Resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    const roles = (r.Properties['Roles'] as unknown[]).map(flat);
    if (!roles.includes(`<${roleLogicalId}>`)) continue;
    out.push(...(r.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement.map((s) => flat(s) as Statement));
  }
  return out;
}

function findState(def: { States: Record<string, AslState> }, name: string): AslState | undefined {
  for (const [n, s] of Object.entries(def.States)) {
    if (n === name) return s;
    const inner = s.ItemProcessor ?? s.Iterator;
    const found = inner ? findState(inner, name) : undefined;
    if (found) return found;
  }
  return undefined;
}

before(async () => {
  const made = await createApp({ outdir: tempDir('fanout-cdk-'), nag: false, context: SKIP_BUNDLING });
  stack = made.stack;
  const asm = made.app.synth();
  tpl = asm.getStackByName(stack.stackName).template as typeof tpl;
  template = Template.fromJSON(tpl);
  // The construct's CloudFormation resource: its default child, else its one Cfn child (AsgCapacityProvider).
  id = (c) => {
    const n = (c as unknown as IConstruct).node;
    const cfn = (n.defaultChild ?? n.children.find((x) => CfnElement.isCfnElement(x))) as CfnElement;
    return stack.getLogicalId(cfn);
  };
});

describe('FanoutPipeline in the example stack', () => {
  it('GPU: EC2 task definition with a GPU requirement, GPU AMI, managed scaling from zero', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['EC2'],
      NetworkMode: 'bridge',
      ContainerDefinitions: [{ Name: 'fanout-gpu', ResourceRequirements: [{ Type: 'GPU', Value: '1' }], MemoryReservation: 4096 }],
    });
    const params = Object.keys((tpl as unknown as { Parameters: Json }).Parameters);
    assert.ok(
      params.some((p) => /ecsoptimizedamiamazonlinux2gpurecommended/i.test(p)),
      `the GPU-optimized AMI parameter: ${params.join(', ')}`,
    );
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: { InstanceType: 'g5.xlarge', MetadataOptions: { HttpTokens: 'required' }, BlockDeviceMappings: [{ Ebs: { Encrypted: true } }] },
    });
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { MinSize: '0', MaxSize: '2' });
    template.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: { ManagedScaling: { Status: 'ENABLED', TargetCapacity: 100 }, ManagedTerminationProtection: 'ENABLED' },
    });
    template.resourceCountIs('AWS::ECS::ClusterCapacityProviderAssociations', 1);
    // No NAT gateway: the default VPC costs nothing while idle.
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
  });

  it('EventBridge: the input bucket sends events; the rule matches Object Created under the prefix and starts the state machine', () => {
    template.hasResourceProperties('AWS::S3::Bucket', { NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } } });
    const rules = Object.values(tpl.Resources).filter((r) => r.Type === 'AWS::Events::Rule');
    assert.equal(rules.length, 1);
    const rule = flat(rules[0]!.Properties) as { EventPattern: Json; Targets: Json[] };
    assert.deepEqual(rule.EventPattern, objectCreatedPattern(`<${id(stack.inputBucket)}>`, INPUT_PREFIX, '.parquet'));
    assert.deepEqual(rule.EventPattern['detail'], { bucket: { name: [`<${id(stack.inputBucket)}>`] }, object: { key: [{ wildcard: 'incoming/*.parquet' }] } });
    const target = rule.Targets[0] as { Arn: string; InputTransformer: { InputPathsMap: Json; InputTemplate: string }; DeadLetterConfig: Json };
    assert.equal(target.Arn, `<${id(stack.pipeline.stateMachine)}>`);
    assert.ok(target.DeadLetterConfig, 'failed deliveries go to a dead-letter queue');
    assert.deepEqual(target.InputTransformer.InputPathsMap, {
      'detail-bucket-name': '$.detail.bucket.name',
      'detail-object-key': '$.detail.object.key',
      id: '$.id',
    });
    assert.equal(
      target.InputTransformer.InputTemplate,
      `{"input":{"uri":"s3://<detail-bucket-name>/<detail-object-key>","literal":true},"output":"s3://<${id(stack.outputBucket)}>/${OUTPUT_PREFIX}<id>/","runId":<id>}`,
    );
  });

  it('Lambda: four nodejs22.x functions, ESM bundles of handler + pipeline, sized from the UDFs', () => {
    const fns = Object.values(tpl.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    assert.equal(fns.length, 4);
    for (const f of fns) {
      const p = flat(f.Properties) as Json & { Environment: { Variables: Json } };
      assert.equal(p['Runtime'], 'nodejs22.x');
      assert.equal(p['Handler'], 'index.handler');
      assert.equal(p['Timeout'], 900);
      assert.equal(p['MemorySize'], 1769);
      assert.deepEqual(p.Environment.Variables, {
        FANOUT_WORK_BUCKET: `<${id(stack.pipeline.workBucket)}>`,
        // Relative to LAMBDA_TASK_ROOT (resolvePipelineSpec): /var/task on AWS, a temp dir on an emulator.
        FANOUT_PIPELINE: './index.mjs',
        FANOUT_PROGRESS: '0',
        // The construct's output location: the handlers refuse a run's output anywhere else.
        FANOUT_OUTPUT_PREFIX: `s3://<${id(stack.outputBucket)}>/${OUTPUT_PREFIX}`,
        // The Stage function prints partition and UDF metrics in embedded metric format.
        ...(f === tpl.Resources[id(stack.pipeline.functions.stage)] ? { FANOUT_METRICS: 'emf', FANOUT_METRICS_PIPELINE: stack.pipeline.node.path } : {}),
      });
      assert.equal(p['ReservedConcurrentExecutions'], undefined, 'no reserved concurrency unless asked for');
      assert.ok(typeof p['LoggingConfig'] === 'object', 'each function logs to its own group');
    }
    for (const g of Object.values(tpl.Resources).filter((r) => r.Type === 'AWS::Logs::LogGroup')) assert.equal(g.Properties['RetentionInDays'], 30);
  });

  it("Step Functions: the definition is buildStateMachineDefinition() with the stack's ARNs (distributed Map, runTask.sync)", () => {
    const sm = Object.values(tpl.Resources).find((r) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    const def = JSON.parse(flat(sm.Properties['DefinitionString']) as string) as AslDefinition;
    const p = stack.pipeline;
    const want = buildStateMachineDefinition({
      planFunctionArn: `<${id(p.functions.plan)}.Arn>`,
      stageFunctionArn: `<${id(p.functions.stage)}.Arn>`,
      finalizeFunctionArn: `<${id(p.functions.finalize)}.Arn>`,
      failureFunctionArn: `<${id(p.functions.failure)}.Arn>`,
      ecs: {
        clusterArn: `<${id(p.cluster!)}.Arn>`,
        taskDefinitionArn: `<${id(p.taskDefinition!)}>`,
        containerName: 'fanout-gpu',
        subnets: [],
        securityGroups: [],
        capacityProvider: `<${id(p.capacityProvider!)}>`,
      },
      distributed: true,
      lambdaTimeoutSeconds: 900,
      ecsTimeoutSeconds: 6 * 3600,
    });
    assert.deepEqual(def, want);
    // The wiring the brief names, spelled out.
    const partitions = findState(def, 'Partitions')!;
    assert.equal(partitions.Type, 'Map');
    assert.deepEqual(partitions.ItemProcessor?.ProcessorConfig, { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    assert.equal(findState(def, 'RunPartition')!.Parameters!['FunctionName'], `<${id(p.functions.stage)}.Arn>`);
    const gpu = findState(def, 'RunGpuSlot')!;
    assert.equal(gpu.Resource, 'arn:aws:states:::ecs:runTask.sync');
    assert.deepEqual(gpu.Parameters!['CapacityProviderStrategy'], [{ CapacityProvider: `<${id(p.capacityProvider!)}>`, Weight: 1 }]);
    assert.equal(gpu.Parameters!['NetworkConfiguration'], undefined, 'bridge networking: no awsvpc configuration');
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { LoggingConfiguration: { Level: 'ALL' }, TracingConfiguration: { Enabled: true } });
  });

  it('work bucket: encrypted, SSL only, no public access, runs/ expire', () => {
    const wb = tpl.Resources[id(stack.pipeline.workBucket)]!.Properties as Json;
    assert.deepEqual(wb['BucketEncryption'], { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
    assert.deepEqual(wb['PublicAccessBlockConfiguration'], {
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    const rules = (wb['LifecycleConfiguration'] as { Rules: Json[] }).Rules;
    assert.ok(rules.some((r) => r['Prefix'] === 'runs/' && r['ExpirationInDays'] === 7 && r['Status'] === 'Enabled'));
    const policy = Object.values(tpl.Resources).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && flat(r.Properties['Bucket']) === `<${id(stack.pipeline.workBucket)}>`,
    )!;
    const st = (flat(policy.Properties['PolicyDocument']) as { Statement: Statement[] }).Statement;
    assert.ok(st.some((s) => s.Effect === 'Deny' && JSON.stringify(s.Condition) === '{"Bool":{"aws:SecureTransport":"false"}}'));
  });

  it('IAM: one role per function, each reaching only the buckets, prefixes and actions its handler uses', () => {
    const p = stack.pipeline;
    const work = `<${id(p.workBucket)}.Arn>`;
    const input = `<${id(stack.inputBucket)}.Arn>`;
    const output = `<${id(stack.outputBucket)}.Arn>`;
    const fnRoles = { plan: p.roles.plan, stage: p.roles.stage, finalize: p.roles.finalize, failure: p.roles.failure };
    // Four distinct roles, each the role of its own function.
    const roleIds = Object.values(fnRoles).map((r) => id(r));
    assert.equal(new Set(roleIds).size, 4, `distinct roles: ${roleIds.join(', ')}`);
    for (const [name, role] of Object.entries(fnRoles)) {
      const fnProps = flat(tpl.Resources[id(p.functions[name as keyof typeof fnRoles])]!.Properties) as Json;
      assert.equal(fnProps['Role'], `<${id(role)}.Arn>`, `the ${name} function runs as its own role`);
    }
    assert.equal(
      Object.values(tpl.Resources).filter(
        (r) => r.Type === 'AWS::IAM::Role' && JSON.stringify(r.Properties['AssumeRolePolicyDocument']).includes('lambda.amazonaws.com'),
      ).length,
      4,
    );

    const st = Object.fromEntries(Object.entries(fnRoles).map(([k, r]) => [k, policyStatements(id(r))])) as Record<keyof typeof fnRoles, Statement[]>;
    const taskSt = policyStatements(id(p.taskDefinition!.taskRole));
    const xray = ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'];
    for (const s of [...Object.values(st).flat(), ...taskSt]) {
      for (const a of arr(s.Action)) assert.ok(!a.includes('*'), `no wildcard action: ${a}`);
      // X-Ray's write APIs take only '*' (Lambda active tracing); nothing else may.
      if (arr(s.Action).every((a) => xray.includes(a))) continue;
      assert.ok(
        arr(s.Resource as string).every((r) => r !== '*'),
        `no Resource '*' for a function or task: ${JSON.stringify(s)}`,
      );
    }
    // No function starts GPU tasks or passes roles: the state machine does.
    for (const [name, sts] of Object.entries(st)) {
      for (const s of sts) for (const a of arr(s.Action)) assert.ok(!/^(ecs|iam|states|lambda):/.test(a), `${name}: ${a}`);
    }
    /** object resource -> sorted actions, over S3 object statements (ListBucket is checked by `list`). */
    const s3Access = (sts: Statement[]) => {
      const m: Record<string, string[]> = {};
      for (const s of sts) {
        const acts = arr(s.Action).filter((a) => a.startsWith('s3:') && a !== 's3:ListBucket');
        if (!acts.length) continue;
        for (const r of arr(s.Resource as string)) m[r] = [...(m[r] ?? []), ...acts].sort();
      }
      return m;
    };
    const list = (sts: Statement[], bucket: string) =>
      sts.filter((s) => s.Resource === bucket && arr(s.Action).includes('s3:ListBucket')).map((s) => s.Condition);
    const READ = ['s3:GetObject'];
    const WRITE = ['s3:AbortMultipartUpload', 's3:ListMultipartUploadParts', 's3:PutObject'];
    const ALL = [...READ, ...WRITE, 's3:DeleteObject'].sort();
    const runsList = [{ StringLike: { 's3:prefix': ['runs/*'] } }];
    const inputList = [{ StringLike: { 's3:prefix': [`${INPUT_PREFIX}*`] } }];
    const outputList = [{ StringLike: { 's3:prefix': [`${OUTPUT_PREFIX}*`] } }];

    // Plan: reads the input (planning the scan); reads and writes plans under runs/. Never the output.
    assert.deepEqual(s3Access(st.plan), { [`${work}/runs/*`]: ['s3:GetObject', 's3:PutObject'], [`${input}/${INPUT_PREFIX}*`]: READ });
    assert.deepEqual(list(st.plan, work), runsList);
    assert.deepEqual(list(st.plan, input), inputList);
    assert.deepEqual(list(st.plan, output), [], 'Plan cannot list the output');
    // Stage: reads the input, writes shards under runs/ only.
    assert.deepEqual(s3Access(st.stage), { [`${work}/runs/*`]: ALL, [`${input}/${INPUT_PREFIX}*`]: READ });
    assert.deepEqual(list(st.stage, work), runsList);
    assert.deepEqual(list(st.stage, input), inputList);
    // Finalize: reads runs/, writes summaries and work-bucket results under runs/, commits the output; never reads the input.
    assert.deepEqual(s3Access(st.finalize), {
      [`${work}/runs/*`]: READ,
      [`${work}/runs/*/summary.json`]: ['s3:PutObject'],
      [`${work}/runs/*/output/*`]: ['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:ListMultipartUploadParts', 's3:PutObject'],
      [`${output}/${OUTPUT_PREFIX}*`]: ALL,
    });
    assert.deepEqual(list(st.finalize, work), runsList);
    assert.deepEqual(list(st.finalize, output), outputList);
    assert.deepEqual(list(st.finalize, input), []);
    // Failure: reads runs/, writes only the failure records.
    assert.deepEqual(s3Access(st.failure), { [`${work}/runs/*`]: READ, [`${work}/runs/*/failure.json`]: ['s3:PutObject'] });
    assert.deepEqual(list(st.failure, work), runsList);
    // Writes: Stage and Plan only under runs/; only Finalize reaches the output.
    const writes = (sts: Statement[]) =>
      Object.entries(s3Access(sts))
        .filter(([, a]) => a.some((x) => x !== 's3:GetObject'))
        .map(([r]) => r);
    for (const name of ['plan', 'stage', 'failure'] as const) {
      for (const r of writes(st[name])) assert.ok(r.startsWith(`${work}/runs/`), `${name} writes only under runs/: ${r}`);
      assert.ok(!JSON.stringify(st[name]).includes(output), `${name} has no access to the output bucket`);
    }
    // Each function's logs go to its own group.
    for (const [name, sts] of Object.entries(st)) {
      const logsSt = sts.filter((s) => arr(s.Action).some((a) => a.startsWith('logs:')));
      assert.deepEqual(
        logsSt.map((s) => s.Resource),
        [`<${id(p.node.findChild(`${name[0]!.toUpperCase()}${name.slice(1)}Logs`))}.Arn>`],
      );
    }
    // The GPU tasks: runs/ read/write, input read (a GPU stage may be stage 0), no output.
    assert.deepEqual(s3Access(taskSt), { [`${work}/runs/*`]: ALL, [`${input}/${INPUT_PREFIX}*`]: READ });
    assert.deepEqual(list(taskSt, work), runsList);

    const smRole = id(p.stateMachine.role);
    const sm = policyStatements(smRole);
    const byAction = (a: string) => sm.filter((s) => arr(s.Action).includes(a));
    assert.deepEqual(
      byAction('lambda:InvokeFunction')
        .flatMap((s) => arr(s.Resource as string))
        .sort(),
      [p.functions.plan, p.functions.stage, p.functions.finalize, p.functions.failure].map((f) => `<${id(f)}.Arn>`).sort(),
    );
    assert.deepEqual(
      byAction('ecs:RunTask').map((s) => s.Resource),
      [`<${id(p.taskDefinition!)}>`],
    );
    assert.deepEqual(
      byAction('iam:PassRole')
        .flatMap((s) => arr(s.Resource as string))
        .sort(),
      [`<${id(p.taskDefinition!.taskRole)}.Arn>`, `<${id(p.taskDefinition!.executionRole!)}.Arn>`].sort(),
    );
    assert.ok(byAction('events:PutRule').length === 1);
    assert.equal(byAction('states:StartExecution').length, 1);
    assert.equal(byAction('states:StartExecution')[0]!.Resource, `<${id(p.stateMachine)}>`);
    assert.deepEqual(
      byAction('s3:GetObject')
        .flatMap((s) => arr(s.Resource as string))
        .sort(),
      [`${work}/fanout-sfn-map-results/*`, `${work}/runs/*`],
    );
    for (const s of sm)
      if (arr(s.Action).some((a) => a.startsWith('s3:')))
        assert.ok(
          arr(s.Resource as string).every((r) => r.startsWith(work)),
          'the state machine touches only the work bucket',
        );
  });

  it('GPU instances: egress HTTPS only, as the security group says; the agent role logs only to the task log group', () => {
    const p = stack.pipeline;
    const sgs = Object.entries(tpl.Resources).filter(
      ([, r]) => r.Type === 'AWS::EC2::SecurityGroup' && String(r.Properties['GroupDescription']).startsWith('fanout GPU'),
    );
    assert.equal(sgs.length, 1);
    const sg = flat(sgs[0]![1].Properties) as { GroupDescription: string; SecurityGroupEgress: Json[]; SecurityGroupIngress?: unknown };
    assert.match(sg.GroupDescription, /no inbound; outbound HTTPS \(TCP 443\) only/);
    assert.equal(sg.SecurityGroupIngress, undefined, 'no inbound rule');
    assert.deepEqual(
      sg.SecurityGroupEgress.map(({ Description: _d, ...r }) => r),
      [{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }],
    );
    // No separate egress resources widen it.
    const sgId = sgs[0]![0];
    assert.equal(sgId, id(p.instanceSecurityGroup!));
    assert.deepEqual(
      Object.values(tpl.Resources).filter((r) => r.Type === 'AWS::EC2::SecurityGroupEgress' && flat(r.Properties['GroupId']) === `<${sgId}.GroupId>`),
      [],
    );
    // The launch template uses it.
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', { LaunchTemplateData: { SecurityGroupIds: [{ 'Fn::GetAtt': [sgId, 'GroupId'] }] } });

    const agent = policyStatements(id(p.node.findChild('GpuInstanceRole')));
    const logSt = agent.filter((s) => arr(s.Action).some((a) => a.startsWith('logs:')));
    assert.equal(logSt.length, 1);
    assert.deepEqual(arr(logSt[0]!.Action).sort(), ['logs:CreateLogStream', 'logs:PutLogEvents']);
    assert.equal(logSt[0]!.Resource, `<${id(p.node.findChild('GpuTaskLogs'))}.Arn>`, 'instance role logs only to the task log group');
    for (const s of agent) {
      for (const a of arr(s.Action)) assert.ok(!a.includes('*'), `no wildcard action: ${a}`);
      if (s.Resource === '*') {
        // Only the calls that accept no resource, or carry the cluster condition.
        for (const a of arr(s.Action))
          assert.ok(
            ['ecs:DiscoverPollEndpoint', 'ecr:GetAuthorizationToken'].includes(a) || (s.Condition && JSON.stringify(s.Condition).includes('ecs:cluster')),
            `${a} on '*'`,
          );
      }
    }
    assert.ok(
      agent.some((s) => arr(s.Action).includes('ecs:RegisterContainerInstance') && s.Resource === `<${id(p.cluster!)}.Arn>`),
      'the agent still registers with this cluster',
    );
    assert.ok(
      agent.some((s) => arr(s.Action).includes('ecs:Poll')),
      'the agent still polls',
    );
    // The role is the instances' role: one instance profile, this role.
    const profiles = Object.values(tpl.Resources)
      .filter((r) => r.Type === 'AWS::IAM::InstanceProfile')
      .map((r) => flat(r.Properties['Roles']));
    assert.deepEqual(profiles, [[`<${id(p.node.findChild('GpuInstanceRole'))}>`]]);
  });

  it('Stage reserved concurrency: set when asked for, validated; readableInputs and FANOUT_OUTPUT_PREFIX follow the props', () => {
    type Props = Partial<ConstructorParameters<typeof FanoutPipeline>[2]>;
    /** A pipeline in a stack of its own; `props` may create buckets in that stack. */
    const make = (props: Props | ((st: Stack) => Props)) => {
      const st = new Stack(new App({ context: SKIP_BUNDLING }), 'Props');
      const p = new FanoutPipeline(st, 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'cpu' }], ...(typeof props === 'function' ? props(st) : props) });
      return { p, t: Template.fromStack(st), st };
    };
    let extra!: s3.Bucket;
    const { p, t, st } = make((s) => {
      extra = new s3.Bucket(s, 'Extra');
      return {
        lambda: { stageReservedConcurrency: 25 },
        readableInputs: [{ bucket: extra, prefix: 'shared/data' }],
        output: { bucket: new s3.Bucket(s, 'Out'), prefix: 'r' },
      };
    });
    const fnProps = (f: unknown) =>
      (t.toJSON() as { Resources: Record<string, { Properties: Json }> }).Resources[
        st.getLogicalId((f as { node: { defaultChild: CfnElement } }).node.defaultChild)
      ]!.Properties;
    assert.equal(fnProps(p.functions.stage)['ReservedConcurrentExecutions'], 25);
    for (const f of [p.functions.plan, p.functions.finalize, p.functions.failure]) assert.equal(fnProps(f)['ReservedConcurrentExecutions'], undefined);
    for (const f of Object.values(p.functions)) {
      const env = flat((fnProps(f)['Environment'] as Json)['Variables']) as Json;
      assert.match(String(env['FANOUT_OUTPUT_PREFIX']), /^s3:\/\/.+\/r\/$/, 'the output prefix, normalized with its slash');
    }
    // readableInputs: Plan and Stage read them (object GET under the prefix, listing limited to it); Finalize and Failure do not.
    const tj = t.toJSON() as typeof tpl;
    const statementsOf = (role: IConstruct) => {
      const rid = st.getLogicalId((role as unknown as { node: { defaultChild: CfnElement } }).node.defaultChild);
      return Object.values(tj.Resources)
        .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties['Roles'] as unknown[]).some((x) => JSON.stringify(x).includes(rid)))
        .flatMap((r) => (r.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement);
    };
    const extraArn = JSON.stringify(st.resolve(extra.bucketArn)).slice(1, -1);
    const reads = (role: IConstruct) => statementsOf(role).filter((s) => JSON.stringify(s.Resource).includes(extraArn));
    for (const role of [p.roles.plan, p.roles.stage]) {
      const sts = reads(role);
      assert.deepEqual(sts.map((s) => arr(s.Action)).sort(), [['s3:GetObject'], ['s3:ListBucket']]);
      assert.ok(JSON.stringify(sts).includes('/shared/data/*'), JSON.stringify(sts));
      assert.deepEqual(sts.find((s) => arr(s.Action).includes('s3:ListBucket'))!.Condition, { StringLike: { 's3:prefix': ['shared/data/*'] } });
    }
    for (const role of [p.roles.finalize, p.roles.failure]) assert.deepEqual(reads(role), []);

    // No output configured: an empty FANOUT_OUTPUT_PREFIX, so the handlers refuse any output an input names.
    const none = make({});
    for (const f of Object.values(none.p.functions)) {
      const env = (none.t.toJSON() as typeof tpl).Resources[none.st.getLogicalId(f.node.defaultChild as CfnElement)]!.Properties['Environment'] as {
        Variables: Json;
      };
      assert.equal(env.Variables['FANOUT_OUTPUT_PREFIX'], '');
    }

    const bad = (v: number) =>
      assert.throws(() => make({ lambda: { stageReservedConcurrency: v } }), /lambda\.stageReservedConcurrency must be a positive integer, got /);
    bad(0);
    bad(-3);
    bad(2.5);
    bad(Number.NaN);
  });

  it('the example app takes the Stage reserved concurrency from context (-c fanout:stageReservedConcurrency=N)', async () => {
    const stageOf = async (context: Record<string, unknown>) => {
      const made = await createApp({ outdir: tempDir('fanout-cdk-'), nag: false, context: { ...SKIP_BUNDLING, ...context } });
      const t = made.app.synth().getStackByName(made.stack.stackName).template as typeof tpl;
      return t.Resources[made.stack.getLogicalId(made.stack.pipeline.functions.stage.node.defaultChild as CfnElement)]!.Properties;
    };
    assert.equal((await stageOf({ 'fanout:stageReservedConcurrency': '40' }))['ReservedConcurrentExecutions'], 40);
    await assert.rejects(stageOf({ 'fanout:stageReservedConcurrency': 'many' }), /lambda\.stageReservedConcurrency must be a positive integer, got NaN/);
  });

  it('sizes the Stage Lambda and GPU task from UDF resource requests; validates its inputs', () => {
    const app = new App({ context: SKIP_BUNDLING });
    const st = new Stack(app, 'Sizing');
    const p = new FanoutPipeline(st, 'P', {
      entry: EXAMPLE_ENTRY,
      udfs: [
        { name: 'cpu', numCpus: 2, memoryBytes: 5 * 2 ** 30 },
        { name: 'gpu', numGpus: 2, numCpus: 4, memoryBytes: 24 * 2 ** 30 },
      ],
      gpu: { instanceType: 'g6.12xlarge', maxCapacity: 1 },
      maxConcurrency: 50,
    });
    assert.deepEqual(p.sizing, {
      planMemoryMiB: 1769,
      stageMemoryMiB: 5120,
      timeoutSeconds: 900,
      gpu: { gpus: 2, memoryReservationMiB: 24576, cpu: 4096, instanceType: 'g6.12xlarge' },
    });
    const t = Template.fromStack(st);
    t.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 5120 });
    t.hasResourceProperties('AWS::ECS::TaskDefinition', { ContainerDefinitions: [{ ResourceRequirements: [{ Type: 'GPU', Value: '2' }], Cpu: 4096 }] });
    // No watched input: no rule, and no GPU when no UDF asks for one and gpu is not given.
    t.resourceCountIs('AWS::Events::Rule', 0);
    const cpuOnly = new FanoutPipeline(new Stack(new App({ context: SKIP_BUNDLING }), 'CpuOnly'), 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'cpu' }] });
    assert.equal(cpuOnly.cluster, undefined);
    Template.fromStack(Stack.of(cpuOnly)).resourceCountIs('AWS::ECS::Cluster', 0);

    const bad = (props: Partial<ConstructorParameters<typeof FanoutPipeline>[2]>, msg: RegExp) => {
      const s = new Stack(new App({ context: SKIP_BUNDLING }), 'Bad');
      assert.throws(() => new FanoutPipeline(s, 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'g', numGpus: 1 }], ...props }), msg);
    };
    bad({ gpu: { instanceType: 'm5.large' } }, /not an x86_64 NVIDIA GPU type/);
    bad({ gpu: { instanceType: 'g5g.xlarge' } }, /not an x86_64 NVIDIA GPU type/);
    const shared = new s3.Bucket(new Stack(new App(), 'B'), 'B');
    bad({ input: { bucket: shared, prefix: 'data/' }, output: { bucket: shared, prefix: 'data/out/' } }, /overlaps the watched input prefix/);
    bad({ lambda: { memoryMiB: 20000 } }, /memoryMiB must be an integer/);
  });

  it('validates the GPU task sizes and maxConcurrency up front, naming the prop', () => {
    const bad = (props: Partial<ConstructorParameters<typeof FanoutPipeline>[2]>, msg: RegExp) => {
      const s = new Stack(new App({ context: SKIP_BUNDLING }), 'Bad');
      assert.throws(() => new FanoutPipeline(s, 'P', { entry: EXAMPLE_ENTRY, udfs: [{ name: 'g', numGpus: 1 }], ...props }), msg);
    };
    bad({ gpu: { gpusPerTask: 0.5 } }, /^Error: FanoutPipeline: gpu\.gpusPerTask must be a positive integer, got 0\.5$/);
    bad({ gpu: { memoryReservationMiB: 0 } }, /FanoutPipeline: gpu\.memoryReservationMiB must be a positive integer, got 0/);
    bad({ gpu: { cpu: -1024 } }, /FanoutPipeline: gpu\.cpu must be a positive integer, got -1024/);
    bad({ gpu: { rootVolumeGiB: Number.NaN } }, /FanoutPipeline: gpu\.rootVolumeGiB must be a positive integer, got NaN/);
    bad({ maxConcurrency: 0 }, /FanoutPipeline: maxConcurrency must be a positive integer, got 0/);
    bad({ gpu: { minCapacity: 3, maxCapacity: 2 } }, /gpu\.minCapacity <= gpu\.maxCapacity/);
    // Valid values still synthesize, and reach the task definition.
    const st = new Stack(new App({ context: SKIP_BUNDLING }), 'Good');
    new FanoutPipeline(st, 'P', {
      entry: EXAMPLE_ENTRY,
      udfs: [{ name: 'g', numGpus: 1 }],
      gpu: { gpusPerTask: 1, memoryReservationMiB: 8192, cpu: 2048, rootVolumeGiB: 150 },
      maxConcurrency: 5,
    });
    Template.fromStack(st).hasResourceProperties('AWS::ECS::TaskDefinition', { ContainerDefinitions: [{ MemoryReservation: 8192, Cpu: 2048 }] });
  });

  it('one Lambda sizing rule: explain() shows the Stage memory the template deploys, for memory-hungry UDFs', async () => {
    const hungry = func((x: number) => x + 1, { name: 'sizingHungry', returnDtype: DataType.float64(), memoryBytes: 6 * 2 ** 30 });
    const onGpu = func((x: number) => x * 2, { name: 'sizingGpu', returnDtype: DataType.float64(), numGpus: 1 });
    const modest = func((x: number) => x - 1, { name: 'sizingModest', returnDtype: DataType.float64(), memoryBytes: 3 * 2 ** 30 });
    /** The per-stage Lambda memory explain() prints, and the Stage function's MemorySize for the same UDFs. */
    const both = async (df: { explain(o: { stages: boolean }): Promise<string> }, names: string[]) => {
      const text = await df.explain({ stages: true });
      const explained = [...text.matchAll(/^Stage \d+: lambda, .*?, (\d+) MiB,/gm)].map((m) => Number(m[1]));
      const st = new Stack(new App({ context: SKIP_BUNDLING }), 'SizingRule');
      const p = new FanoutPipeline(st, 'P', { entry: EXAMPLE_ENTRY, udfs: registeredUdfHints().filter((h) => names.includes(h.name)) });
      const fn = (Template.fromStack(st).toJSON() as typeof tpl).Resources[st.getLogicalId(p.functions.stage.node.defaultChild as CfnElement)]!;
      return { explained, deployed: fn.Properties['MemorySize'] as number, sizing: p.sizing.stageMemoryMiB, text };
    };

    // One CPU stage: explain's memory is the template's, and it is the UDF's memoryBytes (6 GiB), not the 1,769 MiB default.
    const one = await both(fromRecords([{ x: 1.5 }]).withColumn('a', hungry(col('x'))), ['sizingHungry']);
    assert.deepEqual(one.explained, [6144], one.text);
    assert.equal(one.deployed, 6144);
    assert.equal(one.sizing, 6144);

    // Two CPU stages around a GPU stage: one Stage function runs both, sized for the larger one explain() shows.
    const df = fromRecords([{ x: 1.5 }])
      .withColumn('a', hungry(col('x')))
      .withColumn('b', onGpu(col('a')))
      .withColumn('c', modest(col('b')));
    const two = await both(df, ['sizingHungry', 'sizingGpu', 'sizingModest']);
    assert.deepEqual(two.explained, [6144, 3072], two.text);
    assert.match(two.text, /Stage 1: ecs-gpu/);
    assert.equal(two.deployed, Math.max(...two.explained));
  });
});

describe('cdk-nag', () => {
  it('AwsSolutions: no unacknowledged finding; every acknowledgment is specific and has a reason', async () => {
    const outdir = tempDir('fanout-nag-');
    const { app } = await createApp({ outdir, context: SKIP_BUNDLING, nag: true });
    app.synth(); // throws ValidationFailed with the report when a finding is not acknowledged
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: { pluginName: string; conclusion?: string; violations: unknown[] }[];
    };
    for (const r of report.pluginReports) assert.deepEqual(r.violations, [], `${r.pluginName}: ${JSON.stringify(r.violations).slice(0, 2000)}`);
    const acks: { at: string; id: string; reason: string }[] = [];
    for (const c of app.node.findAll()) {
      for (const m of c.node.metadata) {
        if (m.type !== 'aws:cdk:acknowledged-rules') continue;
        for (const [rid, reason] of Object.entries(m.data as Record<string, string>)) {
          // aws-cdk-lib acknowledges a few of its own CloudFormation-Validate rules; these are ours.
          if (rid.includes('AwsSolutions')) acks.push({ at: c.node.path, id: rid, reason });
        }
      }
    }
    assert.ok(acks.length >= 10, `acknowledgments found: ${acks.length}`);
    for (const a of acks) {
      assert.match(a.id, /AwsSolutions-/, `${a.at}: ${a.id}`);
      assert.ok(a.reason.trim().length >= 30, `${a.at}: ${a.id} needs a real reason, got '${a.reason}'`);
      // Resource::* is acknowledged only on the constructs whose AWS APIs need it, never stack- or pipeline-wide.
      // The function roles' one: X-Ray tracing, whose write APIs take only '*'.
      if (a.id.includes('[Resource::*]')) {
        assert.match(a.at, /\/(StateMachine|GpuInstanceRole|GpuTaskDefinition|PlanRole|StageRole|FinalizeRole|FailureRole)$/, `${a.at}: ${a.id}`);
        if (a.at.endsWith('Role') && !a.at.endsWith('GpuInstanceRole')) assert.match(a.reason, /^X-Ray tracing/, `${a.at}: ${a.id}`);
      }
    }
  });

  it('the pack is live: an unacknowledged violation fails synth', () => {
    const outdir = tempDir('fanout-nag-');
    const app = new App({ outdir });
    const st = new Stack(app, 'Leaky');
    new s3.Bucket(st, 'Open', { enforceSSL: false });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    const printed = console.error;
    console.error = () => undefined; // the CDK prints the report it is about to throw for
    try {
      assert.throws(() => app.synth(), /Validation failed/);
    } finally {
      console.error = printed;
    }
    const report = readFileSync(join(outdir, 'validation-report.json'), 'utf8');
    assert.match(report, /AwsSolutions-S10/);
  });
});

describe('npx cdk synth (the app in cdk.json)', () => {
  it('synthesizes to cdk.out offline: no credentials, no Docker, bundles built by the local esbuild', async () => {
    const out = join(ROOT, 'cdk.out');
    rmSync(out, { recursive: true, force: true });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_EC2_METADATA_DISABLED: 'true',
      CDK_DISABLE_VERSION_CHECK: '1',
      CDK_DOCKER: '/nonexistent/docker-must-not-run',
    };
    for (const k of Object.keys(env))
      if (/^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|PROFILE|ENDPOINT_URL.*)$/.test(k) || k === 'CDK_VALIDATION' || k === 'NODE_OPTIONS')
        delete env[k];
    const t0 = performance.now();
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolveRun) => {
      const child = spawn('npx', ['cdk', 'synth', '--quiet', '--no-notices'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.on('close', (c) => resolveRun({ code: c, output: text }));
    });
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(code, 0, output.slice(-4000));
    console.log(`npx cdk synth: ${seconds.toFixed(1)} s`);

    const manifest = JSON.parse(readFileSync(join(out, `${STACK_NAME}.assets.json`), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging?: string } }>;
      dockerImages: Record<string, { source: { directory: string; dockerFile?: string; dockerBuildArgs?: Json; platform?: string } }>;
    };
    const bundles = Object.values(manifest.files)
      .filter((f) => f.source.packaging === 'zip')
      .map((f) => join(out, f.source.path));
    assert.equal(bundles.length, 4, 'one bundle per function');
    for (const b of bundles) {
      for (const f of [
        'index.mjs',
        'package.json',
        's3-sync-worker.js',
        'node_modules/parquet-wasm/node/parquet_wasm_bg.wasm',
        'node_modules/synckit/register.cjs',
      ]) {
        assert.ok(existsSync(join(b, f)), `${b}: ${f}`);
      }
      assert.ok(!existsSync(join(b, 'node_modules/onnxruntime-node')), 'onnxruntime-node stays out of Lambda bundles');
    }
    const images = Object.values(manifest.dockerImages);
    assert.equal(images.length, 1);
    assert.equal(images[0]!.source.dockerFile, 'cdk/gpu-task/Dockerfile');
    assert.deepEqual(images[0]!.source.dockerBuildArgs, { PIPELINE_ENTRY: 'examples/pipeline.ts', FANOUT_DIR: '.', ESBUILD_CONDITIONS: 'development' });
    const context = join(out, images[0]!.source.directory);
    assert.ok(existsSync(join(context, 'cdk/gpu-task/Dockerfile')) && existsSync(join(context, 'package-lock.json')));
    assert.ok(
      !existsSync(join(context, 'node_modules')) && !existsSync(join(context, 'cdk.out')) && !existsSync(join(context, 'cdk/app.ts')),
      'staged, not built: a lean context',
    );

    // A bundle loads in plain Node, away from the project's node_modules: handler and pipeline in one module.
    const plan = bundles.find((b) => readFileSync(join(b, 'index.mjs'), 'utf8').includes('lambdas/plan.ts'));
    assert.ok(plan, 'the Plan bundle');
    const copy = join(tempDir('fanout-bundle-'), 'task');
    cpSync(plan, copy, { recursive: true });
    const probe = await new Promise<string>((resolveProbe, rejectProbe) => {
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const m = await import(${JSON.stringify(join(copy, 'index.mjs'))}); const u = await import('node:module');` +
            `console.log(typeof m.handler, typeof m.default, typeof u.createRequire(${JSON.stringify(join(copy, 'index.mjs'))})('synckit').createSyncFn);`,
        ],
        { cwd: copy, env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let text = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('close', (c) => (c === 0 ? resolveProbe(text.trim()) : rejectProbe(new Error(err))));
    });
    assert.equal(probe, 'function function function');
  });
});

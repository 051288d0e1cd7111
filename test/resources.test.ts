// Per-stage resources (issue 11 item 5): per-UDF `aws` options checked at definition time; each CPU
// stage on its own Lambda sizing class (one Stage function per class, routed by the state machine,
// and explain() reports what the template deploys); stages beyond Lambda's limits on Fargate tasks
// through the ECS entrypoint; fractional GPUs packed into one ECS task.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { App, type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { cls, DataType, func, setRunner, shutdownWorkers } from 'fanout';
import { startLocalCloud, type LocalCloud } from 'fanout/local';
import { EXAMPLE_ENTRY } from '../cdk/app.ts';
import { FanoutPipeline } from '../cdk/fanout-pipeline.ts';
import { putS3Object } from '../src/io/s3/index.ts';
import { udfPlacement } from '../src/aws/placement.ts';
import type { AslDefinition, AslState } from '../src/aws/state-machine.ts';
import pipeline, { lambdaOnly } from './fixtures/resources-pipeline.ts';
import { tempDir, writeSample } from './helpers.ts';

process.env['CDK_VALIDATION'] = 'false';
const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

function findState(def: { States: Record<string, AslState> }, name: string): AslState | undefined {
  for (const [n, s] of Object.entries(def.States)) {
    if (n === name) return s;
    const inner = s.ItemProcessor ?? s.Iterator;
    const found = inner ? findState(inner, name) : undefined;
    if (found) return found;
  }
  return undefined;
}

/** Intrinsics as text: Ref -> <Id>, GetAtt -> <Id.Attr>, joins concatenated. */
function flat(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(flat);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o['Ref'] === 'string') return `<${o['Ref']}>`;
    if (Array.isArray(o['Fn::GetAtt'])) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
    if (Array.isArray(o['Fn::Join'])) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map((p) => (typeof flat(p) === 'string' ? flat(p) : JSON.stringify(flat(p)))).join(sep);
    }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, flat(x)]));
  }
  return v;
}

describe('aws UDF options are checked when the UDF is defined', () => {
  const f =
    (aws: unknown, extra: Record<string, unknown> = {}) =>
    () =>
      func((x: number) => x, { name: `awsopt.${Math.random()}`, returnDtype: DataType.float64(), ...extra, aws } as never);
  it('refuses values outside Lambda and ECS limits, naming the UDF and the option', () => {
    assert.throws(f({ lambdaMemoryMb: 64 }), /UDF 'awsopt\.[\d.]+': option 'aws\.lambdaMemoryMb' must be an integer 128\.\.10240/);
    assert.throws(f({ lambdaMemoryMb: 20000 }), /aws\.lambdaMemoryMb' must be an integer 128\.\.10240 .*runOn 'fargate'/);
    assert.throws(f({ timeoutSeconds: 1200, runOn: 'lambda' }), /aws\.timeoutSeconds' is 1200, above Lambda's 900 s limit/);
    assert.throws(f({ timeoutSeconds: 0 }), /aws\.timeoutSeconds' must be a positive integer/);
    assert.throws(f({ ephemeralStorageMb: 256 }), /aws\.ephemeralStorageMb' must be an integer 512\.\.10240/);
    assert.throws(f({ ephemeralStorageMb: 20000 }), /512\.\.10240/);
    assert.throws(f({ architecture: 'sparc' }), /aws\.architecture' must be 'arm64' or 'x86_64'/);
    assert.throws(f({ runOn: 'k8s' }), /aws\.runOn' must be 'lambda', 'fargate' or 'ecs'/);
    assert.throws(f({ runOn: 'ecs' }), /aws\.runOn' is 'ecs' .*asks for no GPU/);
    assert.throws(f({ instanceType: 'g5.xlarge' }), /aws\.instanceType' applies to GPU UDFs only/);
    assert.throws(f({ instanceType: 'm5.large' }, { numGpus: 1 }), /aws\.instanceType' is m5\.large, not an x86_64 NVIDIA GPU type/);
    assert.throws(f({ runOn: 'lambda' }, { numGpus: 1 }), /aws\.runOn' is 'lambda', but the UDF asks for numGpus 1/);
    assert.throws(f({ lambdaMemoryMb: 1024, runOn: 'fargate' }), /aws\.lambdaMemoryMb' sizes a Lambda function/);
    assert.throws(f({ memory: 1 }), /aws\.memory' is not an AWS option/);
    assert.throws(f('big'), /option 'aws' must be an object/);
    // Within the limits: accepted, and Fargate takes more /tmp than Lambda.
    f({ lambdaMemoryMb: 128, timeoutSeconds: 900, ephemeralStorageMb: 10240, architecture: 'arm64', runOn: 'lambda' })();
    f({ runOn: 'fargate', ephemeralStorageMb: 100_000, timeoutSeconds: 86_400 })();
    f({ instanceType: 'g6.xlarge', runOn: 'ecs' }, { numGpus: 0.5 })();
  });

  it('a cls method merges its own aws options over its class, and each is checked', () => {
    class M {
      run(x: number): number {
        return x;
      }
      other(x: number): number {
        return x;
      }
    }
    const H = cls(M, {
      name: 'awsopt.M',
      aws: { architecture: 'arm64', lambdaMemoryMb: 1024 },
      methods: { run: { returnDtype: DataType.float64(), aws: { lambdaMemoryMb: 2048 } }, other: { returnDtype: DataType.float64() } },
    });
    const h = new H();
    assert.deepEqual({ ...h.run.definition.options.aws }, { architecture: 'arm64', lambdaMemoryMb: 2048 });
    assert.deepEqual({ ...h.other.definition.options.aws }, { architecture: 'arm64', lambdaMemoryMb: 1024 });
    assert.throws(
      () => cls(M, { name: 'awsopt.M2', methods: { run: { returnDtype: DataType.float64(), aws: { timeoutSeconds: -1 } } } }),
      /UDF 'awsopt\.M2\.run': option 'aws\.timeoutSeconds'/,
    );
  });

  it('places stages: estimated Fargate beyond 10 GB or 900 s, fractional GPUs packed per task', () => {
    assert.equal(udfPlacement({ name: 'a', memoryBytes: 12 * 2 ** 30 }).executor, 'fargate');
    assert.equal(udfPlacement({ name: 'a', aws: { timeoutSeconds: 3600 } }).executor, 'fargate');
    assert.equal(udfPlacement({ name: 'a', memoryBytes: 8 * 2 ** 30 }).executor, 'lambda');
    assert.deepEqual(udfPlacement({ name: 'a', memoryBytes: 12 * 2 ** 30, numCpus: 2 }), {
      executor: 'fargate',
      key: 'fargate-2048cpu-12288mb-900s-x86_64-tmp21gb',
      cpu: 2048,
      memoryMiB: 12288,
      timeoutSeconds: 900,
      architecture: 'x86_64',
      ephemeralStorageGiB: 21,
    });
    assert.deepEqual(udfPlacement({ name: 'g', numGpus: 0.5, concurrency: 2 }), {
      executor: 'ecs-gpu',
      key: 'gpu-default-1gpu',
      instanceType: 'g5.xlarge',
      gpusPerTask: 1,
      instancesPerTask: 2,
    });
    // Four 0.25 instances share one device per task; whole GPUs: one instance per task.
    assert.deepEqual(udfPlacement({ name: 'g', numGpus: 0.25, concurrency: 8 }), {
      executor: 'ecs-gpu',
      key: 'gpu-default-1gpu',
      instanceType: 'g5.xlarge',
      gpusPerTask: 1,
      instancesPerTask: 4,
    });
    assert.equal((udfPlacement({ name: 'g', numGpus: 2, aws: { instanceType: 'g6.12xlarge' } }) as { key: string }).key, 'gpu-g6.12xlarge-2gpu');
  });
});

describe('each CPU stage on its own sizing class: explain() and the template agree', () => {
  let file: string;
  before(async () => {
    file = join(tempDir(), 'in.parquet');
    await writeSample(file, 0, 400, 200);
  });
  after(() => setRunner('native'));

  it('a 512 MB UDF and a 4 GB UDF: two Stage sizings, routed by the state machine, as explain() shows', async () => {
    setRunner('aws', { stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:x', workBucket: 'work' });
    const text = await lambdaOnly({ uri: file }).explain();
    const stages = [...text.matchAll(/^Stage (\d+): lambda, .*?, (\d+) MiB, (\d+) s timeout, (x86_64|arm64), \/tmp (\d+) MiB, function (\w+),/gm)].map((m) => ({
      memory: Number(m[2]),
      timeout: Number(m[3]),
      arch: m[4],
      tmp: Number(m[5]),
      id: m[6]!,
    }));
    assert.equal(stages.length, 2, text);
    assert.deepEqual(
      stages.map((s) => s.memory),
      [512, 4096],
    );

    const st = new Stack(new App({ context: SKIP_BUNDLING }), 'PerStage');
    // The construct's default UDFs: every UDF registered in this process, as explain() assumes.
    const p = new FanoutPipeline(st, 'P', { entry: EXAMPLE_ENTRY, gpu: false });
    const tpl = Template.fromStack(st).toJSON() as { Resources: Resources };
    const stageFns = Object.entries(tpl.Resources).filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function' && String((r.Properties['Description'] as string) ?? '').includes('one partition of one CPU stage'),
    );
    const sizes = new Set(stageFns.map(([, r]) => r.Properties['MemorySize']));
    assert.ok(sizes.has(512) && sizes.has(4096), `Stage function sizes: ${[...sizes].join(', ')}`);
    for (const s of stages) {
      // The function explain() names is in the template, with exactly the sizing explain() printed.
      const fn = s.id === 'StageFunction' ? p.functions.stage : p.node.findChild(s.id);
      const logical = st.getLogicalId(fn.node.defaultChild as CfnElement);
      const props = tpl.Resources[logical]!.Properties;
      assert.equal(props['MemorySize'], s.memory, s.id);
      assert.equal(props['Timeout'], s.timeout, s.id);
      assert.deepEqual(props['Architectures'], [s.arch], s.id);
      assert.equal((props['EphemeralStorage'] as { Size?: number } | undefined)?.Size ?? 512, s.tmp, s.id);
    }
    // The state machine routes each class key to its function; the 512 MB class is not the main function.
    const sm = Object.values(tpl.Resources).find((r) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    const def = JSON.parse(flat(sm.Properties['DefinitionString']) as string) as AslDefinition;
    const select = findState(def, 'SelectStageFunction')!;
    assert.equal(select.Type, 'Choice');
    const smallKey = 'lambda-512mb-900s-x86_64-tmp512';
    const choice = select.Choices!.find((c) => JSON.stringify(c).includes(smallKey));
    assert.ok(choice, JSON.stringify(select.Choices));
    const use = findState(def, choice.Next)!;
    const smallFn = p.stageFunctions[smallKey]!;
    assert.equal(use.Result, `<${st.getLogicalId(smallFn.node.defaultChild as CfnElement)}.Arn>`);
    // A Distributed Map batches its items (ItemBatcher): the class's function travels in BatchInput.
    assert.deepEqual(findState(def, 'RunPartition')!.Parameters, { 'FunctionName.$': '$.BatchInput.stageFunction', 'Payload.$': '$' });
    assert.deepEqual((findState(def, 'Partitions')!.ItemBatcher as Record<string, unknown>)['BatchInput'], { 'stageFunction.$': '$.stageFunction' });
    assert.equal(p.classSizing.stageClasses[smallKey]?.memoryMiB, 512);
  });

  it('Fargate and fractional GPU classes synthesize their task definitions', () => {
    const st = new Stack(new App({ context: SKIP_BUNDLING }), 'Tasks');
    const p = new FanoutPipeline(st, 'P', {
      entry: EXAMPLE_ENTRY,
      udfs: [
        { name: 'long', aws: { runOn: 'fargate', timeoutSeconds: 7200 }, memoryBytes: 16 * 2 ** 30, numCpus: 4 },
        { name: 'half', numGpus: 0.5, concurrency: 2 },
        { name: 'big', numGpus: 1, aws: { instanceType: 'g6.12xlarge' } },
      ],
    });
    const t = Template.fromStack(st);
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      Cpu: '4096',
      Memory: '16384',
      RuntimePlatform: { CpuArchitecture: 'X86_64' },
      ContainerDefinitions: [{ Name: 'fanout-cpu' }],
    });
    // Fargate stages print EMF metrics as the Stage Lambda does.
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'FANOUT_METRICS', Value: 'emf' },
            { Name: 'FANOUT_METRICS_PIPELINE', Value: 'Tasks/P' },
          ]),
        }),
      ],
    });
    // 0.5 x 2 instances: one GPU per task.
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [{ Name: 'fanout-gpu', ResourceRequirements: [{ Type: 'GPU', Value: '1' }] }],
    });
    // Another instance type: its own launch template and capacity provider.
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', { LaunchTemplateData: { InstanceType: 'g6.12xlarge' } });
    t.resourceCountIs('AWS::ECS::CapacityProvider', 2);
    assert.ok(p.gpuClasses['gpu-g6.12xlarge-1gpu'], Object.keys(p.gpuClasses).join(', '));
    const tpl = t.toJSON() as { Resources: Resources };
    const sm = Object.values(tpl.Resources).find((r) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    const def = JSON.parse(flat(sm.Properties['DefinitionString']) as string) as AslDefinition;
    const run = findState(def, 'RunFargateTask')!;
    assert.equal(run.Parameters!['LaunchType'], 'FARGATE');
    assert.equal(run.TimeoutSeconds, 7200 + 600);
    assert.ok(findState(def, 'SelectGpuTask'), 'GPU classes are routed');
  });

  it('cdk-nag AwsSolutions stays clean with Lambda classes, Fargate and a second GPU instance type', () => {
    const outdir = tempDir('fanout-nag-');
    const app = new App({ outdir, context: SKIP_BUNDLING });
    new FanoutPipeline(new Stack(app, 'NagPerStage'), 'P', {
      entry: EXAMPLE_ENTRY,
      udfs: [
        { name: 'small', aws: { lambdaMemoryMb: 512, architecture: 'arm64' } },
        { name: 'long', aws: { runOn: 'fargate', timeoutSeconds: 7200 } },
        { name: 'half', numGpus: 0.5, concurrency: 2 },
        { name: 'big', numGpus: 1, aws: { instanceType: 'g6.12xlarge' } },
      ],
    });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    app.synth(); // throws with the report when a finding is not acknowledged
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: { pluginName: string; violations: unknown[] }[];
    };
    for (const r of report.pluginReports) assert.deepEqual(r.violations, [], `${r.pluginName}: ${JSON.stringify(r.violations).slice(0, 2000)}`);
  });
});

describe('local harness: Fargate stage and packed fractional GPUs run through the ECS entrypoint', () => {
  let cloud: LocalCloud;
  let input: string;
  const dir = tempDir();
  before(async () => {
    process.env['FANOUT_TEST_DIR'] = dir;
    writeFileSync(join(dir, 'devices.log'), '');
    // The ECS task sees one GPU: both 0.5 instances must share device 0 in the one task.
    cloud = await startLocalCloud({ pipeline: join(import.meta.dirname, 'fixtures', 'resources-pipeline.ts'), env: { FANOUT_NUM_GPUS: '1' } });
    const local = tempDir();
    for (let i = 0; i < 2; i++) {
      const f = join(local, `p${i}.parquet`);
      await writeSample(f, i * 300, 300, 300);
      await putS3Object(`s3://${cloud.inputBucket}/in/p${i}.parquet`, readFileSync(f));
    }
    input = `s3://${cloud.inputBucket}/in/`;
  });
  after(async () => {
    setRunner('native');
    await shutdownWorkers();
    await cloud?.stop();
  });

  it('four stages (two Lambda classes, Fargate, GPU); one GPU task runs both actors on device 0', async () => {
    setRunner('aws', { ...cloud.runnerOptions, targetPartitionBytes: 1 });
    const text = await pipeline({ uri: input }).explain();
    assert.match(text, /Stage 0: lambda, 2 partition\(s\), concurrency 2, 512 MiB/);
    assert.match(text, /Stage 1: lambda, 2 partition\(s\), concurrency 2, 4096 MiB, 600 s timeout/);
    assert.match(
      text,
      /Stage 2: fargate, 2 partition\(s\), one task each, concurrency 2, 1 vCPU, 2048 MiB, 7200 s timeout, x86_64, 21 GiB ephemeral, task definition Fargate1024cpu2048mb7200sX8664Tmp21gbTaskDefinition/,
    );
    assert.match(text, /Stage 3: ecs-gpu, 2 partition\(s\) over 1 task\(s\), numGpus 0\.5, g5\.xlarge, 1 GPU\(s\) per task, 2 instance\(s\) per task/);
    const rows = await pipeline({ uri: input }).toRows();
    assert.equal(rows.length, 600);
    const stats = cloud.stats();
    assert.equal(stats['fargateTasks'], 2, 'one Fargate task per partition');
    assert.equal(stats['ecsTasks'], 3, 'two Fargate tasks and one GPU task');
    const devices = readFileSync(join(dir, 'devices.log'), 'utf8').trim().split('\n');
    assert.equal(devices.length, 2, `two actor instances: ${devices.join(' ')}`);
    assert.deepEqual(
      devices.map((l) => l.split(':')[1]),
      ['0', '0'],
    );
    assert.notEqual(devices[0]!.split(':')[0], devices[1]!.split(':')[0], 'two processes');
    assert.ok(rows.every((r) => String(r.d).startsWith('0:')));
    // The same values as the embedded runner (the device column aside: no GPU in this process).
    setRunner('native', { workers: false });
    const want = await pipeline({ uri: input }).toRows();
    assert.deepEqual(
      rows.map((r) => [r.id, r.a, r.b, r.c]),
      want.map((r) => [r.id, r.a, r.b, r.c]),
    );
  });
});

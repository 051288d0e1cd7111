// Issue 15 items 3 and 4, Node only (the deployment to MiniStack itself is `npm run test:emulator`):
// - `-c fanout:emulator=true` leaves out what emulators lack, replaces the SSM AMI parameter and
//   the GPU image, and says so in the synth output;
// - FANOUT_PIPELINE=./index.mjs resolves against LAMBDA_TASK_ROOT, so one template runs on AWS
//   (/var/task), on an emulator (a temp dir) and in the app harness, with the deployment's import
//   checks unchanged;
// - the ECS stand-in (localstack/ecs-agent.ts) against a fake ECS endpoint: environment merge,
//   StopTask reasons, refused commands, tasks stopped in ECS, no process left.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { createApp, EXAMPLE_ENTRY } from '../cdk/app.ts';
import { handlePlan, setStoreFactory } from '../src/aws/handlers.ts';
import { deployedPipelines, keys, resolvePipelineSpec } from '../src/aws/run.ts';
import { LocalStore, S3Store } from '../src/io/store/index.ts';
import { startEcsAgent } from '../localstack/ecs-agent.ts';
import { tempDir, writeSample } from './helpers.ts';

process.env['CDK_VALIDATION'] = 'false';
const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
const OMITTED = ['AWS::EC2::FlowLog', 'AWS::ECS::CapacityProvider', 'AWS::ECS::ClusterCapacityProviderAssociations'];

type Template = {
  Resources: Record<string, { Type: string; Properties: Record<string, unknown>; DependsOn?: string | string[] }>;
  Parameters?: Record<string, unknown>;
};

async function synth(
  context: Record<string, unknown>,
): Promise<{ tpl: Template; infos: string[]; assets: { dockerImages?: Record<string, { source: { dockerBuildArgs?: Record<string, string> } }> } }> {
  const outdir = tempDir('fanout-emu-cdk-');
  const { app, stack } = await createApp({ outdir, nag: true, context: { ...SKIP_BUNDLING, ...context } });
  const asm = app.synth();
  const a = asm.getStackByName(stack.stackName);
  const infos = a.messages.filter((m) => m.level === 'info').map((m) => String(m.entry.data));
  const assets = JSON.parse(readFileSync(join(outdir, `${stack.stackName}.assets.json`), 'utf8')) as Awaited<ReturnType<typeof synth>>['assets'];
  return { tpl: a.template as Template, infos, assets };
}

describe('emulator mode (-c fanout:emulator=true)', () => {
  it('leaves out FlowLog, CapacityProvider and its associations, the SSM AMI parameter and the image build, and says so', async () => {
    const normal = await synth({});
    const types = (t: Template) => new Set(Object.values(t.Resources).map((r) => r.Type));
    for (const t of OMITTED) assert.ok(types(normal.tpl).has(t), `the AWS template has ${t}`);
    assert.ok(
      Object.keys(normal.tpl.Parameters ?? {}).some((p) => /gpurecommended/i.test(p)),
      'the AWS template resolves the GPU AMI from SSM',
    );

    const emu = await synth({ 'fanout:emulator': 'true' });
    for (const t of OMITTED) {
      assert.ok(!types(emu.tpl).has(t), `emulator template without ${t}`);
      assert.ok(
        emu.infos.some((i) => i.includes(`${t} left out`)),
        `an Info note for ${t}: ${emu.infos.join(' | ')}`,
      );
    }
    assert.deepEqual(Object.keys(emu.tpl.Parameters ?? {}), ['BootstrapVersion'], 'no SSM parameter');
    const lt = Object.values(emu.tpl.Resources).find((r) => r.Type === 'AWS::EC2::LaunchTemplate')!;
    assert.equal((lt.Properties['LaunchTemplateData'] as { ImageId: unknown }).ImageId, 'ami-00000000000000000');
    assert.ok(emu.infos.some((i) => i.includes('GPU AMI ami-00000000000000000') && i.includes('placeholder')));
    // No image is built or published; the task definition names one that exists nowhere, and says so.
    assert.deepEqual(Object.keys(emu.assets.dockerImages ?? {}), []);
    const td = Object.values(emu.tpl.Resources).find((r) => r.Type === 'AWS::ECS::TaskDefinition')!;
    assert.equal((td.Properties['ContainerDefinitions'] as { Image: unknown }[])[0]!.Image, 'fanout-gpu-task-not-built:ecs-standin');
    assert.ok(emu.infos.some((i) => i.includes('no GPU task image is built or published') && i.includes('localstack/ecs-agent.ts')));
    // RunTask names no capacity provider, and nothing points at a resource that was left out.
    const text = JSON.stringify(emu.tpl);
    assert.ok(!text.includes('CapacityProviderStrategy'), 'RunTask without CapacityProviderStrategy');
    for (const m of text.matchAll(/"(?:Ref|Fn::GetAtt)":\[?"([A-Za-z0-9]+)"/g)) {
      assert.ok(emu.tpl.Resources[m[1]!] || emu.tpl.Parameters?.[m[1]!] || m[1]!.startsWith('AWS'), `dangling reference to ${m[1]}`);
    }
    for (const [id, r] of Object.entries(emu.tpl.Resources))
      for (const d of [r.DependsOn ?? []].flat()) assert.ok(emu.tpl.Resources[d], `${id} DependsOn ${d}`);
    // The rest is the AWS template's.
    assert.deepEqual([...types(normal.tpl)].filter((t) => !OMITTED.includes(t)).sort(), [...types(emu.tpl)].sort());
    // The AWS template is unchanged by the emulator hooks: its RunTask names the provider.
    assert.ok(JSON.stringify(normal.tpl).includes('CapacityProviderStrategy'));
  });

  it('fanout:emulatorImage=cpu builds the Dockerfile CPU-only; fanout:amiId sets the AMI; bad values are refused by name', async () => {
    const cpu = await synth({ 'fanout:emulator': 'true', 'fanout:emulatorImage': 'cpu', 'fanout:amiId': 'ami-0abcdef1234567890' });
    const images = Object.values(cpu.assets.dockerImages ?? {});
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]!.source.dockerBuildArgs, {
      PIPELINE_ENTRY: 'examples/pipeline.ts',
      FANOUT_DIR: '.',
      ESBUILD_CONDITIONS: 'development',
      CUDA_IMAGE: 'node:22-bookworm-slim',
      ORT_INSTALL: 'skip',
    });
    const lt = Object.values(cpu.tpl.Resources).find((r) => r.Type === 'AWS::EC2::LaunchTemplate')!;
    assert.equal((lt.Properties['LaunchTemplateData'] as { ImageId: unknown }).ImageId, 'ami-0abcdef1234567890');
    assert.ok(cpu.infos.some((i) => i.includes('built CPU-only')));
    await assert.rejects(() => synth({ 'fanout:emulator': 'yes' }), /context fanout:emulator must be true or false, got "yes"/);
    await assert.rejects(() => synth({ 'fanout:emulator': 'true', 'fanout:emulatorImage': 'gpu' }), /fanout:emulatorImage must be standin or cpu, got "gpu"/);
    await assert.rejects(() => synth({ 'fanout:emulator': 'true', 'fanout:amiId': 'my-ami' }), /fanout:amiId must be an AMI id/);
  });
});

describe('FANOUT_PIPELINE relative to LAMBDA_TASK_ROOT', () => {
  it('resolves ./index.mjs in the task root (else the working directory); absolute paths and other specifiers as before', () => {
    const root = tempDir('fanout-task-root-');
    assert.equal(resolvePipelineSpec('./index.mjs', { LAMBDA_TASK_ROOT: root }), pathToFileURL(join(root, 'index.mjs')).href);
    assert.equal(resolvePipelineSpec('../x/p.mjs', { LAMBDA_TASK_ROOT: root }), pathToFileURL(join(root, '..', 'x', 'p.mjs')).href);
    assert.equal(resolvePipelineSpec('./index.mjs', {}), pathToFileURL(join(process.cwd(), 'index.mjs')).href);
    assert.equal(resolvePipelineSpec('/var/task/index.mjs', { LAMBDA_TASK_ROOT: root }), 'file:///var/task/index.mjs');
    assert.equal(resolvePipelineSpec('data:text/javascript,1', { LAMBDA_TASK_ROOT: root }), 'data:text/javascript,1');
    assert.deepEqual([...deployedPipelines({ FANOUT_PIPELINE: './index.mjs', LAMBDA_TASK_ROOT: root })], [pathToFileURL(join(root, 'index.mjs')).href]);
  });

  it('Plan imports the bundle in the task root wherever it runs, and still refuses any other module the input names', async () => {
    const root = tempDir('fanout-task-root-');
    // The "bundle": a module in the task root that is the example pipeline.
    writeFileSync(join(root, 'index.mjs'), `export { default } from ${JSON.stringify(pathToFileURL(EXAMPLE_ENTRY).href)};\n`);
    writeFileSync(join(root, 'other.mjs'), 'export default () => { throw new Error("must not be imported"); };\n');
    const input = tempDir();
    await writeSample(join(input, 'a.parquet'), 0, 100, 100);
    const work = tempDir();
    setStoreFactory(() => new LocalStore(work));
    const saved = { ...process.env };
    Object.assign(process.env, { FANOUT_PIPELINE: './index.mjs', LAMBDA_TASK_ROOT: root, FANOUT_WORK_BUCKET: 'fanout-work' });
    delete process.env['FANOUT_PIPELINE_ALLOW'];
    delete process.env['FANOUT_OUTPUT_PREFIX'];
    try {
      const s = await handlePlan({ runId: 'task-root-1', input: { uri: join(input, 'a.parquet') } });
      assert.equal(s.runId, 'task-root-1');
      const plan = JSON.parse(readFileSync(join(work, keys.plan('task-root-1')), 'utf8')) as { pipeline: string };
      assert.equal(plan.pipeline, pathToFileURL(join(root, 'index.mjs')).href, 'the task root, not the working directory');
      assert.ok(!existsSync(join(process.cwd(), 'index.mjs')));
      // The same module named by the input is the deployment's own; another one is refused.
      await handlePlan({ runId: 'task-root-2', pipeline: './index.mjs', input: { uri: join(input, 'a.parquet') } });
      await assert.rejects(() => handlePlan({ runId: 'task-root-3', pipeline: './other.mjs', input: {} }), /this deployment imports only/);
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
      setStoreFactory((b) => new S3Store(b));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The ECS stand-in against a fake ECS JSON API (what a Docker-less emulator's ECS answers).

interface FakeTask {
  taskArn: string;
  lastStatus: string;
  desiredStatus: string;
  taskDefinitionArn: string;
  overrides: { containerOverrides: { name: string; environment?: { name: string; value: string }[]; command?: string[] }[] };
}

function fakeEcs(tasks: FakeTask[], stops: { task: string; reason: string }[]): Promise<{ server: Server; endpoint: string }> {
  const defs: Record<string, unknown> = {
    'td-fanout': {
      containerDefinitions: [
        {
          name: 'fanout-gpu',
          environment: [
            { name: 'FROM_DEF', value: 'd' },
            { name: 'OVERRIDDEN', value: 'def' },
            { name: 'FANOUT_PIPELINE', value: '/app/dist/pipeline.js' },
          ],
        },
      ],
    },
    'td-other': { containerDefinitions: [{ name: 'web' }] },
  };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      const op = String(req.headers['x-amz-target']).split('.').pop();
      const data = JSON.parse(body || '{}') as Record<string, unknown>;
      let out: unknown;
      if (op === 'ListClusters') out = { clusterArns: ['arn:aws:ecs:us-east-1:000000000000:cluster/c'] };
      else if (op === 'ListTasks') out = { taskArns: tasks.filter((t) => t.desiredStatus === 'RUNNING').map((t) => t.taskArn) };
      else if (op === 'DescribeTasks') out = { tasks: tasks.filter((t) => (data['tasks'] as string[]).includes(t.taskArn)), failures: [] };
      else if (op === 'DescribeTaskDefinition') out = { taskDefinition: defs[data['taskDefinition'] as string] };
      else if (op === 'StopTask') {
        const t = tasks.find((x) => x.taskArn === data['task'])!;
        t.desiredStatus = 'STOPPED';
        t.lastStatus = 'STOPPED';
        stops.push({ task: t.taskArn, reason: data['reason'] as string });
        out = { task: t };
      } else {
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify({ __type: 'InvalidAction', message: String(op) }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(out));
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

const task = (id: string, env: Record<string, string>, extra: Partial<FakeTask> = {}): FakeTask => ({
  taskArn: `arn:aws:ecs:us-east-1:000000000000:task/c/${id}`,
  lastStatus: 'RUNNING',
  desiredStatus: 'RUNNING',
  taskDefinitionArn: 'td-fanout',
  overrides: { containerOverrides: [{ name: 'fanout-gpu', environment: Object.entries(env).map(([name, value]) => ({ name, value })) }] },
  ...extra,
});

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the ECS stand-in (localstack/ecs-agent.ts)', () => {
  let server: Server | undefined;
  after(() => server?.close());

  it("runs RUNNING tasks with the task's environment and the pipeline's source, reports exits through StopTask, leaves no process", async () => {
    const dir = tempDir('fanout-ecs-agent-');
    // A stand-in for lambdas/ecs-task.ts: records its environment, then does what MODE says.
    const entry = join(dir, 'entry.mjs');
    writeFileSync(
      entry,
      `import { writeFileSync } from 'node:fs';
const e = process.env;
writeFileSync(${JSON.stringify(dir)} + '/' + e.FANOUT_SLOT + '.json', JSON.stringify(e));
if (e.MODE === 'fail') { console.error('fanout ecs task failed: Error: boom'); console.error('    at somewhere'); process.exit(1); }
if (e.MODE === 'hang') setInterval(() => {}, 1000);
`,
    );
    const tasks = [
      task('ok', { FANOUT_SLOT: '0', OVERRIDDEN: 'ovr', MODE: 'ok' }),
      task('fails', { FANOUT_SLOT: '1', MODE: 'fail' }),
      task('hangs', { FANOUT_SLOT: '2', MODE: 'hang' }),
      task('command', { FANOUT_SLOT: '3' }, { overrides: { containerOverrides: [{ name: 'fanout-gpu', command: ['sh', '-c', 'echo hi'] }] } }),
      task('other', {}, { taskDefinitionArn: 'td-other', overrides: { containerOverrides: [] } }),
    ];
    const stops: { task: string; reason: string }[] = [];
    const fake = await fakeEcs(tasks, stops);
    server = fake.server;
    const agent = startEcsAgent({ endpoint: fake.endpoint, pipeline: EXAMPLE_ENTRY, entry, pollIntervalMs: 50, log: () => {} });
    try {
      const reasonOf = (id: string) => stops.find((s) => s.task.endsWith(`/${id}`))?.reason;
      await until('StopTask for ok, fails and command', () => !!reasonOf('ok') && !!reasonOf('fails') && !!reasonOf('command'));
      assert.equal(reasonOf('ok'), 'Essential container in task exited');
      assert.equal(reasonOf('fails'), 'fanout ecs task failed: Error: boom');
      assert.match(reasonOf('command')!, /cannot run container fanout-gpu's command\/entryPoint \(\["sh","-c","echo hi"\]\)/);
      assert.ok(!existsSync(join(dir, '3.json')), 'a command it cannot honour is not run');

      const env = JSON.parse(readFileSync(join(dir, '0.json'), 'utf8')) as Record<string, string>;
      assert.equal(env['FROM_DEF'], 'd', 'the task definition environment');
      assert.equal(env['OVERRIDDEN'], 'ovr', 'RunTask container overrides win');
      assert.equal(env['FANOUT_PIPELINE'], EXAMPLE_ENTRY, "the pipeline's source replaces the image's bundle path");
      assert.equal(env['AWS_ENDPOINT_URL'], fake.endpoint);
      const byId = (id: string) => agent.tasks().find((t) => t.taskArn.endsWith(`/${id}`))!;
      assert.equal(byId('ok').exitCode, 0);
      assert.equal(byId('fails').exitCode, 1);
      assert.equal(
        agent.tasks().find((t) => t.taskArn.endsWith('/other')),
        undefined,
        "another container's task is left alone",
      );
      assert.equal(tasks.find((t) => t.taskArn.endsWith('/other'))!.desiredStatus, 'RUNNING');

      // A task stopped in ECS (StopExecution, a state timeout) loses its process.
      await until('the hanging task to start', () => alive(byId('hangs')?.pid));
      const hanging = tasks.find((t) => t.taskArn.endsWith('/hangs'))!;
      hanging.desiredStatus = 'STOPPED';
      hanging.lastStatus = 'STOPPED';
      await until('the hanging task to be killed', () => byId('hangs').exitCode !== undefined);
      assert.equal(byId('hangs').signal, 'SIGKILL');
    } finally {
      await agent.stop();
    }
    for (const t of agent.tasks()) assert.ok(!alive(t.pid), `task ${t.taskArn} process ${t.pid} left`);
  });

  it('a SIGTERM as soon as it says it is watching stops it cleanly (its handlers are in place first)', async () => {
    // Nothing listens on port 9: the agent's polls fail, which it reports and survives.
    const agent = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '..', 'localstack', 'ecs-agent.ts'), '--endpoint', 'http://127.0.0.1:9'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => agent.once('exit', (code, signal) => res({ code, signal })));
    agent.stderr!.on('data', (d: Buffer) => {
      const first = !stderr.includes('ecs-agent: watching');
      stderr += d.toString();
      if (first && stderr.includes('ecs-agent: watching')) agent.kill('SIGTERM');
    });
    const timer = setTimeout(() => agent.kill('SIGKILL'), 30_000);
    const { code, signal } = await exited;
    clearTimeout(timer);
    assert.ok(stderr.includes('ecs-agent: watching'), stderr);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, stderr);
  });
});

// The offline harness for the SYNTHESIZED CDK app: reads the stack's template from a cloud assembly
// (cdk.out) and resolves the state machine's DefinitionString to local ARNs (./cloudformation.ts),
// runs each Lambda's bundle from cdk.out in startLocalCloud's worker threads with the function's own
// environment and timeout, and plays EventBridge (./eventbridge.ts): new objects in the local S3
// become S3 "Object Created" events, matched against each rule's EventPattern, transformed by the
// rule target's input transformer and sent to the local Step Functions endpoint as StartExecution.
// The GPU task runs lambdas/ecs-task.ts from source (its image is built by `cdk deploy`, not here).
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { s3Client } from '../src/io/s3/index.ts';
import type { AslDefinition, JsonObject, JsonValue } from '../src/aws/state-machine.ts';
import { functionAssetDir, loadSynthesizedStack, LocalResolver, type SynthesizedStack } from './cloudformation.ts';
import {
  startEventBridgeBridge,
  type EventBridgeBridge,
  type InputTransformer,
  type LocalRule,
  type LocalRuleTarget,
  type StartedExecution,
} from './eventbridge.ts';
import { startLocalCloud, type LocalCloud, type LocalCloudOptions } from './index.ts';
import { REGION } from './stepfunctions/constants.ts';
import { isObject as isObj } from './stepfunctions/json.ts';

type FunctionRole = 'plan' | 'stage' | 'finalize' | 'failure';
/** The state of the generic definition (src/aws/state-machine.ts) that invokes each function. */
const ROLE_STATES: Record<FunctionRole, string> = { plan: 'Plan', stage: 'RunPartition', finalize: 'Finalize', failure: 'RecordFailure' };

// ---------------------------------------------------------------------------------------------
// The app harness

export interface AppHarnessOptions {
  /** The cloud assembly. @default 'cdk.out' */
  cdkOut?: string;
  /** @default the one stack with a state machine */
  stackName?: string;
  /** The pipeline's source module: the GPU task entrypoint runs from source and imports it. */
  pipeline: string;
  /** Lambda execution environments per function. @default 2 */
  lambdaConcurrency?: number;
  /** S3 polling interval of the EventBridge stand-in. @default 200 */
  pollIntervalMs?: number;
  s3Dir?: string;
  /** @default lambdas/ecs-task.ts (source) */
  ecsEntry?: string;
  env?: Record<string, string>;
  onEvent?: (event: JsonObject, matchedRules: string[]) => void;
  onExecution?: (e: StartedExecution) => void;
}

export interface AppHarnessFunction {
  role: FunctionRole;
  logicalId: string;
  /** The asset directory in the cloud assembly, and the copy the harness runs. */
  assetDir: string;
  codeDir: string;
  timeoutSeconds: number;
  memoryMiB: number;
  environment: Record<string, string>;
}

export interface AppHarness {
  cloud: LocalCloud;
  stack: SynthesizedStack;
  /** The state machine definition, resolved to local names. */
  definition: AslDefinition;
  functions: Record<FunctionRole, AppHarnessFunction>;
  /** Template bucket logical id -> local bucket name (all created in the local S3). */
  buckets: Record<string, string>;
  workBucket: string;
  rules: LocalRule[];
  bridge: EventBridgeBridge;
  sfn: SFNClient;
  /** Polls DescribeExecution until the execution is no longer RUNNING. */
  waitForExecution(executionArn: string, timeoutMs?: number): Promise<DescribeExecutionCommandOutput>;
  stop(): Promise<void>;
}

/** Starts the local cloud with the synthesized app's definition, bundles, rules and buckets. */
export async function startAppHarness(opts: AppHarnessOptions): Promise<AppHarness> {
  const cdkOut = resolve(opts.cdkOut ?? 'cdk.out');
  const stack = loadSynthesizedStack(cdkOut, opts.stackName);
  const resolver = new LocalResolver(stack);
  const resources = stack.template.Resources;

  const machines = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine');
  if (machines.length !== 1) throw new Error(`${stack.stackName}: expected one state machine, found ${machines.length}`);
  const [, machine] = machines[0]!;
  const defText = resolver.resolve(machine.Properties?.['DefinitionString']);
  if (typeof defText !== 'string') throw new Error('the state machine has no DefinitionString (DefinitionS3Location is not supported)');
  const definition = JSON.parse(defText) as AslDefinition;

  // Which function plays which role: the FunctionName of the state that invokes it.
  const fnByArn = new Map<string, string>();
  for (const [id, r] of Object.entries(resources)) if (r.Type === 'AWS::Lambda::Function') fnByArn.set(resolver.getAtt(id, 'Arn'), id);
  const statesByName = new Map<string, JsonObject>();
  (function index(sm: { States?: Record<string, unknown> }) {
    for (const [n, s] of Object.entries(sm.States ?? {})) {
      if (!isObj(s)) continue;
      statesByName.set(n, s as JsonObject);
      const proc = (s['ItemProcessor'] ?? s['Iterator']) as { States?: Record<string, unknown> } | undefined;
      if (proc) index(proc);
    }
  })(definition as unknown as { States: Record<string, unknown> });

  const staging = mkdtempSync(join(tmpdir(), 'fanout-app-harness-'));
  const functions = {} as Record<FunctionRole, AppHarnessFunction>;
  for (const role of Object.keys(ROLE_STATES) as FunctionRole[]) {
    const state = statesByName.get(ROLE_STATES[role]);
    const params = state?.['Parameters'];
    const arn = isObj(params) ? params['FunctionName'] : undefined;
    const logicalId = typeof arn === 'string' ? fnByArn.get(arn) : undefined;
    if (!logicalId) throw new Error(`state ${ROLE_STATES[role]} does not invoke a function of the template`);
    const r = resources[logicalId]!;
    const assetDir = functionAssetDir(cdkOut, stack, r, resolver);
    if (!assetDir || !existsSync(assetDir))
      throw new Error(`function ${logicalId}: its bundle is not in ${cdkOut}; synthesize with bundling (no aws:cdk:bundling-stacks filter)`);
    // A copy outside the project: a module the bundle forgot cannot be found in the project's node_modules.
    const codeDir = join(staging, role);
    cpSync(assetDir, codeDir, { recursive: true });
    const props = r.Properties ?? {};
    const handler = String(props['Handler'] ?? 'index.handler');
    const dot = handler.lastIndexOf('.');
    const moduleBase = handler.slice(0, dot);
    const exportName = handler.slice(dot + 1);
    const moduleFile = ['.mjs', '.js', '.cjs'].map((e) => `${moduleBase}${e}`).find((f) => existsSync(join(codeDir, f)));
    if (!moduleFile) throw new Error(`function ${logicalId}: no ${moduleBase}.mjs/.js in its bundle (${readdirSync(codeDir).join(', ')})`);
    const envVars = (resolver.resolve((props['Environment'] as { Variables?: unknown } | undefined)?.Variables ?? {}) ?? {}) as Record<string, JsonValue>;
    // Lambda's view: the bundle lives in LAMBDA_TASK_ROOT (/var/task); here, in codeDir.
    const environment: Record<string, string> = {};
    for (const [k, v] of Object.entries(envVars)) environment[k] = String(v).replaceAll('/var/task', codeDir);
    Object.assign(environment, {
      LAMBDA_TASK_ROOT: codeDir,
      AWS_LAMBDA_FUNCTION_NAME: resolver.ref(logicalId),
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(props['MemorySize'] ?? 128),
    });
    // The worker-thread "container" for this function: its own environment, then the bundle.
    const loader = join(codeDir, '__fanout_harness_entry.mjs');
    writeFileSync(
      loader,
      [
        "// Written by localstack/app-harness.ts: this function's Lambda environment, then its handler.",
        `Object.assign(process.env, ${JSON.stringify(environment)});`,
        `const mod = await import(${JSON.stringify(pathToFileURL(join(codeDir, moduleFile)).href)});`,
        `export const handler = mod[${JSON.stringify(exportName)}];`,
        '',
      ].join('\n'),
    );
    functions[role] = {
      role,
      logicalId,
      assetDir,
      codeDir,
      environment,
      timeoutSeconds: Number(props['Timeout'] ?? 3),
      memoryMiB: Number(props['MemorySize'] ?? 128),
    };
  }

  // Buckets: the work bucket is the Lambdas' FANOUT_WORK_BUCKET; the watched one comes from the rule.
  const buckets: Record<string, string> = {};
  for (const [id, r] of Object.entries(resources)) if (r.Type === 'AWS::S3::Bucket') buckets[id] = resolver.ref(id);
  const workBucket = functions.plan.environment['FANOUT_WORK_BUCKET'];
  if (!workBucket) throw new Error('the Plan function has no FANOUT_WORK_BUCKET');
  const ruleEntries = Object.entries(resources).filter(
    ([, r]) => r.Type === 'AWS::Events::Rule' && (r.Properties?.['State'] ?? 'ENABLED') === 'ENABLED' && r.Properties?.['EventPattern'],
  );
  const resolveRules = (): LocalRule[] =>
    ruleEntries.map(([id, r]) => {
      const p = r.Properties!;
      const targets = ((resolver.resolve(p['Targets'] ?? []) ?? []) as JsonObject[]).map((t) => {
        const lt: LocalRuleTarget = { arn: String(t['Arn']) };
        if (typeof t['Input'] === 'string') lt.input = t['Input'];
        if (typeof t['InputPath'] === 'string') lt.inputPath = t['InputPath'];
        if (isObj(t['InputTransformer'])) lt.inputTransformer = t['InputTransformer'] as unknown as InputTransformer;
        return lt;
      });
      return { name: resolver.ref(id), arn: resolver.getAtt(id, 'Arn'), pattern: resolver.resolve(p['EventPattern']) as JsonObject, targets };
    });
  const watched = new Set<string>();
  for (const rule of resolveRules()) {
    const names = (rule.pattern['detail'] as { bucket?: { name?: unknown } } | undefined)?.bucket?.name;
    for (const n of Array.isArray(names) ? names : []) if (typeof n === 'string') watched.add(n);
  }
  const inputBucket = [...watched][0] ?? Object.values(buckets).find((b) => b !== workBucket) ?? 'fanout-input';

  const arn = (role: FunctionRole) => resolver.getAtt(functions[role].logicalId, 'Arn');
  const cloudOpts: LocalCloudOptions = {
    pipeline: opts.pipeline,
    definition,
    inputBucket,
    workBucket,
    lambdaConcurrency: opts.lambdaConcurrency ?? 2,
    functions: Object.fromEntries(
      (Object.keys(functions) as FunctionRole[]).map((role) => [
        role,
        {
          arn: arn(role),
          file: pathToFileURL(join(functions[role].codeDir, '__fanout_harness_entry.mjs')).href,
          timeoutSeconds: functions[role].timeoutSeconds,
        },
      ]),
    ),
  };
  if (opts.s3Dir) cloudOpts.s3Dir = opts.s3Dir;
  if (opts.ecsEntry) cloudOpts.ecsEntry = opts.ecsEntry;
  if (opts.env) cloudOpts.env = opts.env;
  let cloud: LocalCloud;
  try {
    cloud = await startLocalCloud(cloudOpts);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  let bridge: EventBridgeBridge | undefined;
  const sfn = new SFNClient({ endpoint: cloud.sfnEndpoint, region: REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  const stop = async (): Promise<void> => {
    await bridge?.stop();
    sfn.destroy();
    await cloud.stop();
    rmSync(staging, { recursive: true, force: true });
  };
  try {
    // The other buckets of the template (e.g. the output bucket) exist too.
    const s3 = await s3Client();
    for (const name of Object.values(buckets)) {
      if (name === inputBucket || name === workBucket) continue;
      await s3.send(new CreateBucketCommand({ Bucket: name }));
    }
    resolver.stateMachineArn = cloud.stateMachineArn;
    const rules = resolveRules();
    const bridgeOpts: Parameters<typeof startEventBridgeBridge>[0] = {
      buckets: [...watched],
      rules,
      sfnEndpoint: cloud.sfnEndpoint,
      stateMachineArn: cloud.stateMachineArn,
    };
    if (opts.pollIntervalMs !== undefined) bridgeOpts.pollIntervalMs = opts.pollIntervalMs;
    if (opts.onEvent) bridgeOpts.onEvent = opts.onEvent;
    if (opts.onExecution) bridgeOpts.onExecution = opts.onExecution;
    bridge = await startEventBridgeBridge(bridgeOpts);
    return {
      cloud,
      stack,
      definition,
      functions,
      buckets,
      workBucket,
      rules,
      bridge,
      sfn,
      waitForExecution: (executionArn, timeoutMs = 120_000) => waitForExecution(sfn, executionArn, timeoutMs),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

export async function waitForExecution(sfn: SFNClient, executionArn: string, timeoutMs = 120_000): Promise<DescribeExecutionCommandOutput> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (d.status !== 'RUNNING') return d;
    if (Date.now() > deadline) throw new Error(`execution ${executionArn} still RUNNING after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The offline harness for the SYNTHESIZED CDK app: reads the stack's template from a cloud assembly
// (cdk.out), resolves the state machine's DefinitionString (Fn::Join / Fn::GetAtt / Ref …) to local
// ARNs, runs each Lambda's bundle from cdk.out in startLocalCloud's worker threads with the
// function's own environment and timeout, and plays EventBridge: new objects in the local S3 become
// S3 "Object Created" events (EventBridge format), matched against each rule's EventPattern with
// EventBridge's semantics, transformed by the rule target's input transformer and sent to the local
// Step Functions endpoint as StartExecution.
//
// S3 events: s3rver runs in a child process (localstack/s3-server.ts) and its notifications do not
// leave it, so the harness polls ListObjectsV2 on each watched bucket (default every 200 ms) and
// emits one event per new key or changed ETag; objects present at start are the baseline.
// The GPU task runs lambdas/ecs-task.ts from source (its image is built by `cdk deploy`, not here).
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand, type DescribeExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { listS3, s3Client } from '../src/io/s3/index.ts';
import type { AslDefinition, JsonObject, JsonValue } from '../src/aws/state-machine.ts';
import { startLocalCloud, type LocalCloud, type LocalCloudOptions } from './index.ts';

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
/** The ARN the local Step Functions server gives its one state machine (localstack/stepfunctions.ts). */
const LOCAL_STATE_MACHINE_NAME = 'fanout-local';
const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${LOCAL_STATE_MACHINE_NAME}`;

type FunctionRole = 'plan' | 'stage' | 'finalize' | 'failure';
/** The state of the generic definition (src/aws/state-machine.ts) that invokes each function. */
const ROLE_STATES: Record<FunctionRole, string> = { plan: 'Plan', stage: 'RunPartition', finalize: 'Finalize', failure: 'RecordFailure' };

// ---------------------------------------------------------------------------------------------
// EventBridge event patterns

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Does `event` match the EventBridge `pattern`? Implements: exact values (strings, numbers compared
 * numerically, booleans, null), arrays as OR, nested objects (an array of objects in the event
 * matches when any element does), `$or`, and the content filters prefix, suffix (both also with
 * equals-ignore-case), equals-ignore-case, wildcard, anything-but (value, list, prefix, suffix,
 * wildcard, equals-ignore-case), numeric ranges, exists and cidr (IPv4).
 */
export function matchesEventPattern(pattern: unknown, event: unknown): boolean {
  if (!isObj(pattern)) throw new TypeError('an event pattern must be a JSON object');
  return matchObject(pattern, event);
}

function matchObject(pattern: Record<string, unknown>, value: unknown): boolean {
  // A field pattern against an array of objects: any element may match.
  if (Array.isArray(value)) return value.some((v) => matchObject(pattern, v));
  for (const [key, p] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!Array.isArray(p) || !p.some((alt) => isObj(alt) && matchObject(alt, value))) return false;
      continue;
    }
    const field = isObj(value) ? value[key] : undefined;
    if (Array.isArray(p)) {
      if (!matchLeaf(p, field, isObj(value) && key in value)) return false;
    } else if (isObj(p)) {
      if (!isObj(field) && !Array.isArray(field)) return false;
      if (!matchObject(p, field)) return false;
    } else {
      throw new TypeError(`event pattern field '${key}': a value must be an array or an object, got ${JSON.stringify(p)}`);
    }
  }
  return true;
}

/** One field: any matcher of the list against the field's value (or any element of an array value). */
function matchLeaf(matchers: unknown[], field: unknown, present: boolean): boolean {
  const values = Array.isArray(field) ? field : [field];
  return matchers.some((m) => {
    if (isObj(m) && 'exists' in m) return m['exists'] === (present && field !== undefined);
    if (!present || field === undefined) return false;
    return values.some((v) => matchValue(m, v));
  });
}

function matchValue(m: unknown, v: unknown): boolean {
  if (m === null || typeof m !== 'object') return m === v;
  if (!isObj(m)) return false;
  const [op, arg] = Object.entries(m)[0] ?? [];
  switch (op) {
    case 'prefix': return typeof v === 'string' && affix(arg, v, (s, a) => s.startsWith(a));
    case 'suffix': return typeof v === 'string' && affix(arg, v, (s, a) => s.endsWith(a));
    case 'equals-ignore-case': return typeof v === 'string' && typeof arg === 'string' && v.toLowerCase() === arg.toLowerCase();
    case 'wildcard': return typeof v === 'string' && typeof arg === 'string' && wildcardRegExp(arg).test(v);
    case 'numeric': return typeof v === 'number' && Array.isArray(arg) && numericMatch(arg, v);
    case 'cidr': return typeof v === 'string' && typeof arg === 'string' && cidrMatch(arg, v);
    case 'anything-but': {
      if (Array.isArray(arg)) return !arg.some((a) => matchValue(a, v));
      if (isObj(arg)) return !matchValue(arg, v);
      return !matchValue(arg, v);
    }
    default: throw new TypeError(`event pattern: unsupported matcher ${JSON.stringify(m)}`);
  }
}

function affix(arg: unknown, v: string, test: (s: string, a: string) => boolean): boolean {
  if (typeof arg === 'string') return test(v, arg);
  if (isObj(arg) && typeof arg['equals-ignore-case'] === 'string') return test(v.toLowerCase(), arg['equals-ignore-case'].toLowerCase());
  return false;
}

function wildcardRegExp(p: string): RegExp {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\' && i + 1 < p.length) re += escapeRe(p[++i]!);
    else if (c === '*') re += '.*';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

function numericMatch(spec: unknown[], v: number): boolean {
  for (let i = 0; i + 1 < spec.length; i += 2) {
    const op = spec[i];
    const n = Number(spec[i + 1]);
    const ok = op === '=' ? v === n : op === '<' ? v < n : op === '<=' ? v <= n : op === '>' ? v > n : op === '>=' ? v >= n : false;
    if (!ok) return false;
  }
  return true;
}

function cidrMatch(cidr: string, ip: string): boolean {
  const [base, bits] = cidr.split('/');
  const toInt = (s: string): number | null => {
    const p = s.split('.').map(Number);
    return p.length === 4 && p.every((x) => Number.isInteger(x) && x >= 0 && x <= 255) ? ((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]! : null;
  };
  const a = toInt(base ?? '');
  const b = toInt(ip);
  const n = Number(bits ?? 32);
  if (a === null || b === null || !(n >= 0 && n <= 32)) return false;
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

// ---------------------------------------------------------------------------------------------
// Input transformers

export interface InputTransformer { InputPathsMap?: Record<string, string>; InputTemplate: string }

/** `$.a.b-c`, `$['x']` and `$.list[0]` paths, as InputPathsMap and InputPath use them. */
export function jsonPathGet(root: unknown, path: string): unknown {
  if (path === '$') return root;
  if (!path.startsWith('$')) throw new TypeError(`not a JSON path: ${path}`);
  const parts: (string | number)[] = [];
  const re = /\.([^.[\]]+)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]/y;
  for (let i = 1; i < path.length; i = re.lastIndex) {
    re.lastIndex = i;
    const m = re.exec(path);
    if (!m) throw new TypeError(`unsupported JSON path: ${path}`);
    parts.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : (m[3] ?? m[4]!)));
  }
  let cur: unknown = root;
  for (const k of parts) {
    if (typeof k === 'number') cur = Array.isArray(cur) ? cur[k] : undefined;
    else cur = isObj(cur) ? cur[k] : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/**
 * EventBridge's input transformer: `<name>` placeholders take the values of InputPathsMap paths
 * (and the predefined aws.events.* variables). In a JSON template a placeholder inside quotes gets
 * the value's text, escaped; outside quotes a string value is quoted and other values are JSON.
 * A template that is not JSON gets the raw text.
 */
export function applyInputTransformer(t: InputTransformer, event: JsonObject, rule: { arn: string; name: string }): string {
  const values = new Map<string, unknown>();
  for (const [name, path] of Object.entries(t.InputPathsMap ?? {})) values.set(name, jsonPathGet(event, path));
  values.set('aws.events.rule-arn', rule.arn);
  values.set('aws.events.rule-name', rule.name);
  values.set('aws.events.event.ingestion-time', new Date().toISOString());
  values.set('aws.events.event', event);
  values.set('aws.events.event.json', event);
  const template = t.InputTemplate;
  const isJson = /^\s*[[{]/.test(template);
  let out = '';
  let inString = false;
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '<') {
      const close = template.indexOf('>', i + 1);
      const name = close > i ? template.slice(i + 1, close) : '';
      if (name && /^[A-Za-z0-9_.-]+$/.test(name) && values.has(name)) {
        const v = values.get(name);
        if (!isJson) out += typeof v === 'string' ? v : JSON.stringify(v ?? null);
        else if (inString) out += JSON.stringify(typeof v === 'string' ? v : JSON.stringify(v ?? null)).slice(1, -1);
        else out += JSON.stringify(v ?? null);
        i = close;
        continue;
      }
    }
    if (isJson && c === '"') {
      // Count the backslashes before the quote: an odd number escapes it.
      let k = i - 1;
      let slashes = 0;
      while (k >= 0 && template[k] === '\\') { slashes++; k--; }
      if (slashes % 2 === 0) inString = !inString;
    }
    out += c;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// S3 -> EventBridge -> Step Functions

export interface LocalRuleTarget {
  arn: string;
  input?: string;
  inputPath?: string;
  inputTransformer?: InputTransformer;
}

export interface LocalRule {
  name: string;
  arn: string;
  pattern: JsonObject;
  targets: LocalRuleTarget[];
}

export interface StartedExecution {
  executionArn: string;
  rule: string;
  /** The S3 event that started it. */
  event: JsonObject;
  /** The execution input as sent. */
  input: string;
}

export interface EventBridgeBridge {
  /** Every event emitted so far (matched or not). */
  readonly events: JsonObject[];
  readonly executions: StartedExecution[];
  /** Resolves with the next execution started after this call. */
  nextExecution(timeoutMs?: number): Promise<StartedExecution>;
  /** One poll of the watched buckets now (tests). */
  poll(): Promise<void>;
  stop(): Promise<void>;
}

/** An S3 "Object Created" event in EventBridge format (what S3 sends with EventBridge notifications on). */
export function objectCreatedEvent(bucket: string, object: { key: string; size: number; etag: string }, sequence: number): JsonObject {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Object Created',
    source: 'aws.s3',
    account: ACCOUNT,
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: REGION,
    resources: [`arn:aws:s3:::${bucket}`],
    detail: {
      version: '0',
      bucket: { name: bucket },
      object: { key: object.key, size: object.size, etag: object.etag.replace(/"/g, ''), sequencer: sequence.toString(16).padStart(16, '0').toUpperCase() },
      'request-id': randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase(),
      requester: ACCOUNT,
      'source-ip-address': '127.0.0.1',
      reason: 'PutObject',
    },
  };
}

/**
 * Watches `buckets` (ListObjectsV2 polling), turns each new or changed object into an EventBridge
 * event, and starts an execution for every matching rule target that is the state machine.
 */
export async function startEventBridgeBridge(opts: {
  buckets: string[];
  rules: LocalRule[];
  sfnEndpoint: string;
  stateMachineArn: string;
  pollIntervalMs?: number;
  onEvent?: (event: JsonObject, matched: string[]) => void;
  onExecution?: (e: StartedExecution) => void;
}): Promise<EventBridgeBridge> {
  const sfn = new SFNClient({ endpoint: opts.sfnEndpoint, region: REGION, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  const seen = new Map<string, string>();
  const events: JsonObject[] = [];
  const executions: StartedExecution[] = [];
  const waiters: ((e: StartedExecution) => void)[] = [];
  let sequence = 0;

  const list = async (bucket: string) => (await listS3(`s3://${bucket}/`)).objects;
  // Objects already there are not "created" now.
  for (const b of opts.buckets) for (const o of await list(b)) seen.set(`${b}/${o.key}`, o.etag);

  const deliver = async (event: JsonObject): Promise<void> => {
    const matched: string[] = [];
    for (const rule of opts.rules) {
      if (!matchesEventPattern(rule.pattern, event)) continue;
      matched.push(rule.name);
      for (const t of rule.targets) {
        if (t.arn !== opts.stateMachineArn) continue;
        const input = t.inputTransformer ? applyInputTransformer(t.inputTransformer, event, rule)
          : t.input !== undefined ? t.input
          : JSON.stringify(t.inputPath ? jsonPathGet(event, t.inputPath) ?? null : event);
        const r = await sfn.send(new StartExecutionCommand({ stateMachineArn: opts.stateMachineArn, input }));
        const started: StartedExecution = { executionArn: r.executionArn!, rule: rule.name, event, input };
        executions.push(started);
        opts.onExecution?.(started);
        for (const w of waiters.splice(0)) w(started);
      }
    }
    opts.onEvent?.(event, matched);
  };

  let busy: Promise<void> | null = null;
  const poll = (): Promise<void> => (busy ??= (async () => {
    try {
      for (const b of opts.buckets) {
        for (const o of await list(b)) {
          const id = `${b}/${o.key}`;
          if (seen.get(id) === o.etag) continue;
          seen.set(id, o.etag);
          const event = objectCreatedEvent(b, o, ++sequence);
          events.push(event);
          await deliver(event);
        }
      }
    } finally {
      busy = null;
    }
  })());
  let stopped = false;
  const timer = setInterval(() => { if (!stopped) poll().catch((e: unknown) => console.error(`fanout harness: S3 poll failed: ${e instanceof Error ? e.message : String(e)}`)); }, opts.pollIntervalMs ?? 200);
  timer.unref();

  return {
    events,
    executions,
    poll,
    nextExecution: (timeoutMs = 30_000) => new Promise<StartedExecution>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`no execution started within ${timeoutMs} ms`)), timeoutMs);
      waiters.push((e) => { clearTimeout(t); res(e); });
    }),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await busy?.catch(() => undefined);
      sfn.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Cloud assembly and template

interface CfnResource { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }
interface CfnTemplate { Resources: Record<string, CfnResource>; Parameters?: Record<string, { Type?: string; Default?: unknown }> }

export interface SynthesizedStack {
  stackName: string;
  templateFile: string;
  template: CfnTemplate;
}

/** The stack of a cloud assembly that holds a state machine (or the one named). */
export function loadSynthesizedStack(cdkOut: string, stackName?: string): SynthesizedStack {
  const manifestFile = join(cdkOut, 'manifest.json');
  if (!existsSync(manifestFile)) throw new Error(`${cdkOut} is not a cloud assembly (no manifest.json): run \`npx cdk synth\` first`);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { artifacts?: Record<string, { type: string; properties?: { templateFile?: string }; displayName?: string }> };
  const stacks = Object.entries(manifest.artifacts ?? {})
    .filter(([, a]) => a.type === 'aws:cloudformation:stack' && a.properties?.templateFile)
    .map(([id, a]) => {
      const templateFile = join(cdkOut, a.properties!.templateFile!);
      return { stackName: id, templateFile, template: JSON.parse(readFileSync(templateFile, 'utf8')) as CfnTemplate };
    });
  const candidates = stackName ? stacks.filter((s) => s.stackName === stackName)
    : stacks.filter((s) => Object.values(s.template.Resources).some((r) => r.Type === 'AWS::StepFunctions::StateMachine'));
  if (candidates.length !== 1) {
    throw new Error(`${cdkOut}: ${stackName ? `no stack '${stackName}'` : `${candidates.length} stacks with a state machine; pass stackName`} (stacks: ${stacks.map((s) => s.stackName).join(', ') || 'none'})`);
  }
  return candidates[0]!;
}

/** Local names for the template's resources: what Ref and Fn::GetAtt resolve to in the harness. */
class LocalResolver {
  readonly names = new Map<string, string>();
  stateMachineArn = LOCAL_STATE_MACHINE_ARN;

  constructor(readonly stack: SynthesizedStack) {
    for (const [id, r] of Object.entries(stack.template.Resources)) {
      const base = id.toLowerCase().replace(/[^a-z0-9-]/g, '');
      if (r.Type === 'AWS::S3::Bucket') this.names.set(id, `fanout-local-${base}`.slice(0, 63).replace(/-+$/, ''));
      else this.names.set(id, `${stack.stackName}-${id}`.slice(0, 64));
    }
  }

  private resource(id: string): CfnResource {
    const r = this.stack.template.Resources[id];
    if (!r) throw new Error(`template: no resource '${id}'`);
    return r;
  }

  ref(id: string): string {
    switch (id) {
      case 'AWS::Region': return REGION;
      case 'AWS::AccountId': return ACCOUNT;
      case 'AWS::Partition': return 'aws';
      case 'AWS::URLSuffix': return 'amazonaws.com';
      case 'AWS::StackName': return this.stack.stackName;
      case 'AWS::StackId': return `arn:aws:cloudformation:${REGION}:${ACCOUNT}:stack/${this.stack.stackName}/local`;
      case 'AWS::NoValue': return '';
    }
    const param = this.stack.template.Parameters?.[id];
    if (param) return typeof param.Default === 'string' ? param.Default : `local-parameter-${id}`;
    const r = this.resource(id);
    const name = this.names.get(id)!;
    switch (r.Type) {
      case 'AWS::StepFunctions::StateMachine': return this.stateMachineArn;
      case 'AWS::ECS::TaskDefinition': return `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${name}:1`;
      case 'AWS::SQS::Queue': return `http://127.0.0.1/${ACCOUNT}/${name}`;
      case 'AWS::EC2::Subnet': return `subnet-${id.toLowerCase()}`;
      case 'AWS::EC2::SecurityGroup': return `sg-${id.toLowerCase()}`;
      case 'AWS::EC2::VPC': return `vpc-${id.toLowerCase()}`;
      default: return name;
    }
  }

  getAtt(id: string, attr: string): string {
    const r = this.resource(id);
    const name = this.names.get(id)!;
    const key = `${r.Type}.${attr}`;
    switch (key) {
      case 'AWS::S3::Bucket.Arn': return `arn:aws:s3:::${name}`;
      case 'AWS::S3::Bucket.DomainName': return `${name}.s3.amazonaws.com`;
      case 'AWS::S3::Bucket.RegionalDomainName': return `${name}.s3.${REGION}.amazonaws.com`;
      case 'AWS::Lambda::Function.Arn': return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;
      case 'AWS::StepFunctions::StateMachine.Arn': return this.stateMachineArn;
      case 'AWS::StepFunctions::StateMachine.Name': return LOCAL_STATE_MACHINE_NAME;
      case 'AWS::ECS::Cluster.Arn': return `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${name}`;
      case 'AWS::ECS::TaskDefinition.TaskDefinitionArn': return this.ref(id);
      case 'AWS::IAM::Role.Arn': return `arn:aws:iam::${ACCOUNT}:role/${name}`;
      case 'AWS::Logs::LogGroup.Arn': return `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${name}:*`;
      case 'AWS::SQS::Queue.Arn': return `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`;
      case 'AWS::SQS::Queue.QueueName': return name;
      case 'AWS::Events::Rule.Arn': return `arn:aws:events:${REGION}:${ACCOUNT}:rule/${name}`;
      case 'AWS::EC2::SecurityGroup.GroupId': return this.ref(id);
      default: return `local-${id}-${attr}`;
    }
  }

  /** Resolves the intrinsic functions CDK emits; others fail loudly. */
  resolve(v: unknown): JsonValue {
    if (Array.isArray(v)) return v.map((x) => this.resolve(x));
    if (!isObj(v)) return v as JsonValue;
    const keys = Object.keys(v);
    if (keys.length === 1) {
      const [fn] = keys as [string];
      const arg = v[fn];
      switch (fn) {
        case 'Ref': return this.ref(String(arg));
        case 'Fn::GetAtt': {
          const [id, ...attr] = Array.isArray(arg) ? arg.map(String) : String(arg).split('.');
          return this.getAtt(id!, attr.join('.'));
        }
        case 'Fn::Join': {
          const [sep, parts] = arg as [string, unknown];
          const list = this.resolve(parts);
          if (!Array.isArray(list)) throw new Error('Fn::Join: the second argument is not a list');
          return list.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(sep);
        }
        case 'Fn::Select': {
          const [i, list] = arg as [unknown, unknown];
          const l = this.resolve(list);
          if (!Array.isArray(l)) throw new Error('Fn::Select: not a list');
          return l[Number(this.resolve(i))] ?? null;
        }
        case 'Fn::Split': {
          const [sep, s] = arg as [string, unknown];
          return String(this.resolve(s)).split(sep);
        }
        case 'Fn::GetAZs': return [`${REGION}a`, `${REGION}b`];
        case 'Fn::Sub': {
          const [text, vars] = (typeof arg === 'string' ? [arg, {}] : arg) as [string, Record<string, unknown>];
          return text.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
            if (name in vars) return String(this.resolve(vars[name]));
            const dot = name.indexOf('.');
            return dot > 0 && !name.startsWith('AWS::') ? this.getAtt(name.slice(0, dot), name.slice(dot + 1)) : this.ref(name);
          });
        }
        default:
          if (fn.startsWith('Fn::') || fn === 'Condition') throw new Error(`the harness does not resolve ${fn}`);
      }
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.resolve(x)]));
  }
}

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
    if (!assetDir || !existsSync(assetDir)) throw new Error(`function ${logicalId}: its bundle is not in ${cdkOut}; synthesize with bundling (no aws:cdk:bundling-stacks filter)`);
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
    writeFileSync(loader, [
      '// Written by localstack/app-harness.ts: this function\'s Lambda environment, then its handler.',
      `Object.assign(process.env, ${JSON.stringify(environment)});`,
      `const mod = await import(${JSON.stringify(pathToFileURL(join(codeDir, moduleFile)).href)});`,
      `export const handler = mod[${JSON.stringify(exportName)}];`,
      '',
    ].join('\n'));
    functions[role] = {
      role, logicalId, assetDir, codeDir, environment,
      timeoutSeconds: Number(props['Timeout'] ?? 3),
      memoryMiB: Number(props['MemorySize'] ?? 128),
    };
  }

  // Buckets: the work bucket is the Lambdas' FANOUT_WORK_BUCKET; the watched one comes from the rule.
  const buckets: Record<string, string> = {};
  for (const [id, r] of Object.entries(resources)) if (r.Type === 'AWS::S3::Bucket') buckets[id] = resolver.ref(id);
  const workBucket = functions.plan.environment['FANOUT_WORK_BUCKET'];
  if (!workBucket) throw new Error('the Plan function has no FANOUT_WORK_BUCKET');
  const ruleEntries = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Events::Rule' && (r.Properties?.['State'] ?? 'ENABLED') === 'ENABLED' && r.Properties?.['EventPattern']);
  const resolveRules = (): LocalRule[] => ruleEntries.map(([id, r]) => {
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
    functions: Object.fromEntries((Object.keys(functions) as FunctionRole[]).map((role) => [role, {
      arn: arn(role),
      file: pathToFileURL(join(functions[role].codeDir, '__fanout_harness_entry.mjs')).href,
      timeoutSeconds: functions[role].timeoutSeconds,
    }])),
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
      buckets: [...watched], rules, sfnEndpoint: cloud.sfnEndpoint, stateMachineArn: cloud.stateMachineArn,
    };
    if (opts.pollIntervalMs !== undefined) bridgeOpts.pollIntervalMs = opts.pollIntervalMs;
    if (opts.onEvent) bridgeOpts.onEvent = opts.onEvent;
    if (opts.onExecution) bridgeOpts.onExecution = opts.onExecution;
    bridge = await startEventBridgeBridge(bridgeOpts);
    return {
      cloud, stack, definition, functions, buckets, workBucket, rules, bridge, sfn,
      waitForExecution: (executionArn, timeoutMs = 120_000) => waitForExecution(sfn, executionArn, timeoutMs),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A function's code directory in the cloud assembly: aws:asset:path metadata (CLI synth), else the asset manifest entry of its S3Key. */
function functionAssetDir(cdkOut: string, stack: SynthesizedStack, r: CfnResource, resolver: LocalResolver): string | null {
  const meta = r.Metadata?.['aws:asset:path'];
  if (typeof meta === 'string') return isAbsolute(meta) ? meta : join(cdkOut, meta);
  const code = r.Properties?.['Code'];
  const key = isObj(code) ? resolver.resolve(code['S3Key']) : null;
  if (typeof key !== 'string') return null;
  const manifestFile = stack.templateFile.replace(/\.template\.json$/, '.assets.json');
  if (existsSync(manifestFile)) {
    const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as { files?: Record<string, { source?: { path?: string; packaging?: string }; destinations?: Record<string, { objectKey?: string }> }> };
    for (const f of Object.values(m.files ?? {})) {
      if (f.source?.path && f.source.packaging === 'zip' && Object.values(f.destinations ?? {}).some((d) => d.objectKey === key)) return join(cdkOut, f.source.path);
    }
  }
  const byHash = join(cdkOut, `asset.${key.replace(/\.zip$/, '')}`);
  return existsSync(byHash) ? byHash : null;
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

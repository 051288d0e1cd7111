// A local Step Functions endpoint for tests and the offline harness: an HTTP server speaking the
// JSON 1.0 protocol of @aws-sdk/client-sfn, running executions with aws-local-stepfunctions and
// sending every Task to local handlers (Lambda handlers, an ECS runner, an S3 reader): nothing
// leaves the machine. Differences from AWS are listed in localstack/README.md.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StateMachine as LibStateMachine } from 'aws-local-stepfunctions';
import {
  ECS_RUN_TASK_SYNC,
  LAMBDA_INVOKE,
  S3_GET_OBJECT,
  type AslDefinition,
  type AslResourceConfig,
  type AslState,
  type AslStateMachine,
  type JsonValue,
} from '../src/aws/state-machine.ts';

// aws-local-stepfunctions 3 calls Promise.withResolvers (ES2024), which Node 20 lacks.
function polyfillWithResolvers(): void {
  const P = Promise as unknown as { withResolvers?: unknown };
  if (typeof P.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (v: T | PromiseLike<T>) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
polyfillWithResolvers();

type LibModule = typeof import('aws-local-stepfunctions');
let libModule: Promise<LibModule> | undefined;
// Imported only after the polyfill is in place.
const loadLib = (): Promise<LibModule> => (libModule ??= import('aws-local-stepfunctions'));

type LibRun = ReturnType<LibStateMachine['run']>;
type LibEvent = LibRun['eventLogs'] extends AsyncGenerator<infer E> ? E : never;
type LocalHandler = (input: JsonValue) => Promise<JsonValue>;

// ---------------------------------------------------------------------------------------------
// Synchronous event capture. The interpreter's own event log forwards events of nested Map
// iterations through async generators and drops those that arrive after the parent iteration's
// log has closed (with fast handlers most of a nested Map's events were lost). So the harness
// hooks each run's logger synchronously instead: StateMachine.prototype.run learns which run
// (and so which Map state, at which item index) spawns a nested run, and .execute wraps the new
// run's eventLogger.dispatch. Written against aws-local-stepfunctions 3.0 internals, checked at load.

/** One (nested) run of the interpreter: the root execution, a Map iteration or a Parallel branch. */
interface RunNode {
  sink: (node: RunNode, ev: LibEvent) => void;
  parent?: RunNode;
  /** The Map state this run is an iteration of, and its item index. */
  mapName?: string;
  index?: number;
  /** The state this run is in now, and how many nested runs it has spawned. */
  current?: { name: string; type: string; spawned: number; failed?: boolean };
}

/** Run option that carries the harness's sink into the root run (and, spread, into nested runs). */
const SINK_OPTION = '__fanoutHarnessSink';
const nodeByRunOptions = new WeakMap<object, RunNode>();
const seenEvents = new WeakSet<object>();
let pendingNode: RunNode | undefined;

interface HookableLogger {
  dispatch(ev: LibEvent): void;
}
interface HookableProto {
  run(this: unknown, input: unknown, options?: Record<string, unknown>): unknown;
  execute(this: unknown, input: unknown, options: { runOptions?: object; eventLogger?: HookableLogger }, cleanup: unknown): unknown;
  __fanoutHooked?: boolean;
}

function installHooks(SM: LibModule['StateMachine']): void {
  const proto = SM.prototype as unknown as HookableProto;
  if (proto.__fanoutHooked) return;
  if (typeof proto.run !== 'function' || typeof proto.execute !== 'function') {
    throw new Error('aws-local-stepfunctions: StateMachine.prototype.execute not found (the harness is written for 3.0)');
  }
  const origRun = proto.run;
  const origExecute = proto.execute;
  proto.run = function (input, options) {
    const parent = options ? nodeByRunOptions.get(options) : undefined;
    let node: RunNode | undefined;
    if (parent) {
      // A Map spawns its iterations in item order (p-limit is FIFO), so a counter is the index.
      const cur = parent.current;
      node = { sink: parent.sink, parent, mapName: cur?.type === 'Map' ? cur.name : undefined, index: cur ? cur.spawned++ : 0 };
    } else if (options && typeof options[SINK_OPTION] === 'function') {
      node = { sink: options[SINK_OPTION] as RunNode['sink'] };
    }
    const rootAborted = (options?.['_rootAbortSignal'] as AbortSignal | undefined)?.aborted === true;
    if (parent && (parent.current?.failed || rootAborted)) {
      // An iteration of this Map failed, so the Map has failed (or the execution was stopped): as
      // in AWS, the iterations still queued never start (the library's p-limit queue would start
      // them, task calls and all).
      const result = Promise.reject(new Error(rootAborted ? 'the execution was stopped' : `Map state ${parent.current?.name} already failed`));
      result.catch(() => undefined);
      return { abort: () => undefined, eventLogs: (async function* () {})(), result } as unknown as ReturnType<typeof origRun>;
    }
    const saved = pendingNode;
    pendingNode = node;
    try {
      return origRun.call(this, input, options);
    } finally {
      pendingNode = saved;
    }
  };
  proto.execute = function (input, options, cleanup) {
    // run() calls execute() synchronously, so pendingNode is this run's node.
    const node = pendingNode;
    pendingNode = undefined;
    const logger = options?.eventLogger;
    if (node && options.runOptions && logger && typeof logger.dispatch === 'function') {
      nodeByRunOptions.set(options.runOptions, node);
      const dispatch = logger.dispatch;
      logger.dispatch = function (ev: LibEvent) {
        // Forwarded copies of nested events reach the parent's logger later: count each once.
        if (typeof ev === 'object' && ev !== null && !seenEvents.has(ev)) {
          seenEvents.add(ev);
          if (ev.type === 'StateEntered' || ev.type === 'StateRetried') node.current = { name: ev.state.name, type: ev.state.type, spawned: 0 };
          // A failed iteration fails its Map (no tolerated failures in an inline Map).
          if ((ev.type === 'ExecutionFailed' || ev.type === 'ExecutionTimeout') && node.parent?.current?.type === 'Map') node.parent.current.failed = true;
          node.sink(node, ev);
        }
        dispatch.call(this, ev);
      };
    }
    return origExecute.call(this, input, options, cleanup);
  };
  proto.__fanoutHooked = true;
}

export interface LambdaContextLike {
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMB: string;
  awsRequestId: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

export interface EcsTaskParams {
  cluster: string;
  taskDefinition: string;
  /** Container override environment, flattened (all containers merged). */
  environment: Record<string, string>;
  /** Aborted when the state times out or the execution stops or ends: kill the child then. */
  signal: AbortSignal;
}

export interface LocalTaskHandlers {
  /** Lambda ARN -> handler(event, context) implementations; the harness enforces each function's timeout. */
  lambdas: Record<string, { handler: (event: unknown, context: LambdaContextLike) => Promise<unknown>; timeoutSeconds: number }>;
  /** Called for ecs:runTask.sync; resolves on exit code 0, rejects otherwise (the caller spawns the real child process). */
  runEcsTask?: (params: EcsTaskParams) => Promise<void>;
  /** Reads s3://bucket/key for a Distributed Map's ItemReader. Default: @aws-sdk/client-s3 with the
   *  SDK's own configuration (AWS_ENDPOINT_URL_S3 etc.; path-style when an endpoint is set). */
  getObject?: (bucket: string, key: string) => Promise<string>;
}

export interface LocalStepFunctions {
  /** http://127.0.0.1:<port>: the `endpoint` of an SFNClient. */
  endpoint: string;
  stateMachineArn: string;
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const STATE_MACHINE_NAME = 'fanout-local';
/** Step Functions' limit on a state's input or output (and a task's result). */
export const PAYLOAD_LIMIT_BYTES = 256 * 1024;
/** Where a normalized ItemReader puts the items it read, in the Map's input. */
export const NORMALIZED_ITEMS_PATH = '$.__fanoutItems';

// ---------------------------------------------------------------------------------------------
// Errors

/** A task failure as the interpreter matches it: `name` is the ASL error name, `message` the cause. */
class TaskError extends Error {
  constructor(name: string, cause: string, readonly catchable = true) {
    super(cause);
    this.name = name;
  }
  // Read by aws-local-stepfunctions' Retry/Catch matching.
  get isRetryable(): boolean {
    return this.catchable;
  }
  get isCatchable(): boolean {
    return this.catchable;
  }
}

/** What AWS puts in Cause for a failed Lambda invocation: the function's error document. */
function lambdaError(errorType: string, errorMessage: string, trace?: string): TaskError {
  return new TaskError(errorType, JSON.stringify({ errorType, errorMessage, trace: trace ? trace.split('\n').map((l) => l.trim()) : [] }));
}

function dataLimitError(what: string, bytes: number): TaskError {
  // Not catchable by States.ALL on AWS either.
  return new TaskError('States.DataLimitExceeded', `${what} has ${bytes} bytes, more than the ${PAYLOAD_LIMIT_BYTES}-byte payload limit`, false);
}

class ApiError extends Error {
  constructor(readonly type: string, message: string, readonly status = 400) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Definition walking and normalization

interface TaskInfo {
  name: string;
  resource: string;
  kind: 'lambda-arn' | 'lambda-invoke' | 'ecs-sync' | 'items-reader';
  timeoutSeconds: number;
  /** For items-reader: the ItemReader's ReaderConfig. */
  readerConfig?: AslResourceConfig['ReaderConfig'];
  /** History `resourceType` / `resource`. */
  resourceType: string;
  resourceName: string;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function subMachines(s: AslState): AslStateMachine[] {
  if (s.Type === 'Map') return [s.ItemProcessor ?? s.Iterator].filter((x): x is AslStateMachine => x !== undefined);
  if (s.Type === 'Parallel') return s.Branches ?? [];
  return [];
}

/**
 * Rewrites what aws-local-stepfunctions cannot run, and only that: a Distributed Map becomes an
 * inline Map; its ItemReader becomes a Task (`<Map>.ItemReader`, run by the harness) that reads the
 * items into `$.__fanoutItems` just before the Map; ResultWriter and Label are dropped.
 * Returns the new definition and one note per rewrite.
 */
export function normalizeDefinitionForLocal(def: AslDefinition): { definition: AslDefinition; notes: string[] } {
  const out = clone(def);
  const notes: string[] = [];
  const visit = (sm: AslStateMachine): void => {
    for (const [name, s] of Object.entries(sm.States)) {
      if (s.Type === 'Map') {
        const proc = s.ItemProcessor;
        const distributed = proc?.ProcessorConfig?.Mode === 'DISTRIBUTED';
        if (distributed || s.ItemReader || s.ResultWriter) {
          for (const f of ['ItemBatcher', 'ToleratedFailurePercentage', 'ToleratedFailureCount'] as const) {
            if (s[f] !== undefined) throw new Error(`state ${name}: ${f} is not supported by the local harness`);
          }
          if (proc) proc.ProcessorConfig = { Mode: 'INLINE' };
          delete s.ResultWriter;
          delete s.Label;
          notes.push(`${name}: Distributed Map run as an inline Map`);
          if (s.ItemReader) {
            if (s.InputPath !== undefined) throw new Error(`state ${name}: ItemReader together with InputPath is not supported by the local harness`);
            const reader = s.ItemReader;
            if (reader.Resource !== S3_GET_OBJECT) throw new Error(`state ${name}: ItemReader ${reader.Resource} is not supported (only ${S3_GET_OBJECT})`);
            const type = reader.ReaderConfig?.InputType ?? 'JSON';
            if (type !== 'JSON' && type !== 'JSONL') throw new Error(`state ${name}: ItemReader InputType ${type} is not supported (JSON, JSONL)`);
            const loader = `${name}.ItemReader`;
            if (loader in sm.States) throw new Error(`state ${loader} already exists`);
            retarget(sm, name, loader);
            sm.States[loader] = {
              Type: 'Task',
              Comment: `harness: ItemReader of ${name}`,
              Resource: S3_GET_OBJECT,
              Parameters: { ...(reader.Parameters ?? {}), __readerConfig: clone(reader.ReaderConfig ?? {}) as JsonValue },
              ResultPath: NORMALIZED_ITEMS_PATH,
              TimeoutSeconds: 60,
              // A failing reader fails the Map on AWS: the Map's own Retry/Catch apply.
              ...(s.Retry ? { Retry: clone(s.Retry) } : {}),
              ...(s.Catch ? { Catch: clone(s.Catch) } : {}),
              Next: name,
            };
            delete s.ItemReader;
            s.ItemsPath = NORMALIZED_ITEMS_PATH;
            notes.push(`${name}: ItemReader read by the Task state ${loader} into ${NORMALIZED_ITEMS_PATH}`);
          }
        }
      }
      for (const sub of subMachines(s)) visit(sub);
    }
  };
  visit(out);
  return { definition: out, notes };
}

/** Points every transition to `from` within this scope at `to`. */
function retarget(sm: AslStateMachine, from: string, to: string): void {
  if (sm.StartAt === from) sm.StartAt = to;
  for (const s of Object.values(sm.States)) {
    if (s.Next === from) s.Next = to;
    if (s.Default === from) s.Default = to;
    for (const c of s.Choices ?? []) if (c.Next === from) c.Next = to;
    for (const c of s.Catch ?? []) if (c.Next === from) c.Next = to;
  }
}

function collectTasks(def: AslStateMachine): Map<string, TaskInfo> {
  const tasks = new Map<string, TaskInfo>();
  const names = new Set<string>();
  const visit = (sm: AslStateMachine): void => {
    for (const [name, s] of Object.entries(sm.States)) {
      // Overrides are keyed by state name, so names must be unique (ASL requires it anyway).
      if (names.has(name)) throw new Error(`state name ${name} is used twice`);
      names.add(name);
      if (s.Type === 'Task') tasks.set(name, classifyTask(name, s));
      for (const sub of subMachines(s)) visit(sub);
    }
  };
  visit(def);
  return tasks;
}

function classifyTask(name: string, s: AslState): TaskInfo {
  const resource = s.Resource ?? '';
  const timeoutSeconds = s.TimeoutSeconds ?? 60;
  const base = { name, resource, timeoutSeconds };
  if (/^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:/.test(resource)) return { ...base, kind: 'lambda-arn', resourceType: 'lambda', resourceName: resource };
  if (resource === LAMBDA_INVOKE) return { ...base, kind: 'lambda-invoke', resourceType: 'lambda', resourceName: 'invoke' };
  if (resource === ECS_RUN_TASK_SYNC) return { ...base, kind: 'ecs-sync', resourceType: 'ecs', resourceName: 'runTask.sync' };
  if (resource === S3_GET_OBJECT && s.Comment?.startsWith('harness: ItemReader')) return { ...base, kind: 'items-reader', resourceType: 's3', resourceName: 'getObject' };
  throw new Error(`state ${name}: Resource ${resource} is not supported by the local harness (Lambda ARNs, ${LAMBDA_INVOKE}, ${ECS_RUN_TASK_SYNC})`);
}

// ---------------------------------------------------------------------------------------------
// Task handlers

function functionNameOf(nameOrArn: string): string {
  const m = /^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(?::.*)?$/.exec(nameOrArn);
  return m ? m[1]! : nameOrArn.split(':')[0]!;
}

function resolveLambda(handlers: LocalTaskHandlers, nameOrArn: string): string | undefined {
  if (nameOrArn in handlers.lambdas) return nameOrArn;
  const fn = functionNameOf(nameOrArn);
  return Object.keys(handlers.lambdas).find((k) => functionNameOf(k) === fn);
}

function sizeOf(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v ?? null));
}

interface ExecScope {
  signal: AbortSignal;
  executionArn: string;
}

async function invokeLambda(handlers: LocalTaskHandlers, nameOrArn: string, payload: JsonValue): Promise<JsonValue> {
  const key = resolveLambda(handlers, nameOrArn);
  if (key === undefined) throw lambdaError('Lambda.ResourceNotFoundException', `Function not found: ${nameOrArn}`);
  const fn = handlers.lambdas[key]!;
  // The handler gets its own copy, as a deserialized request would be.
  const event: unknown = JSON.parse(JSON.stringify(payload ?? null));
  const awsRequestId = randomUUID();
  const timeoutMs = fn.timeoutSeconds * 1000;
  const deadline = Date.now() + timeoutMs;
  const functionName = functionNameOf(key);
  const context: LambdaContextLike = {
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: key.startsWith('arn:') ? key : `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${key}`,
    memoryLimitInMB: '1024',
    awsRequestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/${awsRequestId}`,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(lambdaError('Sandbox.Timedout', `RequestId: ${awsRequestId} Error: Task timed out after ${fn.timeoutSeconds.toFixed(2)} seconds`)),
      timeoutMs,
    );
  });
  try {
    const result = await Promise.race([Promise.resolve().then(() => fn.handler(event, context)), timedOut]);
    return result === undefined ? null : (JSON.parse(JSON.stringify(result)) as JsonValue);
  } catch (e) {
    if (e instanceof TaskError) throw e;
    if (e instanceof Error) throw lambdaError(e.name || 'Error', e.message, e.stack);
    throw lambdaError('Error', String(e));
  } finally {
    clearTimeout(timer);
  }
}

function isObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function flattenEnvironment(params: Record<string, JsonValue>): Record<string, string> {
  const env: Record<string, string> = {};
  const overrides = params.Overrides;
  const containers = isObject(overrides) && Array.isArray(overrides.ContainerOverrides) ? overrides.ContainerOverrides : [];
  for (const c of containers) {
    if (!isObject(c) || !Array.isArray(c.Environment)) continue;
    for (const kv of c.Environment) {
      if (isObject(kv) && typeof kv.Name === 'string') env[kv.Name] = kv.Value === null || kv.Value === undefined ? '' : String(kv.Value);
    }
  }
  return env;
}

async function readItems(handlers: LocalTaskHandlers, params: Record<string, JsonValue>): Promise<JsonValue[]> {
  const bucket = params.Bucket;
  const key = params.Key;
  if (typeof bucket !== 'string' || typeof key !== 'string') throw new TaskError('States.ItemReaderFailed', 'ItemReader Parameters need Bucket and Key strings');
  const cfg = isObject(params.__readerConfig) ? params.__readerConfig : {};
  let text: string;
  try {
    text = await (handlers.getObject ?? defaultGetObject)(bucket, key);
  } catch (e) {
    throw new TaskError('States.ItemReaderFailed', `s3://${bucket}/${key}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let items: JsonValue[];
  try {
    if (cfg.InputType === 'JSONL') items = text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as JsonValue);
    else items = JSON.parse(text) as JsonValue[];
  } catch (e) {
    throw new TaskError('States.ItemReaderFailed', `s3://${bucket}/${key}: not ${String(cfg.InputType ?? 'JSON')}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Array.isArray(items)) throw new TaskError('States.ItemReaderFailed', `s3://${bucket}/${key}: the JSON is not an array`);
  return typeof cfg.MaxItems === 'number' ? items.slice(0, cfg.MaxItems) : items;
}

let s3Client: Promise<(bucket: string, key: string) => Promise<string>> | undefined;
function defaultGetObject(bucket: string, key: string): Promise<string> {
  s3Client ??= import('@aws-sdk/client-s3').then(({ S3Client, GetObjectCommand }) => {
    const client = new S3Client({ forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL) });
    return async (b: string, k: string) => {
      const r = await client.send(new GetObjectCommand({ Bucket: b, Key: k }));
      if (!r.Body) throw new Error('empty body');
      return r.Body.transformToString();
    };
  });
  return s3Client.then((get) => get(bucket, key));
}

function buildLocalHandlers(tasks: Map<string, TaskInfo>, handlers: LocalTaskHandlers, scope: ExecScope): Record<string, LocalHandler> {
  const out: Record<string, LocalHandler> = {};
  for (const t of tasks.values()) {
    let run: LocalHandler;
    switch (t.kind) {
      case 'lambda-arn':
        run = (input) => invokeLambda(handlers, t.resource, input);
        break;
      case 'lambda-invoke':
        run = async (input) => {
          if (!isObject(input) || typeof input.FunctionName !== 'string') throw new TaskError('States.Runtime', 'lambda:invoke needs Parameters.FunctionName');
          const payload = await invokeLambda(handlers, input.FunctionName, input.Payload ?? null);
          // The optimized integration's result: the function's answer is under Payload.
          return { ExecutedVersion: '$LATEST', Payload: payload, StatusCode: 200 };
        };
        break;
      case 'ecs-sync':
        run = async (input) => {
          if (!isObject(input)) throw new TaskError('States.Runtime', 'ecs:runTask.sync needs Parameters');
          if (!handlers.runEcsTask) throw new TaskError('States.TaskFailed', 'the harness was started without runEcsTask');
          const cluster = String(input.Cluster ?? 'default');
          const taskDefinition = String(input.TaskDefinition ?? '');
          const taskArn = `arn:aws:ecs:${REGION}:${ACCOUNT}:task/${cluster.split('/').pop()}/${randomUUID().replace(/-/g, '')}`;
          // The state's timeout stops the task, as Step Functions stops a .sync task it gives up on.
          const timeout = AbortSignal.timeout(t.timeoutSeconds * 1000);
          try {
            await handlers.runEcsTask({ cluster, taskDefinition, environment: flattenEnvironment(input), signal: AbortSignal.any([scope.signal, timeout]) });
          } catch (e) {
            const name = e instanceof Error && e.name && e.name !== 'Error' ? e.name : 'States.TaskFailed';
            const message = e instanceof Error ? e.message : String(e);
            throw new TaskError(name, JSON.stringify({ TaskArn: taskArn, LastStatus: 'STOPPED', StopCode: 'EssentialContainerExited', StoppedReason: message }));
          }
          return { Cluster: cluster, TaskArn: taskArn, TaskDefinitionArn: taskDefinition, LastStatus: 'STOPPED', StopCode: 'EssentialContainerExited', Containers: [{ ExitCode: 0, LastStatus: 'STOPPED' }] };
        };
        break;
      case 'items-reader':
        run = async (input) => readItems(handlers, isObject(input) ? input : {});
        break;
    }
    out[t.name] = async (input) => {
      // The interpreter may still retry a task after the execution was stopped: start nothing new.
      if (scope.signal.aborted) throw new TaskError('States.Runtime', `execution ${scope.executionArn} has ended`, false);
      const result = await run(input);
      const bytes = sizeOf(result);
      if (bytes > PAYLOAD_LIMIT_BYTES) throw dataLimitError(`the result of ${t.name}`, bytes);
      return result;
    };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Executions

type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

interface HistoryEvent {
  id: number;
  previousEventId: number;
  timestamp: number;
  type: string;
  [details: string]: unknown;
}

interface ExecutionRecord {
  executionArn: string;
  name: string;
  input: string;
  status: ExecutionStatus;
  startDate: number;
  stopDate?: number;
  output?: string;
  error?: string;
  cause?: string;
  events: HistoryEvent[];
  controller: AbortController;
  abortRun?: () => void;
  stopRequest?: { error?: string; cause?: string };
  dataLimit?: TaskError;
  historyClosed?: boolean;
  done: Promise<void>;
}

/** A nested run's own start/end, as the parent's Map iteration event suffix. */
const ITERATION_EVENT: Partial<Record<string, 'Started' | 'Succeeded' | 'Failed' | 'Aborted'>> = {
  ExecutionStarted: 'Started',
  ExecutionSucceeded: 'Succeeded',
  ExecutionFailed: 'Failed',
  ExecutionAborted: 'Aborted',
  ExecutionTimeout: 'Aborted',
};

const nowSeconds = (ms = Date.now()): number => ms / 1000;
const json = (v: unknown): string => JSON.stringify(v ?? null);

function getSimplePath(v: unknown, path: string | undefined): unknown {
  if (!path || !/^\$(\.[A-Za-z0-9_]+)*$/.test(path)) return undefined;
  let cur = v;
  for (const k of path.split('.').slice(1)) cur = isObject(cur) ? cur[k] : undefined;
  return cur;
}

export async function startLocalStepFunctions(opts: { definition: AslDefinition | string; roleArn?: string; handlers: LocalTaskHandlers; port?: number }): Promise<LocalStepFunctions> {
  const original: AslDefinition = typeof opts.definition === 'string' ? (JSON.parse(opts.definition) as AslDefinition) : clone(opts.definition);
  const { definition } = normalizeDefinitionForLocal(original);
  const tasks = collectTasks(definition);
  for (const t of tasks.values()) {
    if (t.kind === 'lambda-arn' && resolveLambda(opts.handlers, t.resource) === undefined) throw new Error(`state ${t.name}: no local handler for ${t.resource}`);
  }
  const states = new Map<string, AslState>();
  (function index(sm: AslStateMachine) {
    for (const [n, s] of Object.entries(sm.States)) {
      states.set(n, s);
      for (const sub of subMachines(s)) index(sub);
    }
  })(definition);
  for (const [n, s] of states) {
    const fname = s.Type === 'Task' && s.Resource === LAMBDA_INVOKE ? s.Parameters?.FunctionName : undefined;
    if (typeof fname === 'string' && resolveLambda(opts.handlers, fname) === undefined) throw new Error(`state ${n}: no local handler for ${fname}`);
  }

  const { StateMachine } = await loadLib();
  installHooks(StateMachine);
  const machine = new StateMachine(definition as unknown as ConstructorParameters<LibModule['StateMachine']>[0]);
  const roleArn = opts.roleArn ?? `arn:aws:iam::${ACCOUNT}:role/fanout-local-sfn`;
  const stateMachineArn = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`;
  const creationDate = nowSeconds();
  const executions = new Map<string, ExecutionRecord>();
  const order: ExecutionRecord[] = [];

  function push(rec: ExecutionRecord, type: string, details: Record<string, unknown> = {}, ts = Date.now()): void {
    // Nothing follows the execution's last event (stopped iterations may still report in).
    if (rec.historyClosed) return;
    if (type.startsWith('Execution') && type !== 'ExecutionStarted') rec.historyClosed = true;
    const id = rec.events.length + 1;
    rec.events.push({ id, previousEventId: id - 1, timestamp: nowSeconds(ts), type, ...details });
  }

  function checkSize(rec: ExecutionRecord, what: string, text: string): void {
    const bytes = Buffer.byteLength(text);
    if (bytes > PAYLOAD_LIMIT_BYTES && !rec.dataLimit && rec.status === 'RUNNING') {
      rec.dataLimit = dataLimitError(what, bytes);
      rec.abortRun?.();
    }
  }

  function onEvent(rec: ExecutionRecord, node: RunNode, ev: LibEvent): void {
    const ts = ev.timestamp;
    if (node.parent) {
      // A nested run: its start/end are Map iteration events of the parent; the rest as usual.
      const kind = ITERATION_EVENT[ev.type];
      if (kind) {
        if (node.mapName !== undefined) push(rec, `MapIteration${kind}`, { [`mapIteration${kind}EventDetails`]: { name: node.mapName, index: node.index } }, ts);
        return;
      }
    }
    switch (ev.type) {
      case 'ExecutionStarted':
        push(rec, 'ExecutionStarted', { executionStartedEventDetails: { input: json(ev.input), inputDetails: { truncated: false }, roleArn } }, ts);
        return;
      case 'ExecutionSucceeded':
        push(rec, 'ExecutionSucceeded', { executionSucceededEventDetails: { output: json(ev.output), outputDetails: { truncated: false } } }, ts);
        return;
      case 'ExecutionFailed':
        push(rec, 'ExecutionFailed', { executionFailedEventDetails: { error: ev.Error, cause: String(ev.Cause ?? '') } }, ts);
        return;
      case 'ExecutionAborted':
        if (rec.dataLimit) push(rec, 'ExecutionFailed', { executionFailedEventDetails: { error: rec.dataLimit.name, cause: rec.dataLimit.message } }, ts);
        else push(rec, 'ExecutionAborted', { executionAbortedEventDetails: { error: rec.stopRequest?.error, cause: rec.stopRequest?.cause } }, ts);
        return;
      case 'ExecutionTimeout':
        push(rec, 'ExecutionTimedOut', { executionTimedOutEventDetails: {} }, ts);
        return;
      case 'StateEntered': {
        const { name, type, input } = ev.state;
        const text = json(input);
        checkSize(rec, `the input of ${name}`, text);
        push(rec, `${type}StateEntered`, { stateEnteredEventDetails: { name, input: text, inputDetails: { truncated: false } } }, ts);
        const t = tasks.get(name);
        if (t) {
          push(rec, 'TaskScheduled', { taskScheduledEventDetails: { resourceType: t.resourceType, resource: t.resourceName, region: REGION, parameters: text, timeoutInSeconds: t.timeoutSeconds } }, ts);
          push(rec, 'TaskStarted', { taskStartedEventDetails: { resourceType: t.resourceType, resource: t.resourceName } }, ts);
        } else if (type === 'Map') {
          const items = getSimplePath(input, states.get(name)?.ItemsPath ?? '$');
          push(rec, 'MapStateStarted', { mapStateStartedEventDetails: { length: Array.isArray(items) ? items.length : 0 } }, ts);
        } else if (type === 'Parallel') {
          push(rec, 'ParallelStateStarted', {}, ts);
        }
        return;
      }
      case 'StateExited': {
        const { name, type, output } = ev.state;
        const text = json(output);
        checkSize(rec, `the output of ${name}`, text);
        const t = tasks.get(name);
        if (t) push(rec, 'TaskSucceeded', { taskSucceededEventDetails: { resourceType: t.resourceType, resource: t.resourceName, output: text, outputDetails: { truncated: false } } }, ts);
        else if (type === 'Map') push(rec, 'MapStateSucceeded', {}, ts);
        else if (type === 'Parallel') push(rec, 'ParallelStateSucceeded', {}, ts);
        push(rec, `${type}StateExited`, { stateExitedEventDetails: { name, output: text, outputDetails: { truncated: false } } }, ts);
        return;
      }
      case 'StateFailed': {
        const { name, type } = ev.state;
        const error = ev.Error;
        const cause = typeof ev.Cause === 'string' ? ev.Cause : json(ev.Cause);
        const t = tasks.get(name);
        if (t) {
          const timedOut = error === 'States.Timeout';
          const key = timedOut ? 'taskTimedOutEventDetails' : 'taskFailedEventDetails';
          push(rec, timedOut ? 'TaskTimedOut' : 'TaskFailed', { [key]: { resourceType: t.resourceType, resource: t.resourceName, error, cause } }, ts);
        } else if (type === 'Map' || type === 'Parallel') {
          push(rec, `${type}StateFailed`, {}, ts);
        }
        return;
      }
      case 'StateRetried': {
        // A retry is a new attempt of the same state: AWS logs it as a new TaskScheduled/TaskStarted.
        const t = tasks.get(ev.state.name);
        if (t) {
          push(rec, 'TaskScheduled', { taskScheduledEventDetails: { resourceType: t.resourceType, resource: t.resourceName, region: REGION, parameters: json(ev.state.input), timeoutInSeconds: t.timeoutSeconds } }, ts);
          push(rec, 'TaskStarted', { taskStartedEventDetails: { resourceType: t.resourceType, resource: t.resourceName } }, ts);
        }
        return;
      }
      default:
        return;
    }
  }

  function finish(rec: ExecutionRecord, status: ExecutionStatus, fields: { output?: string; error?: string; cause?: string }): void {
    if (rec.status !== 'RUNNING') return;
    rec.status = status;
    rec.stopDate = nowSeconds();
    Object.assign(rec, fields);
    // Whatever still runs for this execution (ECS children) is told to stop.
    rec.controller.abort();
  }

  function startExecution(name: string, inputText: string): ExecutionRecord {
    let input: JsonValue;
    try {
      input = JSON.parse(inputText) as JsonValue;
    } catch (e) {
      throw new ApiError('InvalidExecutionInput', `Invalid execution input: ${e instanceof Error ? e.message : String(e)}`);
    }
    const executionArn = `arn:aws:states:${REGION}:${ACCOUNT}:execution:${STATE_MACHINE_NAME}:${name}`;
    const rec: ExecutionRecord = {
      executionArn,
      name,
      input: inputText,
      status: 'RUNNING',
      startDate: nowSeconds(),
      events: [],
      controller: new AbortController(),
      done: Promise.resolve(),
    };
    const overrides = buildLocalHandlers(tasks, opts.handlers, { signal: rec.controller.signal, executionArn });
    const runOptions = {
      overrides: { taskResourceLocalHandlers: overrides },
      context: {
        Execution: { Id: executionArn, Name: name, RoleArn: roleArn, StartTime: new Date().toISOString() },
        StateMachine: { Id: stateMachineArn, Name: STATE_MACHINE_NAME },
      },
      [SINK_OPTION]: (node: RunNode, ev: LibEvent) => onEvent(rec, node, ev),
    };
    const run = machine.run(input, runOptions);
    rec.abortRun = run.abort;
    // History comes from the hooks; the interpreter's own log is only drained.
    const consumed = (async () => {
      for await (const _ of run.eventLogs);
    })().catch(() => undefined);
    const settled = run.result.then(
      (output) => finish(rec, 'SUCCEEDED', { output: json(output) }),
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        if (rec.dataLimit) finish(rec, 'FAILED', { error: rec.dataLimit.name, cause: rec.dataLimit.message });
        else if (e.name === 'ExecutionAbortedError') finish(rec, 'ABORTED', { error: rec.stopRequest?.error, cause: rec.stopRequest?.cause });
        else if (e.name === 'ExecutionTimeoutError') finish(rec, 'TIMED_OUT', { error: 'States.Timeout', cause: 'The execution ran longer than its TimeoutSeconds' });
        else {
          // ExecutionError wraps the state's error: its name is the ASL error, its message the cause.
          const inner = e.name === 'ExecutionError' && e.cause instanceof Error ? e.cause : e;
          finish(rec, 'FAILED', { error: inner.name, cause: inner.message });
        }
      },
    );
    rec.done = Promise.all([settled, consumed]).then(() => undefined);
    executions.set(executionArn, rec);
    order.push(rec);
    return rec;
  }

  function describe(rec: ExecutionRecord): Record<string, unknown> {
    return {
      executionArn: rec.executionArn,
      stateMachineArn,
      name: rec.name,
      status: rec.status,
      startDate: rec.startDate,
      ...(rec.stopDate !== undefined ? { stopDate: rec.stopDate } : {}),
      input: rec.input,
      inputDetails: { included: true },
      ...(rec.output !== undefined ? { output: rec.output, outputDetails: { included: true } } : {}),
      ...(rec.error !== undefined ? { error: rec.error } : {}),
      ...(rec.cause !== undefined ? { cause: rec.cause } : {}),
    };
  }

  function getExecution(body: Record<string, unknown>): ExecutionRecord {
    const arn = body.executionArn;
    if (typeof arn !== 'string') throw new ApiError('InvalidArn', 'executionArn is required');
    const rec = executions.get(arn);
    if (!rec) throw new ApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
    return rec;
  }

  function checkMachine(body: Record<string, unknown>): void {
    if (body.stateMachineArn !== stateMachineArn) throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${String(body.stateMachineArn)}'`);
  }

  function page<T>(items: T[], body: Record<string, unknown>, defaultMax: number): { items: T[]; nextToken?: string } {
    const max = Math.min(Math.max(Number(body.maxResults) || defaultMax, 1), 1000);
    const start = typeof body.nextToken === 'string' ? Number(Buffer.from(body.nextToken, 'base64url').toString()) : 0;
    if (!Number.isInteger(start) || start < 0) throw new ApiError('InvalidToken', 'Invalid nextToken');
    const slice = items.slice(start, start + max);
    return start + max < items.length ? { items: slice, nextToken: Buffer.from(String(start + max)).toString('base64url') } : { items: slice };
  }

  const operations: Record<string, (body: Record<string, unknown>) => unknown> = {
    StartExecution(body) {
      checkMachine(body);
      const name = typeof body.name === 'string' ? body.name : randomUUID();
      if (!/^[^\s<>{}[\]?*"#%\\^|~`$&,;:/]{1,80}$/.test(name)) throw new ApiError('InvalidName', `Invalid Name: '${name}'`);
      const input = typeof body.input === 'string' ? body.input : '{}';
      const existing = order.find((r) => r.name === name);
      if (existing) {
        // Same name and input while running: idempotent, as on AWS.
        if (existing.status === 'RUNNING' && existing.input === input) return { executionArn: existing.executionArn, startDate: existing.startDate };
        throw new ApiError('ExecutionAlreadyExists', `Execution Already Exists: '${existing.executionArn}'`);
      }
      const rec = startExecution(name, input);
      return { executionArn: rec.executionArn, startDate: rec.startDate };
    },
    DescribeExecution(body) {
      return describe(getExecution(body));
    },
    GetExecutionHistory(body) {
      const rec = getExecution(body);
      const withData = body.includeExecutionData !== false;
      let events: HistoryEvent[] = rec.events;
      if (body.reverseOrder === true) events = [...events].reverse();
      const p = page(events, body, 100);
      const out = withData ? p.items : p.items.map(stripData);
      return { events: out, ...(p.nextToken ? { nextToken: p.nextToken } : {}) };
    },
    StopExecution(body) {
      const rec = getExecution(body);
      if (rec.status === 'RUNNING') {
        rec.stopRequest = { error: typeof body.error === 'string' ? body.error : undefined, cause: typeof body.cause === 'string' ? body.cause : undefined };
        rec.abortRun?.();
        finish(rec, 'ABORTED', { error: rec.stopRequest.error, cause: rec.stopRequest.cause });
      }
      return { stopDate: rec.stopDate ?? nowSeconds() };
    },
    ListExecutions(body) {
      checkMachine(body);
      const filter = typeof body.statusFilter === 'string' ? body.statusFilter : undefined;
      const newestFirst = [...order].reverse().filter((r) => !filter || r.status === filter);
      const p = page(newestFirst, body, 100);
      return {
        executions: p.items.map((r) => ({ executionArn: r.executionArn, stateMachineArn, name: r.name, status: r.status, startDate: r.startDate, ...(r.stopDate !== undefined ? { stopDate: r.stopDate } : {}) })),
        ...(p.nextToken ? { nextToken: p.nextToken } : {}),
      };
    },
    DescribeStateMachine(body) {
      checkMachine(body);
      return { stateMachineArn, name: STATE_MACHINE_NAME, status: 'ACTIVE', definition: JSON.stringify(original), roleArn, type: 'STANDARD', creationDate };
    },
  };

  const server = createServer((req, res) => void handle(req, res));
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID(), ...headers });
      res.end(text);
    };
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const target = String(req.headers['x-amz-target'] ?? '');
      const [service, op] = target.split('.');
      const fn = service === 'AWSStepFunctions' && op ? operations[op] : undefined;
      if (req.method !== 'POST' || !fn) throw new ApiError('UnknownOperationException', `Unsupported operation: ${target || '(no X-Amz-Target)'}`);
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : {};
      } catch {
        throw new ApiError('SerializationException', 'Request body is not JSON');
      }
      reply(200, fn(isObject(body) ? body : {}));
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError('InternalFailure', e instanceof Error ? e.message : String(e), 500);
      reply(err.status, { __type: `com.amazonaws.sfn#${err.type}`, message: err.message }, { 'x-amzn-errortype': err.type });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    stateMachineArn,
    async stop() {
      for (const rec of order) {
        if (rec.status === 'RUNNING') {
          rec.stopRequest = { error: 'HarnessStopped', cause: `the local Step Functions server at http://127.0.0.1:${port} was stopped` };
          rec.abortRun?.();
          finish(rec, 'ABORTED', rec.stopRequest);
        }
      }
      await Promise.all(order.map((r) => r.done));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function stripData(e: HistoryEvent): HistoryEvent {
  const out: HistoryEvent = { ...e };
  for (const [k, v] of Object.entries(out)) {
    if (k.endsWith('EventDetails') && isObject(v)) {
      const { input: _i, output: _o, parameters: _p, ...rest } = v as Record<string, unknown>;
      out[k] = rest;
    }
  }
  return out;
}

// The local implementations of every Task resource the pipeline uses: Lambda (by ARN and through
// lambda:invoke), ecs:runTask.sync, and the S3 reads of a normalized ItemReader. Each execution gets
// its own set, keyed by state name as aws-local-stepfunctions' taskResourceLocalHandlers wants.
import { randomUUID } from 'node:crypto';
import { LAMBDA_INVOKE, type AslState, type JsonValue } from '../../src/aws/state-machine.ts';
import { ACCOUNT, PAYLOAD_LIMIT_BYTES, REGION } from './constants.ts';
import { TaskError, dataLimitError, lambdaError } from './errors.ts';
import { isObject, sizeOf } from './json.ts';
import type { TaskInfo } from './normalize.ts';
import { toleranceTask } from './tolerance.ts';

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
  /** RunTask's LaunchType ('FARGATE' for CPU stages beyond Lambda; unset: the cluster's EC2 capacity). */
  launchType?: string;
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

export type LocalHandler = (input: JsonValue) => Promise<JsonValue>;

/** What a task's handlers know of the execution they run for. */
export interface ExecScope {
  signal: AbortSignal;
  executionArn: string;
}

function functionNameOf(nameOrArn: string): string {
  const m = /^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(?::.*)?$/.exec(nameOrArn);
  return m ? m[1]! : nameOrArn.split(':')[0]!;
}

function resolveLambda(handlers: LocalTaskHandlers, nameOrArn: string): string | undefined {
  if (nameOrArn in handlers.lambdas) return nameOrArn;
  const fn = functionNameOf(nameOrArn);
  return Object.keys(handlers.lambdas).find((k) => functionNameOf(k) === fn);
}

/** Fails at start-up, naming the state, when a Lambda the definition calls has no local handler. */
export function checkLambdaHandlers(tasks: Map<string, TaskInfo>, states: Map<string, AslState>, handlers: LocalTaskHandlers): void {
  for (const t of tasks.values()) {
    if (t.kind === 'lambda-arn' && resolveLambda(handlers, t.resource) === undefined) throw new Error(`state ${t.name}: no local handler for ${t.resource}`);
  }
  for (const [n, s] of states) {
    const fname = s.Type === 'Task' && s.Resource === LAMBDA_INVOKE ? s.Parameters?.FunctionName : undefined;
    if (typeof fname === 'string' && resolveLambda(handlers, fname) === undefined) throw new Error(`state ${n}: no local handler for ${fname}`);
  }
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

async function runEcsTaskSync(handlers: LocalTaskHandlers, t: TaskInfo, scope: ExecScope, input: JsonValue): Promise<JsonValue> {
  if (!isObject(input)) throw new TaskError('States.Runtime', 'ecs:runTask.sync needs Parameters');
  if (!handlers.runEcsTask) throw new TaskError('States.TaskFailed', 'the harness was started without runEcsTask');
  const cluster = String(input.Cluster ?? 'default');
  const taskDefinition = String(input.TaskDefinition ?? '');
  const taskArn = `arn:aws:ecs:${REGION}:${ACCOUNT}:task/${cluster.split('/').pop()}/${randomUUID().replace(/-/g, '')}`;
  // The state's timeout stops the task, as Step Functions stops a .sync task it gives up on.
  const timeout = AbortSignal.timeout(t.timeoutSeconds * 1000);
  try {
    const params: EcsTaskParams = { cluster, taskDefinition, environment: flattenEnvironment(input), signal: AbortSignal.any([scope.signal, timeout]) };
    if (typeof input.LaunchType === 'string') params.launchType = input.LaunchType;
    await handlers.runEcsTask(params);
  } catch (e) {
    const name = e instanceof Error && e.name && e.name !== 'Error' ? e.name : 'States.TaskFailed';
    const message = e instanceof Error ? e.message : String(e);
    throw new TaskError(name, JSON.stringify({ TaskArn: taskArn, LastStatus: 'STOPPED', StopCode: 'EssentialContainerExited', StoppedReason: message }));
  }
  return {
    Cluster: cluster,
    TaskArn: taskArn,
    TaskDefinitionArn: taskDefinition,
    LastStatus: 'STOPPED',
    StopCode: 'EssentialContainerExited',
    Containers: [{ ExitCode: 0, LastStatus: 'STOPPED' }],
  };
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
  if (typeof bucket !== 'string' || typeof key !== 'string')
    throw new TaskError('States.ItemReaderFailed', 'ItemReader Parameters need Bucket and Key strings');
  const cfg = isObject(params.__readerConfig) ? params.__readerConfig : {};
  let text: string;
  try {
    text = await (handlers.getObject ?? defaultGetObject)(bucket, key);
  } catch (e) {
    throw new TaskError('States.ItemReaderFailed', `s3://${bucket}/${key}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let items: JsonValue[];
  try {
    if (cfg.InputType === 'JSONL')
      items = text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as JsonValue);
    else items = JSON.parse(text) as JsonValue[];
  } catch (e) {
    throw new TaskError(
      'States.ItemReaderFailed',
      `s3://${bucket}/${key}: not ${String(cfg.InputType ?? 'JSON')}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (!Array.isArray(items)) throw new TaskError('States.ItemReaderFailed', `s3://${bucket}/${key}: the JSON is not an array`);
  return typeof cfg.MaxItems === 'number' ? items.slice(0, cfg.MaxItems) : items;
}

/**
 * A Distributed Map's ItemBatcher, as AWS applies it: the ItemSelector to each item first, then
 * batches of at most MaxItemsPerBatch items (and MaxInputBytesPerBatch bytes) as
 * `{ Items: [...], BatchInput? }`. Paths are the simple ones (`$.a.b`, `$$.Map.Item.Value`, `$$.Map.Item.Index`).
 */
function batchItems(params: Record<string, JsonValue>): JsonValue[] {
  const fail = (msg: string): never => {
    throw new TaskError('States.ItemBatcherFailed', msg);
  };
  const input = params.input ?? null;
  const items = Array.isArray(params.items) ? params.items : fail('the items to batch are not an array');
  const cfg = JSON.parse(String(params.__batcher)) as Record<string, JsonValue>;
  const selector = JSON.parse(String(params.__selector)) as JsonValue;
  const limit = (key: string): number => {
    const v = cfg[`${key}Path`] !== undefined ? readPath(String(cfg[`${key}Path`]), input, null, 0) : cfg[key];
    if (v === undefined || v === null) return Infinity;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return fail(`ItemBatcher ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const maxItems = limit('MaxItemsPerBatch');
  const maxBytes = limit('MaxInputBytesPerBatch');
  const batchInput = cfg.BatchInput === undefined ? undefined : select(cfg.BatchInput, input, null, 0);
  const out: JsonValue[] = [];
  let cur: JsonValue[] = [];
  let bytes = 0;
  items.forEach((item, i) => {
    const v = selector === null ? item : select(selector, input, item, i);
    const size = sizeOf(v);
    if (cur.length && (cur.length >= maxItems || bytes + size > maxBytes)) {
      out.push(batchInput === undefined ? { Items: cur } : { Items: cur, BatchInput: batchInput });
      cur = [];
      bytes = 0;
    }
    cur.push(v);
    bytes += size;
  });
  if (cur.length) out.push(batchInput === undefined ? { Items: cur } : { Items: cur, BatchInput: batchInput });
  return out;
}

/** An ItemSelector / BatchInput template: `key.$` values are paths, the rest literal. */
function select(template: JsonValue, input: JsonValue, item: JsonValue, index: number): JsonValue {
  if (Array.isArray(template)) return template.map((t) => select(t, input, item, index));
  if (!isObject(template)) return template;
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(template)) {
    if (k.endsWith('.$')) out[k.slice(0, -2)] = readPath(String(v), input, item, index);
    else out[k] = select(v, input, item, index);
  }
  return out;
}

function readPath(path: string, input: JsonValue, item: JsonValue, index: number): JsonValue {
  let base: JsonValue;
  let rest: string;
  if (path === '$$.Map.Item.Index') return index;
  if (path.startsWith('$$.Map.Item.Value')) {
    base = item;
    rest = path.slice('$$.Map.Item.Value'.length);
  } else if (path.startsWith('$') && !path.startsWith('$$')) {
    base = input;
    rest = path.slice(1);
  } else {
    throw new TaskError('States.ItemBatcherFailed', `the local harness's ItemBatcher resolves only $.a.b and $$.Map.Item paths, got ${path}`);
  }
  for (const m of rest.matchAll(/\.([A-Za-z0-9_]+)|\[(\d+)\]|(.)/g)) {
    if (m[3] !== undefined) throw new TaskError('States.ItemBatcherFailed', `the local harness's ItemBatcher cannot read path ${path}`);
    const key = m[1] ?? Number(m[2]);
    const next = isObject(base) || Array.isArray(base) ? (base as Record<string | number, JsonValue>)[key] : undefined;
    if (next === undefined) throw new TaskError('States.Runtime', `path ${path} does not exist in the Map's input`);
    base = next;
  }
  return base;
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

/** One execution's handlers, by state name: each enforces the payload limit and starts nothing once the execution ended. */
export function buildLocalHandlers(tasks: Map<string, TaskInfo>, handlers: LocalTaskHandlers, scope: ExecScope): Record<string, LocalHandler> {
  const out: Record<string, LocalHandler> = {};
  // Batches an ItemBatcher made in this execution, by id: children fetch theirs by index.
  const batches = new Map<string, JsonValue[]>();
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
        run = (input) => runEcsTaskSync(handlers, t, scope, input);
        break;
      case 'items-reader':
        run = async (input) => readItems(handlers, isObject(input) ? input : {});
        break;
      case 'tolerance':
        run = toleranceTask;
        break;
      case 'items-batcher':
        run = async (input) => {
          const made = batchItems(isObject(input) ? input : {});
          const id = `${t.name}#${batches.size}`;
          batches.set(id, made);
          return { id, indices: made.map((_, i) => i) };
        };
        break;
      case 'item-batch':
        run = async (input) => {
          const ref = isObject(input) ? input : {};
          const batch = batches.get(String(ref.id))?.[Number(ref.index)];
          if (batch === undefined) throw new TaskError('States.Runtime', `no batch ${String(ref.index)} of ${String(ref.id)} in this execution`);
          return batch;
        };
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

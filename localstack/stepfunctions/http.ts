// The JSON 1.0 protocol server that @aws-sdk/client-sfn talks to: routes each X-Amz-Target action to
// the execution table, parses and checks request bodies, and writes responses and error documents
// as Step Functions does.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { STATE_MACHINE_ARN, STATE_MACHINE_NAME } from './constants.ts';
import { ApiError } from './errors.ts';
import { nowSeconds, type ExecutionRecord, type Executions, type HistoryEvent, type MapRunRecord } from './executions.ts';
import { isObject } from './json.ts';
import { redriveExecution } from './redrive.ts';

type Body = Record<string, unknown>;

export interface ApiOptions {
  executions: Executions;
  /** For DescribeStateMachine: the definition as given (before normalization), its role and creation time. */
  definitionText: string;
  roleArn: string;
  creationDate: number;
  port?: number;
}

export interface ApiServer {
  endpoint: string;
  close(): Promise<void>;
}

function describe(rec: ExecutionRecord): Body {
  return {
    executionArn: rec.executionArn,
    stateMachineArn: STATE_MACHINE_ARN,
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

/** A history event without its input, output and parameters (includeExecutionData: false). */
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

function page<T>(items: T[], body: Body, defaultMax: number): { items: T[]; nextToken?: string } {
  const max = Math.min(Math.max(Number(body.maxResults) || defaultMax, 1), 1000);
  const start = typeof body.nextToken === 'string' ? Number(Buffer.from(body.nextToken, 'base64url').toString()) : 0;
  if (!Number.isInteger(start) || start < 0) throw new ApiError('InvalidToken', 'Invalid nextToken');
  const slice = items.slice(start, start + max);
  return start + max < items.length ? { items: slice, nextToken: Buffer.from(String(start + max)).toString('base64url') } : { items: slice };
}

function checkMachine(body: Body): void {
  if (body.stateMachineArn !== STATE_MACHINE_ARN)
    throw new ApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${String(body.stateMachineArn)}'`);
}

function executionArnOf(body: Body): string {
  const arn = body.executionArn;
  if (typeof arn !== 'string') throw new ApiError('InvalidArn', 'executionArn is required');
  return arn;
}

const optionalString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function mapRunArnOf(body: Body): string {
  const arn = body.mapRunArn;
  if (typeof arn !== 'string') throw new ApiError('InvalidArn', 'mapRunArn is required');
  return arn;
}

function describeMapRun(r: MapRunRecord): Body {
  const c = r.counts;
  const counts = {
    pending: c.pending,
    running: c.running,
    succeeded: c.succeeded,
    failed: c.failed,
    timedOut: 0,
    aborted: c.aborted,
    total: c.total,
    resultsWritten: 0,
    failuresNotRedrivable: 0,
    pendingRedrive: 0,
  };
  return {
    mapRunArn: r.mapRunArn,
    executionArn: r.executionArn,
    status: r.status,
    startDate: r.startDate,
    ...(r.stopDate !== undefined ? { stopDate: r.stopDate } : {}),
    maxConcurrency: r.maxConcurrency,
    toleratedFailurePercentage: 0,
    toleratedFailureCount: 0,
    itemCounts: counts,
    executionCounts: counts,
    redriveCount: 0,
  };
}

const TAG_LIMIT = 50;

/** TagResource's tags, checked as Step Functions does (key 1-128 characters, value up to 256). */
function tagsOf(body: Body): { key: string; value: string }[] {
  if (!Array.isArray(body.tags)) throw new ApiError('ValidationException', 'tags is required');
  return body.tags.map((t: unknown) => {
    const key = isObject(t) ? t.key : undefined;
    const value = isObject(t) ? (t.value ?? '') : undefined;
    if (typeof key !== 'string' || key.length < 1 || key.length > 128) throw new ApiError('ValidationException', `Invalid tag key: ${JSON.stringify(key)}`);
    if (typeof value !== 'string' || value.length > 256) throw new ApiError('ValidationException', `Invalid tag value for key '${key}'`);
    return { key, value };
  });
}

/** The supported actions, by X-Amz-Target operation name. */
function operations(opts: ApiOptions): Record<string, (body: Body) => unknown> {
  const { executions } = opts;
  // Tags by resource ARN: the state machine's (the one resource here that takes tags).
  const tags = new Map<string, Map<string, string>>();
  const taggable = (body: Body): string => {
    const arn = body.resourceArn;
    if (arn !== STATE_MACHINE_ARN) throw new ApiError('ResourceNotFound', `Resource not found: '${String(arn)}'`);
    return arn;
  };
  return {
    StartExecution(body) {
      checkMachine(body);
      const name = typeof body.name === 'string' ? body.name : randomUUID();
      if (!/^[^\s<>{}[\]?*"#%\\^|~`$&,;:/]{1,80}$/.test(name)) throw new ApiError('InvalidName', `Invalid Name: '${name}'`);
      const rec = executions.start(name, typeof body.input === 'string' ? body.input : '{}');
      return { executionArn: rec.executionArn, startDate: rec.startDate };
    },
    DescribeExecution(body) {
      return describe(executions.get(executionArnOf(body)));
    },
    GetExecutionHistory(body) {
      const rec = executions.get(executionArnOf(body));
      const withData = body.includeExecutionData !== false;
      let events: HistoryEvent[] = rec.events;
      if (body.reverseOrder === true) events = [...events].reverse();
      const p = page(events, body, 100);
      const out = withData ? p.items : p.items.map(stripData);
      return { events: out, ...(p.nextToken ? { nextToken: p.nextToken } : {}) };
    },
    StopExecution(body) {
      const rec = executions.get(executionArnOf(body));
      executions.stop(rec, { error: optionalString(body.error), cause: optionalString(body.cause) });
      return { stopDate: rec.stopDate ?? nowSeconds() };
    },
    ListExecutions(body) {
      checkMachine(body);
      const p = page(executions.list(optionalString(body.statusFilter)), body, 100);
      return {
        executions: p.items.map((r) => ({
          executionArn: r.executionArn,
          stateMachineArn: STATE_MACHINE_ARN,
          name: r.name,
          status: r.status,
          startDate: r.startDate,
          ...(r.stopDate !== undefined ? { stopDate: r.stopDate } : {}),
        })),
        ...(p.nextToken ? { nextToken: p.nextToken } : {}),
      };
    },
    DescribeStateMachineForExecution(body) {
      executions.get(executionArnOf(body));
      return {
        stateMachineArn: STATE_MACHINE_ARN,
        name: STATE_MACHINE_NAME,
        definition: opts.definitionText,
        roleArn: opts.roleArn,
        updateDate: opts.creationDate,
      };
    },
    ListStateMachines(body) {
      const p = page([{ stateMachineArn: STATE_MACHINE_ARN, name: STATE_MACHINE_NAME, type: 'STANDARD', creationDate: opts.creationDate }], body, 100);
      return { stateMachines: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) };
    },
    ListMapRuns(body) {
      const p = page(executions.mapRuns(executionArnOf(body)), body, 100);
      return {
        mapRuns: p.items.map((r) => ({
          executionArn: r.executionArn,
          mapRunArn: r.mapRunArn,
          stateMachineArn: r.stateMachineArn,
          startDate: r.startDate,
          ...(r.stopDate !== undefined ? { stopDate: r.stopDate } : {}),
        })),
        ...(p.nextToken ? { nextToken: p.nextToken } : {}),
      };
    },
    DescribeMapRun(body) {
      return describeMapRun(executions.mapRun(mapRunArnOf(body)));
    },
    TagResource(body) {
      const arn = taggable(body);
      const current = new Map(tags.get(arn) ?? []);
      for (const t of tagsOf(body)) current.set(t.key, t.value);
      if (current.size > TAG_LIMIT) throw new ApiError('TooManyTags', `Too many tags: ${current.size} (at most ${TAG_LIMIT})`);
      tags.set(arn, current);
      return {};
    },
    UntagResource(body) {
      const arn = taggable(body);
      if (!Array.isArray(body.tagKeys)) throw new ApiError('ValidationException', 'tagKeys is required');
      for (const k of body.tagKeys) tags.get(arn)?.delete(String(k));
      return {};
    },
    ListTagsForResource(body) {
      const arn = taggable(body);
      return { tags: [...(tags.get(arn) ?? [])].map(([key, value]) => ({ key, value })) };
    },
    RedriveExecution: (body) => redriveExecution(executions, body, opts.definitionText),
    DescribeStateMachine(body) {
      checkMachine(body);
      return {
        stateMachineArn: STATE_MACHINE_ARN,
        name: STATE_MACHINE_NAME,
        status: 'ACTIVE',
        definition: opts.definitionText,
        roleArn: opts.roleArn,
        type: 'STANDARD',
        creationDate: opts.creationDate,
      };
    },
  };
}

/** Listens on 127.0.0.1 (`port`, or a free one) and serves the API until close(). */
export async function serveApi(opts: ApiOptions): Promise<ApiServer> {
  const ops = operations(opts);
  const server = createServer((req, res) => void handle(ops, req, res));
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(ops: Record<string, (body: Body) => unknown>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.0',
      'content-length': Buffer.byteLength(text),
      'x-amzn-requestid': randomUUID(),
      ...headers,
    });
    res.end(text);
  };
  try {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const target = String(req.headers['x-amz-target'] ?? '');
    const [service, op] = target.split('.');
    const fn = service === 'AWSStepFunctions' && op ? ops[op] : undefined;
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

// EventBridge, played locally for the offline harness: S3 "Object Created" events (EventBridge
// format), event patterns matched with EventBridge's semantics, rule targets' input transformers,
// and a bridge that starts a Step Functions execution for each matching rule target.
//
// S3 events: the harness's S3 (localstack/s3-server.ts, a child process) records one event per
// successful PutObject / CopyObject / CompleteMultipartUpload, as S3 sends them (a re-upload of the
// same bytes is an event too), and serves them at GET /_fanout/events; the bridge polls that feed
// (default every 200 ms). Against another S3 endpoint it falls back to listing each watched bucket
// and emits one event per new key or changed ETag (reason PutObject; an identical re-upload is not
// seen). Either way, what happened before the bridge started is the baseline.
import { randomUUID } from 'node:crypto';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { listS3 } from '../src/io/s3/index.ts';
import type { JsonObject } from '../src/aws/state-machine.ts';
import { ACCOUNT, REGION } from './stepfunctions/constants.ts';
import { isObject as isObj } from './stepfunctions/json.ts';

// ---------------------------------------------------------------------------------------------
// EventBridge event patterns

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
    case 'prefix':
      return typeof v === 'string' && affix(arg, v, (s, a) => s.startsWith(a));
    case 'suffix':
      return typeof v === 'string' && affix(arg, v, (s, a) => s.endsWith(a));
    case 'equals-ignore-case':
      return typeof v === 'string' && typeof arg === 'string' && v.toLowerCase() === arg.toLowerCase();
    case 'wildcard':
      return typeof v === 'string' && typeof arg === 'string' && wildcardRegExp(arg).test(v);
    case 'numeric':
      return typeof v === 'number' && Array.isArray(arg) && numericMatch(arg, v);
    case 'cidr':
      return typeof v === 'string' && typeof arg === 'string' && cidrMatch(arg, v);
    case 'anything-but': {
      if (Array.isArray(arg)) return !arg.some((a) => matchValue(a, v));
      if (isObj(arg)) return !matchValue(arg, v);
      return !matchValue(arg, v);
    }
    default:
      throw new TypeError(`event pattern: unsupported matcher ${JSON.stringify(m)}`);
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
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Input transformers

export interface InputTransformer {
  InputPathsMap?: Record<string, string>;
  InputTemplate: string;
}

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
      while (k >= 0 && template[k] === '\\') {
        slashes++;
        k--;
      }
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

/** What S3 puts in an Object Created event's `detail.reason`. */
export type S3EventReason = 'PutObject' | 'POST Object' | 'CopyObject' | 'CompleteMultipartUpload';

interface FeedEvent {
  seq: number;
  bucket: string;
  key: string;
  size: number;
  etag: string;
  reason: S3EventReason;
}

/** The harness S3's event feed (see s3-proxy.ts), or null when the endpoint is another S3. */
async function readFeed(endpoint: string, after: number): Promise<{ seq: number; events: FeedEvent[] } | null> {
  try {
    const r = await fetch(`${endpoint.replace(/\/$/, '')}/_fanout/events?after=${after}`);
    if (!r.ok || !/json/.test(r.headers.get('content-type') ?? '')) return null;
    return (await r.json()) as { seq: number; events: FeedEvent[] };
  } catch {
    return null;
  }
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
export function objectCreatedEvent(
  bucket: string,
  object: { key: string; size: number; etag: string },
  sequence: number,
  reason: S3EventReason = 'PutObject',
): JsonObject {
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
      reason,
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
  /** The S3 endpoint whose event feed to follow; default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. */
  s3Endpoint?: string;
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
  const s3Endpoint = opts.s3Endpoint ?? process.env['AWS_ENDPOINT_URL_S3'] ?? process.env['AWS_ENDPOINT_URL'];
  // Events (or objects) already there are not "created" now.
  const feed = s3Endpoint ? await readFeed(s3Endpoint, Number.MAX_SAFE_INTEGER) : null;
  let feedSeq = feed?.seq ?? 0;
  if (!feed) for (const b of opts.buckets) for (const o of await list(b)) seen.set(`${b}/${o.key}`, o.etag);
  const watched = new Set(opts.buckets);

  const deliver = async (event: JsonObject): Promise<void> => {
    const matched: string[] = [];
    for (const rule of opts.rules) {
      if (!matchesEventPattern(rule.pattern, event)) continue;
      matched.push(rule.name);
      for (const t of rule.targets) {
        if (t.arn !== opts.stateMachineArn) continue;
        const input = t.inputTransformer
          ? applyInputTransformer(t.inputTransformer, event, rule)
          : t.input !== undefined
            ? t.input
            : JSON.stringify(t.inputPath ? (jsonPathGet(event, t.inputPath) ?? null) : event);
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
  const poll = (): Promise<void> =>
    (busy ??= (async () => {
      try {
        if (feed && s3Endpoint) {
          const page = await readFeed(s3Endpoint, feedSeq);
          if (!page) throw new Error(`the S3 event feed of ${s3Endpoint} does not answer`);
          for (const e of page.events) {
            feedSeq = Math.max(feedSeq, e.seq);
            if (!watched.has(e.bucket)) continue;
            const event = objectCreatedEvent(e.bucket, e, ++sequence, e.reason);
            events.push(event);
            await deliver(event);
          }
          return;
        }
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
  const timer = setInterval(() => {
    if (!stopped) poll().catch((e: unknown) => console.error(`fanout harness: S3 poll failed: ${e instanceof Error ? e.message : String(e)}`));
  }, opts.pollIntervalMs ?? 200);
  timer.unref();

  return {
    events,
    executions,
    poll,
    nextExecution: (timeoutMs = 30_000) =>
      new Promise<StartedExecution>((res, rej) => {
        const t = setTimeout(() => rej(new Error(`no execution started within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((e) => {
          clearTimeout(t);
          res(e);
        });
      }),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await busy?.catch(() => undefined);
      sfn.destroy();
    },
  };
}

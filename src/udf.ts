// User-defined functions: `func` (row-wise: sync, async, generator), `func.batch` (Arrow vectors in,
// vector out) and `cls` (stateful, one instance per worker). Definitions register by name in this
// module's registry; plans carry only the name (and a class handle's constructor arguments), and a
// worker resolves it by importing the module that defined it.
import type * as arrow from 'apache-arrow';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DataType, type DataTypeJSON } from './datatypes.ts';
import { encodeLiteral, Expr, toExpr, udfCalls, type ExprNode, type LiteralJSON, type Scalar, type Untyped, type UdfCallNode } from './expressions.ts';
import { resolveAwsOptions, type AwsUdfOptions } from './udf/aws-options.ts';

export type OnError = 'raise' | 'log' | 'null';
/** What a generator UDF's row becomes when it yields nothing: one row with a null, or no row. */
export type OnEmpty = 'null' | 'drop';
export type UdfKind = 'row' | 'async' | 'generator' | 'batch';

/** Options shared by every UDF form. */
export interface UdfOptions<T = never> {
  /** Type of the values it returns (required: never inferred from sampled data). */
  returnDtype: DataType<T>;
  /** Stable identity used to ship plans to workers; defaults to the function / class name. */
  name?: string;
  /** Rows per call for batch UDFs, rows per dispatch for row-wise ones. */
  batchSize?: number;
  /** Parallel instances (worker threads, or child processes for GPU UDFs). */
  concurrency?: number;
  /** Async UDFs: calls in flight per instance (per call, not per batch). Default 16. */
  maxConcurrency?: number;
  numCpus?: number;
  /** GPUs per instance: a fraction <= 1 (instances share a device) or a whole number. */
  numGpus?: number;
  memoryBytes?: number;
  /** Retries per failing row (row-wise) or batch, with exponential backoff and jitter. Default 0. */
  maxRetries?: number;
  /**
   * Backoff before the first retry, in ms (doubling per retry, full jitter: a random wait in
   * [0, retryBackoffMs * 2^k]). Default 20.
   */
  retryBackoffMs?: number;
  /**
   * Longest wait before any retry, in ms, also bounding an error's `retryAfterMs` (an error thrown
   * with `retryAfterMs: n`, e.g. from an HTTP 429 Retry-After, makes the next attempt wait at least
   * n ms, up to this cap). Default 2000.
   */
  retryBackoffMaxMs?: number;
  /**
   * Longest a call may take before it fails with a timeout (then `maxRetries` and `onError` apply):
   * per row for row-wise UDFs (a generator's whole row), per call of `batchSize` rows for batch UDFs,
   * per method call for `cls`. It bounds asynchronous work (promises, async generators): a synchronous
   * call that never returns blocks its thread and cannot be interrupted there. Default: none.
   */
  timeoutMs?: number;
  /** After retries: 'raise' fails the run, 'log' and 'null' give null for that row ('log' also warns). */
  onError?: OnError;
  /** Directory where failed rows and their error text are written as Parquet. */
  deadLetter?: string;
  /** With a struct returnDtype: spread its fields into columns. */
  unnest?: boolean;
  /**
   * Generator UDFs only: a row for which the generator yields nothing keeps one output row with a
   * null ('null', the default, as in Daft) or produces no row ('drop').
   */
  onEmpty?: OnEmpty;
  /**
   * Where and with what this UDF's stage runs on AWS (the AWS runner and the CDK construct; other
   * runners ignore it): Lambda memory, architecture, timeout, /tmp, GPU instance type, or Fargate for
   * stages beyond Lambda's limits. Checked against AWS's limits when the UDF is defined.
   */
  aws?: AwsUdfOptions;
}

export interface ResolvedUdfOptions {
  batchSize: number | null;
  concurrency: number | null;
  maxConcurrency: number;
  numCpus: number;
  numGpus: number;
  memoryBytes: number | null;
  maxRetries: number;
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
  timeoutMs: number | null;
  onError: OnError;
  deadLetter: string | null;
  unnest: boolean;
  onEmpty: OnEmpty;
  /** The AWS options given (a cls method's merged over its class's); empty when none. */
  aws: Readonly<AwsUdfOptions>;
}

/** Retry backoff defaults: first wait up to 20 ms, doubling, never more than 2 s. */
const DEFAULT_RETRY_BACKOFF_MS = 20;
const DEFAULT_RETRY_BACKOFF_MAX_MS = 2000;
/** setTimeout's largest delay: a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface UdfDefinition {
  name: string;
  kind: UdfKind;
  returnDtype: DataType;
  options: ResolvedUdfOptions;
  /** file URL of the module that defined it, for workers to import; null if unknown. */
  moduleUrl: string | null;
  /** Where it was defined (`file:line:col` of the user frames that called func/cls), for clash errors. */
  site: string;
  fn?: (...args: never[]) => unknown;
  cls?: { ctor: new (...args: never[]) => object; method: string };
}

/**
 * The registry lives on globalThis under a registered symbol, so every copy of this module in a
 * thread (a bundle and the sources, or the same file under two URLs) sees the same UDFs: a plan
 * built by one copy resolves names registered through another.
 */
const REGISTRY_KEY = Symbol.for('fanout.udf.registry');
const registry: Map<string, UdfDefinition> = ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??= new Map<string, UdfDefinition>()) as Map<
  string,
  UdfDefinition
>;

/** The UDF registered under `name`, or an error listing the known ones. */
export function getUdf(name: string): UdfDefinition {
  const d = registry.get(name);
  if (!d) {
    const known = [...registry.keys()];
    throw new Error(`unknown UDF '${name}'${known.length ? `; registered: ${known.join(', ')}` : '; none are registered (is the pipeline module imported?)'}`);
  }
  return d;
}

/** Does `e` call a generator UDF (one row in, any number out), which changes the row count? */
export function callsGenerator(e: ExprNode): boolean {
  for (const c of udfCalls(e)) if (getUdf(c.name).kind === 'generator') return true;
  return false;
}

export function listUdfs(): UdfDefinition[] {
  return [...registry.values()];
}

function register(def: UdfDefinition): void {
  const prev = registry.get(def.name);
  // The same definition evaluated again (its module imported again in this thread) replaces itself:
  // same module, same name, same definition site. Any other redefinition would silently change
  // what the name computes, so it is an error naming both sites.
  if (prev && !(prev.moduleUrl === def.moduleUrl && prev.site === def.site)) {
    throw new Error(`duplicate UDF name '${def.name}': defined at ${prev.site} and again at ${def.site}; pass a distinct { name }`);
  }
  registry.set(def.name, def);
}

const THIS_FILE = import.meta.url;

const FRAME = /\(?((?:file:\/\/)?\/[^():]+\.(?:[cm]?[jt]s|tsx)(?:\?[^():]*)?):(\d+):(\d+)\)?\s*$/;

/**
 * Where a definition comes from, from the stack: the module that called into this file (file URL,
 * for workers to import) and the user frames of the call (`url:line:col` each), which identify the
 * definition: a module evaluated again yields the same site, a second definition does not.
 */
function definitionSite(): { moduleUrl: string | null; site: string } {
  const stack = new Error().stack ?? '';
  let moduleUrl: string | null = null;
  const frames: string[] = [];
  for (const line of stack.split('\n').slice(1)) {
    const m = FRAME.exec(line.trim());
    if (!m) continue;
    const url = m[1]!.startsWith('file://') ? m[1]! : pathToFileURL(m[1]!).href;
    if (url.split('?')[0] === THIS_FILE.split('?')[0] || url.includes('/node_modules/')) continue;
    moduleUrl ??= url;
    frames.push(`${url}:${m[2]}:${m[3]}`);
  }
  return { moduleUrl, site: frames.length ? frames.join(' <- ') : '(unknown site)' };
}

function check(cond: boolean, name: string, option: string, msg: string): void {
  if (!cond) throw new TypeError(`UDF '${name}': option '${option}' ${msg}`);
}

export function resolveOptions(name: string, o: Partial<UdfOptions>, base?: ResolvedUdfOptions): ResolvedUdfOptions {
  const posInt = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0;
  if (o.batchSize !== undefined) check(posInt(o.batchSize), name, 'batchSize', `must be a positive integer, got ${String(o.batchSize)}`);
  if (o.concurrency !== undefined) check(posInt(o.concurrency), name, 'concurrency', `must be a positive integer, got ${String(o.concurrency)}`);
  if (o.maxConcurrency !== undefined) check(posInt(o.maxConcurrency), name, 'maxConcurrency', `must be a positive integer, got ${String(o.maxConcurrency)}`);
  if (o.numCpus !== undefined) check(typeof o.numCpus === 'number' && o.numCpus > 0, name, 'numCpus', `must be > 0, got ${String(o.numCpus)}`);
  if (o.numGpus !== undefined) {
    const g = o.numGpus;
    check(typeof g === 'number' && g >= 0 && (g <= 1 || Number.isInteger(g)), name, 'numGpus', `must be a fraction <= 1 or a whole number, got ${String(g)}`);
  }
  if (o.memoryBytes !== undefined) check(posInt(o.memoryBytes), name, 'memoryBytes', `must be a positive integer, got ${String(o.memoryBytes)}`);
  if (o.maxRetries !== undefined)
    check(Number.isInteger(o.maxRetries) && o.maxRetries >= 0, name, 'maxRetries', `must be a non-negative integer, got ${String(o.maxRetries)}`);
  const delay = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_TIMER_MS;
  if (o.retryBackoffMs !== undefined)
    check(delay(o.retryBackoffMs), name, 'retryBackoffMs', `must be a non-negative number of milliseconds (at most 2^31-1), got ${String(o.retryBackoffMs)}`);
  if (o.retryBackoffMaxMs !== undefined)
    check(
      delay(o.retryBackoffMaxMs),
      name,
      'retryBackoffMaxMs',
      `must be a non-negative number of milliseconds (at most 2^31-1), got ${String(o.retryBackoffMaxMs)}`,
    );
  if (o.timeoutMs !== undefined)
    check(
      typeof o.timeoutMs === 'number' && Number.isFinite(o.timeoutMs) && o.timeoutMs > 0 && o.timeoutMs <= MAX_TIMER_MS,
      name,
      'timeoutMs',
      `must be a positive number of milliseconds (at most 2^31-1), got ${String(o.timeoutMs)}`,
    );
  if (o.onError !== undefined)
    check(['raise', 'log', 'null'].includes(o.onError), name, 'onError', `must be 'raise', 'log' or 'null', got ${String(o.onError)}`);
  if (o.deadLetter !== undefined) check(typeof o.deadLetter === 'string' && o.deadLetter.length > 0, name, 'deadLetter', 'must be a directory path');
  if (o.onEmpty !== undefined) check(o.onEmpty === 'null' || o.onEmpty === 'drop', name, 'onEmpty', `must be 'null' or 'drop', got ${String(o.onEmpty)}`);
  const retryBackoffMs = o.retryBackoffMs ?? base?.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  const retryBackoffMaxMs = o.retryBackoffMaxMs ?? base?.retryBackoffMaxMs ?? DEFAULT_RETRY_BACKOFF_MAX_MS;
  // Checked on the merged values: a method may set one and inherit the other from its class.
  if (o.retryBackoffMaxMs !== undefined)
    check(retryBackoffMaxMs >= retryBackoffMs, name, 'retryBackoffMaxMs', `must be >= retryBackoffMs (${retryBackoffMs}), got ${retryBackoffMaxMs}`);
  else
    check(
      retryBackoffMaxMs >= retryBackoffMs,
      name,
      'retryBackoffMs',
      `must be <= retryBackoffMaxMs (${retryBackoffMaxMs}${base ? '' : ', the default'}), got ${retryBackoffMs}; raise retryBackoffMaxMs too`,
    );
  return {
    batchSize: o.batchSize ?? base?.batchSize ?? null,
    concurrency: o.concurrency ?? base?.concurrency ?? null,
    maxConcurrency: o.maxConcurrency ?? base?.maxConcurrency ?? 16,
    numCpus: o.numCpus ?? base?.numCpus ?? 1,
    numGpus: o.numGpus ?? base?.numGpus ?? 0,
    memoryBytes: o.memoryBytes ?? base?.memoryBytes ?? null,
    maxRetries: o.maxRetries ?? base?.maxRetries ?? 0,
    retryBackoffMs,
    retryBackoffMaxMs,
    timeoutMs: o.timeoutMs ?? base?.timeoutMs ?? null,
    onError: o.onError ?? base?.onError ?? 'raise',
    deadLetter: o.deadLetter ?? base?.deadLetter ?? null,
    unnest: o.unnest ?? base?.unnest ?? false,
    onEmpty: o.onEmpty ?? base?.onEmpty ?? 'null',
    aws: resolveAwsOptions(name, o.aws, base?.aws, o.numGpus ?? base?.numGpus ?? 0),
  };
}

/** A DataType made by another copy of fanout (a bundle and the sources): the same JSON descriptor. */
function foreignDataType(v: unknown): DataType | null {
  if (!v || typeof v !== 'object' || typeof (v as { toArrow?: unknown }).toArrow !== 'function') return null;
  const json = (v as { json?: { kind?: unknown } }).json;
  return json && typeof json.kind === 'string' ? DataType.fromJSON(json as DataTypeJSON) : null;
}

function checkReturn(name: string, given: unknown, unnest: boolean): DataType {
  const dt = given instanceof DataType ? given : foreignDataType(given);
  if (!dt) throw new TypeError(`UDF '${name}': option 'returnDtype' is required and must be a DataType (e.g. DataType.float64())`);
  if (unnest && dt.kind !== 'struct') throw new TypeError(`UDF '${name}': 'unnest: true' needs a struct returnDtype, got ${dt}`);
  return dt;
}

/** `onEmpty` means something only for generators: on any other UDF it is a mistake, not a no-op. */
function checkOnEmpty(name: string, kind: UdfKind, given: unknown): void {
  if (given !== undefined && kind !== 'generator') {
    throw new TypeError(`UDF '${name}': option 'onEmpty' applies to generator UDFs only (function* / async function*); this one is a ${kind} UDF`);
  }
}

function kindOf(fn: (...args: never[]) => unknown): UdfKind {
  const ctor = (fn as { constructor?: { name?: string } }).constructor?.name;
  if (ctor === 'GeneratorFunction' || ctor === 'AsyncGeneratorFunction') return 'generator';
  if (ctor === 'AsyncFunction') return 'async';
  return 'row';
}

/** Element type of what a row-wise function produces (unwrapping promises and generators). */
export type RowResult<R> = R extends AsyncGenerator<infer Y> ? Y : R extends Generator<infer Y> ? Y : R extends Promise<infer U> ? U : R;
type Arg<T> = Expr<T> | Expr<Untyped> | (T extends Scalar ? T : never);
type NonNull<T> = Exclude<T, null | undefined>;

/** Can a value of option type V be one of N? (`unknown`: the option was not given.) */
type Overlaps<V, N> = [Extract<V, N>] extends [never] ? false : true;
/** Null when the onError in effect may be 'null' or 'log' (a failed row becomes null). */
type ErrorNull<E> = Overlaps<E, 'null' | 'log'> extends true ? null : never;
/** Null when a generator may yield nothing for a row and onEmpty keeps it ('null', the default). */
type EmptyNull<R, Em> = R extends Generator | AsyncGenerator ? ([Em] extends ['drop'] ? never : null) : never;

/** A defined UDF: call it with expressions (or constants) to get an expression. */
export interface Udf<A extends unknown[], R> {
  (...args: { [K in keyof A]: Arg<A[K]> }): Expr<R>;
  readonly udfName: string;
  readonly definition: UdfDefinition;
}

function callNode(name: string, args: readonly unknown[], init?: LiteralJSON[]): UdfCallNode {
  const node: UdfCallNode = { op: 'udf', name, args: args.map((a) => toExpr(a as Scalar).node) };
  if (init) node.init = init;
  return node;
}

function makeUdf<A extends unknown[], R>(def: UdfDefinition): Udf<A, R> {
  register(def);
  const f = ((...args: unknown[]) => new Expr<R>(callNode(def.name, args))) as Udf<A, R>;
  Object.defineProperty(f, 'udfName', { value: def.name });
  Object.defineProperty(f, 'definition', { value: def });
  return f;
}

/** Row-wise UDF: sync `(a, b) => v`, async `async (a) => v`, or generator `function* (a) { yield v }`. */
function funcImpl<A extends unknown[], R, E extends OnError = 'raise', Em extends OnEmpty = 'null'>(
  fn: (...args: A) => R,
  opts: UdfOptions<NonNull<RowResult<R>>> & { onError?: E; onEmpty?: Em },
): Udf<A, RowResult<R> | ErrorNull<E> | EmptyNull<R, Em>> {
  if (typeof fn !== 'function') throw new TypeError('func(fn, opts) needs a function');
  const name = opts?.name ?? fn.name;
  if (!name) throw new TypeError('func(fn, opts): an anonymous function needs { name } (plans refer to UDFs by name)');
  const options = resolveOptions(name, opts ?? {});
  const kind = kindOf(fn as (...args: never[]) => unknown);
  checkOnEmpty(name, kind, opts?.onEmpty);
  return makeUdf({
    name,
    kind,
    returnDtype: checkReturn(name, opts?.returnDtype, options.unnest),
    options,
    ...definitionSite(),
    fn: fn as (...args: never[]) => unknown,
  });
}

/** What a batch UDF may return: a Vector, a typed array, or a plain array of the batch's length. */
export type BatchResult<T> = arrow.Vector | ArrayLike<number> | ArrayLike<bigint> | readonly (T | null)[];

/** Batch UDF: receives one apache-arrow Vector per argument, returns one value per row. */
function batchImpl<R, E extends OnError = 'raise'>(
  fn: (...vectors: arrow.Vector[]) => BatchResult<R> | Promise<BatchResult<R>>,
  opts: UdfOptions<R> & { onError?: E },
): Udf<unknown[], R | ErrorNull<E>> {
  if (typeof fn !== 'function') throw new TypeError('func.batch(fn, opts) needs a function');
  const name = opts?.name ?? fn.name;
  if (!name) throw new TypeError('func.batch(fn, opts): an anonymous function needs { name }');
  const options = resolveOptions(name, opts ?? {});
  checkOnEmpty(name, 'batch', opts?.onEmpty);
  return makeUdf({
    name,
    kind: 'batch',
    returnDtype: checkReturn(name, opts?.returnDtype, options.unnest),
    options,
    ...definitionSite(),
    fn: fn as (...args: never[]) => unknown,
  });
}

export const func: typeof funcImpl & { batch: typeof batchImpl } = Object.assign(funcImpl, { batch: batchImpl });

// ------------------------------------------------------------------ cls

export interface MethodOptions<T = never> extends Partial<UdfOptions<T>> {
  /** The method takes Arrow vectors and returns a batch result. */
  batch?: boolean;
}

/** Element type of a batch method's result (typed arrays: number or bigint; a Vector: unknown). */
type BatchElement<R> = R extends arrow.Vector
  ? unknown
  : R extends readonly (infer E)[]
    ? E
    : R extends ArrayLike<bigint>
      ? bigint
      : R extends ArrayLike<number>
        ? number
        : unknown;
/** What a method's returnDtype must accept: its row result, or a batch method's elements (anything for a Vector). */
type Checked<T> = unknown extends T ? never : NonNull<T>;
type MethodOptionsFor<F> = F extends (...args: never[]) => infer R
  ? (MethodOptions<Checked<RowResult<R>>> & { batch?: false }) | (MethodOptions<Checked<BatchElement<Awaited<R>>>> & { batch: true })
  : never;

export interface ClsOptions<C> extends Partial<Omit<UdfOptions, 'returnDtype'>> {
  /** Default returnDtype of methods (not checked against their return types: give one per method for that). */
  returnDtype?: DataType;
  /**
   * Per-method configuration; only configured methods (or all, with a class returnDtype) become UDFs.
   * A method's returnDtype must accept what the method returns (a batch method: the result's elements).
   */
  methods?: { [K in keyof C]?: MethodOptionsFor<C[K]> };
}

/** Option P of method K in cls options O (unknown when not given). */
type MethodOpt<O, K, P extends string> = O extends { methods?: infer M }
  ? K extends keyof M
    ? M[K] extends { [Q in P]?: infer V }
      ? V
      : unknown
    : unknown
  : unknown;
type ClassOpt<O, P extends string> = O extends { [Q in P]?: infer V } ? V : unknown;
/** The option in effect for a method: its own if it may be given, else the class's. */
type Effective<MV, CV> = unknown extends MV ? CV : undefined extends MV ? Exclude<MV, undefined> | CV : MV;
type MethodValue<C, O, K extends keyof C> = C[K] extends (...args: never[]) => infer R
  ?
      | (MethodOpt<O, K, 'batch'> extends true ? BatchElement<Awaited<R>> : RowResult<R>)
      | ErrorNull<Effective<MethodOpt<O, K, 'onError'>, ClassOpt<O, 'onError'>>>
      | (MethodOpt<O, K, 'batch'> extends true ? never : EmptyNull<R, Effective<MethodOpt<O, K, 'onEmpty'>, ClassOpt<O, 'onEmpty'>>>)
  : never;
/** The methods that become UDFs: the configured ones, or all of them when none is (class returnDtype). */
type Configured<C, O> = O extends { methods: infer M } ? ([keyof M & keyof C] extends [never] ? keyof C : keyof M & keyof C) : keyof C;

type MethodsOf<C, O> = {
  [K in Configured<C, O>]: C[K] extends (...args: infer A) => unknown
    ? Udf<MethodOpt<O, K, 'batch'> extends true ? unknown[] : A, MethodValue<C, O, K>>
    : never;
};

/** A class handle: `new Handle(...args)` records the arguments; instances are made per worker on first use. */
export type ClsHandle<C extends new (...args: never[]) => object, O = ClsOptions<InstanceType<C>>> = new (
  ...args: ConstructorParameters<C>
) => MethodsOf<InstanceType<C>, O>;

function methodNames(proto: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const k of Object.getOwnPropertyNames(p)) if (k !== 'constructor' && typeof (p as Record<string, unknown>)[k] === 'function') names.add(k);
  }
  return [...names];
}

/** Stateful UDF class: the constructor runs once per worker (e.g. load a model), methods run per batch or row. */
export function cls<C extends new (...args: never[]) => object, const O extends ClsOptions<InstanceType<C>> = ClsOptions<InstanceType<C>>>(
  Class: C,
  opts: O = {} as O,
): ClsHandle<C, O> {
  if (typeof Class !== 'function') throw new TypeError('cls(Class, opts) needs a class');
  const className = opts.name ?? Class.name;
  if (!className) throw new TypeError('cls(Class, opts): an anonymous class needs { name }');
  const { moduleUrl, site } = definitionSite();
  const { methods = {}, returnDtype, ...rest } = opts;
  const base = resolveOptions(className, rest as Partial<UdfOptions>);
  const available = methodNames(Class.prototype as object);
  for (const m of Object.keys(methods)) {
    if (!available.includes(m)) throw new TypeError(`cls '${className}': option methods.${m} names no method; methods: ${available.join(', ')}`);
  }
  const configured = Object.keys(methods).length ? Object.keys(methods) : returnDtype ? available : [];
  if (!configured.length) throw new TypeError(`cls '${className}': configure at least one method in { methods } (or give a class-level returnDtype)`);
  const methodKind = (m: string): UdfKind =>
    (methods as Record<string, MethodOptions | undefined>)[m]?.batch ? 'batch' : kindOf((Class.prototype as Record<string, (...args: never[]) => unknown>)[m]!);
  // A class-level onEmpty is a default for its generator methods; with none it would be ignored.
  if (rest.onEmpty !== undefined && !configured.some((m) => methodKind(m) === 'generator')) {
    throw new TypeError(`cls '${className}': option 'onEmpty' applies to generator methods only, and none of ${configured.join(', ')} is one`);
  }
  const defs = new Map<string, UdfDefinition>();
  for (const m of configured) {
    const mo = (methods as Record<string, MethodOptions | undefined>)[m] ?? {};
    const name = `${className}.${m}`;
    const options = resolveOptions(name, mo, base);
    const kind = methodKind(m);
    checkOnEmpty(name, kind, mo.onEmpty);
    const def: UdfDefinition = {
      name,
      kind,
      returnDtype: checkReturn(name, mo.returnDtype ?? returnDtype, options.unnest),
      options,
      moduleUrl,
      site,
      cls: { ctor: Class, method: m },
    };
    register(def);
    defs.set(m, def);
  }
  class Handle {
    constructor(...args: unknown[]) {
      let init: LiteralJSON[];
      try {
        init = args.map((a) => encodeLiteral(a as Scalar));
      } catch {
        throw new TypeError(`cls '${className}': constructor arguments must be plain values (they are shipped to workers as JSON)`);
      }
      for (const [m, def] of defs) {
        const f = (...callArgs: unknown[]) => new Expr(callNode(def.name, callArgs, init));
        Object.defineProperty(f, 'udfName', { value: def.name });
        Object.defineProperty(f, 'definition', { value: def });
        Object.defineProperty(this, m, { value: f, enumerable: true });
      }
    }
  }
  Object.defineProperty(Handle, 'name', { value: `${className}Handle` });
  return Handle as unknown as ClsHandle<C, O>;
}

/** The file path of a UDF's defining module, for messages. */
export function udfModulePath(def: UdfDefinition): string {
  return def.moduleUrl ? fileURLToPath(def.moduleUrl) : '(unknown module)';
}

export function returnTypeOf(node: UdfCallNode): DataTypeJSON {
  return getUdf(node.name).returnDtype.json;
}

/**
 * Milliseconds to wait from an HTTP `Retry-After` header (delta-seconds or an HTTP-date), for the
 * `retryAfterMs` of an error a UDF throws; undefined if the header is absent or malformed:
 * `throw Object.assign(new Error(`HTTP ${res.status}`), { retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) })`.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // RFC 9110: otherwise an IMF-fixdate; only a date-like string is parsed (Date.parse accepts '1').
  if (!/[a-z]/i.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

// The lazy DataFrame: transforms build a logical plan (type-checked as it is built); actions
// optimize it, plan partitions and run them on the current runner.
import * as arrow from 'apache-arrow';
import { randomUUID } from 'node:crypto';
import { ColumnNotFoundError, type Field, Schema } from './datatypes.ts';
import { batchToRows, columnsToBatch, inferSchemaFromRecords, recordsToBatch, type JsValue } from './convert/index.ts';
import { inferField } from './eval.ts';
import { conform } from './kernels/cast.ts';
import { AggExpr, type AggNode, col, Expr, exprName, toExpr, type ExprNode, type Scalar, type ValueOf, type Untyped } from './expressions.ts';
import { aggregateNode, concatNode, distinctNode, joinNode, repartitionNode, sortNode, type JoinOptions, type SortOptions } from './relational/build.ts';
import { formatTable } from './format.ts';
import { csvSchemaOption, inspectCsv, type CsvOptions, type CsvSchema } from './io/csv/index.ts';
import { checkParquetWriteNesting, checkWriteOptions, inspectParquet, type ParquetWriterOptions } from './io/parquet/index.ts';
import { expandListedPrefix, expandPaths } from './io/paths.ts';
import { discoverHive, type HivePartitioningOption, type HiveScanJSON } from './io/hive.ts';
import { hiveRootScan, planHiveScan, withHiveColumns, type HiveLazyJSON } from './io/hive-scan.ts';
import type { WrittenFile } from './io/writer.ts';
import { optimize, explodeSchema } from './optimizer.ts';
import { planSchema, planToString, type JoinHow, type PlanNode } from './plan.ts';
import { getRunner, type ActionContext } from './runner.ts';
import { checkPartitionBy } from './io/partitioned-writer.ts';
import { AbortError, type MemorySources } from './executor.ts';
import { callsGenerator, getUdf } from './udf.ts';
import { udfEvalContext, type RunMetrics } from './udf-exec.ts';
import type { ProgressEvent } from './progress.ts';

/** Flattens intersections for readable hover types. */
export type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ElementOf<T> = T extends readonly (infer E)[] ? E : unknown;
type Row = object;

export interface ExplainOptions {
  /** Also print the unoptimized and optimized logical plans. */
  showAll?: boolean;
  /** Also print the serverless stages (a serverless runner always shows them). */
  stages?: boolean;
}

/** Options every action accepts. */
export interface ActionOptions {
  /** Aborts the action: reading and UDF calls stop, it rejects with an AbortError, a write commits nothing. */
  signal?: AbortSignal;
  /**
   * Called after each finished partition with rows, UDF metrics and an ETA so far (a
   * ProgressEvent), while the action runs; on the AWS runner `df.metrics` follows too.
   */
  onProgress?: (event: ProgressEvent) => void;
}

export interface WriteOptions extends ActionOptions {
  /**
   * 'error' (default): refuse a directory that already holds output; 'overwrite'; 'append';
   * 'overwrite-partitions' (with partitionBy): replace only the partition directories written.
   */
  mode?: 'error' | 'overwrite' | 'append' | 'overwrite-partitions';
  /**
   * Write a hive layout: `col=value/` directories, one level per column (values URL-encoded, null
   * as __HIVE_DEFAULT_PARTITION__); the columns are not repeated inside the files. One commit.
   */
  partitionBy?: string[];
  /**
   * writeParquet only: Parquet writer options (compression, rowGroupSize, encoding, columnEncoding,
   * statistics, dataPageSize). By default each column's encoding is chosen from a sample ('auto');
   * `{ encoding: 'dictionary' }` writes as parquet-rs does by default. The serverless runner does not take them yet.
   */
  parquet?: ParquetWriterOptions;
}

export interface WrittenFileRow {
  path: string;
  rows: bigint;
  bytes: bigint;
}

let memoryIds = 0;

export class DataFrame<R extends Row = Record<string, unknown>> {
  /** @internal */
  readonly plan: PlanNode;
  /** @internal in-memory batches this plan reads, by source id */
  readonly memory: Map<string, arrow.RecordBatch[]>;
  private materialized: DataFrame<R> | null = null;

  /** @internal use the source functions (readParquet, fromRecords, ...) */
  constructor(plan: PlanNode, memory: Map<string, arrow.RecordBatch[]>) {
    this.plan = plan;
    this.memory = memory;
  }

  private derive<S extends Row>(plan: PlanNode): DataFrame<S> {
    return new DataFrame<S>(plan, this.memory);
  }

  /** The current plan's output schema. */
  get schema(): Schema {
    return planSchema(this.plan);
  }

  get columns(): string[] {
    return this.schema.names;
  }

  /** A reference to one of this DataFrame's columns, checked now (and by TypeScript where it can). */
  col<K extends keyof R & string>(name: K): Expr<R[K]> {
    this.schema.field(name);
    return col<R[K]>(name);
  }

  private field(e: ExprNode, what: string): Field {
    try {
      return inferField(e, this.schema, udfEvalContext);
    } catch (err) {
      if (err instanceof Error) err.message = `${what}: ${err.message}`;
      throw err;
    }
  }

  private project<S extends Row>(input: ExprNode[], what: string): DataFrame<S> {
    const exprs = input.flatMap(unnestUdf);
    const fields = exprs.map((e) => this.field(e, what));
    const seen = new Set<string>();
    for (const f of fields) {
      if (seen.has(f.name)) throw new Error(`${what}: duplicate output column '${f.name}'; use .alias() to rename one`);
      seen.add(f.name);
    }
    return this.derive<S>({ type: 'project', input: this.plan, exprs, schema: new Schema(fields).toJSON() });
  }

  /** Keeps (or computes) the given columns, in that order. */
  select<K extends keyof R & string>(...columns: K[]): DataFrame<Simplify<Pick<R, K>>>;
  select(...columns: ((keyof R & string) | Expr<unknown>)[]): DataFrame<Record<string, unknown>>;
  select(...columns: (string | Expr<unknown>)[]): DataFrame<Record<string, unknown>> {
    if (!columns.length) throw new Error('select() needs at least one column');
    return this.project(
      columns.map((c) => (typeof c === 'string' ? col(c) : c).node),
      'select',
    );
  }

  /** Adds a column, or replaces the one with the same name in place. */
  withColumn<N extends string, T>(name: N, expr: Expr<T> | Exclude<Scalar, null>): DataFrame<Simplify<Omit<R, N> & { [P in N]: ValueOf<T> }>> {
    return this.withColumns({ [name]: expr } as Record<N, Expr<T>>) as never;
  }

  /** Adds or replaces several columns at once (each computed from the input columns). */
  withColumns<M extends Record<string, Expr<unknown> | Scalar>>(
    columns: M,
  ): DataFrame<Simplify<Omit<R, keyof M> & { [P in keyof M]: M[P] extends Expr<infer T> ? ValueOf<T> : M[P] }>> {
    const names = Object.keys(columns);
    if (!names.length) throw new Error('withColumns() needs at least one column');
    const defs = new Map<string, ExprNode>();
    for (const n of names) {
      const e = toExpr(columns[n] as Expr);
      defs.set(n, exprName(e.node) === n ? e.node : { op: 'alias', expr: e.node, name: n });
    }
    const exprs: ExprNode[] = this.columns.map((c) => defs.get(c) ?? col(c).node);
    for (const n of names) if (!this.schema.has(n)) exprs.push(defs.get(n)!);
    return this.project(exprs, `withColumn('${names.join("', '")}')`);
  }

  /** Keeps rows where `predicate` is true (null counts as false). */
  where(predicate: Expr<boolean> | Expr<Untyped>): DataFrame<R> {
    const f = this.field(predicate.node, 'where');
    if (f.type.kind !== 'bool') throw new TypeError(`where: predicate ${predicate.toString()} is ${f.type}, expected bool`);
    return this.derive<R>({ type: 'filter', input: this.plan, predicate: predicate.node, schema: this.plan.schema });
  }

  /** Alias of where(). */
  filter(predicate: Expr<boolean> | Expr<Untyped>): DataFrame<R> {
    return this.where(predicate);
  }

  /** Drops the given columns. */
  exclude<K extends keyof R & string>(...names: K[]): DataFrame<Simplify<Omit<R, K>>> {
    for (const n of names) this.schema.field(n);
    const keep = this.columns.filter((c) => !(names as string[]).includes(c));
    if (!keep.length) throw new Error('exclude() would remove every column');
    return this.project(
      keep.map((c) => col(c).node),
      'exclude',
    );
  }

  /** At most `n` rows (the first n, in input order). */
  limit(n: number): DataFrame<R> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`limit(n) needs a non-negative integer, got ${String(n)}`);
    return this.derive<R>({ type: 'limit', input: this.plan, n, schema: this.plan.schema });
  }

  /** One row per list element of the given list columns (exploded together); others repeat. */
  /** Splits or merges into exactly `n` partitions of contiguous rows, order preserved (as repartition(n)). */
  intoPartitions(n: number): DataFrame<R> {
    return this.partitionInto(n, 'intoPartitions');
  }

  private partitionInto(n: number, what: string): DataFrame<R> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what}(n) needs a positive integer, got ${String(n)}`);
    return this.derive({ type: 'intoPartitions', input: this.plan, n, schema: this.plan.schema });
  }

  explode<K extends keyof R & string>(...names: K[]): DataFrame<Simplify<{ [P in keyof R]: P extends K ? ElementOf<R[P]> : R[P] }>> {
    if (!names.length) throw new Error('explode() needs at least one list column');
    for (const n of names) {
      const f = this.schema.field(n);
      if (f.type.kind !== 'list' && f.type.kind !== 'fixedSizeList') {
        throw new TypeError(`explode: column '${n}' is ${f.type}, not a list`);
      }
    }
    const schema = explodeSchema(this.schema, names);
    return this.derive({ type: 'explode', input: this.plan, columns: [...names], schema: schema.toJSON() });
  }

  // ------------------------------------------------------------------ relational

  /** Groups rows by the key columns; `.agg(...)` then gives one row per group (null keys form a group, as in SQL). */
  groupBy<K extends keyof R & string>(...keys: K[]): GroupedDataFrame<R, K> {
    if (!keys.length) throw new Error('groupBy() needs at least one key column (use df.agg(...) to aggregate the whole frame)');
    const schema = this.schema;
    for (const k of keys) if (!schema.has(k)) throw new ColumnNotFoundError(k, schema.names, 'groupBy');
    return new GroupedDataFrame<R, K>((aggs) => this.derive(aggregateNode(this.plan, keys, aggs, `groupBy('${keys.join("', '")}').agg`)), keys);
  }

  /** Aggregates over the whole frame: one row (count 0 and null sums over no rows, as SQL). */
  agg<A extends readonly AggExpr<unknown, string, unknown>[]>(...aggs: A): DataFrame<Simplify<AggRow<A>>> {
    if (!aggs.length) throw new Error('agg() needs at least one aggregation');
    return this.derive(aggregateNode(this.plan, [], aggs.map(aggNode), 'agg'));
  }

  /** One row per distinct value of `columns` (all columns by default); other columns come from the first such row. */
  distinct<K extends keyof R & string>(...columns: K[]): DataFrame<R> {
    return this.derive(distinctNode(this.plan, columns));
  }

  /** Sorted by one or several columns (stable; nulls last unless `nullsFirst`). */
  sort(by: (keyof R & string) | Expr<unknown> | readonly ((keyof R & string) | Expr<unknown>)[], opts: SortOptions = {}): DataFrame<R> {
    const list = Array.isArray(by) ? (by as readonly (string | Expr<unknown>)[]) : [by as string | Expr<unknown>];
    const names = list.map((b) => {
      if (typeof b === 'string') return b;
      if (b instanceof Expr && b.node.op === 'col') return b.node.name;
      throw new TypeError(`sort: sort by a column name or col(name); add a computed key with withColumn first (got ${String(b)})`);
    });
    return this.derive(sortNode(this.plan, names, opts));
  }

  /** Joins with `other` on key columns (hash join; the right side is the build side). */
  join<S extends Row, H extends JoinHow = 'inner'>(other: DataFrame<S>, opts: JoinOptions & { how?: H }): DataFrame<JoinRow<R, S, H>> {
    if (!(other instanceof DataFrame)) throw new TypeError('join(other, opts): other must be a DataFrame');
    return new DataFrame(joinNode(this.plan, other.plan, opts), new Map([...this.memory, ...other.memory]));
  }

  /** This frame's rows followed by `other`'s (same column names and types, in the same order). */
  concat(other: DataFrame<R>): DataFrame<R> {
    if (!(other instanceof DataFrame)) throw new TypeError('concat(other): other must be a DataFrame');
    return new DataFrame(concatNode(this.plan, other.plan), new Map([...this.memory, ...other.memory]));
  }

  /**
   * `repartition(n)`: the rows run as exactly `n` partitions, each a contiguous range of the
   * input's rows, in order (row groups split by row ranges, small ones merged; CSV files are
   * grouped, never split); the last repartition/intoPartitions before an action decides.
   * `repartition(n, ...keys)`: a hash exchange into n partitions, rows with equal keys in the same one.
   */
  repartition<K extends keyof R & string>(n: number, ...keys: K[]): DataFrame<R> {
    if (!keys.length) return this.partitionInto(n, 'repartition');
    return this.derive(repartitionNode(this.plan, n, keys));
  }

  // ------------------------------------------------------------------ execution

  /** What the runner gets with a plan: this DataFrame's in-memory sources, the signal, where metrics go. */
  private action(opts: ActionOptions = {}, keepMetrics: DataFrame<Row> = this): ActionContext {
    const ctx: ActionContext = {
      memory: this.memory as MemorySources,
      onMetrics: (m) => {
        keepMetrics.metrics = m;
      },
    };
    const signal = checkSignal(opts);
    if (signal) ctx.signal = signal;
    if (opts.onProgress !== undefined) {
      if (typeof opts.onProgress !== 'function') throw new TypeError("action option 'onProgress' must be a function");
      ctx.onProgress = opts.onProgress;
    }
    return ctx;
  }

  /** UDF metrics of the last action run on this DataFrame: per UDF rows, calls, retries, errors, time, counters. */
  metrics: RunMetrics = {};

  /** @internal streams the result batches in order */
  stream(plan: PlanNode = this.plan, opts: ActionOptions = {}): AsyncIterable<arrow.RecordBatch> {
    if (this.materialized && plan === this.plan) return this.materialized.stream(this.materialized.plan, opts);
    return getRunner().stream(plan, this.action(opts));
  }

  /** Runs the plan and keeps the result in memory; later actions on this DataFrame reuse it. */
  async collect(opts: ActionOptions = {}): Promise<DataFrame<R>> {
    if (this.materialized) return this.materialized;
    if (this.plan.type === 'in_memory') return this;
    const batches: arrow.RecordBatch[] = [];
    for await (const b of this.stream(this.plan, opts)) batches.push(b);
    this.materialized = inMemory<R>(this.schema, batches);
    this.materialized.metrics = this.metrics;
    return this.materialized;
  }

  /** The result as an apache-arrow Table. */
  async toArrow(opts: ActionOptions = {}): Promise<arrow.Table> {
    const schema = this.schema.toArrow();
    const batches: arrow.RecordBatch[] = [];
    for await (const b of this.stream(this.plan, opts)) batches.push(new arrow.RecordBatch(schema, b.data));
    return batches.length ? new arrow.Table(schema, batches) : new arrow.Table(schema);
  }

  /** The result as plain objects (int64 as bigint, dates as Date). */
  async toRows(opts: ActionOptions = {}): Promise<R[]> {
    const rows: R[] = [];
    for await (const b of this.stream(this.plan, opts)) for (const r of batchToRows(b)) rows.push(r as R);
    return rows;
  }

  /** Rows one at a time; the first arrives as soon as the first batch is ready. */
  async *iterRows(opts: ActionOptions = {}): AsyncGenerator<R> {
    for await (const b of this.stream(this.plan, opts)) {
      for (const r of batchToRows(b)) yield r as R;
    }
  }

  /** Each partition's result, in order, as a materialized DataFrame. */
  async *iterPartitions(opts: ActionOptions = {}): AsyncGenerator<DataFrame<R>> {
    for await (const part of getRunner().partitions(this.plan, this.action(opts))) {
      const batches: arrow.RecordBatch[] = [];
      for await (const b of part.batches) batches.push(b);
      yield inMemory<R>(this.schema, batches);
    }
  }

  /** Number of rows (from Parquet metadata when nothing filters rows). */
  async count(opts: ActionOptions = {}): Promise<number> {
    checkSignal(opts);
    const optimized = optimize(this.plan);
    const fromMetadata = metadataCount(optimized);
    if (fromMetadata !== null) return fromMetadata;
    // Read as little as possible: the first column only.
    const first = this.columns[0]!;
    const minimal = optimize({ type: 'project', input: this.plan, exprs: [col(first).node], schema: this.schema.select([first]).toJSON() });
    let n = 0;
    for await (const b of this.stream(minimal, opts)) n += b.numRows;
    return n;
  }

  /** Prints the first `n` rows as an aligned table and returns the text. */
  async show(n = 8, opts: ActionOptions = {}): Promise<string> {
    const rows: Record<string, JsValue>[] = [];
    for await (const b of this.stream(this.limit(n + 1).plan, opts)) rows.push(...batchToRows(b));
    const more = rows.length > n;
    const text = formatTable(this.schema, rows.slice(0, n), more ? { totalRows: null } : {});
    console.log(text);
    return text;
  }

  /** The plans: physical always; with showAll also the unoptimized and optimized logical plans. */
  async explain(opts: ExplainOptions = {}): Promise<string> {
    const optimized = optimize(this.plan);
    const parts: string[] = [];
    if (opts.showAll) {
      parts.push('== Unoptimized Logical Plan ==', planToString(this.plan), '');
      parts.push('== Optimized Logical Plan ==', planToString(optimized), '');
    }
    parts.push('== Physical Plan ==', getRunner().describe(optimized, { stages: opts.stages === true }));
    return parts.join('\n');
  }

  /** Writes Parquet files into `dir` atomically; returns one row per written file. */
  async writeParquet(dir: string, opts: WriteOptions = {}): Promise<DataFrame<WrittenFileRow>> {
    return this.write(dir, 'parquet', opts);
  }

  /** Writes CSV files (with a header) into `dir` atomically; returns one row per written file. */
  async writeCsv(dir: string, opts: WriteOptions = {}): Promise<DataFrame<WrittenFileRow>> {
    return this.write(dir, 'csv', opts);
  }

  private async write(dir: string, format: 'parquet' | 'csv', opts: WriteOptions): Promise<DataFrame<WrittenFileRow>> {
    if (typeof dir !== 'string' || !dir) throw new TypeError(`write${format === 'parquet' ? 'Parquet' : 'Csv'}(dir) needs a directory path`);
    // Before any work (or any cluster run): a column too deep for the Parquet writer would fail only at the end.
    if (format === 'parquet') checkParquetWriteNesting(this.schema, dir);
    if (opts.parquet !== undefined) {
      if (format !== 'parquet') throw new TypeError(`writeCsv(${JSON.stringify(dir)}): option 'parquet' (Parquet writer options) applies to writeParquet only`);
      if (typeof opts.parquet !== 'object' || opts.parquet === null)
        throw new TypeError(`writeParquet(${JSON.stringify(dir)}): option 'parquet' must be an object of writer options`);
      if ('schema' in opts.parquet)
        throw new RangeError(`writeParquet(${JSON.stringify(dir)}): option parquet.schema is not taken: the DataFrame's schema is written`);
      checkWriteOptions(opts.parquet, this.schema, dir);
    }
    // A collected result is written from memory, wherever the runner would compute it.
    const source = this.materialized ?? this;
    const sink: Parameters<ReturnType<typeof getRunner>['write']>[1] = { uri: dir, format, mode: opts.mode ?? 'error' };
    const where = `write${format === 'parquet' ? 'Parquet' : 'Csv'}(${JSON.stringify(dir)})`;
    if (opts.parquet) sink.parquet = opts.parquet;
    if (opts.partitionBy !== undefined) sink.partitionBy = checkPartitionBy(this.schema, opts.partitionBy, where);
    else if (sink.mode === 'overwrite-partitions') throw new Error(`${where}: mode 'overwrite-partitions' needs partitionBy (the partition columns)`);
    const stored = Object.keys(opts.parquet?.columnEncoding ?? {}).find((c) => sink.partitionBy?.includes(c));
    if (stored) throw new RangeError(`${where}: option parquet.columnEncoding names '${stored}', a partitionBy column, which is not stored in the files`);
    const files = await getRunner().write(source.plan, sink, source.action(opts, this));
    return filesFrame(files);
  }

  toString(): string {
    return `DataFrame(${this.schema.fields.map((f) => `${f.name}: ${f.type}`).join(', ')})`;
  }
}

/** Result row of an aggregation list: each aggregation's name and value type (nullable, as SQL). */
export type AggRow<A extends readonly AggExpr<unknown, string, unknown>[]> = {
  [E in A[number] as E extends AggExpr<unknown, infer N, unknown> ? N : never]: E extends AggExpr<infer T, string, infer Z> ? T | Z : never;
};

/** Result row of a join: semi/anti keep the left rows; otherwise left and right columns (the side an outer join can miss is nullable). */
export type JoinRow<R, S, H extends JoinHow> = H extends 'semi' | 'anti'
  ? R
  : Simplify<
      (H extends 'right' | 'outer' ? { [K in keyof R]: R[K] | null } : R) &
        (H extends 'left' | 'outer' ? { [K in Exclude<keyof S, keyof R>]: S[K] | null } : Omit<S, keyof R>)
    >;

/** The result of groupBy(...keys): call agg(...) on it. */
export class GroupedDataFrame<R extends Row, K extends keyof R & string> {
  /** @internal */
  constructor(
    private readonly build: (aggs: AggNode[]) => DataFrame<Row>,
    readonly keys: readonly K[],
  ) {}

  /** One row per group: the keys, then each aggregation (`col('x').sum().alias('total')`). */
  agg<A extends readonly AggExpr<unknown, string, unknown>[]>(...aggs: A): DataFrame<Simplify<Pick<R, K> & AggRow<A>>> {
    return this.build(aggs.map(aggNode)) as unknown as DataFrame<Simplify<Pick<R, K> & AggRow<A>>>;
  }
}

function aggNode(a: AggExpr<unknown, string, unknown>): AggNode {
  if (!(a instanceof AggExpr)) throw new TypeError(`expected an aggregation such as col('x').sum(), got ${String(a)}`);
  return a.node;
}

/** The action's signal, checked: an already aborted action runs nothing (as fetch does). */
function checkSignal(opts: ActionOptions): AbortSignal | undefined {
  const signal = opts.signal;
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new TypeError("action option 'signal' must be an AbortSignal");
  if (signal.aborted) throw new AbortError('aborted before the action started', { cause: signal.reason });
  return signal;
}

function filesFrame(files: readonly WrittenFile[]): DataFrame<WrittenFileRow> {
  return fromColumns({
    path: files.map((f) => f.path),
    rows: BigInt64Array.from(files, (f) => BigInt(f.rows)),
    bytes: BigInt64Array.from(files, (f) => BigInt(f.bytes)),
  }) as unknown as DataFrame<WrittenFileRow>;
}

/** A UDF call with `unnest: true` becomes one column per struct field (the call itself runs once). */
function unnestUdf(e: ExprNode): ExprNode[] {
  const inner = e.op === 'alias' ? e.expr : e;
  if (inner.op !== 'udf') return [e];
  const def = getUdf(inner.name);
  if (!def.options.unnest) return [e];
  return def.returnDtype.structFields().map((f) => ({
    op: 'alias' as const,
    name: f.name,
    expr: { op: 'call' as const, fn: 'struct.get' as const, args: [inner], params: { field: f.name } },
  }));
}

/** Row count from Parquet footers when the plan is a bare scan (no filter, no limit, no explode). */
function metadataCount(plan: PlanNode): number | null {
  let node = plan;
  while (node.type === 'project') {
    // A generator UDF changes the row count: count by running the plan.
    if (node.exprs.some(callsGenerator)) return null;
    node = node.input;
  }
  if (node.type === 'in_memory') return node.numRows;
  if (node.type !== 'scan' || node.format !== 'parquet' || node.pushdowns.filter || node.pushdowns.limit !== null) return null;
  const files = node.hive && node.hiveLazy ? planHiveScan({ ...node, hive: node.hive }, null).files : node.files;
  return files.reduce((n, f) => n + inspectParquet(f).numRows, 0);
}

/**
 * One physical layout per logical type for the kernels: columns given in another (dictionary,
 * large offsets, millisecond dates — e.g. from a user's Arrow table) are converted once, here.
 */
function conformBatch(b: arrow.RecordBatch, schema: Schema, arrowSchema: arrow.Schema): arrow.Data<arrow.Struct> {
  const children = b.data.children;
  let changed = false;
  const out = children.map((c, i) => {
    if (String(c.type) === String(arrowSchema.fields[i]!.type)) return c;
    changed = true;
    return conform(c, schema.fields[i]!.type);
  });
  if (!changed) return b.data;
  return arrow.makeData({ type: new arrow.Struct(arrowSchema.fields), length: b.numRows, nullCount: 0, children: out });
}

function inMemory<R extends Row>(schema: Schema, batches: arrow.RecordBatch[]): DataFrame<R> {
  const id = `mem-${++memoryIds}-${randomUUID().slice(0, 8)}`;
  const arrowSchema = schema.toArrow();
  const aligned = batches.filter((b) => b.numRows > 0).map((b) => new arrow.RecordBatch(arrowSchema, conformBatch(b, schema, arrowSchema)));
  const numRows = aligned.reduce((n, b) => n + b.numRows, 0);
  return new DataFrame<R>({ type: 'in_memory', id, numRows, numBatches: aligned.length, schema: schema.toJSON() }, new Map([[id, aligned]]));
}

// ------------------------------------------------------------------ sources

export interface ReadParquetOptions {
  /** Only these columns (a projection applied at the scan). */
  columns?: string[];
  /**
   * Take the path literally: `*`, `?`, `[` … are part of the name, and an s3:// key names exactly
   * one object (not a prefix). For paths that come from outside, e.g. the key of an uploaded object.
   */
  literal?: boolean;
  /**
   * `key=value/` directories become typed columns (after the file's own): inferred by default
   * (int64, float64, date, bool, else utf8), or declared with `{ schema }`; `false` turns it off.
   */
  hivePartitioning?: HivePartitioningOption;
}

function checkSameSchema(files: string[], schemaOf: (f: string) => Schema): Schema {
  const first = schemaOf(files[0]!);
  for (const f of files.slice(1)) {
    const s = schemaOf(f);
    if (s.equals(first)) continue;
    const names = new Set([...first.names, ...s.names]);
    for (const n of names) {
      const a = first.has(n) ? first.field(n).type.toString() : 'missing';
      const b = s.has(n) ? s.field(n).type.toString() : 'missing';
      if (a !== b) {
        throw new Error(`schema mismatch across input files: column '${n}' is ${a} in ${files[0]} but ${b} in ${f}`);
      }
    }
    throw new Error(`schema mismatch across input files: column order differs between ${files[0]} and ${f}`);
  }
  return first;
}

/** Lazily reads Parquet files: a path, a directory, a glob or a list of them. */
export function readParquet<R extends Row = Record<string, unknown>>(source: string | string[], opts: ReadParquetOptions = {}): DataFrame<R> {
  const schemaOf = (f: string): Schema => {
    const info = inspectParquet(f);
    // A column no DataType represents is an error unless `columns` leaves it out: never dropped silently.
    const bad = info.unsupportedColumns.find((u) => !opts.columns || opts.columns.includes(u.name));
    if (bad) {
      const others = info.schema.names.map((n) => `'${n}'`).join(', ');
      throw new Error(`column '${bad.name}' of ${f} cannot be read: ${bad.reason} (pass columns: [...] without it to read the others: ${others})`);
    }
    return info.schema;
  };
  const { files, schema, hive, hiveLazy } = scanFiles(source, 'parquet', opts.literal === true, opts.hivePartitioning, 'readParquet', schemaOf, (files) =>
    checkSameSchema(files, schemaOf),
  );
  const df = new DataFrame<R>(
    {
      type: 'scan',
      format: 'parquet',
      source,
      files,
      fileSchema: schema.toJSON(),
      ...(hive ? { hive } : {}),
      ...(hiveLazy ? { hiveLazy } : {}),
      pushdowns: { columns: null, filter: null, limit: null },
      schema: schema.toJSON(),
    },
    new Map(),
  );
  return opts.columns ? (df.select(...(opts.columns as (keyof R & string)[])) as unknown as DataFrame<R>) : df;
}

/**
 * A scan's files and schema. A hive layout reads ONE file's footer (or header) here: a plain
 * directory / prefix is listed only down to its partition directories (hive-scan.ts), and the
 * surviving partitions' files are listed and checked at planning, after pruning by the filter.
 */
function scanFiles(
  source: string | string[],
  what: 'parquet' | 'csv',
  literal: boolean,
  opt: HivePartitioningOption | undefined,
  where: string,
  schemaOf: (file: string) => Schema,
  allSchemas: (files: string[]) => Schema,
): { files: string[]; schema: Schema; hive: HiveScanJSON | null; hiveLazy?: HiveLazyJSON } {
  const lazy = hiveRootScan(source, what, opt, literal, where);
  let files: string[] | null = null;
  if (lazy && 'listed' in lazy) files = expandListedPrefix(source as string, lazy.listed, what);
  else if (lazy) return { files: [], schema: withHiveColumns(schemaOf(lazy.lazy.probe), lazy.hive, lazy.lazy.probe), hive: lazy.hive, hiveLazy: lazy.lazy };
  files ??= expandPaths(source, what, { literal });
  const hive = discoverHive(source, files, opt, where);
  if (!hive) return { files, schema: allSchemas(files), hive: null };
  return { files, schema: withHiveColumns(schemaOf(files[0]!), hive, files[0]!), hive, hiveLazy: { probe: files[0]!, check: what } };
}

export type ReadCsvOptions = Omit<CsvOptions, 'columns' | 'batchSize' | 'schema'> & {
  columns?: string[];
  /** A Schema or `{ name: DataType }`; with a header, fields are matched to header names (see CsvOptions.schema). */
  schema?: CsvSchema;
  /** Take the path literally (no glob expansion; an s3:// key is exactly one object), as in readParquet. */
  literal?: boolean;
  /** `key=value/` directories as typed columns, as in readParquet. */
  hivePartitioning?: HivePartitioningOption;
};

/** Lazily reads CSV files (header row, types inferred from the first rows unless `schema` is given). */
export function readCsv<R extends Row = Record<string, unknown>>(source: string | string[], opts: ReadCsvOptions = {}): DataFrame<R> {
  const { columns, schema: rawSchema, literal, hivePartitioning, ...rest } = opts;
  const given = csvSchemaOption(rawSchema, `readCsv(${JSON.stringify(source)})`);
  const csvOpts: CsvOptions = given ? { ...rest, schema: given } : rest;
  const scanned = scanFiles(
    source,
    'csv',
    literal === true,
    hivePartitioning,
    'readCsv',
    (f) => given ?? inspectCsv(f, csvOpts).schema,
    (files) => given ?? checkSameSchema(files, (f) => inspectCsv(f, csvOpts).schema),
  );
  const { files, schema, hive } = scanned;
  let hiveLazy = scanned.hiveLazy;
  // A declared schema is not checked per file (as before); inference is, with the same sample size.
  if (hiveLazy && given) hiveLazy = { ...hiveLazy, check: 'none' };
  else if (hiveLazy && opts.inferRows !== undefined) hiveLazy = { ...hiveLazy, inferRows: opts.inferRows };
  const csv: { delimiter?: string; header?: boolean; nullValues?: string[] } = {};
  if (opts.delimiter !== undefined) csv.delimiter = opts.delimiter;
  if (opts.header !== undefined) csv.header = opts.header;
  if (opts.nullValues !== undefined) csv.nullValues = opts.nullValues;
  const df = new DataFrame<R>(
    {
      type: 'scan',
      format: 'csv',
      source,
      files,
      fileSchema: schema.toJSON(),
      csv,
      ...(hive ? { hive } : {}),
      ...(hiveLazy ? { hiveLazy } : {}),
      pushdowns: { columns: null, filter: null, limit: null },
      schema: schema.toJSON(),
    },
    new Map(),
  );
  return columns ? (df.select(...(columns as (keyof R & string)[])) as unknown as DataFrame<R>) : df;
}

/**
 * What a JS value given to fromRecords / fromColumns comes back as in rows and UDF arguments (the
 * inferred type's JS side, see convert/js-value.ts): numbers stay numbers (float64), bigints stay
 * bigints (int64), undefined and missing keys are null, Uint8Array is binary, other typed arrays
 * are lists (plain arrays when read back), plain objects are structs.
 */
export type RowValue<V> = V extends null | undefined
  ? null
  : V extends Uint8ClampedArray
    ? number[]
    : V extends Uint8Array
      ? Uint8Array
      : V extends BigInt64Array | BigUint64Array
        ? bigint[]
        : V extends Int8Array | Int16Array | Int32Array | Uint16Array | Uint32Array | Float32Array | Float64Array
          ? number[]
          : V extends Date
            ? Date
            : V extends readonly (infer E)[]
              ? RowValue<E>[]
              : V extends object
                ? { [K in keyof V]-?: RowValue<V[K]> | (undefined extends V[K] ? null : never) }
                : V;

/** Row type of fromRecords(rows): each record's values as they come back (`RowValue`). */
export type RecordsRow<R> = { [K in keyof R]-?: RowValue<R[K]> | (undefined extends R[K] ? null : never) };

/**
 * A DataFrame from plain objects; the schema is inferred (numbers float64, bigints int64, ...:
 * see `inferSchemaFromRecords`) and the row type follows it. With a `schema` the values are
 * converted to its types (an int64 column turns numbers into bigints), so the row type is not the
 * records' own: give it as the type parameter (`Record<string, unknown>` by default, as readParquet).
 */
export function fromRecords<R extends Row>(rows: readonly R[]): DataFrame<RecordsRow<R>>;
export function fromRecords<R extends Row = Record<string, unknown>>(rows: readonly object[], schema: Schema | undefined): DataFrame<R>;
export function fromRecords(rows: readonly object[], schema?: Schema): DataFrame<Row> {
  if (!Array.isArray(rows)) throw new TypeError('fromRecords(rows) needs an array of objects');
  const s = schema ?? inferSchemaFromRecords(rows as readonly Record<string, unknown>[]);
  const batch = recordsToBatch(rows as readonly Record<string, unknown>[], s);
  return inMemory(s, [batch]);
}

type ColumnValues = readonly unknown[] | ArrayLike<number> | ArrayLike<bigint>;
/** Row value of a fromColumns column: typed arrays map to their Arrow type (BigInt64Array int64 -> bigint, Int32Array int32 -> number, ...). */
type ColumnType<V> = V extends readonly (infer E)[] ? RowValue<E> : V extends ArrayLike<bigint> ? bigint : V extends ArrayLike<number> ? number : unknown;

/**
 * A DataFrame from columns (arrays or typed arrays, zero-copy where possible). With a `schema`
 * the row type is the type parameter, as for fromRecords.
 */
export function fromColumns<C extends Record<string, ColumnValues>>(columns: C): DataFrame<{ [K in keyof C]: ColumnType<C[K]> }>;
export function fromColumns<R extends Row = Record<string, unknown>>(columns: Record<string, ColumnValues>, schema: Schema | undefined): DataFrame<R>;
export function fromColumns(columns: Record<string, ColumnValues>, schema?: Schema): DataFrame<Row> {
  const batch = columnsToBatch(columns, schema);
  return inMemory(Schema.fromArrow(batch.schema), [batch]);
}

/** A DataFrame over an apache-arrow Table (no copy). */
export function fromArrow<R extends Row = Record<string, unknown>>(table: arrow.Table): DataFrame<R> {
  const schema = Schema.fromArrow(table.schema);
  return inMemory<R>(schema, table.batches);
}

// Expression evaluation over Arrow record batches. An expression is first bound against a schema
// (types resolved, literals materialized and coerced once, type errors raised before any data is
// read), then run bottom-up: each call node invokes one vectorized kernel. Literal subtrees stay
// length-1 scalars that kernels broadcast on the fly, so `x * 2 + 1` never builds arrays of 2s.
import * as arrow from 'apache-arrow';
import { ColumnNotFoundError, DataType, Field, Schema } from './datatypes.ts';
import { decodeLiteral, exprName, exprToString, type ExprNode, type UdfCallNode } from './expressions.ts';
import { ExpressionTypeError, type FunctionDef, type Params, type ResolveContext } from './functions/common.ts';
import { getFunction } from './functions/index.ts';
import { andValidity, popcount } from './kernels/bitmap.ts';
import { castData, CastError, castUnsupportedReason, conform } from './kernels/cast.ts';
import { concatData } from './kernels/concat.ts';
import { fixedListSize, mkData, retype } from './kernels/data.ts';
import { selectionFromBits, trueBits } from './kernels/filter.ts';
import { ownData } from './kernels/owned.ts';
import { repeatRow, take, takeSelected } from './kernels/take.ts';
import { physicalValuesToData } from './convert/index.ts';

export { ExpressionTypeError } from './functions/common.ts';
export { CastError } from './kernels/cast.ts';

/**
 * Switches for in-process A/B measurements and for tests that compare the fast paths with the
 * general one: `fusedArithmetic` (float64 arithmetic trees as one loop) and `fusedFilterProject`
 * (a filter and the projection after it in one operator, FilterProject).
 */
export const evalTuning = { fusedArithmetic: true, fusedFilterProject: true, reuseSelection: true };

/** Hooks for nodes eval.ts does not evaluate itself. */
export interface EvalContext {
  /** Result type of a UDF call given its argument fields (UDFs run outside eval.ts). */
  udfType?: (node: UdfCallNode, argFields: Field[]) => DataType;
}

/** A node with everything resolved that does not depend on the data. */
interface Bound {
  readonly node: ExprNode;
  readonly field: Field;
  readonly args: readonly Bound[];
  /** Depends on literals only: evaluates to a length-1 scalar. */
  readonly scalar: boolean;
  readonly def?: FunctionDef;
  readonly params?: Params;
  /** Per-argument cast target applied before the kernel (call nodes). */
  readonly coerce?: readonly (DataType | null)[];
  /** Literal value, already converted to its final (coerced) type. */
  literal?: arrow.Data;
}

const NO_PARAMS: Params = {};

function bind(node: ExprNode, schema: Schema, ctx: EvalContext | undefined): Bound {
  switch (node.op) {
    case 'col': {
      const f = schema.field(node.name);
      return { node, field: new Field(node.name, f.type, f.nullable), args: [], scalar: false };
    }
    case 'lit': {
      const type = DataType.fromJSON(node.type);
      let literal: arrow.Data;
      try {
        literal = physicalValuesToData([decodeLiteral(node.value)], type.toArrow());
      } catch (e) {
        throw new ExpressionTypeError(`invalid literal ${exprToString(node)} for type ${type}: ${(e as Error).message}`);
      }
      return { node, field: new Field('literal', type, node.value === null), args: [], scalar: true, literal };
    }
    case 'alias': {
      const inner = bind(node.expr, schema, ctx);
      return { node, field: new Field(node.name, inner.field.type, inner.field.nullable), args: [inner], scalar: inner.scalar };
    }
    case 'cast': {
      const inner = bind(node.expr, schema, ctx);
      const to = DataType.fromJSON(node.to);
      const reason = castUnsupportedReason(inner.field.type, to);
      if (reason) throw new ExpressionTypeError(`${reason} (in ${exprToString(node)})`);
      const b: Bound = { node, field: new Field(exprName(node), to, true), args: [inner], scalar: inner.scalar };
      if (inner.literal) b.literal = castLiteral(inner.literal, to, node.expr);
      return b;
    }
    case 'udf': {
      const args = node.args.map((a) => bind(a, schema, ctx));
      if (!ctx?.udfType) {
        throw new ExpressionTypeError(
          `UDF '${node.name}' cannot be typed here: no udfType hook in the evaluation context (UDF calls are resolved by the executor)`,
        );
      }
      const type = ctx.udfType(
        node,
        args.map((a) => a.field),
      );
      return { node, field: new Field(exprName(node), type, true), args, scalar: false };
    }
    case 'call': {
      const def = getFunction(node.fn);
      if (!def) throw new ExpressionTypeError(`unknown function '${node.fn}' in ${exprToString(node)}`);
      const args = node.args.map((a) => bind(a, schema, ctx));
      const fields = args.map((a) => a.field);
      const params = node.params ?? NO_PARAMS;
      const rctx: ResolveContext = { fn: node.fn, args: node.args };
      const type = def.resolve(fields, params, rctx);
      const coerce = def.coerce ? def.coerce(fields, params, rctx, type) : args.map(() => null);
      // Coerce literal arguments once, now, so a bad literal (e.g. an unparseable date) is a type error.
      const boundArgs = args.map((a, i) => {
        const to = coerce[i];
        if (!a.literal || !to || a.field.type.equals(to)) return a;
        return { ...a, field: new Field(a.field.name, to, a.field.nullable), literal: castLiteral(a.literal, to, a.node) };
      });
      const nullable = !(node.fn === 'is_null' || node.fn === 'not_null');
      const b: Bound = {
        node,
        field: new Field(exprName(node), type, nullable),
        args: boundArgs,
        def,
        params,
        coerce,
        scalar: boundArgs.length > 0 && boundArgs.every((a) => a.scalar),
      };
      // Constant folding: a call over literals only is computed once, here.
      if (boundArgs.length > 0 && boundArgs.every((a) => a.literal)) {
        b.literal = def.kernel(
          boundArgs.map((a) => a.literal!),
          params,
          1,
          { outType: type, argTypes: boundArgs.map((a) => a.field.type), owned: boundArgs.map(() => false) },
        );
      }
      return b;
    }
  }
}

function castLiteral(d: arrow.Data, to: DataType, node: ExprNode): arrow.Data {
  try {
    return castData(d, to);
  } catch (e) {
    throw new ExpressionTypeError(`cannot use ${exprToString(node)} as ${to}: ${(e as Error).message}`);
  }
}

/**
 * Name and type of an expression's result over `schema`. Throws ExpressionTypeError (naming the
 * expressions and types involved) or ColumnNotFoundError without touching any data.
 */
export function inferField(node: ExprNode, schema: Schema, ctx?: EvalContext): Field {
  return bind(node, schema, ctx).field;
}

interface Value {
  data: arrow.Data;
  /** A kernel result nobody else references: its value buffer may be overwritten. */
  owned: boolean;
}

function columnData(batch: arrow.RecordBatch, name: string): arrow.Data {
  const i = batch.schema.fields.findIndex((f) => f.name === name);
  if (i < 0)
    throw new ColumnNotFoundError(
      name,
      batch.schema.fields.map((f) => f.name),
      'record batch',
    );
  return batch.data.children[i]!;
}

function run(b: Bound, batch: arrow.RecordBatch, n: number): Value {
  if (b.literal) return { data: b.literal, owned: false };
  const node = b.node;
  switch (node.op) {
    case 'col':
      return { data: conform(columnData(batch, node.name), b.field.type), owned: false };
    case 'alias':
      return run(b.args[0]!, batch, n);
    case 'cast': {
      const v = run(b.args[0]!, batch, n);
      try {
        return { data: castData(v.data, b.field.type), owned: false };
      } catch (e) {
        if (e instanceof CastError) {
          throw new CastError(`cannot cast ${exprToString(node.expr)} (${b.args[0]!.field.type}) to ${b.field.type}: ${e.message}`, e.value, e.row, e.target);
        }
        throw e;
      }
    }
    case 'udf':
      throw new ExpressionTypeError(`UDF '${node.name}' must be evaluated by the executor, not by evaluate()`);
    case 'lit':
      throw new Error('internal: literal without data');
    case 'call': {
      const len = b.scalar ? 1 : n;
      const vals = b.args.map((a) => run(a, batch, n));
      const datas = vals.map((v, i) => {
        const to = b.coerce![i];
        if (!to || b.args[i]!.field.type.equals(to)) return v.data;
        vals[i] = { data: v.data, owned: false };
        return castData(v.data, to);
      });
      const argTypes = b.args.map((a, i) => b.coerce![i] ?? a.field.type);
      const out = b.def!.kernel(datas, b.params!, len, { outType: b.field.type, argTypes, owned: vals.map((v) => v.owned) });
      if (out.length !== len) throw new Error(`internal: ${node.fn} returned ${out.length} rows, expected ${len}`);
      return { data: out, owned: b.def!.freshOutput === true && !b.scalar };
    }
  }
}

// --- Fused float64 arithmetic: a tree of add/sub/mul/div/mod over float64 columns and non-null
// scalars (`x * 2 + 1`) runs as one generated loop, instead of one kernel pass and one intermediate
// array per operator; after a filter it reads its columns through the selection, so the filtered
// inputs are never gathered. Each operator is the same IEEE 754 double operation, in the same order,
// as the per-kernel path (arith-loops.ts), so results are bit-identical.

/** A compiled tree: its leaf columns (distinct names, in index order), scalars and loop. */
interface F64Plan {
  readonly cols: readonly Bound[];
  readonly scalars: readonly number[];
  readonly loop: F64Loop;
}
type F64Loop = (cols: readonly Float64Array[], s: readonly number[], out: Float64Array, sel: Int32Array | null, m: number) => void;

const F64_OPS: Partial<Record<string, string>> = { add: '+', sub: '-', mul: '*', div: '/', mod: '%' };
/** Loops by shape (`((c0[@] * s0) + s1)`): one function per shape, so V8 optimizes it once. */
const f64Loops = new Map<string, F64Loop | null>();

/** Plans by bound tree (null: not compilable); Bound objects are immutable once bound. */
const f64Plans = new WeakMap<Bound, F64Plan | null>();

/** A generated loop, or null where code generation from strings is disallowed (the general path runs). */
function compileLoop(params: readonly string[], body: string): unknown {
  try {
    return new Function(...params, body);
  } catch {
    return null; // --disallow-code-generation-from-strings
  }
}

/** Source text of `b` with `@` for the row index, or null when `b` is not a float64 arithmetic tree. */
function f64Shape(b: Bound, cols: Bound[], scalars: number[]): string | null {
  if (b.field.type.kind !== 'float64') return null;
  if (b.literal) {
    const d = b.literal;
    if (d.length !== 1 || d.nullCount > 0 || !(d.values instanceof Float64Array)) return null;
    scalars.push(d.values[0]!);
    return `s${scalars.length - 1}`;
  }
  const node = b.node;
  if (node.op === 'alias') return f64Shape(b.args[0]!, cols, scalars);
  if (node.op === 'col') {
    let k = cols.findIndex((c) => (c.node as { name: string }).name === node.name);
    if (k < 0) k = cols.push(b) - 1;
    return `c${k}[@]`;
  }
  if (node.op !== 'call' || b.args.length !== 2) return null;
  const sym = F64_OPS[node.fn];
  if (!sym) return null;
  // Operands must already be float64: a coercion (int -> float) is left to the general path.
  for (let i = 0; i < 2; i++) {
    const to = b.coerce![i];
    if (b.args[i]!.field.type.kind !== 'float64' || (to && to.kind !== 'float64')) return null;
  }
  const l = f64Shape(b.args[0]!, cols, scalars);
  const r = l === null ? null : f64Shape(b.args[1]!, cols, scalars);
  return r === null ? null : `(${l} ${sym} ${r})`;
}

function f64Plan(b: Bound): F64Plan | null {
  let plan = f64Plans.get(b);
  if (plan !== undefined) return plan;
  plan = null;
  const cols: Bound[] = [];
  const scalars: number[] = [];
  const shape = b.literal ? null : f64Shape(b, cols, scalars);
  // At least one operator over at least one column (a bare column is not copied by the general path).
  if (shape !== null && cols.length > 0 && shape.startsWith('(')) {
    const key = `${shape}|${cols.length}|${scalars.length}`;
    let loop = f64Loops.get(key);
    if (loop === undefined) {
      // The source holds only operator symbols and generated names: no user text.
      const decl = [...cols.map((_, k) => `const c${k} = cols[${k}];`), ...scalars.map((_, k) => `const s${k} = s[${k}];`)].join(' ');
      const all = shape.replaceAll('@', 'i');
      const some = shape.replaceAll('@', 'j');
      loop = compileLoop(
        ['cols', 's', 'out', 'sel', 'm'],
        `"use strict"; ${decl} if (sel === null) { for (let i = 0; i < m; i++) out[i] = ${all}; } else { for (let i = 0; i < m; i++) { const j = sel[i]; out[i] = ${some}; } }`,
      ) as F64Loop | null;
      f64Loops.set(key, loop);
    }
    if (loop) plan = { cols, scalars, loop };
  }
  f64Plans.set(b, plan);
  return plan;
}

// A predicate comparing float64 trees (`x > 0.5`, `x * 2 < y`, `x > 0.2 and not(x > y)`) compiles to
// one loop that writes the selection directly: no bitmap, no separate popcount and selection pass.
// `+(a > b)` is the comparison compare-loops.ts packs into bits (IEEE 754: NaN compares false, except
// !==).
const CMP_OPS: Partial<Record<string, string>> = { eq: '===', neq: '!==', lt: '<', le: '<=', gt: '>', ge: '>=' };
type SelLoop = (cols: readonly Float64Array[], s: readonly number[], sel: Int32Array, n: number) => number;
interface SelPlan {
  readonly cols: readonly Bound[];
  readonly scalars: readonly number[];
  readonly loop: SelLoop;
}
const selLoops = new Map<string, SelLoop | null>();
const selPlans = new WeakMap<Bound, SelPlan | null>();

/**
 * A predicate as a 0/1 expression: comparisons of float64 trees, combined by and / or / not. Only
 * run when no column it reads has nulls, where SQL's three-valued logic is plain boolean logic.
 */
function predShape(b: Bound, cols: Bound[], scalars: number[]): string | null {
  const node = b.node;
  if (b.literal || node.op !== 'call') return null;
  if (node.fn === 'not' && b.args.length === 1) {
    const inner = predShape(b.args[0]!, cols, scalars);
    return inner === null ? null : `(${inner} ^ 1)`;
  }
  if ((node.fn === 'and' || node.fn === 'or') && b.args.length === 2) {
    const l = predShape(b.args[0]!, cols, scalars);
    const r = l === null ? null : predShape(b.args[1]!, cols, scalars);
    return r === null ? null : `(${l} ${node.fn === 'and' ? '&' : '|'} ${r})`;
  }
  const sym = CMP_OPS[node.fn];
  if (!sym || b.args.length !== 2) return null;
  if (!b.args.every((a, i) => a.field.type.kind === 'float64' && (!b.coerce![i] || b.coerce![i]!.kind === 'float64'))) return null;
  const l = f64Shape(b.args[0]!, cols, scalars);
  const r = l === null ? null : f64Shape(b.args[1]!, cols, scalars);
  return r === null ? null : `+(${l} ${sym} ${r})`;
}

function selPlan(b: Bound): SelPlan | null {
  let plan = selPlans.get(b);
  if (plan !== undefined) return plan;
  plan = null;
  const cols: Bound[] = [];
  const scalars: number[] = [];
  let shape = predShape(b, cols, scalars);
  shape = shape !== null && cols.length > 0 ? shape.replaceAll('@', 'i') : null;
  if (shape !== null) {
    const key = `${shape}|${cols.length}|${scalars.length}`;
    let loop = selLoops.get(key);
    if (loop === undefined) {
      const decl = [...cols.map((_, k) => `const c${k} = cols[${k}];`), ...scalars.map((_, k) => `const s${k} = s[${k}];`)].join(' ');
      // Branch-free: every row's index is written, and the cursor moves on when the row is kept.
      loop = compileLoop(
        ['cols', 's', 'sel', 'n'],
        `"use strict"; ${decl} let c = 0; for (let i = 0; i < n; i++) { sel[c] = i; c += ${shape}; } return c;`,
      ) as SelLoop | null;
      selLoops.set(key, loop);
    }
    if (loop) plan = { cols, scalars, loop };
  }
  selPlans.set(b, plan);
  return plan;
}

/** The rows a compiled predicate keeps, written into `buf` (n slots or more); null when a column has nulls. */
function runSel(plan: SelPlan, batch: arrow.RecordBatch, buf: Int32Array): Int32Array | null {
  const arrays: Float64Array[] = [];
  for (const c of plan.cols) {
    const d = conform(columnData(batch, (c.node as { name: string }).name), c.field.type);
    if (!(d.values instanceof Float64Array) || d.nullCount !== 0) return null;
    arrays.push(d.values);
  }
  return buf.subarray(0, plan.loop(arrays, plan.scalars, buf, batch.numRows));
}

/**
 * Runs a compiled plan over the batch's rows, or over the rows of `sel` (then only when its columns
 * have no nulls; null is returned otherwise, and the caller takes the general path).
 */
function runF64(plan: F64Plan, batch: arrow.RecordBatch, sel: Int32Array | null): arrow.Data | null {
  const datas: arrow.Data[] = [];
  const arrays: Float64Array[] = [];
  for (const c of plan.cols) {
    const d = conform(columnData(batch, (c.node as { name: string }).name), c.field.type);
    if (!(d.values instanceof Float64Array)) return null;
    if (sel !== null && d.nullCount !== 0) return null;
    datas.push(d);
    arrays.push(d.values);
  }
  const m = sel === null ? batch.numRows : sel.length;
  const out = new Float64Array(m);
  plan.loop(arrays, plan.scalars, out, sel, m);
  const d = mkData(new arrow.Float64(), m, sel === null ? andValidity(datas, m) : null, out);
  // A fresh buffer, as arithKernel's: a worker may move it (owned.ts).
  return m > 1 ? ownData(d) : d;
}

function evaluateBound(b: Bound, batch: arrow.RecordBatch): arrow.Data {
  const n = batch.numRows;
  const plan = f64Plan(b);
  const fused = plan && evalTuning.fusedArithmetic ? runF64(plan, batch, null) : null;
  if (fused) return retype(fused, b.field.type.toArrow());
  let d = run(b, batch, n).data;
  if (d.length !== n) d = repeatRow(d, 0, n); // a scalar expression: broadcast once, at the end
  return retype(d, b.field.type.toArrow());
}

/**
 * Evaluates an expression over a batch: batch.numRows rows, arrow type exactly
 * inferField(node, schema).type.toArrow(). `schema` defaults to the batch's own.
 */
export function evaluate(node: ExprNode, batch: arrow.RecordBatch, schema?: Schema, ctx?: EvalContext): arrow.Data {
  const s = schema ?? Schema.fromArrow(batch.schema);
  return evaluateBound(bind(node, s, ctx), batch);
}

function makeBatch(schema: arrow.Schema, children: arrow.Data[], n: number): arrow.RecordBatch {
  const data = arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, children, nullCount: 0 });
  return new arrow.RecordBatch(schema, data);
}

/** Rows where the predicate is true (false and null rows are dropped). Returns `batch` itself when all pass. */
export function filterBatch(batch: arrow.RecordBatch, predicate: ExprNode): arrow.RecordBatch {
  const schema = Schema.fromArrow(batch.schema);
  const b = bind(predicate, schema, undefined);
  const k = b.field.type.kind;
  if (k !== 'bool' && k !== 'null') {
    throw new ExpressionTypeError(`filter predicate must be bool, got ${exprToString(predicate)} (${b.field.type})`);
  }
  const n = batch.numRows;
  const mask = evaluateBound(b, batch);
  const bits = trueBits(mask, n);
  const kept = popcount(bits, 0, n);
  if (kept === n) return batch;
  // One selection vector shared by every column; its indices need no range check.
  const sel = selectionFromBits(bits, n);
  return makeBatch(
    batch.schema,
    batch.data.children.map((c) => takeSelected(c, sel)),
    kept,
  );
}

/**
 * A filter and the projection after it as one operator (a scan's pushed filter or a filter op, then a
 * project op without UDFs). Bound once per input schema rather than per batch. After the filter it
 * gathers only the columns the projection reads, and float64 arithmetic (`x * 2 + 1`) reads its
 * columns through the selection: `x` is never gathered, `x * 2` never materialized. Results equal
 * projectBatch(filterBatch(batch, predicate), exprs, outSchema) exactly.
 */
export class FilterProject {
  private key = '';
  private pred: Bound | null = null;
  private outs: Bound[] = [];
  private readonly outArrow: arrow.Schema | null;
  /** The selection's buffer, reused by every batch: the selection never leaves apply(). */
  private selBuf = new Int32Array(0);

  /** Without `project`, a plain filter: every column is kept, and a batch whose rows all pass is returned as is. */
  constructor(
    private readonly predicate: ExprNode,
    private readonly project: { readonly exprs: readonly ExprNode[]; readonly schema: Schema } | null,
  ) {
    if (project && project.exprs.length !== project.schema.fields.length) {
      throw new Error(`FilterProject: ${project.exprs.length} expressions for ${project.schema.fields.length} output fields`);
    }
    this.outArrow = project ? project.schema.toArrow() : null;
  }

  private bindFor(batch: arrow.RecordBatch): void {
    // Batches of one stream mostly carry equal (not identical) schemas: compare names and types.
    const key = batch.schema.fields.map((f) => `${f.name}\u0000${String(f.type)}\u0000${f.nullable}`).join('\u0001');
    if (key === this.key && this.pred) return;
    const schema = Schema.fromArrow(batch.schema);
    const pred = bind(this.predicate, schema, undefined);
    const k = pred.field.type.kind;
    if (k !== 'bool' && k !== 'null') {
      throw new ExpressionTypeError(`filter predicate must be bool, got ${exprToString(this.predicate)} (${pred.field.type})`);
    }
    this.outs = this.project ? this.project.exprs.map((e) => bind(e, schema, undefined)) : [];
    this.pred = pred;
    this.key = key;
  }

  private projectAll(batch: arrow.RecordBatch, n: number): arrow.RecordBatch {
    if (!this.project) return batch;
    const fields = this.project.schema.fields;
    const children = this.outs.map((b, i) => conform(evaluateBound(b, batch), fields[i]!.type));
    return makeBatch(this.outArrow!, children, n);
  }

  apply(batch: arrow.RecordBatch): arrow.RecordBatch {
    this.bindFor(batch);
    const n = batch.numRows;
    if (this.selBuf.length < n + 8) this.selBuf = new Int32Array(n + 8);
    const buf = evalTuning.reuseSelection ? this.selBuf : new Int32Array(n + 8);
    const plan = evalTuning.fusedArithmetic ? selPlan(this.pred!) : null;
    let sel = plan ? runSel(plan, batch, buf) : null;
    if (!sel) {
      const bits = trueBits(evaluateBound(this.pred!, batch), n);
      sel = selectionFromBits(bits, n, buf);
    }
    const kept = sel.length;
    if (kept === n) return this.projectAll(batch, n);
    if (!this.project) {
      return makeBatch(
        batch.schema,
        batch.data.children.map((c) => takeSelected(c, sel)),
        kept,
      );
    }
    const fields = this.project.schema.fields;
    // Compiled float64 trees read through the selection; the rest are evaluated over a batch of
    // the gathered columns they read (built once, only when some output needs it).
    const direct = this.outs.map((b) => {
      const plan = evalTuning.fusedArithmetic ? f64Plan(b) : null;
      return plan ? runF64(plan, batch, sel) : null;
    });
    let filtered: arrow.RecordBatch | null = null;
    const children = this.outs.map((b, i) => {
      let d = direct[i];
      if (d) d = retype(d, b.field.type.toArrow());
      else {
        filtered ??= gatherColumns(
          batch,
          this.outs.filter((_, j) => !direct[j]),
          sel,
        );
        d = evaluateBound(b, filtered);
      }
      return conform(d, fields[i]!.type);
    });
    return makeBatch(this.outArrow!, children, kept);
  }
}

/** Names of the columns a bound tree reads. */
function readColumns(b: Bound, into: Set<string>): Set<string> {
  if (b.node.op === 'col') into.add(b.node.name);
  else if (!b.literal) for (const a of b.args) readColumns(a, into);
  return into;
}

/** A batch of the columns `outs` read (in the input's order), taken at the selection's rows. */
function gatherColumns(batch: arrow.RecordBatch, outs: readonly Bound[], sel: Int32Array): arrow.RecordBatch {
  const names = new Set<string>();
  for (const b of outs) readColumns(b, names);
  const fields: arrow.Field[] = [];
  const children: arrow.Data[] = [];
  batch.schema.fields.forEach((f, i) => {
    if (!names.has(f.name)) return;
    fields.push(f);
    children.push(takeSelected(batch.data.children[i]!, sel));
  });
  return makeBatch(new arrow.Schema(fields, batch.schema.metadata), children, sel.length);
}

/** Rows at `indices` (in that order; repeats allowed; a negative index gives a row of nulls). */
export function takeBatch(batch: arrow.RecordBatch, indices: Int32Array): arrow.RecordBatch {
  return makeBatch(
    batch.schema,
    batch.data.children.map((c) => take(c, indices)),
    indices.length,
  );
}

/** Lengths of one exploded column per row: null and empty lists count 0. */
function listLengths(d: arrow.Data): Int32Array {
  const n = d.length;
  const out = new Int32Array(n);
  const noNulls = d.nullCount === 0;
  const bm = d.nullBitmap;
  if (d.typeId === arrow.Type.FixedSizeList) {
    out.fill(fixedListSize(d.type));
  } else {
    const o = d.valueOffsets as Int32Array;
    for (let i = 0; i < n; i++) out[i] = o[i + 1]! - o[i]!;
  }
  if (!noNulls) {
    for (let i = 0; i < n; i++) {
      const p = d.offset + i;
      if (!(bm![p >> 3]! & (1 << (p & 7)))) out[i] = 0;
    }
  }
  return out;
}

/**
 * Daft-style explode: every list element becomes a row and the other columns repeat; a null or
 * empty list gives one row with null. Columns exploded together must have equal lengths per row.
 */
export function explodeBatch(batch: arrow.RecordBatch, columns: readonly string[]): arrow.RecordBatch {
  const schema = Schema.fromArrow(batch.schema);
  const n = batch.numRows;
  if (columns.length === 0) return batch;
  const targets = columns.map((name) => {
    const f = schema.field(name);
    if (f.type.kind !== 'list' && f.type.kind !== 'fixedSizeList') {
      throw new ExpressionTypeError(`cannot explode col(${name}) (${f.type}): explode needs a list column`);
    }
    return { name, data: columnData(batch, name) };
  });
  const lengths = targets.map((t) => listLengths(t.data));
  const first = lengths[0]!;
  for (let c = 1; c < lengths.length; c++) {
    const other = lengths[c]!;
    for (let i = 0; i < n; i++) {
      if (first[i] !== other[i]) {
        throw new Error(
          `explode: columns '${targets[0]!.name}' (${first[i]} elements) and '${targets[c]!.name}' (${other[i]} elements) have different list lengths at row ${i}`,
        );
      }
    }
  }
  let total = 0;
  for (let i = 0; i < n; i++) total += first[i]! > 0 ? first[i]! : 1;
  const rowIdx = new Int32Array(total);
  for (let i = 0, p = 0; i < n; i++) {
    const m = first[i]! > 0 ? first[i]! : 1;
    for (let k = 0; k < m; k++) rowIdx[p++] = i;
  }
  const exploded = new Map<string, arrow.Data>();
  for (const t of targets) {
    const d = t.data;
    const childIdx = new Int32Array(total);
    const fixed = d.typeId === arrow.Type.FixedSizeList;
    const size = fixed ? fixedListSize(d.type) : 0;
    const o = d.valueOffsets as Int32Array;
    for (let i = 0, p = 0; i < n; i++) {
      const m = first[i]!;
      if (m === 0) {
        childIdx[p++] = -1;
        continue;
      }
      const s = fixed ? i * size : o[i]!;
      for (let k = 0; k < m; k++) childIdx[p++] = s + k;
    }
    exploded.set(t.name, take(d.children[0]!, childIdx));
  }
  const identity = total === n; // every row had exactly one element: other columns are unchanged
  const fields = batch.schema.fields.map((f) => {
    const e = exploded.get(f.name);
    return e ? new arrow.Field(f.name, e.type, true) : f;
  });
  const children = batch.schema.fields.map((f, j) => exploded.get(f.name) ?? (identity ? batch.data.children[j]! : take(batch.data.children[j]!, rowIdx)));
  return makeBatch(new arrow.Schema(fields, batch.schema.metadata), children, total);
}

/**
 * Evaluates each expression into a batch with `outSchema` (one field per expression, in order).
 * A bare column reference reuses the column's Data without copying.
 */
export function projectBatch(batch: arrow.RecordBatch, exprs: readonly ExprNode[], outSchema: Schema): arrow.RecordBatch {
  if (exprs.length !== outSchema.fields.length) {
    throw new Error(`projectBatch: ${exprs.length} expressions for ${outSchema.fields.length} output fields`);
  }
  const schema = Schema.fromArrow(batch.schema);
  const children = exprs.map((e, i) => conform(evaluate(e, batch, schema), outSchema.fields[i]!.type));
  return makeBatch(outSchema.toArrow(), children, batch.numRows);
}

/** One batch holding the rows of all `batches` in order, with `schema` (columns matched by name). */
export function concatBatches(batches: readonly arrow.RecordBatch[], schema: Schema): arrow.RecordBatch {
  const n = batches.reduce((s, b) => s + b.numRows, 0);
  const children = schema.fields.map((f) => {
    const type = f.type.toArrow();
    return concatData(
      batches.map((b) => conform(columnData(b, f.name), f.type)),
      type,
    );
  });
  return makeBatch(schema.toArrow(), children, n);
}

// Rule-based logical optimizer. Rules, in order: project fusion, filter fusion and predicate
// pushdown (through projections and explodes, into the scan), limit pushdown, projection pushdown.
// Every rule keeps node schemas consistent, so the optimized plan is as printable/shippable as the input.
import { Field, Schema, type SchemaJSON } from './datatypes.ts';
import { columnsOf, containsUdf, exprName, mapExpr, type ExprNode } from './expressions.ts';
import type { ExplodeNode, FilterNode, PlanNode, ProjectNode } from './plan.ts';
import { callsGenerator } from './udf.ts';
import { planSchema } from './plan.ts';
import { optimizeRelationalInputs } from './relational/optimize.ts';

export function optimize(plan: PlanNode): PlanNode {
  // Relational nodes end the linear chain: their inputs are optimized on their own.
  let p = optimizeRelationalInputs(plan, optimize);
  p = fuseProjects(p);
  p = pushFilters(p);
  p = pushLimits(p);
  p = pruneColumns(p, null);
  return dropIdentityProjects(p);
}

/** A projection that passes every input column through unchanged, in order, does nothing. */
function isIdentity(node: PlanNode, input: PlanNode): boolean {
  if (node.type !== 'project') return false;
  const names = planSchema(input).names;
  return node.exprs.length === names.length && node.exprs.every((e, i) => e.op === 'col' && e.name === names[i]);
}

function dropIdentityProjects(node: PlanNode): PlanNode {
  if (!('input' in node)) return node;
  const input = dropIdentityProjects(node.input);
  return isIdentity(node, input) ? input : rebuild(node, input);
}

// ---------- helpers ----------

function and(a: ExprNode, b: ExprNode): ExprNode {
  return { op: 'call', fn: 'and', args: [a, b] };
}

/** Splits `a & b & c` into conjuncts. */
export function conjuncts(e: ExprNode): ExprNode[] {
  if (e.op === 'call' && e.fn === 'and') return e.args.flatMap(conjuncts);
  return [e];
}

function conjoin(parts: ExprNode[]): ExprNode | null {
  return parts.length ? parts.reduce((a, b) => and(a, b)) : null;
}

function stripAlias(e: ExprNode): ExprNode {
  return e.op === 'alias' ? stripAlias(e.expr) : e;
}

/** Output name -> defining expression (without alias) for a projection. */
function definitions(p: ProjectNode): Map<string, ExprNode> {
  const m = new Map<string, ExprNode>();
  for (const e of p.exprs) m.set(exprName(e), stripAlias(e));
  return m;
}

/** Replaces column references by their definitions. */
function substitute(e: ExprNode, defs: Map<string, ExprNode>): ExprNode {
  return mapExpr(e, (n) => (n.op === 'col' && defs.has(n.name) ? defs.get(n.name)! : n));
}

function isSimple(e: ExprNode): boolean {
  const s = stripAlias(e);
  return s.op === 'col' || s.op === 'lit';
}

function countRefs(exprs: readonly ExprNode[]): Map<string, number> {
  const counts = new Map<string, number>();
  const visit = (e: ExprNode): void => {
    mapExpr(e, (n) => {
      if (n.op === 'col') counts.set(n.name, (counts.get(n.name) ?? 0) + 1);
      return n;
    });
  };
  exprs.forEach(visit);
  return counts;
}

function rebuild(node: PlanNode, input: PlanNode): PlanNode {
  // Nodes whose schema passes through from the input must follow a pruned input.
  switch (node.type) {
    case 'filter':
    case 'limit':
    case 'intoPartitions':
      return { ...node, input, schema: input.schema };
    case 'explode':
      return { ...node, input, schema: explodeSchema(planSchema(input), node.columns).toJSON() };
    case 'project':
      return { ...node, input };
    default:
      return node;
  }
}

export function explodeSchema(input: Schema, columns: readonly string[]): Schema {
  return new Schema(input.fields.map((f) => (columns.includes(f.name) ? new Field(f.name, f.type.child(), true) : f)));
}

// ---------- project fusion ----------

/**
 * project(project(x)) -> project(x) by substituting inner definitions, when that duplicates no work:
 * each non-trivial inner expression is referenced at most once, and none calls a UDF.
 */
function fuseProjects(node: PlanNode): PlanNode {
  if (!('input' in node)) return node;
  const input = fuseProjects(node.input);
  if (isIdentity(node, input)) return input;
  if (node.type === 'project' && input.type === 'project') {
    const defs = definitions(input);
    const refs = countRefs(node.exprs);
    const ok = !input.exprs.some(containsUdf) && input.exprs.every((e) => isSimple(e) || (refs.get(exprName(e)) ?? 0) <= 1);
    if (ok) {
      const exprs = node.exprs.map((e) => {
        const name = exprName(e);
        const s = substitute(e, defs);
        return exprName(s) === name ? s : { op: 'alias' as const, expr: stripAlias(s), name };
      });
      return fuseProjects({ ...node, input: input.input, exprs });
    }
  }
  return { ...node, input } as PlanNode;
}

// ---------- predicate pushdown ----------

function pushFilters(node: PlanNode): PlanNode {
  if (!('input' in node)) return node;
  const input = pushFilters(node.input);
  if (node.type !== 'filter') return rebuild(node, input);
  return pushFilter(node.predicate, input, node);
}

/** Places `pred` as deep as it can go above/into `input`. */
function pushFilter(pred: ExprNode, input: PlanNode, original: FilterNode): PlanNode {
  const makeFilter = (p: ExprNode, below: PlanNode): PlanNode => ({ ...original, input: below, predicate: p, schema: below.schema });
  switch (input.type) {
    case 'filter':
      // A UDF predicate must only see rows the earlier filter kept (and be called once per row):
      // fusing would evaluate both sides on every row.
      if (containsUdf(pred) || containsUdf(input.predicate)) return makeFilter(pred, input);
      // Fuse: both conditions into one node, then keep pushing.
      return pushFilter(and(input.predicate, pred), input.input, original);
    case 'project': {
      if (containsUdf(pred)) return makeFilter(pred, input);
      const defs = definitions(input);
      const pushable: ExprNode[] = [];
      const kept: ExprNode[] = [];
      for (const c of conjuncts(pred)) {
        const cols = [...columnsOf(c)];
        if (cols.every((n) => defs.has(n) && !containsUdf(defs.get(n)!))) pushable.push(substitute(c, defs));
        else kept.push(c);
      }
      if (!pushable.length) return makeFilter(pred, input);
      const below = pushFilter(conjoin(pushable)!, input.input, original);
      const proj: ProjectNode = { ...input, input: below };
      const rest = conjoin(kept);
      return rest ? makeFilter(rest, proj) : proj;
    }
    case 'explode': {
      const pushable: ExprNode[] = [];
      const kept: ExprNode[] = [];
      for (const c of conjuncts(pred)) {
        if ([...columnsOf(c)].some((n) => input.columns.includes(n)) || containsUdf(c)) kept.push(c);
        else pushable.push(c);
      }
      if (!pushable.length) return makeFilter(pred, input);
      const below = pushFilter(conjoin(pushable)!, input.input, original);
      const ex: ExplodeNode = { ...input, input: below };
      const rest = conjoin(kept);
      return rest ? makeFilter(rest, ex) : ex;
    }
    case 'intoPartitions':
      // Partitioning does not change which rows pass: filter below it (and on into the scan).
      return { ...input, input: pushFilter(pred, input.input, original) };
    case 'scan': {
      if (containsUdf(pred) || input.pushdowns.limit !== null) return makeFilter(pred, input);
      const f = input.pushdowns.filter ? and(input.pushdowns.filter, pred) : pred;
      return { ...input, pushdowns: { ...input.pushdowns, filter: f } };
    }
    default:
      return makeFilter(pred, input);
  }
}

// ---------- limit pushdown ----------

function pushLimits(node: PlanNode): PlanNode {
  if (!('input' in node)) return node;
  const input = pushLimits(node.input);
  if (node.type !== 'limit') return rebuild(node, input);
  const n = node.n;
  switch (input.type) {
    case 'limit':
      return pushLimits({ ...node, n: Math.min(n, input.n), input: input.input });
    case 'project':
      // Projections are one row in, one row out: limit first, compute less.
      if (!input.exprs.some(containsUdf)) return { ...input, input: pushLimits({ ...node, input: input.input }) };
      return { ...node, input };
    case 'scan': {
      // Keep the global limit above: each partition stops at n, the merge stops at n overall.
      const limit = input.pushdowns.limit === null ? n : Math.min(n, input.pushdowns.limit);
      return { ...node, input: { ...input, pushdowns: { ...input.pushdowns, limit } } };
    }
    default:
      return { ...node, input };
  }
}

// ---------- projection pushdown ----------

/** `required`: the columns the parent reads from this node (null = all). */
function pruneColumns(node: PlanNode, required: Set<string> | null): PlanNode {
  switch (node.type) {
    case 'project': {
      // A generator UDF decides how many rows there are: it stays even when nobody reads its column.
      const exprs = required ? node.exprs.filter((e) => required.has(exprName(e)) || callsGenerator(e)) : node.exprs;
      const kept = exprs.length ? exprs : node.exprs.slice(0, 1); // count() still needs rows
      const need = new Set<string>();
      for (const e of kept) columnsOf(e, need);
      const input = pruneColumns(node.input, need);
      const fields = planSchema(node).fields.filter((f) => kept.some((e) => exprName(e) === f.name));
      return { ...node, exprs: kept, input, schema: new Schema(fields).toJSON() };
    }
    case 'filter': {
      const need = required ? new Set([...required, ...columnsOf(node.predicate)]) : null;
      return rebuild(node, pruneColumns(node.input, need));
    }
    case 'limit':
    case 'intoPartitions':
      return rebuild(node, pruneColumns(node.input, required));
    case 'explode': {
      const need = required ? new Set([...required, ...node.columns]) : null;
      return rebuild(node, pruneColumns(node.input, need));
    }
    case 'scan': {
      if (!required) return node;
      const fileSchema = Schema.fromJSON(node.fileSchema);
      const need = new Set(required);
      if (node.pushdowns.filter) columnsOf(node.pushdowns.filter, need);
      const prev = node.pushdowns.columns;
      let cols = fileSchema.names.filter((n) => need.has(n) && (!prev || prev.includes(n)));
      if (!cols.length) cols = (prev ?? fileSchema.names).slice(0, 1); // row counts need one column
      const schema: SchemaJSON = fileSchema.select(cols).toJSON();
      return { ...node, pushdowns: { ...node.pushdowns, columns: cols }, schema };
    }
    case 'in_memory':
    case 'aggregate':
    case 'sort':
    case 'join':
    case 'concat':
    case 'repartition':
      return node;
  }
}

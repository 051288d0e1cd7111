// Resuming a serverless run (state machine input `{ runId, resume: true }`, the runner's resumeRun):
// the stored plan is reused as it is — its partitions, stages and every finished shard — and only
// partitions without a completion marker run again. A plan that no longer matches the pipeline
// (a UDF gone, added or returning another type; another output) is refused, naming what changed,
// since the finished shards were computed by the old one.
import type { DataTypeJSON } from '../datatypes.ts';
import type { ObjectStore } from '../io/store/index.ts';
import { listUdfs } from '../udf.ts';
import { importPipeline, keys, loadPlan, planPipeline, preparePlan, type PlanSummary, type PlanUdf, type RunPlan } from './run.ts';

/** What a resume compares: the plan's UDFs (by stage, with return types) and its output. */
export interface PlanExpectation {
  udfs: PlanUdf[];
  output: string | null;
}

export function expectationOf(plan: Pick<RunPlan, 'udfs' | 'output'>): PlanExpectation {
  return { udfs: plan.udfs ?? [], output: plan.output?.uri ?? null };
}

const typeText = (t: DataTypeJSON): string => JSON.stringify(t);

/** Every difference between the stored plan and what the pipeline is now, in words; empty: it matches. */
export function planDifferences(stored: PlanExpectation, now: PlanExpectation): string[] {
  const out: string[] = [];
  const before = new Map(stored.udfs.map((u) => [u.name, u]));
  const after = new Map(now.udfs.map((u) => [u.name, u]));
  for (const [name, u] of before) {
    const n = after.get(name);
    if (!n) out.push(`UDF '${name}' (stage ${u.stage}) is no longer in the pipeline`);
    else if (typeText(n.returnType) !== typeText(u.returnType))
      out.push(`UDF '${name}' now returns ${typeText(n.returnType)}, the plan has ${typeText(u.returnType)}`);
    else if (n.stage !== u.stage) out.push(`UDF '${name}' moved from stage ${u.stage} to stage ${n.stage}`);
  }
  for (const [name, u] of after) if (!before.has(name)) out.push(`UDF '${name}' (stage ${u.stage}) was added to the pipeline`);
  if (stored.output !== now.output) out.push(`the output changed from ${stored.output ?? '(the work bucket)'} to ${now.output ?? '(the work bucket)'}`);
  return out;
}

/** The plan's UDFs as the registry of this process has them now (the pipeline modules imported). */
function registeredExpectation(plan: RunPlan): PlanExpectation {
  const registry = new Map(listUdfs().map((d) => [d.name, d]));
  const udfs: PlanUdf[] = [];
  for (const u of plan.udfs ?? []) {
    const d = registry.get(u.name);
    if (d) udfs.push({ name: u.name, stage: u.stage, returnType: d.returnDtype.json });
  }
  return { udfs, output: plan.output?.uri ?? null };
}

export class PlanMismatchError extends Error {
  constructor(
    readonly runId: string,
    readonly differences: string[],
  ) {
    super(
      `run ${runId} cannot be resumed: its stored plan no longer matches the pipeline (${differences.join('; ')}); its finished partitions were computed by the old pipeline: start a new run`,
    );
    this.name = 'PlanMismatchError';
  }
}

/**
 * The Plan step of a resume: the stored plan, checked against the pipeline as it is now (the
 * modules this process imports; `expect`, when the caller sent what its pipeline plans; `output`,
 * when the caller named one), then its partition lists rewritten to what is left to run.
 */
export async function prepareResume(
  store: ObjectStore,
  runId: string,
  workBucket: string,
  opts: { expect?: PlanExpectation; output?: string | null; importModules?: () => Promise<void> } = {},
): Promise<PlanSummary> {
  if (!(await store.exists(keys.plan(runId)))) throw new Error(`run ${runId} cannot be resumed: it has no plan at ${store.uri(keys.plan(runId))}`);
  const plan = await loadPlan(store, runId);
  await (opts.importModules ? opts.importModules() : importPipeline(planPipeline(plan)));
  const stored = expectationOf(plan);
  const diffs = planDifferences(stored, registeredExpectation(plan));
  if (opts.expect) for (const d of planDifferences(stored, opts.expect)) if (!diffs.includes(d)) diffs.push(d);
  if (opts.output !== undefined && (opts.output ?? null) !== stored.output) {
    const d = `the output changed from ${stored.output ?? '(the work bucket)'} to ${opts.output ?? '(the work bucket)'}`;
    if (!diffs.includes(d)) diffs.push(d);
  }
  if (diffs.length) throw new PlanMismatchError(runId, diffs);
  // The last attempt's failure record no longer describes the run once it runs again.
  await store.delete([keys.failure(runId)]).catch(() => undefined);
  return preparePlan(store, plan, workBucket, { stored: true });
}

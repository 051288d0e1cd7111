// Definition walking: the rewrite of what aws-local-stepfunctions cannot run, and the classification
// of every Task state into the local handler kind that runs it.
import {
  ECS_RUN_TASK_SYNC,
  LAMBDA_INVOKE,
  S3_GET_OBJECT,
  type AslDefinition,
  type AslResourceConfig,
  type AslState,
  type AslStateMachine,
  type JsonValue,
} from '../../src/aws/state-machine.ts';
import { clone } from './json.ts';
import { rewriteToleratedFailures, TOLERANCE_RESOURCE } from './tolerance.ts';

/** Resources of the harness Tasks that batch a Map's items and hand a child its batch (not AWS resources). */
export const ITEM_BATCHER_RESOURCE = 'arn:aws:states:::fanout-harness:itemBatcher';
export const ITEM_BATCH_RESOURCE = 'arn:aws:states:::fanout-harness:itemBatch';
/** Where the batcher puts `{ id, indices }` of the batches it keeps, in the Map's input. */
const NORMALIZED_BATCHES_PATH = '$.__fanoutBatches';

/** Where a normalized ItemReader puts the items it read, in the Map's input. */
export const NORMALIZED_ITEMS_PATH = '$.__fanoutItems';

export interface TaskInfo {
  name: string;
  resource: string;
  kind: 'lambda-arn' | 'lambda-invoke' | 'ecs-sync' | 'items-reader' | 'tolerance' | 'items-batcher' | 'item-batch';
  timeoutSeconds: number;
  /** For items-reader: the ItemReader's ReaderConfig. */
  readerConfig?: AslResourceConfig['ReaderConfig'];
  /** History `resourceType` / `resource`. */
  resourceType: string;
  resourceName: string;
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
          if (s.ItemBatcher && proc) {
            // The interpreter has no ItemBatcher. A harness Task applies the ItemSelector to each
            // item and groups them as AWS does ({ Items, BatchInput }), keeping the batches outside
            // the state (as AWS keeps a Distributed Map's items): the Map iterates batch indices, and
            // each child starts with a harness Task that turns its index into its batch.
            const batcher = `${name}.ItemBatcher`;
            const fetch = `${name}.Batch`;
            for (const n of [batcher, fetch]) if (n in sm.States || n in proc.States) throw new Error(`state ${n} already exists`);
            retarget(sm, name, batcher);
            sm.States[batcher] = {
              Type: 'Task',
              Comment: `harness: ItemBatcher of ${name}`,
              Resource: ITEM_BATCHER_RESOURCE,
              // JSON strings, so the interpreter leaves their paths for the batcher to resolve per item.
              Parameters: {
                'input.$': '$',
                'items.$': s.ItemsPath ?? '$',
                __batcher: JSON.stringify(s.ItemBatcher),
                __selector: JSON.stringify(s.ItemSelector ?? null),
              },
              ResultPath: NORMALIZED_BATCHES_PATH,
              TimeoutSeconds: 60,
              ...(s.Retry ? { Retry: clone(s.Retry) } : {}),
              ...(s.Catch ? { Catch: clone(s.Catch) } : {}),
              Next: name,
            };
            delete s.ItemBatcher;
            s.ItemsPath = `${NORMALIZED_BATCHES_PATH}.indices`;
            s.ItemSelector = { 'id.$': `${NORMALIZED_BATCHES_PATH}.id`, 'index.$': '$$.Map.Item.Value' };
            proc.States[fetch] = {
              Type: 'Task',
              Comment: `harness: one batch of ${name}`,
              Resource: ITEM_BATCH_RESOURCE,
              Parameters: { 'id.$': '$.id', 'index.$': '$.index' },
              TimeoutSeconds: 60,
              Next: proc.StartAt,
            };
            proc.StartAt = fetch;
            notes.push(`${name}: ItemBatcher run by the Task states ${batcher} and ${fetch}`);
          }
          const tolerance = rewriteToleratedFailures(sm, name);
          if (tolerance) notes.push(tolerance);
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

/** Every state by name, nested Map and Parallel states included. */
export function indexStates(def: AslStateMachine): Map<string, AslState> {
  const states = new Map<string, AslState>();
  (function index(sm: AslStateMachine) {
    for (const [n, s] of Object.entries(sm.States)) {
      states.set(n, s);
      for (const sub of subMachines(s)) index(sub);
    }
  })(def);
  return states;
}

export function collectTasks(def: AslStateMachine): Map<string, TaskInfo> {
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
  if (resource === TOLERANCE_RESOURCE) return { ...base, kind: 'tolerance', resourceType: 'harness', resourceName: 'toleratedFailures' };
  if (resource === S3_GET_OBJECT && s.Comment?.startsWith('harness: ItemReader'))
    return { ...base, kind: 'items-reader', resourceType: 's3', resourceName: 'getObject' };
  if (resource === ITEM_BATCHER_RESOURCE && s.Comment?.startsWith('harness: ItemBatcher'))
    return { ...base, kind: 'items-batcher', resourceType: 'states', resourceName: 'itemBatcher' };
  if (resource === ITEM_BATCH_RESOURCE && s.Comment?.startsWith('harness: one batch'))
    return { ...base, kind: 'item-batch', resourceType: 'states', resourceName: 'itemBatch' };
  throw new Error(`state ${name}: Resource ${resource} is not supported by the local harness (Lambda ARNs, ${LAMBDA_INVOKE}, ${ECS_RUN_TASK_SYNC})`);
}

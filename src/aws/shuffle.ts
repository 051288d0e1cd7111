// Runs the serverless shuffle (plan in shuffle-plan.ts, data in shuffle-types.ts): the exchange
// sinks of map partitions and the inputs of the stages after them. The operators are the embedded
// runner's (HashAggregator, hashJoin, externalSort); only moving rows between stages is new here.
//
// Files, all under the run prefix (resume and the bucket's lifecycle rule see them as the run's):
//   runs/<id>/stage-<s>/shuffle/<map partition>/<bucket>.arrow   a map partition's rows of one bucket
//   runs/<id>/stage-<s>/sample/<map partition>.arrow             a sort's key sample
//   runs/<id>/stage-<s>/boundaries.arrow                         the sort's range boundaries
// A map partition writes its buckets, then its completion marker (which lists its non-empty
// buckets): a reducer reads only buckets of map partitions that have a marker, so a map partition
// that failed half-way never looks whole.
import * as arrow from 'apache-arrow';
import { mapLimit } from '../concurrency.ts';
import { DataType, Schema, type SchemaJSON } from '../datatypes.ts';
import { getJson, NotFoundError, type ObjectStore } from '../io/store/index.ts';
import { unaliasBatch } from '../ipc-alias.ts';
import { take } from '../kernels/take.ts';
import { bucketOrder } from '../kernels/buckets.ts';
import { concatData } from '../kernels/concat.ts';
import { HashAggregator, partialSchema } from '../aggregate/hash-aggregate.ts';
import { hashJoin } from '../join/hash-join.ts';
import { externalSort } from '../sort/external.ts';
import { compareRows, sortIndices } from '../sort/order.ts';
import { hashWords, KeyEncoder } from '../relational/keys.ts';
import { batchBytes, readSpill, slices, SpillDir } from '../relational/spill.ts';
import type { OpJSON, SourceJSON } from '../physical.ts';
import { ipcChunks, runPartition } from '../executor.ts';
import type { SortKey } from '../plan.ts';
import type { ExchangeSinkJSON, StageInputJSON, StageRef } from './shuffle-types.ts';

const pad = (n: number): string => String(n).padStart(5, '0');

/** Keys of the shuffle's files (the run id is checked by run.ts's keys before any of these is used). */
export const shuffleKeys = {
  bucket: (runId: string, stage: number, mapPartition: number, bucket: number) =>
    `runs/${runId}/stage-${stage}/shuffle/${pad(mapPartition)}/${pad(bucket)}.arrow`,
  sample: (runId: string, stage: number, mapPartition: number) => `runs/${runId}/stage-${stage}/sample/${pad(mapPartition)}.arrow`,
  boundaries: (runId: string, stage: number) => `runs/${runId}/stage-${stage}/boundaries.arrow`,
};

/** What the shuffle needs from the run (run.ts passes it; this module does not import run.ts). */
export interface ShuffleContext {
  store: ObjectStore;
  runId: string;
  /** Shard key of partition p of stage s. */
  shardKey(stage: number, partition: number): string;
  /** Completion marker key of partition p of stage s. */
  markerKey(stage: number, partition: number): string;
  batchSize: number;
  /** Memory an operator may hold before it spills (local Arrow IPC files). */
  budgetBytes: number;
  /** The run tolerates failed partitions (errors say that the tolerance cannot leave one out here). */
  tolerant?: boolean;
}

/**
 * A stage partition that needs every partition of an earlier stage (a reduce, a gather, a broadcast
 * build side, a sort's boundaries step) found one that did not complete. Never left out, even with
 * tolerated failures: without one partition's rows such a stage gives a wrong result, not a partial
 * one (the embedded runner fails the same plan). The name lets the failure record find it.
 */
export class IncompleteInputError extends Error {
  constructor(c: ShuffleContext, from: StageRef, partition: number, what: string, evidence: string) {
    const how = c.tolerant ? 'failed (a failure this run tolerates)' : 'did not complete';
    super(
      `run ${c.runId}: partition ${partition} of stage ${from.stage} ${how}: ${evidence}; ${what} needs every partition of stage ${from.stage} (leaving one out would give a wrong result, not a partial one), so this partition cannot run`,
    );
    this.name = 'IncompleteInputError';
  }
}

/** What a reading stage is, in an IncompleteInputError. */
const NEEDS = {
  reduce: "an exchange's reduce side",
  gather: 'a gather (a global limit below an operator)',
  build: "a broadcast join's build side",
  boundaries: "the sort's boundaries step",
} as const;

/** The marker fields a reducer reads: a map partition's non-empty buckets. */
interface MapMarker {
  buckets?: number[];
}

// ---------------------------------------------------------------------------------------------
// Hashing that every process agrees on: KeyEncoder's words for fixed-width keys (value bits, -0 and
// NaN canonical), and a hash of the bytes for strings (an encoder's string ids are per-process).

function fnv1a(v: Uint8Array, s: number, e: number): number {
  let h = 0x811c9dc5;
  for (let i = s; i < e; i++) h = Math.imul(h ^ v[i]!, 0x01000193);
  return h | 0;
}

function isValid(d: arrow.Data, i: number): boolean {
  if (d.typeId === arrow.Type.Null) return false;
  if (!d.nullCount) return true;
  const p = d.offset + i;
  return (d.nullBitmap![p >> 3]! & (1 << (p & 7))) !== 0;
}

/** Each row's bucket among n by its key columns: the same in every process for equal keys. */
export function hashBuckets(cols: readonly arrow.Data[], types: readonly DataType[], rows: number, n: number): Int32Array {
  const parts: { words: Int32Array; width: number }[] = cols.map((d, k) => {
    const t = types[k]!;
    if (t.kind === 'utf8' || t.kind === 'binary') {
      const words = new Int32Array(rows * 2);
      const o = d.valueOffsets as Int32Array;
      const v = d.values as Uint8Array;
      for (let i = 0; i < rows; i++) {
        if (isValid(d, i)) words[2 * i + 1] = fnv1a(v, o[i]!, o[i + 1]!);
        else words[2 * i] = 1;
      }
      return { words, width: 2 };
    }
    const enc = new KeyEncoder([t]);
    return { words: enc.encode([d], rows, true), width: enc.width };
  });
  const W = Math.max(
    1,
    parts.reduce((a, p) => a + p.width, 0),
  );
  const all = new Int32Array(rows * W);
  for (let i = 0; i < rows; i++) {
    let at = i * W;
    for (const p of parts) for (let j = 0; j < p.width; j++) all[at++] = p.words[i * p.width + j]!;
  }
  const out = new Int32Array(rows);
  // The embedded repartition's bucket formula over the same kind of words.
  for (let i = 0; i < rows; i++) out[i] = ((hashWords(all, i * W, W) >>> 16) * n) >>> 16;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Map side: exchange sinks.

function batchOf(schema: arrow.Schema, cols: arrow.Data[], n: number): arrow.RecordBatch {
  return new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children: cols }));
}

/**
 * A map partition's buckets while it runs: held in memory up to a byte budget, then spilled to local
 * Arrow IPC files (one batch each); each bucket is uploaded at the end as one IPC stream, its spilled
 * batches first, in arrival order.
 */
class BucketBuffer {
  private readonly held: arrow.RecordBatch[][];
  private readonly files: string[][];
  private bytes = 0;
  private readonly spill = new SpillDir();

  constructor(
    readonly n: number,
    private readonly budget: number,
  ) {
    this.held = Array.from({ length: n }, () => []);
    this.files = Array.from({ length: n }, () => []);
  }

  add(bucket: number, b: arrow.RecordBatch): void {
    this.held[bucket]!.push(b);
    this.bytes += batchBytes(b);
    if (this.bytes > this.budget) {
      for (let k = 0; k < this.n; k++) for (const x of this.held[k]!.splice(0)) this.files[k]!.push(this.spill.write(x));
      this.bytes = 0;
    }
  }

  /** Uploads every non-empty bucket to key(k); returns the bytes written and those buckets. */
  async upload(store: ObjectStore, key: (bucket: number) => string, schema: arrow.Schema): Promise<ExchangeWritten> {
    const nonEmpty = this.held.map((bs, k) => (bs.length || this.files[k]!.length ? k : -1)).filter((k) => k >= 0);
    const sizes = await mapLimit(nonEmpty, 8, async (k) => {
      const files = this.files[k]!;
      const held = this.held[k]!;
      const batches = (async function* () {
        yield* readSpill(files);
        yield* held;
      })();
      const bytes = await store.upload(key(k), ipcChunks(batches, schema));
      this.held[k] = [];
      return bytes;
    });
    return { bytes: sizes.reduce((a, b) => a + b, 0), buckets: nonEmpty };
  }

  close(): void {
    this.spill.close();
  }
}

/** Splits a batch's rows by bucket, in their order. */
function splitByBucket(b: arrow.RecordBatch, buckets: Int32Array, n: number, into: BucketBuffer): void {
  const { idx, starts: counts } = bucketOrder(buckets, n);
  for (let k = 0; k < n; k++) {
    const sel = idx.subarray(counts[k]!, counts[k + 1]!);
    if (!sel.length) continue;
    into.add(
      k,
      sel.length === b.numRows
        ? b
        : batchOf(
            b.schema,
            b.data.children.map((c) => take(c, sel)),
            sel.length,
          ),
    );
  }
}

function columnIndex(schema: arrow.Schema, name: string, what: string): number {
  const i = schema.fields.findIndex((f) => f.name === name);
  if (i < 0) throw new Error(`${what}: column '${name}' is not in the stage's output (${schema.fields.map((f) => f.name).join(', ')})`);
  return i;
}

function ipcBytes(schema: arrow.Schema, batches: readonly arrow.RecordBatch[]): Uint8Array {
  const fixed = batches.map((b) => unaliasBatch(new arrow.RecordBatch(schema, b.data)));
  return arrow.tableToIPC(new arrow.Table(fixed.length ? fixed[0]!.schema : schema, fixed), 'stream');
}

async function* readIpc(store: ObjectStore, key: string): AsyncGenerator<arrow.RecordBatch> {
  const reader = await arrow.RecordBatchReader.from(await store.stream(key));
  for await (const b of reader) yield b;
}

/** What a map partition's exchange wrote: bytes, and the buckets that have rows (for its marker). */
export interface ExchangeWritten {
  bytes: number;
  buckets: number[];
}

/** Range boundaries of a sort, read once per process and run. */
const boundaryCache = new Map<string, Promise<arrow.RecordBatch | null>>();

async function readBoundaries(c: ShuffleContext, stage: number): Promise<arrow.RecordBatch | null> {
  const key = shuffleKeys.boundaries(c.runId, stage);
  let p = boundaryCache.get(key);
  if (!p) {
    p = (async () => {
      const batches: arrow.RecordBatch[] = [];
      for await (const b of readIpc(c.store, key)) batches.push(b);
      return batches.length ? concatBatches(batches[0]!.schema, batches) : null;
    })();
    p.catch(() => boundaryCache.delete(key));
    boundaryCache.set(key, p);
  }
  return p;
}

function concatBatches(schema: arrow.Schema, batches: readonly arrow.RecordBatch[]): arrow.RecordBatch {
  const n = batches.reduce((a, b) => a + b.numRows, 0);
  return batchOf(
    schema,
    schema.fields.map((f, i) =>
      concatData(
        batches.map((b) => b.data.children[i]!),
        f.type,
      ),
    ),
    n,
  );
}

/** Each row's range bucket: how many boundaries sort at or before it (equal keys share a bucket). */
function rangeBuckets(b: arrow.RecordBatch, keyIdx: number[], types: DataType[], keys: SortKey[], bounds: arrow.RecordBatch | null): Int32Array {
  const out = new Int32Array(b.numRows);
  if (!bounds?.numRows) return out;
  const rowCols = keyIdx.map((k) => b.data.children[k]!);
  const boundCols = bounds.data.children;
  for (let i = 0; i < b.numRows; i++) {
    let lo = 0;
    let hi = bounds.numRows;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareRows(boundCols, mid, rowCols, i, types, keys) <= 0) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
  return out;
}

/**
 * A map partition's exchange: its rows (or, with partial aggregation, its partial state) split into
 * bucket files. Returns once every bucket is written; the caller writes the marker after.
 */
export async function writeExchange(
  c: ShuffleContext,
  stage: number,
  partition: number,
  exchange: Exclude<ExchangeSinkJSON, { kind: 'sample' }>,
  batches: AsyncIterable<arrow.RecordBatch>,
  schemaJson: SchemaJSON,
): Promise<ExchangeWritten> {
  // Half the budget for rows waiting for their upload; the partial table has a quarter.
  const held = new BucketBuffer(exchange.partitions, c.budgetBytes / 2);
  try {
    const schema = await fillBuckets(c, stage, exchange, batches, schemaJson, held);
    return await held.upload(c.store, (k) => shuffleKeys.bucket(c.runId, stage, partition, k), schema);
  } finally {
    held.close();
  }
}

/** Splits a map partition's output (or its partial state) into the buckets; returns the schema they hold. */
async function fillBuckets(
  c: ShuffleContext,
  stage: number,
  exchange: Exclude<ExchangeSinkJSON, { kind: 'sample' }>,
  batches: AsyncIterable<arrow.RecordBatch>,
  schemaJson: SchemaJSON,
  held: BucketBuffer,
): Promise<arrow.Schema> {
  const n = exchange.partitions;
  const schema = Schema.fromJSON(schemaJson);
  const what = `run ${c.runId}, stage ${stage}, exchange`;
  let outSchema: arrow.Schema = schema.toArrow();
  if (exchange.kind === 'hash') {
    const keyIdx = exchange.keys.map((k) => columnIndex(outSchema, k, what));
    const types = keyIdx.map((i) => DataType.fromJSON(schemaJson.fields[i]!.type));
    const bucketize = (b: arrow.RecordBatch, idx: number[]): void => {
      if (!b.numRows) return;
      splitByBucket(
        b,
        hashBuckets(
          idx.map((i) => b.data.children[i]!),
          types,
          b.numRows,
          n,
        ),
        n,
        held,
      );
    };
    const partial = exchange.partial;
    if (!partial) {
      for await (const b of batches) bucketize(b, keyIdx);
    } else {
      // Partial aggregation: the stage's output is keys, then one input column per aggregate.
      const K = exchange.keys.length;
      const keyFields = outSchema.fields.slice(0, K).map((f) => new arrow.Field(f.name, f.type, true));
      const agg = new HashAggregator(keyFields, partial.aggs, 'update');
      const stateKeys = Array.from({ length: K }, (_, i) => i);
      outSchema = partialSchema(keyFields, partial.aggs);
      const drain = (): void => {
        if (agg.groups) bucketize(agg.drainState(), stateKeys);
      };
      for await (const whole of batches) {
        for (const b of slices(whole, c.batchSize)) {
          agg.push(b);
          // The partial table is bounded: past a quarter of the budget its state goes out as is (the reduce merges it).
          if (agg.bytes() > c.budgetBytes / 4) drain();
        }
      }
      drain();
    }
  } else {
    const keyIdx = exchange.keys.map((k) => columnIndex(outSchema, k.column, what));
    const types = keyIdx.map((i) => DataType.fromJSON(schemaJson.fields[i]!.type));
    const bounds = await readBoundaries(c, exchange.boundariesStage);
    for await (const b of batches) if (b.numRows) splitByBucket(b, rangeBuckets(b, keyIdx, types, exchange.keys, bounds), n, held);
  }
  return outSchema;
}

/** Rows a sample keeps per map partition (the boundaries step reads every partition's). */
const SAMPLE_ROWS = 256;

/**
 * Passes batches through while keeping an even sample of their sort-key columns (every `stride`-th
 * row; the stride doubles whenever twice the target is held, so memory stays bounded).
 */
export class KeySampler {
  private stride = 1;
  private seen = 0;
  private kept: arrow.RecordBatch[] = [];
  private keptRows = 0;
  private schema: arrow.Schema | null = null;

  constructor(private readonly keys: readonly SortKey[]) {}

  async *tap(batches: AsyncIterable<arrow.RecordBatch>): AsyncGenerator<arrow.RecordBatch> {
    for await (const b of batches) {
      this.add(b);
      yield b;
    }
  }

  private add(b: arrow.RecordBatch): void {
    if (!b.numRows) return;
    const idx = this.keys.map((k) => columnIndex(b.schema, k.column, 'sort sample'));
    this.schema ??= new arrow.Schema(idx.map((i) => b.schema.fields[i]!));
    const sel: number[] = [];
    for (let i = 0; i < b.numRows; i++, this.seen++) if (this.seen % this.stride === 0) sel.push(i);
    if (sel.length) {
      const s = Int32Array.from(sel);
      this.kept.push(
        batchOf(
          this.schema,
          idx.map((i) => take(b.data.children[i]!, s)),
          s.length,
        ),
      );
      this.keptRows += s.length;
    }
    if (this.keptRows > 2 * SAMPLE_ROWS) {
      const all = concatBatches(this.schema, this.kept);
      const half = Int32Array.from({ length: Math.ceil(all.numRows / 2) }, (_, i) => 2 * i);
      this.kept = [
        batchOf(
          this.schema,
          all.data.children.map((d) => take(d, half)),
          half.length,
        ),
      ];
      this.keptRows = half.length;
      this.stride *= 2;
    }
  }

  /** Writes the sample (none when the partition had no rows). */
  async write(c: ShuffleContext, stage: number, partition: number): Promise<void> {
    if (!this.schema || !this.keptRows) return;
    await c.store.put(shuffleKeys.sample(c.runId, stage, partition), ipcBytes(this.schema, this.kept));
  }
}

// ---------------------------------------------------------------------------------------------
// Reduce side: what a stage's partition reads.

/** Map markers, cached per process: a batched invocation's reducers read the same ones. */
const markerCache = new Map<string, MapMarker>();

async function mapMarkers(c: ShuffleContext, from: StageRef, what: string): Promise<(MapMarker | null)[]> {
  const ms = Array.from({ length: from.partitions }, (_, m) => m);
  const out = await mapLimit(ms, 16, async (m): Promise<MapMarker | null> => {
    const key = c.markerKey(from.stage, m);
    const hit = markerCache.get(key);
    if (hit) return hit;
    try {
      const marker = await getJson<MapMarker>(c.store, key);
      if (markerCache.size > 50_000) markerCache.clear();
      markerCache.set(key, marker);
      return marker;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      throw new IncompleteInputError(c, from, m, what, `it has no completion marker (${c.store.uri(key)}), so its buckets are not whole`);
    }
  });
  return out;
}

/** Bucket b of every map partition of `from`, in map-partition order. */
async function* readBuckets(c: ShuffleContext, from: StageRef, bucket: number): AsyncGenerator<arrow.RecordBatch> {
  const markers = await mapMarkers(c, from, NEEDS.reduce);
  for (const [m, marker] of markers.entries()) {
    if (!marker) continue;
    if (!marker.buckets)
      throw new Error(`run ${c.runId}: map partition ${m} of stage ${from.stage} wrote no buckets (its marker lists none): the plan changed?`);
    if (!marker.buckets.includes(bucket)) continue;
    yield* readIpc(c.store, shuffleKeys.bucket(c.runId, from.stage, m, bucket));
  }
}

/** Every shard of a stage, in partition order (a broadcast join's build side, a gather). */
async function* readAllShards(c: ShuffleContext, from: StageRef, what: string): AsyncGenerator<arrow.RecordBatch> {
  for (let p = 0; p < from.partitions; p++) {
    const key = c.shardKey(from.stage, p);
    try {
      yield* readIpc(c.store, key);
    } catch (e) {
      // A shard is written whole before its marker, so only a partition that failed has none.
      if (e instanceof NotFoundError) throw new IncompleteInputError(c, from, p, what, `it has no shard (${c.store.uri(key)})`);
      throw e;
    }
  }
}

function arrowSchema(s: SchemaJSON): arrow.Schema {
  return Schema.fromJSON(s).toArrow();
}

/** A plain source for inputs that are one earlier shard (or scan slice); null for operator inputs. */
export function plainInputSource(c: Pick<ShuffleContext, 'shardKey'>, input: StageInputJSON, partition: number): SourceJSON | null {
  switch (input.kind) {
    case 'scan': {
      const s = input.sources[partition];
      if (!s) throw new Error(`partition ${partition} out of range (its scan has ${input.sources.length})`);
      return s;
    }
    case 'shard':
      return { kind: 'shard', key: c.shardKey(input.stage, partition) };
    case 'concat': {
      let p = partition;
      for (const i of input.inputs) {
        if (p < i.partitions) return { kind: 'shard', key: c.shardKey(i.stage, p) };
        p -= i.partitions;
      }
      throw new Error(`partition ${partition} out of range (the concatenated inputs have ${partition - p})`);
    }
    default:
      return null;
  }
}

/** The batches an operator input gives partition p: the reduce side of an exchange. */
export function operatorInput(c: ShuffleContext, input: StageInputJSON, partition: number): AsyncIterable<arrow.RecordBatch> {
  switch (input.kind) {
    case 'repartition':
      return readBuckets(c, input.from, partition);
    case 'aggregate':
      return mergeAggregate(c, input, partition);
    case 'gather':
      return readAllShards(c, input.from, NEEDS.gather);
    case 'join': {
      const left = input.probe
        ? probeSide(c, input.probe, partition)
        : input.strategy === 'broadcast'
          ? readIpc(c.store, c.shardKey(input.left.stage, partition))
          : readBuckets(c, input.left, partition);
      const right = input.strategy === 'broadcast' ? readAllShards(c, input.right, NEEDS.build) : readBuckets(c, input.right, partition);
      return hashJoin(left, right, {
        how: input.how,
        leftKeys: input.leftKeys,
        rightKeys: input.rightKeys,
        keyTypes: input.keyTypes.map((t) => DataType.fromJSON(t)),
        leftSchema: arrowSchema(input.leftSchema),
        rightSchema: arrowSchema(input.rightSchema),
        outSchema: arrowSchema(input.schema),
        outputs: input.outputs,
        budgetBytes: c.budgetBytes,
        batchSize: c.batchSize,
      });
    }
    case 'sort': {
      const names = input.schema.fields.map((f) => f.name);
      const keyIndex = input.keys.map((k) => names.indexOf(k.column));
      return externalSort(readBuckets(c, input.from, partition), {
        schema: arrowSchema(input.schema),
        keyIndex,
        keyTypes: keyIndex.map((i) => DataType.fromJSON(input.schema.fields[i]!.type)),
        keys: input.keys,
        budgetBytes: c.budgetBytes,
        batchSize: c.batchSize,
      });
    }
    default:
      throw new Error(`internal: a ${input.kind} input is not an operator`);
  }
}

/** A fused broadcast join's probe side: the input slice and its operators (no UDFs), read right here. */
function probeSide(c: ShuffleContext, probe: { input: StageInputJSON; ops: OpJSON[] }, partition: number): AsyncIterable<arrow.RecordBatch> {
  const source = plainInputSource(c, probe.input, partition);
  if (!source) throw new Error(`internal: a broadcast join's probe reads a ${probe.input.kind} input`);
  return runPartition(
    { index: partition, source, ops: probe.ops },
    { batchSize: c.batchSize, label: `run ${c.runId}, probe side of partition ${partition}`, shards: (key) => readIpc(c.store, key) },
  );
}

async function* mergeAggregate(c: ShuffleContext, input: Extract<StageInputJSON, { kind: 'aggregate' }>, partition: number): AsyncGenerator<arrow.RecordBatch> {
  const schema = arrowSchema(input.schema);
  const final = new HashAggregator(schema.fields.slice(0, input.keys), input.aggs, 'merge');
  let any = false;
  for await (const b of readBuckets(c, input.from, partition)) {
    any = true;
    final.push(b);
  }
  // A grouped aggregate over no rows has no groups; a whole-frame one always has its one row.
  if (!any && input.keys > 0) return;
  yield* slices(final.drainResult(schema), c.batchSize);
}

/**
 * The boundaries step of a sort: every map partition's key sample, sorted, and the keys at the
 * `partitions - 1` even cut points. Returns the number of boundaries written.
 */
export async function writeBoundaries(c: ShuffleContext, stage: number, input: Extract<StageInputJSON, { kind: 'boundaries' }>): Promise<number> {
  const markers = await mapMarkers(c, input.from, NEEDS.boundaries);
  const samples: arrow.RecordBatch[] = [];
  for (const [m, marker] of markers.entries()) {
    if (!marker) continue;
    try {
      for await (const b of readIpc(c.store, shuffleKeys.sample(c.runId, input.from.stage, m))) samples.push(b);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e; // a partition without rows wrote no sample
    }
  }
  const types = input.keyTypes.map((t) => DataType.fromJSON(t));
  const fields = input.keys.map((k, i) => new arrow.Field(k.column, types[i]!.toArrow(), true));
  const schema = new arrow.Schema(samples.length ? samples[0]!.schema.fields : fields);
  const all = samples.length ? concatBatches(schema, samples) : batchOf(schema, [], 0);
  const total = all.numRows;
  const cuts: number[] = [];
  if (total > 0) {
    const perm = sortIndices(all.data.children, types, input.keys, total);
    for (let i = 1; i < input.partitions; i++) cuts.push(perm[Math.min(total - 1, Math.floor((i * total) / input.partitions))]!);
  }
  const sel = Int32Array.from(cuts);
  const bounds = batchOf(
    schema,
    all.data.children.map((d) => take(d, sel)),
    sel.length,
  );
  await c.store.put(shuffleKeys.boundaries(c.runId, stage), ipcBytes(schema, [bounds]));
  return sel.length;
}

// Record batches from a worker to the pool without Arrow IPC: every buffer of the batch is copied
// once into one packed ArrayBuffer that is transferred (moved, not cloned), and the receiving thread
// views it in place. No flatbuffer body to build or parse, and no IPC aliasing hazard (columns that
// share bytes are packed as separate copies; see ipc-alias.ts). The batch's own buffers are not
// transferred (a worker may still hold them: a cached dictionary, an array a UDF keeps returning),
// except, on request, freshly decoded or gathered buffers of a task that runs no user code.
import * as arrow from 'apache-arrow';
import { disown, isOwned } from '../kernels/owned.ts';

/**
 * A typed array's place on the wire: [byteOffset, length in elements, constructor index, source];
 * source 0 (or absent) is the packed buffer, k > 0 is `owned[k - 1]`.
 */
type WireView = [number, number, number] | [number, number, number, number];

interface WireData {
  offset: number;
  length: number;
  nullCount: number;
  /** valueOffsets, values, nullBitmap, typeIds (null when absent). */
  buffers: (WireView | null)[];
  children: WireData[];
  /** The chunks of a dictionary column's dictionary. */
  dictionary?: WireData[];
  variadic?: WireView[];
}

/** A batch on the wire: its schema as an IPC schema message, its buffers packed in `bytes`. */
export interface WireBatch {
  schema: Uint8Array;
  bytes: ArrayBuffer;
  /** Reader- or kernel-allocated buffers moved as they are (no copy): transfer them with `bytes`. */
  owned?: ArrayBuffer[];
  columns: WireData[];
  numRows: number;
}

// Buffers already moved to another thread: a batch that still views one (the same decoded Data
// posted twice) must fail loudly, not send the empty views of a detached buffer.
const moved = new WeakSet<ArrayBufferLike>();

// The typed arrays Arrow buffers are made of, by index (the wire carries the index).
const CTORS = [
  Uint8Array,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  Uint8ClampedArray,
] as const;
type AnyTypedArray = InstanceType<(typeof CTORS)[number]>;

const ALIGN = 64; // Arrow's buffer alignment; also enough for every element size

function ctorIndex(v: ArrayBufferView): number {
  const i = CTORS.findIndex((c) => v instanceof c);
  if (i < 0) throw new Error(`internal: cannot transfer a buffer of type ${v.constructor.name}`);
  return i;
}

const schemaBytes = new WeakMap<arrow.Schema, Uint8Array>();
// Every batch a partition produces carries a new Schema object (new Fields too), so the WeakMap
// alone never hit and each batch paid an IPC encoding of its schema (~0.1-0.3 ms, a flatbuffer
// builder's garbage): keyed by what the encoding depends on, equal schemas share their bytes.
const schemaByKey = new Map<string, Uint8Array>();

/** Everything of a type the IPC schema encodes: its id and own parameters, child fields included. */
function typeKey(t: arrow.DataType): string {
  let k = String(t.typeId);
  for (const [p, v] of Object.entries(t)) k += `,${p}=${valueKey(v)}`;
  return k;
}
function valueKey(v: unknown): string {
  if (v instanceof arrow.DataType) return `(${typeKey(v)})`;
  if (v instanceof arrow.Field) return fieldKey(v);
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return `[${Array.from(v as ArrayLike<unknown>, valueKey).join(';')}]`;
  if (v instanceof Map) return metadataKey(v);
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
function metadataKey(m: Map<string, string>): string {
  let k = '{';
  for (const [a, b] of m) k += `${JSON.stringify(a)}:${JSON.stringify(b)},`;
  return `${k}}`;
}
function fieldKey(f: arrow.Field): string {
  return `${JSON.stringify(f.name)}${f.nullable ? '?' : '!'}${metadataKey(f.metadata)}(${typeKey(f.type)})`;
}

function encodeSchema(schema: arrow.Schema): Uint8Array {
  let b = schemaBytes.get(schema);
  if (b) return b;
  const key = `${schema.metadataVersion}${metadataKey(schema.metadata)}${schema.fields.map(fieldKey).join('|')}`;
  b = schemaByKey.get(key);
  if (!b) {
    b = arrow.tableToIPC(new arrow.Table(schema), 'stream');
    if (schemaByKey.size >= 64) schemaByKey.delete(schemaByKey.keys().next().value!);
    schemaByKey.set(key, b);
  }
  schemaBytes.set(schema, b);
  return b;
}

const schemaCache = new Map<string, arrow.Schema>();
function decodeSchema(bytes: Uint8Array): arrow.Schema {
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  let s = schemaCache.get(key);
  if (!s) {
    s = arrow.tableFromIPC(bytes).schema;
    if (schemaCache.size >= 64) schemaCache.delete(schemaCache.keys().next().value!);
    schemaCache.set(key, s);
  }
  return s;
}

/**
 * The batch packed for postMessage: send `wire` with `[wire.bytes, ...(wire.owned ?? [])]` as the
 * transfer list. With `moveOwned`, buffers the Parquet reader or a gather kernel allocated for one
 * Data alone (kernels/owned.ts) are moved instead of copied: the reader's copy out of wasm memory,
 * or a filter's gather, is then the only one. Buffers given to a UDF were disowned when it was called
 * (udf-exec.ts): a UDF may keep its input, and moving would detach it in this thread.
 */
export function batchToWire(batch: arrow.RecordBatch, moveOwned = false): WireBatch {
  const views: ArrayBufferView[] = [];
  const owned: ArrayBuffer[] = [];
  const ownedAt = new Map<ArrayBufferLike, number>();
  let size = 0;
  const place = (v: ArrayBufferView | undefined | null): WireView | null => {
    if (v && moved.has(v.buffer)) throw new Error('internal: a batch buffer was already moved to another thread (the same batch posted twice)');
    if (!v || v.byteLength === 0) return v ? [0, 0, ctorIndex(v)] : null;
    if (moveOwned && isOwned(v.buffer) && v.buffer instanceof ArrayBuffer) {
      let k = ownedAt.get(v.buffer);
      if (k === undefined) {
        k = owned.push(v.buffer);
        ownedAt.set(v.buffer, k);
      }
      return [v.byteOffset, v.byteLength / (v as AnyTypedArray).BYTES_PER_ELEMENT, ctorIndex(v), k];
    }
    const at = size;
    size = Math.ceil((size + v.byteLength) / ALIGN) * ALIGN;
    views.push(v);
    return [at, v.byteLength / (v as AnyTypedArray).BYTES_PER_ELEMENT, ctorIndex(v)];
  };
  const walk = (d: arrow.Data): WireData => {
    const w: WireData = {
      offset: d.offset,
      length: d.length,
      nullCount: d.nullCount,
      buffers: [place(d.valueOffsets), place(d.values), place(d.nullBitmap), place(d.typeIds)],
      children: (d.children ?? []).map(walk),
    };
    if (d.dictionary) w.dictionary = d.dictionary.data.map(walk);
    if (d.variadicBuffers?.length) w.variadic = d.variadicBuffers.map((v) => place(v)!);
    return w;
  };
  const columns = batch.data.children.map(walk);
  // Not zero-filled (every byte that is read is written below); unpooled, so it can be transferred.
  const u8 = Buffer.allocUnsafeSlow(size);
  const bytes = u8.buffer as ArrayBuffer;
  let at = 0;
  for (const v of views) {
    u8.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), at);
    at = Math.ceil((at + v.byteLength) / ALIGN) * ALIGN;
  }
  for (const b of owned) {
    disown(b);
    moved.add(b);
  }
  const wire: WireBatch = { schema: encodeSchema(batch.schema), bytes, columns, numRows: batch.numRows };
  if (owned.length) wire.owned = owned;
  return wire;
}

/** The batch a worker packed, viewing `wire.bytes` in place. */
export function batchFromWire(wire: WireBatch): arrow.RecordBatch {
  const schema = decodeSchema(wire.schema);
  const view = (v: WireView | null): AnyTypedArray | undefined => {
    if (!v) return undefined;
    const C = CTORS[v[2]]!;
    const src = v[3] ? wire.owned?.[v[3] - 1] : wire.bytes;
    if (!src) throw new Error(`internal: wire view names moved buffer ${v[3]}, the batch carries ${wire.owned?.length ?? 0}`);
    return new C(src, v[0], v[1]);
  };
  const build = (type: arrow.DataType, w: WireData): arrow.Data => {
    const children = w.children.map((c, i) => build(type.children[i]!.type, c));
    const dictionary = w.dictionary ? new arrow.Vector(w.dictionary.map((d) => build((type as arrow.Dictionary).dictionary, d))) : undefined;
    const [valueOffsets, values, nullBitmap, typeIds] = w.buffers.map(view);
    const variadic = w.variadic?.map((v) => view(v) as Uint8Array);
    return new arrow.Data(type, w.offset, w.length, w.nullCount, [valueOffsets, values, nullBitmap, typeIds] as never, children, dictionary, variadic);
  };
  const columns = wire.columns.map((c, i) => build(schema.fields[i]!.type, c));
  const data = arrow.makeData({ type: new arrow.Struct(schema.fields), length: wire.numRows, nullCount: 0, children: columns });
  return new arrow.RecordBatch(schema, data);
}

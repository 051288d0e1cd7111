// Arrow IPC for parquet-wasm, whose only way in is `Table.fromIPCStream(bytes)`.
//
// `tableToIPC` per batch encoded the schema again each time and joined the message's chunks into a fresh
// buffer (`joinUint8Arrays`): 32 MB of new, zero-filled ArrayBuffers per 2M rows of id + y, about a
// tenth of the write's CPU with the garbage it left. Here one apache-arrow stream writer encodes the
// schema once; each batch's chunks (message header, then views of the column buffers) are captured as
// they are written and copied into one buffer reused for every batch. parquet-wasm copies the bytes
// into wasm memory before it returns, so reusing the buffer is safe.
//
// Copying chunk by chunk also sidesteps the aliasing trap of src/ipc-alias.ts: `joinUint8Arrays` merged
// chunks whose byte ranges overlap (two columns sharing one buffer) into one shorter chunk, and the
// stream came out corrupt. Each chunk here is copied whole, wherever its bytes live.
import * as arrow from 'apache-arrow';

/** The 8-byte end-of-stream marker (continuation token, then a zero length). */
const EOS = new Uint8Array(Int32Array.of(-1, 0).buffer);

/** apache-arrow's writer hands its sink each chunk through `write`: keep them instead of queueing them. */
class ChunkCapture extends arrow.AsyncByteQueue<Uint8Array> {
  readonly chunks: Uint8Array[] = [];
  override write(value: Uint8Array): void {
    this.chunks.push(value);
  }
}

export class IpcEncoder {
  private readonly capture = new ChunkCapture();
  private readonly writer = new arrow.RecordBatchStreamWriter();
  private readonly schemaBytes: Uint8Array;
  private buffer = new Uint8Array(0);

  constructor(schema: arrow.Schema) {
    // reset(sink, schema) writes the schema message at once.
    this.writer.reset(this.capture, schema);
    this.schemaBytes = this.take(0, 0).slice();
    this.capture.chunks.length = 0;
  }

  /** A complete IPC stream (schema, this batch, end marker) in a buffer that the next call overwrites. */
  encode(batch: arrow.RecordBatch): Uint8Array {
    this.capture.chunks.length = 0;
    this.writer.write(batch);
    const bytes = this.take(this.schemaBytes.length, EOS.length);
    this.buffer.set(this.schemaBytes, 0);
    this.buffer.set(EOS, bytes.length - EOS.length);
    this.capture.chunks.length = 0;
    return bytes;
  }

  /** The captured chunks copied into the reused buffer after `before` bytes, leaving `after` bytes free. */
  private take(before: number, after: number): Uint8Array {
    let size = before + after;
    for (const c of this.capture.chunks) size += c.byteLength;
    // Grow by half again, so that batches of slowly growing size do not reallocate every time.
    if (this.buffer.length < size) this.buffer = new Uint8Array(Math.max(size, Math.floor(this.buffer.length * 1.5)));
    let at = before;
    for (const c of this.capture.chunks) {
      this.buffer.set(c, at);
      at += c.byteLength;
    }
    return this.buffer.subarray(0, size);
  }
}

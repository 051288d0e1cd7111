// A synchronous UDF call that never returns blocks its worker thread: no timer of that thread can
// fire, so its own `timeoutMs` cannot end it. The worker writes the deadline of each synchronous
// call with a timeout into shared memory; the pool's thread reads it and terminates a worker whose
// call is past its deadline (the task then fails with an error naming the UDF and its timeout).
const NAME_BYTES = 256;

/** Shared state of one worker thread: [deadline (epoch ms, 0 = none) | timeoutMs | name length | name]. */
export function newSyncGuardBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(16 + 4 + NAME_BYTES);
}

/** The worker side: arms a deadline around a synchronous UDF call. */
export class SharedSyncGuard {
  private readonly f64: Float64Array;
  private readonly len: Int32Array;
  private readonly bytes: Uint8Array;
  private lastName = '';
  constructor(buf: SharedArrayBuffer) {
    this.f64 = new Float64Array(buf, 0, 2);
    this.len = new Int32Array(buf, 16, 1);
    this.bytes = new Uint8Array(buf, 20, NAME_BYTES);
  }
  arm(udf: string, timeoutMs: number): void {
    if (udf !== this.lastName) {
      // Written before the deadline, so a reader that sees the deadline sees this call's name.
      const { written } = new TextEncoder().encodeInto(udf, this.bytes);
      this.len[0] = written;
      this.lastName = udf;
    }
    this.f64[1] = timeoutMs;
    this.f64[0] = Date.now() + timeoutMs;
  }
  disarm(): void {
    this.f64[0] = 0;
  }
}

/** The pool side: the UDF whose synchronous call is more than `graceMs` past its deadline, if any. */
export function overdueSyncCall(buf: SharedArrayBuffer, graceMs: number): { udf: string; timeoutMs: number } | null {
  const f64 = new Float64Array(buf, 0, 2);
  const deadline = f64[0]!;
  if (deadline === 0 || Date.now() <= deadline + graceMs) return null;
  const n = new Int32Array(buf, 16, 1)[0]!;
  const udf = new TextDecoder().decode(new Uint8Array(buf, 20, NAME_BYTES).slice(0, n));
  return { udf, timeoutMs: f64[1]! };
}

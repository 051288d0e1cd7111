// UTF-8 byte helpers: shared codecs, an appendable offsets+bytes writer, byte comparison and search.

export const utf8Encoder = new TextEncoder();
export const utf8Decoder = new TextDecoder('utf-8', { fatal: false });
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes bytes as UTF-8, throwing on invalid sequences. */
export function decodeUtf8Strict(b: Uint8Array): string {
  return strictDecoder.decode(b);
}

/** Appends strings / bytes row by row into Arrow Utf8 buffers (offsets + values). */
export class Utf8Writer {
  bytes: Uint8Array;
  readonly offsets: Int32Array;
  pos = 0;
  private row = 0;

  constructor(rows: number, byteHint: number) {
    this.offsets = new Int32Array(rows + 1);
    this.bytes = new Uint8Array(Math.max(16, byteHint));
  }

  ensure(extra: number): void {
    const need = this.pos + extra;
    if (need <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.bytes.subarray(0, this.pos));
    this.bytes = next;
  }

  /** Strings made only of code units < 0x80 (numbers, ISO dates): no encoder call. */
  writeAscii(s: string): void {
    const n = s.length;
    this.ensure(n);
    const b = this.bytes;
    let p = this.pos;
    for (let k = 0; k < n; k++) b[p++] = s.charCodeAt(k);
    this.pos = p;
  }

  writeString(s: string): void {
    // Worst case 3 bytes per UTF-16 code unit.
    this.ensure(s.length * 3);
    this.pos += utf8Encoder.encodeInto(s, this.bytes.subarray(this.pos)).written;
  }

  writeBytes(src: Uint8Array, start: number, end: number): void {
    const len = end - start;
    this.ensure(len);
    const b = this.bytes;
    if (len < 32) {
      let p = this.pos;
      for (let k = start; k < end; k++) b[p++] = src[k]!;
    } else {
      b.set(src.subarray(start, end), this.pos);
    }
    this.pos += len;
  }

  /** Ends the current row (also used for null / empty rows). */
  endRow(): void {
    this.offsets[++this.row] = this.pos;
  }

  /** The value buffer trimmed to its used length (a view). */
  values(): Uint8Array {
    return this.bytes.subarray(0, this.pos);
  }
}

/** Byte-wise lexicographic comparison of a[as..ae) and b[bs..be): -1, 0 or 1 (UTF-8 order = code point order). */
export function compareBytes(a: Uint8Array, as: number, ae: number, b: Uint8Array, bs: number, be: number): number {
  const la = ae - as,
    lb = be - bs;
  const n = Math.min(la, lb);
  for (let k = 0; k < n; k++) {
    const x = a[as + k]!,
      y = b[bs + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return la === lb ? 0 : la < lb ? -1 : 1;
}

export function equalBytes(a: Uint8Array, as: number, ae: number, b: Uint8Array, bs: number, be: number): boolean {
  const n = ae - as;
  if (n !== be - bs) return false;
  for (let k = 0; k < n; k++) if (a[as + k] !== b[bs + k]) return false;
  return true;
}

/** First index >= from and <= end - needle.length where needle occurs in hay[..end), or -1. */
export function indexOfBytes(hay: Uint8Array, from: number, end: number, needle: Uint8Array, ns = 0, ne = needle.length): number {
  const nl = ne - ns;
  if (nl === 0) return from <= end ? from : -1;
  const first = needle[ns]!;
  const last = end - nl;
  outer: for (let i = from; i <= last; i++) {
    if (hay[i] !== first) continue;
    for (let k = 1; k < nl; k++) if (hay[i + k] !== needle[ns + k]) continue outer;
    return i;
  }
  return -1;
}

/** Decodes an ASCII-or-Latin1 byte range cheaply (for parsing numbers); callers check the bytes. */
export function latin1(b: Uint8Array, s: number, e: number): string {
  if (e - s < 64) {
    let out = '';
    for (let k = s; k < e; k++) out += String.fromCharCode(b[k]!);
    return out;
  }
  return Buffer.from(b.buffer, b.byteOffset + s, e - s).toString('latin1');
}

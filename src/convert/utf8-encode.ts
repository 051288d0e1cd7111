// UTF-8 encoding of a whole string column into one buffer (the utf8 builder's hot path).
import { Buffer } from 'node:buffer';

/** A Buffer over the same memory, for Node's native utf8/latin1 codecs. */
export function bufferOf(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

const textEncoder = new TextEncoder();
export const MAX_BYTES = 0x7fffffff; // int32 offsets

/**
 * Fills `offsets` and returns the bytes, or null when they would exceed MAX_BYTES. Encodes value by
 * value in JS: for columns of short strings a native call per value costs more than the work.
 */
export function encodeLoop(values: ArrayLike<unknown>, n: number, units: number, offsets: Int32Array): Uint8Array | null {
  let bytes = new Uint8Array(units);
  let pos = 0;
  let left = units; // UTF-16 units not yet encoded; invariant: bytes.length - pos >= left
  for (let i = 0; i < n; i++) {
    const s = values[i];
    if (typeof s === 'string') {
      const len = s.length;
      left -= len;
      let k = 0;
      if (len <= 64) {
        for (; k < len; k++) {
          const c = s.charCodeAt(k);
          if (c >= 0x80) break;
          bytes[pos++] = c;
        }
      }
      if (k < len) {
        // Non-ASCII or long: make room for the worst case (3 bytes per unit) plus what remains.
        const need = pos + 3 * (len - k) + left;
        if (need > bytes.length) {
          if (pos > MAX_BYTES) return null;
          const grown = new Uint8Array(Math.max(need, Math.min(bytes.length * 2, need + 3 * left)));
          grown.set(bytes.subarray(0, pos));
          bytes = grown;
        }
        if (len - k > 64) {
          pos += textEncoder.encodeInto(k === 0 ? s : s.slice(k), bytes.subarray(pos)).written;
        } else {
          pos = encodeUtf8Tail(s, k, bytes, pos);
        }
      }
    }
    offsets[i + 1] = pos;
  }
  if (pos > MAX_BYTES) return null;
  return pos === bytes.length ? bytes : bytes.subarray(0, pos);
}

function isAsciiShort(s: string): boolean {
  for (let k = 0; k < s.length; k++) if (s.charCodeAt(k) >= 0x80) return false;
  return true;
}

const JOIN_UNITS = 1 << 24; // per joined run: well under V8's maximum string length

/**
 * Encodes runs of values joined into one string (Array#join skips null/undefined as ''), each with a
 * single native Buffer#write. Offsets follow from the UTF-16 lengths for ASCII runs, else from a walk
 * over the written bytes; a run where a surrogate pair straddles two values is re-encoded per value.
 */
export function encodeJoined(values: ArrayLike<unknown>, lens: Int32Array, units: number, offsets: Int32Array): Uint8Array | null {
  const n = lens.length;
  let bytes = new Uint8Array(units + (units >> 4) + 16);
  let buf = bufferOf(bytes);
  let pos = 0;
  const ensure = (need: number, keep: number): void => {
    if (need <= bytes.length) return;
    const grown = new Uint8Array(Math.max(need, Math.min(bytes.length * 2, MAX_BYTES + 1)));
    grown.set(bytes.subarray(0, keep));
    bytes = grown;
    buf = bufferOf(bytes);
  };
  const join = Array.prototype.join;
  const slice = Array.prototype.slice;
  for (let i = 0; i < n; ) {
    let j = i,
      cu = 0;
    while (j < n) {
      const l = lens[j]!;
      if (cu > 0 && cu + l > JOIN_UNITS) break;
      cu += l;
      j++;
    }
    const str: string = i === 0 && j === n ? join.call(values, '') : join.call(slice.call(values, i, j), '');
    const blen = Buffer.byteLength(str, 'utf8');
    if (pos + blen > MAX_BYTES) return null;
    ensure(pos + blen, pos);
    buf.write(str, pos, blen, 'utf8');
    let ok = true;
    if (blen === str.length) {
      let p = pos;
      for (let k = i; k < j; k++) {
        p += lens[k]!;
        offsets[k + 1] = p;
      }
    } else {
      // Per-value byte lengths (native, fast on flat strings) instead of walking the bytes in JS.
      let p = pos;
      for (let k = i; k < j; k++) {
        const v = values[k];
        if (typeof v === 'string') p += v.length < 32 && isAsciiShort(v) ? v.length : Buffer.byteLength(v, 'utf8');
        offsets[k + 1] = p;
      }
      ok = p === pos + blen; // else a surrogate pair formed across two values by the join
    }
    if (!ok) {
      let p = pos;
      for (let k = i; k < j; k++) {
        const v = values[k];
        if (typeof v === 'string') {
          if (p + 3 * v.length > MAX_BYTES) return null;
          ensure(p + 3 * v.length, p);
          p += buf.write(v, p, 'utf8');
        }
        offsets[k + 1] = p;
      }
      pos = p;
    } else {
      pos += blen;
    }
    i = j;
  }
  return pos === bytes.length ? bytes : bytes.subarray(0, pos);
}

function encodeUtf8Tail(s: string, k: number, b: Uint8Array, pos: number): number {
  const len = s.length;
  for (; k < len; k++) {
    let c = s.charCodeAt(k);
    if (c < 0x80) {
      b[pos++] = c;
      continue;
    }
    if (c < 0x800) {
      b[pos++] = 0xc0 | (c >> 6);
      b[pos++] = 0x80 | (c & 63);
      continue;
    }
    if ((c & 0xfc00) === 0xd800 && k + 1 < len) {
      const d = s.charCodeAt(k + 1);
      if ((d & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c & 0x3ff) << 10) + (d & 0x3ff);
        k++;
        b[pos++] = 0xf0 | (c >> 18);
        b[pos++] = 0x80 | ((c >> 12) & 63);
        b[pos++] = 0x80 | ((c >> 6) & 63);
        b[pos++] = 0x80 | (c & 63);
        continue;
      }
    }
    if ((c & 0xf800) === 0xd800) c = 0xfffd; // lone surrogate: replacement char, as TextEncoder does
    b[pos++] = 0xe0 | (c >> 12);
    b[pos++] = 0x80 | ((c >> 6) & 63);
    b[pos++] = 0x80 | (c & 63);
  }
  return pos;
}

// ASCII fast paths over UTF-8 byte buffers, 4 bytes at a time (SWAR on int32 words).

const UPPER = new Uint8Array(256);
const LOWER = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  UPPER[c] = c >= 97 && c <= 122 ? c - 32 : c;
  LOWER[c] = c >= 65 && c <= 90 ? c + 32 : c;
}

/**
 * Maps ASCII letters of src[start, end) to upper (or lower) case into a new buffer; other bytes are
 * copied unchanged. `ascii` tells whether every byte was < 0x80 (then the result is final).
 */
export function asciiCaseMap(src: Uint8Array, start: number, end: number, upper: boolean): { out: Uint8Array; ascii: boolean } {
  const len = end - start;
  const abs = src.byteOffset + start;
  // Give the output the input's alignment mod 4 so both sides use aligned int32 views.
  const outBase = abs & 3;
  const buf = new ArrayBuffer(len + outBase + 4);
  const out = new Uint8Array(buf, outBase, len);
  const table = upper ? UPPER : LOWER;
  const head = Math.min(len, (4 - (abs & 3)) & 3);
  let acc = 0;
  for (let k = 0; k < head; k++) {
    const c = src[start + k]!;
    acc |= c;
    out[k] = table[c]!;
  }
  const words = (len - head) >> 2;
  if (words > 0) {
    const in32 = new Int32Array(src.buffer, abs + head, words);
    const out32 = new Int32Array(buf, outBase + head, words);
    // Per byte: bit 7 of (b & 0x7f) + (0x80 - lo) is set iff b >= lo; letters are lo..hi.
    const addLo = upper ? 0x1f1f1f1f : 0x3f3f3f3f; // 0x80 - 'a' / 0x80 - 'A'
    const addHi = upper ? 0x05050505 : 0x25252525; // 0x80 - ('z' + 1) / 0x80 - ('Z' + 1)
    let wacc = 0;
    for (let k = 0; k < words; k++) {
      const w = in32[k]!;
      wacc |= w;
      const h = w & 0x7f7f7f7f;
      const m = (h + addLo) & ~(h + addHi) & ~w & 0x80808080;
      out32[k] = w ^ (m >>> 2);
    }
    acc |= (wacc >>> 24) | (wacc >>> 16) | (wacc >>> 8) | wacc;
  }
  for (let k = head + words * 4; k < len; k++) {
    const c = src[start + k]!;
    acc |= c;
    out[k] = table[c]!;
  }
  return { out, ascii: (acc & 0x80) === 0 };
}

/** Whether every byte of src[start, end) is ASCII. */
export function isAscii(src: Uint8Array, start: number, end: number): boolean {
  const len = end - start;
  const abs = src.byteOffset + start;
  const head = Math.min(len, (4 - (abs & 3)) & 3);
  let acc = 0;
  for (let k = 0; k < head; k++) acc |= src[start + k]!;
  const words = (len - head) >> 2;
  if (words > 0) {
    const in32 = new Int32Array(src.buffer, abs + head, words);
    let wacc = 0;
    for (let k = 0; k < words; k++) wacc |= in32[k]!;
    if (wacc & 0x80808080) return false;
  }
  for (let k = head + words * 4; k < len; k++) acc |= src[start + k]!;
  return (acc & 0x80) === 0;
}

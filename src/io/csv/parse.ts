// CSV value parsers on field bytes: integers, floats, booleans, dates and timestamps without a JS string per field.
import { daysFromCivil } from '../../kernels/temporal.ts';
import type { TimeUnit } from '../../datatypes.ts';
import { decoder } from './options.ts';

// ---------------------------------------------------------------------------------------------
// Value parsers on bytes

const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** Integer field: a number when |v| <= 2^53-1, a bigint beyond, undefined if not an integer. */
export function parseIntBytes(buf: Uint8Array, s: number, e: number): number | bigint | undefined {
  let i = s;
  let neg = false;
  if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) {
    neg = buf[i] === 0x2d;
    i++;
  }
  if (i >= e) return undefined;
  if (e - i <= 15) {
    let v = 0;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) return undefined;
      v = v * 10 + c;
    }
    return neg ? -v : v;
  }
  for (let k = i; k < e; k++) {
    const c = buf[k]! - 48;
    if (c < 0 || c > 9) return undefined;
  }
  const big = BigInt(decoder.decode(buf.subarray(i, e)));
  const v = neg ? -big : big;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function lowerAscii(buf: Uint8Array, s: number, e: number): string {
  let out = '';
  for (let i = s; i < e && i - s < 16; i++) out += String.fromCharCode(buf[i]! | 0x20);
  return out;
}

/** Float field (decimal, exponent, nan/inf/infinity); undefined if it is not one. */
export function parseFloatBytes(buf: Uint8Array, s: number, e: number): number | undefined {
  let i = s;
  let neg = false;
  if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) {
    neg = buf[i] === 0x2d;
    i++;
  }
  if (i >= e) return undefined;
  let m = 0;
  let exact = true;
  let digits = 0;
  let frac = 0;
  for (; i < e; i++) {
    const c = buf[i]! - 48;
    if (c < 0 || c > 9) break;
    // m * 10 + c must stay exact (≤ 2^53 - 1), or the fast path would round twice.
    if (m > (Number.MAX_SAFE_INTEGER - c) / 10) exact = false;
    else m = m * 10 + c;
    digits++;
  }
  if (i < e && buf[i] === 0x2e) {
    i++;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) break;
      if (m > (Number.MAX_SAFE_INTEGER - c) / 10) exact = false;
      else {
        m = m * 10 + c;
        frac++;
      }
      digits++;
    }
  }
  if (digits === 0) {
    const w = lowerAscii(buf, i, e);
    if (i + w.length !== e) return undefined;
    if (w === 'nan') return NaN;
    if (w === 'inf' || w === 'infinity') return neg ? -Infinity : Infinity;
    return undefined;
  }
  let exp = 0;
  if (i < e && (buf[i] === 0x65 || buf[i] === 0x45)) {
    i++;
    let eneg = false;
    if (i < e && (buf[i] === 0x2d || buf[i] === 0x2b)) {
      eneg = buf[i] === 0x2d;
      i++;
    }
    const es = i;
    for (; i < e; i++) {
      const c = buf[i]! - 48;
      if (c < 0 || c > 9) return undefined;
      if (exp < 100000) exp = exp * 10 + c;
    }
    if (i === es) return undefined;
    if (eneg) exp = -exp;
  }
  if (i !== e) return undefined;
  // Clinger's fast path: an exact mantissa and an exact power of ten, one correctly rounded op.
  const p = exp - frac;
  if (exact && p >= -22 && p <= 22) {
    const v = p < 0 ? m / POW10[-p]! : m * POW10[p]!;
    return neg ? -v : v;
  }
  return Number(latin1(buf, s, e));
}

/** ASCII/latin1 text of bytes (Buffer's native slice when available: no intermediate view). */
function latin1(buf: Uint8Array, s: number, e: number): string {
  return Buffer.isBuffer(buf) ? buf.toString('latin1', s, e) : String.fromCharCode(...buf.subarray(s, e));
}

export function isBoolBytes(buf: Uint8Array, s: number, e: number): boolean | undefined {
  const n = e - s;
  if (n === 4 || n === 5) {
    const w = lowerAscii(buf, s, e);
    if (w === 'true') return true;
    if (w === 'false') return false;
  }
  return undefined;
}

function digit2(buf: Uint8Array, i: number): number {
  const a = buf[i]! - 48;
  const b = buf[i + 1]! - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** YYYY-MM-DD at [s, s+10) -> days, or undefined. */
export function parseDateAt(buf: Uint8Array, s: number): number | undefined {
  const y1 = digit2(buf, s);
  const y2 = digit2(buf, s + 2);
  if (y1 < 0 || y2 < 0 || buf[s + 4] !== 0x2d || buf[s + 7] !== 0x2d) return undefined;
  const m = digit2(buf, s + 5);
  const d = digit2(buf, s + 8);
  const y = y1 * 100 + y2;
  if (m < 1 || m > 12 || d < 1 || d > MONTH_DAYS[m - 1]!) return undefined;
  if (m === 2 && d === 29 && !(y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0))) return undefined;
  return daysFromCivil(y, m, d);
}

export function parseDateBytes(buf: Uint8Array, s: number, e: number): number | undefined {
  return e - s === 10 ? parseDateAt(buf, s) : undefined;
}

interface ParsedTs {
  secs: number;
  nanos: number;
  hasTz: boolean;
  fracDigits: number;
}
const tsScratch: ParsedTs = { secs: 0, nanos: 0, hasTz: false, fracDigits: 0 };

/** ISO-8601 date[T| ]HH:MM[:SS[.f{1,9}]][Z|±HH[:MM]] (or a bare date) into tsScratch. */
export function parseTimestampBytes(buf: Uint8Array, s: number, e: number): ParsedTs | undefined {
  if (e - s < 10) return undefined;
  const days = parseDateAt(buf, s);
  if (days === undefined) return undefined;
  let secs = days * 86400;
  let nanos = 0;
  let fracDigits = 0;
  let hasTz = false;
  let i = s + 10;
  if (i < e) {
    const sep = buf[i];
    if ((sep !== 0x54 && sep !== 0x74 && sep !== 0x20) || e - i < 6) return undefined;
    const hh = digit2(buf, i + 1);
    const mm = digit2(buf, i + 4);
    if (hh < 0 || hh > 23 || buf[i + 3] !== 0x3a || mm < 0 || mm > 59) return undefined;
    secs += hh * 3600 + mm * 60;
    i += 6;
    if (i < e && buf[i] === 0x3a) {
      const ss = digit2(buf, i + 1);
      if (ss < 0 || ss > 60 || i + 3 > e) return undefined;
      secs += ss;
      i += 3;
      if (i < e && (buf[i] === 0x2e || buf[i] === 0x2c)) {
        i++;
        const fs0 = i;
        while (i < e && buf[i]! >= 48 && buf[i]! <= 57) {
          if (i - fs0 < 9) nanos = nanos * 10 + (buf[i]! - 48);
          i++;
        }
        fracDigits = i - fs0;
        if (fracDigits === 0) return undefined;
        if (fracDigits < 9) nanos *= POW10[9 - fracDigits]!;
      }
    }
    if (i < e) {
      const c = buf[i];
      if (c === 0x5a || c === 0x7a) {
        hasTz = true;
        i++;
      } else if (c === 0x2b || c === 0x2d) {
        const oh = digit2(buf, i + 1);
        if (oh < 0 || oh > 23 || i + 3 > e) return undefined;
        let om = 0;
        i += 3;
        if (i < e && buf[i] === 0x3a) i++;
        if (i < e) {
          om = digit2(buf, i);
          if (om < 0 || om > 59 || i + 2 > e) return undefined;
          i += 2;
        }
        const off = (oh * 3600 + om * 60) * (c === 0x2d ? -1 : 1);
        secs -= off;
        hasTz = true;
      }
    }
    if (i !== e) return undefined;
  }
  tsScratch.secs = secs;
  tsScratch.nanos = nanos;
  tsScratch.hasTz = hasTz;
  tsScratch.fracDigits = fracDigits;
  return tsScratch;
}

export const NANOS_PER: Record<TimeUnit, number> = { s: 1e9, ms: 1e6, us: 1e3, ns: 1 };
export const TICKS_PER_SEC: Record<TimeUnit, number> = { s: 1, ms: 1e3, us: 1e6, ns: 1e9 };

// Calendar arithmetic for date (days since epoch) and timestamp (integer ticks of a unit since
// epoch) values: exact integer math, proleptic Gregorian, no Date objects in the loops.
import * as arrow from 'apache-arrow';

export type Unit = 's' | 'ms' | 'us' | 'ns';

export const TICKS_PER_SECOND: Record<Unit, bigint> = { s: 1n, ms: 1000n, us: 1000000n, ns: 1000000000n };
export const TICKS_PER_DAY: Record<Unit, bigint> = {
  s: 86400n,
  ms: 86400000n,
  us: 86400000000n,
  ns: 86400000000000n,
};
const FRACTION_DIGITS: Record<Unit, number> = { s: 0, ms: 3, us: 6, ns: 9 };

export function unitOf(t: arrow.DataType): Unit {
  switch ((t as arrow.Timestamp).unit) {
    case arrow.TimeUnit.SECOND:
      return 's';
    case arrow.TimeUnit.MILLISECOND:
      return 'ms';
    case arrow.TimeUnit.MICROSECOND:
      return 'us';
    default:
      return 'ns';
  }
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
export function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

export function civilFromDays(z: number): [number, number, number] {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

function formatYear(y: number): string {
  return y < 0 ? `-${pad(-y, 4)}` : y > 9999 ? `+${y}` : pad(y, 4);
}

/** 'YYYY-MM-DD'. */
export function formatDate(days: number): string {
  const [y, m, d] = civilFromDays(days);
  return `${formatYear(y)}-${pad(m, 2)}-${pad(d, 2)}`;
}

export function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/**
 * ISO 8601: 'YYYY-MM-DDTHH:MM:SS' plus as many fraction digits as the unit has; tz-aware values
 * are rendered as the UTC instant with a 'Z' suffix, naive ones without suffix.
 */
export function formatTimestamp(v: bigint, unit: Unit, tz: string | null): string {
  const perDay = TICKS_PER_DAY[unit];
  const perSec = TICKS_PER_SECOND[unit];
  const days = floorDiv(v, perDay);
  const rem = v - days * perDay;
  const secs = Number(rem / perSec);
  const frac = rem % perSec;
  const hh = Math.floor(secs / 3600),
    mm = Math.floor((secs % 3600) / 60),
    ss = secs % 60;
  let s = `${formatDate(Number(days))}T${pad(hh, 2)}:${pad(mm, 2)}:${pad(ss, 2)}`;
  if (FRACTION_DIGITS[unit] > 0) s += `.${frac.toString().padStart(FRACTION_DIGITS[unit], '0')}`;
  return tz ? `${s}Z` : s;
}

function validYmd(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const dim = [31, y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!;
  return d <= dim;
}

const DATE_RE = /^\s*([+-]?\d{4,6})-(\d{1,2})-(\d{1,2})\s*$/;

/** 'YYYY-MM-DD' -> days since epoch, or null when malformed / not a real date. */
export function parseDate(s: string): number | null {
  const m = DATE_RE.exec(s);
  if (!m) return null;
  const y = Number(m[1]),
    mo = Number(m[2]),
    d = Number(m[3]);
  if (!validYmd(y, mo, d)) return null;
  return daysFromCivil(y, mo, d);
}

const TS_RE = /^\s*([+-]?\d{4,6})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$/;

/**
 * ISO-like timestamp -> ticks of `unit` since epoch, or null. A zone offset converts to UTC; a value
 * without one is taken as UTC wall time. Extra fraction digits beyond the unit are truncated.
 */
export function parseTimestamp(s: string, unit: Unit): bigint | null {
  const m = TS_RE.exec(s);
  if (!m) return null;
  const y = Number(m[1]),
    mo = Number(m[2]),
    d = Number(m[3]);
  if (!validYmd(y, mo, d)) return null;
  const hh = m[4] === undefined ? 0 : Number(m[4]);
  const mi = m[5] === undefined ? 0 : Number(m[5]);
  const ss = m[6] === undefined ? 0 : Number(m[6]);
  if (hh > 23 || mi > 59 || ss > 60) return null;
  let offsetMin = 0;
  const z = m[8];
  if (z && z !== 'Z' && z !== 'z') {
    const sign = z[0] === '-' ? -1 : 1;
    const digits = z.slice(1).replace(':', '');
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + (digits.length > 2 ? Number(digits.slice(2, 4)) : 0));
  }
  const perSec = TICKS_PER_SECOND[unit];
  const fd = FRACTION_DIGITS[unit];
  let frac = 0n;
  if (m[7] !== undefined && fd > 0) frac = BigInt(m[7].slice(0, fd).padEnd(fd, '0'));
  const seconds = BigInt(daysFromCivil(y, mo, d)) * 86400n + BigInt(hh * 3600 + mi * 60 + ss - offsetMin * 60);
  return seconds * perSec + frac;
}

/** Ticks of `unit` of a JS Date (millisecond precision). */
export function ticksFromMillis(ms: number, unit: Unit): bigint {
  const b = BigInt(Math.trunc(ms));
  switch (unit) {
    case 's':
      return floorDiv(b, 1000n);
    case 'ms':
      return b;
    case 'us':
      return b * 1000n;
    case 'ns':
      return b * 1000000n;
  }
}

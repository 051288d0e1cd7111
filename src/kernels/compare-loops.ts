// Comparison loops, one function per array family. V8 keeps a loop fast only while it sees at most
// four typed-array classes, and never when bigint and number arrays mix; so Float64Array, Int32Array
// and int64-as-pairs each get their own copy, and everything else shares the generic one.
// Each returns how many leading rows it filled (a multiple of 8); callers finish the tail.
// The copies are identical but for their types: edit them together.
export type CmpOp = 'eq' | 'neq' | 'lt' | 'le' | 'gt' | 'ge';

/** float64 operands. */
function cmpF64(op: CmpOp, a: Float64Array, b: Float64Array, scalar: boolean, out: Uint8Array, n: number): number {
  const s = b[0]!, full = n & ~7;
  let i = 0;
  if (scalar) {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === s) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== s) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < s) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= s) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > s) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= s) << k; out[i >> 3] = m; } break;
    }
  } else {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= b[i + k]!) << k; out[i >> 3] = m; } break;
    }
  }
  return i;
}
/** int32 / date operands. */
function cmpI32(op: CmpOp, a: Int32Array, b: Int32Array, scalar: boolean, out: Uint8Array, n: number): number {
  const s = b[0]!, full = n & ~7;
  let i = 0;
  if (scalar) {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === s) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== s) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < s) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= s) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > s) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= s) << k; out[i >> 3] = m; } break;
    }
  } else {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= b[i + k]!) << k; out[i >> 3] = m; } break;
    }
  }
  return i;
}
/** Any other number arrays, and mixed bigint/number (JS compares those exactly). */
function cmpNum(op: CmpOp, a: ArrayLike<number>, b: ArrayLike<number>, scalar: boolean, out: Uint8Array, n: number): number {
  const s = b[0]!, full = n & ~7;
  let i = 0;
  if (scalar) {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === s) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== s) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < s) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= s) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > s) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= s) << k; out[i >> 3] = m; } break;
    }
  } else {
    switch (op) {
      case 'eq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! === b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'neq': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! !== b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'lt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! < b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'le': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! <= b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'gt': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! > b[i + k]!) << k; out[i >> 3] = m; } break;
      case 'ge': for (; i < full; i += 8) { let m = 0; for (let k = 0; k < 8; k++) m |= +(a[i + k]! >= b[i + k]!) << k; out[i >> 3] = m; } break;
    }
  }
  return i;
}
/** Signed 64-bit values as little-endian int32 pairs (hi word signed, lo word unsigned): no BigInt per row. */
function cmpPairs(op: CmpOp, a: Int32Array, b: Int32Array, scalar: boolean, out: Uint8Array, n: number): number {
  const full = n & ~7;
  let i = 0;
  switch (op) {
    case 'eq':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah === bh) & +(al === bl)) << k;
        }
        out[i >> 3] = m;
      }
      break;
    case 'neq':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah !== bh) | +(al !== bl)) << k;
        }
        out[i >> 3] = m;
      }
      break;
    case 'lt':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah < bh) | (+(ah === bh) & +(al < bl))) << k;
        }
        out[i >> 3] = m;
      }
      break;
    case 'le':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah < bh) | (+(ah === bh) & +(al <= bl))) << k;
        }
        out[i >> 3] = m;
      }
      break;
    case 'gt':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah > bh) | (+(ah === bh) & +(al > bl))) << k;
        }
        out[i >> 3] = m;
      }
      break;
    case 'ge':
      for (; i < full; i += 8) {
        let m = 0;
        for (let k = 0; k < 8; k++) {
          const j = 2 * (i + k), q = scalar ? 0 : j;
          const ah = a[j + 1]!, al = a[j]! >>> 0, bh = b[q + 1]!, bl = b[q]! >>> 0;
          m |= (+(ah > bh) | (+(ah === bh) & +(al >= bl))) << k;
        }
        out[i >> 3] = m;
      }
      break;
  }
  return i;
}
/** Remaining rows one at a time (any values, including bigint vs number). */
function cmpTail(op: CmpOp, a: ArrayLike<number>, b: ArrayLike<number>, scalar: boolean, out: Uint8Array, from: number, n: number): void {
  for (let i = from; i < n; i++) {
    const x = a[i]!, y = scalar ? b[0]! : b[i]!;
    let r: boolean;
    switch (op) {
      // biome-ignore lint/suspicious/noDoubleEquals: mixed bigint/number operands compare by value with ==
      case 'eq': r = x == y; break;
      // biome-ignore lint/suspicious/noDoubleEquals: as above
      case 'neq': r = x != y; break;
      case 'lt': r = x < y; break;
      case 'le': r = x <= y; break;
      case 'gt': r = x > y; break;
      default: r = x >= y; break;
    }
    if (r) out[i >> 3]! |= 1 << (i & 7);
  }
}

/**
 * out bit i = a[i] op b[i] (b[0] when scalar). Arrays hold numbers or bigints; both sides of one
 * family when the caller coerced them (mixed number/bigint falls back to exact per-row compares).
 */
export function compareNumbers(op: CmpOp, a: ArrayLike<number>, b: ArrayLike<number>, scalar: boolean, out: Uint8Array, n: number): void {
  let done = 0;
  if (a instanceof Float64Array && b instanceof Float64Array) done = cmpF64(op, a, b, scalar, out, n);
  else if (a instanceof Int32Array && b instanceof Int32Array) done = cmpI32(op, a, b, scalar, out, n);
  else if (a instanceof BigInt64Array && b instanceof BigInt64Array) {
    done = cmpPairs(op, new Int32Array(a.buffer, a.byteOffset, n * 2), new Int32Array(b.buffer, b.byteOffset, b.length * 2), scalar, out, n);
  } else if (!(a instanceof BigInt64Array || a instanceof BigUint64Array || b instanceof BigInt64Array || b instanceof BigUint64Array)) {
    done = cmpNum(op, a, b, scalar, out, n);
  }
  cmpTail(op, a, b, scalar, out, done, n);
}

// Arithmetic loops, one function per array family (see compare-loops.ts for why: V8 loops stay fast
// only while monomorphic-ish, and bigint arrays must never share a loop with number arrays).
// `mode` 0: array op array, 1: array op scalar b[0], 2: scalar a[0] op array. The copies are
// identical but for their types: edit them together.
export type ArithOp = 'add' | 'sub' | 'mul' | 'div' | 'mod';
type NumArray = Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array | Float32Array | Float64Array;

/** float64. */
function arithF64(op: ArithOp, a: Float64Array, b: Float64Array, out: Float64Array, n: number, mode: number): void {
  const sa = a[0]!, sb = b[0]!;
  switch (op) {
    case 'add':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! + sb;
      else for (let i = 0; i < n; i++) out[i] = sa + b[i]!;
      return;
    case 'sub':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! - sb;
      else for (let i = 0; i < n; i++) out[i] = sa - b[i]!;
      return;
    case 'mul':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! * sb;
      else for (let i = 0; i < n; i++) out[i] = sa * b[i]!;
      return;
    case 'div':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! / b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! / sb;
      else for (let i = 0; i < n; i++) out[i] = sa / b[i]!;
      return;
    case 'mod':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! % b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! % sb;
      else for (let i = 0; i < n; i++) out[i] = sa % b[i]!;
      return;
  }
}
/** int32 (products via Math.imul: exact low 32 bits). */
function arithI32(op: ArithOp, a: Int32Array, b: Int32Array, out: Int32Array, n: number, mode: number, imul: boolean): void {
  const sa = a[0]!, sb = b[0]!;
  switch (op) {
    case 'add':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! + sb;
      else for (let i = 0; i < n; i++) out[i] = sa + b[i]!;
      return;
    case 'sub':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! - sb;
      else for (let i = 0; i < n; i++) out[i] = sa - b[i]!;
      return;
    case 'mul':
      if (imul) {
        if (mode === 0) for (let i = 0; i < n; i++) out[i] = Math.imul(a[i]!, b[i]!);
        else if (mode === 1) for (let i = 0; i < n; i++) out[i] = Math.imul(a[i]!, sb);
        else for (let i = 0; i < n; i++) out[i] = Math.imul(sa, b[i]!);
        return;
      }
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! * sb;
      else for (let i = 0; i < n; i++) out[i] = sa * b[i]!;
      return;
    case 'div':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! / b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! / sb;
      else for (let i = 0; i < n; i++) out[i] = sa / b[i]!;
      return;
    case 'mod':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! % b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! % sb;
      else for (let i = 0; i < n; i++) out[i] = sa % b[i]!;
      return;
  }
}
/** Other number arrays (float32, 8/16-bit ints, uint32 with imul). */
function arithNum(op: ArithOp, a: NumArray, b: NumArray, out: NumArray, n: number, mode: number, imul: boolean): void {
  const sa = a[0]!, sb = b[0]!;
  switch (op) {
    case 'add':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! + sb;
      else for (let i = 0; i < n; i++) out[i] = sa + b[i]!;
      return;
    case 'sub':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! - sb;
      else for (let i = 0; i < n; i++) out[i] = sa - b[i]!;
      return;
    case 'mul':
      if (imul) {
        if (mode === 0) for (let i = 0; i < n; i++) out[i] = Math.imul(a[i]!, b[i]!);
        else if (mode === 1) for (let i = 0; i < n; i++) out[i] = Math.imul(a[i]!, sb);
        else for (let i = 0; i < n; i++) out[i] = Math.imul(sa, b[i]!);
        return;
      }
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! * sb;
      else for (let i = 0; i < n; i++) out[i] = sa * b[i]!;
      return;
    case 'div':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! / b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! / sb;
      else for (let i = 0; i < n; i++) out[i] = sa / b[i]!;
      return;
    case 'mod':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! % b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! % sb;
      else for (let i = 0; i < n; i++) out[i] = sa % b[i]!;
      return;
  }
}
/** 64-bit ints (storing into the typed array wraps, as two's complement). No div/mod here. */
function arithBig(op: ArithOp, a: BigInt64Array | BigUint64Array, b: BigInt64Array | BigUint64Array, out: BigInt64Array | BigUint64Array, n: number, mode: number): void {
  const sa = a[0]!, sb = b[0]!;
  switch (op) {
    case 'add':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! + sb;
      else for (let i = 0; i < n; i++) out[i] = sa + b[i]!;
      return;
    case 'sub':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! - sb;
      else for (let i = 0; i < n; i++) out[i] = sa - b[i]!;
      return;
    case 'mul':
      if (mode === 0) for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!;
      else if (mode === 1) for (let i = 0; i < n; i++) out[i] = a[i]! * sb;
      else for (let i = 0; i < n; i++) out[i] = sa * b[i]!;
      return;
  }
}
/** out = a op b over n rows; all three arrays of one type (the evaluator coerced the operands). */
export function arithmetic(op: ArithOp, a: NumArray | BigInt64Array | BigUint64Array, b: NumArray | BigInt64Array | BigUint64Array,
  out: NumArray | BigInt64Array | BigUint64Array, n: number, mode: number): void {
  if (out instanceof Float64Array) arithF64(op, a as Float64Array, b as Float64Array, out, n, mode);
  else if (out instanceof Int32Array) arithI32(op, a as Int32Array, b as Int32Array, out, n, mode, op === 'mul');
  else if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    if (op === 'div' || op === 'mod') throw new Error(`internal: ${op} has no bigint loop`);
    arithBig(op, a as BigInt64Array, b as BigInt64Array, out, n, mode);
  } else arithNum(op, a as NumArray, b as NumArray, out, n, mode, op === 'mul' && out instanceof Uint32Array);
}

// Deterministic random test data (an LCG), so failing cases reproduce exactly.
export function seededRandom(seed: number) {
  let s = seed;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x80000000;
  };
  return {
    rnd,
    ri: (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1)),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!,
    maybe: <T>(f: () => T, pNull = 0.2): T | null => (rnd() < pNull ? null : f()),
  };
}

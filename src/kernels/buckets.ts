// Row indices grouped by bucket (a stable counting sort): bucket k's rows, in their input order, are
// idx[starts[k] .. starts[k + 1]). Hash exchanges and aggregation spill split batches with it.
export function bucketOrder(buckets: Int32Array, n: number): { idx: Int32Array; starts: Int32Array } {
  const starts = new Int32Array(n + 1);
  for (let i = 0; i < buckets.length; i++) starts[buckets[i]! + 1]!++;
  for (let k = 0; k < n; k++) starts[k + 1]! += starts[k]!;
  const idx = new Int32Array(buckets.length);
  const pos = starts.slice(0, n);
  for (let i = 0; i < buckets.length; i++) idx[pos[buckets[i]!]!++] = i;
  return { idx, starts };
}

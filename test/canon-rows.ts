// Rows in a canonical, order-free form, for comparing fanout's results with DuckDB's (and one runner's
// with another's): bigint -> number, floats to 9 significant digits, lists sorted when asked.
export function canonRows(rows: readonly Record<string, unknown>[], opts: { sortLists?: boolean; ordered?: boolean } = {}): string[] {
  const norm = (v: unknown): unknown => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'bigint') return Number(v);
    if (typeof v === 'number') return Number.isInteger(v) ? v : Number(v.toPrecision(9));
    if (Array.isArray(v)) {
      const xs = v.map(norm);
      return opts.sortLists ? xs.map((x) => JSON.stringify(x)).sort() : xs;
    }
    return v;
  };
  const out = rows.map((r) =>
    JSON.stringify(
      Object.keys(r)
        .sort()
        .map((k) => [k, norm(r[k])]),
    ),
  );
  return opts.ordered ? out : out.sort();
}

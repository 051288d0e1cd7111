// Tolerated failures of a serverless run: how many partitions may fail while the run still commits
// what succeeded. The Distributed Map stops a stage early once its threshold is exceeded
// (ToleratedFailurePercentagePath / ToleratedFailureCountPath); Finalize is the authority: it
// commits only when the partitions missing from the last stage are within the tolerance, and then
// writes a manifest that says `complete: false` and lists them.

export interface FailureTolerance {
  /** Partitions that may fail, in percent of the run's partitions (0-100). */
  toleratedFailurePercentage?: number;
  /** Partitions that may fail, as a count. */
  toleratedFailureCount?: number;
}

/** The tolerance, checked: a clear error naming the option and where it came from. */
export function checkTolerance(t: FailureTolerance | undefined, where: string): FailureTolerance | undefined {
  if (!t) return undefined;
  const out: FailureTolerance = {};
  const pct = t.toleratedFailurePercentage;
  if (pct !== undefined) {
    if (typeof pct !== 'number' || !Number.isFinite(pct) || pct < 0 || pct > 100)
      throw new RangeError(`${where}: toleratedFailurePercentage must be a number from 0 to 100, got ${JSON.stringify(pct)}`);
    out.toleratedFailurePercentage = pct;
  }
  const count = t.toleratedFailureCount;
  if (count !== undefined) {
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0)
      throw new RangeError(`${where}: toleratedFailureCount must be a non-negative integer, got ${JSON.stringify(count)}`);
    out.toleratedFailureCount = count;
  }
  return out.toleratedFailurePercentage === undefined && out.toleratedFailureCount === undefined ? undefined : out;
}

/** Whether a run tolerates any failed partition at all. */
export function toleratesFailures(t: FailureTolerance | undefined): boolean {
  return (t?.toleratedFailurePercentage ?? 0) > 0 || (t?.toleratedFailureCount ?? 0) > 0;
}

/**
 * The Distributed Map's thresholds for a stage of `partitions` items. As on AWS, a Map Run fails when
 * either threshold is exceeded, so an unset one must not bind: count = all items, percentage = 100.
 */
export function mapThresholds(t: FailureTolerance | undefined, partitions: number): { toleratedFailurePercentage: number; toleratedFailureCount: number } {
  const pct = t?.toleratedFailurePercentage;
  const count = t?.toleratedFailureCount;
  if (pct === undefined && count === undefined) return { toleratedFailurePercentage: 0, toleratedFailureCount: 0 };
  return { toleratedFailurePercentage: pct ?? 100, toleratedFailureCount: count ?? partitions };
}

/** Whether `failed` of `total` partitions are within the tolerance (AWS: fails when a threshold is exceeded). */
export function withinTolerance(t: FailureTolerance | undefined, failed: number, total: number): boolean {
  if (failed === 0) return true;
  if (!toleratesFailures(t)) return false;
  const { toleratedFailurePercentage, toleratedFailureCount } = mapThresholds(t, total);
  return failed <= toleratedFailureCount && (failed / Math.max(1, total)) * 100 <= toleratedFailurePercentage;
}

/** The tolerance in words, for errors and warnings. */
export function toleranceText(t: FailureTolerance | undefined): string {
  const parts: string[] = [];
  if (t?.toleratedFailurePercentage !== undefined) parts.push(`toleratedFailurePercentage ${t.toleratedFailurePercentage}`);
  if (t?.toleratedFailureCount !== undefined) parts.push(`toleratedFailureCount ${t.toleratedFailureCount}`);
  return parts.length ? parts.join(', ') : 'no tolerated failures';
}

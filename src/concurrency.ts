// Bounded concurrency for I/O fan-out (S3 requests, copies, marker reads): a run can have thousands
// of objects, and an unbounded Promise.all would open as many requests at once.

/**
 * `fn` over `items` with at most `limit` calls in flight; the results are in input order. After a
 * failure no new item starts: the calls in flight finish, then the first error is thrown, so no
 * call started here outlives it (a caller that cleans up after a failure sees everything done).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`mapLimit: limit must be a positive integer, got ${limit}`);
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const err = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (err) throw err.reason;
  return out;
}

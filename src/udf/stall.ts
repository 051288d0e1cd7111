// Stalled UDF calls: keeps the process alive while a call is pending and warns about calls pending too long.

interface InFlightCall {
  udf: string;
  where: string;
  since: number;
  warnedAt: number;
}

const inFlight = new Set<InFlightCall>();
let watchdog: ReturnType<typeof setInterval> | null = null;

/** How long a UDF call may be pending before a warning (and again after each such period). */
function stallWarnMs(): number {
  const v = Number(process.env['FANOUT_STALL_WARN_MS']);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

/**
 * Tracks a UDF call (one batch) while it runs. While any call is in flight a ref'd interval runs:
 * it keeps the process alive (a pending UDF promise holds no handle, so node would otherwise exit
 * silently with code 0, or 13 under top-level await) and warns about calls pending too long.
 */
export function trackCall(call: InFlightCall): () => void {
  inFlight.add(call);
  if (!watchdog) {
    const period = stallWarnMs();
    watchdog = setInterval(
      () => {
        const now = Date.now();
        for (const c of inFlight) {
          if (now - (c.warnedAt || c.since) < period) continue;
          c.warnedAt = now;
          console.warn(
            `fanout: UDF '${c.udf}' has not returned for ${Math.round((now - c.since) / 1000)} s (${c.where}); still waiting (set the UDF's timeoutMs to fail such calls)`,
          );
        }
      },
      Math.max(10, Math.min(period, 1000)),
    );
  }
  return () => {
    inFlight.delete(call);
    if (!inFlight.size && watchdog) {
      clearInterval(watchdog);
      watchdog = null;
    }
  };
}

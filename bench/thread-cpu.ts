// Per-thread CPU for the benches that split a query's cost between the calling thread and workers.
import { readdirSync, readFileSync } from 'node:fs';

/** CPU ms of each thread of this process (Linux schedstat), by thread id. */
export function threadCpus(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      out.set(tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

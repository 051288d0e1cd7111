// CPU time of a harness bench: this process (all threads) and its child processes (the s3rver child).
import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU ms used so far by this process (all threads) and its child processes (the s3rver child):
 * on a shared machine CPU time per partition is steadier than wall time. Children via /proc (Linux).
 */
export function cpuMs(): { own: number; children: number } {
  const u = process.cpuUsage();
  let children = 0;
  try {
    for (const t of readdirSync(`/proc/${process.pid}/task`)) {
      for (const pid of readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean)) {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        children += ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in USER_HZ (100)
      }
    }
  } catch {
    children = Number.NaN; // not Linux
  }
  return { own: (u.user + u.system) / 1000, children };
}

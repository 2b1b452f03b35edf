// What the bench pages' scripts share: the CPU time of Chromium's processes, read from /proc.
import { readFileSync, readdirSync } from 'node:fs';

// CPU seconds (user + system) of every descendant of this node process, by Chromium process type.
export function chromiumCpu() {
  const procs = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      procs.set(+pid, { ppid: +f[1], cpu: (+f[11] + +f[12]) / 100, type: (cmd.match(/--type=([a-z-]+)/) || [, 'browser'])[1] });
    } catch { /* gone */ }
  }
  const mine = (pid) => { for (let p = pid; p > 1; p = procs.get(p)?.ppid ?? 0) if (p === process.pid) return true; return false; };
  const sum = {};
  for (const [pid, p] of procs) if (pid !== process.pid && mine(pid)) sum[p.type] = (sum[p.type] || 0) + p.cpu;
  return sum;
}

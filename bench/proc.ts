// Processes seen from outside, through /proc (Linux): CPU time and resident memory of a
// process, and the processes of the broker and the database, so each figure can show the
// CPU the services spent beside the nodes'.

import { readdirSync, readFileSync } from 'node:fs';

/** Linux reports /proc/<pid>/stat times in USER_HZ, 100 per second on every architecture it runs on. */
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds of a process so far (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** A process's CPU seconds so far in its own code (user) and in the kernel on its behalf (system); 0 once it is gone. */
export function cpuSplit(pid: number): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: the fields start after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / TICKS_PER_SECOND, system: Number(fields[12]) / TICKS_PER_SECOND };
  } catch {
    return { user: 0, system: 0 };
  }
}

/** CPU seconds the machine's processes spent so far, and the hypervisor took (/proc/stat: user, nice, system, irq, softirq, steal); NaN off Linux. */
export function machineCpuSeconds(): number {
  try {
    const fields = /^cpu\s+(.+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]!.split(/\s+/).map(Number);
    return (fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

export const totalCpuSeconds = (pids: readonly number[]) => pids.reduce((s, p) => s + cpuSeconds(p), 0);

/** Resident set size, bytes (NaN once it is gone). */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

function commandLines(): { pid: number; argv: string[] }[] {
  const out: { pid: number; argv: string[] }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({ pid: Number(name), argv: readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean) });
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** The Kafka broker's JVM on this machine and its version (from the jar on its class path), if one runs here. */
export function kafkaBroker(): { pid: number; version?: string } | undefined {
  const broker = commandLines().find((p) => p.argv.includes('kafka.Kafka'));
  if (!broker) return undefined;
  const cp = broker.argv[broker.argv.indexOf('-cp') + 1] ?? '';
  let version: string | undefined;
  for (const dir of cp.split(':').map((e) => e.replace(/\/\*$/, ''))) {
    try {
      const jar = readdirSync(dir).find((f) => /^kafka_[\d.]+-[\d.]+\.jar$/.test(f));
      if (jar) { version = /-([\d.]+)\.jar$/.exec(jar)![1]; break; }
    } catch { /* not a directory */ }
  }
  return { pid: broker.pid, version };
}

/** Every PostgreSQL server process on this machine (the postmaster, its workers and backends). */
export function postgresPids(): number[] {
  return commandLines().filter((p) => /(^|\/)postgres(:|$)/.test(p.argv[0] ?? '')).map((p) => p.pid);
}

// What every benchmark of `npm run bench` shares: env knobs, progress lines and plain-text tables.
import { readFileSync } from 'node:fs'
import { availableParallelism, cpus, release } from 'node:os'

/** A number from the environment, or `fallback` when unset; throws on anything below `min`. */
export function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min)
    throw new Error(`${name} must be a number >= ${min} (got ${raw})`)
  return value
}

/** Progress goes to stderr; the figures go to stdout. */
export const log = (line: string) => process.stderr.write(`bench: ${line}\n`)

/** A left-aligned first column, right-aligned others, a rule under the header row. */
export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  const line = (r: string[]) =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ')
  const [head, ...body] = rows
  return [line(head ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

/** The machine a run happened on, for the printed header and the JSON. */
export function machineInfo() {
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    os: `${process.platform} ${release()}`,
  }
}

/** Jiffies from the first line of /proc/stat (all CPUs); undefined where there is no /proc. */
export interface CpuTicks {
  busy: number
  steal: number
  total: number
}

export function cpuTicks(): CpuTicks | undefined {
  let line: string
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
  } catch {
    return undefined
  }
  // cpu user nice system idle iowait irq softirq steal (guest time is already inside user)
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number)
  if (v.length < 8 || v.some((n) => !Number.isFinite(n))) return undefined
  const at = (i: number) => v[i] ?? 0
  return {
    busy: at(0) + at(1) + at(2) + at(5) + at(6),
    steal: at(7),
    total: v.reduce((a, b) => a + b, 0),
  }
}

/**
 * What the whole machine did since `before`, in % of one CPU (200 % = both of 2 CPUs busy): every process,
 * ours and everyone else's, plus the time the hypervisor gave to other guests (steal).
 */
export function machineCpuSince(
  before: CpuTicks | undefined,
  /** The machine's CPU count; pass it when this process is pinned (availableParallelism() then counts its own). */
  cpus = availableParallelism(),
): { busyPercent: number; stealPercent: number } {
  const after = cpuTicks()
  if (!before || !after || after.total <= before.total)
    return { busyPercent: Number.NaN, stealPercent: Number.NaN }
  const total = after.total - before.total
  return {
    busyPercent: ((after.busy - before.busy) / total) * cpus * 100,
    stealPercent: ((after.steal - before.steal) / total) * cpus * 100,
  }
}

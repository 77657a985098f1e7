/**
 * Quantities in manifests: sizes ("64 MiB"), durations ("8s", "1m30s") and CPU shares
 * (0.5 or "50%"). Each parser returns `undefined` for text it does not accept, so the
 * validator can say what was expected.
 */

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1e3,
  m: 60e3,
  h: 3600e3,
  d: 86400e3
}

/**
 * Bytes in a size such as `"64 MiB"`, `"1.5GB"` or `4096` (bytes). Units: B, KB, MB, GB,
 * TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), in any case.
 *
 * @example parseSize('64 MiB') // 67108864
 */
export function parseSize (value: string | number): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value)
  if (match === null) {
    return undefined
  }
  const unit = (match[2] ?? '').toLowerCase()
  const factor = unit === '' ? 1 : SIZE_UNITS[unit]
  if (factor === undefined) {
    return undefined
  }
  return Math.round(Number(match[1]) * factor)
}

/**
 * Milliseconds in a duration such as `"8s"`, `"250ms"`, `"1m30s"` or `"1.5h"`.
 *
 * @example parseDuration('1m30s') // 90000
 */
export function parseDuration (value: string): number | undefined {
  const text = value.trim()
  if (text === '') {
    return undefined
  }
  const part = /(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)\s*/y
  let total = 0
  let index = 0
  while (index < text.length) {
    part.lastIndex = index
    const match = part.exec(text)
    if (match === null) {
      return undefined
    }
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN)
    index = part.lastIndex
  }
  return Number.isFinite(total) ? total : undefined
}

/**
 * A CPU share as a fraction of one core: `0.5` or `"50%"` → 0.5.
 */
export function parseCpuQuota (value: string | number): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value > 0 ? value : undefined
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value)
  if (match === null) {
    return undefined
  }
  const share = Number(match[1]) / 100
  return share > 0 ? share : undefined
}

/** A size for people: 67108864 → "64 MiB" */
export function formatSize (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
    value /= 1024
    unit++
  }
  return `${value} ${units[unit] ?? 'B'}`
}

/** A duration for people: 90000 → "1m30s", 250 → "250ms" */
export function formatDuration (ms: number): string {
  if (ms < 1000) {
    return `${ms}ms`
  }
  const parts: string[] = []
  let rest = ms
  for (const [unit, size] of [['h', 3600e3], ['m', 60e3], ['s', 1e3]] as const) {
    if (rest >= size) {
      const n = Math.floor(rest / size)
      parts.push(`${n}${unit}`)
      rest -= n * size
    }
  }
  if (rest > 0) {
    parts.push(`${rest}ms`)
  }
  return parts.join('')
}

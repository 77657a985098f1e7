/**
 * The part of manifest that loads no parser or schema: quantities, for commands that
 * must start fast.
 */
export { formatDuration, formatSize, parseCpuQuota, parseDuration, parseSize } from './quantity.ts'

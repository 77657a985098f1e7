/**
 * V8 CPU profiles (what node:inspector's `Profiler.stop` returns) as pprof: the
 * gzipped profile.proto that `go tool pprof`, Pyroscope and most profilers read.
 */
import { promisify } from 'node:util'
import { gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib'
import type { Profiler } from 'node:inspector'
import { Function as PprofFunction, Line, Location, Profile, Sample, StringTable, ValueType, type LabelInput } from 'pprof-format'

const gzip = promisify(gzipCallback)
const gunzip = promisify(gunzipCallback)

/** One thread's V8 CPU profile, and the labels its samples carry in pprof */
export interface CpuProfileSource {
  readonly profile: Profiler.Profile
  /** e.g. `{ thread: '7' }`: lets `go tool pprof -tagfocus` pick one worker */
  readonly labels?: Readonly<Record<string, string>>
}

/** Options of {@link cpuProfileToPprof} */
export interface CpuPprofOptions {
  /**
   * The sampling interval the profiles were taken with, in microseconds: the pprof `period`.
   * @default 1000
   */
  readonly intervalUs?: number
  /**
   * When profiling started (V8 profiles carry monotonic times only).
   * @default the current time less the profiles' duration
   */
  readonly startedAt?: Date
  /**
   * Keep the samples of a thread waiting for work (V8's `(idle)` node): they are not CPU time.
   * @default false
   */
  readonly keepIdle?: boolean
}

/** V8's pseudo-frames: the root of every stack, and the thread waiting for work */
const ROOT = '(root)'
const IDLE = '(idle)'

/**
 * Converts V8 CPU profiles (one per thread) into one pprof profile with two sample
 * types, `samples/count` and `cpu/nanoseconds` (the default). Each V8 sample becomes
 * one pprof sample whose stack runs from the sampled frame to the outermost one, and
 * whose CPU time is the time until the thread's next sample. Frames are keyed by
 * function, file, line and column (wasm frames: `wasm-function[N]` or the name from
 * the name section, `wasm://wasm/…`, and the function's byte offset as column).
 *
 * @example
 * ```ts
 * const { profile } = await post('Profiler.stop')
 * const bytes = await encodePprof(cpuProfileToPprof([{ profile, labels: { thread: '1' } }]))
 * await writeFile('cpu.pb.gz', bytes)
 * ```
 */
export function cpuProfileToPprof (sources: readonly CpuProfileSource[], options: CpuPprofOptions = {}): Profile {
  const intervalUs = options.intervalUs ?? 1000
  if (!(intervalUs > 0)) {
    throw new RangeError(`Cannot convert CPU profile: intervalUs must be above 0 (got ${intervalUs})`)
  }
  const strings = new StringTable()
  const functions = new Map<string, PprofFunction>()
  const locations = new Map<string, Location>()
  const samples: Sample[] = []
  let firstUs = Infinity
  let lastUs = -Infinity

  function locationOf (frame: Profiler.ProfileNode['callFrame']): Location {
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
    const key = `${name}\0${frame.url}\0${frame.lineNumber}\0${frame.columnNumber}`
    let location = locations.get(key)
    if (location === undefined) {
      let fn = functions.get(key)
      if (fn === undefined) {
        fn = new PprofFunction({
          id: functions.size + 1,
          name: strings.dedup(name),
          systemName: strings.dedup(name),
          filename: strings.dedup(frame.url),
          // V8 counts lines and columns from 0, pprof from 1
          startLine: frame.lineNumber + 1
        })
        functions.set(key, fn)
      }
      location = new Location({
        id: locations.size + 1,
        line: [new Line({ functionId: fn.id, line: frame.lineNumber + 1, column: frame.columnNumber + 1 })]
      })
      locations.set(key, location)
    }
    return location
  }

  for (const source of sources) {
    const { profile } = source
    const samplesOf = profile.samples ?? []
    const deltas = profile.timeDeltas ?? []
    firstUs = Math.min(firstUs, profile.startTime)
    lastUs = Math.max(lastUs, profile.endTime)
    const labels: LabelInput[] = Object.entries(source.labels ?? {}).map(([key, value]) => ({ key: strings.dedup(key), str: strings.dedup(value) }))
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
    const parents = new Map<number, number>()
    for (const node of profile.nodes) {
      for (const child of node.children ?? []) {
        parents.set(child, node.id)
      }
    }
    // a stack per node, built once: many samples share a node
    const stacks = new Map<number, number[]>()
    const stackOf = (id: number): number[] => {
      let stack = stacks.get(id)
      if (stack === undefined) {
        stack = []
        for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
          const node = nodes.get(at)
          if (node !== undefined && node.callFrame.functionName !== ROOT) {
            stack.push(Number(locationOf(node.callFrame).id))
          }
        }
        stacks.set(id, stack)
      }
      return stack
    }
    let at = profile.startTime
    for (let i = 0; i < samplesOf.length; i++) {
      at += deltas[i] ?? 0
      // the stack seen at this sample ran until the next one (or the end of the profile)
      const next = i + 1 < samplesOf.length ? at + (deltas[i + 1] ?? 0) : profile.endTime
      const id = samplesOf[i] as number
      if (options.keepIdle !== true && nodes.get(id)?.callFrame.functionName === IDLE) {
        continue
      }
      const stack = stackOf(id)
      if (stack.length === 0) {
        continue
      }
      samples.push(new Sample({ locationId: stack, value: [1, Math.max(0, Math.round((next - at) * 1000))], label: labels }))
    }
  }

  const durationUs = firstUs === Infinity ? 0 : Math.max(0, lastUs - firstUs)
  const startedAt = options.startedAt ?? new Date(Date.now() - durationUs / 1000)
  const cpu = new ValueType({ type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') })
  return new Profile({
    sampleType: [new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }), cpu],
    sample: samples,
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
    timeNanos: BigInt(startedAt.getTime()) * 1_000_000n,
    durationNanos: Math.round(durationUs * 1000),
    periodType: cpu,
    period: Math.round(intervalUs * 1000),
    defaultSampleType: cpu.type
  })
}

/** The profile as a gzipped profile.proto (the `.pb.gz` pprof files) */
export async function encodePprof (profile: Profile): Promise<Buffer> {
  return gzip(await profile.encodeAsync())
}

/** Reads a pprof file, gzipped or not */
export async function decodePprof (bytes: Uint8Array): Promise<Profile> {
  return Profile.decode(isGzip(bytes) ? await gunzip(bytes) : bytes)
}

function isGzip (bytes: Uint8Array): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b
}

export type { Profile as PprofProfile } from 'pprof-format'

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Session, type Profiler } from 'node:inspector'
import { cpuProfileToPprof, decodePprof, encodePprof, type PprofProfile } from './pprof.ts'

/** root → main (app.js:10) → hot (app.js:20) → wasm-function[3]; root → (idle) */
const V8_PROFILE: Profiler.Profile = {
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 }, children: [2, 5] },
    { id: 2, callFrame: { functionName: 'main', scriptId: '1', url: 'file:///app.js', lineNumber: 9, columnNumber: 0 }, children: [3] },
    { id: 3, callFrame: { functionName: 'hot', scriptId: '1', url: 'file:///app.js', lineNumber: 19, columnNumber: 4 }, children: [4] },
    { id: 4, callFrame: { functionName: 'wasm-function[3]', scriptId: '2', url: 'wasm://wasm/abcd1234', lineNumber: 0, columnNumber: 120 } },
    { id: 5, callFrame: { functionName: '(idle)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 } }
  ],
  startTime: 0,
  endTime: 4600,
  // at 100, 1100, 2100, 3100 (idle), 4100 µs
  samples: [3, 4, 4, 5, 2],
  timeDeltas: [100, 1000, 1000, 1000, 1000]
}

function str (profile: PprofProfile, index: number | bigint): string {
  return profile.stringTable.strings[Number(index)] ?? ''
}

/** the function names of a sample's stack, leaf first */
function stackNames (profile: PprofProfile, locationIds: ReadonlyArray<number | bigint>): string[] {
  return locationIds.map((id) => {
    const location = profile.location.find((l) => Number(l.id) === Number(id))
    const fn = profile.function.find((f) => Number(f.id) === Number(location?.line[0]?.functionId))
    return fn === undefined ? '?' : str(profile, fn.name)
  })
}

describe('cpuProfileToPprof', () => {
  it('turns each V8 sample into a pprof sample with its stack and CPU time', async () => {
    const bytes = await encodePprof(cpuProfileToPprof([{ profile: V8_PROFILE, labels: { thread: '7' } }], { startedAt: new Date(1_700_000_000_000) }))
    assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b]) // gzipped
    const profile = await decodePprof(bytes)

    assert.deepEqual(profile.sampleType.map((t) => `${str(profile, t.type)}/${str(profile, t.unit)}`), ['samples/count', 'cpu/nanoseconds'])
    assert.equal(str(profile, profile.defaultSampleType), 'cpu')
    assert.equal(Number(profile.period), 1_000_000)
    assert.equal(Number(profile.durationNanos), 4_600_000)
    assert.equal(BigInt(profile.timeNanos), 1_700_000_000_000_000_000n)

    // the idle sample is dropped; each other one lasts until the next sample
    assert.equal(profile.sample.length, 4)
    assert.deepEqual(profile.sample.map((s) => s.value.map(Number)), [[1, 1_000_000], [1, 1_000_000], [1, 1_000_000], [1, 500_000]])
    assert.deepEqual(profile.sample.map((s) => stackNames(profile, s.locationId)), [
      ['hot', 'main'],
      ['wasm-function[3]', 'hot', 'main'],
      ['wasm-function[3]', 'hot', 'main'],
      ['main']
    ])
    for (const sample of profile.sample) {
      assert.deepEqual(sample.label.map((l) => [str(profile, l.key), str(profile, l.str)]), [['thread', '7']])
    }

    // one location per frame, with file, line and column counted from 1
    assert.equal(profile.location.length, 3)
    const wasm = profile.function.find((f) => str(profile, f.name) === 'wasm-function[3]')
    assert.equal(str(profile, wasm?.filename ?? 0), 'wasm://wasm/abcd1234')
    const hot = profile.function.find((f) => str(profile, f.name) === 'hot')
    assert.equal(str(profile, hot?.filename ?? 0), 'file:///app.js')
    const hotLine = profile.location.flatMap((l) => l.line).find((l) => Number(l.functionId) === Number(hot?.id))
    assert.deepEqual([Number(hotLine?.line), Number(hotLine?.column)], [20, 5])
  })

  it('keeps idle samples when asked, and merges profiles of several threads', async () => {
    const profile = await decodePprof(await encodePprof(cpuProfileToPprof([
      { profile: V8_PROFILE, labels: { thread: '1' } },
      { profile: V8_PROFILE, labels: { thread: '2' } }
    ], { keepIdle: true, intervalUs: 500 })))
    assert.equal(profile.sample.length, 10)
    assert.equal(profile.sample.reduce((sum, s) => sum + Number(s.value[1]), 0), 2 * 4_500_000)
    // frames are shared between threads
    assert.equal(profile.location.length, 4)
    assert.equal(Number(profile.period), 500_000)
    assert.deepEqual(new Set(profile.sample.map((s) => str(profile, s.label[0]?.str ?? 0))), new Set(['1', '2']))
  })

  it('converts a real V8 profile', async () => {
    const session = new Session()
    session.connect()
    const post = async <T>(method: string, params: object = {}): Promise<T> => new Promise<T>((resolve, reject) => {
      session.post(method, params, (err, result) => { err === null ? resolve(result as T) : reject(err) })
    })
    let profile: Profiler.Profile
    try {
      await post('Profiler.enable')
      await post('Profiler.setSamplingInterval', { interval: 200 })
      await post('Profiler.start')
      busyFor(100)
      profile = (await post<{ profile: Profiler.Profile }>('Profiler.stop')).profile
    } finally {
      session.disconnect()
    }
    const pprof = await decodePprof(await encodePprof(cpuProfileToPprof([{ profile }], { intervalUs: 200 })))
    assert.ok(pprof.sample.length > 0, 'no samples')
    const names = new Set(pprof.sample.flatMap((s) => stackNames(pprof, s.locationId)))
    assert.ok(names.has('busyFor'), [...names].join(', '))
    const total = pprof.sample.reduce((sum, s) => sum + Number(s.value[1]), 0)
    // the CPU time is the time between samples: positive, and not more than the profile's wall time
    assert.ok(total > 0 && total <= (profile.endTime - profile.startTime) * 1000 + 1_000_000, `cpu total ${total} ns`)
  })
})

function busyFor (ms: number): number {
  const end = performance.now() + ms
  let n = 0
  while (performance.now() < end) {
    n += Math.sqrt(n + 1)
  }
  return n
}

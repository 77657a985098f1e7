/**
 * End to end: `omega profile --pprof` against a node running in-process, with a
 * brane kept busy by a request loop; the file must be pprof that a decoder reads.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode, adminBytes } from '../src/daemon/index.ts'
import { decodePprof, silentLogging } from '../src/observe/index.ts'
import { ROOT, cli } from './helpers.ts'

describe('omega profile --pprof', () => {
  let home = ''
  let node: LocalNode
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'omega-pprof-'))
    node = await LocalNode.start(join(ROOT, 'examples/hello/omega.toml'), { home, port: 0, logging: silentLogging() })
  })
  after(async () => {
    await node.stop()
    await rm(home, { recursive: true, force: true })
  })

  it('writes a CPU profile of a busy brane in pprof format', async () => {
    const loadDone = new AbortController()
    let answered = 0
    const load = Array.from({ length: 2 }, async () => {
      while (!loadDone.signal.aborted) {
        const res = await fetch(`${node.url}/busy`)
        assert.equal(await res.text(), 'hello from omega: /busy\n')
        answered++
      }
    })
    let shown: Awaited<ReturnType<typeof cli>>
    try {
      shown = await cli(['profile', '--brane', 'hello', '--pprof', join(home, 'hello.pb.gz'), '--seconds', '1'], home)
    } finally {
      loadDone.abort()
      await Promise.all(load)
    }
    assert.equal(shown.code, 0, shown.err)
    assert.match(shown.err, /^profiling brane hello for 1 s…\n$/)
    const file = join(home, 'hello.pb.gz')
    const match = new RegExp(`^${file.replaceAll('.', '\\.')}: [\\d.]+ [KM]?i?B, (\\d+) samples, [\\d.]+ ms of CPU across \\d workers?\\n$`).exec(shown.out)
    assert.ok(match !== null, shown.out)
    assert.ok(answered > 0, 'no request was answered while profiling')

    const profile = await decodePprof(await readFile(file))
    const str = (i: number | bigint): string => profile.stringTable.strings[Number(i)] ?? ''
    assert.equal(profile.sample.length, Number(match[1]))
    assert.ok(profile.sample.length > 50, `${profile.sample.length} samples`)
    assert.ok(profile.location.length >= 1)
    assert.deepEqual(profile.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`), ['samples/count', 'cpu/nanoseconds'])
    // every sample's stack resolves to functions, and is labelled with its brane and worker
    const functions = new Map(profile.function.map((f) => [Number(f.id), f]))
    const locations = new Map(profile.location.map((l) => [Number(l.id), l]))
    for (const sample of profile.sample) {
      assert.ok(sample.locationId.length > 0)
      for (const id of sample.locationId) {
        assert.ok(functions.has(Number(locations.get(Number(id))?.line[0]?.functionId)))
      }
      const labels = Object.fromEntries(sample.label.map((l) => [str(l.key), str(l.str)]))
      assert.equal(labels.brane, 'hello')
      assert.match(labels.thread ?? '', /^\d+$/)
    }
    // the guest's wasm runs in the workers
    assert.ok(profile.function.some((f) => str(f.filename).startsWith('wasm://')), 'no wasm frame')
  })

  it('refuses an unknown brane, a bad duration, and a GET', async () => {
    const unknown = await cli(['profile', '--brane', 'nope', '--pprof', 'nope.pb.gz', '--seconds', '1'], home)
    assert.equal(unknown.code, 11)
    assert.match(unknown.err, /Cannot profile brane "nope": no such brane is running \(running: hello\)/)
    const bad = await cli(['profile', '--brane', 'hello', '--pprof', 'x.pb.gz', '--seconds', '61'], home)
    assert.equal(bad.code, 2)
    assert.match(bad.err, /Invalid --seconds "61"/)
    await assert.rejects(adminBytes(home, '/v1/profile/cpu?brane=hello&seconds=1'), { name: 'AdminRequestError', status: 405 })
    await assert.rejects(adminBytes(home, '/v1/profile/cpu?brane=hello&seconds=0', { method: 'POST' }), { name: 'AdminRequestError', status: 400 })
  })
})

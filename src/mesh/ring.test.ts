import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Ring } from './ring.ts'

/** `n` made-up member ids and each one's view of the ring (all views the same) */
function rings (n: number): Map<string, Ring> {
  const dids = Array.from({ length: n }, (_, i) => `did:key:z6Mk-test-${i}`)
  return new Map(dids.map((did) => [did, new Ring(did, () => dids.filter((d) => d !== did), { monitors: 3 })]))
}

/**
 * A push from `origin` passed on along the arcs: who hears it how often, and the most hops
 * it took. `skip(node, link)` leaves a link out at a node (as the sender is).
 */
function spread (views: Map<string, Ring>, origin: string, skip: (node: string, link: string) => boolean = () => false): { heard: Map<string, number>, hops: number } {
  const heard = new Map<string, number>([[origin, 1]])
  let hops = 0
  let wave: Array<{ did: string, until: number | undefined }> = [{ did: origin, until: undefined }]
  while (wave.length > 0) {
    const next: typeof wave = []
    for (const { did, until } of wave) {
      const ring = views.get(did) as Ring
      const links = [...ring.successors(), ...ring.fingers()].filter((link) => !skip(did, link))
      for (const arc of ring.arcs(links, until)) {
        heard.set(arc.did, (heard.get(arc.did) ?? 0) + 1)
        next.push(arc)
      }
    }
    if (next.length > 0) {
      hops++
    }
    wave = next
  }
  return { heard, hops }
}

describe('ring arcs (broadcast)', () => {
  for (const n of [2, 5, 64, 500]) {
    it(`reaches each of ${n} members exactly once, in about log2(n) hops`, () => {
      const views = rings(n)
      const origin = [...views.keys()][n >> 1] as string
      const { heard, hops } = spread(views, origin)
      assert.equal(heard.size, n)
      assert.deepEqual([...heard.values()].filter((times) => times !== 1), [])
      assert.ok(hops <= Math.ceil(Math.log2(n)) + 2, `${hops} hops for ${n} members`)
    })
  }

  it('hands the part of a link left out to the link before it: still everyone, once', () => {
    const views = rings(64)
    const [origin, left] = [...views.keys()] as [string, string]
    // nobody passes the news to `left` (as nobody tells a joiner about itself)
    const { heard } = spread(views, origin, (_node, link) => link === left)
    assert.equal(heard.get(left), undefined)
    assert.equal(heard.size, 63)
    assert.deepEqual([...heard.values()].filter((times) => times !== 1), [])
  })
})

describe('ring upkeep', () => {
  it('after adds and removes holds what a ring built afresh holds', () => {
    const dids = Array.from({ length: 300 }, (_, i) => `did:key:z6Mk-upkeep-${i}`)
    const self = dids[0] as string
    const live = new Set(dids.slice(1, 200))
    const kept = new Ring(self, () => [...live], { monitors: 3 })
    kept.order()
    let seed = 1
    const random = (): number => { seed = (seed * 48271) % 2147483647; return seed / 2147483647 }
    for (let step = 0; step < 500; step++) {
      const did = dids[1 + Math.floor(random() * (dids.length - 1))] as string
      if (live.has(did)) {
        live.delete(did)
        kept.remove(did)
      } else {
        live.add(did)
        kept.add(did)
      }
      if (step % 50 === 0 || step === 499) {
        const fresh = new Ring(self, () => [...live], { monitors: 3 })
        assert.deepEqual(kept.order(), fresh.order())
        assert.deepEqual(kept.successors(), fresh.successors())
        assert.deepEqual(kept.fingers(), fresh.fingers())
      }
    }
  })
})

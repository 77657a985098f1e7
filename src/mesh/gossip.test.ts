import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { silentLogging } from '../observe/index.ts'
import { Gossip } from './gossip.ts'
import type { WireMember } from './membership.ts'

function member (i: number): WireMember {
  return { did: `did:key:z6Mk-gossip-${i}`, peerId: `12D3-${i}`, name: `lab/n-${i}`, substrate: 'biome', frontier: false, addrs: [], state: 'suspect', inc: i, meta: {} }
}

describe('gossip piggy-backing', () => {
  it('puts a rumor on a message once, and shares messages among rumors in turn', () => {
    const gossip = new Gossip({
      did: 'did:key:z6Mk-self',
      logger: silentLogging().forComponent('test'),
      isolated: new Set(),
      started: () => true,
      stopping: () => false,
      now: () => 0,
      memberCount: () => 9, // ceil(log10(10)) = 1: each rumor rides retransmitMult (2) messages
      retransmitMult: 2,
      push: () => {},
      merge: () => true
    })
    gossip.disseminate([{ k: 'm', m: member(1) }], new Set())
    const first = gossip.takePiggyback()
    assert.equal(first?.length, 1, 'one rumor, once (not again and again up to 2 KiB)')
    gossip.disseminate([{ k: 'm', m: member(2) }], new Set())
    assert.deepEqual(gossip.takePiggyback()?.map((r) => r.k === 'm' ? r.m.inc : 0), [1, 2])
    assert.deepEqual(gossip.takePiggyback()?.map((r) => r.k === 'm' ? r.m.inc : 0), [2])
    assert.equal(gossip.takePiggyback(), undefined)
  })
})

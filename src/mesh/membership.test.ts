import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PhiAccrualDetector } from './phi.ts'
import { MemberVerifier, parseWireMember, signMember, supersedes, verifyMember } from './membership.ts'
import { generateNodeKey } from '../identity/index.ts'
import { peerIdOfDid } from './node.ts'
import type { WireMember } from './membership.ts'

const SETTINGS = { window: 100, minStdDevMs: 100, acceptablePauseMs: 0, firstHeartbeatEstimateMs: 500 }

describe('phi-accrual detector', () => {
  it('stays low while heartbeats keep their rhythm and grows with silence', () => {
    const d = new PhiAccrualDetector(SETTINGS, 0)
    let t = 0
    for (let i = 0; i < 50; i++) {
      t += 500
      d.heartbeat(t)
    }
    assert.ok(d.phi(t + 100) < 1, `phi just after a heartbeat: ${d.phi(t + 100)}`)
    const phis = [500, 800, 1000, 1500, 3000].map((gap) => d.phi(t + gap))
    for (let i = 1; i < phis.length; i++) {
      assert.ok((phis[i] as number) > (phis[i - 1] as number), `phi grows: ${phis.join(', ')}`)
    }
    assert.ok((phis[4] as number) > 8, 'a long silence passes the default threshold')
  })

  it('adapts to a slower rhythm and honours the acceptable pause and the minimum deviation', () => {
    const slow = new PhiAccrualDetector(SETTINGS, 0)
    let t = 0
    for (let i = 0; i < 100; i++) {
      t += 2000
      slow.heartbeat(t)
    }
    const fast = new PhiAccrualDetector(SETTINGS, 0)
    let u = 0
    for (let i = 0; i < 100; i++) {
      u += 500
      fast.heartbeat(u)
    }
    assert.ok(slow.phi(t + 1500) < fast.phi(u + 1500), 'the same silence is less suspicious for a slower peer')
    const patient = new PhiAccrualDetector({ ...SETTINGS, acceptablePauseMs: 1000 }, 0)
    let v = 0
    for (let i = 0; i < 100; i++) {
      v += 500
      patient.heartbeat(v)
    }
    assert.ok(patient.phi(v + 1200) < fast.phi(u + 1200), 'an acceptable pause lowers phi')
    assert.ok(Number.isFinite(fast.phi(u + 600)), 'a perfectly regular peer still has a finite phi (minimum deviation)')
  })
})

describe('member records', () => {
  const base: WireMember = { did: 'did:key:z6Mk', peerId: '12D3', name: 'lab.lan/a', substrate: 'biome', frontier: false, addrs: [], state: 'alive', inc: 5, meta: {} }

  it('orders updates SWIM style: higher incarnation wins; at equal incarnation suspect > alive, dead/left > suspect', () => {
    assert.equal(supersedes({ ...base, inc: 6 }, { ...base, state: 'dead' }), true, 'a rejoin at a higher incarnation beats dead')
    assert.equal(supersedes({ ...base, state: 'suspect' }, base), true)
    assert.equal(supersedes(base, { ...base, state: 'suspect' }), false, 'only a higher incarnation refutes a suspicion')
    assert.equal(supersedes({ ...base, state: 'dead' }, { ...base, state: 'suspect' }), true)
    assert.equal(supersedes({ ...base, state: 'left' }, { ...base, state: 'dead' }), false)
    assert.equal(supersedes({ ...base, state: 'dead', inc: 4 }, base), false, 'old news loses')
  })

  it('parses records from untrusted JSON', () => {
    assert.deepEqual(parseWireMember({ ...base, load: 0.5, meta: { zone: 'a', bad: 1 } }), { ...base, load: 0.5, meta: { zone: 'a' } })
    assert.equal(parseWireMember({ ...base, state: 'zombie' }), undefined)
    assert.equal(parseWireMember({ ...base, substrate: 'mars' }), undefined)
    assert.equal(parseWireMember({ ...base, addrs: [1] }), undefined)
    assert.equal(parseWireMember(null), undefined)
  })
})

describe('member signatures', () => {
  const key = generateNodeKey()
  const peerId = peerIdOfDid(key.did).toString()
  const claim: WireMember = {
    did: key.did,
    peerId,
    name: 'lab.lan/a',
    substrate: 'biome',
    frontier: false,
    addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${peerId}`],
    state: 'alive',
    inc: 1_700_000_000_000,
    load: 0.25,
    meta: { zone: 'a', role: 'worker' }
  }
  const signed = signMember(claim, key)

  it('verifies a record signed by its own did, and still after a state change or a JSON round trip', () => {
    assert.equal(verifyMember(signed), true)
    for (const state of ['suspect', 'dead', 'left'] as const) {
      assert.equal(verifyMember({ ...signed, state }), true, `state ${state} is not part of the claim`)
    }
    const wire = parseWireMember(JSON.parse(JSON.stringify(signed)))
    assert.ok(wire !== undefined)
    assert.equal(verifyMember(wire), true)
    assert.equal(verifyMember({ ...signed, meta: { role: 'worker', zone: 'a' } }), true, 'meta is signed in key order')
  })

  it('rejects a tampered, unsigned or foreign-signed record', () => {
    const other = generateNodeKey()
    const tampered: Array<[string, WireMember]> = [
      ['name', { ...signed, name: 'lab.lan/b' }],
      ['substrate', { ...signed, substrate: 'gaia' }],
      ['frontier', { ...signed, frontier: true }],
      ['addrs', { ...signed, addrs: [] }],
      ['inc', { ...signed, inc: signed.inc + 1 }],
      ['load', { ...signed, load: 0.5 }],
      ['load dropped', { ...signed, load: undefined } as unknown as WireMember],
      ['meta added', { ...signed, meta: { ...signed.meta, vfio: '1' } }],
      ['meta changed', { ...signed, meta: { ...signed.meta, zone: 'b' } }],
      ['did', { ...signed, did: other.did }],
      ['peerId', { ...signed, peerId: peerIdOfDid(other.did).toString() }],
      ['unsigned', { ...claim }],
      ['garbage sig', { ...signed, sig: 'x'.repeat(86) }],
      ['signed by another key', { ...signMember(claim, other) }],
      ['another did\'s record signed by its own key but naming a foreign peer id', signMember({ ...claim, did: other.did }, other)],
      ['an address of another peer', signMember({ ...claim, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${peerIdOfDid(other.did).toString()}`] }, key)],
      ['a malformed did', { ...signed, did: 'did:key:nope' }]
    ]
    for (const [what, record] of tampered) {
      assert.equal(verifyMember(record), false, what)
    }
  })

  it('caches verified claims by signature, and a cached signature does not vouch for another claim', () => {
    const verifier = new MemberVerifier(2)
    assert.equal(verifier.verify(signed), true)
    assert.equal(verifier.verify({ ...signed, state: 'dead' }), true)
    assert.equal(verifier.verify({ ...signed, meta: { vfio: '1' } }), false, 'same sig, other claim')
    assert.equal(verifier.verify({ ...claim }), false)
    const more = [1, 2, 3].map((i) => signMember({ ...claim, inc: claim.inc + i }, key))
    for (const record of more) {
      assert.equal(verifier.verify(record), true)
    }
    assert.equal(verifier.verify(signed), true, 'an evicted signature is verified again')
  })
})

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateNodeKey } from './keys.ts'
import { issueAdminToken, verifyAdminToken } from './tokens.ts'

describe('admin tokens', () => {
  const node = generateNodeKey()
  const other = generateNodeKey()
  const check = { audience: node.did, issuers: new Set([node.did]), action: 'logs' }

  it('accepts a token signed by the node for itself', () => {
    const payload = verifyAdminToken(issueAdminToken(node, node.did), check)
    assert.equal(payload.iss, node.did)
    assert.deepEqual(payload.act, ['admin'])
  })

  it('limits a token to its actions', () => {
    const token = issueAdminToken(node, node.did, { actions: ['ps'] })
    assert.equal(verifyAdminToken(token, { ...check, action: 'ps' }).act[0], 'ps')
    assert.throws(() => verifyAdminToken(token, check), { name: 'TokenError', message: 'Token does not allow "logs" (it allows: ps)' })
  })

  it('refuses a token from a key that is not authorised', () => {
    assert.throws(() => verifyAdminToken(issueAdminToken(other, node.did), check), { name: 'TokenError', message: /is not authorised on this node/ })
  })

  it('refuses a forged payload (signature no longer matches)', () => {
    const [body, signature] = issueAdminToken(node, node.did, { actions: ['ps'] }).split('.')
    const payload = JSON.parse(Buffer.from(body ?? '', 'base64url').toString()) as Record<string, unknown>
    payload.act = ['admin']
    const forged = `${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature ?? ''}`
    assert.throws(() => verifyAdminToken(forged, check), { name: 'TokenError', message: 'Invalid token signature' })
  })

  it('refuses a token claiming the node as issuer but signed by another key', () => {
    const [body] = issueAdminToken(node, node.did).split('.')
    const signature = Buffer.from(other.sign(Buffer.from(body ?? '', 'base64url'))).toString('base64url')
    assert.throws(() => verifyAdminToken(`${body ?? ''}.${signature}`, check), { name: 'TokenError', message: 'Invalid token signature' })
  })

  it('refuses expired tokens, tokens for another node, and garbage', () => {
    const old = issueAdminToken(node, node.did, { now: Date.now() - 3_600_000, ttlSeconds: 60 })
    assert.throws(() => verifyAdminToken(old, check), { name: 'TokenError', message: /^Token expired at / })
    assert.throws(() => verifyAdminToken(issueAdminToken(node, other.did), check), { name: 'TokenError', message: /^Token is for node / })
    for (const garbage of ['', 'abc', 'a.b.c', '!!.??', `${Buffer.from('{}').toString('base64url')}.AAAA`]) {
      assert.throws(() => verifyAdminToken(garbage, check), { name: 'TokenError' }, garbage)
    }
  })
})

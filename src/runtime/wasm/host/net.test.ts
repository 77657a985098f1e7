import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { checkRequest, compileAllowlist, type RequestTarget } from './net.ts'

const LIST = compileAllowlist(['api.example.com', '*.cdn.example.net', 'ports.example.org:8443', '127.0.0.1:8080', '[::1]:9000'])

function allowed (authority: string | undefined, scheme: string | undefined = 'http', pathWithQuery = '/'): boolean {
  const target: RequestTarget = { scheme, authority, pathWithQuery }
  return checkRequest(LIST, target).ok
}

describe('net.http allowlist', () => {
  it('allows listed hosts on the scheme default port only', () => {
    assert.equal(allowed('api.example.com'), true)
    assert.equal(allowed('api.example.com:80'), true)
    assert.equal(allowed('api.example.com', 'https'), true)
    assert.equal(allowed('api.example.com:443', 'https'), true)
    assert.equal(allowed('api.example.com:443', 'http'), false)
    assert.equal(allowed('api.example.com:8080'), false)
    assert.equal(allowed('api.example.com', undefined), true) // the shim sends https
  })

  it('allows a listed port with either scheme, and no other port', () => {
    assert.equal(allowed('ports.example.org:8443', 'https'), true)
    assert.equal(allowed('ports.example.org:8443', 'http'), true)
    assert.equal(allowed('ports.example.org', 'https'), false)
    assert.equal(allowed('ports.example.org:8444', 'https'), false)
  })

  it('matches globs on subdomains at any depth, not the bare domain', () => {
    assert.equal(allowed('a.cdn.example.net'), true)
    assert.equal(allowed('a.b.cdn.example.net'), true)
    assert.equal(allowed('cdn.example.net'), false)
    assert.equal(allowed('evilcdn.example.net'), false)
    assert.equal(allowed('cdn.example.net.evil.com'), false)
  })

  it('normalises case and one trailing dot', () => {
    assert.equal(allowed('API.Example.COM'), true)
    assert.equal(allowed('api.example.com.'), true)
    assert.equal(allowed('api.example.com..'), false)
    assert.equal(allowed('X.CDN.example.net.'), true)
  })

  it('refuses other schemes, userinfo, bad ports and missing authorities', () => {
    assert.equal(allowed('api.example.com', 'ftp'), false)
    assert.equal(allowed('api.example.com', 'file'), false)
    assert.equal(allowed('user@api.example.com'), false)
    assert.equal(allowed('api.example.com@evil.com'), false)
    assert.equal(allowed('user:pw@api.example.com'), false)
    assert.equal(allowed('api.example.com:080'), false)
    assert.equal(allowed('api.example.com:'), false)
    assert.equal(allowed('api.example.com:99999'), false)
    assert.equal(allowed('api.example.com:80:80'), false)
    assert.equal(allowed(''), false)
    assert.equal(allowed(undefined), false)
  })

  it('refuses request targets that are not paths', () => {
    assert.equal(allowed('api.example.com', 'http', 'http://evil.com/'), false)
    assert.equal(allowed('api.example.com', 'http', '*'), false)
    assert.equal(allowed('api.example.com', 'http', '/ok?x=http://evil.com'), true)
  })

  it('reaches IP addresses only when listed, in canonical form', () => {
    assert.equal(allowed('127.0.0.1:8080'), true)
    assert.equal(allowed('127.0.0.1'), false)
    assert.equal(allowed('127.0.0.1:8081'), false)
    assert.equal(allowed('127.0.0.2:8080'), false)
    for (const trick of ['2130706433:8080', '0x7f000001:8080', '0x7f.0.0.1:8080', '127.1:8080', '0177.0.0.1:8080', '127.0.0.01:8080', '127.000.0.1:8080']) {
      assert.equal(allowed(trick), false, trick)
    }
    assert.equal(allowed('localhost:8080'), false)
    assert.equal(allowed('[::1]:9000'), true)
    assert.equal(allowed('[0:0:0:0:0:0:0:1]:9000'), true)
    assert.equal(allowed('[::1]:9001'), false)
    assert.equal(allowed('[::ffff:127.0.0.1]:8080'), false)
    assert.equal(allowed('[::ffff:7f00:1]:8080'), false)
    assert.equal(allowed('::1:9000'), false)
  })

  it('never matches IP addresses with globs', () => {
    const list = compileAllowlist(['*.example.com'])
    assert.equal(checkRequest(list, { scheme: 'http', authority: '1.2.3.4', pathWithQuery: '/' }).ok, false)
    assert.equal(checkRequest(list, { scheme: 'http', authority: '1.example.com', pathWithQuery: '/' }).ok, true)
  })

  it('explains refusals', () => {
    assert.deepEqual(checkRequest(LIST, { scheme: 'http', authority: 'evil.com', pathWithQuery: '/' }),
      { ok: false, reason: '"evil.com" port 80 is not in the allowlist' })
  })

  it('rejects invalid allowlist entries', () => {
    for (const entry of ['', 'http://example.com', 'a b', '*.1.2.3.4', '2130706433', 'x:0', 'user@x', '*']) {
      assert.throws(() => compileAllowlist([entry]), RangeError, entry)
    }
  })
})

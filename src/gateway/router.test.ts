import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Router } from './router.ts'
import type { HttpRoute } from '../manifest/index.ts'

function route (path: string, wildcard: boolean, extra: { host?: string, methods?: string[] } = {}): HttpRoute {
  return { path, wildcard, declared: true, ...extra }
}

describe('router', () => {
  const router = new Router([
    { brane: 'root', route: route('/', true) },
    { brane: 'api', route: route('/api/', true) },
    { brane: 'items', route: route('/api/items/', true) },
    { brane: 'health', route: route('/health', false) },
    { brane: 'admin', route: route('/api/', true, { host: 'admin.example.com' }) },
    { brane: 'writer', route: route('/write', false, { methods: ['POST'] }) }
  ])

  it('prefers exact routes, then the longest prefix', () => {
    assert.equal(router.match('localhost', '/health', 'GET')?.brane, 'health')
    assert.equal(router.match('localhost', '/api/items/7', 'GET')?.brane, 'items')
    assert.equal(router.match('localhost', '/api/other', 'GET')?.brane, 'api')
    assert.equal(router.match('localhost', '/api', 'GET')?.brane, 'api')
    assert.equal(router.match('localhost', '/elsewhere', 'GET')?.brane, 'root')
  })

  it('prefers a route bound to the request host, ignoring the port', () => {
    assert.equal(router.match('admin.example.com:8080', '/api/x', 'GET')?.brane, 'admin')
    assert.equal(router.match('ADMIN.example.com', '/api/x', 'GET')?.brane, 'admin')
    assert.equal(router.match('other.example.com', '/api/x', 'GET')?.brane, 'api')
  })

  it('honours methods', () => {
    assert.equal(router.match('localhost', '/write', 'POST')?.brane, 'writer')
    assert.equal(router.match('localhost', '/write', 'GET')?.brane, 'root')
  })

  it('finds nothing without a matching route', () => {
    const narrow = new Router([{ brane: 'api', route: route('/api/', true) }])
    assert.equal(narrow.match('localhost', '/apix', 'GET'), undefined)
    assert.equal(narrow.match('localhost', '/', 'GET'), undefined)
  })
})

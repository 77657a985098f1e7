// The dashboard's server: who gets in (one-time links, tokens, cookies), that a page of
// another site cannot read it, and that the stream sends state and log lines only while
// someone watches.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { LogBook, silentLogging } from '../observe/index.ts'
import { Dashboard, type DashboardState } from './dashboard.ts'
import { meshEdges } from './dashboard-state.ts'

/** `ended`: the server ended the body (not the client hanging up after `readMs`) */
interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string, ended?: boolean }

async function get (url: string, headers: Record<string, string> = {}, readMs?: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      const done = (ended: boolean): void => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ended }) }
      res.on('end', () => { done(true) })
      if (readMs !== undefined) {
        // a stream: read it for a while, then hang up
        setTimeout(() => { req.destroy(); done(false) }, readMs)
      }
    })
    req.on('error', reject)
    req.end()
  })
}

const cookieOf = (answer: Answer): string => String(answer.headers['set-cookie']).split(';')[0] ?? ''

describe('dashboard server', () => {
  const logBook = new LogBook()
  let reads = 0
  const dashboard = new Dashboard({
    logBook,
    state: async () => {
      reads++
      return { at: Date.now(), peers: [], branes: [], edges: [], traces: [] } as unknown as DashboardState
    },
    trace: async (id) => id === 'known' ? { traceId: 'known', hops: [] } : undefined,
    authorize: (token) => {
      if (token !== 'good') {
        throw new Error('token refused')
      }
    },
    logger: silentLogging().forComponent('dashboard')
  }, { port: 0 })

  before(async () => { await dashboard.start() })
  after(async () => { await dashboard.stop() })

  it('asks a visitor without a session to sign in, and serves nothing else', async () => {
    const page = await get(`${dashboard.url}/`)
    assert.equal(page.status, 401)
    assert.match(page.body, /omega dashboard/)
    assert.equal((await get(`${dashboard.url}/api/events`)).status, 401)
    assert.equal((await get(`${dashboard.url}/app.js`)).status, 401)
    assert.equal((await get(`${dashboard.url}/api/trace?id=known`)).status, 401)
  })

  it('signs in once with a one-time link: a session cookie, the code gone from the address', async () => {
    const link = dashboard.link()
    const first = await get(link)
    assert.equal(first.status, 303)
    assert.equal(first.headers.location, '/')
    assert.match(String(first.headers['set-cookie']), /^omega_dashboard=[\w-]+; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/)
    const again = await get(link)
    assert.equal(again.status, 403, 'a link works once')
    const page = await get(`${dashboard.url}/`, { cookie: cookieOf(first) })
    assert.equal(page.status, 200)
    assert.match(page.body, /<script type="module" src="\/app.js">/)
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/)
    assert.equal((await get(`${dashboard.url}/app.js`, { cookie: cookieOf(first) })).status, 200)
    assert.equal((await get(`${dashboard.url}/`, { cookie: 'omega_dashboard=forged' })).status, 401)
  })

  it('signs in with a token allowing observe, and refuses one that does not', async () => {
    assert.equal((await get(`${dashboard.url}/login?token=bad`)).status, 403)
    const signedIn = await get(`${dashboard.url}/login?token=good`)
    assert.equal(signedIn.status, 303)
    assert.equal((await get(`${dashboard.url}/api/trace?id=known`, { cookie: cookieOf(signedIn) })).status, 200)
    assert.equal((await get(`${dashboard.url}/api/trace?id=unknown`, { cookie: cookieOf(signedIn) })).status, 404)
    assert.equal((await get(`${dashboard.url}/api/trace?id=known`, { authorization: 'Bearer good' })).status, 200)
    assert.equal((await get(`${dashboard.url}/api/trace?id=known`, { authorization: 'Bearer bad' })).status, 401)
  })

  it('takes a free port when its default one is taken, and fails on a taken port it was given', async () => {
    const port = Number(new URL(dashboard.url).port)
    const components = { logBook, state: async () => ({}) as unknown as DashboardState, trace: async () => undefined, authorize: () => {}, logger: silentLogging().forComponent('dashboard') }
    const fallback = new Dashboard(components, { port, anyPortIfTaken: true })
    await fallback.start()
    try {
      assert.notEqual(new URL(fallback.url).port, String(port))
    } finally {
      await fallback.stop()
    }
    await assert.rejects(new Dashboard(components, { port }).start(), { code: 'EADDRINUSE' })
  })

  it('ends an open stream once its token is no longer allowed, and keeps serving', async () => {
    let allowed = true
    const strict = new Dashboard({
      logBook,
      state: async () => ({ at: Date.now() }) as unknown as DashboardState,
      trace: async () => undefined,
      authorize: () => {
        if (!allowed) {
          throw new Error('revoked')
        }
      },
      logger: silentLogging().forComponent('dashboard')
    }, { port: 0, recheckMs: 100 })
    await strict.start()
    try {
      const signedIn = await get(`${strict.url}/login?token=t`)
      const streaming = get(`${strict.url}/api/events`, { cookie: cookieOf(signedIn) }, 20_000)
      await new Promise((resolve) => setTimeout(resolve, 300))
      allowed = false
      const stream = await streaming
      assert.match(stream.body, /event: state/)
      assert.equal(stream.ended, true, 'the server ended the stream')
      assert.equal((await get(`${strict.url}/api/trace?id=x`, { cookie: cookieOf(signedIn) })).status, 401)
      assert.equal((await get(`${strict.url}/`)).status, 401, 'the server still answers')
    } finally {
      await strict.stop()
    }
  })

  it('answers no request made under another host name (DNS rebinding)', async () => {
    const { headers } = await get(dashboard.link())
    const cookie = cookieOf({ status: 0, headers, body: '' })
    const port = new URL(dashboard.url).port
    assert.equal((await get(`${dashboard.url}/`, { cookie, host: `evil.example:${port}` })).status, 421)
    assert.equal((await get(`${dashboard.url}/`, { cookie, host: `localhost:${port}` })).status, 200)
  })

  it('streams the state and new log lines while a page is open, and reads nothing once it is closed', async () => {
    const { headers } = await get(dashboard.link())
    const cookie = cookieOf({ status: 0, headers, body: '' })
    logBook.append({ brane: 'web', kind: 'stdout', level: 'info', message: 'before the page opened' })
    const writer = setInterval(() => { logBook.append({ brane: 'web', kind: 'stdout', level: 'info', message: 'while watched' }) }, 100)
    const stream = await get(`${dashboard.url}/api/events`, { cookie }, 2_500).finally(() => { clearInterval(writer) })
    assert.equal(stream.status, 200)
    assert.match(String(stream.headers['content-type']), /^text\/event-stream/)
    assert.match(stream.body, /event: logs\ndata: .*before the page opened/)
    assert.match(stream.body, /event: state\ndata: \{"at":/)
    assert.match(stream.body, /while watched/)
    // the stream is gone: no more reads of the state
    await new Promise((resolve) => setTimeout(resolve, 200))
    const settled = reads
    await new Promise((resolve) => setTimeout(resolve, 2_200))
    assert.equal(reads, settled)
  })
})

describe('dashboard state of a mesh', () => {
  it('sums the edge counters the peers answer, leaving out a peer that fails or answers nonsense', async () => {
    const answers: Record<string, unknown> = {
      a: [['web>mid:hits', { acked: 5, failed: 1, backlog: 2 }]],
      b: [['web>mid:hits', { acked: 3, failed: 0, backlog: 0 }], ['mid>end:out', { acked: 7, failed: 0, backlog: 1 }]],
      liar: [['web>mid:hits', { acked: -1e9, failed: 'many', backlog: Infinity }], 'garbage', [42, {}]],
      junk: { not: 'a list' }
    }
    const sums = await meshEdges(undefined, ['a', 'b', 'liar', 'junk', 'gone'], async (did) => {
      if (did === 'gone') {
        throw new Error('no answer')
      }
      return answers[did]
    })
    assert.deepEqual(Object.fromEntries(sums), {
      'web>mid:hits': { acked: 8, failed: 1, backlog: 2 },
      'mid>end:out': { acked: 7, failed: 0, backlog: 1 }
    })
  })
})

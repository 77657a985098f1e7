import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import type { BraneHttpResponse } from '../interfaces/index.ts'
import { silentLogging } from '../observe/index.ts'
import { Gateway } from './gateway.ts'

const KIB = 1024

/** POST `bytes` bytes to `url`, all at once; the status and Retry-After header (and the framing of a 200) */
async function post (url: string, bytes: number): Promise<{ status: number, retryAfter: string | undefined, contentLength?: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-length': bytes } }, (res) => {
      res.resume()
      res.once('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: res.headers['retry-after'] as string | undefined,
          ...(res.statusCode === 200 ? { contentLength: res.headers['content-length'] } : {})
        })
      })
    })
    req.once('error', reject)
    req.end(Buffer.alloc(bytes, 0x61))
  })
}

describe('gateway: request bytes held at once (D5)', () => {
  let gateway: Gateway
  /** requests the brane holds, answered when the test says */
  const waiting: Array<() => void> = []
  before(async () => {
    gateway = new Gateway({ logger: silentLogging().forComponent('gateway') }, { port: 0, maxBodyBytes: 512 * KIB, maxBufferedBytes: 1024 * KIB })
    gateway.setRoutes([{ brane: 'slow', route: { path: '/', wildcard: true, declared: true } }], new Map([['slow', {
      handle: async (request): Promise<BraneHttpResponse> => {
        await new Promise<void>((resolve) => { waiting.push(resolve) })
        return { status: 200, headers: [['content-type', 'text/plain']], body: Buffer.from(`${request.body.byteLength}\n`) }
      }
    }]]))
    await gateway.start()
  })
  after(async () => { await gateway.stop() })

  it('answers 503 with Retry-After past the global budget, and takes bodies again once they are let go', async () => {
    const url = `${gateway.url}/x`
    // three 400 KiB bodies held by a slow brane: 1200 KiB would pass the 1 MiB budget
    const first = post(url, 400 * KIB)
    const second = post(url, 400 * KIB)
    await waitFor(() => waiting.length === 2)
    assert.equal(gateway.bufferedBytes, 800 * KIB)
    const third = await post(url, 400 * KIB)
    assert.deepEqual(third, { status: 503, retryAfter: '1' })
    // one body over the per-request limit is 413 whatever the budget
    assert.equal((await post(url, 600 * KIB)).status, 413)
    for (const answer of waiting.splice(0)) {
      answer()
    }
    // a whole answer is framed by its length ("409600\n"), not chunked
    assert.deepEqual(await Promise.all([first, second]), [{ status: 200, retryAfter: undefined, contentLength: '7' }, { status: 200, retryAfter: undefined, contentLength: '7' }])
    assert.equal(gateway.bufferedBytes, 0, 'every byte is let go once answered')
    const again = post(url, 400 * KIB)
    await waitFor(() => waiting.length === 1)
    waiting.splice(0).forEach((answer) => { answer() })
    assert.equal((await again).status, 200)
  })
})

async function waitFor (check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.ok(check(), 'condition not met within 5 s')
}

describe('gateway: framing of whole answers', () => {
  let gateway: Gateway
  before(async () => {
    gateway = new Gateway({ logger: silentLogging().forComponent('gateway') }, { port: 0 })
    gateway.setRoutes([{ brane: 'hello', route: { path: '/', wildcard: true, declared: true } }], new Map([['hello', {
      handle: async (): Promise<BraneHttpResponse> => ({ status: 200, headers: [['content-type', 'text/plain']], body: Buffer.from('hello\n') })
    }]]))
    await gateway.start()
  })
  after(async () => { await gateway.stop() })

  /** The status and content-length of `method /` */
  async function head (method: string): Promise<{ status: number, length: string | undefined }> {
    return new Promise((resolve, reject) => {
      const req = request(`${gateway.url}/`, { method }, (res) => {
        res.resume()
        res.once('end', () => { resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'] }) })
      })
      req.once('error', reject)
      req.end()
    })
  }

  it('gives a GET its length, and a HEAD none (the GET\'s length is the brane\'s to say)', async () => {
    assert.deepEqual(await head('GET'), { status: 200, length: '6' })
    assert.deepEqual(await head('HEAD'), { status: 200, length: undefined })
  })
})

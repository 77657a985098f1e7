/**
 * Bodies that stream, end to end through the gateway: a response reaches the client
 * while its guest still runs, a request body reaches the guest while its client still
 * sends it, and `[brane.X.limits] body_max` bounds both, naming itself when it refuses.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { silentLogging, type LogRecord } from '../src/observe/index.ts'
import { copyFixtures, until } from './helpers.ts'

const LIMIT = 256 * 1024

/** A POST whose body the test writes piece by piece; resolves with the response once its head arrived */
function open (base: string, path: string, headers: Record<string, string | number> = {}): { req: ClientRequest, response: Promise<IncomingMessage> } {
  const req = request(new URL(path, base), { method: 'POST', headers, timeout: 60_000 })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
  req.flushHeaders()
  return { req, response }
}

/** The next `data` of `res` (within 20 s) */
async function nextChunk (res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('no data within 20 s')) }, 20_000)
    res.once('data', (chunk: Buffer) => {
      clearTimeout(timer)
      res.pause()
      resolve(chunk.toString('utf8'))
    })
    res.resume()
  })
}

/** The rest of `res`, and whether it ended whole (false: the connection was cut) */
async function rest (res: IncomingMessage): Promise<{ body: string, complete: boolean }> {
  let body = ''
  res.setEncoding('utf8')
  return new Promise((resolve) => {
    res.on('data', (chunk: string) => { body += chunk })
    res.once('end', () => { resolve({ body, complete: res.complete }) })
    res.once('error', () => { resolve({ body, complete: false }) })
    res.once('aborted', () => { resolve({ body, complete: false }) })
    res.resume()
  })
}

describe('streaming bodies', () => {
  let dir = ''
  let node: LocalNode | undefined
  let base = ''

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-stream-'))
    await copyFixtures(dir, ['echo-stream'])
    const manifest = join(dir, 'omega.toml')
    await writeFile(manifest, `
[brane.echo]
image = "echo-stream.wasm"
trigger = { http = "/echo" }
limits = { body_max = "256 KiB" }
`)
    node = await LocalNode.start(manifest, { home: join(dir, 'home'), port: 0, logging: silentLogging(), admin: false })
    base = node.url
  })

  /** The echo brane's log records of one kind (and level), oldest first */
  const records = (kind: string, level?: string): LogRecord[] =>
    node?.logBook.query({ brane: 'echo' }).filter((r) => r.kind === kind && (level === undefined || r.level === level)) ?? []

  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('sends the first chunk before the guest finishes, and hands the guest the request body as the client sends it', async () => {
    // the guest answers "first\n", then reads the request body; the client sends its
    // body only once it saw "first\n": without streaming both ways, nothing moves
    const { req, response } = open(base, '/echo', { 'transfer-encoding': 'chunked' })
    const res = await response
    assert.equal(res.statusCode, 200)
    assert.equal(await nextChunk(res), 'first\n')
    req.write('hello ')
    req.end('world\n')
    assert.deepEqual(await rest(res), { body: 'hello world\nend\n', complete: true })
    await until(() => records('request').length === 1, 10_000, 'the request record')
    const [record] = records('request')
    assert.match(record?.message ?? '', /^REQ POST \/echo RES 200 22B /)
  })

  it('streams a request body larger than a read, in order', async () => {
    const body = Buffer.alloc(200 * 1024)
    for (let i = 0; i < body.length; i++) {
      body[i] = 97 + (i % 26)
    }
    const { req, response } = open(base, '/echo', { 'content-length': body.length })
    req.end(body)
    const res = await response
    const { body: got, complete } = await rest(res)
    assert.ok(complete)
    assert.equal(got, `first\n${body.toString('latin1')}end\n`)
  })

  it('refuses a request body over body_max with 413 naming the key', async () => {
    const { req, response } = open(base, '/echo', { 'content-length': LIMIT + 1 })
    req.end(Buffer.alloc(LIMIT + 1))
    const res = await response
    assert.equal(res.statusCode, 413)
    const { body } = await rest(res)
    assert.match(body, /"error":"PayloadTooLargeError".*of 262145 bytes is over brane \\"echo\\"'s limit \(\[brane\.echo\.limits\] body_max\) of 262144 bytes/)
  })

  it('cuts a streamed response that goes over body_max, and logs why', async () => {
    // the body fits, the echo of it with "first\n" and "end\n" around it does not
    const { req, response } = open(base, '/echo', { 'content-length': LIMIT })
    req.end(Buffer.alloc(LIMIT, 0x61))
    const res = await response
    assert.equal(res.statusCode, 200)
    const { body, complete } = await rest(res)
    assert.equal(complete, false, 'the client must see an incomplete body')
    assert.ok(body.length <= LIMIT, `${body.length} bytes reached the client`)
    await until(() => records('request', 'error').some((r) => /body_max/.test(r.message)) === true, 10_000, `the error record in ${JSON.stringify(node?.logBook.query({ brane: 'echo' }).map((r) => r.message.slice(0, 300)))}`)
    const failed = records('request', 'error').find((r) => /body_max/.test(r.message))
    assert.match(failed?.message ?? '', /REQ POST \/echo ERR GuestError: Brane "echo" wrote a response body over its limit of 262144 bytes.*\[brane\.echo\.limits\] body_max/)
  })

  it('cuts the response when a chunked request body goes over body_max after the head went out', async () => {
    const { req, response } = open(base, '/echo', { 'transfer-encoding': 'chunked' })
    const res = await response
    assert.equal(await nextChunk(res), 'first\n')
    req.end(Buffer.alloc(LIMIT + 1, 0x62))
    const { complete } = await rest(res)
    assert.equal(complete, false)
    await until(() => records('request', 'error').some((r) => /PayloadTooLargeError/.test(r.message)) === true, 10_000, 'the error record')
  })
})

// Capability probe for Omega's host tests (see src/runtime/wasm/host/capabilities.test.ts).
// One route per capability; every answer is JSON. Built by scripts/build-examples.js
// with componentize-js into build/fixtures/probe.wasm (cached by source hash).
import { getRandomBytes, getRandomU64 } from 'wasi:random/random@0.2.10'
import { now as wallNow } from 'wasi:clocks/wall-clock@0.2.10'
import { now as monoNow } from 'wasi:clocks/monotonic-clock@0.2.10'
import { getEnvironment } from 'wasi:cli/environment@0.2.10'
import { getDirectories } from 'wasi:filesystem/preopens@0.2.10'
import { filesystemErrorCode } from 'wasi:filesystem/types@0.2.10'
import { handle } from 'wasi:http/outgoing-handler@0.2.10'
import { Fields, OutgoingRequest } from 'wasi:http/types@0.2.10'

const decoder = new TextDecoder()

function hex (bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

// A thrown WIT error: componentize-js puts the error value in `payload`
function failure (err) {
  if (err && typeof err === 'object' && 'payload' in err) {
    return { error: err.payload }
  }
  return { error: { tag: 'exception', val: String(err) } }
}

function json (value, status = 200) {
  const text = JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v)
  return new Response(text, { status, headers: { 'content-type': 'application/json' } })
}

function tmp () {
  const dirs = getDirectories()
  const found = dirs.find(([, path]) => path === '/tmp')
  if (found === undefined) {
    throw { payload: { tag: 'no-preopen', val: dirs.map(([, path]) => path) } }
  }
  return found[0]
}

function fsWrite (params) {
  const name = params.get('name') ?? 'data.bin'
  const bytes = Number(params.get('bytes') ?? '0')
  const chunk = Number(params.get('chunk') ?? String(bytes || 1))
  const dir = tmp()
  const file = dir.openAt({}, name, { create: true, truncate: params.get('append') !== '1' }, { write: true, read: true })
  let offset = params.get('append') === '1' ? file.stat().size : 0n
  let written = 0
  try {
    while (written < bytes) {
      const n = Math.min(chunk, bytes - written)
      const buf = new Uint8Array(n).fill(0x61)
      const done = file.write(buf, offset)
      offset += done
      written += Number(done)
    }
  } catch (err) {
    return { written, ...failure(err) }
  }
  return { written, size: file.stat().size }
}

function fsStream (params) {
  const name = params.get('name') ?? 'stream.bin'
  const bytes = Number(params.get('bytes') ?? '0')
  const file = tmp().openAt({}, name, { create: true, truncate: true }, { write: true })
  const out = file.writeViaStream(0n)
  let written = 0
  try {
    while (written < bytes) {
      // a stream takes at most what check-write permits
      const n = Math.min(4096, bytes - written, Number(out.checkWrite()))
      out.blockingWriteAndFlush(new Uint8Array(n).fill(0x62))
      written += n
    }
  } catch (err) {
    const streamError = err?.payload
    if (streamError?.tag === 'last-operation-failed') {
      return { written, error: { tag: 'last-operation-failed', code: filesystemErrorCode(streamError.val) } }
    }
    return { written, ...failure(err) }
  }
  return { written }
}

function fsRead (params) {
  const file = tmp().openAt({}, params.get('name') ?? 'data.bin', {}, { read: true })
  const [data, end] = file.read(1024n * 1024n, 0n)
  return { text: decoder.decode(data), end }
}

function fsOpen (params) {
  const dir = tmp()
  const follow = params.get('follow') === '1'
  const file = dir.openAt({ symlinkFollow: follow }, params.get('path') ?? '', params.get('create') === '1' ? { create: true } : {}, { read: true })
  return { type: file.getType() }
}

function fsList () {
  const entries = []
  const stream = tmp().readDirectory()
  for (;;) {
    const entry = stream.readDirectoryEntry()
    if (entry === undefined) {
      break
    }
    entries.push(entry.name)
  }
  return { entries: entries.sort() }
}

function fsSymlink (params) {
  tmp().symlinkAt(params.get('target') ?? '', params.get('name') ?? 'link')
  return { ok: true }
}

// Every way out of /tmp the probe knows; each must fail
function fsEscape () {
  const dir = tmp()
  const results = {}
  const attempt = (name, fn) => {
    try {
      fn()
      results[name] = 'ok'
    } catch (err) {
      results[name] = failure(err).error
    }
  }
  attempt('dotdot', () => dir.openAt({}, '../escape.txt', { create: true }, { write: true }))
  attempt('nested-dotdot', () => dir.openAt({}, 'a/../../escape.txt', { create: true }, { write: true }))
  attempt('absolute', () => dir.openAt({}, '/etc/passwd', {}, { read: true }))
  attempt('symlink-absolute', () => dir.symlinkAt('/etc', 'abs'))
  attempt('symlink-relative-create', () => dir.symlinkAt('../../../../../../etc', 'rel'))
  attempt('symlink-relative-follow', () => dir.openAt({ symlinkFollow: true }, 'rel/passwd', {}, { read: true }))
  attempt('symlink-relative-stat', () => dir.statAt({ symlinkFollow: true }, 'rel'))
  attempt('planted-follow', () => dir.openAt({ symlinkFollow: true }, 'planted/passwd', {}, { read: true }))
  attempt('planted-nofollow-dir', () => dir.openAt({ symlinkFollow: false }, 'planted/passwd', {}, { read: true }))
  attempt('rename-out', () => dir.renameAt('x', dir, '../x'))
  attempt('mkdir-out', () => dir.createDirectoryAt('../omega-escape'))
  return results
}

function fsPreopens () {
  return { preopens: getDirectories().map(([, path]) => path) }
}

// Raw wasi:http: one request, redirects are not followed
function http (params) {
  const headers = new Fields()
  const request = new OutgoingRequest(headers)
  const scheme = params.get('scheme') ?? 'http'
  request.setScheme(scheme === 'http' ? { tag: 'HTTP' } : scheme === 'https' ? { tag: 'HTTPS' } : { tag: 'other', val: scheme })
  if (params.has('authority')) {
    request.setAuthority(params.get('authority'))
  }
  request.setPathWithQuery(params.get('path') ?? '/')
  let future
  try {
    future = handle(request, undefined)
  } catch (err) {
    return failure(err)
  }
  future.subscribe().block()
  const outer = future.get()
  if (outer === undefined || outer.tag !== 'ok') {
    return { error: { tag: 'future', val: String(outer?.tag) } }
  }
  if (outer.val.tag !== 'ok') {
    return { error: outer.val.val }
  }
  const response = outer.val.val
  const stream = response.consume().stream()
  const chunks = []
  for (;;) {
    try {
      stream.subscribe().block()
      chunks.push(stream.read(65536n))
    } catch {
      break
    }
  }
  const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let at = 0
  for (const c of chunks) {
    body.set(c, at)
    at += c.length
  }
  return { status: response.status(), body: decoder.decode(body) }
}

async function fetchUrl (params) {
  try {
    const res = await fetch(params.get('url') ?? '')
    return { status: res.status, body: await res.text() }
  } catch (err) {
    return { error: { tag: 'fetch', val: String(err) } }
  }
}

async function route (request) {
  const url = new URL(request.url)
  const params = url.searchParams
  switch (url.pathname) {
    case '/random':
      return { bytes: hex(getRandomBytes(16n)), u64: getRandomU64() }
    case '/math-random':
      return { value: Math.random() }
    case '/clock':
      return { wall: [wallNow(), wallNow()], mono: [monoNow(), monoNow()] }
    case '/date':
      return { now: Date.now() }
    case '/env':
      return { env: getEnvironment() }
    case '/fs/preopens': return fsPreopens()
    case '/fs/escape': return fsEscape()
    case '/fs/write': return fsWrite(params)
    case '/fs/stream': return fsStream(params)
    case '/fs/read': return fsRead(params)
    case '/fs/open': return fsOpen(params)
    case '/fs/list': return fsList()
    case '/fs/symlink': return fsSymlink(params)
    case '/http': return http(params)
    case '/fetch': return await fetchUrl(params)
    case '/all':
      return {
        random: hex(getRandomBytes(32n)),
        math: Math.random(),
        wall: wallNow(),
        mono: monoNow(),
        date: Date.now(),
        env: getEnvironment()
      }
    default:
      return { error: { tag: 'no-route', val: url.pathname } }
  }
}

addEventListener('fetch', (event) => {
  event.respondWith((async () => {
    try {
      return json(await route(event.request))
    } catch (err) {
      return json(failure(err), 500)
    }
  })())
})


import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { checkImports, findUngranted, findUnprovided, importRule, isCommand, linkGrantKeys, serveKind } from './link.ts'

const NONE: ReadonlySet<string> = new Set()

describe('checkImports', () => {
  it('links what every brane gets without grants', () => {
    checkImports([
      'wasi:io/error@0.2.12', 'wasi:io/poll@0.2.0', 'wasi:io/streams@0.2.3', 'wasi:http/types@0.2.12',
      'wasi:cli/stdout@0.2.0', 'wasi:cli/stderr@0.2.0', 'wasi:cli/stdin@0.2.0', 'wasi:cli/exit@0.2.0',
      'wasi:cli/terminal-input@0.2.0', 'wasi:cli/terminal-stdout@0.2.0'
    ], NONE, { brane: 'api' })
  })

  it('links granted imports', () => {
    checkImports(
      ['wasi:random/random@0.2.3', 'wasi:clocks/wall-clock@0.2.3', 'wasi:http/outgoing-handler@0.2.3',
        'wasi:filesystem/preopens@0.2.3', 'wasi:cli/environment@0.2.3', 'omega:brane/state', 'omega:brane/emit'],
      new Set(['random', 'clock', 'net.http', 'fs.tmp', 'env', 'state', 'emit']),
      { brane: 'api' })
  })

  it('names the import and the manifest key that would grant it', () => {
    assert.throws(() => { checkImports(['wasi:random/random@0.2.3'], NONE, { brane: 'api' }) }, {
      name: 'CapabilityDeniedError',
      message: 'Cannot link brane "api": component imports "wasi:random/random@0.2.3", which needs [brane.api.capability] "random"'
    })
  })

  it('says that edges grant emit, and links log for every brane', () => {
    checkImports(['omega:brane/log@0.1.0', 'omega:brane/types@0.1.0'], NONE, { brane: 'ingest' })
    assert.throws(() => { checkImports(['omega:brane/emit@0.1.0', 'omega:brane/log@0.1.0'], NONE, { brane: 'ingest' }) }, {
      name: 'CapabilityDeniedError',
      message: 'Cannot link brane "ingest": component imports "omega:brane/emit@0.1.0", which needs an outgoing edge: ' +
        'emitting is granted by edges from "ingest" in [graph].edges (e.g. { from = "ingest", to = "<brane>", on = "<topic>" })'
    })
  })

  it('reports every ungranted import in one message', () => {
    assert.throws(() => {
      checkImports(['wasi:io/streams@0.2.3', 'wasi:clocks/monotonic-clock@0.2.3', 'wasi:sockets/tcp@0.2.3', 'example:thing/api'],
        new Set(['random']), { brane: 'web' })
    }, {
      name: 'CapabilityDeniedError',
      message: 'Cannot link brane "web": component imports ' +
        '"wasi:clocks/monotonic-clock@0.2.3", which needs [brane.web.capability] "clock"; ' +
        '"wasi:sockets/tcp@0.2.3", which no capability grants (raw sockets are not available to branes: use "net.http" for outgoing HTTP); ' +
        '"example:thing/api", which Omega does not host'
    })
  })

  it('never grants raw sockets', () => {
    const grants = new Set(['net.http', 'fs.tmp', 'clock', 'random', 'env', 'state', 'emit'])
    const ungranted = findUngranted(['wasi:sockets/instance-network@0.2.0', 'wasi:sockets/udp@0.2.0'], grants)
    assert.deepEqual(ungranted.map((u) => [u.name, u.capability]), [
      ['wasi:sockets/instance-network@0.2.0', undefined],
      ['wasi:sockets/udp@0.2.0', undefined]
    ])
  })
})

describe('importRule', () => {
  it('maps interfaces to capability keys, ignoring versions', () => {
    assert.deepEqual(importRule('wasi:http/outgoing-handler@0.2.0'), { kind: 'capability', key: 'net.http' })
    assert.deepEqual(importRule('wasi:filesystem/types'), { kind: 'capability', key: 'fs.tmp', alsoBy: ['fs.dirs'] })
    assert.deepEqual(importRule('wasi:cli/environment@0.2.12'), { kind: 'capability', key: 'env' })
    assert.deepEqual(importRule('wasi:http/types@0.2.10'), { kind: 'always' })
    assert.deepEqual(importRule('wasi:httpx/types'), { kind: 'unknown' })
    assert.equal(importRule('wasi:sockets/network').kind, 'never')
  })
})

describe('findUnprovided', () => {
  it('lists allowed imports the runtime has no implementation for', () => {
    assert.deepEqual(findUnprovided(['wasi:io/streams@0.2.0', 'omega:brane/state', 'omega:brane/emit@0.1.0', 'wasi:clocks/timezone@0.2.12']),
      ['wasi:clocks/timezone@0.2.12'])
  })
})

describe('serveKind', () => {
  const what = 'Brane "x": component x.wasm'
  it('serves an HTTP handler with the host\'s wasi:http types, and an event handler', () => {
    assert.equal(serveKind(['wasi:http/incoming-handler@0.2.3'], ['wasi:http/types@0.2.3'], what), 'http')
    assert.equal(serveKind(['omega:brane/handler@0.1.0'], [], what), 'event')
  })
  it('serves a wasi:cli/run command as an event brane, and a component exporting a handler too through the handler', () => {
    assert.equal(serveKind(['wasi:cli/run@0.2.0'], [], what), 'command')
    assert.equal(serveKind(['wasi:cli/run@0.2.0'], [], what, { http: false }), 'command')
    assert.equal(serveKind(['wasi:cli/run@0.2.0', 'omega:brane/handler@0.1.0'], [], what), 'event')
    assert.equal(serveKind(['wasi:cli/run@0.2.0', 'wasi:http/incoming-handler@0.2.3'], ['wasi:http/types@0.2.3'], what, { http: true }), 'http')
    assert.equal(isCommand(['wasi:cli/run@0.2.0', 'omega:brane/handler@0.1.0']), false)
    // its environment carries the event: linked without an env grant
    assert.deepEqual([...linkGrantKeys(['random'], ['wasi:cli/run@0.2.0'])].sort(), ['env', 'random'])
    assert.deepEqual([...linkGrantKeys(['random'], ['omega:brane/handler@0.1.0'])], ['random'])
  })
  it('says what a component is when Omega cannot serve it', () => {
    assert.throws(() => serveKind(['wasi:cli/run@0.2.0'], [], what, { http: true }), { name: 'ComponentLoadError', message: /^Brane "x": component x\.wasm is a wasi:cli\/run command \(a program with a main, as "wasmtime run" runs it\), not a server: it cannot answer the HTTP routed to it .*Omega runs WASI 0\.2 components that export/ })
    assert.throws(() => serveKind(['wasi:http/handler@0.3.0-rc-2025-09-16'], ['wasi:http/types@0.3.0-rc-2025-09-16'], what), { message: /is a WASI 0\.3 component \(it exports wasi:http\/handler@0\.3\.0-rc-2025-09-16\)/ })
    assert.throws(() => serveKind(['wasi:http/incoming-handler@0.2.3'], ['wasi:io/streams@0.2.3'], what), { message: /does not import wasi:http\/types: its HTTP types are its own \(a component composed with WASI-Virt/ })
    assert.throws(() => serveKind(['my:pkg/thing'], [], what), { message: /exports neither .* \(it exports: my:pkg\/thing\)/ })
  })
})

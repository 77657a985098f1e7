/**
 * Capability tokens at the edges: the admin API (Unix socket) and the gateway (a real
 * HTTP request), with issue, delegation, escalation, expiry, wrong roots, broken chains
 * and revocation.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile, cp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode, adminJson, adminStream } from '../src/daemon/index.ts'
import { delegateCapability, generateNodeKey, inspectCapability, issueCapability, loadOrCreateNodeKey, parseCapability, type NodeKey } from '../src/identity/index.ts'
import { biscuit } from '../src/identity/biscuit.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, cli } from './helpers.ts'

/** The NDJSON text of an admin logs request (throws as adminJson does when refused) */
async function logs (home: string, path: string, token: string): Promise<string> {
  let text = ''
  for await (const chunk of adminStream(home, path, { token })) {
    text += chunk
  }
  return text
}

const caps = (...texts: string[]): ReturnType<typeof parseCapability>[] => texts.map(parseCapability)

/** Append a hand-made block (no attenuation check) that claims every right */
function escalate (token: string, root: NodeKey): string {
  const parsed = biscuit().Biscuit.fromBase64(token, biscuit().PublicKey.fromBytes(root.publicKey, 0))
  const block = biscuit().Biscuit.block_builder()
  block.addCode('right("*", "*"); attenuated("*", "*");')
  return parsed.appendBlock(block).toBase64()
}

/** The token with its middle block (of three) removed */
function dropMiddleBlock (token: string): string {
  const bytes = Buffer.from(token, 'base64url')
  const parts: Buffer[] = []
  let at = 0
  while (at < bytes.length) {
    const start = at
    at++ // field key: one byte for fields 1–15
    let length = 0
    let shift = 0
    for (let i = 0; i < 5; i++) {
      const byte = bytes[at++] ?? 0
      length += (byte & 0x7f) * 2 ** shift
      shift += 7
      if ((byte & 0x80) === 0) {
        break
      }
    }
    at += length
    parts.push(bytes.subarray(start, at))
  }
  assert.equal(parts.length, 4, 'authority, 2 blocks, proof')
  return Buffer.concat([parts[0]!, parts[2]!, parts[3]!]).toString('base64url')
}

describe('capability tokens at the admin API and the gateway', () => {
  let home = ''
  let dir = ''
  let node: LocalNode
  let nodeKey: NodeKey
  const otherRoot = generateNodeKey()
  const alice = generateNodeKey()
  const bob = generateNodeKey()

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'omega-trust-'))
    dir = join(home, 'app')
    await cp(join(ROOT, 'examples/hello'), dir, { recursive: true })
    await writeFile(join(dir, 'omega.toml'), `
[brane.hello]
image = "hello.wasm"
trigger = { http = "/open/*" }

[brane.secret]
image = "hello.wasm"
auth = "token"
trigger = { http = "/secret/*" }
`)
    node = await LocalNode.start(join(dir, 'omega.toml'), { home, port: 0, logging: silentLogging(), trustedRoots: [otherRoot.did] })
    nodeKey = await loadOrCreateNodeKey(home)
  })
  after(async () => {
    await node.stop()
    await rm(home, { recursive: true, force: true })
  })

  it('admin API: accepts a delegated, attenuated token for what it allows and refuses the rest', async () => {
    const parent = issueCapability(nodeKey, { subject: alice.did, capabilities: caps('logs:brane/*', 'ps:node') })
    const child = delegateCapability(parent, { roots: [node.did], subject: bob.did, capabilities: caps('logs:brane/hello') })
    // the node's own root and a configured extra root
    assert.equal((await adminJson<{ did: string }>(home, '/v1/status', { token: parent })).did, node.did)
    const foreignRooted = issueCapability(otherRoot, { subject: alice.did, capabilities: caps('ps:node') })
    assert.equal((await adminJson<{ did: string }>(home, '/v1/status', { token: foreignRooted })).did, node.did)
    assert.equal(typeof await logs(home, '/v1/logs?brane=hello&since=60000', child), 'string')
    // attenuated away: ps, and logs of other branes or of all branes
    await assert.rejects(adminJson(home, '/v1/status', { token: child }), { name: 'AdminRequestError', status: 403, message: /does not allow "ps" on "node"/ })
    await assert.rejects(logs(home, '/v1/logs?brane=secret', child), { status: 403 })
    await assert.rejects(logs(home, '/v1/logs', child), { status: 403 })
    await assert.rejects(adminJson(home, '/v1/reload', { token: parent, method: 'POST', body: {} }), { status: 403, message: /does not allow "deploy"/ })
  })

  it('admin API: a token for one brane reaches that brane only, on every brane route (D1, D2)', async () => {
    const hello = issueCapability(nodeKey, {
      subject: alice.did,
      capabilities: caps('logs:brane/hello', 'profile:brane/hello', 'snapshot:brane/hello', 'restore:brane/hello', 'deploy:brane/hello')
    })
    // D2: ?name= is no brane parameter; without ?brane= the call reads every brane's logs
    await assert.rejects(logs(home, '/v1/logs?name=hello', hello), { status: 403, message: /"logs" on "brane\/\*"/ })
    await assert.rejects(logs(home, '/v1/logs?brane=secret', hello), { status: 403, message: /"logs" on "brane\/secret"/ })
    assert.equal(typeof await logs(home, '/v1/logs?brane=hello', hello), 'string')
    // every other route that acts on one brane, asked for another brane
    await assert.rejects(adminJson(home, '/v1/profile?brane=secret', { token: hello }), { status: 403, message: /"profile" on "brane\/secret"/ })
    await assert.rejects(adminJson(home, '/v1/profile/cpu?brane=secret&seconds=0.1', { token: hello, method: 'POST' }), { status: 403, message: /"profile" on "brane\/secret"/ })
    await assert.rejects(adminJson(home, '/v1/snapshot?brane=secret', { token: hello, method: 'POST' }), { status: 403, message: /"snapshot" on "brane\/secret"/ })
    await assert.rejects(adminJson(home, '/v1/restore?brane=secret', { token: hello, body: {} }), { status: 403, message: /"restore" on "brane\/secret"/ })
    await assert.rejects(adminJson(home, '/v1/reload?brane=secret', { token: hello, body: {} }), { status: 403, message: /"deploy" on "brane\/secret"/ })
    await assert.rejects(adminJson(home, '/v1/reload', { token: hello, body: {} }), { status: 403, message: /"deploy" on "brane\/\*"/ })
    assert.equal((await fetch(`${node.url}/secret/x`)).status, 401)

    // D1: a reload confined to hello may not touch secret (here: drop its auth)
    const text = await readFile(join(dir, 'omega.toml'), 'utf8')
    const open = join(dir, 'open.toml')
    await writeFile(open, text.replace('auth = "token"\n', ''))
    await assert.rejects(adminJson(home, '/v1/reload?brane=hello', { token: hello, body: { file: open } }),
      { status: 403, message: /may change only that brane, but this manifest changes brane "secret"/ })
    const added = join(dir, 'added.toml')
    await writeFile(added, `${text}\n[brane.extra]\nimage = "hello.wasm"\n`)
    await assert.rejects(adminJson(home, '/v1/reload?brane=hello', { token: hello, body: { file: added } }), { status: 403, message: /adds brane "extra"/ })
    assert.equal((await fetch(`${node.url}/secret/x`)).status, 401, 'secret still needs a token')
    assert.equal((await fetch(`${node.url}/extra/x`)).status, 404)
    // what the token allows: hello changes, secret runs on untouched
    const changed = join(dir, 'changed.toml')
    await writeFile(changed, text.replace('[brane.hello]\n', '[brane.hello]\nlimits = { deadline = "20s" }\n'))
    const report = await adminJson<{ changed: string[], unchanged: string[] }>(home, '/v1/reload?brane=hello', { token: hello, body: { file: changed } })
    assert.deepEqual(report.changed, ['hello'])
    assert.deepEqual(report.unchanged, ['secret'])
    assert.equal((await fetch(`${node.url}/open/x`)).status, 200)
    assert.equal((await fetch(`${node.url}/secret/x`)).status, 401)
  })

  it('admin API: a reload body is bounded (413) and the daemon serves on', async () => {
    await assert.rejects(adminJson(home, '/v1/reload', { body: { file: 'x'.repeat(100_000) } }), { status: 413, message: /at most 65536 bytes/ })
    assert.equal((await adminJson<{ did: string }>(home, '/v1/status')).did, node.did)
  })

  it('admin API: refuses escalation, expired tokens, wrong signatures, broken chains and revoked tokens', async () => {
    const parent = issueCapability(nodeKey, { subject: alice.did, capabilities: caps('logs:brane/*') })
    const child = delegateCapability(parent, { roots: [node.did], subject: bob.did, capabilities: caps('logs:brane/hello') })
    await assert.rejects(adminJson(home, '/v1/status', { token: escalate(child, nodeKey) }), { status: 403, message: /does not allow "ps"/ })
    const expired = issueCapability(nodeKey, { subject: alice.did, capabilities: caps('ps:node'), ttlSeconds: 1, now: Date.now() - 60_000 })
    await assert.rejects(adminJson(home, '/v1/status', { token: expired }), { status: 403, message: /expired/ })
    const stranger = generateNodeKey()
    await assert.rejects(adminJson(home, '/v1/status', { token: issueCapability(stranger, { subject: alice.did, capabilities: caps('ps:node') }) }), { status: 403, message: /signature/ })
    const three = delegateCapability(child, { roots: [node.did], subject: alice.did, capabilities: caps('logs:brane/hello') })
    await assert.rejects(logs(home, '/v1/logs?brane=hello', dropMiddleBlock(three)), { status: 403, message: /signature/ })
    await assert.rejects(adminJson(home, '/v1/status', { token: 'x'.repeat(100) }), { status: 403 })
    // revoke the child through the CLI (the daemon is told over its admin API)
    assert.equal(typeof await logs(home, '/v1/logs?brane=hello', three), 'string')
    const revoke = await cli(['token', 'revoke', inspectCapability(child, { roots: [node.did] }).id], home)
    assert.equal(revoke.code, 0, revoke.err)
    assert.match(revoke.out, /the running daemon refuses it/)
    await assert.rejects(logs(home, '/v1/logs?brane=hello', child), { status: 403, message: /revoked/ })
    // everything delegated from it too, but not its parent
    await assert.rejects(logs(home, '/v1/logs?brane=hello', three), { status: 403, message: /revoked/ })
    assert.equal(typeof await logs(home, '/v1/logs?brane=hello', parent), 'string')
    assert.equal(JSON.parse(await readFile(join(home, 'revoked.json'), 'utf8')).length, 1)
  })

  it('gateway: a brane with auth = "token" needs a token allowing invoke on it (real HTTP)', async () => {
    const open = await fetch(`${node.url}/open/x`)
    assert.equal(open.status, 200)
    const none = await fetch(`${node.url}/secret/x`)
    assert.equal(none.status, 401)
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="omega"')
    assert.match((await none.json() as { message: string }).message, /requires a capability token allowing "invoke" on "brane\/secret"/)

    const parent = issueCapability(nodeKey, { subject: alice.did, capabilities: caps('invoke:brane/*') })
    const child = delegateCapability(parent, { roots: [node.did], subject: bob.did, capabilities: caps('invoke:brane/secret') })
    const call = async (token: string): Promise<Response> => fetch(`${node.url}/secret/x`, { headers: { authorization: `Bearer ${token}` } })
    const ok = await call(child)
    assert.equal(ok.status, 200)
    assert.equal(await ok.text(), 'hello from omega: /secret/x\n')

    const onlyHello = delegateCapability(parent, { roots: [node.did], subject: bob.did, capabilities: caps('invoke:brane/hello') })
    const denied = await call(onlyHello)
    assert.equal(denied.status, 403)
    assert.match((await denied.json() as { error: string, message: string }).message, /does not allow "invoke" on "brane\/secret"/)
    assert.equal((await call(issueCapability(nodeKey, { subject: alice.did, capabilities: caps('deploy:brane/*') }))).status, 403)
    assert.equal((await call(escalate(onlyHello, nodeKey))).status, 403)
    assert.equal((await call(issueCapability(nodeKey, { subject: alice.did, capabilities: caps('invoke:brane/secret'), ttlSeconds: 1, now: Date.now() - 60_000 }))).status, 401)
    assert.equal((await call(issueCapability(generateNodeKey(), { subject: alice.did, capabilities: caps('invoke:brane/secret') }))).status, 401)
    const three = delegateCapability(child, { roots: [node.did], subject: alice.did, capabilities: caps('invoke:brane/secret') })
    assert.equal((await call(three)).status, 200)
    assert.equal((await call(dropMiddleBlock(three))).status, 401)
    const revoke = await cli(['token', 'revoke', three], home)
    assert.equal(revoke.code, 0, revoke.err)
    const revoked = await call(three)
    assert.equal(revoked.status, 403)
    assert.match((await revoked.json() as { message: string }).message, /revoked/)
    assert.equal((await call(child)).status, 200)
  })

  it('CLI: token issue, delegate (attenuation only), inspect, verify', async () => {
    const issued = await cli(['token', 'issue', '--to', alice.did, '--cap', 'deploy:brane/*', '--cap', 'logs:brane/fetch', '--ttl', '2h'], home)
    assert.equal(issued.code, 0, issued.err)
    const token = issued.out.trim()
    const file = join(home, 'alice.token')
    const delegated = await cli(['token', 'delegate', token, '--to', bob.did, '--cap', 'deploy:brane/fetch', '--ttl', '10m', '-o', file], home)
    assert.equal(delegated.code, 0, delegated.err)
    const inspect = await cli(['token', 'inspect', file], home)
    assert.equal(inspect.code, 0, inspect.err)
    assert.match(inspect.out, new RegExp(`link 0 \\(issued\\) to ${alice.did}\\n  grants   deploy:brane/\\*, logs:brane/fetch`))
    assert.match(inspect.out, new RegExp(`link 1 \\(delegated\\) to ${bob.did}\\n  grants   deploy:brane/fetch`))
    assert.equal((await cli(['token', 'verify', file, '--cap', 'deploy:brane/fetch'], home)).code, 0)
    const refused = await cli(['token', 'verify', file, '--cap', 'deploy:brane/other'], home)
    assert.equal(refused.code, 14)
    assert.match(refused.err, /does not allow "deploy" on "brane\/other"/)
    const escalation = await cli(['token', 'delegate', file, '--to', alice.did, '--cap', 'logs:brane/fetch'], home)
    assert.equal(escalation.code, 14)
    assert.match(escalation.err, /Cannot delegate logs:brane\/fetch: the parent token allows only deploy:brane\/fetch/)
    assert.equal((await cli(['token', 'issue', '--to', 'did:web:x', '--cap', 'deploy:brane/*'], home)).code, 2)
    // --key takes an Ed25519 key only, checked as the node key is
    const rsa = join(home, 'rsa.pem')
    const { generateKeyPairSync } = await import('node:crypto')
    await writeFile(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
    const notEd25519 = await cli(['token', 'issue', '--to', alice.did, '--cap', 'ps:node', '--key', rsa], home)
    assert.equal(notEd25519.code, 8, notEd25519.err)
    assert.match(notEd25519.err, /expected an Ed25519 private key, got rsa/)
  })
})

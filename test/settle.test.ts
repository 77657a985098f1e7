/**
 * Settlement: receipts for real requests served by a real node, exported and verified
 * offline; every single-byte tamper, a dropped receipt, a reorder and a truncation are
 * each detected.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { generateNodeKey, loadOrCreateNodeKey } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { Settlement, exportReceipts, signReceipt, verifyExport, type Receipt } from '../src/settle/index.ts'
import { ROOT, cli, until } from './helpers.ts'

describe('settlement receipts', () => {
  let home = ''
  let exported = ''
  before(async () => { home = await mkdtemp(join(tmpdir(), 'omega-settle-')) })
  after(async () => { await rm(home, { recursive: true, force: true }) })

  it('meters real requests per brane and deployer into signed, chained receipts (periodic and at stop)', async () => {
    const dir = join(home, 'app')
    await cp(join(ROOT, 'examples/hello'), dir, { recursive: true })
    await writeFile(join(dir, 'omega.toml'), `
[brane.hello]
image = "hello.wasm"
trigger = { http = "/hello/*" }

[brane.other]
image = "hello.wasm"
lifecycle = "pooled"
trigger = { http = "/other/*" }
`)
    const node = await LocalNode.start(join(dir, 'omega.toml'), { home, port: 0, logging: silentLogging(), settleIntervalMs: 200 })
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${node.url}/hello/${i}`, { method: 'POST', body: 'x'.repeat(100) })
        assert.equal(res.status, 200)
        await res.text()
      }
      // a periodic receipt is cut while the node runs
      await until(() => (node.settlement?.receipts().length ?? 0) >= 1, 10_000, 'a periodic receipt')
      for (let i = 0; i < 3; i++) {
        await (await fetch(`${node.url}/other/${i}`)).text()
      }
    } finally {
      await node.stop()
    }
    const run = await cli(['settle', 'export', '-o', join(home, 'receipts.jsonl')], home)
    assert.equal(run.code, 0, run.err)
    exported = await readFile(join(home, 'receipts.jsonl'), 'utf8')
    const receipts = exported.trim().split('\n').map((l) => JSON.parse(l) as Receipt)
    assert.ok(receipts.length >= 3, `periodic receipts and one at stop, plus the trailer: ${exported}`)
    const key = await loadOrCreateNodeKey(home)
    const report = verifyExport(exported, { node: key.did })
    const hello = report.totals.find((t) => t.brane === 'hello')
    const other = report.totals.find((t) => t.brane === 'other')
    assert.equal(hello?.invocations, 5)
    assert.equal(hello?.bytesIn, 500)
    assert.equal(hello?.bytesOut, 5 * 'hello from omega: /hello/0\n'.length)
    assert.equal(hello?.deployer, key.did)
    assert.ok((hello?.cpuMs ?? 0) > 0)
    assert.ok((hello?.memMiBs ?? 0) > 0)
    assert.equal(other?.invocations, 3)
    const ok = await cli(['settle', 'verify', join(home, 'receipts.jsonl'), '--node', key.did], home)
    assert.equal(ok.code, 0, ok.err)
    assert.match(ok.out, /^ok: \d+ receipts \(seq 0–\d+\) signed by did:key:z6Mk\S+, chain intact/)
    assert.match(ok.out, /^hello\s+did:key:z6Mk\S+\s+5\s+0\s/m)
  })

  it('detects every single-byte tamper of an exported file', () => {
    // a small export (two receipts and the trailer) so every byte can be tried
    const key = generateNodeKey()
    const first = signedReceipt(key, undefined)
    const second = signedReceipt(key, first)
    const text = exportReceipts(key, [first, second])
    assert.ok(text.length < 4000, `small file: ${text.length} bytes`)
    verifyExport(text)
    const bytes = Buffer.from(text)
    let tried = 0
    for (let i = 0; i < bytes.length; i++) {
      for (const flip of [0x01, 0x20, 0x80]) {
        const tampered = Buffer.from(bytes)
        tampered[i] = (tampered[i] ?? 0) ^ flip
        assert.throws(() => verifyExport(tampered.toString('utf8')), { name: 'SettlementVerificationError' }, `byte ${i} ^ 0x${flip.toString(16)} not detected`)
        tried++
      }
    }
    assert.equal(tried, bytes.length * 3)
  })

  it('detects a dropped receipt, a reorder, a truncation and a foreign signer, naming the first bad receipt', async () => {
    const key = generateNodeKey()
    const receipts: Receipt[] = []
    for (let i = 0; i < 4; i++) {
      receipts.push(signedReceipt(key, receipts.at(-1)))
    }
    const lines = exportReceipts(key, receipts).trim().split('\n')
    const join2 = (ls: string[]): string => ls.join('\n') + '\n'
    assert.throws(() => verifyExport(join2([lines[0]!, lines[1]!, lines[3]!, lines[4]!])), { message: /line 3 \(receipt seq 3\): expected seq 2 after 1: receipt 2 missing/ })
    assert.throws(() => verifyExport(join2([lines[0]!, lines[2]!, lines[1]!, lines[3]!, lines[4]!])), { message: /line 2 \(receipt seq 2\): expected seq 1 after 0/ })
    assert.throws(() => verifyExport(join2(lines.slice(0, 4))), { message: /trailer is missing: the file is truncated/ })
    // the last receipt dropped, the trailer kept
    assert.throws(() => verifyExport(join2([...lines.slice(0, 3), lines[4]!])), { message: /receipts were dropped or added/ })
    // a whole chain re-signed by another key is refused when the node is pinned
    const other = generateNodeKey()
    assert.throws(() => verifyExport(exportReceipts(other, [signedReceipt(other, undefined)]), { node: key.did }), { message: /expected did:key/ })
    // the CLI exits 15 and names the line
    const file = join(home, 'dropped.jsonl')
    await writeFile(file, join2([lines[0]!, lines[1]!, lines[3]!, lines[4]!]))
    const run = await cli(['settle', 'verify', file], home)
    assert.equal(run.code, 15)
    assert.match(run.err, /Settlement receipts invalid at line 3 \(receipt seq 3\)/)
  })

  it('cuts a receipt per interval only when something ran, and one at stop', async () => {
    const dir = await mkdtemp(join(home, 'unit-'))
    const key = generateNodeKey()
    const settlement = new Settlement({ key, logger: silentLogging().forComponent('settle'), deployerOf: () => 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK' }, { home: dir, intervalMs: 50 })
    settlement.start()
    await new Promise((resolve) => setTimeout(resolve, 150))
    assert.equal(settlement.receipts().length, 0, 'no receipt for an idle period')
    settlement.record({ brane: 'b', kind: 'request', cpuMs: 2, memBytes: 2 ** 20, durationMs: 1000, bytesIn: 1, bytesOut: 2, ok: false })
    await until(() => settlement.receipts().length === 1, 5000, 'a periodic receipt')
    settlement.stop()
    const again = new Settlement({ key, logger: silentLogging().forComponent('settle') }, { home: dir, intervalMs: 50 })
    again.start()
    again.stop()
    const reader = new Settlement({ key, logger: silentLogging().forComponent('settle') }, { home: dir })
    reader.start()
    const all = reader.receipts()
    reader.stop()
    assert.deepEqual(all.map((r) => r.seq).slice(0, 3), [0, 1, 2], 'the chain continues across restarts')
    assert.deepEqual(all[0]?.usage, [{ brane: 'b', deployer: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK', invocations: 1, failures: 1, cpuMs: 2, memMiBs: 1, bytesIn: 1, bytesOut: 2 }])
    verifyExport(exportReceipts(key, all))
  })
})

let clock = Date.parse('2026-01-01T00:00:00Z')

function signedReceipt (key: ReturnType<typeof generateNodeKey>, previous: Receipt | undefined): Receipt {
  const from = new Date(clock).toISOString()
  clock += 60_000
  const to = new Date(clock).toISOString()
  return signReceipt(key, previous, { from, to }, [{ brane: 'api', deployer: key.did, invocations: 3, failures: 0, cpuMs: 1.5, memMiBs: 0.25, bytesIn: 10, bytesOut: 20 }])
}

// Apps on a mesh: two `omega node` processes carry two apps at once. Each app serves HTTP
// on one node and handles its events on the other, so events cross both ways; one app is
// redeployed while the other serves without a failed request; one is undeployed; and a
// third app that would take another's route is refused (exit 16) naming both apps.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, copyFixtures, eventually, json, listItems, ok, startNode, stopDaemon, type MeshProcess } from './helpers.ts'

interface AppRow { name: string, id: string, status: string, reason?: string, placement: Record<string, string[]> }

/** An app: HTTP on `webOn`, its events handled (and kept in state) on `endOn` */
function app (name: string, webOn: string, endOn: string, extra = ''): string {
  return `
[app]
name = "${name}"

[brane.web-${name}]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/${name}/*" }
peers = "${webOn}"
${extra}
[brane.end-${name}]
substrate = "biome"
image = "state.wasm"
lifecycle = "pooled"
peers = "${endOn}"

[brane.end-${name}.capability]
state = true

[graph]
edges = [{ from = "web-${name}", to = "end-${name}", on = "hits" }]
`
}

async function status (base: string, path: string): Promise<number> {
  const res = await fetch(new URL(path, base), { method: 'POST', body: 'x', signal: AbortSignal.timeout(30_000) })
  await res.arrayBuffer()
  return res.status
}

describe('apps: one mesh, many apps', { timeout: 240_000 }, () => {
  let dir = ''
  let a: MeshProcess
  let b: MeshProcess

  const apps = async (node: MeshProcess): Promise<AppRow[]> => json<AppRow[]>(['apps'], node.home)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-apps-'))
    await copyFixtures(dir, ['http-emit', 'state'])
    a = await startNode(join(dir, 'a'), 'lab/a', [])
    const deployer = (await cli(['id'], a.home)).out.trim()
    b = await startNode(join(dir, 'b'), 'lab/b', ['--bootstrap', a.addr, '--trust', deployer])
    await writeFile(join(dir, 'shop.toml'), app('shop', 'lab/a', 'lab/b'))
    await writeFile(join(dir, 'blog.toml'), app('blog', 'lab/b', 'lab/a'))
  })

  after(async () => {
    await Promise.all([a, b].filter((n) => n !== undefined).map(async (n) => { await stopDaemon(n, 'SIGKILL') }))
    await rm(dir, { recursive: true, force: true })
  })

  it('runs two apps side by side, each serving HTTP and handling its events across the nodes', async () => {
    await ok(['deploy', join(dir, 'shop.toml')], a.home)
    // through the other node, signed with the key both trust
    await ok(['deploy', join(dir, 'blog.toml'), '--key', join(a.home, 'node.key')], b.home)
    for (const node of [a, b]) {
      await eventually(async () => {
        const rows = await apps(node)
        return rows.length === 2 && rows.every((r) => r.status === 'running' && Object.values(r.placement).every((names) => names.length === 1))
      }, 30_000, `${node.name} to run both apps`)
    }
    const rows = await apps(a)
    assert.deepEqual(rows.map((r) => [r.name, r.placement]), [
      ['blog', { 'web-blog': ['lab/b'], 'end-blog': ['lab/a'] }],
      ['shop', { 'web-shop': ['lab/a'], 'end-shop': ['lab/b'] }]
    ])
    // either node's gateway serves either app (forwarding to the node that runs it)
    for (const [node, n] of [[a, 1], [b, 2]] as const) {
      assert.equal(await status(node.gateway, `/shop/order-${n}`), 200)
      assert.equal(await status(node.gateway, `/blog/post-${n}`), 200)
    }
    // events from node a to node b (shop) and from b to a (blog), each in its own app's state
    await eventually(async () => (await listItems(b.home, 'end-shop', 'seen')).length === 2, 20_000, 'shop\'s events on b')
    await eventually(async () => (await listItems(a.home, 'end-blog', 'seen')).length === 2, 20_000, 'blog\'s events on a')
    assert.deepEqual((await listItems(b.home, 'end-shop', 'seen')).sort(), ['/shop/order-1', '/shop/order-2'])
    assert.deepEqual((await listItems(a.home, 'end-blog', 'seen')).sort(), ['/blog/post-1', '/blog/post-2'])
    const text = await cli(['apps'], a.home)
    assert.match(text.out, /shop\s+\S+\s+running/)
  })

  it('redeploys one app while the other keeps serving, with no failed request', async () => {
    const before = (await apps(a)).find((r) => r.name === 'shop')?.id
    const failures: number[] = []
    let sent = 0
    const done = new AbortController()
    const load = (async () => {
      while (!done.signal.aborted && sent < 5_000) {
        const code = await status(sent % 2 === 0 ? a.gateway : b.gateway, `/blog/load-${sent}`).catch(() => 0)
        sent++
        if (code !== 200) {
          failures.push(code)
        }
      }
    })()
    try {
      // shop gets a config change: its branes are replaced on both nodes
      await writeFile(join(dir, 'shop.toml'), app('shop', 'lab/a', 'lab/b', '\n[brane.web-shop.config]\nversion = "2"\n'))
      await ok(['deploy', join(dir, 'shop.toml'), '--key', join(a.home, 'node.key')], b.home)
      for (const node of [a, b]) {
        await eventually(async () => {
          const shop = (await apps(node)).find((r) => r.name === 'shop')
          return shop !== undefined && shop.id !== before && shop.status === 'running'
        }, 30_000, `${node.name} to run the new shop`)
      }
      assert.equal(await status(a.gateway, '/shop/after'), 200)
    } finally {
      done.abort()
      await load
    }
    assert.ok(sent > 20, `blog served during the redeployment (${sent} requests)`)
    assert.deepEqual(failures, [], `failed requests to blog while shop was redeployed (of ${sent})`)
    await eventually(async () => (await listItems(a.home, 'end-blog', 'seen')).length === sent + 2, 30_000, 'every blog event handled')
  })

  it('refuses an app whose route another app serves, naming both (exit 16)', async () => {
    await writeFile(join(dir, 'news.toml'), app('news', 'lab/a', 'lab/a').replace('"/news/*"', '"/blog/*"'))
    const run = await cli(['deploy', join(dir, 'news.toml')], a.home)
    assert.equal(run.code, 16, run.err)
    assert.match(run.err, /app "news" cannot run beside app "blog": both serve the route "\/blog\/\*"/)
    assert.deepEqual((await apps(a)).map((r) => r.name), ['blog', 'shop'])
  })

  it('undeploys one app: its routes are gone on every node, the other keeps serving', async () => {
    await ok(['undeploy', 'shop'], a.home)
    for (const node of [a, b]) {
      await eventually(async () => (await apps(node)).map((r) => r.name).join() === 'blog', 20_000, `${node.name} to drop shop`)
      await eventually(async () => await status(node.gateway, '/shop/gone') === 404, 20_000, `${node.name} to stop serving shop`)
      assert.equal(await status(node.gateway, '/blog/still'), 200)
    }
    // its state stays on disk
    assert.ok((await listItems(b.home, 'end-shop', 'seen')).includes('/shop/order-1'))
    const again = await cli(['undeploy', 'shop'], a.home)
    assert.equal(again.code, 16, again.err)
    assert.match(again.err, /No app named "shop" runs on this mesh \(apps: blog\)/)
  })
})

// The live dashboard in a real browser (playwright-core driving Debian's Chromium): two
// `omega node` processes and a pipeline across them; the page shows both nodes HEAD, the
// edges' rates once traffic flows, a trace's hops with its signature checked in the page,
// and a killed node turning TAIL/DEAD without a reload. A screenshot is saved under
// test-output/ for the record.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { cli, copyFixtures, eventually, json, ok, post, ROOT, startNode, stopDaemon, type MeshProcess, type Placement } from './helpers.ts'

// the page's globals, as far as the checks run in it use them (the build has no DOM library)
declare const document: {
  querySelector: (selector: string) => { getAttribute: (name: string) => string | null, textContent: string | null } | null
  querySelectorAll: (selector: string) => { length: number }
}
declare const window: { mark?: number }

const CHROMIUM = process.env.OMEGA_CHROMIUM ?? '/usr/bin/chromium'
const skip = existsSync(CHROMIUM) ? false : `needs Chromium at ${CHROMIUM} (Debian's package chromium; .ci/run installs it)`

const PIPELINE = `
[brane.web]
substrate = "biome"
image = "http-emit.wasm"
lifecycle = "pooled"
trigger = { http = "/e/*" }
peers = "lab/a"

[brane.mid]
substrate = "biome"
image = "forward.wasm"
lifecycle = "pooled"
peers = "lab/b"

[brane.end]
substrate = "biome"
image = "sink.wasm"
lifecycle = "pooled"
peers = "lab/a"

[graph]
edges = [
  { from = "web", to = "mid", on = "hits" },
  { from = "mid", to = "end", on = "out" },
]
`

describe('dashboard: a live page of a two-node mesh', { timeout: 240_000, skip }, () => {
  let dir = ''
  let a: MeshProcess | undefined
  let b: MeshProcess | undefined
  let browser: Browser | undefined
  let page: Page

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-dashboard-'))
    await copyFixtures(dir, ['http-emit', 'forward', 'sink'])
    await writeFile(join(dir, 'omega.toml'), PIPELINE)
    a = await startNode(join(dir, 'a'), 'lab/a', ['--dashboard', '127.0.0.1:0'])
    const deployer = (await cli(['id'], a.home)).out.trim()
    b = await startNode(join(dir, 'b'), 'lab/b', ['--bootstrap', a.addr, '--trust', deployer, '--no-dashboard'])
    await ok(['deploy', join(dir, 'omega.toml')], a.home)
    await eventually(async () => {
      const view = await json<Placement>(['biome', 'placement'], a?.home ?? '')
      return view.placement.find((p) => p.brane === 'mid')?.names[0] === 'lab/b' && view.placement.find((p) => p.brane === 'web')?.names[0] === 'lab/a'
    }, 30_000, 'the pipeline to be placed on both nodes')
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // as root in a sandbox, on a machine with no network but loopback
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  })

  after(async () => {
    await browser?.close()
    await Promise.all([a, b].map(async (n) => { if (n !== undefined) { await stopDaemon(n, 'SIGKILL') } }))
    await rm(dir, { recursive: true, force: true })
  })

  it('signs in with the link "omega dashboard" prints and shows both nodes HEAD', async () => {
    const { link } = await json<{ url: string, link: string }>(['dashboard'], a?.home ?? '')
    await page.goto(link)
    // the one-time code left the address bar for a session cookie
    assert.equal(new URL(page.url()).search, '')
    for (const name of ['lab/a', 'lab/b']) {
      await page.waitForFunction((n) => document.querySelector(`#peers tr[data-name="${n}"]`)?.getAttribute('data-status') === 'HEAD', name, { timeout: 30_000 })
    }
    assert.match(await page.textContent('#live') ?? '', /live/)
  })

  it('shows the edges with a non-zero rate once events flow, from both nodes', async () => {
    for (let i = 0; i < 40; i++) {
      assert.equal(await post(a?.gateway ?? '', `/e/k${i}`), 200)
    }
    // web → mid is delivered from node a, mid → end from node b: both counted on a's page
    for (const edge of ['web>mid:hits', 'mid>end:out']) {
      await page.waitForFunction((e) => {
        const text = document.querySelector(`#edges tr[data-edge="${e}"] .rate`)?.textContent ?? '0'
        return Number.parseFloat(text) > 0
      }, edge, { timeout: 30_000 })
    }
    const svgEdges = await page.locator('#graph g[data-edge]').count()
    assert.equal(svgEdges, 2)
  })

  it('opens a trace with its hops across both nodes, its signature verified in the page', async () => {
    // the page fetches a trace when it is opened; the newest trace's second hop (mid → end,
    // written on b once end has handled it) may still be on its way: open it again until both show
    await eventually(async () => {
      await page.locator('#traces li button').first().click()
      await page.waitForFunction(() => document.querySelectorAll('#trace table.hops tbody tr').length >= 2, undefined, { timeout: 2_000 })
      return true
    }, 30_000, 'the newest trace to show a hop on each node')
    await page.waitForSelector('#trace .verify.ok', { timeout: 15_000 })
    const nodes = await page.locator('#trace table.hops tbody tr td:first-child').allTextContents()
    assert.deepEqual([...new Set(nodes)].sort(), ['lab/a', 'lab/b'])
  })

  it('turns a killed node TAIL or DEAD without a reload', async () => {
    // a reload would lose this mark
    await page.evaluate(() => { window.mark = 42 })
    b?.child.kill('SIGKILL')
    await page.waitForFunction(() => ['TAIL', 'DEAD'].includes(document.querySelector('#peers tr[data-name="lab/b"]')?.getAttribute('data-status') ?? ''), undefined, { timeout: 60_000 })
    assert.equal(await page.evaluate(() => window.mark), 42)
    const out = join(ROOT, 'test-output')
    await mkdir(out, { recursive: true })
    await page.screenshot({ path: join(out, 'dashboard.png'), fullPage: true })
  })
})

/**
 * Damaged storage (D4, D8): a node never starts over an event queue that lost events,
 * says what to do, and exits promptly; `omega queue salvage` recovers what can be read.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalNode } from '../src/daemon/index.ts'
import { EventQueue } from '../src/dispatch/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { ROOT, cli } from './helpers.ts'

const EVENTS = 3000

/** A home whose queue holds EVENTS events, each with one pending delivery */
async function homeWithEvents (dir: string, name: string): Promise<string> {
  const home = join(dir, name)
  await mkdir(home, { recursive: true })
  const queue = new EventQueue({ path: join(home, 'queue.db') })
  for (let i = 0; i < EVENTS; i++) {
    queue.enqueue({ id: `t:${i}`, topic: 't', source: 'a', payload: Buffer.alloc(200, i % 256), traceId: `tr${i}`, hops: [], createdAt: Date.now() }, [{ edge: 'a>b:t', to: 'b', priority: 5 }])
  }
  queue.close()
  return home
}

/** `omega up` as a process: its exit code and output, or a failure if it runs past 30 s */
async function upExits (home: string, manifest: string): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/omega.js'), 'up', manifest, '--port', '0', '--home', home], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)
  const code = await new Promise<number | null>((resolve) => { child.once('close', resolve) })
  clearTimeout(timer)
  return { code, out }
}

describe('damaged event queue', () => {
  let dir = ''
  let manifest = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-storage-'))
    await cp(join(ROOT, 'examples/hello'), join(dir, 'app'), { recursive: true })
    manifest = join(dir, 'app/omega.toml')
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('refuses a zero-length queue instead of starting a new one, and omega up exits 17 at once', async () => {
    const home = join(dir, 'empty')
    await mkdir(home)
    await writeFile(join(home, 'queue.db'), '')
    await assert.rejects(LocalNode.start(manifest, { home, port: 0, logging: silentLogging(), admin: false }),
      { name: 'QueueError', message: /queue\.db exists but is empty \(0 bytes\): it was truncated/ })
    const up = await upExits(home, manifest)
    assert.equal(up.code, 17, up.out)
    assert.match(up.out, /exists but is empty/)
    assert.equal((await stat(join(home, 'queue.db'))).size, 0, 'the file is left as it was')
  })

  it('refuses a garbage queue file: omega up says what to do and exits promptly (D4)', async () => {
    const home = join(dir, 'garbage')
    await mkdir(home)
    await writeFile(join(home, 'queue.db'), Buffer.alloc(8192, 0x5a))
    const up = await upExits(home, manifest)
    assert.equal(up.code, 17, up.out)
    assert.match(up.out, /Cannot open the event queue .*queue\.db: file is not a database: the node refuses to start over it .*"omega queue salvage"/)
  })

  it('refuses a queue whose pages are damaged; check finds it; salvage keeps every readable event (D8)', async () => {
    const home = await homeWithEvents(dir, 'damaged')
    const file = join(home, 'queue.db')
    const { size } = await stat(file)
    // 200 bytes of noise in the middle of the table's pages
    const handle = await open(file, 'r+')
    await handle.write(Buffer.alloc(200, 0xa5), 0, 200, Math.floor(size / 2))
    await handle.close()
    await assert.rejects(LocalNode.start(manifest, { home, port: 0, logging: silentLogging(), admin: false }),
      { name: 'QueueError', message: /queue\.db is damaged \(SQLite's quick_check: .*\): the node refuses to start over it/ })
    const check = await cli(['queue', 'check', '--home', home])
    assert.equal(check.code, 17, check.out)
    assert.match(check.err, /is damaged:\n {2}\S/)

    const salvage = await cli(['queue', 'salvage', '--home', home])
    assert.equal(salvage.code, 0, salvage.err)
    const [, events, deliveries, lost] = /salvaged (\d+) events and (\d+) deliveries .*; (\d+) rows could not be read; the damaged file is .*queue\.db\.damaged-/.exec(salvage.out) ?? []
    // the noise may hit an index, an event's page or a delivery's: whatever was readable is back
    assert.ok(Number(events) >= EVENTS * 0.9 && Number(events) <= EVENTS, salvage.out)
    assert.ok(Number(deliveries) >= EVENTS * 0.9 && Number(deliveries) + Number(lost) >= EVENTS, salvage.out)
    assert.equal((await cli(['queue', 'check', '--home', home])).code, 0)
    // the salvaged queue serves: the node starts over it
    const node = await LocalNode.start(manifest, { home, port: 0, logging: silentLogging(), admin: false })
    await node.stop()
  })

  it('a start on a full disk says so and exits 19 (no space left), not 70', async (t) => {
    // a 2 MiB tmpfs the test mounts and fills: needs root (skipped with the reason otherwise)
    const mnt = await mkdtemp(join(tmpdir(), 'omega-full-'))
    const mounted = await new Promise<string | undefined>((resolve) => {
      const child = spawn('mount', ['-t', 'tmpfs', '-o', 'size=2M', 'tmpfs', mnt], { stdio: ['ignore', 'ignore', 'pipe'] })
      let err = ''
      child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
      child.once('error', (e) => { resolve(e.message) })
      child.once('exit', (code) => { resolve(code === 0 ? undefined : err.trim() || `mount exited ${String(code)}`) })
    })
    if (mounted !== undefined) {
      t.skip(`cannot mount a tmpfs here: ${mounted}`)
      await rm(mnt, { recursive: true, force: true })
      return
    }
    try {
      await writeFile(join(mnt, 'fill'), Buffer.alloc(2 * 2 ** 20)).catch(() => {}) // ENOSPC once full
      const up = await upExits(mnt, manifest)
      assert.equal(up.code, 19, up.out)
      assert.match(up.out, /omega: No space left on the device.*free some space \(or use another --home\)/)
    } finally {
      await new Promise((resolve) => { spawn('umount', [mnt]).once('exit', resolve) })
      await rm(mnt, { recursive: true, force: true })
    }
  })
})

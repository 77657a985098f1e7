/**
 * mDNS discovery, only inside a loopback-only network namespace this test creates (so no
 * multicast can leave the machine): two node processes started with `ip netns exec` find
 * each other with no bootstrap address. Skipped, with the reason printed, where
 * namespaces cannot be made (not root, no `ip`).
 *
 * With OMEGA_MESH_MDNS_CHILD=1 this file is one of those node processes.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { MeshNode } from '../src/mesh/index.ts'
import { generateNodeKey } from '../src/identity/index.ts'
import { silentLogging } from '../src/observe/index.ts'
import { FAST_MEMBERSHIP } from '../src/mesh/testing.ts'

const run = promisify(execFile)

async function child (): Promise<void> {
  const node = await MeshNode.create({
    key: generateNodeKey(),
    name: `lab.lan/mdns-${process.pid}`,
    substrate: 'biome',
    discovery: { mdns: true },
    membership: FAST_MEMBERSHIP,
    logger: silentLogging().forComponent('omega:mesh')
  })
  await node.start()
  process.stdout.write(JSON.stringify({ did: node.did }) + '\n')
  const timer = setInterval(() => {
    const alive = node.members().filter((m) => m.state === 'alive' && m.did !== node.did).map((m) => m.did)
    process.stdout.write(JSON.stringify({ alive }) + '\n')
  }, 100)
  const stop = (): void => {
    clearInterval(timer)
    node.stop().finally(() => process.exit(0)).catch(() => {})
  }
  process.once('SIGTERM', stop)
  setTimeout(stop, 30_000).unref()
}

if (process.env.OMEGA_MESH_MDNS_CHILD === '1') {
  child().catch((err: unknown) => {
    process.stderr.write(`mdns child: ${String(err)}\n`)
    process.exit(1)
  })
} else {
  describe('mesh mDNS discovery in a network namespace', () => {
    const ns = `omega-mdns-${process.pid}`
    let skip: string | undefined
    const children: ChildProcess[] = []

    before(async () => {
      if (process.getuid?.() !== 0) {
        skip = 'network namespaces need root (ip netns add); mDNS is never tried outside one'
        return
      }
      try {
        await run('ip', ['netns', 'add', ns])
        await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
        await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'multicast', 'on'])
        await run('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo'])
        const { stdout } = await run('ip', ['netns', 'exec', ns, 'ip', '-o', 'link'])
        assert.equal(stdout.trim().split('\n').length, 1, `the namespace has only lo: ${stdout}`)
      } catch (err) {
        skip = `cannot create a loopback-only network namespace: ${(err as Error).message.split('\n')[0] ?? ''}`
      }
    })

    after(async () => {
      for (const c of children) {
        c.kill('SIGKILL')
      }
      await run('ip', ['netns', 'del', ns]).catch(() => {})
    })

    it('two node processes find each other by mDNS alone', async (t) => {
      if (skip !== undefined) {
        t.diagnostic(`skipped: ${skip}`)
        process.stderr.write(`mesh-mdns: skipped: ${skip}\n`)
        t.skip(skip)
        return
      }
      const views: Array<{ did?: string, alive: string[] }> = [{ alive: [] }, { alive: [] }]
      for (let i = 0; i < 2; i++) {
        const c = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url)], {
          env: { ...process.env, OMEGA_MESH_MDNS_CHILD: '1' },
          stdio: ['ignore', 'pipe', 'inherit']
        })
        children.push(c)
        const view = views[i] as { did?: string, alive: string[] }
        createInterface({ input: c.stdout as NonNullable<typeof c.stdout> }).on('line', (line) => {
          const msg = JSON.parse(line) as { did?: string, alive?: string[] }
          if (msg.did !== undefined) {
            view.did = msg.did
          }
          if (msg.alive !== undefined) {
            view.alive = msg.alive
          }
        })
      }
      const [a, b] = views as [{ did?: string, alive: string[] }, { did?: string, alive: string[] }]
      const deadline = Date.now() + 25_000
      while (!(a.did !== undefined && b.did !== undefined && a.alive.includes(b.did) && b.alive.includes(a.did))) {
        assert.ok(Date.now() < deadline, `the two nodes did not find each other by mDNS: ${JSON.stringify(views)}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      for (const c of children) {
        c.kill('SIGTERM')
      }
    })
  })
}

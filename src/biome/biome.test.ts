// The mesh-independent parts of Biome: hybrid logical clocks, signed deployments and
// the registry, rendezvous placement, and the replicated state documents.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateNodeKey } from '../identity/index.ts'
import { checkManifest } from '../manifest/index.ts'
import { compareHlc, HybridClock, MAX_CLOCK_SKEW_MS } from './hlc.ts'
import { authorizeDeployment, deploymentId, materialise, prepareDeployment, prepareRemoval, verifyDeployment, versionOf, type DeploymentDocument } from './deployment.ts'
import { issueCapability, parseCapability } from '../identity/index.ts'
import { Registry } from './registry.ts'
import { place, wantedReplicas, type Candidate } from './placement.ts'
import { StateStore } from './state.ts'
import { meshSettingsFor } from './network.ts'

const quiet = { debug () {}, info () {}, warn () {}, error () {} }
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (b: Uint8Array | undefined): string => b === undefined ? '<none>' : new TextDecoder().decode(b)

describe('HybridClock', () => {
  it('never goes backwards, even when the wall clock does', () => {
    let wall = 1_000
    const clock = new HybridClock('did:a', () => wall)
    const a = clock.now()
    wall = 500
    const b = clock.now()
    const c = clock.now()
    assert.ok(compareHlc(a, b) < 0 && compareHlc(b, c) < 0)
    assert.deepEqual([b.wall, b.logical, c.logical], [1_000, 1, 2])
  })

  it('comes after every timestamp it observed, and refuses one far in the future', () => {
    const clock = new HybridClock('did:a', () => 1_000)
    clock.observe({ wall: 2_000, logical: 7, node: 'did:b' })
    const t = clock.now()
    assert.ok(compareHlc(t, { wall: 2_000, logical: 7, node: 'did:b' }) > 0)
    assert.throws(() => { clock.observe({ wall: 1_000 + MAX_CLOCK_SKEW_MS + 1, logical: 0, node: 'did:b' }) }, RangeError)
  })

  it('breaks ties on the node, the same way everywhere', () => {
    assert.ok(compareHlc({ wall: 1, logical: 1, node: 'did:a' }, { wall: 1, logical: 1, node: 'did:b' }) < 0)
    assert.equal(compareHlc({ wall: 1, logical: 1, node: 'did:a' }, { wall: 1, logical: 1, node: 'did:a' }), 0)
  })
})

describe('deployments and the registry', () => {
  let dir = ''
  const key = generateNodeKey()
  const clock = new HybridClock(key.did)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'omega-biome-'))
    await mkdir(join(dir, 'app', 'wasm'), { recursive: true })
    await writeFile(join(dir, 'app', 'wasm', 'a.wasm'), 'component bytes')
    await writeFile(join(dir, 'app', 'omega.toml'), '[brane.a]\nimage = "wasm/a.wasm"\nsubstrate = "biome"\n\n[brane.b]\nimage = "../shared.wasm"\nsubstrate = "biome"\n')
    await writeFile(join(dir, 'shared.wasm'), 'shared bytes')
  })

  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('signs a manifest with its images, verifies it offline, and refuses any change', async () => {
    const { document, blobs } = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now() })
    assert.equal(verifyDeployment(JSON.parse(JSON.stringify(document))).name, 'omega', 'an app is named after its manifest file when it does not say')
    assert.deepEqual(document.images.map((i) => i.image), ['wasm/a.wasm', '../shared.wasm'])
    assert.equal(blobs.size, 2)
    const tampered = [
      { ...document, manifest: { ...document.manifest, text: document.manifest.text.replace('a.wasm', 'x.wasm') } },
      { ...document, images: [{ ...document.images[0], size: 1 }] },
      { ...document, time: { ...document.time, wall: document.time.wall + 1 } },
      { ...document, deployer: generateNodeKey().did }
    ]
    for (const doc of tampered) {
      assert.throws(() => verifyDeployment(doc), { name: 'DeploymentError', message: /signature does not match/ })
    }
    assert.throws(() => verifyDeployment({ ...document, name: '../x' }), { name: 'DeploymentError' })
  })

  it('refuses to sign an invalid manifest or one with an absolute image path', async () => {
    await writeFile(join(dir, 'bad.toml'), '[brane.a]\nimage = "/abs/a.wasm"\n')
    await assert.rejects(prepareDeployment(join(dir, 'bad.toml'), key, { home: dir, time: clock.now() }), { name: 'DeploymentError', message: /absolute path/ })
    await writeFile(join(dir, 'bad.toml'), '[brane.a]\nimage = "a.wasm"\n[graph]\nedges = [{ from = "a", to = "nope", on = "t" }]\n')
    await assert.rejects(prepareDeployment(join(dir, 'bad.toml'), key, { home: dir, time: clock.now() }), { name: 'ManifestError' })
  })

  it('keeps the newest deployment by signed time, across a restart', async () => {
    const root = join(dir, 'node1', 'biome')
    const registry = new Registry({ root })
    await registry.open()
    const first = (await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now() })).document
    const second = (await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now() })).document
    assert.equal(await registry.offer(second), true)
    assert.equal(await registry.offer(first), false, 'an older deployment never replaces a newer one')
    assert.equal(await registry.offer(second), false, 'the same one again changes nothing')
    const reopened = new Registry({ root })
    await reopened.open()
    assert.deepEqual(reopened.get('omega'), second)
  })

  it('names an app by --app, by [app] name, or by its file; a removal is a signed document that replaces the app', async () => {
    const named = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now(), name: 'shop' })
    assert.equal(named.document.name, 'shop')
    await writeFile(join(dir, 'app', 'other.toml'), '[app]\nname = "blog"\n\n[brane.c]\nimage = "wasm/a.wasm"\n')
    assert.equal((await prepareDeployment(join(dir, 'app', 'other.toml'), key, { home: dir, time: clock.now() })).document.name, 'blog')
    await assert.rejects(prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now(), name: 'Not An App' }), { name: 'DeploymentError', message: /Invalid app name/ })
    const removal = prepareRemoval('shop', key, { time: clock.now() })
    const registry = new Registry({ root: join(dir, 'node4', 'biome') })
    await registry.open()
    assert.equal(await registry.offer(named.document), true)
    assert.equal(await registry.offer(verifyDeployment(JSON.parse(JSON.stringify(removal)))), true)
    assert.equal(await registry.offer(named.document), false, 'the app stays removed: an older deployment heard later loses')
    assert.equal(registry.get('shop')?.removed, true)
    // a removal cannot smuggle a manifest or images
    assert.throws(() => verifyDeployment({ ...removal, manifest: { file: 'omega.toml', text: '[brane.x]\nimage = "x.wasm"\n' } }), { name: 'DeploymentError', message: /removal/ })
    // the version of what a node holds: one deployment's id, or a digest of them all, whatever their order
    assert.equal(versionOf([named.document]), deploymentId(named.document))
    assert.equal(versionOf([named.document, removal]), versionOf([removal, named.document]))
    assert.notEqual(versionOf([named.document, removal]), versionOf([named.document]))
  })

  it('takes a token for deploy on app/NAME for the whole app, or one for each of its branes', async () => {
    const root = generateNodeKey()
    const trust = new Set([root.did])
    const revoked = { has: () => false }
    const token = (cap: string): string => issueCapability(root, { subject: key.did, capabilities: [parseCapability(cap)] })
    const shop = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now(), name: 'shop', token: token('deploy:app/shop') })
    authorizeDeployment(shop.document, { trust, current: undefined, revoked })
    const blog = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now(), name: 'blog', token: token('deploy:app/shop') })
    assert.throws(() => { authorizeDeployment(blog.document, { trust, current: undefined, revoked }) }, { name: 'DeploymentError', message: /does not allow deploy on brane\/a/ })
    const byBranes = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now(), name: 'blog', token: token('deploy:brane/*') })
    authorizeDeployment(byBranes.document, { trust, current: undefined, revoked })
    // removing an app takes a token for it (or for the branes it runs)
    assert.throws(() => { authorizeDeployment(prepareRemoval('blog', key, { time: clock.now(), token: token('deploy:app/shop') }), { trust, current: byBranes.document, revoked }) }, { message: /does not allow deploy on brane\/a/ })
    assert.throws(() => { authorizeDeployment(prepareRemoval('blog', key, { time: clock.now(), token: token('deploy:app/shop') }), { trust, current: undefined, revoked }) }, { message: /does not allow deploy on app\/blog/ })
    authorizeDeployment(prepareRemoval('shop', key, { time: clock.now(), token: token('deploy:app/shop') }), { trust, current: shop.document, revoked })
  })

  it('materialises a deployment where its manifest loads unchanged, checking every blob', async () => {
    const prepared = await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now() })
    const registry = new Registry({ root: join(dir, 'node2', 'biome') })
    await registry.open()
    for (const [hash, path] of prepared.blobs) {
      await registry.putBlob(await readFile(path), hash)
    }
    await assert.rejects(registry.putBlob(bytes('other'), prepared.document.images[0]?.hash), { name: 'DeploymentError' })
    const manifest = await materialise(prepared.document, registry.deployDir, join(dir, 'node2'), (h) => registry.blobPath(h))
    const { plan } = checkManifest(await readFile(manifest, 'utf8'), manifest)
    assert.deepEqual(plan.branes.map((b) => b.name), ['a', 'b'])
    assert.equal(await readFile(join(manifest, '..', 'wasm', 'a.wasm'), 'utf8'), 'component bytes')
    assert.equal(await readFile(join(manifest, '..', '..', 'shared.wasm'), 'utf8'), 'shared bytes')
    // materialising again reuses the directory
    assert.equal(await materialise(prepared.document, registry.deployDir, join(dir, 'node2'), (h) => registry.blobPath(h)), manifest)
  })

  it('keeps every image path, however many "../" it has, inside the deployment directory', async () => {
    const doc: DeploymentDocument = (await prepareDeployment(join(dir, 'app', 'omega.toml'), key, { home: dir, time: clock.now() })).document
    const registry = new Registry({ root: join(dir, 'node3', 'biome') })
    await registry.open()
    const hash = await registry.putBlob(bytes('x'))
    const evil = { ...doc, images: [{ image: 'a/../../../../etc/x.wasm', hash, size: 1 }, { image: '/etc/y.wasm', hash, size: 1 }] }
    await assert.rejects(materialise(evil, registry.deployDir, join(dir, 'node3'), (h) => registry.blobPath(h)), { name: 'DeploymentError', message: /absolute path/ })
    const manifest = await materialise({ ...evil, images: evil.images.slice(0, 1) }, registry.deployDir, join(dir, 'node3'), (h) => registry.blobPath(h))
    assert.ok(manifest.startsWith(registry.deployDir))
    assert.equal(await readFile(join(manifest, '..', 'a', '..', '..', '..', '..', 'etc', 'x.wasm'), 'utf8'), 'x')
    assert.ok(join(manifest, '..', 'a', '..', '..', '..', '..', 'etc', 'x.wasm').startsWith(registry.deployDir))
  })
})

describe('placement', () => {
  const manifest = `
[brane.ingest]
substrate = "biome"
replicas = 2
peers = "lab/ingest-*"

[brane.transform]
substrate = "biome"
replicas = 3

[brane.train]
substrate = "biome"
capability = "frontier"
guest = "torch"

[brane.home]
substrate = "habitat"
hosts = ["lab/home-1"]
`
  const { plan } = checkManifest(manifest, 'omega.toml')
  const node = (name: string, extra: Partial<Candidate> = {}): Candidate => ({ did: `did:key:${name}`, name, substrate: 'biome', frontier: false, state: 'alive', ...extra })
  const members = [
    node('lab/ingest-1'), node('lab/ingest-2'), node('lab/ingest-3'), node('lab/pool-1'), node('lab/pool-2', { frontier: true }),
    node('lab/home-1', { substrate: 'habitat' })
  ]

  it('is the same on every node, whatever the order of the view', () => {
    const a = place(plan, members)
    const b = place(plan, [...members].reverse())
    assert.deepEqual([...a.values()], [...b.values()])
  })

  it('honours substrate, peers, hosts, profile and replicas', () => {
    const p = place(plan, members)
    assert.equal(p.get('ingest')?.nodes.length, 2)
    assert.ok(p.get('ingest')?.nodes.every((d) => d.startsWith('did:key:lab/ingest-')))
    assert.equal(p.get('transform')?.nodes.length, 3)
    assert.deepEqual(p.get('train')?.nodes, ['did:key:lab/pool-2'])
    assert.deepEqual(p.get('home')?.nodes, ['did:key:lab/home-1'])
  })

  it('moves only the replicas of a dead node, to the next in each ranking', () => {
    const before = place(plan, members)
    const victim = before.get('transform')?.nodes[0] ?? ''
    const after = place(plan, members.map((m) => m.did === victim ? { ...m, state: 'dead' as const } : m))
    for (const [brane, was] of before) {
      const now = after.get(brane)?.nodes ?? []
      const kept = was.nodes.filter((d) => d !== victim)
      assert.deepEqual(now.slice(0, kept.length), kept, `${brane}: surviving replicas stay where they were`)
      assert.ok(!now.includes(victim))
    }
  })

  it('scales replicas = "auto" within its bounds', () => {
    const auto = checkManifest('[brane.t]\nsubstrate = "biome"\nreplicas = "auto"\n', 'omega.toml').plan
    const bounded = checkManifest('[brane.t]\nsubstrate = "biome"\nreplicas = { min = 2, max = 3 }\n', 'omega.toml').plan
    const t = auto.branes[0]
    const b = bounded.branes[0]
    assert.ok(t !== undefined && b !== undefined)
    assert.equal(wantedReplicas(t), 1)
    assert.equal(wantedReplicas(t, { auto: () => 4 }), 4)
    assert.equal(wantedReplicas(t, { auto: () => 1_000 }), 8, 'the default maximum')
    assert.equal(wantedReplicas(b), 2)
    assert.equal(wantedReplicas(b, { auto: () => 9 }), 3)
    assert.equal(wantedReplicas(b, { auto: () => Number.NaN }), 2, 'a nonsense figure falls back to the minimum')
    assert.equal(place(auto, members, { auto: () => 3 }).get('t')?.nodes.length, 3)
  })

  it('says why a brane runs nowhere', () => {
    const p = place(plan, members.filter((m) => !m.frontier))
    assert.deepEqual(p.get('train')?.nodes, [])
    assert.match(p.get('train')?.reason ?? '', /no eligible node .*cannot run microVMs/)
  })
})

describe('StateStore', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'omega-state-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('answers the brane calls and keeps them across a reopen and a compaction', () => {
    const path = join(dir, 'a.db')
    const store = new StateStore({ path, logger: quiet })
    store.call('b', { method: 'set', key: 'k', value: bytes('v1') })
    store.call('b', { method: 'set', key: 'gone', value: bytes('x') })
    store.call('b', { method: 'delete', key: 'gone' })
    for (const item of ['x', 'y', 'z']) {
      store.call('b', { method: 'append', key: 'log', value: bytes(item) })
    }
    assert.equal(text(store.call('b', { method: 'get', key: 'k' }) as Uint8Array), 'v1')
    assert.equal(store.call('b', { method: 'get', key: 'gone' }), undefined)
    assert.deepEqual((store.call('b', { method: 'range', key: 'log', start: 1, end: 10 }) as Uint8Array[]).map(text), ['y', 'z'])
    assert.deepEqual(store.call('b', { method: 'range', key: 'log', start: 5, end: 2 }), [])
    assert.ok(store.compact() > 0)
    store.close()
    const reopened = new StateStore({ path, logger: quiet })
    assert.deepEqual(reopened.snapshot('b'), { map: { k: 'v1' }, lists: { log: 3 } })
    reopened.close()
  })

  it('converges two replicas written apart, whatever order the updates arrive in', () => {
    const a = new StateStore({ path: join(dir, 'r1.db'), logger: quiet })
    const b = new StateStore({ path: join(dir, 'r2.db'), logger: quiet })
    const fromA: Uint8Array[] = []
    a.onUpdate((_brane, update, origin) => {
      if (origin === 'local') {
        fromA.push(update)
      }
    })
    a.call('t', { method: 'set', key: 'shared', value: bytes('from a') })
    a.call('t', { method: 'append', key: 'l', value: bytes('a1') })
    b.call('t', { method: 'set', key: 'only-b', value: bytes('b') })
    b.call('t', { method: 'append', key: 'l', value: bytes('b1') })
    // a pushes its updates twice, in reverse order; b answers with what a lacks
    for (const update of [...fromA].reverse().concat(fromA)) {
      b.apply('t', update, 'did:a')
    }
    a.apply('t', b.diff('t', a.stateVector('t')), 'did:b')
    assert.deepEqual(a.snapshot('t'), b.snapshot('t'))
    assert.deepEqual(a.snapshot('t').lists, { l: 2 })
    assert.equal(a.snapshot('t').map['only-b'], 'b')
    a.close()
    b.close()
  })

  it('refuses a value over the size limit', () => {
    const store = new StateStore({ path: join(dir, 'c.db'), logger: quiet, maxValueBytes: 4 })
    assert.throws(() => store.call('b', { method: 'set', key: 'k', value: bytes('12345') }), RangeError)
    store.close()
  })
})

describe('mesh settings from a manifest', () => {
  it('applies the network and discovery tables of the branes a node may run (the seed pipeline)', async () => {
    const { plan } = checkManifest(await readFile(join(import.meta.dirname, '../../../examples/seeds/biome-pipeline.toml'), 'utf8'), 'biome-pipeline.toml')
    const ingest = meshSettingsFor(plan, { name: 'lab.lan/ingest-1', substrate: 'biome', ip: '127.0.0.1' })
    assert.deepEqual(ingest.listen, ['/ip4/127.0.0.1/udp/4433/quic-v1'])
    assert.equal(ingest.mdns, true)
    assert.deepEqual(ingest.bootstrap, [])
    assert.match(ingest.notes[0] ?? '', /bootstrap \/ip4\/192.168.1.20\/udp\/4433\/quic-v1 has no \/p2p\//)
    const gpu = meshSettingsFor(plan, { name: 'lab.lan/gpu-1', substrate: 'biome', ip: '127.0.0.1' })
    assert.deepEqual(gpu.netbird, { peers: 'lab.lan/gpu-*', transport: 'tcp' })
    assert.equal(gpu.mdns, false)
    const gaia = meshSettingsFor(plan, { name: 'lab.lan/ingest-1', substrate: 'gaia', ip: '127.0.0.1' })
    assert.deepEqual([gaia.listen, gaia.mdns, gaia.tailscale, gaia.netbird], [[], false, undefined, undefined])
  })
})

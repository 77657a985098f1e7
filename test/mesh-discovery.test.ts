/**
 * Discovery: Tailscale and NetBird through stand-in executables that check their command
 * line and print the documented `status --json` shapes (the real CLIs cannot run here),
 * and DNS-SD against a small DNS responder on 127.0.0.1 written below. The end-to-end
 * cases make a node join a running mesh from what discovery found.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import type { Socket } from 'node:dgram'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  MeshNode, browseDnsSd, discoverDnsSd, discoverOverlay, overlayAddrs, parseNetbirdStatus, parseTailscaleStatus
} from '../src/mesh/index.ts'
import { startNode, stopAll, waitFor } from '../src/mesh/testing.ts'

/** `tailscale status --json` (ipnstate.Status): Peer is a map of PeerStatus by node key */
function tailscaleStatus (ip: string): object {
  const peer = (id: string, host: string, ips: string[], online: boolean): object => ({
    ID: id,
    PublicKey: `nodekey:${id}`,
    HostName: host,
    DNSName: `${host}.tail1234.ts.net.`,
    OS: 'linux',
    UserID: 42,
    TailscaleIPs: ips,
    AllowedIPs: ips.map((a) => a.includes(':') ? `${a}/128` : `${a}/32`),
    Addrs: ['192.0.2.10:41641'],
    CurAddr: '',
    Relay: 'fra',
    RxBytes: 0,
    TxBytes: 0,
    Created: '2025-01-01T00:00:00Z',
    LastWrite: '0001-01-01T00:00:00Z',
    LastSeen: '2025-01-02T00:00:00Z',
    LastHandshake: '0001-01-01T00:00:00Z',
    Online: online,
    ExitNode: false,
    ExitNodeOption: false,
    Active: online,
    PeerAPIURL: [`http://${ips[0] ?? ''}:37263`],
    InNetworkMap: true,
    InMagicSock: true,
    InEngine: true
  })
  return {
    Version: '1.76.6-t1234',
    TUN: true,
    BackendState: 'Running',
    HaveNodeKey: true,
    AuthURL: '',
    TailscaleIPs: ['100.101.1.1', 'fd7a:115c:a1e0::1'],
    Self: peer('self', 'omega-self', ['100.101.1.1'], true),
    Health: [],
    MagicDNSSuffix: 'tail1234.ts.net',
    CurrentTailnet: { Name: 'lab.lan', MagicDNSSuffix: 'tail1234.ts.net', MagicDNSEnabled: true },
    CertDomains: null,
    Peer: {
      'nodekey:a1': peer('a1', 'transform-pool-1', [ip, 'fd7a:115c:a1e0::2'], true),
      'nodekey:a2': peer('a2', 'transform-pool-2', ['100.101.2.2'], false),
      'nodekey:a3': peer('a3', 'laptop', ['100.101.2.3'], true)
    },
    User: { 42: { ID: 42, LoginName: 'ops@lab.lan', DisplayName: 'Ops', ProfilePicURL: '' } },
    ClientVersion: null
  }
}

/** `netbird status --json` (client/status OutputOverview): peers.details[] */
function netbirdStatus (ip: string): object {
  const peer = (fqdn: string, netbirdIp: string, status: string): object => ({
    fqdn,
    netbirdIp,
    publicKey: 'Pk0=',
    status,
    lastStatusUpdate: '2025-01-02T00:00:00Z',
    connectionType: status === 'Connected' ? 'P2P' : '',
    iceCandidateType: { local: 'host', remote: 'host' },
    iceCandidateEndpoint: { local: '192.0.2.1:51820', remote: '192.0.2.2:51820' },
    relayAddress: '',
    lastWireguardHandshake: '2025-01-02T00:00:00Z',
    transferReceived: 1024,
    transferSent: 2048,
    latency: 1200000,
    quantumResistance: false,
    networks: []
  })
  return {
    peers: {
      total: 3,
      connected: 2,
      details: [
        peer('transform-pool-1.lab.lan', ip, 'Connected'),
        peer('transform-pool-2.lab.lan', '100.90.0.3', 'Connecting'),
        peer('db.other.lan', '100.90.0.4', 'Connected')
      ]
    },
    cliVersion: '0.36.5',
    daemonVersion: '0.36.5',
    management: { url: 'https://api.netbird.io:443', connected: true, error: '' },
    signal: { url: 'https://signal.netbird.io:443', connected: true, error: '' },
    relays: { total: 1, available: 1, details: [] },
    netbirdIp: '100.90.0.1/16',
    publicKey: 'Pk1=',
    usesKernelInterface: true,
    fqdn: 'omega-self.lab.lan',
    quantumResistance: false,
    quantumResistancePermissive: false,
    networks: [],
    forwardingRules: 0,
    dnsServers: [],
    events: []
  }
}

/** a stand-in CLI: logs its argv, prints the JSON for `status --json`, fails otherwise */
async function standIn (dir: string, name: string, json: object): Promise<{ path: string, log: string }> {
  const path = join(dir, name)
  const log = join(dir, `${name}.args`)
  await writeFile(join(dir, `${name}.json`), JSON.stringify(json, null, 2))
  await writeFile(path, `#!/bin/sh
printf '%s\\n' "$*" >> '${log}'
if [ "$1" = status ] && [ "$2" = --json ] && [ $# -eq 2 ]; then
  cat '${join(dir, `${name}.json`)}'
  exit 0
fi
echo "${name}: unknown command $*" >&2
exit 2
`)
  await chmod(path, 0o755)
  return { path, log }
}

describe('mesh discovery: tailscale and netbird status JSON', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'omega-mesh-discovery-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('parses the documented Tailscale shape and keeps online peers matching the glob', () => {
    const peers = parseTailscaleStatus(JSON.stringify(tailscaleStatus('100.101.2.1')))
    assert.equal(peers.length, 3)
    assert.deepEqual(peers[0], {
      names: ['transform-pool-1', 'lab.lan/transform-pool-1', 'transform-pool-1.tail1234.ts.net'],
      ips: ['100.101.2.1', 'fd7a:115c:a1e0::2'],
      online: true
    })
    assert.deepEqual(overlayAddrs(peers, { peers: 'lab.lan/transform-pool-*' }), ['/ip4/100.101.2.1/tcp/4001', '/ip6/fd7a:115c:a1e0::2/tcp/4001'])
    assert.deepEqual(overlayAddrs(peers, { peers: '*.tail1234.ts.net', port: 9000, transport: 'quic' }), [
      '/ip4/100.101.2.1/udp/9000/quic-v1', '/ip6/fd7a:115c:a1e0::2/udp/9000/quic-v1', '/ip4/100.101.2.3/udp/9000/quic-v1'
    ])
    assert.deepEqual(parseTailscaleStatus(JSON.stringify({ BackendState: 'Stopped', Peer: null })), [])
    assert.throws(() => parseTailscaleStatus('not json'), { name: 'DiscoveryError' })
    assert.throws(() => parseTailscaleStatus('{"Peer": []}'), { name: 'DiscoveryError' })
  })

  it('parses the documented NetBird shape: connected peers, fqdn-derived names, IP without prefix', () => {
    const peers = parseNetbirdStatus(JSON.stringify(netbirdStatus('100.90.0.2')))
    assert.deepEqual(peers.map((p) => [p.names[2], p.ips, p.online]), [
      ['lab.lan/transform-pool-1', ['100.90.0.2'], true],
      ['lab.lan/transform-pool-2', ['100.90.0.3'], false],
      ['other.lan/db', ['100.90.0.4'], true]
    ])
    assert.deepEqual(overlayAddrs(peers, { peers: 'lab.lan/transform-pool-*', port: 4100 }), ['/ip4/100.90.0.2/tcp/4100'])
    assert.throws(() => parseNetbirdStatus('{"daemonVersion": "0.36.5"}'), { name: 'DiscoveryError' })
  })

  it('runs the real command line (`status --json`) and reports a failing CLI clearly', async () => {
    const ts = await standIn(dir, 'tailscale', tailscaleStatus('100.101.2.1'))
    const nb = await standIn(dir, 'netbird', netbirdStatus('100.90.0.2'))
    assert.deepEqual(await discoverOverlay('tailscale', { peers: 'lab.lan/transform-pool-*', command: ts.path }), ['/ip4/100.101.2.1/tcp/4001', '/ip6/fd7a:115c:a1e0::2/tcp/4001'])
    assert.deepEqual(await discoverOverlay('netbird', { peers: 'lab.lan/transform-pool-*', command: nb.path }), ['/ip4/100.90.0.2/tcp/4001'])
    assert.equal(await readFile(ts.log, 'utf8'), 'status --json\n')
    assert.equal(await readFile(nb.log, 'utf8'), 'status --json\n')
    const broken = join(dir, 'broken')
    await writeFile(broken, '#!/bin/sh\necho "failed to connect to local tailscaled" >&2\nexit 1\n')
    await chmod(broken, 0o755)
    await assert.rejects(discoverOverlay('tailscale', { peers: '*', command: broken }), (err: Error) => err.name === 'DiscoveryError' && err.message.includes('failed to connect to local tailscaled'))
    await assert.rejects(discoverOverlay('netbird', { peers: '*', command: join(dir, 'missing') }), { name: 'DiscoveryError' })
  })

  it('a node joins the mesh from the peers its tailscale and netbird commands report', async () => {
    const seed = await startNode('lab.lan/transform-pool-1')
    const nodes: MeshNode[] = [seed]
    try {
      const port = Number(seed.addrs[0]?.split('/')[4])
      const ts = await standIn(dir, 'tailscale-e2e', tailscaleStatus('127.0.0.1'))
      const nb = await standIn(dir, 'netbird-e2e', netbirdStatus('127.0.0.1'))
      for (const [kind, cli] of [['tailscale', ts], ['netbird', nb]] as const) {
        const joiner = await startNode(`lab.lan/${kind}-joiner`, { discovery: { [kind]: { peers: 'lab.lan/transform-pool-*', command: cli.path, port } } })
        nodes.push(joiner)
        await waitFor(() => seed.member(joiner.did)?.state === 'alive' && joiner.member(seed.did)?.state === 'alive', 10_000, `the ${kind} joiner and the seed to see each other`)
      }
    } finally {
      await stopAll(nodes)
    }
  })
})

// ------------------------------------------------------------------ a tiny DNS responder

interface DnsRecord { type: 'PTR' | 'SRV' | 'TXT' | 'A', value: string | string[] | { port: number, target: string } }
const TYPE_CODES: Record<string, number> = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33 }

function encodeName (name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter((p) => p !== '')
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)])), Buffer.from([0])])
}

function rdata (record: DnsRecord): Buffer {
  switch (record.type) {
    case 'A': return Buffer.from(String(record.value).split('.').map(Number))
    case 'PTR': return encodeName(String(record.value))
    case 'TXT': return Buffer.concat((record.value as string[]).map((s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)])))
    case 'SRV': {
      const v = record.value as { port: number, target: string }
      const head = Buffer.alloc(6)
      head.writeUInt16BE(0, 0)
      head.writeUInt16BE(0, 2)
      head.writeUInt16BE(v.port, 4)
      return Buffer.concat([head, encodeName(v.target)])
    }
  }
}

/** answers A/PTR/SRV/TXT questions from `zone` (name → records); NXDOMAIN for unknown names */
async function dnsResponder (zone: Map<string, DnsRecord[]>): Promise<{ socket: Socket, port: number, queries: string[] }> {
  const socket = createSocket('udp4')
  const queries: string[] = []
  socket.on('message', (msg, rinfo) => {
    let offset = 12
    const labels: string[] = []
    while (offset < msg.length && msg[offset] !== 0) {
      const len = msg[offset] as number
      labels.push(msg.subarray(offset + 1, offset + 1 + len).toString())
      offset += 1 + len
    }
    offset++
    const qtype = msg.readUInt16BE(offset)
    const question = msg.subarray(12, offset + 4)
    const name = labels.join('.').toLowerCase()
    const type = Object.keys(TYPE_CODES).find((k) => TYPE_CODES[k] === qtype) ?? String(qtype)
    queries.push(`${type} ${name}`)
    const known = zone.get(name)
    const answers = (known ?? []).filter((r) => r.type === type)
    const header = Buffer.alloc(12)
    header.writeUInt16BE(msg.readUInt16BE(0), 0)
    header.writeUInt16BE(known === undefined ? 0x8183 : 0x8180, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(answers.length, 6)
    const body = answers.map((r) => {
      const data = rdata(r)
      const fixed = Buffer.alloc(10)
      fixed.writeUInt16BE(TYPE_CODES[r.type] as number, 0)
      fixed.writeUInt16BE(1, 2)
      fixed.writeUInt32BE(60, 4)
      fixed.writeUInt16BE(data.length, 8)
      return Buffer.concat([encodeName(name), fixed, data])
    })
    socket.send(Buffer.concat([header, question, ...body]), rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => { socket.bind(0, '127.0.0.1', resolve) })
  return { socket, port: socket.address().port, queries }
}

describe('mesh discovery: dns-sd', () => {
  it('browses _omega._udp PTR → SRV/TXT → A and a node joins from the result', async () => {
    const seed = await startNode('lab.lan/transform-pool-1')
    const nodes: MeshNode[] = [seed]
    const port = Number(seed.addrs[0]?.split('/')[4])
    const zone = new Map<string, DnsRecord[]>([
      ['_omega._udp.lab.lan', [
        { type: 'PTR', value: 'pool-1._omega._udp.lab.lan' },
        { type: 'PTR', value: 'other._omega._udp.lab.lan' }
      ]],
      ['pool-1._omega._udp.lab.lan', [
        { type: 'SRV', value: { port, target: 'pool-1.lab.lan' } },
        { type: 'TXT', value: [`peer=${seed.peerId}`, 'name=lab.lan/transform-pool-1', 'transport=tcp'] }
      ]],
      ['other._omega._udp.lab.lan', [
        { type: 'SRV', value: { port: 4001, target: 'other.lab.lan' } },
        { type: 'TXT', value: ['name=lab.lan/db-1'] }
      ]],
      ['pool-1.lab.lan', [{ type: 'A', value: '127.0.0.1' }]],
      ['other.lab.lan', [{ type: 'A', value: '127.0.0.2' }]]
    ])
    const dns = await dnsResponder(zone)
    try {
      const init = { servers: [`127.0.0.1:${dns.port}`], domain: 'lab.lan', peers: 'lab.lan/transform-pool-*' }
      const instances = await browseDnsSd(init)
      assert.deepEqual(instances.map((i) => [i.name, i.host, i.ips]).sort(), [
        ['lab.lan/db-1', 'other.lab.lan', ['127.0.0.2']],
        ['lab.lan/transform-pool-1', 'pool-1.lab.lan', ['127.0.0.1']]
      ])
      assert.deepEqual(await discoverDnsSd(init), [`/ip4/127.0.0.1/tcp/${port}/p2p/${seed.peerId}`])
      assert.ok(dns.queries.includes('PTR _omega._udp.lab.lan') && dns.queries.includes('SRV pool-1._omega._udp.lab.lan'))
      await assert.rejects(browseDnsSd({ ...init, domain: 'nowhere.lan' }), { name: 'DiscoveryError' })
      const joiner = await startNode('lab.lan/dns-joiner', { discovery: { dnsSd: init } })
      nodes.push(joiner)
      await waitFor(() => seed.member(joiner.did)?.state === 'alive' && joiner.member(seed.did)?.state === 'alive', 10_000, 'the dns-sd joiner and the seed to see each other')
    } finally {
      dns.socket.close()
      await stopAll(nodes)
    }
  })
})

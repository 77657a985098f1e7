/**
 * Discovery through an overlay network's own CLI: `tailscale status --json` and
 * `netbird status --json`. The peers whose names match the `peers` glob (picomatch) are
 * dialled on the Omega mesh port of their overlay IPs.
 *
 * Names matched against the glob, per peer:
 * - Tailscale (`Peer` map of PeerStatus objects; only `Online: true`): `HostName`, `DNSName`
 *   without the final dot, and `<tailnet>/<HostName>` where tailnet is
 *   `CurrentTailnet.Name`, else `MagicDNSSuffix`. Addresses: `TailscaleIPs`.
 * - NetBird (`peers.details[]`; `status` "Connected" or "Idle", not "Connecting"): `fqdn`
 *   without the final dot, its first label, and `<rest of fqdn>/<first label>` (e.g.
 *   `lab.lan/pool-1` for `pool-1.lab.lan`). Address: `netbirdIp` without its prefix length.
 */
import { execFile } from 'node:child_process'
import { isIP } from 'node:net'
import picomatch from 'picomatch'
import { DiscoveryError } from '../../errors.ts'
import type { AbortOptions } from '../../interfaces/index.ts'

export interface OverlayInit {
  /** glob over peer names, e.g. `lab.lan/transform-pool-*` */
  peers: string
  /** the CLI to run @default 'tailscale' or 'netbird' (looked up on PATH) */
  command?: string
  /** the mesh port on the peers @default 4001 */
  port?: number
  /** @default 'tcp' */
  transport?: 'tcp' | 'quic'
  /** @default 10000 */
  timeoutMs?: number
}

/** One peer as an overlay reports it */
export interface OverlayPeer {
  /** names the `peers` glob is matched against */
  names: string[]
  /** overlay IP addresses */
  ips: string[]
  online: boolean
}

function stripDot (name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name
}

function object (value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
}

/**
 * The peers in `tailscale status --json` output.
 *
 * @throws {DiscoveryError} if the text is not JSON of the documented shape
 */
export function parseTailscaleStatus (text: string): OverlayPeer[] {
  let status: Record<string, unknown> | undefined
  try {
    status = object(JSON.parse(text))
  } catch (err) {
    throw new DiscoveryError('Cannot parse `tailscale status --json`: not JSON', { cause: err })
  }
  if (status === undefined) {
    throw new DiscoveryError('Cannot parse `tailscale status --json`: expected an object')
  }
  const peers = status.Peer === null || status.Peer === undefined ? {} : object(status.Peer)
  if (peers === undefined) {
    throw new DiscoveryError('Cannot parse `tailscale status --json`: "Peer" is not an object')
  }
  const tailnet = typeof object(status.CurrentTailnet)?.Name === 'string'
    ? object(status.CurrentTailnet)?.Name as string
    : typeof status.MagicDNSSuffix === 'string' ? status.MagicDNSSuffix : undefined
  const out: OverlayPeer[] = []
  for (const value of Object.values(peers)) {
    const peer = object(value)
    if (peer === undefined) {
      continue
    }
    const names: string[] = []
    const host = typeof peer.HostName === 'string' ? peer.HostName : undefined
    if (host !== undefined && host !== '') {
      names.push(host)
      if (tailnet !== undefined && tailnet !== '') {
        names.push(`${tailnet}/${host}`)
      }
    }
    if (typeof peer.DNSName === 'string' && peer.DNSName !== '') {
      names.push(stripDot(peer.DNSName))
    }
    const ips = Array.isArray(peer.TailscaleIPs) ? peer.TailscaleIPs.filter((ip): ip is string => typeof ip === 'string' && isIP(ip) !== 0) : []
    out.push({ names, ips, online: peer.Online === true })
  }
  return out
}

/**
 * The peers in `netbird status --json` output.
 *
 * @throws {DiscoveryError} if the text is not JSON of the documented shape
 */
export function parseNetbirdStatus (text: string): OverlayPeer[] {
  let status: Record<string, unknown> | undefined
  try {
    status = object(JSON.parse(text))
  } catch (err) {
    throw new DiscoveryError('Cannot parse `netbird status --json`: not JSON', { cause: err })
  }
  const peers = object(status?.peers)
  if (status === undefined || peers === undefined) {
    throw new DiscoveryError('Cannot parse `netbird status --json`: expected an object with "peers"')
  }
  const details = peers.details ?? []
  if (!Array.isArray(details)) {
    throw new DiscoveryError('Cannot parse `netbird status --json`: "peers.details" is not an array')
  }
  const out: OverlayPeer[] = []
  for (const value of details) {
    const peer = object(value)
    if (peer === undefined) {
      continue
    }
    const names: string[] = []
    if (typeof peer.fqdn === 'string' && peer.fqdn !== '') {
      const fqdn = stripDot(peer.fqdn)
      const dot = fqdn.indexOf('.')
      names.push(fqdn)
      if (dot > 0) {
        names.push(fqdn.slice(0, dot), `${fqdn.slice(dot + 1)}/${fqdn.slice(0, dot)}`)
      }
    }
    const ip = typeof peer.netbirdIp === 'string' ? peer.netbirdIp.split('/')[0] ?? '' : ''
    const status = typeof peer.status === 'string' ? peer.status : ''
    out.push({ names, ips: isIP(ip) !== 0 ? [ip] : [], online: status === 'Connected' || status === 'Idle' })
  }
  return out
}

/** multiaddrs to dial for the online peers whose names match `glob` */
export function overlayAddrs (peers: readonly OverlayPeer[], init: OverlayInit): string[] {
  const match = picomatch(init.peers, { dot: true })
  const port = init.port ?? 4001
  const out: string[] = []
  for (const peer of peers) {
    if (!peer.online || !peer.names.some((name) => match(name))) {
      continue
    }
    for (const ip of peer.ips) {
      const family = isIP(ip) === 6 ? 'ip6' : 'ip4'
      out.push(init.transport === 'quic' ? `/${family}/${ip}/udp/${port}/quic-v1` : `/${family}/${ip}/tcp/${port}`)
    }
  }
  return out
}

async function run (command: string, args: string[], timeoutMs: number, options: AbortOptions): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const execOptions: Parameters<typeof execFile>[2] = { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }
    if (options.signal !== undefined) {
      execOptions.signal = options.signal
    }
    execFile(command, args, execOptions, (err, stdout, stderr) => {
      if (err !== null) {
        reject(new DiscoveryError(`Cannot run \`${command} ${args.join(' ')}\`: ${err.message.trim()}${String(stderr).trim() === '' ? '' : `: ${String(stderr).trim()}`}`, { cause: err }))
        return
      }
      resolve(String(stdout))
    })
  })
}

/**
 * Run `tailscale status --json` or `netbird status --json` and return the multiaddrs of
 * the matching peers.
 *
 * @throws {DiscoveryError} if the command fails or prints something else
 */
export async function discoverOverlay (kind: 'tailscale' | 'netbird', init: OverlayInit, options: AbortOptions = {}): Promise<string[]> {
  const text = await run(init.command ?? kind, ['status', '--json'], init.timeoutMs ?? 10_000, options)
  const peers = kind === 'tailscale' ? parseTailscaleStatus(text) : parseNetbirdStatus(text)
  return overlayAddrs(peers, init)
}

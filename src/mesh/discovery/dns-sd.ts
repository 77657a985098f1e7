/**
 * DNS-SD (RFC 6763) discovery over unicast DNS: ask a configured DNS server for the PTR
 * records of `<service>.<domain>` (default service `_omega._udp`), then each instance's
 * SRV (target host and port) and TXT records, and the target's A/AAAA records.
 *
 * TXT keys read: `peer=<libp2p peer id>` (appended as /p2p/), `name=<node name>` (matched
 * by the `peers` glob when given, else the instance label is), `transport=tcp|quic`
 * (default: quic for a `_udp` service, tcp otherwise).
 */
import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import picomatch from 'picomatch'
import { DiscoveryError } from '../../errors.ts'
import type { AbortOptions } from '../../interfaces/index.ts'

export interface DnsSdInit {
  /** DNS servers to ask, `ip` or `ip:port` (node:dns syntax), e.g. ['127.0.0.1:5353'] */
  servers: string[]
  /** the domain browsed, e.g. `lab.lan` */
  domain: string
  /** @default '_omega._udp' */
  service?: string
  /** glob over node names (TXT `name`, else the instance label) */
  peers?: string
  /** per-query timeout @default 3000 */
  timeoutMs?: number
}

/** One resolved service instance */
export interface DnsSdInstance {
  instance: string
  name: string
  host: string
  port: number
  ips: string[]
  txt: Record<string, string>
}

function txtRecord (chunks: string[][]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const record of chunks) {
    for (const item of record) {
      const eq = item.indexOf('=')
      if (eq > 0) {
        out[item.slice(0, eq).toLowerCase()] = item.slice(eq + 1)
      } else if (item !== '') {
        out[item.toLowerCase()] = ''
      }
    }
  }
  return out
}

/**
 * Browse and resolve every instance of the service.
 *
 * @throws {DiscoveryError} if the PTR query fails (instances that fail to resolve are skipped)
 */
export async function browseDnsSd (init: DnsSdInit, options: AbortOptions = {}): Promise<DnsSdInstance[]> {
  options.signal?.throwIfAborted()
  const resolver = new Resolver({ timeout: init.timeoutMs ?? 3000, tries: 2 })
  resolver.setServers(init.servers)
  const onAbort = (): void => { resolver.cancel() }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const service = `${init.service ?? '_omega._udp'}.${init.domain}`
    let instances: string[]
    try {
      instances = await resolver.resolvePtr(service)
    } catch (err) {
      throw new DiscoveryError(`Cannot browse DNS-SD service "${service}" at ${init.servers.join(', ')}: ${(err as Error).message}`, { cause: err })
    }
    const out: DnsSdInstance[] = []
    await Promise.all(instances.map(async (instance) => {
      try {
        const [srv, txt] = await Promise.all([resolver.resolveSrv(instance), resolver.resolveTxt(instance).catch(() => [])])
        const record = txtRecord(txt)
        for (const target of srv) {
          let ips: string[]
          if (isIP(target.name) !== 0) {
            ips = [target.name]
          } else {
            const [v4, v6] = await Promise.all([
              resolver.resolve4(target.name).catch(() => [] as string[]),
              resolver.resolve6(target.name).catch(() => [] as string[])
            ])
            ips = [...v4, ...v6]
          }
          const label = instance.endsWith(`.${service}`) ? instance.slice(0, -service.length - 1) : instance
          out.push({ instance, name: record.name ?? label, host: target.name, port: target.port, ips, txt: record })
        }
      } catch {
        // an instance that does not resolve is skipped; the others still count
      }
    }))
    return out
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
}

/** multiaddrs of the instances (matching `init.peers` when set) */
export function dnsSdAddrs (instances: readonly DnsSdInstance[], init: DnsSdInit): string[] {
  const match = init.peers === undefined ? () => true : picomatch(init.peers, { dot: true })
  const udp = (init.service ?? '_omega._udp').includes('._udp')
  const out: string[] = []
  for (const inst of instances) {
    if (!match(inst.name)) {
      continue
    }
    const transport = inst.txt.transport ?? (udp ? 'quic' : 'tcp')
    const peer = inst.txt.peer === undefined || inst.txt.peer === '' ? '' : `/p2p/${inst.txt.peer}`
    for (const ip of inst.ips) {
      const family = isIP(ip) === 6 ? 'ip6' : 'ip4'
      out.push(transport === 'quic'
        ? `/${family}/${ip}/udp/${inst.port}/quic-v1${peer}`
        : `/${family}/${ip}/tcp/${inst.port}${peer}`)
    }
  }
  return out
}

/** browse, resolve and turn into multiaddrs */
export async function discoverDnsSd (init: DnsSdInit, options: AbortOptions = {}): Promise<string[]> {
  return dnsSdAddrs(await browseDnsSd(init, options), init)
}

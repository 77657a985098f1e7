/**
 * A userspace WAN for tests (not a test file itself): TCP relays on 127.0.0.1 that sit in
 * front of each node's listen port and shape what crosses between "sites".
 *
 * Each node gets a relay; the node announces the relay's address (`omega node
 * --announce`), so every peer dials it there. A relay learns which node dialled it from
 * the kernel (the dialler's socket, found in /proc/net/tcp, belongs to a registered
 * process), so one relay can shape a connection by the pair of sites it joins:
 *
 * - one-way delay with jitter, per direction, keeping the byte stream in order (a late
 *   chunk holds back the ones after it, as TCP does);
 * - loss as TCP shows it: a lost segment stalls its stream for a retransmission timeout
 *   (`stallMs`, 200 ms like Linux's minimum RTO); each 1460-byte segment is lost with
 *   probability `loss`;
 * - a cut (partition): nothing crosses, open connections hang and new ones are held, as
 *   behind a black hole; after `heal` what was held is delivered (TCP retransmits);
 * - a rate limit on a site's access link: `tc tbf` on the loopback of a network namespace
 *   the bytes are routed through (see shaper-forwarder.ts) where one can be made, else a
 *   token bucket in the relay.
 *
 * Every timer is bounded by the shaping it applies; close() ends all connections.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { readFile, readdir, readlink, rm } from 'node:fs/promises'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'

const run = promisify(execFile)

/** How a path between two sites behaves (both directions alike) */
export interface PathSettings {
  /** one-way delay, ms */
  delayMs: number
  /** the one-way delay varies uniformly by ± this, ms */
  jitterMs: number
  /** probability that a 1460-byte segment is lost (stalling its stream for stallMs) */
  loss: number
  /** what one lost segment costs its stream, ms @default 200 */
  stallMs: number
  /** partitioned: nothing crosses */
  cut: boolean
}

const UNSHAPED: PathSettings = { delayMs: 0, jitterMs: 0, loss: 0, stallMs: 200, cut: false }
const SEGMENT = 1460
/** bytes a direction holds before it stops reading its source */
const HIGH_WATER = 256 * 1024

/** mulberry32: a small seeded PRNG, so a run's losses and jitter can be replayed */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return function next () {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** a free TCP port on 127.0.0.1 (closed again: the caller binds it next) */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') {
    throw new Error('Cannot find a free port')
  }
  return address.port
}

/** The serialisation of one direction of a site's access link (relay token bucket) */
class RateLink {
  readonly bitsPerSecond: number
  #free = 0
  constructor (bitsPerSecond: number) {
    this.bitsPerSecond = bitsPerSecond
  }

  /** when a chunk of `bytes` arriving at `now` has left the link */
  leave (now: number, bytes: number): number {
    this.#free = Math.max(this.#free, now) + bytes * 8_000 / this.bitsPerSecond
    return this.#free
  }
}

/** One direction of a relayed connection: delays, stalls and rate, in stream order */
class Direction {
  readonly shaper: Shaper
  readonly path: PathSettings
  readonly rate: RateLink[]
  readonly from: Socket
  readonly to: Socket
  readonly #queue: Array<{ at: number, chunk: Buffer }> = []
  #queued = 0
  #last = 0
  #timer: NodeJS.Timeout | undefined
  #ended = false
  #paused = false

  constructor (shaper: Shaper, path: PathSettings, rate: RateLink[], from: Socket, to: Socket) {
    this.shaper = shaper
    this.path = path
    this.rate = rate
    this.from = from
    this.to = to
    from.on('data', (chunk: Buffer) => { this.#take(chunk) })
    from.on('end', () => {
      this.#ended = true
      this.#flush()
    })
    to.on('drain', () => { this.#resumeIfLow() })
  }

  #take (chunk: Buffer): void {
    const now = performance.now()
    let at = now
    for (const link of this.rate) {
      at = Math.max(at, link.leave(now, chunk.length))
    }
    const p = this.path
    at += Math.max(0, p.delayMs + (this.shaper.random() * 2 - 1) * p.jitterMs)
    if (p.loss > 0) {
      const segments = Math.ceil(chunk.length / SEGMENT)
      if (this.shaper.random() < 1 - (1 - p.loss) ** segments) {
        at += p.stallMs
        this.shaper.stalls++
      }
    }
    at = Math.max(at, this.#last)
    this.#last = at
    this.#queue.push({ at, chunk })
    this.#queued += chunk.length
    this.shaper.bytes += chunk.length
    if (this.#queued + this.to.writableLength > HIGH_WATER && !this.#paused) {
      this.#paused = true
      this.from.pause()
    }
    this.#schedule()
  }

  #schedule (): void {
    if (this.#timer !== undefined || this.path.cut) {
      return
    }
    const head = this.#queue[0]
    if (head === undefined) {
      return
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flush()
    }, Math.max(0, head.at - performance.now()))
  }

  /** write what is due (nothing while the path is cut); end `to` once `from` ended and all is written */
  #flush (): void {
    if (this.path.cut || this.to.destroyed) {
      return
    }
    const now = performance.now()
    while (this.#queue.length > 0 && (this.#queue[0]?.at ?? 0) <= now + 1) {
      const item = this.#queue.shift()
      if (item !== undefined) {
        this.#queued -= item.chunk.length
        this.to.write(item.chunk)
      }
    }
    if (this.#queue.length === 0 && this.#ended) {
      this.to.end()
    }
    this.#resumeIfLow()
    this.#schedule()
  }

  #resumeIfLow (): void {
    if (this.#paused && this.#queued + this.to.writableLength < HIGH_WATER / 2) {
      this.#paused = false
      this.from.resume()
    }
  }

  /** the path was healed: deliver what waited */
  healed (): void {
    this.#flush()
  }

  stop (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }
}

/** A site's access link limited to a rate */
interface Access {
  up: RateLink
  down: RateLink
  /** the namespace forwarder the site's bytes go through (tc tbf), when there is one */
  forwarder?: Forwarder
}

/** The tbf hop: a process in a namespace whose loopback is rate-limited by tc tbf */
interface Forwarder {
  ns: string
  /** unix socket the relay connects to (the forwarder's entry) */
  entry: string
  child: ChildProcess
}

/** A relay in front of one node */
export interface Relay {
  /** the port the relay listens on (127.0.0.1) */
  readonly port: number
  /** the address the node announces (no /p2p/) */
  readonly addr: string
  readonly site: string
  /** connections accepted, by dialler site ('?' when the dialler was not a registered process) */
  readonly accepted: Map<string, number>
}

/**
 * The WAN of a test: sites, the paths between them, relays, and the processes (nodes)
 * that live in each site.
 */
export class Shaper {
  /** bytes relayed */
  bytes = 0
  /** segments lost (stream stalls) */
  stalls = 0
  readonly #random: () => number
  readonly #paths = new Map<string, PathSettings>()
  readonly #access = new Map<string, Access>()
  readonly #pids = new Map<number, string>()
  readonly #servers: Server[] = []
  readonly #sockets = new Set<Socket>()
  #track (socket: Socket): Socket {
    this.#sockets.add(socket)
    socket.once('close', () => { this.#sockets.delete(socket) })
    return socket
  }

  readonly #directions = new Set<Direction>()
  /** connections waiting for a cut path to heal */
  readonly #held: Array<{ path: PathSettings, open: () => void }> = []
  readonly #relays: Relay[] = []
  readonly #dir: string
  #egress: Server | undefined
  #egressPath = ''

  /** @param dir - a directory for the forwarders' unix sockets */
  constructor (dir: string, seed = 1) {
    this.#dir = dir
    this.#random = prng(seed)
  }

  random (): number {
    return this.#random()
  }

  /** the settings of the path between two sites (one object, changed in place) */
  path (a: string, b: string): PathSettings {
    const key = [a, b].sort().join('\n')
    let path = this.#paths.get(key)
    if (path === undefined) {
      path = { ...UNSHAPED }
      this.#paths.set(key, path)
    }
    return path
  }

  /** a process (a node) that lives in `site`: its connections are shaped by its site */
  register (pid: number, site: string): void {
    this.#pids.set(pid, site)
  }

  /**
   * Limit `site`'s access link to `bitsPerSecond`: with `tc tbf` in a network namespace
   * made here when possible (`how` says which), else a token bucket in the relays (each
   * direction at that rate). `tbf: false` asks for the token bucket.
   */
  async limit (site: string, bitsPerSecond: number, options: { tbf?: boolean } = {}): Promise<{ how: 'tbf' | 'relay', reason?: string }> {
    const access: Access = { up: new RateLink(bitsPerSecond), down: new RateLink(bitsPerSecond) }
    this.#access.set(site, access)
    let reason = ''
    if (options.tbf === false) {
      reason = 'asked for the relay\'s token bucket'
    } else if (process.getuid?.() !== 0) {
      reason = 'not root: no network namespace for tc tbf'
    } else {
      const ns = `omega-wan-${process.pid}-${this.#access.size}`
      try {
        await run('ip', ['netns', 'add', ns])
        const inNs = async (...args: string[]): Promise<void> => { await run('ip', ['netns', 'exec', ns, ...args]) }
        await inNs('ip', 'link', 'set', 'lo', 'up')
        // segments the size of an Ethernet frame, so that tbf's burst holds several
        await inNs('ip', 'link', 'set', 'lo', 'mtu', '1500')
        await inNs('tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', `${Math.round(bitsPerSecond / 1000)}kbit`, 'burst', '16kb', 'latency', '100ms')
        access.forwarder = await this.#startForwarder(ns)
        return { how: 'tbf' }
      } catch (err) {
        reason = `cannot shape with tc tbf in a namespace: ${(err as Error).message.split('\n')[0] ?? ''}`
        await run('ip', ['netns', 'del', ns]).catch(() => {})
      }
    }
    return { how: 'relay', reason }
  }

  async #startForwarder (ns: string): Promise<Forwarder> {
    const egress = await this.#egressServer()
    const entry = join(this.#dir, `${ns}.in.sock`)
    const script = new URL('./shaper-forwarder.js', import.meta.url)
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script.pathname, entry, egress], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr?.on('data', (chunk: Buffer) => { out += chunk.toString() })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`the forwarder did not start: ${out}`)) }, 10_000)
      child.stdout?.on('data', () => {
        if (out.includes('ready')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the forwarder exited with ${String(code)}: ${out}`))
      })
    })
    return { ns, entry, child }
  }

  /** where bytes come back from a namespace forwarder: a first line names the port to connect to */
  async #egressServer (): Promise<string> {
    if (this.#egress !== undefined) {
      return this.#egressPath
    }
    this.#egressPath = join(this.#dir, 'egress.sock')
    await rm(this.#egressPath, { force: true })
    const server = createServer((socket) => {
      this.#track(socket)
      let head = Buffer.alloc(0)
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk])
        const nl = head.indexOf(10)
        if (nl < 0) {
          return
        }
        socket.off('data', onData)
        socket.pause()
        const port = Number(head.subarray(0, nl).toString())
        const rest = head.subarray(nl + 1)
        const target = this.#track(connect(port, '127.0.0.1'))
        target.on('error', () => { socket.destroy() })
        socket.on('error', () => { target.destroy() })
        target.once('connect', () => {
          if (rest.length > 0) {
            target.write(rest)
          }
          socket.pipe(target).pipe(socket)
          socket.resume()
        })
      }
      socket.on('data', onData)
    })
    await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(this.#egressPath, resolve) })
    this.#egress = server
    return this.#egressPath
  }

  /** the site of the process that owns the local end of a connection from 127.0.0.1:`port` to 127.0.0.1:`to` */
  async #siteOf (port: number, to: number): Promise<string> {
    const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0')
    const local = `0100007F:${hex(port)}`
    const remote = `0100007F:${hex(to)}`
    const table = await readFile('/proc/net/tcp', 'utf8').catch(() => '')
    let inode = ''
    for (const line of table.split('\n')) {
      const f = line.trim().split(/\s+/)
      if (f[1] === local && f[2] === remote) {
        inode = f[9] ?? ''
        break
      }
    }
    if (inode === '' || inode === '0') {
      return '?'
    }
    const wanted = `socket:[${inode}]`
    for (const [pid, site] of this.#pids) {
      const fds = await readdir(`/proc/${pid}/fd`).catch(() => [])
      for (const fd of fds) {
        if (await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '') === wanted) {
          return site
        }
      }
    }
    return '?'
  }

  /** a relay in front of `port` (127.0.0.1), a node of `site` */
  async relay (port: number, site: string): Promise<Relay> {
    const accepted = new Map<string, number>()
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      this.#track(client)
      client.on('error', () => {})
      background(this.#accept(client, port, site, accepted, server))
    })
    await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(0, '127.0.0.1', resolve) })
    this.#servers.push(server)
    const address = server.address()
    if (address === null || typeof address === 'string') {
      throw new Error('relay has no port')
    }
    const relay: Relay = { port: address.port, addr: `/ip4/127.0.0.1/tcp/${address.port}`, site, accepted }
    this.#relays.push(relay)
    return relay
  }

  async #accept (client: Socket, port: number, site: string, accepted: Map<string, number>, server: Server): Promise<void> {
    const address = server.address()
    const from = typeof address === 'object' && address !== null ? await this.#siteOf(client.remotePort ?? 0, address.port) : '?'
    accepted.set(from, (accepted.get(from) ?? 0) + 1)
    const path = from === site ? { ...UNSHAPED } : this.path(from, site)
    const open = (): void => {
      if (client.destroyed) {
        return
      }
      const fromAccess = this.#access.get(from)
      const toAccess = this.#access.get(site)
      const forwarder = fromAccess?.forwarder ?? toAccess?.forwarder
      const upstream = this.#track(forwarder !== undefined
        ? connect({ path: forwarder.entry, allowHalfOpen: true })
        : connect({ port, host: '127.0.0.1', allowHalfOpen: true }))
      if (forwarder !== undefined) {
        upstream.write(`${port}\n`)
      }
      upstream.on('error', () => {})
      // a reset (a killed process, a refused connection) reaches the other end one delay later
      upstream.on('close', (hadError) => {
        if (hadError || client.readableEnded === false) {
          setTimeout(() => { client.destroy() }, path.delayMs + path.jitterMs + path.stallMs).unref()
        }
      })
      client.on('close', (hadError) => {
        if (hadError || upstream.readableEnded === false) {
          setTimeout(() => { upstream.destroy() }, path.delayMs + path.jitterMs + path.stallMs).unref()
        }
      })
      // the relay's own token bucket only where no tbf namespace carries the bytes
      const up = forwarder === undefined ? [fromAccess?.up, toAccess?.down].filter((l) => l !== undefined) : []
      const down = forwarder === undefined ? [toAccess?.up, fromAccess?.down].filter((l) => l !== undefined) : []
      const a = new Direction(this, path, up, client, upstream)
      const b = new Direction(this, path, down, upstream, client)
      this.#directions.add(a)
      this.#directions.add(b)
      upstream.once('close', () => {
        a.stop()
        b.stop()
        this.#directions.delete(a)
        this.#directions.delete(b)
      })
      client.resume()
    }
    if (path.cut) {
      this.#held.push({ path, open })
    } else {
      open()
    }
  }

  /** partition two sites: nothing crosses until heal() */
  cut (a: string, b: string): void {
    this.path(a, b).cut = true
  }

  /** end the partition: what was held is delivered, held connections open */
  heal (a: string, b: string): void {
    const path = this.path(a, b)
    path.cut = false
    for (const d of this.#directions) {
      if (d.path === path) {
        d.healed()
      }
    }
    for (const h of this.#held.splice(0)) {
      if (h.path === path) {
        h.open()
      } else {
        this.#held.push(h)
      }
    }
  }

  /**
   * Open TCP connections to these ports (nodes' listen ports) dialled by a process other
   * than this one: connections that went around the relays (there should be none)
   */
  async bypasses (ports: readonly number[]): Promise<number> {
    const wanted = new Set(ports.map((p) => `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`))
    const own = new Set<string>()
    for (const fd of await readdir('/proc/self/fd').catch(() => [])) {
      own.add(await readlink(`/proc/self/fd/${fd}`).catch(() => ''))
    }
    let count = 0
    for (const line of (await readFile('/proc/net/tcp', 'utf8').catch(() => '')).split('\n')) {
      const f = line.trim().split(/\s+/)
      // the dialling end: its remote address is the listen port; 01 = ESTABLISHED
      if (f[3] === '01' && wanted.has(f[2] ?? '') && !own.has(`socket:[${f[9] ?? ''}]`)) {
        count++
      }
    }
    return count
  }

  /** connections accepted per relay, by dialler site */
  accepted (): Array<{ site: string, port: number, from: Record<string, number> }> {
    return this.#relays.map((r) => ({ site: r.site, port: r.port, from: Object.fromEntries(r.accepted) }))
  }

  async close (): Promise<void> {
    for (const d of this.#directions) {
      d.stop()
    }
    for (const socket of this.#sockets) {
      socket.destroy()
    }
    for (const server of [...this.#servers, ...(this.#egress === undefined ? [] : [this.#egress])]) {
      server.close()
    }
    for (const access of this.#access.values()) {
      if (access.forwarder !== undefined) {
        access.forwarder.child.kill('SIGKILL')
        await run('ip', ['netns', 'del', access.forwarder.ns]).catch(() => {})
      }
    }
  }
}

function background (promise: Promise<unknown>): void {
  promise.catch(() => {})
}

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Startable } from '../interfaces/index.ts'
import { listening } from '../util/index.ts'

/**
 * `GET /metrics` in the Prometheus text format, on its own listener (loopback by
 * default), so scraping never shares a port or a route table with the branes.
 */
export class MetricsEndpoint implements Startable {
  readonly #render: () => string
  readonly #host: string
  readonly #port: number
  #server: Server | undefined

  constructor (render: () => string, init: { host?: string, port: number }) {
    this.#render = render
    this.#host = init.host ?? '127.0.0.1'
    this.#port = init.port
  }

  get url (): string {
    const address = this.#server?.address() as AddressInfo | null | undefined
    return address == null ? '' : `http://${this.#host}:${address.port}/metrics`
  }

  async start (): Promise<void> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end('Only GET /metrics here\n')
        return
      }
      const text = this.#render()
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) })
      res.end(req.method === 'HEAD' ? undefined : text)
    })
    await listening(server, this.#port, this.#host)
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = undefined
    await new Promise<void>((resolve) => { server === undefined ? resolve() : server.close(() => { resolve() }) })
  }
}

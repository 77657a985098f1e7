import { request } from 'node:http'

export interface Reply { status: number, body: string }

/** GET `path` from `base` with an explicit Host header (fetch() cannot set one) */
export async function get (base: string, path: string, host?: string): Promise<Reply> {
  const url = new URL(path, base)
  return new Promise<Reply>((resolve, reject) => {
    const req = request(url, { headers: host === undefined ? {} : { host }, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

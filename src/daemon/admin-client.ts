/**
 * The client side of the admin API: what the CLI uses to talk to a running daemon over
 * its Unix socket, signing each request with the node's key. Kept apart from the server
 * (admin.ts) so that a command loads no more than it needs.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { AdminRequestError, DaemonNotRunningError } from '../errors.ts'
import { issueAdminToken, loadOrCreateNodeKey, type NodeKey } from '../identity/lite.ts'
import type { AbortOptions } from '../interfaces/index.ts'

export { AdminRequestError, DaemonNotRunningError }

export const ADMIN_SOCKET = 'omega.sock'

/**
 * Most bytes of a `POST /v1/restore` body (a snapshot document: gzip + base64 of a
 * brane's memory, so a 4/3 overhead on what did not compress)
 */
export const MAX_RESTORE_BODY_BYTES = 256 * 2 ** 20

export interface AdminClientOptions extends AbortOptions {
  /** sign with this key instead of the node key in `home` */
  key?: NodeKey
  /** send this exact token (tests) */
  token?: string
  /** POST this JSON body */
  body?: unknown
  /** @default 'POST' with a body, else 'GET' */
  method?: 'GET' | 'POST'
}

/**
 * Call the admin API of the daemon running with `home`. Yields the response body as
 * chunks of text (NDJSON routes stream).
 */
export async function * adminStream (home: string, path: string, options: AdminClientOptions = {}): AsyncGenerator<string> {
  const res = await adminResponse(home, path, options)
  res.setEncoding('utf8')
  for await (const chunk of res) {
    yield String(chunk)
  }
}

/** Call a binary admin route (e.g. `/v1/profile/cpu`): the whole response body */
export async function adminBytes (home: string, path: string, options: AdminClientOptions = {}): Promise<Buffer> {
  const res = await adminResponse(home, path, options)
  const chunks: Buffer[] = []
  for await (const chunk of res) {
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/** Sends an admin request; the response once its status is 200, else throws what the daemon said */
async function adminResponse (home: string, path: string, options: AdminClientOptions): Promise<IncomingMessage> {
  const socketPath = join(home, ADMIN_SOCKET)
  let token = options.token
  if (token === undefined) {
    const key = options.key ?? await loadOrCreateNodeKey(home, options)
    token = issueAdminToken(key, key.did, { ttlSeconds: 60 })
  }
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const req = httpRequest({
      socketPath,
      path,
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(options.signal === undefined ? {} : { signal: options.signal })
    }, resolve)
    req.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new DaemonNotRunningError(`No omega daemon is running with home ${home} (no socket at ${socketPath}): start one with "omega up FILE"`, { cause: err }))
      } else {
        reject(err)
      }
    })
    req.end(body)
  })
  if (res.statusCode !== 200) {
    res.setEncoding('utf8')
    let text = ''
    for await (const chunk of res) {
      text += String(chunk)
    }
    let message = text
    let remoteName: string | undefined
    try {
      const parsed = JSON.parse(text) as { message?: string, error?: string }
      message = parsed.message ?? text
      remoteName = parsed.error
    } catch {}
    if (res.statusCode === 422) {
      // the daemon refused the operation itself (not the request): report its error as is
      throw new AdminRequestError(message.trim(), 422, remoteName)
    }
    throw new AdminRequestError(`Admin request ${path} refused (${String(res.statusCode)}): ${message.trim()}`, res.statusCode ?? 500, remoteName)
  }
  return res
}

/** Call a JSON admin route */
export async function adminJson<T> (home: string, path: string, options: AdminClientOptions = {}): Promise<T> {
  let text = ''
  for await (const chunk of adminStream(home, path, options)) {
    text += chunk
  }
  return JSON.parse(text) as T
}

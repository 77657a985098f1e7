/**
 * Admin tokens: a short-lived, signed statement "ISSUER may do ACTIONS on node AUDIENCE
 * until EXP". The daemon's admin API accepts a token only when its signature verifies
 * against the issuer's did:key, the issuer is authorised (the node's own key, for now),
 * the audience is this node and it has not expired. This is what the CLI sends for the
 * node's own operator; delegable capability tokens with a proof chain (capabilities.ts)
 * are accepted beside it.
 *
 * Wire form: `base64url(JSON payload) "." base64url(Ed25519 signature of the payload bytes)`.
 */
import { randomBytes } from 'node:crypto'
import { TokenError } from '../errors.ts'

export { TokenError }
import { verify, type NodeKey } from './keys.ts'

export interface AdminTokenPayload {
  /** format version */
  readonly v: 1
  /** issuer did:key */
  readonly iss: string
  /** the node this token is for (did:key) */
  readonly aud: string
  /** what it allows, e.g. `["admin"]` or `["logs", "ps"]` */
  readonly act: readonly string[]
  /** issued at, seconds since the epoch */
  readonly iat: number
  /** expires at, seconds since the epoch */
  readonly exp: number
  /** random, so two tokens never look alike */
  readonly nonce: string
}

export interface IssueTokenOptions {
  /** @default ['admin'] */
  actions?: readonly string[]
  /** @default 300 */
  ttlSeconds?: number
  /** for tests. @default Date.now() */
  now?: number
}

/** Sign an admin token with `key` for the node `audience` */
export function issueAdminToken (key: NodeKey, audience: string, options: IssueTokenOptions = {}): string {
  const iat = Math.floor((options.now ?? Date.now()) / 1000)
  const payload: AdminTokenPayload = {
    v: 1,
    iss: key.did,
    aud: audience,
    act: [...(options.actions ?? ['admin'])],
    iat,
    exp: iat + (options.ttlSeconds ?? 300),
    nonce: randomBytes(12).toString('base64url')
  }
  const bytes = Buffer.from(JSON.stringify(payload))
  return `${bytes.toString('base64url')}.${Buffer.from(key.sign(bytes)).toString('base64url')}`
}

export interface VerifyTokenOptions {
  /** this node's did: the token's audience must equal it */
  audience: string
  /** issuers whose tokens are accepted */
  issuers: ReadonlySet<string>
  /** the action the request needs; a token with `admin` allows every action */
  action: string
  /** @default Date.now() */
  now?: number
  /** tolerated clock skew in seconds. @default 30 */
  skewSeconds?: number
}

/**
 * Check a token; returns its payload or throws `TokenError` saying why it was refused.
 */
export function verifyAdminToken (token: string, options: VerifyTokenOptions): AdminTokenPayload {
  const [body, signature, extra] = token.split('.')
  if (body === undefined || signature === undefined || extra !== undefined || body === '' || signature === '') {
    throw new TokenError('Malformed token: expected PAYLOAD.SIGNATURE')
  }
  const bytes = Buffer.from(body, 'base64url')
  let payload: AdminTokenPayload
  try {
    payload = JSON.parse(bytes.toString('utf8')) as AdminTokenPayload
  } catch (err) {
    throw new TokenError('Malformed token: the payload is not JSON', { cause: err })
  }
  if (payload === null || typeof payload !== 'object' || payload.v !== 1 || typeof payload.iss !== 'string' ||
    typeof payload.aud !== 'string' || !Array.isArray(payload.act) || typeof payload.exp !== 'number' || typeof payload.iat !== 'number') {
    throw new TokenError('Malformed token: missing or invalid fields')
  }
  let valid: boolean
  try {
    valid = verify(payload.iss, bytes, Buffer.from(signature, 'base64url'))
  } catch (err) {
    throw new TokenError(`Invalid token issuer "${payload.iss}"`, { cause: err })
  }
  if (!valid) {
    throw new TokenError('Invalid token signature')
  }
  if (!options.issuers.has(payload.iss)) {
    throw new TokenError(`Token issuer ${payload.iss} is not authorised on this node`)
  }
  if (payload.aud !== options.audience) {
    throw new TokenError(`Token is for node ${payload.aud}, not this node (${options.audience})`)
  }
  const now = (options.now ?? Date.now()) / 1000
  const skew = options.skewSeconds ?? 30
  if (payload.exp + skew < now) {
    throw new TokenError(`Token expired at ${new Date(payload.exp * 1000).toISOString()}`)
  }
  if (payload.iat - skew > now) {
    throw new TokenError('Token is issued in the future')
  }
  if (!payload.act.includes('admin') && !payload.act.includes(options.action)) {
    throw new TokenError(`Token does not allow "${options.action}" (it allows: ${payload.act.join(', ')})`)
  }
  return payload
}

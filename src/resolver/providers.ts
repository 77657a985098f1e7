/**
 * How each provider's own CLI publishes a local port, and how to read its public URL
 * from what the CLI prints. Command lines follow each provider's documentation:
 *
 * - Tailscale Funnel (1.52+ CLI, tailscale.com/kb/1311): `tailscale funnel <port>` runs in
 *   the foreground, prints "Available on the internet:" then the `https://…ts.net/` URL and
 *   removes the funnel when it exits; `tailscale funnel --https=443 off` removes it too
 *   (run after stopping, in case the process died without cleaning up).
 * - cloudflared quick tunnels: `cloudflared tunnel --no-autoupdate --url http://127.0.0.1:<port>`
 *   logs a box on stderr holding `https://<words>.trycloudflare.com`.
 * - ngrok v3: `ngrok http <port> --log stdout --log-format json` logs JSON lines; the one with
 *   `"msg":"started tunnel"` carries `"url":"https://…"`.
 * - NetBird: `netbird expose <port>` prints "Service exposed successfully!" and
 *   `  URL:      https://…`; the service exists while the command runs.
 */
import type { ResolverPlan } from '../manifest/index.ts'

type ResolverMode = ResolverPlan['mode']

export interface ProviderCommand {
  /** the executable, looked up on PATH */
  readonly command: string
  readonly args: readonly string[]
  /** run after the process stopped, to make sure the publication is gone */
  readonly cleanup?: { readonly command: string, readonly args: readonly string[] }
  /** the public URL if `line` (stdout or stderr) announces it */
  readonly parse: (line: string) => string | undefined
}

const TS_NET_URL = /\bhttps:\/\/[a-z0-9.-]+\.ts\.net(?::\d+)?\/?\S*/i
const TRYCLOUDFLARE_URL = /\bhttps:\/\/[a-z0-9-]+\.trycloudflare\.com\b/i
const NETBIRD_URL = /^\s*URL:\s+(https?:\/\/\S+)\s*$/

function ngrokUrl (line: string): string | undefined {
  if (!line.startsWith('{')) {
    return undefined
  }
  try {
    const record = JSON.parse(line) as { msg?: unknown, url?: unknown }
    return record.msg === 'started tunnel' && typeof record.url === 'string' ? record.url : undefined
  } catch {
    return undefined
  }
}

/** The command line that publishes `http://127.0.0.1:<port>` with `mode` (not `local`) */
export function providerCommand (mode: Exclude<ResolverMode, 'local'>, port: number): ProviderCommand {
  switch (mode) {
    case 'tailscale-funnel':
      return {
        command: 'tailscale',
        args: ['funnel', String(port)],
        cleanup: { command: 'tailscale', args: ['funnel', '--https=443', 'off'] },
        parse: (line) => TS_NET_URL.exec(line)?.[0]?.replace(/\/$/, '')
      }
    case 'cloudflared':
      return {
        command: 'cloudflared',
        args: ['tunnel', '--no-autoupdate', '--url', `http://127.0.0.1:${port}`],
        parse: (line) => TRYCLOUDFLARE_URL.exec(line)?.[0]
      }
    case 'ngrok':
      return {
        command: 'ngrok',
        args: ['http', String(port), '--log', 'stdout', '--log-format', 'json'],
        parse: ngrokUrl
      }
    case 'netbird':
      return {
        command: 'netbird',
        args: ['expose', String(port)],
        parse: (line) => NETBIRD_URL.exec(line)?.[1]
      }
    default:
      throw new TypeError(`Cannot publish with resolver mode "${String(mode)}"`)
  }
}

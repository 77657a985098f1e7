/**
 * Resolvers: how the outside reaches a brane. `local` is the gateway serving the
 * resolver's host; the others drive Tailscale Funnel, cloudflared, ngrok or NetBird.
 */
export { Resolvers, type ResolverStatus, type ResolversComponents, type ResolversInit } from './resolver.ts'
export { providerCommand, type ProviderCommand } from './providers.ts'

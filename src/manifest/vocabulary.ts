/**
 * The words of a manifest: the values its enumerated keys may take. Shared by the schema
 * (schema.ts, which describes the manifest with TypeBox) and the code that reads one.
 */
export const SUBSTRATES = ['gaia', 'biome', 'habitat'] as const
export const PROFILES = ['standard', 'frontier'] as const
export const LIFECYCLES = ['ephemeral', 'pooled', 'pinned'] as const
/** `[brane.X] auth`: none (default) or a capability token per request */
export const AUTH_MODES = ['none', 'token'] as const
export const RESOLVER_MODES = ['local', 'tailscale-funnel', 'cloudflared', 'netbird', 'ngrok'] as const
export const DISCOVERY_MODES = ['mdns', 'static', 'dns-sd', 'tailscale', 'netbird'] as const
export const CLOCK_RESOLUTIONS = ['ns', 'us', 'ms', 's'] as const
export const FS_LIFETIMES = ['request', 'instance'] as const
export const GPU_MODES = ['none', 'passthrough'] as const
export const DURABILITY_MODES = ['local', 'replicated'] as const
export const CRDT_TYPES = ['rga', 'map', 'lww'] as const
/** `[brane.X] stdout` of a wasi:cli/run command brane: its log, or emit records */
export const STDOUT_MODES = ['log', 'emit'] as const
/** The capability keys a manifest may grant; anything else is refused */
export const CAPABILITY_KEYS = ['net.http', 'fs.tmp', 'clock', 'random', 'env', 'state'] as const

export type Substrate = typeof SUBSTRATES[number]
export type Profile = typeof PROFILES[number]
export type Lifecycle = typeof LIFECYCLES[number]
export type CapabilityKey = typeof CAPABILITY_KEYS[number]
export type ResolverMode = typeof RESOLVER_MODES[number]
export type AuthMode = typeof AUTH_MODES[number]
export type StdoutMode = typeof STDOUT_MODES[number]
/** App names (and deployment names): lowercase, digits, `.`, `-` and `_`, at most 64 characters */
export const APP_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$'

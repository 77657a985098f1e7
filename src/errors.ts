/**
 * Every deliberate failure in Omega is an `OmegaError` subclass. Callers branch on
 * `err.name`, never on messages; the CLI maps names to exit codes and the gateway maps
 * them to HTTP statuses.
 */
export class OmegaError extends Error {
  static override name = 'OmegaError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'OmegaError'
  }
}

/** A manifest could not be read, parsed or validated; `issues` lists every problem found */
export class ManifestError extends OmegaError {
  static override name = 'ManifestError'
  readonly issues: readonly ManifestIssue[]
  constructor (message: string, issues: readonly ManifestIssue[] = [], options?: ErrorOptions) {
    super(message, options)
    this.name = 'ManifestError'
    this.issues = issues
  }
}

/** One problem in a manifest, located as precisely as the format allows */
export interface ManifestIssue {
  /** the manifest file */
  readonly file: string
  /** dotted key path, e.g. `brane.api.limits.mem_max` (empty for the whole document) */
  readonly path: string
  /** 1-based line, when known */
  readonly line?: number
  /** 1-based column, when known */
  readonly column?: number
  /** what is wrong and what was expected */
  readonly message: string
  readonly severity: 'error' | 'warning'
}

/** A component asks for an import that the brane's manifest did not grant */
export class CapabilityDeniedError extends OmegaError {
  static override name = 'CapabilityDeniedError'
  constructor (message = 'Capability not granted', options?: ErrorOptions) {
    super(message, options)
    this.name = 'CapabilityDeniedError'
  }
}

/** An image (component file or store tag) cannot be found */
export class ImageNotFoundError extends OmegaError {
  static override name = 'ImageNotFoundError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ImageNotFoundError'
  }
}

/** A component is not a valid WebAssembly component, or cannot be transpiled or instantiated */
export class ComponentLoadError extends OmegaError {
  static override name = 'ComponentLoadError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ComponentLoadError'
  }
}

/** A guest trapped or failed while handling a request or event */
export class GuestError extends OmegaError {
  static override name = 'GuestError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'GuestError'
  }
}

/**
 * A guest failed at its memory limit: its linear memory could not grow past `mem_max`
 * and it trapped (an allocator's abort, an out-of-bounds access, …)
 */
export class MemoryLimitError extends GuestError {
  static override name = 'MemoryLimitError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'MemoryLimitError'
  }
}

/** A call did not finish within its brane's deadline */
export class DeadlineExceededError extends OmegaError {
  static override name = 'DeadlineExceededError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'DeadlineExceededError'
  }
}

/**
 * An event handler asked for the event again later (`handle-error.retry`): the
 * dispatcher should redeliver it with back-off
 */
export class RetryableEventError extends OmegaError {
  static override name = 'RetryableEventError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'RetryableEventError'
  }
}

/**
 * An event handler refused an event for good (`handle-error.reject`): the dispatcher
 * should dead-letter it without retrying
 */
export class RejectedEventError extends OmegaError {
  static override name = 'RejectedEventError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'RejectedEventError'
  }
}

/** No brane route matches a request */
export class RouteNotFoundError extends OmegaError {
  static override name = 'RouteNotFoundError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'RouteNotFoundError'
  }
}

/** A brane cannot run on this node (e.g. `frontier` without a VMM) */
export class UnsupportedError extends OmegaError {
  static override name = 'UnsupportedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'UnsupportedError'
  }
}

/** Bad command-line usage */
export class UsageError extends OmegaError {
  static override name = 'UsageError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'UsageError'
  }
}

/**
 * A brane project did not build (`omega build`, `omega dev`): its source does not
 * compile (the message lists each error as file:line:column) or componentize-js failed
 */
export class BuildError extends OmegaError {
  static override name = 'BuildError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BuildError'
  }
}

/**
 * The node's key file exists but cannot be used (unreadable, not an Ed25519 private key).
 * It is never overwritten: replacing it would change the node's identity
 */
export class NodeKeyError extends OmegaError {
  static override name = 'NodeKeyError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'NodeKeyError'
  }
}

/** An image reference (`name:tag` or `b3:<hex>`) is malformed */
export class InvalidImageRefError extends OmegaError {
  static override name = 'InvalidImageRefError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'InvalidImageRefError'
  }
}

/** The image store on disk is damaged or locked (bad index, missing or corrupt blob, stale lock) */
export class ImageStoreError extends OmegaError {
  static override name = 'ImageStoreError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ImageStoreError'
  }
}

/**
 * A snapshot cannot be taken or restored: the brane is not pinned, the file is not a
 * snapshot, its signature or a digest does not verify, it was signed by another
 * node, or it does not fit the brane (another component, memory past mem_max)
 */
export class SnapshotError extends OmegaError {
  static override name = 'SnapshotError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SnapshotError'
  }
}

/** No running brane has that name (an admin request named a brane the node does not run) */
export class BraneNotFoundError extends OmegaError {
  static override name = 'BraneNotFoundError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BraneNotFoundError'
  }
}

/**
 * A delivery could not be tried: no node runs its target brane right now (it is being
 * placed, or its node just died). The event waits without losing an attempt.
 */
export class TargetUnavailableError extends OmegaError {
  static override name = 'TargetUnavailableError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TargetUnavailableError'
  }
}

/** A deployment document is malformed, wrongly signed, or not allowed */
export class DeploymentError extends OmegaError {
  static override name = 'DeploymentError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'DeploymentError'
  }
}

/** Another node could not be reached, or the channel to it died */
export class PeerUnavailableError extends OmegaError {
  static override name = 'PeerUnavailableError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'PeerUnavailableError'
  }
}

/** The mesh node cannot do what was asked in its current state (not started, stopped, unknown peer) */
export class MeshError extends OmegaError {
  static override name = 'MeshError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'MeshError'
  }
}

/** A mesh peer could not be dialled or a stream to it could not be opened (unreachable, isolated, refused) */
export class MeshDialError extends OmegaError {
  static override name = 'MeshDialError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'MeshDialError'
  }
}

/** A frame channel between mesh peers failed: closed, reset, or a frame over the size limit */
export class MeshChannelError extends OmegaError {
  static override name = 'MeshChannelError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'MeshChannelError'
  }
}

/** Peer discovery failed: the tailscale/netbird command failed or printed unexpected JSON, a DNS-SD query failed */
export class DiscoveryError extends OmegaError {
  static override name = 'DiscoveryError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'DiscoveryError'
  }
}

/** A guest image cannot be built, or a built one is damaged (frontier branes) */
export class GuestImageError extends OmegaError {
  static override name = 'GuestImageError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'GuestImageError'
  }
}

/** No guest image of that name was built on this node (`omega guest build NAME --from DIR`) */
export class GuestImageNotFoundError extends OmegaError {
  static override name = 'GuestImageNotFoundError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'GuestImageNotFoundError'
  }
}

/**
 * A virtual machine monitor (QEMU, Firecracker) failed: it would not start, it died
 * (the request it was serving fails with this), or it did not answer in time
 */
export class VmmError extends OmegaError {
  static override name = 'VmmError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'VmmError'
  }
}

/**
 * This node refuses to run a brane because it lacks what the brane asks for (e.g.
 * `gpu = "passthrough"` on a host without VFIO, or `frontier` without a VMM)
 */
export class PlacementError extends OmegaError {
  static override name = 'PlacementError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'PlacementError'
  }
}

/**
 * A capability token was refused. `reason`: `malformed`, `signature` (a signature of the
 * chain does not verify against a trusted root), `expired`, `revoked`, `denied` (it does
 * not allow the ability on the resource) or `escalation` (a delegation asked for more
 * than its parent allows)
 */
export class CapabilityTokenError extends OmegaError {
  static override name = 'CapabilityTokenError'
  readonly reason: 'malformed' | 'signature' | 'expired' | 'revoked' | 'denied' | 'escalation'
  constructor (message: string, reason: CapabilityTokenError['reason'], options?: ErrorOptions) {
    super(message, options)
    this.name = 'CapabilityTokenError'
    this.reason = reason
  }
}

/** A settlement export failed offline verification (signature, chain, order, gap or truncation) */
export class SettlementVerificationError extends OmegaError {
  static override name = 'SettlementVerificationError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SettlementVerificationError'
  }
}

/** An error the remote handler threw, under its own name */
export class RemoteError extends OmegaError {
  static override name = 'RemoteError'
  /** the name of the error on the remote node */
  readonly remoteName: string
  constructor (remoteName: string, message: string) {
    super(message)
    this.name = 'RemoteError'
    this.remoteName = remoteName
  }
}

/** A call or answer larger than the channel carries */
export class FrameTooLargeError extends OmegaError {
  static override name = 'FrameTooLargeError'
  constructor (message: string) {
    super(message)
    this.name = 'FrameTooLargeError'
  }
}

/**
 * More work than the node takes at once (request bytes held by the gateway, requests
 * waiting for a brane): refused at once, try again shortly (HTTP 503 with Retry-After)
 */
export class OverloadedError extends OmegaError {
  static override name = 'OverloadedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'OverloadedError'
  }
}

/**
 * An event of a batch was not handled because an earlier event of the same batch (the
 * same edge, in order) failed: it was never started, and is delivered again later
 */
export class SkippedEventError extends OmegaError {
  static override name = 'SkippedEventError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SkippedEventError'
  }
}

export class TokenError extends OmegaError {
  static override name = 'TokenError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TokenError'
  }
}

/** A request reached a brane that is closing or closed */
export class BraneClosedError extends OmegaError {
  static override name = 'BraneClosedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BraneClosedError'
  }
}

export class UnauthorizedError extends OmegaError {
  static override name = 'UnauthorizedError'
  constructor (message: string) {
    super(message)
    this.name = 'UnauthorizedError'
  }
}

export class PayloadTooLargeError extends OmegaError {
  static override name = 'PayloadTooLargeError'
  constructor (message: string) {
    super(message)
    this.name = 'PayloadTooLargeError'
  }
}

export class DaemonNotRunningError extends OmegaError {
  static override name = 'DaemonNotRunningError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'DaemonNotRunningError'
  }
}

export class AdminRequestError extends OmegaError {
  static override name = 'AdminRequestError'
  readonly status: number
  /** the error name the daemon reported, e.g. `ManifestError` */
  readonly remoteName: string | undefined
  constructor (message: string, status: number, remoteName?: string) {
    super(message)
    this.name = 'AdminRequestError'
    this.status = status
    this.remoteName = remoteName
  }
}

export class TraceVerificationError extends OmegaError {
  static override name = 'TraceVerificationError'
  constructor (message: string) {
    super(message)
    this.name = 'TraceVerificationError'
  }
}

/** An event names a topic no edge from its brane carries */
export class UnknownTopicError extends OmegaError {
  static override name = 'UnknownTopicError'
  constructor (message: string) {
    super(message)
    this.name = 'UnknownTopicError'
  }
}

/** The event queue cannot be used (missing, damaged, or a failed write) */
export class QueueError extends OmegaError {
  static override name = 'QueueError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'QueueError'
  }
}

/**
 * The name of every error Omega defines (the classes above): the keys the CLI's exit
 * codes and the gateway's statuses are typed against, so that a new error cannot go
 * without a code
 */
export type OmegaErrorName =
  | 'OmegaError'
  | 'ManifestError'
  | 'CapabilityDeniedError'
  | 'ImageNotFoundError'
  | 'ComponentLoadError'
  | 'GuestError'
  | 'MemoryLimitError'
  | 'DeadlineExceededError'
  | 'RetryableEventError'
  | 'RejectedEventError'
  | 'RouteNotFoundError'
  | 'UnsupportedError'
  | 'UsageError'
  | 'BuildError'
  | 'NodeKeyError'
  | 'InvalidImageRefError'
  | 'ImageStoreError'
  | 'SnapshotError'
  | 'BraneNotFoundError'
  | 'TargetUnavailableError'
  | 'DeploymentError'
  | 'PeerUnavailableError'
  | 'MeshError'
  | 'MeshDialError'
  | 'MeshChannelError'
  | 'DiscoveryError'
  | 'GuestImageError'
  | 'GuestImageNotFoundError'
  | 'VmmError'
  | 'PlacementError'
  | 'CapabilityTokenError'
  | 'SettlementVerificationError'
  | 'RemoteError'
  | 'FrameTooLargeError'
  | 'OverloadedError'
  | 'SkippedEventError'
  | 'TokenError'
  | 'BraneClosedError'
  | 'UnauthorizedError'
  | 'PayloadTooLargeError'
  | 'DaemonNotRunningError'
  | 'AdminRequestError'
  | 'TraceVerificationError'
  | 'QueueError'
  | 'UnknownTopicError'

/** `table[name]` for any string: undefined for names the table does not own (never a prototype member) */
export function byErrorName<T> (table: Readonly<Partial<Record<string, T>>>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined
}

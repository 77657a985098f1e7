/** The runtime's own errors live with every other in src/errors.ts; here, what a worker's error name stands for */
import { BraneClosedError, CapabilityDeniedError, ComponentLoadError, GuestError, MemoryLimitError, RejectedEventError, RetryableEventError, SkippedEventError, SnapshotError } from '../../errors.ts'
import type { WorkerErrorName } from './protocol.ts'

export { BraneClosedError }

/** The OmegaError a worker's error name stands for */
const ERRORS: Readonly<Record<WorkerErrorName, new (message: string) => Error>> = {
  GuestError,
  MemoryLimitError,
  ComponentLoadError,
  RetryableEventError,
  RejectedEventError,
  SnapshotError,
  SkippedEventError,
  CapabilityDeniedError
}

/** The error a worker reported by name, as the OmegaError it stands for */
export function workerError (name: WorkerErrorName, message: string): Error {
  return new ERRORS[name](message)
}

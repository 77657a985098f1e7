import { OmegaError } from '../../errors.ts'

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

/** A request reached a brane that is closing or closed */
export class BraneClosedError extends OmegaError {
  static override name = 'BraneClosedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BraneClosedError'
  }
}

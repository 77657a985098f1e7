import { OmegaError } from '../../errors.ts'

/** A request reached a brane that is closing or closed */
export class BraneClosedError extends OmegaError {
  static override name = 'BraneClosedError'
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BraneClosedError'
  }
}

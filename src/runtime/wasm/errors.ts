/** The runtime's own errors live with every other in src/errors.ts */
export { BraneClosedError } from '../../errors.ts'

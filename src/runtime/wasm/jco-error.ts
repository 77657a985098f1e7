/** jco and wasm-tools throw strings, `{ payload }` objects or Errors: the message of each */
export function describe (err: unknown): string {
  if (typeof err === 'string') {
    return err.trim()
  }
  if (typeof err === 'object' && err !== null && 'payload' in err) {
    return String(err.payload)
  }
  return err instanceof Error ? err.message : String(err)
}

/**
 * One signal that aborts when any input does, with `clear()` to drop its listeners.
 * `AbortSignal.any()` leaks when one input lives long (nodejs/node#55351), and a
 * brane's shutdown signal lives as long as the brane.
 */
export interface ClearableSignal {
  readonly signal: AbortSignal
  clear: () => void
}

export function combineSignals (signals: ReadonlyArray<AbortSignal | undefined>): ClearableSignal {
  const controller = new AbortController()
  const inputs = signals.filter((s): s is AbortSignal => s !== undefined)
  const already = inputs.find((s) => s.aborted)
  if (already !== undefined) {
    controller.abort(already.reason)
    return { signal: controller.signal, clear: () => {} }
  }
  const listeners = inputs.map((s) => {
    const onAbort = (): void => { controller.abort(s.reason) }
    s.addEventListener('abort', onAbort, { once: true })
    return () => { s.removeEventListener('abort', onAbort) }
  })
  return { signal: controller.signal, clear: () => { for (const off of listeners) { off() } } }
}

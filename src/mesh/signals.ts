/**
 * One signal that aborts when any input aborts, with `clear()` to detach from the inputs.
 * (AbortSignal.any() leaks when one input lives long, e.g. a node's shutdown signal:
 * nodejs/node#55351; see CONVENTIONS §4.)
 */
export interface ClearableSignal {
  signal: AbortSignal
  clear: () => void
}

export function combineSignals (signals: ReadonlyArray<AbortSignal | undefined>): ClearableSignal {
  const controller = new AbortController()
  const inputs = signals.filter((s): s is AbortSignal => s !== undefined)
  const onAbort = (evt: Event): void => {
    controller.abort((evt.target as AbortSignal).reason)
    clear()
  }
  function clear (): void {
    for (const s of inputs) {
      s.removeEventListener('abort', onAbort)
    }
  }
  for (const s of inputs) {
    if (s.aborted) {
      controller.abort(s.reason)
      clear()
      break
    }
    s.addEventListener('abort', onAbort)
  }
  return { signal: controller.signal, clear }
}

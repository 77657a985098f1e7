/**
 * The moments a guest is about to wait for something outside itself: a timer it
 * subscribed to, an outgoing HTTP response, an answer of the main thread (emit, state,
 * the next piece of a request body). What it wrote before must not wait with it: the
 * worker sets a hook per job that sends a streaming response's pending bytes.
 *
 * One hook per worker thread: a worker runs one guest call at a time.
 */
let hook: (() => void) | undefined

/** Sets (or with `undefined` clears) what runs before the guest waits */
export function onGuestWait (fn: (() => void) | undefined): void {
  hook = fn
}

/** Called by host imports just before the guest may block */
export function guestWaits (): void {
  hook?.()
}

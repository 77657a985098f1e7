declare module 'omega:brane/types@0.1.0' {
  /**
   * One event, as delivered to a brane.
   */
  export interface Event {
    /**
     * `topic:b3:<hash prefix>`, unique per emit; use it as an idempotency key:
     * delivery is at least once, so the same id can arrive twice.
     */
    id: string,
    /**
     * the edge's `on`, e.g. `raw.batch`
     */
    topic: string,
    payload: Uint8Array,
    /**
     * the brane that emitted it
     */
    source: string,
    /**
     * shared by every event caused by the same first emit
     */
    traceId: string,
    /**
     * 1 on the first delivery, more on retries
     */
    attempt: number,
  }
  /**
   * Why a handler failed. `retry` asks for another delivery later (with back-off);
   * `reject` dead-letters the event at once.
   */
  export type HandleError = HandleErrorRetry | HandleErrorReject;
  export interface HandleErrorRetry {
    tag: 'retry',
    val: string,
  }
  export interface HandleErrorReject {
    tag: 'reject',
    val: string,
  }
  export type EmitError = EmitErrorUnknownTopic | EmitErrorUnavailable | EmitErrorTooLarge;
  /**
   * no edge from this brane carries the topic
   */
  export interface EmitErrorUnknownTopic {
    tag: 'unknown-topic',
    val: string,
  }
  /**
   * the event was not written (the queue is closed or failing, or the node did
   * not answer within the brane's deadline); emitting again later may work
   */
  export interface EmitErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
  /**
   * the payload is larger than the node accepts (16 MiB unless configured):
   * emitting the same payload again will fail the same way
   */
  export interface EmitErrorTooLarge {
    tag: 'too-large',
    val: string,
  }
}

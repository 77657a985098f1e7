declare module 'omega:brane/state@0.1.0' {
  export function get(key: string): Uint8Array | undefined;
  export function set(key: string, value: Uint8Array): void;
  export { _delete as delete };
  function _delete(key: string): void;
  export function append(name: string, value: Uint8Array): void;
  export function range(name: string, start: number, end: number): Array<Uint8Array>;
  export type StateError = StateErrorUnavailable;
  /**
   * the node could not do it (no state service, a value too large, the deadline passed)
   */
  export interface StateErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
}

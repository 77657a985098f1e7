/**
 * `wasi:keyvalue` (store, atomics, batch; 0.2.0-draft2 as Spin and wasmCloud guests
 * import it) on the brane's `state` grant: the same replicated map as
 * `omega:brane/state`. Bucket "default" is that map itself; a bucket named `NAME` is
 * the keys `NAME/…` of it. Every call is one synchronous state call to the node (so an
 * increment or a swap is atomic on that node; across replicas the map converges, last
 * writer wins per key). Without a state service every call fails with `other`.
 */
import { WitError, type ImportInterface } from './shim.ts'
import type { StateCall, StateHook, StateResult } from './brane.ts'

const decoder = new TextDecoder()
/** keys per list-keys answer */
const PAGE = 1000

/** The three interfaces, for a state hook (undefined: no state service on this node) */
export function keyvalueInterfaces (hook: StateHook | undefined): { store: ImportInterface, atomics: ImportInterface, batch: ImportInterface } {
  const call = (c: StateCall): StateResult => {
    if (hook === undefined) {
      throw new WitError({ tag: 'other', val: 'replicated state is not available on this node' })
    }
    try {
      return hook(c)
    } catch (err) {
      // a state-error from the node, as wasi:keyvalue's error
      const payload = (err as { payload?: { val?: unknown } }).payload
      throw new WitError({ tag: 'other', val: String(payload?.val ?? (err instanceof Error ? err.message : err)) })
    }
  }

  class Bucket {
    readonly prefix: string
    constructor (prefix: string) {
      this.prefix = prefix
    }

    get (key: string): Uint8Array | undefined {
      return call({ method: 'get', key: this.prefix + key }) as Uint8Array | undefined
    }

    set (key: string, value: Uint8Array): void {
      call({ method: 'set', key: this.prefix + key, value })
    }

    delete (key: string): void {
      call({ method: 'delete', key: this.prefix + key })
    }

    exists (key: string): boolean {
      return this.get(key) !== undefined
    }

    listKeys (cursor: string | undefined): { keys: string[], cursor: string | undefined } {
      const found = (call({ method: 'keys', key: this.prefix, ...(cursor === undefined ? {} : { after: this.prefix + cursor }), limit: PAGE + 1 }) as Uint8Array[])
        .map((k) => decoder.decode(k).slice(this.prefix.length))
      const keys = found.slice(0, PAGE)
      return { keys, cursor: found.length > PAGE ? keys.at(-1) : undefined }
    }
  }

  class Cas {
    readonly bucket: Bucket
    readonly key: string
    readonly seen: Uint8Array | undefined
    constructor (bucket: Bucket, key: string) {
      this.bucket = bucket
      this.key = key
      this.seen = bucket.get(key)
    }

    static new (bucket: Bucket, key: string): Cas {
      return new Cas(bucket, key)
    }

    current (): Uint8Array | undefined {
      return this.seen
    }
  }

  const store: ImportInterface = {
    Bucket,
    open (identifier: string): Bucket {
      if (identifier.includes('/')) {
        throw new WitError({ tag: 'no-such-store' })
      }
      return new Bucket(identifier === 'default' || identifier === '' ? '' : `${identifier}/`)
    }
  }
  const atomics: ImportInterface = {
    Cas,
    increment (bucket: Bucket, key: string, delta: bigint): bigint {
      const sum = call({ method: 'increment', key: bucket.prefix + key, delta: delta.toString() }) as Uint8Array
      return BigInt(decoder.decode(sum))
    },
    swap (cas: Cas, value: Uint8Array): void {
      let swapped: StateResult
      try {
        swapped = call({ method: 'swap', key: cas.bucket.prefix + cas.key, ...(cas.seen === undefined ? {} : { expected: cas.seen }), value })
      } catch (err) {
        throw new WitError({ tag: 'store-error', val: (err as WitError).payload })
      }
      if ((swapped as Uint8Array[])[0]?.[0] !== 1) {
        throw new WitError({ tag: 'cas-failed', val: new Cas(cas.bucket, cas.key) })
      }
    }
  }
  const batch: ImportInterface = {
    getMany (bucket: Bucket, keys: string[]): Array<[string, Uint8Array] | undefined> {
      return keys.map((key) => {
        const value = bucket.get(key)
        return value === undefined ? undefined : [key, value]
      })
    },
    setMany (bucket: Bucket, entries: Array<[string, Uint8Array]>): void {
      for (const [key, value] of entries) {
        bucket.set(key, value)
      }
    },
    deleteMany (bucket: Bucket, keys: string[]): void {
      for (const key of keys) {
        bucket.delete(key)
      }
    }
  }
  return { store, atomics, batch }
}

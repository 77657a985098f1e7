/**
 * The `mem_max` limit: rewrites the memory section of a core module so that every
 * memory it defines has a maximum of at most the cap. V8 then refuses `memory.grow`
 * past the cap (the guest sees -1, as with any out-of-memory), and the instance lives
 * on. Worker `resourceLimits` do not cover wasm memory, so this is the only bound.
 */
import { ComponentLoadError } from '../../errors.ts'

/** Bytes in one WebAssembly page */
export const WASM_PAGE = 65_536

const MEMORY_SECTION = 5
const FLAG_HAS_MAX = 0x01
const FLAG_SHARED = 0x02
const FLAG_MEMORY64 = 0x04

/** Options of {@link capMemoryMax} */
export interface CapMemoryOptions {
  /** names the module in error messages */
  readonly module?: string
}

/**
 * A copy of `bytes` (a core module) whose defined memories have a maximum of at most
 * `maxBytes` (rounded down to whole pages). Imported memories are left alone: their
 * definition is capped in the module that defines them. Returns `bytes` itself when
 * the module defines no memory.
 *
 * @throws RangeError when `maxBytes` is less than one page
 * @throws ComponentLoadError when the module is malformed or a memory's minimum is
 * already above the cap
 */
export function capMemoryMax (bytes: Uint8Array, maxBytes: number, options: CapMemoryOptions = {}): Uint8Array {
  const capPages = Math.floor(maxBytes / WASM_PAGE)
  if (!Number.isFinite(maxBytes) || capPages < 1) {
    throw new RangeError(`Cannot cap memory at ${maxBytes} bytes: the cap must be at least one page (${WASM_PAGE} bytes)`)
  }
  const where = options.module === undefined ? 'core module' : `core module "${options.module}"`
  const reader = new Reader(bytes, where)
  reader.offset = 8 // magic + version, checked by the compiler
  const out: Uint8Array[] = [bytes.subarray(0, 8)]
  let changed = false
  while (reader.offset < bytes.length) {
    const start = reader.offset
    const id = reader.byte()
    const size = reader.u32()
    const end = reader.offset + size
    if (end > bytes.length) {
      throw new ComponentLoadError(`Cannot cap memory of ${where}: section ${id} runs past the end`)
    }
    if (id !== MEMORY_SECTION) {
      out.push(bytes.subarray(start, end))
      reader.offset = end
      continue
    }
    const body: number[] = []
    const count = reader.u32()
    writeLeb(body, count)
    for (let i = 0; i < count; i++) {
      const flags = reader.byte()
      if ((flags & ~(FLAG_HAS_MAX | FLAG_SHARED | FLAG_MEMORY64)) !== 0) {
        throw new ComponentLoadError(`Cannot cap memory of ${where}: unsupported memory flags 0x${flags.toString(16)}`)
      }
      const min = reader.leb()
      const max = (flags & FLAG_HAS_MAX) !== 0 ? reader.leb() : Infinity
      if (min > capPages) {
        throw new ComponentLoadError(`Cannot cap memory of ${where}: memory ${i} starts at ${min * WASM_PAGE} bytes, above mem_max (${capPages * WASM_PAGE} bytes)`)
      }
      body.push(flags | FLAG_HAS_MAX)
      writeLeb(body, min)
      writeLeb(body, Math.min(max, capPages))
    }
    if (reader.offset !== end) {
      throw new ComponentLoadError(`Cannot cap memory of ${where}: malformed memory section`)
    }
    const head: number[] = [MEMORY_SECTION]
    writeLeb(head, body.length)
    out.push(Uint8Array.from(head), Uint8Array.from(body))
    changed = true
  }
  if (!changed) {
    return bytes
  }
  const result = new Uint8Array(out.reduce((n, part) => n + part.length, 0))
  let offset = 0
  for (const part of out) {
    result.set(part, offset)
    offset += part.length
  }
  return result
}

class Reader {
  readonly #bytes: Uint8Array
  readonly #where: string
  offset = 0

  constructor (bytes: Uint8Array, where: string) {
    this.#bytes = bytes
    this.#where = where
  }

  byte (): number {
    const value = this.#bytes[this.offset++]
    if (value === undefined) {
      throw new ComponentLoadError(`Cannot cap memory of ${this.#where}: unexpected end of module`)
    }
    return value
  }

  /** An unsigned LEB128 (u32 or u64; values above 2^53 lose precision, which no real limit has) */
  leb (): number {
    let result = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      const b = this.byte()
      result += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        return result
      }
      scale *= 128
    }
    throw new ComponentLoadError(`Cannot cap memory of ${this.#where}: malformed LEB128 at byte ${this.offset}`)
  }

  u32 (): number {
    return this.leb()
  }
}

function writeLeb (out: number[], value: number): void {
  let v = value
  do {
    let b = v % 128
    v = Math.floor(v / 128)
    if (v !== 0) {
      b |= 0x80
    }
    out.push(b)
  } while (v !== 0)
}

/**
 * A small seeded pseudo-random generator (sfc32, seeded through splitmix32), so that a
 * simulation run is reproducible from its seed.
 */
export class Prng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor (seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.#a = next()
    this.#b = next()
    this.#c = next()
    this.#d = next()
    for (let i = 0; i < 12; i++) {
      this.next()
    }
  }

  /** uniform in [0, 1) */
  next (): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0
    this.#d = (this.#d + 1) >>> 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) >>> 0
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0
    this.#c = (this.#c + t) >>> 0
    return t / 4294967296
  }

  /** an integer in [0, n) */
  int (n: number): number {
    return Math.floor(this.next() * n)
  }

  /** exponentially distributed with the given mean */
  exponential (mean: number): number {
    return -mean * Math.log(1 - this.next())
  }

  /** a child generator, independent of this one's later draws */
  fork (): Prng {
    return new Prng(Math.floor(this.next() * 4294967296))
  }

  /** 32 random bytes (e.g. a key seed) */
  bytes32 (): Uint8Array {
    const out = new Uint8Array(32)
    for (let i = 0; i < 32; i++) {
      out[i] = this.int(256)
    }
    return out
  }
}

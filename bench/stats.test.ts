import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Reservoir, median, percentile, summarize } from './stats.ts'

describe('percentile', () => {
  it('interpolates between the nearest ranks', () => {
    assert.equal(percentile([1, 2, 3, 4], 50), 2.5)
    assert.equal(percentile([1, 2, 3, 4], 0), 1)
    assert.equal(percentile([1, 2, 3, 4], 100), 4)
    assert.equal(percentile([7], 99), 7)
    const hundred = Array.from({ length: 101 }, (_, i) => i)
    assert.equal(percentile(hundred, 99), 99)
    assert.equal(percentile(hundred, 12.5), 12.5)
  })

  it('rejects empty input and out-of-range percentiles', () => {
    assert.throws(() => percentile([], 50), { name: 'RangeError' })
    assert.throws(() => percentile([1], 101), { name: 'RangeError' })
    assert.throws(() => percentile([1], Number.NaN), { name: 'RangeError' })
  })
})

describe('summarize', () => {
  it('sorts its input and computes the figures', () => {
    const s = summarize([5, 1, 4, 2, 3])
    assert.deepEqual({ ...s, stddev: Number(s.stddev.toFixed(6)) }, {
      n: 5, min: 1, max: 5, mean: 3, stddev: 1.581139, p50: 3, p90: 4.6, p99: 4.96
    })
    assert.equal(median([3, 1, 2]), 2)
  })
})

describe('Reservoir', () => {
  it('keeps everything below capacity and a bounded sample above it', () => {
    const small = new Reservoir(10)
    for (let i = 0; i < 5; i++) {
      small.add(i)
    }
    assert.deepEqual(Array.from(small.values()), [0, 1, 2, 3, 4])

    let seed = 1
    const lcg = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    const big = new Reservoir(1000, lcg)
    for (let i = 0; i < 100_000; i++) {
      big.add(i)
    }
    assert.equal(big.seen, 100_000)
    assert.equal(big.values().length, 1000)
    // a uniform sample of 0..99999 has its median near 50000
    assert.ok(Math.abs(median(big.values()) - 50_000) < 7_500, String(median(big.values())))
  })
})

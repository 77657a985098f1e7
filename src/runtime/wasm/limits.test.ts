import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { CpuThrottle, LogBudget } from './limits.ts'
import { capMemoryMax, WASM_PAGE } from './memory-cap.ts'

describe('CpuThrottle', () => {
  it('admits until the window budget is used, then waits for a window with budget left', () => {
    let now = 0
    const t = new CpuThrottle({ quota: 0.5, windowMs: 1000, now: () => now })
    assert.equal(t.budgetMs, 500)
    assert.equal(t.waitMs(), 0)
    t.charge(300)
    assert.equal(t.waitMs(), 0)
    t.charge(250)
    assert.equal(t.waitMs(), 1000)
    now = 400
    assert.equal(t.waitMs(), 600)
    now = 1000
    // 550 - 500: 50 ms of debt carried in, below budget
    assert.equal(t.chargedMs, 50)
    assert.equal(t.waitMs(), 0)
  })

  it('carries large overuse as debt over several windows', () => {
    let now = 0
    const t = new CpuThrottle({ quota: 0.1, windowMs: 1000, now: () => now })
    t.charge(450) // 4.5 budgets
    assert.equal(t.waitMs(), 4000)
    now = 3999
    assert.ok(t.waitMs() > 0)
    now = 4000
    assert.equal(t.waitMs(), 0)
  })

  it('refuses a quota of zero or less', () => {
    assert.throws(() => new CpuThrottle({ quota: 0 }), { name: 'RangeError' })
  })
})

describe('LogBudget', () => {
  it('keeps lines within the byte and line caps, then refuses', () => {
    const b = new LogBudget({ maxBytes: 10, maxLines: 100 })
    assert.equal(b.take('abcd'), true) // 5
    assert.equal(b.take('efgh'), true) // 10
    assert.equal(b.take(''), false)
    assert.equal(b.take('x'), false)
    assert.equal(b.dropped, 2)
    const lines = new LogBudget({ maxBytes: 1000, maxLines: 2 })
    assert.equal(lines.take(''), true)
    assert.equal(lines.take(''), true)
    assert.equal(lines.take(''), false)
  })
})

// (module (memory (export "memory") 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
const GROW_MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type: (i32) -> i32
  0x03, 0x02, 0x01, 0x00, // func 0: type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1, no max
  0x07, 0x11, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x00,
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b
])

interface GrowInstance { exports: { grow: (pages: number) => number, memory: { buffer: ArrayBuffer } } }
const Wasm = (globalThis as unknown as { WebAssembly: { Instance: new (m: object) => GrowInstance, Module: new (b: Uint8Array) => object } }).WebAssembly

describe('capMemoryMax', () => {
  it('sets the maximum so that memory.grow fails past the cap', () => {
    const plain = new Wasm.Instance(new Wasm.Module(GROW_MODULE))
    assert.equal(plain.exports.grow(10), 1)
    const capped = new Wasm.Instance(new Wasm.Module(capMemoryMax(GROW_MODULE, 3 * WASM_PAGE + 100)))
    assert.equal(capped.exports.grow(2), 1)
    assert.equal(capped.exports.grow(1), -1)
    assert.equal(capped.exports.memory.buffer.byteLength, 3 * WASM_PAGE)
  })

  it('keeps a smaller maximum and refuses a minimum above the cap', () => {
    const twice = capMemoryMax(capMemoryMax(GROW_MODULE, 2 * WASM_PAGE), 8 * WASM_PAGE)
    const capped = new Wasm.Instance(new Wasm.Module(twice))
    assert.equal(capped.exports.grow(2), -1)
    const min2 = Uint8Array.from(GROW_MODULE)
    min2[23] = 0x00 // flags
    min2[24] = 0x05 // min 5 pages
    assert.throws(() => capMemoryMax(min2, 4 * WASM_PAGE, { module: 'm.wasm' }), {
      name: 'ComponentLoadError',
      message: 'Cannot cap memory of core module "m.wasm": memory 0 starts at 327680 bytes, above mem_max (262144 bytes)'
    })
    assert.throws(() => capMemoryMax(GROW_MODULE, 100), { name: 'RangeError' })
  })
})

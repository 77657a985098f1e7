/**
 * The committed guest bindings (bindings/brane) are what scripts/guest-types.js makes
 * from wit/brane/brane.wit: the WIT and its bindings never drift apart.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT } from './helpers.ts'

describe('guest bindings', () => {
  it('match the WIT', async () => {
    const script = join(ROOT, 'scripts/guest-types.js')
    const { guestTypes } = await import(script) as { guestTypes: () => Promise<Record<string, string>> }
    const expected = await guestTypes()
    assert.ok(Object.keys(expected).length >= 5)
    for (const [name, text] of Object.entries(expected)) {
      const committed = await readFile(join(ROOT, 'bindings/brane', name), 'utf8').catch(() => '(missing)')
      assert.equal(committed, text, `bindings/brane/${name} is stale: run "node scripts/guest-types.js"`)
    }
  })
})

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { defaultHome } from './index.ts'

describe('defaultHome', () => {
  it('uses $OMEGA_HOME when set', () => {
    assert.equal(defaultHome({ OMEGA_HOME: '/srv/omega' }, { homedir: '/home/me' }), '/srv/omega')
  })

  it('falls back to ~/.omega when unset or empty', () => {
    assert.equal(defaultHome({}, { homedir: '/home/me' }), join('/home/me', '.omega'))
    assert.equal(defaultHome({ OMEGA_HOME: '' }, { homedir: '/home/me' }), join('/home/me', '.omega'))
  })
})

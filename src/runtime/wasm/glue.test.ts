// The fixtures are JavaScript source text: quotes of every kind and ${…} inside strings are the point
/* eslint-disable @stylistic/quotes, no-template-curly-in-string */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { stripCalls } from './glue.ts'

describe('jco glue: debug-log calls removed', () => {
  it('replaces calls in code by void 0, whatever their arguments hold', () => {
    const src = [
      "const _debugLog = (...args) => { if (!globalThis?.process?.env?.JCO_DEBUG) { return; } console.debug(...args); };",
      "function f (a) {",
      "  _debugLog('[f()] args', { a, nested: { b: [1, (2)] }, s: ')', t: `x ${a + ')'} y`, r: /[)'\"]/g.source });",
      "  const x = a / 2; _debugLog(\"two\", x)",
      "  return _debugLog('last', f.call(this, '(')) ?? x",
      "}"
    ].join('\n')
    const out = stripCalls(src)
    assert.equal(out, [
      "const _debugLog = (...args) => { if (!globalThis?.process?.env?.JCO_DEBUG) { return; } console.debug(...args); };",
      'function f (a) {',
      '  void 0;',
      '  const x = a / 2; void 0',
      '  return void 0 ?? x',
      '}'
    ].join('\n'))
    // still the same program, minus the logging
    assert.equal(new Function(`${out}; return f(4)`)(), 2) // eslint-disable-line no-new-func
  })

  it('leaves comments, strings, templates and other names alone', () => {
    const src = [
      '// _debugLog("in a comment", {',
      '/* _debugLog(( */',
      "const s = '_debugLog(' + \"_debugLog(\" + `_debugLog(${1}`",
      'obj._debugLog(1); my_debugLog(2); this.#_debugLog(3)'
    ].join('\n')
    assert.equal(stripCalls(src), src)
  })

  it('gives the text back unchanged when a call is not closed', () => {
    const src = "ok(); _debugLog('open', { a: 1 "
    assert.equal(stripCalls(src), src)
  })
})

// The fixtures are JavaScript source text: quotes of every kind and ${…} inside strings are the point
/* eslint-disable @stylistic/quotes, no-template-curly-in-string */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dropCreatedReps, leanHostCalls, stripCalls } from './glue.ts'
import { componentLoader } from './testing.ts'

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

/** A host-call trampoline and its binding, in the shape jco-transpile 0.15 writes them */
function trampoline (n: number, call: string, options: { isAsync?: boolean, extra?: string } = {}): string {
  return [
    `  const _trampoline${n} = function(arg0) {`,
    '    const hostProvided = true;',
    '    let parentTask;',
    '    let task;',
    '    let subtask;',
    '    const createTask = () => {',
    "      const results = createNewCurrentTask({ componentIdx: -1, isAsync: false, entryFnName: 'f' });",
    '      task = results[0];',
    '    };',
    '    taskCreation: {',
    '      parentTask = getCurrentTask(0, _getGlobalCurrentTaskMeta(0)?.taskID)?.task;',
    '      if (!parentTask) { createTask(); break taskCreation; }',
    '      createTask();',
    '      if (hostProvided) { subtask = parentTask.getLatestSubtask(); task.setParentSubtask(subtask); }',
    '    }',
    '    const started = task.enterSync();',
    '    let ret;',
    '    try {',
    `      ret = _withGlobalCurrentTaskMeta({ componentIdx: task.componentIdx(), taskID: task.id(), fn: () => _trackHostOperation(() => ${call}) });`,
    '    } catch (err) { task.setErrored(err); task.reject(err); task.exit(); throw err; }',
    options.extra ?? '',
    '    task.resolve([ret]);',
    '    task.exit();',
    '    return ret + 1;',
    '  }',
    `  let trampoline${n} = _trampoline${n}.manuallyAsync ? new WebAssembly.Suspending(_lowerImportBackwardsCompat.bind(null, { isAsync: false, funcTypeIsAsync: false, importFn: _trampoline${n}, })) : _lowerImportBackwardsCompat.bind(`,
    '  null,',
    `  { isAsync: ${String(options.isAsync ?? false)}, funcTypeIsAsync: false, importFn: _trampoline${n}, },`,
    '  );'
  ].join('\n')
}

describe('jco glue: synchronous host calls without task bookkeeping', () => {
  const tasks = [
    'let made = 0;',
    'const createNewCurrentTask = () => { made++; return [{ enterSync () { return true }, resolve () {}, exit () {}, setErrored () {}, reject () {}, componentIdx () { return 0 }, id () { return 1 }, setParentSubtask () {} }] };',
    'const getCurrentTask = () => undefined; const _getGlobalCurrentTaskMeta = () => undefined;',
    'const _withGlobalCurrentTaskMeta = (args) => args.fn(); const _trackHostOperation = (f) => f();',
    'function _lowerImportBackwardsCompat (args, ...params) { return args.importFn(...params) }'
  ].join('\n')

  it('calls the host function directly, lifting and lowering as before', () => {
    const src = `${tasks}\n${trampoline(1, 'host(arg0)')}\n`
    const out = leanHostCalls(src)
    assert.notEqual(out, src)
    assert.match(out, /const task = _omegaHostTask;/)
    assert.match(out, /: _trampoline1;/)
    assert.doesNotMatch(out, /taskCreation|parentTask|getLatestSubtask/)
    // the JSPI branch keeps jco's own lowering
    assert.match(out, /new WebAssembly\.Suspending\(_lowerImportBackwardsCompat\.bind/)
    const run = (text: string): [number, number] => new Function('host', `${text}; return [trampoline1(41), made]`)((x: number) => x) as [number, number] // eslint-disable-line no-new-func
    assert.deepEqual(run(src), [42, 1], 'jco: one task per call')
    assert.deepEqual(run(out), [42, 0], 'lean: the same answer, no task')
  })

  it('leaves alone what is not of the synchronous shape', () => {
    for (const src of [
      trampoline(2, 'host(arg0)', { isAsync: true }),
      trampoline(3, 'host(arg0)', { extra: '    await subtask.done();' }),
      trampoline(4, 'host(arg0)', { extra: '    parentTask.note();' })
    ]) {
      assert.equal(leanHostCalls(src), src)
    }
  })

  describe('in a transpiled component', () => {
    let cacheDir = ''
    const load = componentLoader(() => cacheDir)
    before(async () => { cacheDir = await mkdtemp(join(tmpdir(), 'omega-glue-')) })
    after(async () => { await rm(cacheDir, { recursive: true, force: true }) })

    it('makes every host call of the hello component lean (a jco update that changes the shape fails here)', async () => {
      const glue = await readFile((await load('examples/hello/hello.wasm')).entry, 'utf8')
      assert.ok((glue.match(/\.manuallyAsync \? new WebAssembly\.Suspending\([^]*?\) : _trampoline\d+;/g) ?? []).length >= 8, 'imports bound to their trampolines')
      assert.doesNotMatch(glue, /: _lowerImportBackwardsCompat\.bind\(/)
      assert.doesNotMatch(glue, /_createdReps\.add/)
    })
  })
})

describe('jco glue: the write-only set of created resources', () => {
  it('drops its writes only while nothing else reads it', () => {
    const src = 'h._createdReps = new Set();\nfunction make (table, rep) {\n  table._createdReps.add(rep);\n  return rep;\n}'
    assert.equal(dropCreatedReps(src), 'h._createdReps = new Set();\nfunction make (table, rep) {\n  \n  return rep;\n}')
    const read = `${src}\nif (h._createdReps.has(1)) {}`
    assert.equal(dropCreatedReps(read), read)
  })
})

/**
 * Post-processing of the JavaScript glue jco generates for a component: debug-log calls,
 * the per-call task bookkeeping of synchronous host calls ({@link leanHostCalls}) and a
 * write-only set of every resource ever made ({@link dropCreatedReps}) go.
 *
 * jco 1.35 calls
 * `_debugLog(message, { …arguments… })` about 130 times in its glue and on every host
 * call, building the argument objects first and only then checking `JCO_DEBUG`: in a
 * profile of a pooled hello brane that is a few per cent of the worker's time plus the
 * garbage it leaves. Omega never sets `JCO_DEBUG` for branes (their environment is
 * empty), so each such call is replaced by `void 0`: the same value, nothing built.
 */

/**
 * Walks the code of `src` from `start`, skipping comments, strings, templates and
 * regular expressions: `visit` sees the index of each code character and returns where
 * to go on (the next character when undefined), or -1 to stop
 */
function walkCode (src: string, start: number, visit: (i: number) => number | undefined): void {
  let previous = ''
  let i = start
  while (i < src.length) {
    const literal = skipLiteral(src, i, previous)
    if (literal !== -1) {
      i = literal
      previous = 'x'
      continue
    }
    const next = visit(i) ?? i + 1
    if (next === -1) {
      return
    }
    const last = src[next - 1] as string
    if (!/\s/.test(last)) {
      previous = last
    }
    i = next
  }
}

/** The index just past the bracket that closes the one at `open`, or -1 if the text ends first */
function closeParen (src: string, open: number): number {
  let depth = 0
  let end = -1
  walkCode(src, open, (i) => {
    const c = src[i]
    if (c === '(' || c === '{' || c === '[') {
      depth++
    } else if ((c === ')' || c === '}' || c === ']') && --depth === 0) {
      end = i + 1
      return -1
    }
    return undefined
  })
  return end
}

function skipString (src: string, start: number, quote: string): number {
  let i = start + 1
  while (i < src.length && src[i] !== quote) {
    i += src[i] === '\\' ? 2 : 1
  }
  return i + 1
}

/** Past the template literal at `start`, its `${…}` parts included */
function skipTemplate (src: string, start: number): number {
  let i = start + 1
  while (i < src.length && src[i] !== '`') {
    if (src[i] === '\\') {
      i += 2
    } else if (src[i] === '$' && src[i + 1] === '{') {
      const end = closeParen(src, i + 1)
      if (end === -1) {
        return src.length
      }
      i = end
    } else {
      i++
    }
  }
  return i + 1
}

/**
 * Where the comment, string, template or regular expression literal starting at `i`
 * ends, or -1 when none starts there
 */
function skipLiteral (src: string, i: number, previous: string): number {
  const c = src[i]
  if (c === '"' || c === "'") {
    return skipString(src, i, c)
  }
  if (c === '`') {
    return skipTemplate(src, i)
  }
  if (c === '/' && src[i + 1] === '/') {
    const end = src.indexOf('\n', i)
    return end === -1 ? src.length : end
  }
  if (c === '/' && src[i + 1] === '*') {
    const end = src.indexOf('*/', i + 2)
    return end === -1 ? src.length : end + 2
  }
  if (c === '/' && (previous === '' || '(,=:[!&|?{};+-*%<>~^'.includes(previous))) {
    // a regular expression literal: to the closing slash outside a character class
    let j = i + 1
    let inClass = false
    while (j < src.length && src[j] !== '\n') {
      const d = src[j]
      if (d === '\\') {
        j += 2
        continue
      }
      if (d === '[') {
        inClass = true
      } else if (d === ']') {
        inClass = false
      } else if (d === '/' && !inClass) {
        return j + 1
      }
      j++
    }
  }
  return -1
}

/**
 * `src` with every call of the function `name` (in code, not in comments or strings)
 * replaced by `void 0`. Returns `src` unchanged when a call cannot be delimited (the
 * glue is then used as jco wrote it).
 */
export function stripCalls (src: string, name = '_debugLog'): string {
  const call = `${name}(`
  let out = ''
  let from = 0
  let broken = false
  walkCode(src, 0, (i) => {
    if (src[i] !== call[0] || !src.startsWith(call, i) || /[\w$.#]/.test(src[i - 1] ?? '')) {
      return undefined
    }
    const end = closeParen(src, i + name.length)
    if (end === -1) {
      broken = true
      return -1
    }
    out += src.slice(from, i) + 'void 0'
    from = end
    return end
  })
  return broken ? src : out + src.slice(from)
}

/**
 * `src` without the writes to `_createdReps`, a set on each handle table into which jco
 * 0.15 adds every resource rep ever created and which nothing reads: for a pooled
 * instance, a leak of a few entries per call (millions over a day) and a cost on each.
 * Unchanged when anything but those writes and the sets' creation mentions the name.
 */
export function dropCreatedReps (src: string): string {
  const mentions = src.match(/_createdReps/g)?.length ?? 0
  const adds = src.match(/\b\w+\._createdReps\.add\(\w+\);/g)?.length ?? 0
  const inits = src.match(/\b\w+\._createdReps = new Set\(\);/g)?.length ?? 0
  if (adds === 0 || mentions !== adds + inits) {
    return src
  }
  return src.replace(/\b\w+\._createdReps\.add\(\w+\);/g, '')
}

/** Module-level helpers the lean host calls use (prepended to the glue once) */
const LEAN_PRELUDE = `// omega: synchronous host calls without jco's per-call task bookkeeping (glue.ts)
const _omegaHostTask = { enterSync () { return true }, resolve () {}, reject () {}, exit () {}, setErrored () {}, componentIdx () { return -1 }, id () { return 0 } };
function _omegaWithTaskMeta (args) { return args.fn() }
`

/** The opening of a host-call trampoline's body, and of the task bookkeeping in it */
const TRAMPOLINE = /const (_trampoline\d+) = function\s*\(/y
const TASK_OPENING = /let parentTask;\s*let task;\s*let subtask;\s*const createTask = \(\) => \{/y

/**
 * `src` with jco's per-call bookkeeping of synchronous host calls removed. jco-transpile
 * 0.15 runs every import a component calls through `_lowerImportBackwardsCompat`,
 * which makes a subtask, and a trampoline, which makes a task, links it to that
 * subtask, sets the current-task meta around the host function and resolves both:
 * machinery of the component model's async ABI (WASI 0.3) that a synchronous import
 * of a 0.2 component only pays for (about half a pooled hello's time in its worker).
 *
 * A trampoline is made lean only when it is exactly that shape: the bookkeeping block,
 * then `task.enterSync()`, no other use of its subtask, no `await`; and its import is
 * bound, outside the JSPI branch, with `isAsync: false` and `funcTypeIsAsync: false`:
 * that binding becomes the trampoline itself (the wrapper's lowering descriptors, built
 * at each instantiation, were only read on the async paths). The host function,
 * argument lifting, result lowering, borrow release and trap handling stay as jco
 * wrote them, in the trampoline. Everything else is left alone; `src` is returned
 * unchanged when nothing qualifies.
 */
export function leanHostCalls (src: string): string {
  // 1. trampolines of the synchronous shape: their bodies, rewritten
  const bodies = new Map<string, { start: number, end: number, text: string }>()
  walkCode(src, 0, (i) => {
    TRAMPOLINE.lastIndex = i
    const match = src[i] === 'c' ? TRAMPOLINE.exec(src) : null
    if (match === null) {
      return undefined
    }
    const params = closeParen(src, i + match[0].length - 1)
    const open = params === -1 ? -1 : src.indexOf('{', params)
    const end = open === -1 ? -1 : closeParen(src, open)
    if (end === -1) {
      return -1
    }
    const lean = leanTrampoline(src.slice(open, end))
    if (lean !== undefined) {
      bodies.set(match[1] as string, { start: open, end, text: lean })
    }
    return end
  })
  if (bodies.size === 0) {
    return src
  }
  // 2. their bindings: synchronous, outside the JSPI (WebAssembly.Suspending) branch
  const bindings = new Map<string, { start: number, end: number }>()
  const BIND = ': _lowerImportBackwardsCompat.bind('
  for (let at = src.indexOf(BIND); at !== -1; at = src.indexOf(BIND, at + BIND.length)) {
    const end = closeParen(src, at + BIND.length - 1)
    if (end === -1) {
      return src
    }
    const args = src.slice(at, end)
    const target = /importFn:\s*(_trampoline\d+)\s*,/.exec(args)?.[1]
    if (target !== undefined && bodies.has(target) && /\bisAsync:\s*false\s*,/.test(args) && /\bfuncTypeIsAsync:\s*false\s*,/.test(args)) {
      bindings.set(target, { start: at + 2, end })
    }
  }
  // 3. rewrite the pairs found whole, back to front so that earlier indices hold
  const edits: Array<{ start: number, end: number, text: string }> = []
  for (const [name, body] of bodies) {
    const bind = bindings.get(name)
    if (bind !== undefined) {
      // the import is the trampoline itself: no bound wrapper, no lowering descriptors
      // built at each instantiation for a wrapper that would only call it
      edits.push(body, { ...bind, text: name })
    }
  }
  if (edits.length === 0) {
    return src
  }
  edits.sort((a, b) => b.start - a.start)
  let out = src
  for (const edit of edits) {
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end)
  }
  return LEAN_PRELUDE + out
}

/** The body of one trampoline without its task bookkeeping, or undefined when it is not of the synchronous shape */
function leanTrampoline (body: string): string | undefined {
  const from = body.search(/let parentTask;/)
  if (from === -1 || /\bawait\b|\basync\b/.test(body)) {
    return undefined
  }
  TASK_OPENING.lastIndex = from
  const opening = TASK_OPENING.exec(body)
  if (opening === null) {
    return undefined
  }
  // `const createTask = () => { … };` then `taskCreation: { … }` then `const started = task.enterSync();`
  const createEnd = closeParen(body, from + opening[0].length - 1)
  const label = createEnd === -1 ? -1 : body.indexOf('taskCreation: {', createEnd)
  if (label === -1 || !/^;\s*$/.test(body.slice(createEnd, label))) {
    return undefined
  }
  const blockEnd = closeParen(body, label + 'taskCreation: '.length)
  const started = /\s*const started = task\.enterSync\(\);/y
  started.lastIndex = blockEnd
  if (blockEnd === -1 || started.exec(body) === null) {
    return undefined
  }
  const rest = body.slice(started.lastIndex)
  if (/\b(subtask|parentTask|createTask|started)\b/.test(rest)) {
    return undefined
  }
  return body.slice(0, from) + 'const task = _omegaHostTask;' + rest.replaceAll('_withGlobalCurrentTaskMeta({', '_omegaWithTaskMeta({')
}

/**
 * Post-processing of the JavaScript glue jco generates for a component. jco 1.35 calls
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

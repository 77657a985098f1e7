/**
 * Bounds on manifest text, checked in one linear pass before any parser sees it: the
 * parsers recurse per nesting level and the locator's work grows with the square of a
 * key path's length, so a small hostile file could otherwise exhaust the stack or the
 * heap. Each bound is a ManifestError with the file, line and column, in well under a
 * second whatever the input.
 */
import { ManifestError } from '../errors.ts'
import type { ManifestFormat } from './parse.ts'

export const MANIFEST_LIMITS = {
  /** bytes of the file */
  maxBytes: 1024 * 1024,
  /** nested arrays and tables (inline or flow) */
  maxDepth: 32,
  /** parts of one dotted key or table header: `[a.b.c]` has 3 */
  maxKeyParts: 16,
  /** characters of one quoted string */
  maxStringChars: 64 * 1024,
  /** branes of one manifest */
  maxBranes: 1000,
  /** edges of one manifest */
  maxEdges: 10_000,
  /** YAML aliases expanded while reading the document */
  maxYamlAliases: 100
} as const

function limitError (file: string, line: number, column: number, message: string): ManifestError {
  return new ManifestError(`Cannot parse manifest ${file}:${line}:${column}: ${message}`, [{ file, path: '', message, severity: 'error', line, column }])
}

/**
 * @throws ManifestError at the first place `text` passes a bound: size, nesting depth,
 * key path length (TOML), or the length of a quoted string
 */
export function checkManifestBounds (text: string, file: string, format: ManifestFormat): void {
  const bytes = Buffer.byteLength(text)
  if (bytes > MANIFEST_LIMITS.maxBytes) {
    throw limitError(file, 1, 1, `the file holds ${bytes} bytes, more than a manifest may (${MANIFEST_LIMITS.maxBytes})`)
  }
  const toml = format === 'toml'
  const yaml = format === 'yaml'
  let line = 1
  let lineStart = 0
  let depth = 0
  /** dots since the last delimiter, outside strings (TOML key paths) */
  let dots = 0
  let i = 0
  const n = text.length
  const at = (offset: number): [number, number] => [line, offset - lineStart + 1]
  while (i < n) {
    const c = text.charCodeAt(i)
    if (c === 10) { // \n
      line++
      lineStart = i + 1
      dots = 0
      i++
      continue
    }
    // comments: to the end of the line (YAML: only after a space or at a line's start)
    if (c === 35 && (toml || (yaml && (i === lineStart || text.charCodeAt(i - 1) === 32 || text.charCodeAt(i - 1) === 9)))) { // #
      const end = text.indexOf('\n', i)
      i = end === -1 ? n : end
      continue
    }
    if ((c === 34 || (c === 39 && (toml || yaml))) && (!yaml || startsScalar(text, i, lineStart))) { // " or '
      const triple = toml && text.startsWith(c === 34 ? '"""' : "'''", i)
      const quote = triple ? (c === 34 ? '"""' : "'''") : String.fromCharCode(c)
      const [sl, sc] = at(i)
      let j = i + quote.length
      let end = -1
      while (j < n) {
        const d = text.charCodeAt(j)
        if (d === 92 && c === 34) { // a backslash escapes the next character in "…"
          j += 2
          continue
        }
        if (d === 10) {
          if (!triple && !yaml) {
            break // a one-line string ends at the line: the parser will say what is wrong
          }
          line++
          lineStart = j + 1
        }
        if (text.startsWith(quote, j)) {
          end = j
          break
        }
        j++
      }
      const stop = end === -1 ? j : end
      if (stop - i > MANIFEST_LIMITS.maxStringChars) {
        throw limitError(file, sl, sc, `a string of more than ${MANIFEST_LIMITS.maxStringChars} characters (a manifest names files; it does not hold them)`)
      }
      i = end === -1 ? j : end + quote.length
      continue
    }
    if (c === 91 || c === 123) { // [ {
      depth++
      dots = 0
      if (depth > MANIFEST_LIMITS.maxDepth) {
        const [l, col] = at(i)
        throw limitError(file, l, col, `arrays and tables are nested more than ${MANIFEST_LIMITS.maxDepth} deep`)
      }
    } else if (c === 93 || c === 125) { // ] }
      depth = Math.max(0, depth - 1)
      dots = 0
    } else if (c === 44 || c === 61) { // , =
      dots = 0
    } else if (c === 46 && toml) { // .
      dots++
      if (dots >= MANIFEST_LIMITS.maxKeyParts) {
        const [l, col] = at(i)
        throw limitError(file, l, col, `a key path of more than ${MANIFEST_LIMITS.maxKeyParts} dotted parts`)
      }
    }
    i++
  }
}

/** YAML: whether a quote at `i` opens a quoted scalar (not an apostrophe inside a plain one) */
function startsScalar (text: string, i: number, lineStart: number): boolean {
  for (let j = i - 1; j >= lineStart; j--) {
    const c = text[j]
    if (c !== ' ' && c !== '\t') {
      return c === ':' || c === '-' || c === '[' || c === '{' || c === ',' || c === '?'
    }
  }
  return true
}

/**
 * Manifest text → plain data, plus a locator that maps a key path back to a line and
 * column of the source, so every later error can say where it is.
 */
import { parseTOML, getStaticTOMLValue, ParseError as TomlParseError, type AST } from 'toml-eslint-parser'
import { createRequire } from 'node:module'
import type { Document, LineCounter, Node as YamlNode } from 'yaml'
import { ManifestError, type ManifestIssue } from '../errors.ts'
import { checkManifestBounds, MANIFEST_LIMITS } from './limits.ts'

export type ManifestFormat = 'toml' | 'json' | 'yaml'
export type KeyPath = ReadonlyArray<string | number>

export interface SourcePosition {
  /** 1-based */
  readonly line: number
  /** 1-based */
  readonly column: number
}

export interface ParsedManifest {
  readonly file: string
  readonly format: ManifestFormat
  readonly data: unknown
  /** the position of a key path, or of its nearest located ancestor (1:1 for the document) */
  locate: (path: KeyPath) => SourcePosition
}

/** The format of a manifest file, by its extension (TOML when unknown) */
export function formatOf (file: string): ManifestFormat {
  const lower = file.toLowerCase()
  if (lower.endsWith('.json')) {
    return 'json'
  }
  if (lower.endsWith('.yaml') || lower.endsWith('.yml')) {
    return 'yaml'
  }
  return 'toml'
}

/**
 * Parse manifest text. Syntax errors throw a `ManifestError` whose single issue carries
 * the line and column.
 */
export function parseManifestText (text: string, file: string, format: ManifestFormat = formatOf(file)): ParsedManifest {
  checkManifestBounds(text, file, format)
  try {
    switch (format) {
      case 'toml': return parseToml(text, file)
      case 'json': return parseJson(text, file)
      case 'yaml': return parseYaml(text, file)
    }
  } catch (err) {
    // a backstop behind the bounds: whatever still exhausts a parser is the manifest's fault
    if (err instanceof RangeError) {
      throw syntaxError(file, format.toUpperCase(), `the document is too deeply nested or too large to read (${err.message})`, undefined, err)
    }
    throw err
  }
}

/** The `\u0000`-joined form of a key path, used as a map key */
function keyOf (path: KeyPath): string {
  return path.join('\u0000')
}

function locator (positions: Map<string, SourcePosition>): (path: KeyPath) => SourcePosition {
  return (path) => {
    for (let n = path.length; n >= 0; n--) {
      const found = positions.get(keyOf(path.slice(0, n)))
      if (found !== undefined) {
        return found
      }
    }
    // the document itself starts at the top
    return { line: 1, column: 1 }
  }
}

function syntaxError (file: string, format: string, message: string, position?: SourcePosition, cause?: unknown): ManifestError {
  const where = position === undefined ? '' : `:${position.line}:${position.column}`
  const issue: ManifestIssue = { file, path: '', message, severity: 'error', ...position }
  return new ManifestError(`Cannot parse ${format} manifest ${file}${where}: ${message}`, [issue], { cause })
}

function parseToml (text: string, file: string): ParsedManifest {
  let ast: AST.TOMLProgram
  try {
    ast = parseTOML(text, { tomlVersion: '1.0.0' })
  } catch (err) {
    if (err instanceof TomlParseError) {
      const message = err.message === DUPLICATE ? explainDuplicate(text, err.lineNumber) ?? tomlMessage(err.message) : tomlMessage(err.message)
      return throwing(syntaxError(file, 'TOML', message, { line: err.lineNumber, column: err.column + 1 }, err))
    }
    throw err
  }
  const positions = new Map<string, SourcePosition>()
  const remember = (path: KeyPath, node: AST.HasLocs): void => {
    const key = keyOf(path)
    if (!positions.has(key)) {
      positions.set(key, { line: node.loc.start.line, column: node.loc.start.column + 1 })
    }
  }
  const visitKeyValue = (prefix: KeyPath, kv: AST.TOMLKeyValue): void => {
    const path = [...prefix]
    for (const part of kv.key.keys) {
      path.push(part.type === 'TOMLBare' ? part.name : part.value)
      remember(path, part)
    }
    visitValue(path, kv.value)
  }
  const visitValue = (path: KeyPath, value: AST.TOMLContentNode): void => {
    if (value.type === 'TOMLInlineTable') {
      for (const kv of value.body) {
        visitKeyValue(path, kv)
      }
    } else if (value.type === 'TOMLArray') {
      value.elements.forEach((element, index) => {
        remember([...path, index], element)
        visitValue([...path, index], element)
      })
    }
  }
  const top = ast.body[0]
  for (const item of top.body) {
    if (item.type === 'TOMLKeyValue') {
      visitKeyValue([], item)
      continue
    }
    // Record every prefix of a header, so [brane.api.limits] also locates brane.api
    const resolved = item.resolvedKey
    for (let n = 1; n <= resolved.length; n++) {
      remember(resolved.slice(0, n), item.key)
    }
    for (const kv of item.body) {
      visitKeyValue(resolved, kv)
    }
  }
  return { file, format: 'toml', data: normaliseToml(getStaticTOMLValue(ast)), locate: locator(positions) }
}

const DUPLICATE = 'Defining a key multiple times is invalid'

/** toml-eslint-parser's messages are terse; say what was expected where we can */
function tomlMessage (message: string): string {
  if (message === DUPLICATE) {
    return 'a key or table is defined twice (TOML allows each once)'
  }
  if (message === 'Unspecified values are invalid') {
    return 'missing value after "=": expected a value'
  }
  return message.charAt(0).toLowerCase() + message.slice(1)
}

/**
 * A key or table defined twice, said with both places (the parser names only the
 * second): `brane.fetch.capability is defined twice: line 3 sets it (capability =
 * "standard"), line 5 opens it as a table ([brane.fetch.capability])`, and the fix
 * where the cause is known (a profile string beside a capability table, as the Gaia
 * seed's manifest has). Undefined when the lines do not say.
 */
function explainDuplicate (text: string, line: number): string | undefined {
  const lines = text.split('\n', line)
  let section: string[] = []
  const defined = new Map<string, { line: number, how: 'set' | 'table', source: string }>()
  for (let i = 0; i < lines.length; i++) {
    const source = (lines[i] ?? '').trim()
    const header = /^\[(?!\[)(.*)\]\s*(#.*)?$/.exec(source)
    let path: string[] | undefined
    let how: 'set' | 'table'
    if (header !== null) {
      path = splitKey(header[1] ?? '')
      how = 'table'
      if (path !== undefined) {
        section = path
      }
    } else {
      const assignment = /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/.exec(source)
      const key = assignment === null ? undefined : splitKey(assignment[1] ?? '')
      path = key === undefined ? undefined : [...section, ...key]
      how = 'set'
    }
    if (path === undefined) {
      continue
    }
    const name = path.join('.')
    const earlier = defined.get(name)
    if (i + 1 === line && earlier !== undefined) {
      const said = (d: { line: number, how: string, source: string }): string => `line ${d.line} ${d.how === 'set' ? 'sets it' : 'opens it as a table'} (${d.source})`
      let message = `${name} is defined twice: ${said(earlier)}, ${said({ line: i + 1, how, source })}; TOML allows each key or table once`
      const profile = /=\s*"(standard|frontier)"/.exec(earlier.source)?.[1]
      if (path.at(-1) === 'capability' && earlier.how === 'set' && how === 'table' && profile !== undefined) {
        message += `. The string names the brane's profile and the table its grants: write profile = "${profile}" inside [${name}] instead of line ${earlier.line}, or drop line ${earlier.line} (the profile defaults to "standard")`
      }
      return message
    }
    if (earlier === undefined) {
      defined.set(name, { line: i + 1, how, source })
    }
  }
  return undefined
}

/** The parts of a dotted TOML key (bare or quoted), or undefined when it is not one */
function splitKey (key: string): string[] | undefined {
  const parts: string[] = []
  const part = /\s*(?:([A-Za-z0-9_-]+)|"([^"]*)"|'([^']*)')\s*(\.|$)/y
  while (part.lastIndex < key.length) {
    const at = part.lastIndex
    const match = part.exec(key)
    if (match === null || part.lastIndex === at) {
      return undefined
    }
    parts.push(match[1] ?? match[2] ?? match[3] ?? '')
    if (match[4] === '') {
      break
    }
  }
  return parts.length === 0 ? undefined : parts
}

/** TOML integers beyond 2^53 come back as bigint, dates as Date: keep JSON's value space */
function normaliseToml (value: unknown): unknown {
  if (typeof value === 'bigint') {
    return Number(value)
  }
  if (value instanceof Date) {
    return value.toISOString()
  }
  if (Array.isArray(value)) {
    return value.map(normaliseToml)
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      out[k] = normaliseToml(v)
    }
    return out
  }
  return value
}

function parseJson (text: string, file: string): ParsedManifest {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    const match = /at position (\d+)/.exec(err instanceof Error ? err.message : '')
    const position = match?.[1] === undefined ? positionOfOffset(text, text.length) : positionOfOffset(text, Number(match[1]))
    const reason = (err instanceof Error ? err.message : String(err)).replace(/ in JSON at position \d+.*$/, '')
    return throwing(syntaxError(file, 'JSON', reason.charAt(0).toLowerCase() + reason.slice(1), position, err))
  }
  // JSON is YAML 1.2: reuse the YAML locator for positions
  return { file, format: 'json', data, locate: yamlLocator(text).locate }
}

function parseYaml (text: string, file: string): ParsedManifest {
  const { doc, locate, lineCounter } = yamlLocator(text)
  const first = doc.errors[0]
  if (first !== undefined) {
    const pos = lineCounter.linePos(first.pos[0])
    const message = first.message.split('\n')[0] ?? first.message
    return throwing(syntaxError(file, 'YAML', message.charAt(0).toLowerCase() + message.slice(1), { line: pos.line, column: pos.col }, first))
  }
  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: MANIFEST_LIMITS.maxYamlAliases })
  } catch (err) {
    // the document parsed, but building its value failed: too many or unresolved aliases
    const alias = /(^|[\s,[{:-])\*[^\s,\]}]/m.exec(text)
    const position = alias === null ? undefined : positionOfOffset(text, alias.index + alias[1]!.length)
    const message = err instanceof Error && /alias count/i.test(err.message)
      ? `aliases expand to more than ${MANIFEST_LIMITS.maxYamlAliases} nodes (a "billion laughs" document)`
      : `cannot build the document: ${err instanceof Error ? err.message.charAt(0).toLowerCase() + err.message.slice(1) : String(err)}`
    throw syntaxError(file, 'YAML', message, position, err)
  }
  return { file, format: 'yaml', data, locate }
}

/** The yaml package, loaded the first time a YAML manifest is read (most are TOML) */
let yamlModule: typeof import('yaml') | undefined
function yaml (): typeof import('yaml') {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml')
  return yamlModule
}

function yamlLocator (text: string): { doc: Document.Parsed, lineCounter: LineCounter, locate: (path: KeyPath) => SourcePosition } {
  const { LineCounter, parseDocument, isMap, isSeq, isPair, isScalar } = yaml()
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const positions = new Map<string, SourcePosition>()
  const at = (offset: number): SourcePosition => {
    const pos = lineCounter.linePos(offset)
    return { line: pos.line, column: pos.col }
  }
  const visit = (path: KeyPath, node: unknown): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) {
          continue
        }
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key)
        const childPath = [...path, key]
        const keyNode = pair.key as YamlNode | null
        if (keyNode?.range != null) {
          positions.set(keyOf(childPath), at(keyNode.range[0]))
        }
        visit(childPath, pair.value)
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => {
        const childPath = [...path, index]
        const itemNode = item as YamlNode | null
        if (itemNode?.range != null) {
          positions.set(keyOf(childPath), at(itemNode.range[0]))
        }
        visit(childPath, item)
      })
    }
  }
  visit([], doc.contents)
  return { doc, lineCounter, locate: locator(positions) }
}

function positionOfOffset (text: string, offset: number): SourcePosition {
  let line = 1
  let lineStart = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, column: offset - lineStart + 1 }
}

function throwing (err: Error): never {
  throw err
}

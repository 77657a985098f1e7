// The dashboard page: one EventSource to the node (`/api/events`), a state a second and
// log lines as they come; every view is drawn from the latest state, cells that changed
// flash. No framework, nothing loaded from anywhere but the node.

const $ = (selector, root = document) => root.querySelector(selector)
const SVG = 'http://www.w3.org/2000/svg'
const MAX_LOG_LINES = 1000

let previous
let selectedBrane
let lastState

// ---- helpers ---------------------------------------------------------------------------

/** An element with attributes and children (strings become text: never parsed as HTML) */
function el (tag, attrs = {}, ...children) {
  const node = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue
    if (key === 'onclick') node.addEventListener('click', value)
    else node.setAttribute(key, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue
    node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child)
  }
  return node
}

function ms (value) {
  if (value === undefined) return '—'
  return value >= 100 ? `${value.toFixed(0)} ms` : value >= 10 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`
}

function bytes (value) {
  if (value === undefined) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let n = value
  let unit = 0
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024
    unit++
  }
  return `${n.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}

function rate (value) {
  if (value >= 1000) return `${(value / 1000).toFixed(1)} K/s`
  return `${value.toFixed(value < 10 ? 1 : 0)}/s`
}

function age (since, now) {
  const s = Math.max(0, Math.round((now - since) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

function pair (summary, format) {
  return summary === undefined ? '—' : `${format(summary.p50)} / ${format(summary.p99)}`
}

function shortDid (did) {
  return did.length > 24 ? `${did.slice(0, 14)}…${did.slice(-6)}` : did
}

/**
 * Replace a table body's rows; a cell whose text differs from the row with the same key
 * before flashes
 */
function fillRows (tbody, rows) {
  const before = new Map([...tbody.rows].map((tr) => [tr.dataset.key, [...tr.cells].map((td) => td.textContent)]))
  const fresh = rows.map(({ key, cells, attrs = {} }) => {
    const tr = el('tr', { 'data-key': key, ...attrs }, cells.map((cell) => cell instanceof Node ? el('td', {}, cell) : el('td', typeof cell === 'object' && cell !== null ? cell.attrs : {}, typeof cell === 'object' && cell !== null ? cell.text : String(cell))))
    const old = before.get(key)
    if (old !== undefined && previous !== undefined) {
      // a clock cell (an age) changes every second: it does not flash
      ;[...tr.cells].forEach((td, i) => { if (old[i] !== td.textContent && !td.classList.contains('clock')) td.classList.add('changed') })
    }
    return tr
  })
  tbody.replaceChildren(...fresh)
}

// ---- views -----------------------------------------------------------------------------

function drawNode (state) {
  $('#node-name').textContent = state.node.name
  $('#node-info').textContent = `${state.node.mode} · ${shortDid(state.node.did)} · gateway ${state.node.gateway} · up since ${new Date(state.node.startedAt).toLocaleString()}`
}

function drawPeers (state) {
  fillRows($('#peers tbody'), state.peers.map((p) => ({
    key: p.did,
    attrs: { 'data-name': p.name, 'data-status': p.status },
    cells: [
      { text: p.status === 'HEAD' || p.status === 'HEAL' ? '●' : '◯', attrs: { class: `mark status-${p.status}` } },
      `${p.name}${p.self ? ' (this node)' : ''}`,
      { text: p.status, attrs: { class: `status status-${p.status}` } },
      p.rttMs === undefined ? '—' : ms(p.rttMs),
      p.load === undefined ? '—' : p.load.toFixed(2),
      `${p.edgesIn} / ${p.edgesOut}`,
      p.branes.join(', ') || '—'
    ]
  })))
}

/** Columns by depth in the graph (longest path from a brane nothing sends to) */
function layout (branes, edges) {
  const depth = new Map(branes.map((b) => [b.name, 0]))
  for (let round = 0; round < branes.length; round++) {
    let moved = false
    for (const e of edges) {
      const next = (depth.get(e.from) ?? 0) + 1
      if (depth.has(e.to) && next > depth.get(e.to) && next < branes.length) {
        depth.set(e.to, next)
        moved = true
      }
    }
    if (!moved) break
  }
  const columns = []
  for (const b of branes) {
    const d = depth.get(b.name)
    ;(columns[d] ??= []).push(b)
  }
  const W = 170
  const H = 64
  const GAP_X = 130
  const GAP_Y = 26
  const at = new Map()
  columns.forEach((column, x) => column.forEach((b, y) => at.set(b.name, { x: 10 + x * (W + GAP_X), y: 10 + y * (H + GAP_Y), w: W, h: H })))
  const width = 20 + columns.length * (W + GAP_X) - GAP_X
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GAP_Y) - GAP_Y
  return { at, width, height }
}

function drawGraph (state) {
  const svg = $('#graph')
  const { at, width, height } = layout(state.branes, state.edges)
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`)
  svg.setAttribute('width', width)
  svg.setAttribute('height', height)
  const defs = el('svg:defs', {}, el('svg:marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, el('svg:path', { d: 'M 0 0 L 10 5 L 0 10 z' })))
  const links = state.edges.map((e) => {
    const a = at.get(e.from)
    const b = at.get(e.to)
    if (a === undefined || b === undefined) return undefined
    const x1 = a.x + a.w
    const y1 = a.y + a.h / 2
    const x2 = b.x
    const y2 = b.y + b.h / 2
    const back = x2 <= x1
    const d = back
      ? `M ${a.x + a.w / 2} ${a.y + a.h} C ${a.x + a.w / 2} ${a.y + a.h + 40}, ${b.x + b.w / 2} ${b.y + b.h + 40}, ${b.x + b.w / 2} ${b.y + b.h}`
      : `M ${x1} ${y1} C ${x1 + 40} ${y1}, ${x2 - 40} ${y2}, ${x2} ${y2}`
    const cls = `link${e.rate > 0 ? ' busy' : ''}${e.failed > 0 && e.rate === 0 ? ' failing' : ''}`
    const label = `${rate(e.rate)}${e.backlog > 0 ? ` · ${e.backlog} queued` : ''}${e.failed > 0 ? ` · ${e.failed} failed` : ''}`
    const key = `${e.from}>${e.to}:${e.on}`
    return el('svg:g', { 'data-edge': key },
      el('svg:path', { class: cls, d, 'marker-end': 'url(#arrow)' }, el('svg:title', {}, `${key}: ${label}`)),
      el('svg:text', { class: 'rate', x: back ? (a.x + b.x + b.w) / 2 : (x1 + x2) / 2, y: back ? Math.max(a.y, b.y) + a.h + 34 : (y1 + y2) / 2 - 6, 'text-anchor': 'middle' }, `${e.on} ${label}`))
  })
  const nodes = state.branes.map((b) => {
    const p = at.get(b.name)
    return el('svg:g', { class: `node ${b.state}`, 'data-brane': b.name, transform: `translate(${p.x} ${p.y})` },
      el('svg:rect', { width: p.w, height: p.h }),
      el('svg:text', { x: 10, y: 20 }, b.name),
      el('svg:text', { class: 'sub', x: 10, y: 36 }, `${b.substrate} · ${b.profile} · ${b.lifecycle}`),
      el('svg:text', { class: 'sub', x: 10, y: 52 }, b.nodes.length === 0 ? b.state : `on ${b.nodes.join(', ')}`))
  })
  svg.replaceChildren(defs, ...links.filter(Boolean), ...nodes)
  fillRows($('#edges tbody'), state.edges.map((e) => ({
    key: `${e.from}>${e.to}:${e.on}`,
    attrs: { 'data-edge': `${e.from}>${e.to}:${e.on}` },
    cells: [`${e.from} → ${e.to}`, e.on, { text: rate(e.rate), attrs: { class: 'num rate' } }, { text: e.acked, attrs: { class: 'num' } }, { text: e.backlog, attrs: { class: 'num' } }, { text: e.failed, attrs: { class: 'num' } }]
  })))
}

function drawBranes (state) {
  fillRows($('#branes tbody'), state.branes.map((b) => ({
    key: b.name,
    attrs: { 'data-brane': b.name, class: b.name === selectedBrane ? 'selected' : undefined },
    cells: [
      b.name,
      b.reason === undefined ? b.state : `${b.state}: ${b.reason.split('\n')[0]}`,
      b.nodes.join(', ') || '—',
      { text: b.stats.reqPerSec.toFixed(1), attrs: { class: 'num' } },
      pair(b.stats.cold, ms), pair(b.stats.exec, ms), pair(b.stats.cpu, ms), pair(b.stats.mem, bytes),
      { text: b.instances.length, attrs: { class: 'num' } }
    ]
  })))
  for (const tr of $('#branes tbody').rows) {
    tr.addEventListener('click', () => { selectBrane(tr.dataset.key) })
  }
  const names = state.branes.map((b) => b.name)
  const select = $('#log-brane')
  if ([...select.options].slice(1).map((o) => o.value).join() !== names.join()) {
    const chosen = select.value
    select.replaceChildren(el('option', { value: '' }, 'all branes'), ...names.map((n) => el('option', { value: n }, n)))
    select.value = names.includes(chosen) ? chosen : ''
  }
  drawInstances(state)
}

function selectBrane (name) {
  selectedBrane = selectedBrane === name ? undefined : name
  $('#log-brane').value = selectedBrane ?? ''
  redrawLogs()
  if (lastState !== undefined) drawBranes(lastState)
}

function drawInstances (state) {
  const detail = $('#brane-detail')
  const brane = state.branes.find((b) => b.name === selectedBrane)
  detail.hidden = brane === undefined
  if (brane === undefined) return
  $('.brane-name', detail).textContent = brane.name
  fillRows($('#instances tbody'), brane.instances.map((i) => ({
    key: i.id,
    cells: [i.id, brane.lifecycle, { text: age(i.since, state.at), attrs: { class: 'clock' } }, { text: `${age(i.last, state.at)} ago`, attrs: { class: 'clock' } }, { text: i.served, attrs: { class: 'num' } }]
  })))
}

function drawTraces (state) {
  const list = $('#traces')
  const shown = [...list.children].map((li) => li.dataset.trace).join()
  if (shown === state.traces.map((t) => t.traceId).join()) return
  list.replaceChildren(...state.traces.map((t) => el('li', { 'data-trace': t.traceId },
    el('button', { type: 'button', onclick: () => { openTrace(t.traceId).catch(showTraceError) } },
      `${new Date(t.at).toLocaleTimeString()}  ${t.topic}  ${t.source} → ${t.target}  …${t.traceId.slice(-12)}`))))
}

function drawSettlement (state) {
  const s = state.settlement
  $('#settlement-section').hidden = s === undefined
  if (s === undefined) return
  $('#receipt-head').textContent = s.head === undefined
    ? 'No receipt yet: the first is cut at the end of the first metered period.'
    : `Receipt chain head: #${s.head.seq} to ${new Date(s.head.to).toLocaleString()} · BLAKE3 ${s.head.digest.slice(0, 16)}… · this period so far:`
  fillRows($('#usage tbody'), s.pending.map((u) => ({
    key: `${u.brane} ${u.deployer}`,
    cells: [u.brane, shortDid(u.deployer), { text: u.invocations, attrs: { class: 'num' } }, { text: u.failures, attrs: { class: 'num' } }, { text: u.cpuMs.toFixed(1), attrs: { class: 'num' } }, { text: u.memMiBs.toFixed(1), attrs: { class: 'num' } }, `${bytes(u.bytesIn)} / ${bytes(u.bytesOut)}`]
  })))
}

function draw (state) {
  lastState = state
  drawNode(state)
  drawPeers(state)
  drawGraph(state)
  drawBranes(state)
  drawTraces(state)
  drawSettlement(state)
  previous = state
}

// ---- logs ------------------------------------------------------------------------------

const logLines = []

function logRow (line) {
  if (line.skipped !== undefined) return el('span', { class: 'skipped' }, `… ${line.skipped} lines not shown (too many a second)\n`)
  const time = new Date(line.time).toISOString().slice(11, 23)
  const stream = line.kind === 'stdout' || line.kind === 'stderr' ? `[${line.kind}] ` : ''
  return el('span', { class: line.level, 'data-brane': line.brane }, `${time} ${line.instance ?? line.brane} ${stream}${line.message}\n`)
}

function addLogs ({ lines, skipped }) {
  const fresh = skipped > 0 ? [...lines, { skipped }] : lines
  logLines.push(...fresh)
  if (logLines.length > MAX_LOG_LINES) logLines.splice(0, logLines.length - MAX_LOG_LINES)
  const filter = $('#log-brane').value
  const pre = $('#logs')
  pre.append(...fresh.filter((l) => filter === '' || l.brane === filter || l.skipped !== undefined).map(logRow))
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove()
  if ($('#follow').checked) pre.scrollTop = pre.scrollHeight
}

function redrawLogs () {
  const filter = $('#log-brane').value
  $('#logs').replaceChildren(...logLines.filter((l) => filter === '' || l.brane === filter || l.skipped !== undefined).map(logRow))
  if ($('#follow').checked) $('#logs').scrollTop = $('#logs').scrollHeight
}

// ---- traces ----------------------------------------------------------------------------

/** Canonical JSON, as the node signs it: keys sorted at every level, no whitespace */
function canonical (value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58 (text) {
  const bytes = [0]
  for (const c of text) {
    let carry = BASE58.indexOf(c)
    if (carry < 0) throw new Error(`not base58: ${c}`)
    for (let i = 0; i < bytes.length; i++) {
      carry += bytes[i] * 58
      bytes[i] = carry & 0xff
      carry >>= 8
    }
    for (; carry > 0; carry >>= 8) bytes.push(carry & 0xff)
  }
  for (const c of text) {
    if (c !== '1') break
    bytes.push(0)
  }
  return new Uint8Array(bytes.reverse())
}

function base64url (text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/')
  return Uint8Array.from(atob(b64 + '='.repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0))
}

/** Check the record's Ed25519 signature against its node's did:key, here in the page */
async function verifyRecord (record) {
  if (globalThis.crypto?.subtle === undefined) return { ok: undefined, why: 'this page is not a secure context: it cannot check signatures' }
  const did = record.node
  if (!did.startsWith('did:key:z')) return { ok: false, why: `not a did:key: ${did}` }
  const multikey = base58(did.slice('did:key:z'.length))
  if (multikey[0] !== 0xed || multikey[1] !== 0x01 || multikey.length !== 34) return { ok: false, why: 'not an Ed25519 did:key' }
  const { signature, ...unsigned } = record
  try {
    const key = await crypto.subtle.importKey('raw', multikey.slice(2), { name: 'Ed25519' }, false, ['verify'])
    const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, base64url(signature), new TextEncoder().encode(canonical(unsigned)))
    return { ok, why: ok ? `signature verified in this page against ${shortDid(did)}` : `the signature does not verify against ${did}` }
  } catch (err) {
    return { ok: undefined, why: `this browser cannot check Ed25519 signatures (${err.message})` }
  }
}

function showTraceError (err) {
  const verify = $('#trace .verify')
  verify.className = 'verify bad'
  verify.textContent = `cannot open the trace: ${err.message}`
}

async function openTrace (id) {
  const box = $('#trace')
  box.hidden = false
  $('.trace-id', box).textContent = id
  const verify = $('.verify', box)
  verify.className = 'verify'
  verify.textContent = 'loading…'
  const res = await fetch(`/api/trace?id=${encodeURIComponent(id)}`)
  const record = await res.json()
  if (!res.ok) {
    verify.textContent = record.message ?? `HTTP ${res.status}`
    return
  }
  box.dataset.trace = record.traceId
  const { ok, why } = await verifyRecord(record)
  verify.className = `verify ${ok === true ? 'ok verified' : ok === false ? 'bad' : ''}`
  verify.textContent = `${ok === true ? '✓' : ok === false ? '✗' : '?'} ${why} · ${record.count} hops · ${bytes(record.bytes)} · signed ${record.signedAt}`
  const hops = record.hops
  const start = record.startedAt
  const span = Math.max(1, record.endedAt - start)
  const W = 600
  const ROW = 22
  const svg = $('.timeline', box)
  svg.setAttribute('viewBox', `0 0 ${W + 10} ${hops.length * ROW + 10}`)
  svg.setAttribute('height', hops.length * ROW + 10)
  svg.replaceChildren(...hops.map((h, i) => {
    const x = 5 + ((h.startedAt - start) / span) * (W * 0.6)
    const w = Math.max(2, ((h.endedAt - h.startedAt) / span) * (W * 0.6))
    return el('svg:g', { class: 'hop' },
      el('svg:rect', { class: h.outcome === 'ok' ? '' : 'error', x, y: 5 + i * ROW, width: w, height: ROW - 6, rx: 3 }),
      el('svg:text', { x: x + w + 6, y: 5 + i * ROW + ROW - 10 }, `${h.node ?? ''} ${h.from} → ${h.to} ${(h.endedAt - h.startedAt).toFixed(1)} ms`))
  }))
  fillRows($('.hops tbody', box), hops.map((h, i) => ({
    key: String(i),
    attrs: { class: 'hop' },
    cells: [h.node ?? '—', `${h.from} → ${h.to}`, h.topic, `+${(h.startedAt - start).toFixed(1)} ms`, ms(h.endedAt - h.startedAt), { text: h.bytes, attrs: { class: 'num' } }, { text: h.attempt, attrs: { class: 'num' } }, h.outcome]
  })))
}

// ---- the stream ------------------------------------------------------------------------

function connect () {
  const live = $('#live')
  const source = new EventSource('/api/events')
  source.addEventListener('open', () => { live.dataset.state = 'live'; live.textContent = '● live' })
  source.addEventListener('error', () => {
    live.dataset.state = source.readyState === EventSource.CLOSED ? 'lost' : 'connecting'
    live.textContent = source.readyState === EventSource.CLOSED ? '◯ disconnected: reload to sign in again' : '◯ reconnecting…'
  })
  source.addEventListener('state', (event) => { draw(JSON.parse(event.data)) })
  source.addEventListener('logs', (event) => { addLogs(JSON.parse(event.data)) })
}

$('#log-brane').addEventListener('change', () => { selectedBrane = $('#log-brane').value || undefined; redrawLogs(); if (lastState !== undefined) drawBranes(lastState) })
connect()

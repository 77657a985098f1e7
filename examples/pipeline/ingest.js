// ingest: POST /ingest with a body emits it as one event on "raw.batch" and answers
// 202 with the event's id; the emit returns once the event is durably queued (and
// waits while the pipeline is behind: back-pressure reaches the client).
import { emit } from 'omega:brane/emit@0.1.0'
import { log } from 'omega:brane/log@0.1.0'

function json (value, status) {
  return new Response(JSON.stringify(value) + '\n', { status, headers: { 'content-type': 'application/json' } })
}

async function handle (request) {
  const url = new URL(request.url)
  if (url.pathname !== '/ingest') {
    return json({ error: 'not found' }, 404)
  }
  if (request.method !== 'POST') {
    return json({ error: 'use POST' }, 405)
  }
  const batch = new Uint8Array(await request.arrayBuffer())
  if (batch.length === 0) {
    return json({ error: 'empty batch' }, 400)
  }
  try {
    const id = emit('raw.batch', batch)
    log('info', `ingest: ${batch.length} bytes as ${id}`)
    return json({ id, bytes: batch.length }, 202)
  } catch (err) {
    // emit-error: { tag: 'unknown-topic' | 'unavailable' | 'too-large', val: message }
    const error = err?.payload ?? { tag: 'exception', val: String(err) }
    log('warn', `ingest: emit failed: ${error.tag}: ${error.val}`)
    return json({ error: error.tag, message: error.val }, error.tag === 'too-large' ? 413 : 503)
  }
}

addEventListener('fetch', (event) => { event.respondWith(handle(event.request)) })

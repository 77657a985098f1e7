// transform: each raw.batch becomes one tensor.shard: the batch's lines, trimmed,
// upper-cased and prefixed with a checksum (FNV-1a of the input), as text. The trace
// id of the incoming event carries over to the emit (the host does that).
import { emit } from 'omega:brane/emit@0.1.0'
import { log } from 'omega:brane/log@0.1.0'

const decoder = new TextDecoder()
const encoder = new TextEncoder()

function fnv1a (bytes) {
  let hash = 0x811c9dc5
  for (const byte of bytes) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash.toString(16).padStart(8, '0')
}

export const handler = {
  handle (event) {
    const lines = decoder.decode(event.payload).split('\n').map((line) => line.trim()).filter((line) => line !== '')
    if (lines.length === 0) {
      // handle-error.reject: dead-letter it, a retry would see the same payload
      throw { tag: 'reject', val: `event ${event.id} has no lines` }
    }
    const shard = `${fnv1a(event.payload)} ${lines.map((line) => line.toUpperCase()).join('|')}`
    try {
      const id = emit('tensor.shard', encoder.encode(shard))
      log('info', `transform: ${event.id} (attempt ${event.attempt}) -> ${id}`)
    } catch (err) {
      // unavailable: ask for the event again later; anything else is final
      const error = err?.payload ?? { tag: 'exception', val: String(err) }
      throw { tag: error.tag === 'unavailable' ? 'retry' : 'reject', val: `emit failed: ${error.tag}: ${error.val}` }
    }
  }
}

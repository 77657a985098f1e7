// train: the end of the pipeline. Logs each shard and counts shards and bytes for
// as long as its instance lives (lifecycle "pinned": one instance).
import { log } from 'omega:brane/log@0.1.0'

let shards = 0
let bytes = 0

export const handler = {
  handle (event) {
    shards += 1
    bytes += event.payload.length
    const text = new TextDecoder().decode(event.payload)
    log('info', `train: shard ${shards} from ${event.source} (trace ${event.traceId}): ${text}`)
    log('debug', `train: ${shards} shards, ${bytes} bytes so far`)
  }
}

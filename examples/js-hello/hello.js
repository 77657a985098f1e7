// An HTTP brane in JavaScript, served by pooled instances: it exports
// wasi:http/incoming-handler itself (the raw WASI bindings) instead of a `fetch` event
// listener, so one instance answers request after request. It counts the requests its
// instance has served, to show the reuse. Built by scripts/build-examples.js with
// componentize-js into examples/js-hello/hello.wasm.
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.10'

const encoder = new TextEncoder()
let served = 0

/** Answers `status` with a plain-text body */
function respond (responseOut, status, text) {
  const headers = new Fields()
  headers.append('content-type', encoder.encode('text/plain'))
  const response = new OutgoingResponse(headers)
  response.setStatusCode(status)
  const body = response.body()
  const stream = body.write()
  stream.blockingWriteAndFlush(encoder.encode(text))
  // the stream is a child of the body: it must be gone before the body finishes
  stream[Symbol.dispose]()
  OutgoingBody.finish(body, undefined)
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response })
}

export const incomingHandler = {
  handle (request, responseOut) {
    served++
    const method = request.method().tag.toUpperCase()
    const path = request.pathWithQuery() ?? '/'
    // resources are not garbage-collected: drop what is done with, or the instance grows
    request[Symbol.dispose]()
    respond(responseOut, 200, `hello from a JS brane: ${method} ${path} (request ${served} of this instance)\n`)
  }
}

// The workerd baseline of the gateway benchmark: one instance of hello-core.wasm,
// made when the worker loads and reused by every request (see bench/workerd.ts)
import hello from 'hello-core.wasm'

const instance = new WebAssembly.Instance(hello, {})
const { memory, answer } = instance.exports
const encoder = new TextEncoder()

export default {
  fetch (request) {
    const url = new URL(request.url)
    const path = encoder.encode(url.pathname + url.search)
    new Uint8Array(memory.buffer, 1024, path.length).set(path)
    const length = answer(1024, path.length)
    return new Response(new Uint8Array(memory.buffer, 4096, length).slice(), { headers: { 'content-type': 'text/plain' } })
  }
}

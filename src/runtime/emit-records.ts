/**
 * Emit records, the format a guest that has no omega:brane/emit import emits in: a
 * frontier guest writes them to file descriptor 3, a wasi:cli/run command brane with
 * `stdout = "emit"` to stdout. Each is `TOPIC LENGTH\n` followed by LENGTH bytes.
 */
/** One emit record: `TOPIC LENGTH\n` then LENGTH bytes */
export interface GuestEmit {
  readonly topic: string
  readonly payload: Buffer
}

/**
 * The records of `bytes`, in order.
 *
 * @param where - where they were written, for messages: `fd 3` (a frontier guest),
 * `stdout` (a wasi:cli/run command with `stdout = "emit"`)
 * @throws TypeError for a malformed record, saying which
 */
export function parseEmits (bytes: Buffer, where = 'fd 3'): GuestEmit[] {
  const out: GuestEmit[] = []
  let at = 0
  while (at < bytes.byteLength) {
    const nl = bytes.indexOf(0x0a, at)
    if (nl < 0 || nl - at > 512) {
      throw new TypeError(`Malformed emit record on ${where}: expected "TOPIC LENGTH\\n" then LENGTH bytes`)
    }
    const line = bytes.subarray(at, nl).toString('utf8')
    const match = /^(\S+) (\d+)$/.exec(line)
    if (match === null) {
      throw new TypeError(`Malformed emit record on ${where}: "${line.slice(0, 80)}" (expected "TOPIC LENGTH")`)
    }
    const length = Number(match[2])
    if (nl + 1 + length > bytes.byteLength) {
      throw new TypeError(`Malformed emit record on ${where}: topic "${match[1] ?? ''}" announces ${length} bytes, ${bytes.byteLength - nl - 1} follow`)
    }
    out.push({ topic: match[1] ?? '', payload: bytes.subarray(nl + 1, nl + 1 + length) })
    at = nl + 1 + length
  }
  return out
}

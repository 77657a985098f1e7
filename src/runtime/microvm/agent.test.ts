import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { decodeResult, encodeFrame, encodeRun, FrameReader, parseEmits, FRAME_PONG, FRAME_RUN } from './agent.ts'
import { parseCgi } from './frontier-brane.ts'
import { cpioNewc } from './image.ts'
import { kernelCmdline } from './qemu.ts'

describe('the guest agent protocol', () => {
  it('reassembles frames split anywhere in the byte stream', () => {
    const bytes = Buffer.concat([encodeFrame(FRAME_PONG, 7), encodeFrame(FRAME_RUN, 8, Buffer.from('payload'))])
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const reader = new FrameReader()
      const frames = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))]
      assert.deepEqual(frames.map((f) => [f.type, f.id, f.payload.toString()]), [[FRAME_PONG, 7, ''], [FRAME_RUN, 8, 'payload']])
    }
  })

  it('refuses a frame longer than the limit instead of buffering it', () => {
    const header = Buffer.alloc(12)
    header.writeUInt32BE(2 ** 31, 0)
    assert.throws(() => new FrameReader().push(header), { name: 'VmmError', message: /corrupt/ })
  })

  it('encodes the environment as NUL-ended entries and refuses ones that would break it', () => {
    const run = encodeRun({ env: { A: '1', B: 'x y' }, stdin: Buffer.from('in') })
    assert.equal(run.readUInt32BE(0), 'A=1\0B=x y\0'.length)
    assert.equal(run.subarray(4).toString(), 'A=1\0B=x y\0in')
    assert.throws(() => encodeRun({ env: { 'A=B': '1' }, stdin: Buffer.alloc(0) }), TypeError)
    assert.throws(() => encodeRun({ env: { A: 'x\0y' }, stdin: Buffer.alloc(0) }), TypeError)
  })

  it('decodes a result and checks that its lengths add up', () => {
    const head = Buffer.alloc(16)
    head.writeUInt32BE(3, 0)
    head.writeUInt32BE(2, 4)
    head.writeUInt32BE(1, 8)
    head.writeUInt32BE(0, 12)
    const r = decodeResult(Buffer.concat([head, Buffer.from('ok!')]))
    assert.deepEqual([r.status, r.stdout.toString(), r.stderr.toString(), r.emits.byteLength], [3, 'ok', '!', 0])
    assert.throws(() => decodeResult(Buffer.concat([head, Buffer.from('ok')])), { name: 'VmmError' })
  })

  it('parses emit records, binary payloads included, and rejects malformed ones', () => {
    const bin = Buffer.from([0, 10, 255])
    const records = Buffer.concat([Buffer.from('a.b 3\n'), bin, Buffer.from('c 0\n')])
    assert.deepEqual(parseEmits(records).map((e) => [e.topic, [...e.payload]]), [['a.b', [0, 10, 255]], ['c', []]])
    assert.throws(() => parseEmits(Buffer.from('topic 10\nshort')), /announces 10 bytes, 5 follow/)
    assert.throws(() => parseEmits(Buffer.from('no-length\n')), /expected "TOPIC LENGTH"/)
  })
})

describe('CGI-style replies', () => {
  it('takes the status and headers from a header block', () => {
    const r = parseCgi(Buffer.from('Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>gone</p>'))
    assert.equal(r.status, 404)
    assert.deepEqual(r.headers, [['content-type', 'text/html']])
    assert.equal(Buffer.from(r.body).toString(), '<p>gone</p>')
  })

  it('treats output without a header block as a plain 200 body', () => {
    const r = parseCgi(Buffer.from('just text: with a colon\n\nand more'))
    assert.equal(r.status, 200)
    assert.equal(Buffer.from(r.body).toString(), 'just text: with a colon\n\nand more')
  })
})

describe('the initramfs archive', () => {
  it('is a newc archive in sorted order with zero times and owners, whatever the input order', () => {
    const entries = [
      { path: 'b', mode: 0o100644, data: Buffer.from('bee') },
      { path: 'a', mode: 0o040755 }
    ]
    const one = cpioNewc(entries)
    assert.deepEqual(one, cpioNewc([...entries].reverse()))
    const text = one.toString('latin1')
    assert.ok(text.startsWith('070701'))
    assert.ok(text.indexOf('a\0') < text.indexOf('b\0'))
    assert.ok(text.includes('TRAILER!!!\0'))
    // mtime (8th field) is zero in every header
    for (const at of [...text.matchAll(/070701/g)].map((m) => m.index)) {
      assert.equal(text.slice(at + 6 + 5 * 8, at + 6 + 6 * 8), '00000000')
    }
    assert.equal(one.byteLength % 4, 0)
  })
})

describe('the guest kernel command line', () => {
  it('passes the host TSC frequency so the guest skips calibration', () => {
    const line = kernelCmdline(2_596_096, 'virtio-serial')
    assert.match(line, /tsc_early_khz=2596096 tsc=reliable lpj=10384384 no_timer_check/)
    assert.match(line, /rdinit=\/init/)
    // the agent opens the transport it is told, and exits (panic=-1: the VM stops) when it cannot
    assert.match(line, /panic=-1 .*omega\.transport=virtio-serial/)
    assert.match(kernelCmdline(2_596_096, 'vsock'), /omega\.transport=vsock/)
  })
})

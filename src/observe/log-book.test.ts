// The log book: records bounded per brane, and deferred records whose text is made only
// when somebody reads it (request and event lines at every call).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { DeferredRecord, LogBook, type RecordText } from './log-book.ts'

class Counted extends DeferredRecord {
  made = 0
  readonly #n: number

  constructor (brane: string, n: number) {
    super(brane, 'request', 'info', 1_000 + n)
    this.#n = n
  }

  get size (): number {
    return 10
  }

  protected text (): RecordText {
    this.made++
    return { message: `line ${this.#n}`, fields: { n: this.#n } }
  }
}

describe('log book', () => {
  it('makes a deferred record\'s text once, when it is read, and serialises it as a plain record', () => {
    const book = new LogBook()
    const record = new Counted('web', 7)
    book.append(record)
    assert.equal(record.made, 0, 'nothing is formatted while nobody reads')
    const [read] = book.query({ brane: 'web' })
    assert.equal(read, record)
    assert.equal(read?.seq, 1)
    assert.equal(read?.message, 'line 7')
    assert.deepEqual(JSON.parse(JSON.stringify(read)), { seq: 1, time: 1_007, brane: 'web', kind: 'request', level: 'info', message: 'line 7', fields: { n: 7 } })
    assert.equal(record.made, 1, 'made once, however often it is read')
  })

  it('hands deferred records to listeners, and bounds them by their size like any other record', () => {
    const book = new LogBook({}, { maxBytes: 35 })
    const heard: string[] = []
    book.subscribe((r) => { heard.push(r.message) })
    for (let n = 0; n < 5; n++) {
      book.append(new Counted('web', n))
    }
    book.append({ brane: 'web', kind: 'stdout', level: 'info', message: 'plain' })
    assert.deepEqual(heard, ['line 0', 'line 1', 'line 2', 'line 3', 'line 4', 'plain'])
    // 35 bytes: the plain line (5) and the three newest deferred ones (10 each)
    assert.deepEqual(book.query({ brane: 'web' }).map((r) => r.message), ['line 2', 'line 3', 'line 4', 'plain'])
  })
})

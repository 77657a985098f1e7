import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EventQueue, type QueuedEvent } from './index.ts'

function events (from: number, count: number): Array<{ event: QueuedEvent, targets: Array<{ edge: string, to: string, priority: number }> }> {
  return Array.from({ length: count }, (_, i) => {
    const id = `e:b3:${(from + i).toString(16).padStart(12, '0')}`
    return { event: { id, topic: 'e', source: 'a', payload: new Uint8Array(1000).fill(97), traceId: id, hops: [], createdAt: Date.now() }, targets: [{ edge: 'a/e->b', to: 'b', priority: 5 }] }
  })
}

async function until (check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const size = (file: string): number => statSync(file, { throwIfNoEntry: false })?.size ?? 0

/** Runs `check` with the path of a queue database in a fresh directory, removed afterwards */
async function inFreshDir (check: (path: string) => Promise<void> | void): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'omega-checkpoint-'))
  try {
    await check(join(dir, 'queue.db'))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('queue checkpoints', () => {
  it('copies the WAL into the database on its own thread, and keeps the WAL bounded while writes keep coming', async () => {
    await inFreshDir(async (path) => {
      const queue = new EventQueue({ path })
      // 60 transactions of 1 000 events of 1 KB (~1.6 MB of WAL each, ~100 MB in all), the
      // writer never more than about two ahead of the copy into the database file
      let round = 0
      let perRound = 0
      let largest = 0
      for (; round < 60; round++) {
        queue.enqueueMany(events(round * 1000, 1000))
        perRound ||= size(`${path}-wal`)
        largest = Math.max(largest, size(`${path}-wal`))
        await until(() => size(path) >= (round - 1) * perRound * 0.8, `round ${round}: the database file has the events of round ${round - 1}`)
      }
      // the writer itself never checkpoints (it would keep the WAL at ~4 MB by doing so):
      // the thread copies, and a WAL copied whole starts over, or is made to past 8 MiB
      // (plus what the writer adds before it hears so: ~20 MB at this rate)
      assert.ok(largest < 0.5 * round * perRound, `the WAL grew to ${largest} bytes, ${(largest / perRound).toFixed(1)} rounds of ${round}`)
      assert.equal(queue.counts().pending, 60_000)
      // closed, the queue is whole in its one file: the thread let go first, so the last
      // connection's close copied the rest and removed the WAL (a copy of queue.db alone is a backup)
      queue.close()
      assert.equal(existsSync(`${path}-wal`), false, 'no WAL is left after close')
      const reopened = new EventQueue({ path })
      assert.equal(reopened.counts().pending, 60_000)
      reopened.close()
    })
    // a node that only holds other nodes' replicas (durability = "replicated") writes
    // nothing else: its WAL is copied too
    await inFreshDir(async (path) => {
      const replicas = new EventQueue({ path })
      const before = size(path)
      for (let round = 0; round < 3; round++) {
        replicas.holdReplicas('did:key:origin', events(round * 1000, 1000).map(({ event, targets }) => ({ event, edge: targets[0]?.edge ?? '', to: 'b', priority: 5, attempts: 0 })))
      }
      await until(() => size(path) > before + 2 * 1000 * 1000, 'the database file holds the held replicas')
      replicas.close()
    })
    // closed while its thread is still starting: the same
    await inFreshDir((path) => {
      const reopened = new EventQueue({ path })
      reopened.enqueueMany(events(0, 10))
      reopened.close()
      assert.equal(existsSync(`${path}-wal`), false, 'no WAL is left after close')
      const read = new EventQueue({ path })
      assert.equal(read.counts().pending, 10)
      read.close()
    })
  })
})

import '../../src/shim.js'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Daemon } from '../../src/agent/daemon.js'
import { type Component, Lifecycle } from '../../src/kernel/component.js'

const log = pino({ level: 'silent' })

/** A component that holds an interval and a subscription through its Lifecycle. */
function ticking(name: string, opts: { failStart?: boolean } = {}) {
  const c = {
    name,
    lifecycle: new Lifecycle(),
    ticks: 0,
    unsubscribed: false,
    async start() {
      c.lifecycle.every(1, () => c.ticks++)
      c.lifecycle.add(() => {
        c.unsubscribed = true
      })
      if (opts.failStart === true) throw new Error(`${name} cannot start`)
    },
  }
  return c satisfies Component
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('component lifecycle', () => {
  it('the daemon releases what a component registered when it stops', async () => {
    const a = ticking('a')
    const d = new Daemon([a], log)
    await d.start()
    await sleep(20)
    assert.ok(a.ticks > 0)
    await d.stop()
    const after = a.ticks
    await sleep(20)
    assert.equal(a.ticks, after, 'the interval still runs after stop')
    assert.equal(a.unsubscribed, true)
  })

  it('a component that fails to start has its registrations released, and the started ones stopped', async () => {
    const a = ticking('a')
    const b = ticking('b', { failStart: true })
    const d = new Daemon([a, b], log)
    await assert.rejects(d.start(), /b cannot start/)
    assert.deepEqual([a.unsubscribed, b.unsubscribed], [true, true])
  })

  it('a stop during start-up lets the starting component finish, stops it and the started ones, and starts no more', async () => {
    const order: string[] = []
    let release!: () => void
    const held = new Promise<void>((r) => {
      release = r
    })
    const part = (name: string, start?: () => Promise<void>): Component => ({
      name,
      start: async () => {
        order.push(`start ${name}`)
        await start?.()
      },
      stop: async () => {
        order.push(`stop ${name}`)
      },
    })
    const d = new Daemon([part('a'), part('slow', () => held), part('c')], log)
    const started = d.start()
    await sleep(5)
    const stopped = d.stop(new Error('SIGTERM received'))
    await sleep(5)
    assert.deepEqual(order, ['start a', 'start slow'], 'nothing stops under a component that is starting')
    release()
    await Promise.all([started, stopped])
    assert.deepEqual(order, ['start a', 'start slow', 'stop slow', 'stop a'])
    assert.equal((await d.stopped)?.message, 'SIGTERM received')
    await d.start()
    assert.equal(order.length, 4, 'a stopped daemon does not start again')
  })

  it('a timeout that fired is not cleared again, one that did not is', async () => {
    const l = new Lifecycle()
    let fired = 0
    l.after(1, () => fired++)
    l.after(10_000, () => fired++)
    await sleep(20)
    l.dispose()
    assert.equal(fired, 1)
  })
})

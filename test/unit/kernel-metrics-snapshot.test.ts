import assert from 'node:assert/strict'
import { metric } from '../../sim/bench/report.js'
import { Reporter } from '../../src/kernel/reporter.js'

describe('kernel: metrics as values (GET /v1/metrics), the same numbers as the Prometheus text', () => {
  it('counters, gauges (also filled at scrape time) and histogram series sum like the text', async () => {
    const root = new Reporter({ level: 'silent' })
    const r = root.forComponent('demo')
    const c = r.counter('things_total', 'things', ['kind', 'result'])
    c.inc({ kind: 'a', result: 'ok' }, 3)
    c.inc({ kind: 'b', result: 'ok' }, 2)
    c.inc({ kind: 'b', result: 'error' })
    r.gauge('level', 'a level', [], function () {
      this.set(7)
    })
    const h = r.histogram('wait_seconds', 'waits', [0.1, 1])
    h.observe(0.05)
    h.observe(0.5)
    const text = await root.metrics()
    const m = await root.snapshot()
    const cases: Array<[string, Record<string, string>]> = [
      ['mesh_demo_things_total', {}],
      ['mesh_demo_things_total', { result: 'ok' }],
      ['mesh_demo_things_total', { kind: 'b', result: 'error' }],
      ['mesh_demo_level', {}],
      ['mesh_demo_wait_seconds_count', {}],
      ['mesh_demo_wait_seconds_bucket', { le: '0.1' }],
      ['mesh_demo_wait_seconds_sum', {}],
    ]
    for (const [name, labels] of cases) assert.equal(m.get(name, labels), metric(text, name, labels), name)
    assert.equal(m.get('mesh_demo_things_total', { result: 'ok' }), 5)
    assert.equal(m.get('mesh_demo_level'), 7)
    assert.equal(m.get('mesh_demo_wait_seconds_bucket', { le: '0.1' }), 1)
    assert.equal(m.get('mesh_demo_nothing_total'), 0)
  })
})

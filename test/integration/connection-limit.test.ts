import '../../src/shim.js'
import assert from 'node:assert/strict'
import { type AgentProcess, Fixture, startCluster, waitFor } from './cluster-harness.js'

// Every agent keeps a connection to every alive member, and libp2p refuses inbound connections
// past its limit (300 by default) and prunes past it: in a cluster larger than the limit members
// refused each other's probes. The agent now raises the limit as the cluster grows
// (src/node/connection-limit.ts). Here the limit starts at 3 with 6 members.

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f']
const env = { MESH_MAX_CONNECTIONS: '3' }

/** the members an agent holds an admitted connection to, by `mesh status` */
async function connectedMembers(agent: AgentProcess): Promise<Set<string>> {
  const st = await agent.status()
  return new Set(
    (st.connections as Array<{ peerId: string; admitted: boolean }>)
      .filter((c) => c.admitted)
      .map((c) => c.peerId),
  )
}

describe('a cluster larger than the configured connection limit', function () {
  this.timeout(240_000)
  const fx = new Fixture()
  let agents: AgentProcess[] = []

  after(() => fx.cleanup())

  it('raises the limit: every member holds a connection to every other and nobody is suspected', async () => {
    agents = await startCluster(fx, NAMES, { env })
    await waitFor(
      'every agent connected to the 5 others (with a limit of 3 it could hold 3)',
      async () => {
        for (const a of agents) if ((await connectedMembers(a)).size !== NAMES.length - 1) return false
        return true
      },
      60_000,
      500,
    )
    // a further 20 s with every connection kept: no member refused a probe, so none was suspected
    const before = await Promise.all(
      agents.map((a) => a.metric('mesh_membership_changes_total', { to: 'suspect' })),
    )
    await new Promise((r) => setTimeout(r, 20_000))
    for (const [i, a] of agents.entries()) {
      assert.equal((await connectedMembers(a)).size, NAMES.length - 1, `${NAMES[i]} kept its connections`)
      assert.equal(
        await a.metric('mesh_membership_changes_total', { to: 'suspect' }),
        before[i],
        `${NAMES[i]} suspected nobody`,
      )
    }
  })
})

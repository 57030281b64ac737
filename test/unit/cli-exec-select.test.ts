import assert from 'node:assert/strict'
import type { MemberView } from '../../src/api/routes-members.js'
import { globMatch, selectMembers } from '../../src/cli/cmd-exec.js'

const m = (name: string, status: string, tags: Record<string, string>) =>
  ({ name, status, tags }) as MemberView

describe('mesh exec: which members a selection names', () => {
  it('globs match whole names; regex characters are literal', () => {
    assert.ok(globMatch('web-*', 'web-1'))
    assert.ok(globMatch('web-?', 'web-2'))
    assert.ok(!globMatch('web-*', 'db-web-1'))
    assert.ok(!globMatch('a.b', 'axb'))
  })

  it('every tag must match, any glob may; members that left are never chosen', () => {
    const all = [
      m('web-1', 'alive', { role: 'web', dc: 'x' }),
      m('web-2', 'dead', { role: 'web' }),
      m('db-1', 'alive', { role: 'db' }),
      m('web-3', 'left', { role: 'web' }),
    ]
    const names = (sel: Parameters<typeof selectMembers>[1]) => selectMembers(all, sel).map((x) => x.name)
    assert.deepEqual(names({ tags: [['role', 'web']], names: [], all: false }), ['web-1', 'web-2'])
    assert.deepEqual(
      names({
        tags: [
          ['role', 'web'],
          ['dc', 'x'],
        ],
        names: [],
        all: false,
      }),
      ['web-1'],
    )
    assert.deepEqual(names({ tags: [], names: ['db-*', 'web-2'], all: false }), ['web-2', 'db-1'])
    assert.deepEqual(names({ tags: [], names: [], all: true }), ['web-1', 'web-2', 'db-1'])
  })
})

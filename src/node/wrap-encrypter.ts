import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'

/**
 * A connection encrypter that gives `before` the connection it is about to secure and `after` the
 * secured one (both directions), and is otherwise the inner one.
 */
export function wrapEncrypter<C, E>(
  factory: (components: C) => ConnectionEncrypter<E>,
  hooks: { before?(connection: MessageStream): MessageStream; after?(secured: MessageStream): void },
): (components: C) => ConnectionEncrypter<E> {
  const before = hooks.before ?? ((c: MessageStream) => c)
  return (components) => {
    const inner = factory(components)
    return {
      protocol: inner.protocol,
      secureInbound: async (connection, options) => {
        const r = await inner.secureInbound(before(connection), options)
        hooks.after?.(r.connection)
        return r
      },
      secureOutbound: async (connection, options) => {
        const r = await inner.secureOutbound(before(connection), options)
        hooks.after?.(r.connection)
        return r
      },
    }
  }
}

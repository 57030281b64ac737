import type { Connection, Libp2p } from '@libp2p/interface'

/**
 * Calls `handler` for every connection: the ones already open and each one that opens later.
 * Components start after the node component has dialled the members it knows (and members may
 * have dialled us), so a plain `connection:open` listener would miss those first connections.
 * Returns the function that stops listening.
 */
export function onEveryConnection(node: Libp2p, handler: (conn: Connection) => void): () => void {
  const listener = (evt: CustomEvent<Connection>) => handler(evt.detail)
  node.addEventListener('connection:open', listener)
  for (const conn of node.getConnections()) handler(conn)
  return () => node.removeEventListener('connection:open', listener)
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/

/** host and port of a `ui.listen` value, brackets removed from an IPv6 host. */
export function splitListen(listen: string): { host: string; port: number; loopback: boolean } {
  const i = listen.lastIndexOf(':')
  const rawHost = listen.slice(0, i)
  return {
    host: rawHost.replace(/^\[|\]$/g, ''),
    port: Number(listen.slice(i + 1)),
    loopback: LOOPBACK.test(rawHost),
  }
}

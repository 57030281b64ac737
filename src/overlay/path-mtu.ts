/**
 * The path MTUs we told the kernel, per member (overlay.md, Packet size on the direct UDP
 * carrier). A Packet Too Big lowers the kernel's path MTU to that member for 10 minutes, and only
 * a lower one changes it. So when the carrier takes larger packets again (the loss reports allow
 * it, a new session starts large, another carrier takes over), the lowered MTU must be forgotten,
 * once, for TCP inside to send larger segments; the next packet too large for the new size gets
 * a Packet Too Big of its own. Entries outlive a member's absence, as the kernel's do.
 */
export class ToldPathMtus {
  private readonly told = new Map<string, number>()

  /** We sent the kernel a Packet Too Big with `mtu` for a packet to `peer`. */
  lowered(peer: string, mtu: number): void {
    const t = this.told.get(peer)
    if (t === undefined || mtu < t) this.told.set(peer, mtu)
  }

  /**
   * The carrier now takes packets of `mtu` to `peer`: true (once) when that is more than we told
   * the kernel, which should then forget what we told it.
   */
  raised(peer: string, mtu: number): boolean {
    const t = this.told.get(peer)
    if (t === undefined || mtu <= t) return false
    this.told.delete(peer)
    return true
  }
}

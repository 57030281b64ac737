import { z } from 'zod'

/** A port or an inclusive range: 22, '8000-8099'. */
const portSpec = z.union([
  z.number().int().min(1).max(65535),
  z
    .string()
    .regex(/^\d{1,5}(-\d{1,5})?$/, "expected a port such as 22 or a range such as '8000-8099'")
    .refine(
      (s) => {
        const [lo, hi = lo] = s.split('-').map(Number)
        return lo >= 1 && hi <= 65535 && lo <= hi
      },
      { message: 'expected ports 1-65535, low-high' },
    ),
])

/**
 * One inbound rule: traffic from members matching `from` (a member name, `tag:KEY` or
 * `tag:KEY=VALUE`, or `*`) with protocol `proto` to one of `ports` (tcp/udp) is let in.
 */
export const AllowRuleSchema = z
  .object({
    from: z.string().min(1).default('*'),
    proto: z.enum(['tcp', 'udp', 'icmp', 'any']).default('any'),
    ports: z.array(portSpec).max(64).optional(),
  })
  .strict()
  .refine((r) => r.ports === undefined || r.proto === 'tcp' || r.proto === 'udp', {
    message: "ports only apply to proto 'tcp' or 'udp'",
  })

export type AllowRuleConfig = z.infer<typeof AllowRuleSchema>

export const OVERLAY_DEFAULTS = {
  interface: true,
  name: 'mesh0',
  // Node moves ~30x more bytes per second through a TUN device with 65000-byte packets than
  // with 1500-byte ones (packet-rate bound); IPv6 needs at least 1280
  mtu: 65000,
  // empty: members may reach every port of our overlay address, like a private LAN
  allow: [] as AllowRuleConfig[],
  // a managed block of NAME.mesh lines in this file (see protocols/overlay.md)
  hostsFile: '/etc/hosts',
  names: true,
  // carry packets on an unreliable WebRTC data channel where ICE finds a path (no TCP over TCP)
  datagram: true,
  // the largest packet the datagram carrier takes; larger ones get an ICMPv6 Packet Too Big.
  // 1280 fits one UDP datagram (a lost datagram loses one small packet); more moves more bytes
  // per packet through Node but a message of k datagrams is lost when any one of them is
  datagramMtu: 1280,
  // on the direct UDP carrier, packets up to this size while the member's loss reports say the
  // path loses few IP fragments (datagram-size.ts); datagramMtu when it does, or for an older member
  udpMtuMax: 16000,
  // to a member with a direct connection, carry packets in UDP datagrams sealed with
  // ChaCha20-Poly1305 (keys exchanged over the member connection): preferred over WebRTC
  udp: true,
  // the port that carrier receives on; 0: an ephemeral one (told to members in the key exchange)
  udpPort: 0,
  // that carrier's keys are rotated this often (WireGuard's REKEY_AFTER_TIME; the offerer's counts)
  rekeyAfterMs: 120_000,
}

/** The `overlay` section: the mesh0 interface. */
export const OverlayConfigSchema = z
  .object({
    // create the TUN interface when we have CAP_NET_ADMIN
    interface: z.boolean().default(OVERLAY_DEFAULTS.interface),
    name: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/, 'expected an interface name of 1-15 letters, digits, _ . -')
      .default(OVERLAY_DEFAULTS.name),
    mtu: z.number().int().min(1280).max(65000).default(OVERLAY_DEFAULTS.mtu),
    allow: z.array(AllowRuleSchema).max(256).default([]),
    names: z.boolean().default(OVERLAY_DEFAULTS.names),
    hostsFile: z.string().min(1).default(OVERLAY_DEFAULTS.hostsFile),
    datagram: z.boolean().default(OVERLAY_DEFAULTS.datagram),
    datagramMtu: z.number().int().min(1280).max(65000).default(OVERLAY_DEFAULTS.datagramMtu),
    udpMtuMax: z.number().int().min(1280).max(65000).default(OVERLAY_DEFAULTS.udpMtuMax),
    udp: z.boolean().default(OVERLAY_DEFAULTS.udp),
    udpPort: z.number().int().min(0).max(65535).default(OVERLAY_DEFAULTS.udpPort),
    // at least 5 s (more than twice the 2 s an old key still opens), at most an hour (the answerer
    // closes a session whose keys are older than that: udp-carrier.ts MAX_REKEY_AFTER_MS)
    rekeyAfterMs: z.number().int().min(5_000).max(3_600_000).default(OVERLAY_DEFAULTS.rekeyAfterMs),
  })
  .strict()
  .default({ ...OVERLAY_DEFAULTS, allow: [] })

export type OverlayConfig = z.infer<typeof OverlayConfigSchema>

/**
 * The systemd unit `mesh service install` writes. Pure: what goes in it comes from the caller,
 * so a unit test can read every line and `systemd-analyze verify` can check the file.
 */
export interface UnitOptions {
  /** absolute path of the node binary that runs the agent */
  node: string
  /** absolute path of the CLI entry (dist/src/cli/main.js) */
  cli: string
  dataDir: string
  /** run as this user (default: root, whoever installs it) */
  user?: string
  /** extra `mesh agent` arguments, already split into words */
  agentArgs?: string[]
}

/**
 * glibc's malloc asks for transparent huge pages for its heap (honoured where THP is `madvise`
 * or `always`; ignored elsewhere). Moving bytes, the agent mallocs ~2 Buffers per byte (socket
 * reads, Noise plaintext) and touched ~70,000 fresh 4 KiB pages per GiB fetched; with it about a
 * tenth of that and ~10% less CPU per GiB, for ~4 MB more idle RSS (sim/PROFILE.md, 2026-12-06).
 * Read by glibc at start only, so it goes in the unit's environment.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1'

/** systemd's own quoting for ExecStart words: double quotes, with \ and " escaped; % doubled. */
function quote(word: string): string {
  const escaped = word.replace(/%/g, '%%')
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? escaped : `"${escaped.replace(/[\\"]/g, '\\$&')}"`
}

export function systemdUnit(o: UnitOptions): string {
  const exec = [o.node, o.cli, '--data-dir', o.dataDir, 'agent', ...(o.agentArgs ?? [])].map(quote).join(' ')
  return `# written by 'mesh service install'; 'mesh service remove' takes it away (the data dir stays)
[Unit]
Description=mesh agent (data dir ${o.dataDir})
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
ExecStart=${exec}
${o.user !== undefined ? `User=${o.user}\n` : ''}# logs go to the journal as JSON lines (stderr is not a terminal): journalctl -u <unit> -o cat
Environment=MESH_LOG_FORMAT=json
Environment=GLIBC_TUNABLES=${MALLOC_TUNABLES}
# SIGTERM: the agent tells the cluster it leaves, then stops (give it time to)
KillSignal=SIGTERM
TimeoutStopSec=20
# back after a crash or a kill -9, not after a clean stop; not in a loop when it can never work:
# exit 2 is a bad config or token, exit 4 means an admin revoked this member
Restart=on-failure
RestartSec=5
RestartPreventExitStatus=2 4
LimitNOFILE=65536
UMask=0077

# hardening: the agent writes only its data dir; the rest of the system is read-only to it.
# Not set on purpose: PrivateDevices (the overlay interface needs /dev/net/tun), PrivateNetwork
# and RestrictAddressFamilies (it is a network agent), MemoryDenyWriteExecute (V8's JIT).
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=${quote(o.dataDir)}
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
`
}

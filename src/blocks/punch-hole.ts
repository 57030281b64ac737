/**
 * Give a dead block's disk space back without rewriting its pack: fallocate(PUNCH_HOLE) on the
 * byte range (Linux: ext4, xfs, btrfs, tmpfs). Node has no binding for it, so it goes through
 * koffi (the FFI the overlay's TUN already uses), loaded on first use. Where it is missing or the
 * file system refuses, the space comes back when every block of the pack is dead (the pack file
 * is deleted then).
 */
export type PunchHole = (fd: number, offset: number, length: number) => boolean

const FALLOC_FL_KEEP_SIZE = 0x01
const FALLOC_FL_PUNCH_HOLE = 0x02
const PAGE = 4096

let loaded: Promise<PunchHole | undefined> | undefined

export function loadPunchHole(): Promise<PunchHole | undefined> {
  loaded ??= (async () => {
    if (process.platform !== 'linux') return undefined
    try {
      const koffi = (await import('koffi')).default
      const libc = koffi.load('libc.so.6')
      const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)')
      return (fd: number, offset: number, length: number): boolean => {
        // whole pages only: a partial page is not freed anyway, and this keeps record headers
        // (which the scan at open walks) intact
        const start = Math.ceil(offset / PAGE) * PAGE
        const end = Math.floor((offset + length) / PAGE) * PAGE
        if (end <= start) return true
        return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start, end - start) === 0
      }
    } catch {
      return undefined
    }
  })()
  return loaded
}

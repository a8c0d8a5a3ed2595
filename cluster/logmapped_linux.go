package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// releaseMapped drops this process's mappings of the log file's pages
// (madvise MADV_DONTNEED on bolt's read-only shared memory map of it):
// they leave the node's resident size, and stay in the kernel's page
// cache, from which a later read of the log maps them again without
// reading the disk. Bolt reads entries through its map, and rewrites
// the leaf that holds the last entries at every append, so the whole of a
// log written as large entries (create_keys, a thousand keys each) ends up
// mapped: about 260 bytes a key of resident memory in a bulk-loaded
// cluster, which a snapshot makes useless to keep (docs/scale.md, "Memory
// per key").
//
// The node calls it after it persists a snapshot, and the store after
// each releaseMappedEvery bytes of entries it stores and after each
// DeleteRange (Raft's compaction, which follows the snapshot's release).
//
// It holds the store's lock, so that no bolt call runs meanwhile: bolt
// maps the file again elsewhere when it grows, and only between its calls
// is the address range read from /proc/self/maps still the file's.
func (l *logStore) releaseMapped() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	l.unreleased.Store(0)
	st, err := os.Stat(l.path)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	ranges, err := fileMappings(uint64(sys.Dev), sys.Ino)
	if err != nil {
		return err
	}
	for _, r := range ranges {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("madvise: %w", e)
		}
	}
	return nil
}

// fileMappings are the address ranges [start, end) of this process's
// mappings of the file with that device and inode, from /proc/self/maps.
func fileMappings(dev, ino uint64) ([][2]uintptr, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// address perms offset dev inode pathname
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[4] != strconv.FormatUint(ino, 10) || !sameDev(f[3], dev) {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// sameDev reports whether /proc/self/maps's device field (major:minor,
// in hex) is dev.
func sameDev(field string, dev uint64) bool {
	ma, mi, ok := strings.Cut(field, ":")
	if !ok {
		return false
	}
	a, err1 := strconv.ParseUint(ma, 16, 32)
	b, err2 := strconv.ParseUint(mi, 16, 32)
	return err1 == nil && err2 == nil && uint32(a) == unix.Major(dev) && uint32(b) == unix.Minor(dev)
}

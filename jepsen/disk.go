package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Every node's data directory is a small tmpfs of its own, so that the
// disk-full nemesis can fill one node's disk without touching the
// machine's. The mounts are made in the inner run's mount namespace (ip
// netns exec gives it one, private to it), before the node starts, so
// the node sees its own; they vanish with the run, whatever happens.

// dataDiskSize is each data directory's tmpfs; a node of a one-minute
// run uses well under a megabyte.
const dataDiskSize = "64m"

// fillerName is the file the disk-full nemesis fills a disk with.
const fillerName = "jepsen-disk-full"

// mountData mounts a tmpfs on a node's data directory, if it is not one
// already.
func (d *db) mountData(ctx context.Context, dir string) error {
	d.mu.Lock()
	done := d.mounted[dir]
	d.mu.Unlock()
	if done {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := run(ctx, "mount", "-t", "tmpfs", "-o", "size="+dataDiskSize+",mode=0700", "tmpfs", dir); err != nil {
		return err
	}
	d.mu.Lock()
	d.mounted[dir] = true
	d.mu.Unlock()
	return nil
}

// unmountData unmounts a data directory's tmpfs, first copying what it
// holds to the disk if keep.
func (d *db) unmountData(dir string, keep bool) error {
	d.mu.Lock()
	mounted := d.mounted[dir]
	delete(d.mounted, dir)
	d.mu.Unlock()
	if !mounted {
		return nil
	}
	ctx := context.Background()
	var errs []error
	saved := dir + ".saved"
	if keep {
		errs = append(errs, run(ctx, "cp", "-a", dir, saved))
	}
	if err := run(ctx, "umount", dir); err != nil {
		errs = append(errs, run(ctx, "umount", "-l", dir))
	}
	if keep {
		errs = append(errs, os.Remove(dir), os.Rename(saved, dir))
	}
	return errors.Join(errs...)
}

// unmountAll unmounts every data directory, keeping their contents on
// the disk if keep.
func (d *db) unmountAll(keep bool) error {
	d.mu.Lock()
	var dirs []string
	for dir := range d.mounted {
		dirs = append(dirs, dir)
	}
	d.mu.Unlock()
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, d.unmountData(dir, keep))
	}
	return errors.Join(errs...)
}

// fill fills a slot's data disk to the last byte with a file of zeros
// and returns how much it wrote.
func (d *db) fill(n int) (int64, error) {
	path := filepath.Join(d.dataDir(d.nodeID(n)), fillerName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	d.mu.Lock()
	d.full[n] = true
	d.mu.Unlock()
	var written int64
	chunk := make([]byte, 1<<20)
	for len(chunk) > 0 {
		k, err := f.Write(chunk)
		written += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			chunk = chunk[:len(chunk)/2] // down to the last bytes
			continue
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// unfill removes every filler the disk-full nemesis wrote.
func (d *db) unfill() error {
	d.mu.Lock()
	var dirs []string
	for n := range d.full {
		dirs = append(dirs, d.dataDir(d.slot(n).id))
	}
	clear(d.full)
	d.mu.Unlock()
	var errs []error
	for _, dir := range dirs {
		if err := os.Remove(filepath.Join(dir, fillerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("freeing the disk of %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

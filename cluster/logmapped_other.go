//go:build !linux

package cluster

// releaseMapped does nothing here: the log's mapped pages are dropped on
// Linux only (logmapped_linux.go).
func (l *logStore) releaseMapped() error { return nil }

package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// logCacheEntries is how many of the last log entries Raft reads from
// memory rather than from bolt: every commitTimeout tick an idle leader
// reads back its last entry to send it as the previous one (a bolt read
// transaction and a msgpack decode each time: a tenth of its idle CPU),
// and replication reads back entries just written. Deletes (compaction,
// erasure) clear it.
const logCacheEntries = 256

// logCacheMaxEntry is the largest entry the cache holds: a larger one
// (a create_keys entry of a thousand keys is about 300 KiB) is read back
// from bolt. Raft's own LogCache held every entry, so after a bulk load
// each node kept its last 256 create_keys entries in memory, about 300
// bytes a key for the last 256,000 keys (docs/scale.md, "Memory per
// key"); with this bound the cache holds at most 16 MiB.
const logCacheMaxEntry = 64 << 10

// logCache is raft.LogCache (a ring of the last entries in front of the
// log store) that does not keep entries larger than logCacheMaxEntry.
type logCache struct {
	store raft.LogStore

	mu    sync.RWMutex
	cache []*raft.Log
}

func newLogCache(store raft.LogStore) *logCache {
	return &logCache{store: store, cache: make([]*raft.Log, logCacheEntries)}
}

func (c *logCache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	cached := c.cache[index%uint64(len(c.cache))]
	c.mu.RUnlock()
	if cached != nil && cached.Index == index {
		*log = *cached
		return nil
	}
	return c.store.GetLog(index, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		slot := &c.cache[l.Index%uint64(len(c.cache))]
		if len(l.Data)+len(l.Extensions) > logCacheMaxEntry {
			*slot = nil // not an older entry in its place either
			continue
		}
		*slot = l
	}
	return nil
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange clears the cache, as raft.LogCache does.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.cache)
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

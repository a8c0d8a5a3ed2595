package cluster

import "sync"

// roundBatch shares one run of an operation among the callers that wait
// for it, in rounds: a caller joins the next round, never one already
// running, so what it gets is as fresh as a run it had started alone. It
// batches the leader's confirmations of its leadership and the holders'
// read indexes.
type roundBatch[T any] struct {
	mu      sync.Mutex
	waiting []chan T
	running bool
}

// join queues the caller for the next round of do and returns the channel
// its result arrives on. Rounds run one after another while callers wait.
func (b *roundBatch[T]) join(do func() T) <-chan T {
	ch := make(chan T, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	if !b.running {
		b.running = true
		go b.run(do)
	}
	b.mu.Unlock()
	return ch
}

func (b *roundBatch[T]) run(do func() T) {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		v := do()
		for _, ch := range batch {
			ch <- v
		}
	}
}

package channels

import "sync"

// Progress remembers, per reply (its address and message id), how many
// parts of a split reply went out before a failure, so that the outbox's
// retry of Send does not post them again. Bounded: past 256 replies the
// oldest are forgotten (a retry of one of them starts again from its first
// part). It is per node: a retry on another node posts the whole reply.
// The zero Progress is ready.
type Progress struct {
	mu    sync.Mutex
	sent  map[string]int
	order []string
}

// Get is how many parts of key went out (0: none, or forgotten).
func (p *Progress) Get(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[key]
}

// Set records that n parts of key went out.
func (p *Progress) Set(key string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sent == nil {
		p.sent = map[string]int{}
	}
	if _, ok := p.sent[key]; !ok {
		p.order = append(p.order, key)
	}
	p.sent[key] = n
	for len(p.order) > 256 {
		delete(p.sent, p.order[0])
		p.order = p.order[1:]
	}
}

// Drop forgets key (its reply went out whole).
func (p *Progress) Drop(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.sent[key]; !ok {
		return
	}
	delete(p.sent, key)
	for i, k := range p.order {
		if k == key {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
}

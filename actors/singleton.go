package actors

// Singletons places work that must run on exactly one node of a cluster
// (a channel's outbound connection): on the ring's owner of its key, as a
// conversation is, and again on the new owner when the ring changes. A
// type of its own, beside Retention, so Runtime and Link keep their size;
// make it with SingletonsOf.
type Singletons struct{ rt *Runtime }

// SingletonsOf returns rt's placement of singletons.
func SingletonsOf(rt *Runtime) Singletons { return Singletons{rt: rt} }

// Owner is the node that owns key (its cluster id) and whether it is this
// one. Alone, this node owns everything ("", true); before it joined its
// cluster, and after it left, nobody does ("", false).
func (s Singletons) Owner(key string) (node string, self bool) {
	l := s.rt.link
	if !l.clustered() {
		return "", true
	}
	if !l.place().Ready() {
		return "", false
	}
	n, ok := l.currentRing().Owner(key)
	if !ok {
		return "", false
	}
	return n.ID, n.ID == l.place().ID()
}

// Changed returns a channel closed at the next change of the ring (never,
// alone).
func (s Singletons) Changed() <-chan struct{} { return s.rt.link.ringChanged() }

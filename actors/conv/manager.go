package conv

import (
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/internal/metrics"
)

// entry is the manager's record of one child, under the key <tenant>/<id>
// (the child's name: its PID's id is the manager's, "/" and the key, and
// the map's key is that part of it, not a string of its own).
// (32 bytes: what a child holds while it stops is in managerActor.pending.)
type entry struct {
	pid       *actor.PID
	forwarded uint64        // messages sent to pid by the manager
	last      time.Duration // when the last one was sent, since the manager started
	stopping  bool
}

// childStopped: a conversation actor stopped (from its Stopped, once its
// name is free again).
type childStopped struct{ id string }

// managerActor owns the conversation actors: one child per <tenant>/<id>.
//
// Passivation protocol, so that no message reaches a stopped mailbox: the
// manager counts what it forwards to each child; a child that is idle replies
// to passivateMsg with releaseMsg carrying how many manager messages it has
// processed. Only if that equals the forwarded count does the manager stop
// it; from then on, messages for that id wait in pending and go to a fresh
// child (loaded from its snapshot) once the old one has terminated.
type managerActor struct {
	m       *Manager
	entries map[string]*entry
	// pending holds, by key, the messages for a child that stops, to be
	// delivered to its successor.
	pending map[string][]routed
	prefix  string // the manager's id and "/": a child's id is prefix + its key
	epoch   time.Time
	cancel  scheduler.CancelFunc
}

func (m *managerActor) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *actor.Started:
		m.entries = map[string]*entry{}
		m.pending = map[string][]routed{}
		m.prefix = c.Self().Id + "/"
		m.epoch = time.Now()
		every := m.m.d.tick
		m.cancel = scheduler.NewTimerScheduler(m.m.d.root).SendRepeatedly(every, every, c.Self(), &tickMsg{})
	case *actor.Stopping, *actor.Restarting:
		if m.cancel != nil {
			m.cancel()
		}
		// Its children are not protoactor's children (Start): it stops
		// them itself, and forgets them at once (their childStopped come
		// too late, to a stopped manager or to a new incarnation that
		// never knew them).
		for _, e := range m.entries {
			c.Stop(e.pid)
		}
		m.m.active.Add(-int64(len(m.entries)))
		m.entries, m.pending = nil, nil
	case routed:
		t, id := msg.route()
		m.deliver(c, t, id, msg)
	case *releaseMsg:
		e := m.entries[msg.key]
		if e == nil || e.pid.Id != msg.pid || e.stopping || msg.processed != e.forwarded {
			return // a message is on its way to the child: it is not idle after all
		}
		e.stopping = true
		c.Stop(e.pid)
	case *childStopped:
		key, ok := strings.CutPrefix(msg.id, m.prefix)
		if !ok {
			return
		}
		e := m.entries[key]
		if e == nil || e.pid.Id != msg.id {
			return
		}
		delete(m.entries, key)
		m.m.active.Add(-1)
		m.m.d.met.Inc(metrics.Passivations)
		pending := m.pending[key]
		delete(m.pending, key)
		for _, p := range pending {
			t, id := p.route()
			m.deliver(c, t, id, p)
		}
	case *relinquishMsg:
		e := m.lookup(msg.tenant, msg.id)
		if e == nil || e.stopping {
			msg.release() // not served here: the store has the last copy
			return
		}
		m.send(c, e, msg)
	case *ringMsg:
		for _, e := range m.entries {
			if !e.stopping {
				m.send(c, e, &handoffCheck{})
			}
		}
	case *tickMsg:
		now := time.Since(m.epoch)
		for _, e := range m.entries {
			if !e.stopping && now-e.last >= m.m.d.idle {
				m.send(c, e, &passivateMsg{})
			}
		}
	}
}

// lookup returns the entry of tenant/id, or nil (no string is made for it).
func (m *managerActor) lookup(tenant, id string) *entry {
	var buf [2*128 + 1]byte // ids are at most 128 bytes (moltbot.ValidID)
	key := append(append(append(buf[:0], tenant...), '/'), id...)
	return m.entries[string(key)]
}

func (m *managerActor) deliver(c actor.Context, tenant, id string, msg any) {
	e := m.lookup(tenant, id)
	if e == nil {
		pid, err := m.m.d.root.SpawnNamed(m.m.d.props, m.prefix+tenant+"/"+id)
		if err != nil {
			// Not expected: an entry goes only once its child terminated,
			// which frees the name first. The request is answered.
			m.m.d.log.Error("conversation actor not spawned", "conversation", tenant+"/"+id, "err", err)
			if r, ok := msg.(request); ok {
				r.fail(moltbot.Errorf(moltbot.EInternal, "conversation %q could not be started; retry the request", id))
			}
			return
		}
		e = &entry{pid: pid}
		m.entries[pid.Id[len(m.prefix):]] = e
		m.m.active.Add(1)
	}
	if e.stopping {
		if r, ok := msg.(routed); ok {
			key := e.pid.Id[len(m.prefix):]
			m.pending[key] = append(m.pending[key], r)
		}
		return
	}
	m.send(c, e, msg)
}

func (m *managerActor) send(c actor.Context, e *entry, msg any) {
	e.forwarded++
	e.last = time.Since(m.epoch)
	c.Send(e.pid, msg)
}

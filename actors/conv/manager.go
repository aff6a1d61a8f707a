package conv

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"
	"github.com/moltbot/moltbot/internal/metrics"
)

type entry struct {
	pid       *actor.PID
	tenant    string
	id        string
	forwarded uint64    // messages sent to pid by the manager
	last      time.Time // when the last one was sent
	stopping  bool
	pending   []routed // held while the child stops, delivered to its successor
}

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
	byPID   map[string]string
	cancel  scheduler.CancelFunc
}

func (m *managerActor) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *actor.Started:
		m.entries = map[string]*entry{}
		m.byPID = map[string]string{}
		every := m.m.d.tick
		m.cancel = scheduler.NewTimerScheduler(m.m.d.root).SendRepeatedly(every, every, c.Self(), &tickMsg{})
	case *actor.Stopping:
		if m.cancel != nil {
			m.cancel()
		}
	case routed:
		t, id := msg.route()
		m.deliver(c, t+"/"+id, t, id, msg)
	case *releaseMsg:
		e := m.entries[msg.key]
		if e == nil || e.pid.Id != msg.pid || e.stopping || msg.processed != e.forwarded {
			return // a message is on its way to the child: it is not idle after all
		}
		e.stopping = true
		c.Stop(e.pid)
	case *actor.Terminated:
		key, ok := m.byPID[msg.Who.Id]
		if !ok {
			return
		}
		delete(m.byPID, msg.Who.Id)
		e := m.entries[key]
		if e == nil || e.pid.Id != msg.Who.Id {
			return
		}
		delete(m.entries, key)
		m.m.active.Add(-1)
		m.m.d.met.Inc(metrics.Passivations)
		for _, p := range e.pending {
			m.deliver(c, key, e.tenant, e.id, p)
		}
	case *relinquishMsg:
		e := m.entries[msg.tenant+"/"+msg.id]
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
		now := time.Now()
		for _, e := range m.entries {
			if !e.stopping && now.Sub(e.last) >= m.m.d.idle {
				m.send(c, e, &passivateMsg{})
			}
		}
	}
}

func (m *managerActor) deliver(c actor.Context, key, tenant, id string, msg any) {
	e := m.entries[key]
	if e == nil {
		e = &entry{tenant: tenant, id: id}
		e.pid = c.Spawn(m.m.d.props(tenant, id))
		m.entries[key] = e
		m.byPID[e.pid.Id] = key
		m.m.active.Add(1)
	}
	if e.stopping {
		if r, ok := msg.(routed); ok {
			e.pending = append(e.pending, r)
		}
		return
	}
	m.send(c, e, msg)
}

func (m *managerActor) send(c actor.Context, e *entry, msg any) {
	e.forwarded++
	e.last = time.Now()
	c.Send(e.pid, msg)
}

package skills

import (
	"sort"
	"sync/atomic"

	"github.com/moltbot/moltbot"
)

// Bots holds the config's bots (moltbot.Bots), swapped whole on a reload:
// a turn reads the set in place when it starts and keeps what it read.
// The zero value holds none. Safe for concurrent use.
type Bots struct {
	set atomic.Pointer[botSet]
}

// botSet is one generation of bots, by tenant then name.
type botSet struct {
	by   map[string]map[string]*moltbot.Bot
	list []*moltbot.Bot // by tenant, then name
}

// NewBots returns a set holding bots.
func NewBots(bots []*moltbot.Bot) *Bots {
	b := &Bots{}
	b.Set(bots)
	return b
}

// Set replaces the bots (a reload). The bots are not changed afterwards:
// turns that hold one share it.
func (b *Bots) Set(bots []*moltbot.Bot) {
	s := &botSet{by: map[string]map[string]*moltbot.Bot{}, list: append([]*moltbot.Bot(nil), bots...)}
	for _, bot := range bots {
		if s.by[bot.Tenant] == nil {
			s.by[bot.Tenant] = map[string]*moltbot.Bot{}
		}
		s.by[bot.Tenant][bot.Name] = bot
	}
	sort.Slice(s.list, func(i, j int) bool {
		a, c := s.list[i], s.list[j]
		return a.Tenant < c.Tenant || a.Tenant == c.Tenant && a.Name < c.Name
	})
	b.set.Store(s)
}

// Bot returns tenant's bot named name, or nil.
func (b *Bots) Bot(tenant, name string) *moltbot.Bot {
	s := b.set.Load()
	if s == nil {
		return nil
	}
	return s.by[tenant][name]
}

// List returns every bot, by tenant then name ("" tenant: all), or only
// tenant's.
func (b *Bots) List(tenant string) []*moltbot.Bot {
	s := b.set.Load()
	if s == nil {
		return nil
	}
	var out []*moltbot.Bot
	for _, bot := range s.list {
		if tenant == "" || bot.Tenant == tenant {
			out = append(out, bot)
		}
	}
	return out
}

// Len is how many bots there are.
func (b *Bots) Len() int {
	if s := b.set.Load(); s != nil {
		return len(s.list)
	}
	return 0
}

package storage

import (
	"fmt"
	"testing"

	"github.com/moltbot/moltbot"
)

// putSnapshot is the write of the build before the per-message layout:
// the whole conversation, encoded, under its key (what Put was).
func (p *Pebble) putSnapshot(c *moltbot.Conversation, sync bool) error {
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.Set(Key(c.Tenant, c.ID), Encode(nil, c), nil); err != nil {
		return err
	}
	p.written.Add(int64(b.Len()))
	return b.Commit(writeOpts(sync))
}

// BenchmarkTurnWrite is one turn of a conversation of n messages as the
// conversation actor stores it: the user message, then the reply, each a
// synced write. B/turn is what the two writes put in Pebble batches (keys,
// values, batch framing; the WAL gets these bytes, then the memtable and
// compactions): "snapshot" is the build before the per-message layout
// (the whole conversation, twice), "records" this one. Between turns the
// stored conversation is set back to n messages, untimed.
func BenchmarkTurnWrite(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, layout := range []string{"snapshot", "records"} {
			b.Run(fmt.Sprintf("%s/messages=%d", layout, n), func(b *testing.B) {
				p, err := Open(b.TempDir(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				put := p.Put
				if layout == "snapshot" {
					put = p.putSnapshot
				}
				base := conversation("c", n)
				var written int64
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					c := *base
					c.Messages = append(make([]moltbot.Message, 0, n+2), base.Messages...)
					if err := put(&c, false); err != nil {
						b.Fatal(err)
					}
					user, reply := message(n), message(n+1)
					user.Content = fmt.Sprint(user.Content, i) // a new turn, not the last one again
					before := p.Written()
					b.StartTimer()
					add(&c, user)
					if err := put(&c, true); err != nil {
						b.Fatal(err)
					}
					add(&c, reply)
					if err := put(&c, true); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					written += p.Written() - before
					b.StartTimer()
				}
				b.ReportMetric(float64(written)/float64(b.N), "B/turn")
			})
		}
	}
}

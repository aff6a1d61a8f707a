package actors

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moltbot/moltbot"
	"github.com/moltbot/moltbot/inference/sim"
	"github.com/moltbot/moltbot/storage"
)

// discardStore stores nothing: what a conversation costs in memory, without
// the store's own copy.
type discardStore struct{ *storage.Memory }

func (discardStore) Put(*moltbot.Conversation, bool) error { return nil }

// BenchmarkActiveConversations: the Go heap each active conversation holds
// (created with a system prompt, one turn; the store keeps nothing), as
// bench/measure's edge figures make them, all in one runtime. Reported as
// heapB/conv; one op is 1,000 conversations.
func BenchmarkActiveConversations(b *testing.B) {
	for _, unpacked := range []bool{false, true} {
		name := "packed"
		if unpacked {
			name = "unpacked"
		}
		b.Run(name, func(b *testing.B) { activeConversations(b, unpacked) })
	}
}

func activeConversations(b *testing.B, unpacked bool) {
	const n = 1000
	rt, err := New(Config{KeepUnpacked: unpacked, Providers: []ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 16, Seed: 1}), MaxInFlight: 64}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: discardStore{storage.NewMemory()}, HealthInterval: time.Hour,
		IdleTimeout: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer shutdownAndWait(b, rt)
	before := liveHeap()
	convs := 0
	for b.Loop() {
		for i := 0; i < n; i++ {
			c, err := rt.Create(context.Background(), "default", CreateOptions{System: "You are a helpful assistant."})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rt.Turn(context.Background(), "default", c.ID, moltbot.TurnInput{Content: "hello there, how are you today?"}, nil); err != nil {
				b.Fatal(err)
			}
		}
		convs += n
	}
	b.StopTimer()
	b.ReportMetric(float64(liveHeap()-before)/float64(convs), "heapB/conv")
}

// shutdownAndWait shuts rt down and waits until its conversation actors
// have stopped (Shutdown does not wait for them): the next benchmark's
// heap does not count them.
func shutdownAndWait(b *testing.B, rt *Runtime) {
	rt.Shutdown(context.Background())
	for i := 0; i < 10000; i++ {
		n := 0
		for _, m := range rt.system.ProcessRegistry.LocalPIDs.LocalPIDs {
			n += m.Count()
		}
		if n < 100 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("the conversation actors did not stop")
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkTurnPacked: what keeping idle conversations packed costs a
// turn (one decode when it starts, one encode when it ends, beside the
// store's write), on a conversation of 1 to 8 turns and on one of 50 to
// 57 (100 to 114 messages, about 25 KB packed); the store keeps nothing,
// so the difference is not hidden behind a disk's sync.
func BenchmarkTurnPacked(b *testing.B) {
	for _, history := range []int{0, 50} {
		for _, unpacked := range []bool{false, true} {
			name := fmt.Sprintf("turns=%d/packed", history)
			if unpacked {
				name = fmt.Sprintf("turns=%d/unpacked", history)
			}
			b.Run(name, func(b *testing.B) { turnPacked(b, history, unpacked) })
		}
	}
}

func turnPacked(b *testing.B, history int, unpacked bool) {
	rt, err := New(Config{KeepUnpacked: unpacked, Providers: []ProviderSpec{{Name: "sim", Provider: sim.NewProvider("sim", sim.Options{Tokens: 16, Seed: 1}), MaxInFlight: 64}},
		Chain: []moltbot.ModelRef{{Provider: "sim", Model: "sim"}}, Store: discardStore{storage.NewMemory()}, HealthInterval: time.Hour,
		IdleTimeout: 10 * time.Minute, MaxContextTokens: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	in := moltbot.TurnInput{Content: "hello there, how are you today? " + strings.Repeat("some more words ", 10)}
	turn := func(id string) {
		if _, err := rt.Turn(context.Background(), "default", id, in, nil); err != nil {
			b.Fatal(err)
		}
	}
	var id string
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if i%8 == 0 { // a new conversation of history turns, every 8 turns
			b.StopTimer()
			c, err := rt.Create(context.Background(), "default", CreateOptions{System: "You are a helpful assistant."})
			if err != nil {
				b.Fatal(err)
			}
			id = c.ID
			for range history {
				turn(id)
			}
			b.StartTimer()
		}
		turn(id)
	}
}

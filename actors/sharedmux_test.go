package actors

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// memShared is a SharedState of string records: Merge adds the ones it lacks.
type memShared struct{ recs []string }

func (s *memShared) State() []byte { b, _ := json.Marshal(s.recs); return b }
func (s *memShared) Merge(b []byte) (int, error) {
	var in []string
	if err := json.Unmarshal(b, &in); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range in {
		if !strings.Contains(strings.Join(s.recs, "\x00"), r) {
			s.recs = append(s.recs, r)
			n++
		}
	}
	return n, nil
}

func TestSharedMux(t *testing.T) {
	auth, kb := &memShared{recs: []string{"key1"}}, &memShared{recs: []string{"doc1"}}
	var sent [][]byte
	m := NewSharedMux(auth)
	if got := m.State(); !bytes.Equal(got, auth.State()) {
		t.Fatalf("with no parts the state is the base's, untagged: %q", got)
	}
	pub, err := m.Add(0x01, kb, func(b []byte) { sent = append(sent, b) })
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []byte{0, '\n', '\t', '\r', 0x20, '['} {
		if _, err := m.Add(bad, &memShared{}, nil); err == nil {
			t.Errorf("tag %#x accepted", bad)
		}
	}
	if _, err := m.Add(0x01, &memShared{}, nil); err == nil {
		t.Error("a tag added twice was accepted")
	}
	pub([]byte(`["doc2"]`))
	if len(sent) != 1 || sent[0][0] != 0x01 {
		t.Fatalf("a part's change is not tagged: %q", sent)
	}

	// Another node: the change, an untagged auth change, and a full frame.
	auth2, kb2 := &memShared{}, &memShared{}
	m2 := NewSharedMux(auth2)
	if _, err := m2.Add(0x01, kb2, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := m2.Merge(sent[0]); n != 1 || err != nil {
		t.Fatalf("tagged change: %d, %v", n, err)
	}
	if n, err := m2.Merge([]byte(` ["key2"]`)); n != 1 || err != nil || auth2.recs[0] != "key2" {
		t.Fatalf("untagged change (leading space): %d, %v, %v", n, err, auth2.recs)
	}
	if n, err := m2.Merge(m.State()); n != 2 || err != nil {
		t.Fatalf("full frame: %d, %v (auth %v, kb %v)", n, err, auth2.recs, kb2.recs)
	}
	if len(kb2.recs) != 2 || len(auth2.recs) != 2 {
		t.Fatalf("after the full frame: auth %v, kb %v", auth2.recs, kb2.recs)
	}
	// A part this node does not run is skipped; a cut frame is an error.
	if n, err := m2.Merge([]byte{0x05, '[', ']'}); n != 0 || err != nil {
		t.Fatalf("unknown part: %d, %v", n, err)
	}
	full := m.State()
	if _, err := m2.Merge(full[:len(full)-3]); err == nil {
		t.Fatal("a cut frame merged without an error")
	}
}

func FuzzSharedMuxMerge(f *testing.F) {
	m := NewSharedMux(&memShared{})
	_, _ = m.Add(0x01, &memShared{}, nil)
	f.Add(m.State())
	f.Add([]byte{0, 1, 200, 1})
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = m.Merge(b) // never panics
	})
}

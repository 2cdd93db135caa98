package grouprelay

import (
	"log/slog"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubpb "github.com/libp2p/go-libp2p-pubsub/pb"
)

// BenchmarkValidate is the relay's topic validator on a message of a
// listed chain (parse, ticket lookup, Ed25519 verification).
func BenchmarkValidate(b *testing.B) {
	f := newFixture(b)
	s := f.server(b, Limits{})
	defer s.Close()
	f.now = time.Now()
	if err := s.Take("p", f.t1b.Marshal()); err != nil {
		b.Fatal(err)
	}
	name := f.t1b.Topic()
	raw := seal(b, f.a1, 1, f.now)[0].Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if v := s.validate(name, "p", &pubsub.Message{Message: &pubpb.Message{Data: raw, Topic: &name}}); v != pubsub.ValidationAccept {
			b.Fatal(v)
		}
	}
}

// BenchmarkStore is storing one accepted message (badger, no fsync).
func BenchmarkStore(b *testing.B) {
	d, err := openDB(b.TempDir(), slog.New(slog.DiscardHandler), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	f := newFixture(b)
	msgs := seal(b, f.a1, 1, time.Now())
	raw := msgs[0].Marshal()
	lim, _ := Limits{}.withDefaults()
	k := keyOf("bench")
	m := *msgs[0]
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Iteration = uint32(i)
		if _, _, err := d.put(k, &m, raw, time.Now(), lim); err != nil {
			b.Fatal(err)
		}
	}
}

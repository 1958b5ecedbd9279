package gen

import "testing"

func TestStreamIndex(t *testing.T) {
	st := stream{seen: make([]uint64, dupWindow/64*2)}
	steps := []struct {
		name string
		seq  uint16
		want uint64
		dup  bool
	}{
		{"first", 65000, 65000, false},
		{"next", 65001, 65001, false},
		{"wrap", 3, 65539, false},
		{"late from before the wrap", 65500, 65500, false},
		{"duplicate", 3, 65539, true},
		{"duplicate before the wrap", 65001, 65001, true},
		{"gap", 20000, 85536, false},
		{"behind, same ROC", 100, 65636, false},
		{"forward", 50000, 115536, false},
		{"second wrap", 100, 131172, false},
	}
	for _, s := range steps {
		idx, dup := st.index(s.seq)
		if idx != s.want || dup != s.dup {
			t.Fatalf("%s: index(%d) = %d, %v; want %d, %v", s.name, s.seq, idx, dup, s.want, s.dup)
		}
	}
}

func TestStreamSSRC(t *testing.T) {
	seen := map[uint32]bool{}
	for e := range uint32(100) {
		for k := range MaxStreams {
			s := StreamSSRC(0x4d440000+e, k)
			if seen[s] {
				t.Fatalf("SSRC %#x twice", s)
			}
			seen[s] = true
		}
	}
}

func TestConfigCheck(t *testing.T) {
	if err := (&Config{}).check(); err == nil {
		t.Fatal("empty config accepted")
	}
}

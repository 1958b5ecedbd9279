package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1234 (mdharness) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 0 0", 3250 * time.Millisecond, false},
		{"name with spaces and parens", "9 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, false},
		{"no name", "1234 mdharness S", 0, true},
		{"short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 2 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseStat = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseCoreBusy(t *testing.T) {
	in := "cpu  10 0 10 1000 0 0 0 0 0 0\ncpu0 5 0 5 500 0 0 0 0 0 0\ncpu1 100 1 20 9999 7 3 4 2 0 0\nintr 1\n"
	got, err := ParseCoreBusy([]byte(in), 1)
	if err != nil || got != 1300*time.Millisecond {
		t.Fatalf("cpu1: %v, %v; want 1.3s (iowait is idle)", got, err)
	}
	if _, err := ParseCoreBusy([]byte(in), 2); err == nil {
		t.Fatal("cpu2: no error")
	}
}

func TestSelf(t *testing.T) {
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

package attacktest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// nonZeroLines are the samples of a Prometheus exposition whose line (name
// and labels, lower-cased) contains all of words and whose value is not 0.
func nonZeroLines(body string, words ...string) []string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || line[i+1:] == "0" {
			continue
		}
		key := strings.ToLower(line[:i])
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(key, w) }) {
			out = append(out, line)
		}
	}
	return out
}

// diffIDs are the ids in a but not in b.
func diffIDs(a, b map[string]string) []string {
	var out []string
	for id, st := range a {
		if _, ok := b[id]; !ok {
			out = append(out, id+" "+st)
		}
	}
	slices.Sort(out)
	return out
}

// TestMassDisconnect: 300 endpoints are established, 150 in conference
// "bulk" and 150 in "leave"; a 3-party call streams; while 40 more
// endpoints join (the tunnel is busy with handshakes and media keys),
// conference "bulk" is deleted through the KD admin API (150 associations
// end at the KD: EndpointDisconnect to the MD) and at the same moment the
// 150 "leave" endpoints close (150 close_notify through the MD to the KD).
// Once the
// joins are over and things settle (up to 15 s), the MD control API and
// the KD admin API must list the same associations (none of "bulk" on
// either side, the call and the new joiners on both), and no daemon
// counter of dropped EndpointDisconnect messages may be non-zero (any
// sample whose name and labels mention both "disconnect" and "drop").
func TestMassDisconnect(t *testing.T) {
	needRoot(t)
	const half, busyN = 150, 40
	const bulkN = 2 * half
	s := newSys(t, sysConfig{conferences: []confSize{{"bulk", half}, {"leave", half}, {"call", 3}, {"busy", busyN}}, attackerAddrs: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	call := s.endpoints(2, 0, 3)
	if err := s.joinAll(ctx, call, 3); err != nil {
		s.fatal(err)
	}
	bulk := append(s.endpoints(0, 0, half), s.endpoints(1, 0, half)...)
	start := time.Now()
	if err := s.joinAll(ctx, bulk, 16); err != nil {
		s.fatal(err)
	}
	t.Logf("%d bulk endpoints joined in %.1fs", bulkN, time.Since(start).Seconds())
	m := startMedia(call...)
	defer m.stop()
	time.Sleep(500 * time.Millisecond)
	if l, err := s.mdAssociations(); err != nil || len(l) < bulkN+3 {
		s.fatal(fmt.Errorf("the MD lists %d associations, want %d (%w)", len(l), bulkN+3, err))
	}

	busy := s.endpoints(3, 0, busyN)
	var wg sync.WaitGroup
	var busyErr error
	wg.Go(func() { busyErr = s.joinAll(ctx, busy, 8) })
	time.Sleep(100 * time.Millisecond)
	deleted := time.Now()
	for _, e := range bulk[half:] {
		wg.Go(e.close)
	}
	if err := s.kdDelete("/v1/conferences/bulk"); err != nil {
		s.fatal(err)
	}
	wg.Wait()
	if busyErr != nil {
		t.Errorf("joins while the bulk conference ended: %v", busyErr)
	}
	t.Logf("%d busy endpoints joined, %d left, %.1fs after the deletion started", busyN, half, time.Since(deleted).Seconds())

	bulkTLS := map[string]bool{}
	for _, e := range bulk {
		bulkTLS[e.id.TLSID] = true
	}
	var mdOnly, kdOnly, bulkLeft []string
	var mdN, kdN int
	took, agree := eventually(15*time.Second, func() bool {
		mdl, err1 := s.mdAssociations()
		kdl, err2 := s.kdAssociations()
		if err1 != nil || err2 != nil {
			return false
		}
		md, kd := map[string]string{}, map[string]string{}
		bulkLeft = bulkLeft[:0]
		for _, a := range mdl {
			md[a.ID] = a.State
			if bulkTLS[a.TLSID] {
				bulkLeft = append(bulkLeft, "md:"+a.ID)
			}
		}
		for _, a := range kdl {
			kd[a.ID] = a.State
			if bulkTLS[a.TLSID] {
				bulkLeft = append(bulkLeft, "kd:"+a.ID)
			}
		}
		mdN, kdN = len(md), len(kd)
		mdOnly, kdOnly = diffIDs(md, kd), diffIDs(kd, md)
		return len(mdOnly) == 0 && len(kdOnly) == 0 && len(bulkLeft) == 0
	})
	for _, err := range m.stop() {
		t.Errorf("call sender stopped: %v", err)
	}
	t.Logf("after %.1fs: MD lists %d, KD lists %d; MD only %d, KD only %d, bulk left %d", took.Seconds(), mdN, kdN, len(mdOnly), len(kdOnly), len(bulkLeft))
	if !agree {
		t.Errorf("the MD and the KD disagree 15s after %d associations ended at once: MD only %d %v, KD only %d %v, bulk associations left %d",
			bulkN, len(mdOnly), head(mdOnly), len(kdOnly), head(kdOnly), len(bulkLeft))
	}
	if want := 3 + busyN; mdN != want || kdN != want {
		t.Errorf("after settling the MD lists %d and the KD %d associations, want %d (the call and the busy joiners)", mdN, kdN, want)
	}
	for name, f := range map[string]func() (string, error){"mdfast": s.mdMetrics, "keydist": s.kdMetrics} {
		body, err := f()
		if err != nil {
			t.Error(err)
			continue
		}
		if nz := nonZeroLines(body, "disconnect", "drop"); len(nz) > 0 {
			t.Errorf("%s dropped EndpointDisconnect messages: %v", name, nz)
		}
	}
}

// head is the first few of l, for messages.
func head(l []string) []string { return l[:min(len(l), 5)] }

package attacktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Issue 15, SSRC part: "A participant that rejoins with the same SSRC gets
// nothing delivered while anyone who was present when it left is still in
// the call... One registered participant can squat a future joiner's SSRC,
// or fill the conference's 4,096 SSRC slots in 6 seconds, and later joiners
// lose all media." The fix is in internal/keytable (see its package doc:
// re-based claims, MaxSSRCsPerSender, ClaimContest).

// firstArrival is the earliest arrival among seqs of got that keep
// (zero: none).
func firstArrival(got map[uint16]time.Time, keep func(uint16) bool) time.Time {
	var first time.Time
	for seq, at := range got {
		if keep(seq) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// logSSRCMetrics logs mdfast's non-zero SSRC counters (read leniently:
// any sample whose name or labels mention "ssrc").
func logSSRCMetrics(t *testing.T, s *sys) {
	t.Helper()
	body, err := s.mdMetrics()
	if err != nil {
		t.Logf("mdfast /metrics: %v", err)
		return
	}
	t.Logf("mdfast SSRC counters: %v", nonZeroLines(body, "ssrc"))
}

// sentAt is when snd sent seq (zero if it did not).
func sentAt(snd *endpoint, seq int) time.Time {
	snd.sendMu.Lock()
	defer snd.sendMu.Unlock()
	if seq < 0 || seq >= len(snd.sent) {
		return time.Time{}
	}
	return time.Unix(0, snd.sent[seq])
}

// TestSSRCRejoin: a 3-party call (A, B, C) streams at 50 packets/s each; A
// stops, closes its session (close_notify) and the test waits until
// neither the MD control API nor the KD admin API lists A's association.
// Then A rejoins: A's identity, a new socket and address, a new DTLS
// association and new end-to-end key, and the SAME SSRC, starting over at
// SEQ 0 (so its SRTP indices repeat those of its first stream: the MD must
// re-base them towards B and C). B and C must receive every packet of the
// new stream sent from 500 ms after A's rejoin completed (Dial returned)
// to the end, each opened and octet for octet what A sent (allowance: the
// first 500 ms, while the KD's EKTKey and A's FullEKTField propagate;
// measured, logged), and A must receive every packet of B and C in that
// window. B and C must lose nothing of each other throughout.
//
// Against the pre-fix keytable this fails: an SSRC whose sender left was
// blocked as long as any receiver that had been sent it stayed in the
// conference (to avoid repeating a (receiver key, SSRC, index)), so B and
// C would receive none of A's new stream.
func TestSSRCRejoin(t *testing.T) {
	needRoot(t)
	// Four identities: A, B, C and one unused; the fourth address of the
	// endpoints' namespace is A's after the rejoin.
	s := newSys(t, sysConfig{conferences: []confSize{{"call", 4}}, attackerAddrs: -1})
	eps := s.endpoints(0, 0, 3)
	a, b, c := eps[0], eps[1], eps[2]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.joinAll(ctx, eps, 3); err != nil {
		s.fatal(err)
	}
	mdA := findMD(mustMD(t, s), a.local)
	if mdA == nil {
		s.fatal(fmt.Errorf("the MD does not list A (%s)", a.local))
	}
	bc := startMedia(b, c)
	defer bc.stop()
	am := startMedia(a)
	mediaStart := time.Now()
	time.Sleep(1500 * time.Millisecond)
	for _, err := range am.stop() {
		t.Errorf("A's sender stopped: %v", err)
	}
	left := time.Now()
	time.Sleep(300 * time.Millisecond) // A receives what B and C sent before it stopped
	aLocal := a.local
	a.close()
	took, gone := eventually(10*time.Second, func() bool {
		md, err1 := s.mdAssociations()
		kd, err2 := s.kdAssociations()
		return err1 == nil && err2 == nil && findMD(md, aLocal) == nil && findKD(kd, mdA.ID) == nil
	})
	if !gone {
		s.fatal(fmt.Errorf("A's association %s still listed by the MD or the KD %.1fs after A closed", mdA.ID, took.Seconds()))
	}
	t.Logf("A (%s, SSRC %#08x) left; its association %s was gone from the MD and the KD after %.2fs", aLocal, a.ssrc, mdA.ID, took.Seconds())
	before := account(eps, eps, mediaStart.Add(300*time.Millisecond), left)

	// The new A starts its SSRC over at SEQ 0: forget what B and C
	// recorded of the first stream (A stopped sending before it closed,
	// and its association is gone: nothing of it is in flight).
	b.forget(a.ssrc)
	c.forget(a.ssrc)
	a2, err := s.newEndpoint(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	a2.name = a.name + "'"
	a2.setSSRC(a.ssrc)
	if err := a2.join(ctx, s.files.KDFingerprint); err != nil {
		s.fatal(fmt.Errorf("A's rejoin: %w", err))
	}
	rejoined := time.Unix(0, a2.joinedAt.Load())
	if mdA2 := findMD(mustMD(t, s), a2.local); mdA2 == nil || mdA2.ID == mdA.ID {
		s.fatal(fmt.Errorf("after the rejoin the MD lists A' (%s) as %+v, want a new association (the old one was %s)", a2.local, mdA2, mdA.ID))
	}
	t.Logf("A rejoined from %s with SSRC %#08x in %.0fms", a2.local, a2.ssrc, a2.joinTime.Seconds()*1000)
	am2 := startMedia(a2)
	time.Sleep(3 * time.Second)
	end := time.Now()
	for _, err := range append(am2.stop(), bc.stop()...) {
		t.Errorf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // in-flight packets

	from := rejoined.Add(500 * time.Millisecond)
	early := account([]*endpoint{a2}, []*endpoint{b, c}, rejoined, from)
	toBC := account([]*endpoint{a2}, []*endpoint{b, c}, from, end)
	toA := account([]*endpoint{b, c}, []*endpoint{a2}, from, end)
	between := account([]*endpoint{b, c}, []*endpoint{b, c}, mediaStart.Add(300*time.Millisecond), end)
	t.Logf("media before A left: %v", before)
	t.Logf("A' -> B, C in the first 500ms after the rejoin (allowance, not asserted): %v", early)
	t.Logf("A' -> B, C from 500ms after the rejoin: %v", toBC)
	t.Logf("B, C -> A' from 500ms after the rejoin: %v", toA)
	t.Logf("B <-> C over the leave and the rejoin: %v", between)
	first := a2.sentAtFirst()
	for _, r := range []*endpoint{b, c} {
		if at := firstArrival(r.arrivals(a.ssrc), func(uint16) bool { return true }); at.IsZero() {
			t.Logf("%s received nothing of A' (A' sent its first packet %+.0fms after the rejoin)", r.name, first.Sub(rejoined).Seconds()*1000)
		} else {
			t.Logf("%s received A' first %+.0fms after the rejoin (A' sent its first packet at %+.0fms)", r.name,
				at.Sub(rejoined).Seconds()*1000, first.Sub(rejoined).Seconds()*1000)
		}
	}
	logSSRCMetrics(t, s)

	if before.lost != 0 || before.expected == 0 {
		t.Errorf("the call lost media before A left (harness or system broken): %v", before)
	}
	if toBC.lost != 0 || toBC.expected == 0 {
		t.Errorf("B and C did not receive A's stream after A rejoined with the same SSRC: %v", toBC)
	}
	if toA.lost != 0 || toA.expected == 0 {
		t.Errorf("A did not receive B and C after its rejoin: %v", toA)
	}
	if between.lost != 0 || between.expected == 0 {
		t.Errorf("B and C lost media of each other over A's leave and rejoin: %v", between)
	}
	for _, e := range []*endpoint{a, b, c, a2} {
		if n := e.bad.Load(); n != 0 {
			t.Errorf("%s opened %d packets that are not what was sent", e.name, n)
		}
	}
}

// sentAtFirst is when e sent its first packet (zero: none yet).
func (e *endpoint) sentAtFirst() time.Time { return sentAt(e, 0) }

// squatCase is one run of TestSSRCSquatter.
type squatCase struct {
	name   string
	kdArgs []string
	// silent: S stops sending under J's SSRC 1.5 s before J joins (it
	// keeps its other SSRCs); otherwise it goes on at 4 packets/s.
	silent bool
}

// TestSSRCSquatter: a 2-party call (A, B) streams at 50 packets/s; a
// registered participant S (a real perc endpoint of the same conference,
// its own DTLS association and keys) sends under 64 SSRCs, the first of
// them the SSRC that a later joiner J will use: one packet under each
// every 250 ms, with SEQs from 0x8000 so that the receivers' records tell
// S's packets under J's SSRC from J's (J's SEQs start at 0 and stay far
// below in this test). After 2 s, A and B must have received S's packets
// under J's SSRC (S did own it) and under at most 16 (MaxSSRCsPerSender)
// of S's SSRCs. Then J joins and streams at 50 packets/s under its SSRC.
// Always asserted: none of S's packets under J's SSRC arrive later than
// 1.5 s after J's first packet (the MD took the SSRC from S: the 1 s
// ClaimContest and the takeover at J's next packet), at most 16 of S's
// SSRCs are delivered after that, J receives A and B from 500 ms after its
// join, and A and B lose nothing of each other. The end-to-end goal: A and
// B receive every packet of J sent from 1.5 s after J's first packet
// (allowance: the contest, and up to one FullEKTInterval of 100 ms until a
// receiver learns J's key; measured, logged), each octet for octet.
//
// Two cases:
//
//   - silent-rekey-on-join: keydist runs with -rekey-on-join, and S
//     stops sending under J's SSRC 1.5 s before J joins (a silent
//     squatter). The end-to-end goal is asserted.
//   - active-default: keydist's defaults (a new EKTKey only when a member
//     leaves) and S keeps sending under J's SSRC at 4 packets/s. A and B
//     learnt S's end-to-end key for that SSRC under the conference's
//     current SPI and, as RFC 8870 section 4.3.2 requires, refuse any
//     other key for it under that SPI: J cannot be heard under it. J's
//     perc session sees S's packets under its own SSRC and reports the
//     collision (RFC 3550 section 8.2); J, as an application must, moves
//     to a new random SSRC, which S cannot have learnt. The end-to-end
//     goal is asserted on J's stream under whatever SSRC it ends on.
//
// Against the pre-fix keytable the MD part fails: any sender could claim
// any number of SSRCs, first come first served, and kept them as long as it
// stayed, so every packet of J collided with S's claim and was dropped, S's
// packets under J's SSRC went on being delivered, and A and B received all
// 64 of S's SSRCs.
func TestSSRCSquatter(t *testing.T) {
	needRoot(t)
	for _, sc := range []squatCase{
		{name: "silent-rekey-on-join", kdArgs: []string{"-rekey-on-join"}, silent: true},
		{name: "active-default"},
	} {
		t.Run(sc.name, func(t *testing.T) { runSquatter(t, sc) })
	}
}

func runSquatter(t *testing.T, sc squatCase) {
	const (
		squatN    = 64 // perc sends at most 64 SSRCs per session
		budget    = 16 // keytable's default MaxSSRCsPerSender
		squatSeq0 = 0x8000
		squatGap  = 250 * time.Millisecond
		allowance = 1500 * time.Millisecond
	)
	s := newSys(t, sysConfig{conferences: []confSize{{"call", 4}}, attackerAddrs: -1, kdArgs: sc.kdArgs})
	eps := s.endpoints(0, 0, 4)
	a, b, sq, j := eps[0], eps[1], eps[2], eps[3]
	members := []*endpoint{a, b}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.joinAll(ctx, []*endpoint{a, b, sq}, 3); err != nil {
		s.fatal(err)
	}
	squatted := []uint32{j.ssrc}
	for k := 1; k < squatN; k++ {
		squatted = append(squatted, 0x5a000000+uint32(k))
	}
	isSquat := map[uint32]bool{}
	for _, x := range squatted {
		isSquat[x] = true
	}

	am := startMedia(members...)
	defer am.stop()
	mediaStart := time.Now()

	// S: one packet under each of its 64 SSRCs per round, J's first;
	// J's left out once quiet is closed.
	sqSess := sq.sess.Load()
	stopSquat, quiet := make(chan struct{}), make(chan struct{})
	var squatWG sync.WaitGroup
	var squatErr error
	var squatRounds int
	squatWG.Go(func() {
		tk := time.NewTicker(squatGap)
		defer tk.Stop()
		for round := 0; ; round++ {
			for i, x := range squatted {
				select {
				case <-quiet:
					if i == 0 {
						continue
					}
				default:
				}
				if err := sq.sendAs(sqSess, x, uint16(squatSeq0+round)); err != nil {
					squatErr = fmt.Errorf("squatter: SSRC %#08x: %w", x, err)
					return
				}
			}
			squatRounds = round + 1
			select {
			case <-stopSquat:
				return
			case <-tk.C:
			}
		}
	})
	stopS := sync.OnceFunc(func() { close(stopSquat); squatWG.Wait() })
	defer stopS()
	if sc.silent {
		// S goes quiet on J's SSRC once A and B have had some of it: with
		// -rekey-on-join, S's first packets can come under an EKTKey the
		// members have not received yet, and a fixed pause may lose all
		// of the few S sends under that SSRC (the check below would then
		// fail for the wrong reason).
		heard := func() bool {
			for _, r := range members {
				if len(r.arrivals(j.ssrc)) == 0 {
					return false
				}
			}
			return true
		}
		time.Sleep(500 * time.Millisecond)
		for deadline := time.Now().Add(3 * time.Second); !heard() && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		close(quiet)
		time.Sleep(1500 * time.Millisecond)
	} else {
		time.Sleep(2 * time.Second)
	}

	// sSSRCs are S's SSRCs r received packets of S under in [from, to).
	sSSRCs := func(r *endpoint, from, to time.Time) []uint32 {
		var out []uint32
		for _, x := range r.ssrcs() {
			if !isSquat[x] {
				continue
			}
			for seq, at := range r.arrivals(x) {
				if seq >= squatSeq0 && !at.Before(from) && at.Before(to) {
					out = append(out, x)
					break
				}
			}
		}
		return out
	}
	preJ := time.Now()
	for _, r := range members {
		l := sSSRCs(r, mediaStart, preJ)
		t.Logf("before J: %s received S's packets under %d SSRCs (J's %#08x among them: %v)", r.name, len(l), j.ssrc, slices.Contains(l, j.ssrc))
		if len(l) > budget {
			t.Errorf("before J: %s received S's packets under %d SSRCs, over the per-sender budget of %d", r.name, len(l), budget)
		}
		if !slices.Contains(l, j.ssrc) {
			t.Errorf("before J: %s received nothing of S under J's SSRC %#08x: S did not squat it (the test proves nothing)", r.name, j.ssrc)
		}
	}

	if err := j.join(ctx, s.files.KDFingerprint); err != nil {
		s.fatal(fmt.Errorf("J's join while S squats its SSRC: %w", err))
	}
	joined := time.Unix(0, j.joinedAt.Load())
	t.Logf("J joined in %.0fms (SSRC %#08x)", j.joinTime.Seconds()*1000, j.ssrc)
	jm := startMedia(j)
	time.Sleep(4500 * time.Millisecond)
	end := time.Now()
	stopS()
	for _, err := range append(jm.stop(), am.stop()...) {
		t.Errorf("sender stopped: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // in-flight packets
	if squatErr != nil {
		t.Errorf("%v", squatErr)
	}
	t.Logf("S sent %d rounds of %d SSRCs", squatRounds, squatN)

	jFirst := j.sentAtFirst()
	from := jFirst.Add(allowance)
	j.sendMu.Lock()
	jSent := len(j.sent)
	j.sendMu.Unlock()
	early := account([]*endpoint{j}, members, jFirst, from)
	toMembers := account([]*endpoint{j}, members, from, end)
	toJ := account(members, []*endpoint{j}, joined.Add(500*time.Millisecond), end)
	between := account(members, members, mediaStart.Add(300*time.Millisecond), end)
	t.Logf("J -> A, B in the first %v after J's first packet (allowance, not asserted): %v", allowance, early)
	t.Logf("J -> A, B from %v after J's first packet: %v", allowance, toMembers)
	t.Logf("A, B -> J from 500ms after J's join: %v", toJ)
	t.Logf("A <-> B throughout: %v", between)
	jNow := j.cur.Load()
	if st := j.sess.Load(); st != nil {
		t.Logf("J sends under %#08x at the end (given %#08x); SSRC collisions J saw: %d", jNow, j.ssrc, st.Stats().SSRCCollisions)
	}
	for _, r := range members {
		got := r.arrivals(jNow)
		first := "never"
		if at := firstArrival(got, func(seq uint16) bool { return seq < squatSeq0 }); !at.IsZero() {
			first = fmt.Sprintf("%+.0fms after J's first packet", at.Sub(jFirst).Seconds()*1000)
		}
		// The first SEQ of J from which r received every packet.
		all := jSent
		for seq := jSent - 1; seq >= 0; seq-- {
			if _, ok := got[uint16(seq)]; !ok {
				break
			}
			all = seq
		}
		allAt := "never"
		if all < jSent {
			allAt = fmt.Sprintf("%+.0fms", sentAt(j, all).Sub(jFirst).Seconds()*1000)
		}
		var lastS time.Time
		for seq, at := range got {
			if seq >= squatSeq0 && at.After(lastS) {
				lastS = at
			}
		}
		st := r.sess.Load()
		var ps string
		if st != nil {
			x := st.Stats()
			ps = fmt.Sprintf("received=%d drop_no_key=%d drop_inner=%d drop_replay=%d drop_outer=%d ekt_epoch=%d ekt_wrong_ssrc=%d",
				x.Received, x.DropNoKey, x.DropInner, x.DropReplay, x.DropOuter, x.EKTEpoch, x.EKTWrongSSRC)
		}
		t.Logf("%s: J's first packet arrived %s; every packet of J from SEQ %d (sent %s); S's last packet under J's SSRC arrived %+.0fms; perc: %s",
			r.name, first, all, allAt, lastS.Sub(jFirst).Seconds()*1000, ps)
		if lastS.After(from) {
			t.Errorf("%s still received S's packets under J's SSRC %.2fs after J's first packet", r.name, lastS.Sub(jFirst).Seconds())
		}
		l := sSSRCs(r, from, end.Add(300*time.Millisecond))
		t.Logf("%s received S's packets under %d SSRCs after the takeover", r.name, len(l))
		if len(l) > budget {
			t.Errorf("after the takeover %s received S's packets under %d SSRCs, over the per-sender budget of %d", r.name, len(l), budget)
		}
	}
	logSSRCMetrics(t, s)

	if toMembers.lost != 0 || toMembers.expected == 0 {
		t.Errorf("A and B did not receive J's media from %v after J's first packet: %v", allowance, toMembers)
	}
	if toJ.lost != 0 || toJ.expected == 0 {
		t.Errorf("J did not receive A and B: %v", toJ)
	}
	if between.lost != 0 || between.expected == 0 {
		t.Errorf("A and B lost media of each other while S squatted: %v", between)
	}
	for _, e := range eps {
		if n := e.bad.Load(); n != 0 {
			t.Errorf("%s opened %d packets that are not what was sent", e.name, n)
		}
	}
}

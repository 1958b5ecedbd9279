package attacktest

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// findMD is the MD's association from addr (nil if none).
func findMD(l []mdAssoc, addr netip.AddrPort) *mdAssoc {
	for i := range l {
		if a, err := netip.ParseAddrPort(l[i].Addr); err == nil && a == addr {
			return &l[i]
		}
	}
	return nil
}

// findKD is the KD's association id (nil if none).
func findKD(l []kdAssoc, id string) *kdAssoc {
	for i := range l {
		if l[i].ID == id {
			return &l[i]
		}
	}
	return nil
}

// teardownAttacks are the spoofed records of TestSpoofedTeardown; pkt
// gets a fresh record sequence number and the captured ClientHello.
var teardownAttacks = []struct {
	name string
	pkt  func(seq uint64, hello []byte) []byte
}{
	{"alert-fatal-dtls", func(seq uint64, _ []byte) []byte { return record(ctAlert, 0xfefd, 0, seq, []byte{2, 40}) }},
	{"alert-fatal-150303", func(seq uint64, _ []byte) []byte { return record(ctAlert, 0x0303, 0, seq, []byte{2, 10}) }},
	{"alert-close-notify", func(seq uint64, _ []byte) []byte { return record(ctAlert, 0xfefd, 0, seq, []byte{1, 0}) }},
	{"epoch1-random-alert", func(seq uint64, _ []byte) []byte { return record(ctAlert, 0xfefd, 1, seq, randomBytes(26)) }},
	{"epoch1-random-appdata", func(seq uint64, _ []byte) []byte { return record(ctAppData, 0xfefd, 1, seq, randomBytes(64)) }},
	{"fresh-clienthello", func(_ uint64, hello []byte) []byte { return freshHello(hello) }},
}

// TestSpoofedTeardown: for each spoofed record (a subtest each, on a call
// of its own in one system), a 3-party call runs (50 packets/s per
// endpoint) and an attacker on the same bridge sends five copies, 100 ms
// apart, from participant A's address and port to the MD's media port: a
// plaintext fatal alert (DTLS, then TLS "15 03 03" version bytes), a
// plaintext close_notify, epoch-1 records of random bytes (alert,
// application data), a fresh cookie-less ClientHello with A's tls-id. A's
// association must survive on both sides (MD control API: same id,
// established; KD admin API: same id, established), and every participant
// must receive every packet of every other one from the first spoofed
// record until 800 ms after the last.
func TestSpoofedTeardown(t *testing.T) {
	needRoot(t)
	var confs []confSize
	for _, at := range teardownAttacks {
		confs = append(confs, confSize{at.name, 3})
	}
	s := newSys(t, sysConfig{conferences: confs, attackerAddrs: 0})
	raw, err := newRawSender(s.atk.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.close()
	for ci, at := range teardownAttacks {
		t.Run(at.name, func(t *testing.T) {
			eps := s.endpoints(ci, 0, 3)
			defer func() {
				for _, e := range eps {
					e.close()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.joinAll(ctx, eps, 3); err != nil {
				t.Fatal(err)
			}
			a := eps[0]
			aAddr := a.local
			mdl, err := s.mdAssociations()
			if err != nil {
				t.Fatal(err)
			}
			mdA := findMD(mdl, aAddr)
			if mdA == nil || mdA.State != "established" {
				t.Fatalf("the MD does not list A (%s) as established: %+v", aAddr, mdl)
			}
			kdl, err := s.kdAssociations()
			if err != nil {
				t.Fatal(err)
			}
			if k := findKD(kdl, mdA.ID); k == nil || k.State != "established" {
				t.Fatalf("the KD does not list A's association %s as established: %+v", mdA.ID, kdl)
			}
			hello, err := realClientHello(a.id.TLSID)
			if err != nil {
				t.Fatal(err)
			}

			m := startMedia(eps...)
			defer m.stop()
			mediaStart := time.Now()
			time.Sleep(1200 * time.Millisecond) // receivers learn every sender's key

			md := netip.AddrPortFrom(mdIP, mediaPort)
			attackStart := time.Now()
			for i := range 5 {
				if _, err := raw.send(aAddr, md, at.pkt(1<<20+uint64(i), hello)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			attackEnd := time.Now()
			time.Sleep(time.Second)
			mdl, err = s.mdAssociations()
			if err != nil {
				t.Fatal(err)
			}
			kdl, err = s.kdAssociations()
			if err != nil {
				t.Fatal(err)
			}
			serrs := m.stop()
			time.Sleep(300 * time.Millisecond) // in-flight packets
			base := account(eps, eps, mediaStart.Add(300*time.Millisecond), attackStart)
			during := account(eps, eps, attackStart, attackEnd.Add(800*time.Millisecond))
			mdNow, kdNow := findMD(mdl, aAddr), findKD(kdl, mdA.ID)
			t.Logf("A %s association %s; after the attack: MD lists %v, KD lists %v", aAddr, mdA.ID, mdNow, kdNow)
			t.Logf("media before the attack: %v", base)
			t.Logf("media during the attack: %v", during)
			for _, e := range serrs {
				t.Errorf("sender stopped: %v", e)
			}
			if base.lost != 0 || base.expected == 0 {
				t.Errorf("the call lost media before any attack (harness or system broken): %v", base)
			}
			switch {
			case mdNow == nil:
				t.Errorf("the MD no longer lists A's association")
			case mdNow.ID != mdA.ID || mdNow.State != "established":
				t.Errorf("the MD lists A as %s %s (was %s established)", mdNow.ID, mdNow.State, mdA.ID)
			}
			switch {
			case kdNow == nil:
				t.Errorf("the KD no longer lists A's association %s", mdA.ID)
			case kdNow.State != "established":
				t.Errorf("the KD lists A's association %s as %s", mdA.ID, kdNow.State)
			}
			if during.lost != 0 || during.expected == 0 {
				t.Errorf("media lost while A's 5-tuple was spoofed: %v", during)
			}
		})
	}
}

package dtls

import (
	"testing"
	"time"
)

// Regressions: what the fuzz targets (fuzz_test.go) or reviews found, kept
// as tests once fixed.

// TestOneHelloVerifyRequestPerDatagram: a server doing the cookie
// exchange answers every record of a datagram that carries a ClientHello
// with a HelloVerifyRequest datagram of its own. One spoofed UDP datagram
// of 64 KiB packed with minimal ClientHello records (67 octets each) makes
// it send about 980 datagrams (58 KiB) to the spoofed address: a packet
// amplification of three orders of magnitude, which the stateless cookie
// exchange exists to prevent (RFC 6347 section 4.2.1), and far above the
// "no more than a flight per call" bound FuzzServerConn checks (8 × MTU).
// Cause: handleHandshakeRecord runs once per record and, in
// sWaitClientHello, each complete ClientHello goes to serverClientHello,
// which emits a HelloVerifyRequest and resets the reassembler for the next
// record.
func TestOneHelloVerifyRequestPerDatagram(t *testing.T) {
	s, err := NewServer(serverConfig(t, "p256", "p256"), []byte("198.51.100.1:5004"))
	if err != nil {
		t.Fatal(err)
	}
	// The smallest ClientHello the server answers: no extensions.
	ch, err := marshalClientHello(&clientHelloParams{suites: []uint16{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	ch = ch[:2+randomLen+1+1+2+2+2] // version, random, session_id, cookie, suites, compression; no extensions
	var dg []byte
	records := 0
	for rec := plainRecord(typeClientHello, 0, 0, ch); len(dg)+len(rec) <= 65507; records++ {
		dg = append(dg, plainRecord(typeClientHello, 0, uint64(records), ch)...)
	}
	if err := s.HandleDatagram(time.Now(), dg); err != nil {
		t.Fatal(err)
	}
	out := s.Datagrams()
	total := 0
	for _, d := range out {
		total += len(d)
	}
	if len(out) > 1 || total > maxOutPerCall*s.cfg.MTU {
		t.Fatalf("one datagram of %d octets (%d ClientHello records) answered with %d datagrams, %d octets",
			len(dg), records, len(out), total)
	}
}

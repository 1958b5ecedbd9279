package dtls

import (
	"bytes"
	"testing"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// relayHVR plays a relay that runs the cookie exchange itself (the PERC
// MD): a ClientHello without cookie is answered with a HelloVerifyRequest
// carrying relayCookie and never reaches the server.
func relayHVR(l *link, relayCookie []byte, answered *int) func(bool, []byte) [][]byte {
	return func(fromClient bool, d []byte) [][]byte {
		if !fromClient {
			return [][]byte{d}
		}
		rec, _, err := dtlsmsg.NextRecord(d)
		if err != nil || rec.Epoch != 0 || rec.ContentType != dtlsmsg.ContentTypeHandshake {
			return [][]byte{d}
		}
		h, body, _, err := dtlsmsg.NextHandshake(rec.Fragment)
		if err != nil || h.Type != dtlsmsg.HandshakeTypeClientHello {
			return [][]byte{d}
		}
		ch, err := dtlsmsg.ParseClientHello(body)
		if err != nil || len(ch.Cookie) > 0 {
			return [][]byte{d}
		}
		*answered++
		hvr := marshalHelloVerifyRequest(relayCookie)
		pt := appendHandshakeHeader(nil, typeHelloVerifyRequest, len(hvr), h.MessageSeq, 0, len(hvr))
		pt = append(pt, hvr...)
		out := appendRecordHeader(nil, contentHandshake, versionDTLS10, 0, rec.Sequence, len(pt))
		l.toC = append(l.toC, append(out, pt...))
		return nil
	}
}

// TestRelayVerifiesCookies: with RelayVerifiesCookies the server accepts a
// ClientHello whose cookie a relay made (and verified); without it, the
// same ClientHello gets the server's own HelloVerifyRequest.
func TestRelayVerifiesCookies(t *testing.T) {
	relayCookie := bytes.Repeat([]byte{0x5A}, 32)
	for _, trust := range []bool{true, false} {
		scfg := serverConfig(t, "p256", "p256b")
		scfg.RelayVerifiesCookies = trust
		l := newLink(t, clientConfig(t, "p256b", "p256"), scfg)
		var relayAnswers, serverHVRs int
		relay := relayHVR(l, relayCookie, &relayAnswers)
		l.filter = func(fromClient bool, d []byte) [][]byte {
			if !fromClient {
				if rec, _, err := dtlsmsg.NextRecord(d); err == nil && rec.Epoch == 0 {
					if h, _, _, err := dtlsmsg.NextHandshake(rec.Fragment); err == nil && h.Type == dtlsmsg.HandshakeTypeHelloVerifyRequest {
						serverHVRs++
					}
				}
			}
			return relay(fromClient, d)
		}
		l.start()
		for range 20 {
			if hasEvent(l.cev, EventHandshakeComplete) && hasEvent(l.sev, EventHandshakeComplete) {
				break
			}
			l.advance()
		}
		if relayAnswers != 1 {
			t.Fatalf("trust=%v: relay answered %d ClientHellos", trust, relayAnswers)
		}
		if trust {
			if serverHVRs != 0 || !hasEvent(l.sev, EventHandshakeComplete) || !hasEvent(l.cev, EventHandshakeComplete) {
				t.Fatalf("trust: server HVRs %d, server events %v, client events %v", serverHVRs, l.sev, l.cev)
			}
			c, s := l.exportBoth(32)
			if !bytes.Equal(c, s) {
				t.Fatal("exports differ")
			}
		} else if serverHVRs == 0 {
			t.Fatal("a cookie the server did not make was accepted without RelayVerifiesCookies")
		}
	}
}

// TestRelayVerifiesCookiesStillAsksForOne: a server trusting its relay's
// cookies still answers a ClientHello that carries none with its own
// HelloVerifyRequest (a relay that does not run the exchange).
func TestRelayVerifiesCookiesStillAsksForOne(t *testing.T) {
	scfg := serverConfig(t, "p256", "p256b")
	scfg.RelayVerifiesCookies = true
	l := newLink(t, clientConfig(t, "p256b", "p256"), scfg)
	hvrs := 0
	l.filter = func(fromClient bool, d []byte) [][]byte {
		if !fromClient {
			if rec, _, err := dtlsmsg.NextRecord(d); err == nil && rec.Epoch == 0 {
				if h, _, _, err := dtlsmsg.NextHandshake(rec.Fragment); err == nil && h.Type == dtlsmsg.HandshakeTypeHelloVerifyRequest {
					hvrs++
				}
			}
		}
		return [][]byte{d}
	}
	l.start()
	if hvrs != 1 || !hasEvent(l.sev, EventHandshakeComplete) {
		t.Fatalf("server HelloVerifyRequests %d, server events %v", hvrs, l.sev)
	}
}

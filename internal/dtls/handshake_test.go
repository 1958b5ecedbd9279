package dtls

import (
	"bytes"
	"fmt"
	"testing"
)

func TestHandshakeMatrix(t *testing.T) {
	for _, suiteID := range DefaultCipherSuites {
		s, _ := suiteByID(suiteID)
		serverCert := "p256"
		if s.rsa {
			serverCert = "rsa"
		}
		for _, clientCert := range []string{"p256", "p384", "rsa"} {
			for _, g := range DefaultGroups {
				name := fmt.Sprintf("%04x/%s-client/group%d", suiteID, clientCert, g)
				t.Run(name, func(t *testing.T) {
					cc := clientConfig(t, clientCert, serverCert)
					cc.CipherSuites = []uint16{suiteID}
					cc.Groups = []Group{g}
					l := newLink(t, cc, serverConfig(t, serverCert, clientCert))
					l.start()
					if !hasEvent(l.cev, EventHandshakeComplete) || !hasEvent(l.sev, EventHandshakeComplete) {
						t.Fatalf("not complete: client %v (%v) server %v (%v)", l.cev, closedErr(l.cev), l.sev, closedErr(l.sev))
					}
					l.exportBoth(56)
					cs, _ := l.c.State()
					ss, _ := l.s.State()
					if cs.CipherSuite != suiteID || ss.CipherSuite != suiteID || cs.SRTPProfile != SRTPAEADAES128GCM || ss.SRTPProfile != cs.SRTPProfile {
						t.Fatalf("client state %+v server state %+v", cs, ss)
					}
					if !bytes.Equal(ss.PeerExternalSessionID, testTLSID) || !bytes.Equal(cs.PeerExternalSessionID, testKDTLSID) {
						t.Fatalf("external session ids: server saw %q, client saw %q", ss.PeerExternalSessionID, cs.PeerExternalSessionID)
					}
				})
			}
		}
	}
}

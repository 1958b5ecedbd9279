package dtls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mdfast/mdfast/internal/dtlsmsg"
)

// Negative tests: every MUST a peer can break, each asserting the alert
// and that no keys exist on either side.

// editPlain rewrites the whole (unfragmented) epoch-0 handshake messages of
// a datagram: f returns the new body, or nil to remove the message.
func editPlain(d []byte, f func(typ uint8, body []byte) []byte) []byte {
	var out []byte
	for rest := d; len(rest) > 0; {
		rec, r, err := dtlsmsg.NextRecord(rest)
		if err != nil {
			return append(out, rest...)
		}
		rest = r
		if rec.Epoch != 0 || rec.ContentType != contentHandshake {
			out = appendRecordHeader(out, rec.ContentType, rec.Version, rec.Epoch, rec.Sequence, len(rec.Fragment))
			out = append(out, rec.Fragment...)
			continue
		}
		var frag []byte
		for hs := rec.Fragment; len(hs) > 0; {
			h, body, r2, err := dtlsmsg.NextHandshake(hs)
			if err != nil {
				break
			}
			hs = r2
			if h.FragmentOffset == 0 && h.FragmentLength == h.Length {
				body = f(h.Type, bytes.Clone(body))
				if body == nil {
					continue
				}
			}
			frag = appendHandshakeHeader(frag, h.Type, len(body), h.MessageSeq, 0, len(body))
			frag = append(frag, body...)
		}
		if len(frag) > 0 {
			out = appendRecordHeader(out, rec.ContentType, rec.Version, rec.Epoch, rec.Sequence, len(frag))
			out = append(out, frag...)
		}
	}
	return out
}

// editProtected rewrites the plaintext of the epoch-1 records of a datagram
// sent by from, resealing them with from's keys and sequence numbers.
func editProtected(from *Conn, d []byte, f func(typ uint8, pt []byte) []byte) []byte {
	var out []byte
	for rest := d; len(rest) > 0; {
		rec, r, err := dtlsmsg.NextRecord(rest)
		if err != nil {
			return append(out, rest...)
		}
		rest = r
		if rec.Epoch != 1 {
			out = appendRecordHeader(out, rec.ContentType, rec.Version, rec.Epoch, rec.Sequence, len(rec.Fragment))
			out = append(out, rec.Fragment...)
			continue
		}
		pt, err := from.writeCipher.open(rec.ContentType, rec.Version, 1, rec.Sequence, rec.Fragment)
		if err != nil {
			panic(err)
		}
		out = from.writeCipher.seal(out, rec.ContentType, 1, rec.Sequence, f(rec.ContentType, pt))
	}
	return out
}

// editExtensions rebuilds a hello body with its extensions rewritten by f.
func editExtensions(body []byte, client bool, f func([]dtlsmsg.Extension) []dtlsmsg.Extension) []byte {
	var exts []dtlsmsg.Extension
	var head int
	if client {
		ch, err := dtlsmsg.ParseClientHello(body)
		if err != nil {
			panic(err)
		}
		exts = ch.Extensions
	} else {
		sh, err := dtlsmsg.ParseServerHello(body)
		if err != nil {
			panic(err)
		}
		exts = sh.Extensions
	}
	// The extensions block is the tail: find its start from its length.
	total := 2
	for _, e := range exts {
		total += 4 + len(e.Data)
	}
	head = len(body) - total
	var b cryptobyte.Builder
	b.AddBytes(body[:head])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range f(exts) {
			b.AddUint16(e.Type)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Data) })
		}
	})
	return b.BytesOrPanic()
}

func withoutExt(typ uint16) func([]dtlsmsg.Extension) []dtlsmsg.Extension {
	return func(exts []dtlsmsg.Extension) []dtlsmsg.Extension {
		var out []dtlsmsg.Extension
		for _, e := range exts {
			if e.Type != typ {
				out = append(out, e)
			}
		}
		return out
	}
}

func replaceExt(typ uint16, data []byte) func([]dtlsmsg.Extension) []dtlsmsg.Extension {
	return func(exts []dtlsmsg.Extension) []dtlsmsg.Extension {
		out := withoutExt(typ)(exts)
		return append(out, dtlsmsg.Extension{Type: typ, Data: data})
	}
}

// onMessage returns a link filter that rewrites message typ in datagrams of
// one direction with f (epoch 0).
func onMessage(fromClient bool, typ uint8, f func([]byte) []byte) func(bool, []byte) [][]byte {
	return func(fc bool, d []byte) [][]byte {
		if fc != fromClient {
			return [][]byte{d}
		}
		return [][]byte{editPlain(d, func(t uint8, body []byte) []byte {
			if t == typ {
				return f(body)
			}
			return body
		})}
	}
}

// assertNoKeys checks that neither side is established nor can export.
func assertNoKeys(t *testing.T, l *link) {
	t.Helper()
	if l.c.Established() || l.s.Established() {
		t.Fatalf("established: client %v server %v", l.c.Established(), l.s.Established())
	}
	for _, c := range []*Conn{l.c, l.s} {
		if k, err := c.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56); err == nil {
			t.Fatalf("keys exported: %x", k)
		}
	}
}

// failing runs a handshake with a tampering filter and checks which side
// sent which alert.
func failing(t *testing.T, l *link, serverFails bool, desc uint8) {
	t.Helper()
	l.start()
	for i := 0; i < 3 && closedErr(l.cev) == nil && closedErr(l.sev) == nil; i++ {
		l.advance()
	}
	failed, peer := l.s, l.cev
	if !serverFails {
		failed, peer = l.c, l.sev
	}
	wantAlert(t, failed.Err(), desc)
	var ae *AlertError
	if errors.As(failed.Err(), &ae) && ae.Remote {
		t.Fatalf("the alert was received, not sent: %v", ae)
	}
	// The peer got the alert (unless it had nothing to read it with).
	if err := closedErr(peer); err != nil {
		if !errors.As(err, &ae) || !ae.Remote || ae.Description != desc {
			t.Fatalf("peer ended with %v, want the remote alert %s", err, alertName(desc))
		}
	}
	assertNoKeys(t, l)
}

func TestNegativeHandshakes(t *testing.T) {
	cases := []struct {
		name        string
		setup       func(cc, sc *Config)
		filter      func(l *link) func(bool, []byte) [][]byte
		serverFails bool
		alert       uint8
	}{{
		name: "wrong client Finished",
		filter: func(l *link) func(bool, []byte) [][]byte {
			return func(fc bool, d []byte) [][]byte {
				if !fc || l.c.writeCipher == nil {
					return [][]byte{d}
				}
				return [][]byte{editProtected(l.c, d, func(typ uint8, pt []byte) []byte {
					if typ == contentHandshake && pt[0] == typeFinished {
						pt[len(pt)-1] ^= 1
					}
					return pt
				})}
			}
		},
		serverFails: true, alert: AlertDecryptError,
	}, {
		name: "wrong server Finished",
		filter: func(l *link) func(bool, []byte) [][]byte {
			return func(fc bool, d []byte) [][]byte {
				if fc || l.s.writeCipher == nil {
					return [][]byte{d}
				}
				return [][]byte{editProtected(l.s, d, func(typ uint8, pt []byte) []byte {
					if typ == contentHandshake && pt[0] == typeFinished {
						pt[handshakeHeaderLen] ^= 0x80
					}
					return pt
				})}
			}
		},
		serverFails: false, alert: AlertDecryptError,
	}, {
		name: "bad CertificateVerify signature",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeCertificateVerify, func(b []byte) []byte { b[len(b)-3] ^= 1; return b })
		},
		serverFails: true, alert: AlertDecryptError,
	}, {
		name: "CertificateVerify with a scheme not offered",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeCertificateVerify, func(b []byte) []byte { b[0], b[1] = 0x02, 0x03; return b }) // ecdsa_sha1
		},
		serverFails: true, alert: AlertIllegalParameter,
	}, {
		name: "bad ServerKeyExchange signature",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerKeyExchange, func(b []byte) []byte { b[len(b)-2] ^= 1; return b })
		},
		serverFails: false, alert: AlertDecryptError,
	}, {
		name:        "client certificate not the registered one",
		setup:       func(cc, sc *Config) { sc.VerifyPeer = pinned(testCert(t, "p384")) },
		serverFails: true, alert: AlertBadCertificate,
	}, {
		name: "VerifyPeer chooses its alert",
		setup: func(cc, sc *Config) {
			sc.VerifyPeer = func([][]byte) error { return Alert(AlertAccessDenied, errors.New("not registered")) }
		},
		serverFails: true, alert: AlertAccessDenied,
	}, {
		name:        "server certificate not the expected one",
		setup:       func(cc, sc *Config) { cc.VerifyPeer = pinned(testCert(t, "p384")) },
		serverFails: false, alert: AlertBadCertificate,
	}, {
		name: "missing client certificate",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeCertificate, func([]byte) []byte { return []byte{0, 0, 0} })
		},
		serverFails: true, alert: AlertHandshakeFailure,
	}, {
		name: "client certificate with an RSA key below 2048 bits",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeCertificate, func([]byte) []byte {
				b, _ := marshalCertificate(testCert(t, "rsa1024").Certificate)
				return b
			})
		},
		serverFails: true, alert: AlertInsufficientSecurity,
	}, {
		name: "client without extended_master_secret",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte { return editExtensions(b, true, withoutExt(extExtendedMaster)) })
		},
		serverFails: true, alert: AlertHandshakeFailure,
	}, {
		name: "server without extended_master_secret",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte { return editExtensions(b, false, withoutExt(extExtendedMaster)) })
		},
		serverFails: false, alert: AlertHandshakeFailure,
	}, {
		name: "renegotiation: non-empty renegotiation_info in the first ClientHello",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte {
				return editExtensions(b, true, replaceExt(extRenegotiationInfo, append([]byte{12}, make([]byte, 12)...)))
			})
		},
		serverFails: true, alert: AlertHandshakeFailure,
	}, {
		name: "renegotiation: non-empty renegotiation_info in the ServerHello",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, replaceExt(extRenegotiationInfo, append([]byte{24}, make([]byte, 24)...)))
			})
		},
		serverFails: false, alert: AlertHandshakeFailure,
	}, {
		name: "no common SRTP profile",
		setup: func(cc, sc *Config) {
			cc.SRTPProfiles = []uint16{SRTPAES128CMHMACSHA180}
			sc.SRTPProfiles = []uint16{SRTPAEADAES128GCM}
		},
		serverFails: true, alert: AlertHandshakeFailure,
	}, {
		name: "ClientHello without use_srtp",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte { return editExtensions(b, true, withoutExt(extUseSRTP)) })
		},
		serverFails: true, alert: AlertHandshakeFailure,
	}, {
		name: "duplicate extension in the ClientHello",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte {
				return editExtensions(b, true, func(e []dtlsmsg.Extension) []dtlsmsg.Extension { return append(e, e[0]) })
			})
		},
		serverFails: true, alert: AlertIllegalParameter,
	}, {
		name: "duplicate extension in the ServerHello",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, func(e []dtlsmsg.Extension) []dtlsmsg.Extension { return append(e, e[0]) })
			})
		},
		serverFails: false, alert: AlertIllegalParameter,
	}, {
		name: "ServerHello selects a profile not offered",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, replaceExt(extUseSRTP, []byte{0, 2, 0, 9, 0}))
			})
		},
		serverFails: false, alert: AlertIllegalParameter,
	}, {
		name:  "ServerHello with a different MKI",
		setup: func(cc, sc *Config) { cc.SRTPMKI = []byte{1, 2} },
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, replaceExt(extUseSRTP, []byte{0, 2, 0, 7, 2, 1, 3}))
			})
		},
		serverFails: false, alert: AlertIllegalParameter,
	}, {
		name: "ServerHello with an extension not offered",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, replaceExt(35, nil)) // session_ticket
			})
		},
		serverFails: false, alert: AlertUnsupportedExtension,
	}, {
		name: "ServerHello selects an EKT cipher not offered",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte {
				return editExtensions(b, false, replaceExt(extSupportedEKTCiphers, []byte{2}))
			})
		},
		setup: func(cc, sc *Config) {
			cc.EKTCiphers = []EKTCipher{EKTCipherAESKW128}
			sc.EKTCiphers = []EKTCipher{EKTCipherAESKW128}
		},
		serverFails: false, alert: AlertIllegalParameter,
	}, {
		name: "EKT offered together with an MKI",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte {
				return editExtensions(b, true, replaceExt(extUseSRTP, []byte{0, 2, 0, 7, 1, 9}))
			})
		},
		setup: func(cc, sc *Config) {
			cc.EKTCiphers = []EKTCipher{EKTCipherAESKW128}
			sc.EKTCiphers = []EKTCipher{EKTCipherAESKW128}
		},
		serverFails: true, alert: AlertIllegalParameter,
	}, {
		name: "client offers DTLS 1.0 only",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeClientHello, func(b []byte) []byte { b[0], b[1] = 0xFE, 0xFF; return b })
		},
		serverFails: true, alert: AlertProtocolVersion,
	}, {
		name: "server answers DTLS 1.0",
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(false, typeServerHello, func(b []byte) []byte { b[0], b[1] = 0xFE, 0xFF; return b })
		},
		serverFails: false, alert: AlertProtocolVersion,
	}, {
		name: "Finished sent in epoch 0",
		filter: func(l *link) func(bool, []byte) [][]byte {
			return func(fc bool, d []byte) [][]byte {
				if !fc || l.c.writeCipher == nil {
					return [][]byte{d}
				}
				// Replace the protected Finished by the same message in
				// plaintext.
				var out []byte
				for rest := d; len(rest) > 0; {
					rec, r, _ := dtlsmsg.NextRecord(rest)
					rest = r
					frag := rec.Fragment
					if rec.Epoch == 1 {
						frag, _ = l.c.writeCipher.open(rec.ContentType, rec.Version, 1, rec.Sequence, rec.Fragment)
					}
					out = appendRecordHeader(out, rec.ContentType, rec.Version, 0, rec.Sequence+100, len(frag))
					out = append(out, frag...)
				}
				return [][]byte{out}
			}
		},
		serverFails: true, alert: AlertUnexpectedMessage,
	}, {
		name:  "oversized handshake message",
		setup: func(cc, sc *Config) { sc.MaxHandshakeMessage = 1024 },
		filter: func(*link) func(bool, []byte) [][]byte {
			return onMessage(true, typeCertificate, func(b []byte) []byte { return append(b, make([]byte, 1100)...) })
		},
		serverFails: true, alert: AlertIllegalParameter,
	}, {
		name: "overlapping fragments that disagree",
		filter: func(*link) func(bool, []byte) [][]byte {
			return func(fc bool, d []byte) [][]byte {
				rec, _, _ := dtlsmsg.NextRecord(d)
				h, body, _, err := dtlsmsg.NextHandshake(rec.Fragment)
				if !fc || rec.Epoch != 0 || err != nil || h.Type != typeCertificate {
					return [][]byte{d}
				}
				// The Certificate again as two fragments: 0..40 with one
				// octet changed, then the whole message.
				bad := bytes.Clone(body[:40])
				bad[20] ^= 1
				f1 := appendHandshakeHeader(nil, h.Type, int(h.Length), h.MessageSeq, 0, 40)
				f1 = append(f1, bad...)
				r1 := appendRecordHeader(nil, contentHandshake, versionDTLS12, 0, rec.Sequence+50, len(f1))
				return [][]byte{append(r1, f1...), d}
			}
		},
		serverFails: true, alert: AlertDecodeError,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b")
			sc.RetransmitTimeout, cc.RetransmitTimeout = 100*time.Millisecond, 100*time.Millisecond
			if tc.setup != nil {
				tc.setup(cc, sc)
			}
			l := newLink(t, cc, sc)
			if tc.filter != nil {
				l.filter = tc.filter(l)
			}
			failing(t, l, tc.serverFails, tc.alert)
		})
	}
}

// TestRenegotiationRefused: after the handshake a ClientHello (server side)
// or a HelloRequest (client side), authenticated in epoch 1, gets a
// no_renegotiation warning; nothing changes and no new keys appear.
func TestRenegotiationRefused(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	l.start()
	before, _ := l.exportBoth(56)

	// A new ClientHello from the client, in epoch 1.
	body, err := marshalClientHello(&l.c.hs2().hello)
	if err != nil {
		t.Fatal(err)
	}
	hsMsg := transcriptBytes(nil, typeClientHello, l.c.sendSeq, body)
	var alerts [][]byte // protected alerts, decrypted, from each side
	l.filter = func(fc bool, d []byte) [][]byte {
		from := l.s
		if fc {
			from = l.c
		}
		editProtected(from, d, func(typ uint8, pt []byte) []byte {
			if typ == contentAlert {
				alerts = append(alerts, bytes.Clone(pt))
			}
			return pt
		})
		return [][]byte{d}
	}
	l.c.out = append(l.c.out, l.c.appendRecord(nil, contentHandshake, 1, hsMsg))
	l.run()
	if !l.s.Established() || !l.c.Established() {
		t.Fatalf("renegotiation attempt ended the association: %v %v", closedErr(l.sev), closedErr(l.cev))
	}
	if len(alerts) != 1 || !bytes.Equal(alerts[0], []byte{alertLevelWarning, AlertNoRenegotiation}) {
		t.Fatalf("server's answer to a ClientHello: alerts %x, want one no_renegotiation warning", alerts)
	}
	// A HelloRequest from the server, in epoch 1.
	hr := transcriptBytes(nil, typeHelloRequest, l.s.sendSeq, nil)
	l.s.out = append(l.s.out, l.s.appendRecord(nil, contentHandshake, 1, hr))
	l.run()
	if len(alerts) != 2 || !bytes.Equal(alerts[1], []byte{alertLevelWarning, AlertNoRenegotiation}) {
		t.Fatalf("client's answer to a HelloRequest: alerts %x, want a no_renegotiation warning", alerts)
	}
	if !l.s.Established() || !l.c.Established() {
		t.Fatalf("HelloRequest ended the association: %v %v", closedErr(l.sev), closedErr(l.cev))
	}
	after, _ := l.exportBoth(56)
	if !bytes.Equal(before, after) {
		t.Fatal("keys changed")
	}
	for _, ev := range append(l.cev, l.sev...) {
		if ev.Kind == EventKeysReady || ev.Kind == EventClosed {
			t.Fatalf("event %v", ev.Kind)
		}
	}
}

// hs2 gives a test a ClientHello parameter set after the handshake state
// is gone.
func (c *Conn) hs2() *handshake {
	h := &handshake{}
	h.hello = clientHelloParams{suites: c.cfg.CipherSuites, groups: c.cfg.Groups, profiles: c.cfg.SRTPProfiles}
	return h
}

// TestReplayedRecords: epoch-1 records replayed after the handshake are
// dropped by the replay window, counted, and change nothing; the same
// record replayed during an EKTKey exchange does not acknowledge twice.
func TestReplayedRecords(t *testing.T) {
	cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
	drops := map[DropReason]int{}
	sc.CountDrop = func(r DropReason) { drops[r]++ }
	cc.CountDrop = func(r DropReason) { drops[r]++ }
	var fromClient, fromServer [][]byte
	l := newLink(t, cc, sc)
	l.filter = func(fc bool, d []byte) [][]byte {
		if fc {
			fromClient = append(fromClient, d)
		} else {
			fromServer = append(fromServer, d)
		}
		return [][]byte{d}
	}
	l.start()
	if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, 3)); err != nil {
		t.Fatal(err)
	}
	l.run()
	nClient, nServer := len(l.cev), len(l.sev)
	for _, d := range fromClient {
		_ = l.s.HandleDatagram(l.now, d)
	}
	for _, d := range fromServer {
		_ = l.c.HandleDatagram(l.now, d)
	}
	l.collect()
	if !l.c.Established() || !l.s.Established() {
		t.Fatal("replays ended the association")
	}
	if len(l.cev) != nClient || len(l.sev) != nServer {
		t.Fatalf("replays caused events: client %v server %v", l.cev[nClient:], l.sev[nServer:])
	}
	if drops[DropReplay] < 3 { // client Finished, ACK, server Finished, EKTKey
		t.Fatalf("replay drops %d (%v)", drops[DropReplay], drops)
	}
	if got := receivedEKT(l.cev); len(got) != 1 {
		t.Fatalf("EKTKey delivered %d times", len(got))
	}
}

// TestWrongEpochRecords: records of an epoch that does not exist are
// dropped and counted; the handshake goes on.
func TestWrongEpochRecords(t *testing.T) {
	cc, sc := clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b")
	drops := 0
	sc.CountDrop = func(r DropReason) {
		if r == DropEpoch {
			drops++
		}
	}
	l := newLink(t, cc, sc)
	l.filter = func(fc bool, d []byte) [][]byte {
		if !fc {
			return [][]byte{d}
		}
		// Each datagram is preceded by a copy of itself claiming epoch 2.
		c := bytes.Clone(d)
		binary.BigEndian.PutUint16(c[3:5], 2)
		return [][]byte{c, d}
	}
	l.start()
	if !l.c.Established() || !l.s.Established() {
		t.Fatalf("handshake failed: %v %v", closedErr(l.cev), closedErr(l.sev))
	}
	if drops == 0 {
		t.Fatal("epoch-2 records not counted")
	}
}

// TestBeyondWindow: handshake messages far ahead of the expected
// message_seq are dropped, counted and never processed; a peer sending only
// those never gets a handshake: the server times out without keys.
func TestBeyondWindow(t *testing.T) {
	cc, sc := clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b")
	sc.MaxRetransmissions = 2
	window := 0
	sc.CountDrop = func(r DropReason) {
		if r == DropWindow {
			window++
		}
	}
	l := newLink(t, cc, sc)
	l.filter = shiftSeq(func(_ bool, d []byte) [][]byte { return [][]byte{d} }, handshakeWindow)
	l.start()
	for l.advance() {
	}
	if !errors.Is(l.s.Err(), ErrTimeout) {
		t.Fatalf("server ended with %v, want ErrTimeout", l.s.Err())
	}
	if window == 0 {
		t.Fatal("beyond-window messages not counted")
	}
	assertNoKeys(t, l)
}

// shiftSeq wraps a filter: the client's epoch-0 handshake messages after
// its second ClientHello get message_seq + by.
func shiftSeq(next func(bool, []byte) [][]byte, by uint16) func(bool, []byte) [][]byte {
	return func(fc bool, d []byte) [][]byte {
		ds := next(fc, d)
		if !fc {
			return ds
		}
		for i, d := range ds {
			for off := 0; off+recordHeaderLen+handshakeHeaderLen <= len(d); {
				n := int(binary.BigEndian.Uint16(d[off+11:]))
				if d[off] == contentHandshake && binary.BigEndian.Uint16(d[off+3:]) == 0 {
					h := d[off+recordHeaderLen:]
					if seq := binary.BigEndian.Uint16(h[4:]); h[0] != typeClientHello {
						binary.BigEndian.PutUint16(h[4:], seq+by)
					}
				}
				off += recordHeaderLen + n
			}
			ds[i] = d
		}
		return ds
	}
}

// TestUnauthenticatedAfterHandshake: once established, plaintext alerts and
// plaintext handshake messages (a spoofed fatal alert, a fresh ClientHello)
// end nothing.
func TestUnauthenticatedAfterHandshake(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	l.start()
	alert := appendRecordHeader(nil, contentAlert, versionDTLS12, 0, 999, 2)
	alert = append(alert, alertLevelFatal, AlertHandshakeFailure)
	for _, c := range []*Conn{l.c, l.s} {
		if err := c.HandleDatagram(l.now, alert); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh ClientHello (message_seq 0, epoch 0) to the server.
	c2, _ := NewClient(clientConfig(t, "p256b", "p256"))
	_ = c2.Start(l.now)
	for _, d := range c2.Datagrams() {
		if err := l.s.HandleDatagram(l.now, d); err != nil {
			t.Fatal(err)
		}
	}
	l.collect()
	if !l.c.Established() || !l.s.Established() || closedErr(l.cev) != nil || closedErr(l.sev) != nil {
		t.Fatal("an unauthenticated record ended the association")
	}
	l.exportBoth(56)
}

// TestEKTNegatives: the client refuses an EKTKey it did not negotiate or
// of the wrong size; an ACK that does not parse ends the association.
func TestEKTNegatives(t *testing.T) {
	t.Run("EKTKey without EKT negotiated", func(t *testing.T) {
		l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
		l.start()
		if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW128, 1)); !errors.Is(err, ErrNoEKT) {
			t.Fatalf("SendEKTKey without EKT: %v", err)
		}
		body, _ := marshalEKTKey(&EKTKey{Key: make([]byte, 16), MasterSalt: make([]byte, 14), SPI: 1})
		l.s.out = append(l.s.out, l.s.appendRecord(nil, contentHandshake, 1, transcriptBytes(nil, typeEKTKey, l.s.sendSeq, body)))
		l.run()
		wantAlert(t, l.c.Err(), AlertUnexpectedMessage)
	})
	t.Run("EKTKey of the wrong length", func(t *testing.T) {
		cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
		l := newLink(t, cc, sc)
		l.start()
		if err := l.s.SendEKTKey(l.now, ektKey(EKTCipherAESKW256, 1)); !errors.Is(err, ErrConfig) {
			t.Fatalf("SendEKTKey with a 32-octet key for AESKW_128: %v", err)
		}
		body, _ := marshalEKTKey(&EKTKey{Key: make([]byte, 32), MasterSalt: make([]byte, 14), SPI: 1})
		l.s.out = append(l.s.out, l.s.appendRecord(nil, contentHandshake, 1, transcriptBytes(nil, typeEKTKey, l.s.sendSeq, body)))
		l.run()
		wantAlert(t, l.c.Err(), AlertIllegalParameter)
		if len(receivedEKT(l.cev)) != 0 {
			t.Fatal("a bad EKTKey was delivered")
		}
	})
	t.Run("malformed ACK", func(t *testing.T) {
		cc, sc := doubleConfigs(t, SRTPDoubleAES128GCM, EKTCipherAESKW128)
		l := newLink(t, cc, sc)
		l.start()
		l.c.out = append(l.c.out, l.c.appendRecord(nil, contentACK, 1, []byte{0, 5, 1, 2, 3, 4, 5}))
		l.run()
		wantAlert(t, l.s.Err(), AlertDecodeError)
	})
}

// TestHelloVerify: a ClientHello without a cookie, or with a cookie made
// for another client, gets a HelloVerifyRequest and leaves no state; the
// record number and message_seq echo the ClientHello's.
func TestHelloVerify(t *testing.T) {
	sc := serverConfig(t, "p256", "p256b")
	s, err := NewServer(sc, []byte("198.18.0.1:4000"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewClient(clientConfig(t, "p256b", "p256"))
	now := time.Now()
	_ = c.Start(now)
	ch := c.Datagrams()[0]
	binary.BigEndian.PutUint16(ch[5:7], 0)
	binary.BigEndian.PutUint32(ch[7:11], 77) // record sequence 77
	_ = s.HandleDatagram(now, ch)
	out := s.Datagrams()
	if len(out) != 1 {
		t.Fatalf("%d datagrams, want one HelloVerifyRequest", len(out))
	}
	rec, _, _ := dtlsmsg.NextRecord(out[0])
	h, body, _, _ := dtlsmsg.NextHandshake(rec.Fragment)
	if h.Type != typeHelloVerifyRequest || rec.Sequence != 77 || h.MessageSeq != 0 {
		t.Fatalf("answer type %d record %d message_seq %d", h.Type, rec.Sequence, h.MessageSeq)
	}
	if len(body) != 3+cookieLen || s.hs.step != sWaitClientHello || !s.Deadline().IsZero() {
		t.Fatalf("cookie of %d octets, step %d, deadline %v", len(body)-3, s.hs.step, s.Deadline())
	}
	// The client answers; a server for another address wants a new cookie.
	_ = c.HandleDatagram(now, out[0])
	second := c.Datagrams()
	other, _ := NewServer(sc, []byte("198.18.0.2:4000"))
	_ = other.HandleDatagram(now, second[0])
	if d := other.Datagrams(); len(d) != 1 || d[0][recordHeaderLen] != typeHelloVerifyRequest {
		t.Fatal("a cookie made for another address was accepted")
	}
	// The right server accepts it and answers with its whole flight.
	_ = s.HandleDatagram(now, second[0])
	if d := s.Datagrams(); len(d) == 0 || d[0][recordHeaderLen] != typeServerHello {
		t.Fatal("the cookie was not accepted")
	}
}

// TestStatelessHelloIgnoresForgery: before the cookie exchange nothing is
// known of the client, so forged fragments (another message_seq, a
// contradiction, a message above the limit) are dropped without an answer
// and the genuine ClientHello that follows is answered.
func TestStatelessHelloIgnoresForgery(t *testing.T) {
	sc := serverConfig(t, "p256", "p256b")
	sc.MaxHandshakeMessage = 4096
	s, err := NewServer(sc, []byte("198.18.0.9:5004"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewClient(clientConfig(t, "p256b", "p256"))
	now := time.Now()
	_ = c.Start(now)
	ch := c.Datagrams()[0]
	rec, _, _ := dtlsmsg.NextRecord(ch)
	h, body, _, _ := dtlsmsg.NextHandshake(rec.Fragment)
	frag := func(seq uint16, length, off int, b []byte) []byte {
		pt := appendHandshakeHeader(nil, typeClientHello, length, seq, off, len(b))
		return append(appendRecordHeader(nil, contentHandshake, versionDTLS12, 0, 7, len(pt)+len(b)), append(pt, b...)...)
	}
	contradicting := bytes.Clone(body[:30])
	contradicting[5] ^= 1
	for name, forged := range map[string][]byte{
		"partial of another message_seq": frag(5, 100, 0, []byte{0xFE}),
		"oversized":                      frag(0, 5000, 0, []byte{0xFE}),
		"contradicting":                  frag(h.MessageSeq, int(h.Length), 0, contradicting),
	} {
		// A first fragment of the genuine message, then the forgery, then
		// the whole genuine ClientHello.
		_ = s.HandleDatagram(now, frag(h.MessageSeq, int(h.Length), 0, body[:30]))
		if err := s.HandleDatagram(now, forged); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out := s.Datagrams(); len(out) != 0 {
			t.Fatalf("%s: answered with %d datagrams", name, len(out))
		}
		_ = s.HandleDatagram(now, ch)
		out := s.Datagrams()
		if len(out) != 1 || out[0][recordHeaderLen] != typeHelloVerifyRequest {
			t.Fatalf("%s: the genuine ClientHello got %d datagrams", name, len(out))
		}
		if !s.AwaitingHello() {
			t.Fatalf("%s: state left behind", name)
		}
	}
}

// TestForgedPlaintextDoesNotBlockFinished: a plaintext fragment forged at
// the Finished's message_seq does not keep the real (epoch 1) Finished
// out.
func TestForgedPlaintextDoesNotBlockFinished(t *testing.T) {
	l := newLink(t, clientConfig(t, "p256b", "p256"), serverConfig(t, "p256", "p256b"))
	injected := false
	l.filter = func(fc bool, d []byte) [][]byte {
		if !fc || injected || l.c.writeCipher == nil {
			return [][]byte{d}
		}
		injected = true
		// The client's flight 5 is out: its Finished has the last
		// message_seq the client used.
		seq := l.c.sendSeq - 1
		pt := appendHandshakeHeader(nil, typeFinished, 12, seq, 0, 4)
		pt = append(pt, 1, 2, 3, 4)
		forged := append(appendRecordHeader(nil, contentHandshake, versionDTLS12, 0, 900, len(pt)), pt...)
		return [][]byte{forged, d}
	}
	l.start()
	if !injected || !l.c.Established() || !l.s.Established() {
		t.Fatalf("a forged plaintext fragment blocked the handshake: %v %v", closedErr(l.cev), closedErr(l.sev))
	}
}

// TestPeerRSAKeyBounds: a peer certificate with an RSA key above 8192 bits
// or an exponent other than 65537 is refused before any signature is
// verified with it.
func TestPeerRSAKeyBounds(t *testing.T) {
	// Nobody verifies a self-signed peer certificate's own signature: any
	// public key can be put in one, no private key needed.
	cert := func(pub *rsa.PublicKey) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, testCert(t, "p256").PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	n := make([]byte, (8192+1024)/8)
	_, _ = rand.Read(n)
	n[0] |= 0x80
	n[len(n)-1] |= 1
	if _, aerr := peerLeafKey([][]byte{cert(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})}); aerr == nil || aerr.Description != AlertUnsupportedCertificate {
		t.Fatalf("9216-bit RSA key: %v", aerr)
	}
	e3 := testCert(t, "rsa").PrivateKey.(*rsa.PrivateKey).PublicKey
	e3.E = 3
	if _, aerr := peerLeafKey([][]byte{cert(&e3)}); aerr == nil || aerr.Description != AlertUnsupportedCertificate {
		t.Fatalf("exponent 3: %v", aerr)
	}
	if _, aerr := peerLeafKey([][]byte{testCert(t, "rsa").Certificate[0]}); aerr != nil {
		t.Fatalf("2048-bit key, exponent 65537: %v", aerr)
	}
}

// TestPeerLeafKeyBadDER feeds peerLeafKey leaf certificates whose DER does
// not lead to an acceptable key: each is refused with bad_certificate (or
// unsupported_certificate for a well-formed key of a refused kind), never
// a panic.
func TestPeerLeafKeyBadDER(t *testing.T) {
	good := testCert(t, "p256").Certificate[0]
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1) // serial, then nothing
		})
	})
	shortTBS := b.BytesOrPanic()
	b = cryptobyte.Builder{}
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1)
			for range 4 {
				b.AddASN1(casn1.SEQUENCE, func(*cryptobyte.Builder) {})
			}
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(7) }) // not an SPKI
		})
	})
	notSPKI := b.BytesOrPanic()
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	edCert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ed, testCert(t, "p256").PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		der  []byte
		want uint8
	}{
		{"empty", nil, AlertBadCertificate},
		{"not a SEQUENCE", []byte{0x02, 0x01, 0x00}, AlertBadCertificate},
		{"truncated", good[:len(good)/2], AlertBadCertificate},
		{"one octet short", good[:len(good)-1], AlertBadCertificate},
		{"trailing octet", append(slices.Clone(good), 0), AlertBadCertificate},
		{"indefinite length", []byte{0x30, 0x80, 0x00, 0x00}, AlertBadCertificate},
		{"length beyond input", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, AlertBadCertificate},
		{"tbs ends after serial", shortTBS, AlertBadCertificate},
		{"subjectPublicKeyInfo not one", notSPKI, AlertBadCertificate},
		{"Ed25519 key", edCert, AlertUnsupportedCertificate},
		{"P-521 key", testCert(t, "p521").Certificate[0], AlertUnsupportedCertificate},
		{"1024-bit RSA key", testCert(t, "rsa1024").Certificate[0], AlertInsufficientSecurity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, aerr := peerLeafKey([][]byte{tc.der})
			if aerr == nil || aerr.Description != tc.want {
				t.Fatalf("got key %T, alert %v; want alert %v", pub, aerr, tc.want)
			}
			if pub != nil {
				t.Fatalf("key %T with an alert", pub)
			}
		})
	}
}

// TestPinSHA256 checks the fingerprint VerifyPeer on its own: the pinned
// leaf passes; another certificate, an empty chain, and the pinned
// certificate in second place do not.
func TestPinSHA256(t *testing.T) {
	a, b := testCert(t, "p256").Certificate[0], testCert(t, "p256b").Certificate[0]
	verify := PinSHA256(fingerprint(a))
	for _, tc := range []struct {
		name  string
		chain [][]byte
		ok    bool
	}{
		{"pinned leaf", [][]byte{a}, true},
		{"pinned leaf with a chain", [][]byte{a, b}, true},
		{"other certificate", [][]byte{b}, false},
		{"pinned certificate not the leaf", [][]byte{b, a}, false},
		{"empty chain", nil, false},
		{"empty leaf", [][]byte{{}}, false},
	} {
		err := verify(tc.chain)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrFingerprint)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

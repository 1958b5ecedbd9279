package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/testutil"
)

func newID(t testing.TB) uuid.UUID {
	t.Helper()
	id, err := NewAssociationID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// sendUntilDelivered retries SendTunneledDtls until no ErrNoTunnel (the MD
// may be between tunnels) and returns the KD-side event.
func sendDelivered(t *testing.T, m *MD, kd *kdRec, id uuid.UUID, payload []byte) dtlsEvent {
	t.Helper()
	eventually(t, "a live tunnel", func() bool { return m.Up() > 0 })
	if err := m.SendTunneledDtls(id, payload); err != nil {
		t.Fatalf("SendTunneledDtls: %v", err)
	}
	for {
		ev := recv(t, kd.dtls, "TunneledDtls at the KD")
		if ev.id == id && bytes.Equal(ev.data, payload) {
			return ev
		}
	}
}

func TestEndToEnd(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{}, ln)
	m, md, _, _ := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}})

	tun := recv(t, kd.up, "TunnelUp")
	if !slices.Equal(tun.Profiles(), testProfiles) || tun.Version() != Version0 {
		t.Fatalf("tunnel profiles %v version %d", tun.Profiles(), tun.Version())
	}
	if want := "spki:" + SPKIOf(p.md.Leaf).String(); tun.Peer() != want {
		t.Fatalf("Peer() = %q, want %q", tun.Peer(), want)
	}
	if tun.PeerCertificate().Subject.CommonName != "md1.example" || tun.ID() == "" || tun.RemoteAddr() == "" {
		t.Fatalf("tunnel identity: %q %q %q", tun.PeerCertificate().Subject.CommonName, tun.ID(), tun.RemoteAddr())
	}
	if st := recv(t, md.state, "TunnelState"); st.peer != ln.Addr().String() || !st.up {
		t.Fatalf("TunnelState %+v", st)
	}

	id := newID(t)
	sendDelivered(t, m, kd, id, []byte{22, 254, 253, 1, 2, 3})

	if err := tun.SendTunneledDtls(id, []byte{22, 254, 253, 9}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, md.dtls, "TunneledDtls at the MD"); ev.id != id || !bytes.Equal(ev.data, []byte{22, 254, 253, 9}) {
		t.Fatalf("MD got %+v", ev)
	}
	mk := &MediaKeys{AssociationID: id, Profile: ProfileDoubleAEADAES128GCM, MKI: []byte{7},
		ClientWriteMasterKey: bytes.Repeat([]byte{1}, 16), ServerWriteMasterKey: bytes.Repeat([]byte{2}, 16),
		ClientWriteMasterSalt: bytes.Repeat([]byte{3}, 12), ServerWriteMasterSalt: bytes.Repeat([]byte{4}, 12)}
	if err := tun.SendMediaKeys(context.Background(), mk); err != nil {
		t.Fatal(err)
	}
	got := recv(t, md.keys, "MediaKeys at the MD")
	if got.AssociationID != id || got.Profile != mk.Profile || !bytes.Equal(got.ServerWriteMasterKey, mk.ServerWriteMasterKey) ||
		!bytes.Equal(got.MKI, mk.MKI) || !bytes.Equal(got.ClientWriteMasterSalt, mk.ClientWriteMasterSalt) {
		t.Fatalf("MD got keys %+v", got)
	}
	if err := tun.SendEndpointDisconnect(id); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, md.disc, "EndpointDisconnect at the MD"); got != id {
		t.Fatalf("disconnect %s", got)
	}
	if err := m.SendEndpointDisconnect(id); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, kd.disc, "EndpointDisconnect at the KD"); got != id {
		t.Fatalf("disconnect %s", got)
	}
	// Section 5.4: the KD selects a profile the MD supports.
	bad := *mk
	bad.Profile = ProfileAES128CMHMACSHA1_32
	if err := tun.SendMediaKeys(context.Background(), &bad); !errors.Is(err, ErrProfileNotOffered) {
		t.Fatalf("SendMediaKeys(unoffered profile) = %v", err)
	}
	// RFC 9185: no empty dtls_message on the wire.
	if err := m.SendTunneledDtls(id, nil); !errors.Is(err, ErrNotSendable) {
		t.Fatalf("SendTunneledDtls(empty) = %v", err)
	}
}

// Section 5.2: "A tunnel MUST be a mutually authenticated TLS connection."
// Even with a caller-supplied TLS config that forgets it, neither side
// exchanges a tunnel message with a peer whose certificate was not verified.
func TestMUST_5_2_MutuallyAuthenticated(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)

	t.Run("KD config that does not ask for a client certificate", func(t *testing.T) {
		ln := listen(t)
		lax := &tls.Config{Certificates: []tls.Certificate{p.kd}, MinVersion: tls.VersionTLS12} // no ClientAuth
		_, kd, lb := startKD(t, p, KDConfig{TLS: lax}, ln)
		c, err := rawDial(t, p, ln.Addr().String(), &p.md)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		writeMsg(t, c, supportedProfilesMsg)
		if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
			t.Fatalf("KD sent %x to an unauthenticated MD", b)
		}
		none(t, kd.up, 100*time.Millisecond, "TunnelUp")
		lb.waitFor(t, "refused media distributor")
	})

	t.Run("MD config that skips KD verification", func(t *testing.T) {
		srvCfg := &tls.Config{Certificates: []tls.Certificate{p.other.Leaf(t, "kd.example")}, ClientAuth: tls.RequireAnyClientCert}
		srv := newRawServer(t, srvCfg)
		lax := p.tls(t, p.md, PeerPolicy{})
		lax.InsecureSkipVerify = true
		m, _, lb, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}, TLS: lax})
		c := recv(t, srv.conns, "MD connection")
		if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
			t.Fatalf("MD sent %x to an unverified KD", b)
		}
		if m.Up() != 0 {
			t.Fatal("MD counts an unverified tunnel as up")
		}
		lb.waitFor(t, "was not verified against a CA")
	})
}

// Sections 5.4 and 9: the KD forms tunnels only with authorized MDs; an
// unauthenticated or unlisted MD gets no tunnel message at all.
func TestMUST_5_4_KDRejectsUnauthenticatedMD(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	allowed := PeerPolicy{Names: []string{"MD1.example"}} // case-insensitive
	cases := []struct {
		name   string
		kdTLS  *tls.Config
		allow  PeerPolicy
		cert   *tls.Certificate
		tls12  bool
		wantUp bool
	}{
		{name: "certificate from another CA", cert: &p.foreign},
		{name: "certificate from another CA, TLS 1.2", cert: &p.foreign, tls12: true},
		{name: "no certificate", cert: nil},
		{name: "not on the TLS allow-list", kdTLS: p.tls(t, p.kd, allowed), cert: &p.md2},
		{name: "not on KDConfig.AllowList", allow: allowed, cert: &p.md2},
		{name: "not on the SPKI allow-list", allow: PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.md.Leaf)}}, cert: &p.md2},
		{name: "control: on the allow-list", allow: allowed, cert: &p.md, wantUp: true},
		{name: "control: on the SPKI allow-list", allow: PeerPolicy{SPKI: []SPKIFingerprint{SPKIOf(p.md.Leaf)}}, cert: &p.md, wantUp: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t)
			kdTLS := tc.kdTLS
			if kdTLS == nil {
				kdTLS = p.tls(t, p.kd, PeerPolicy{})
			}
			if tc.tls12 {
				kdTLS = kdTLS.Clone()
				kdTLS.MaxVersion = tls.VersionTLS12
			}
			_, kd, _ := startKD(t, p, KDConfig{TLS: kdTLS, AllowList: tc.allow}, ln)
			c, err := rawDial(t, p, ln.Addr().String(), tc.cert)
			if err == nil {
				// TLS 1.3: the client finishes first; the refusal
				// arrives on the first read.
				_, _ = c.Write(mustHex(t, "0100070000040009000A"))
			}
			if tc.wantUp {
				if err != nil {
					t.Fatal(err)
				}
				if u := recv(t, kd.up, "TunnelUp"); u.PeerCertificate().Subject.CommonName != "md1.example" {
					t.Fatalf("wrong peer %s", u.Peer())
				}
				return
			}
			if err == nil {
				if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
					t.Fatalf("KD sent %x to a refused MD", b)
				}
			}
			none(t, kd.up, 50*time.Millisecond, "TunnelUp")
			if n := len(kd.up); n != 0 {
				t.Fatalf("%d tunnels", n)
			}
		})
	}

	t.Run("real MD with a foreign certificate never gets a message", func(t *testing.T) {
		ln := listen(t)
		k, kd, _ := startKD(t, p, KDConfig{}, ln)
		m, md, _, _ := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}, TLS: p.tls(t, p.foreign, PeerPolicy{})})
		time.Sleep(300 * time.Millisecond) // several reconnect attempts
		none(t, kd.up, 0, "TunnelUp")
		if len(k.Tunnels()) != 0 {
			t.Fatal("KD has a tunnel")
		}
		if len(md.dtls)+len(md.keys)+len(md.disc) != 0 {
			t.Fatal("MD received a tunnel message")
		}
		if err := m.SendTunneledDtls(newID(t), []byte{1}); err == nil {
			// TLS 1.3 lets the MD believe for a moment that it is up;
			// what it sends is never delivered.
			none(t, kd.dtls, 100*time.Millisecond, "TunneledDtls")
		}
	})
}

// Section 5.3: SupportedProfiles is the first message on every new or
// re-established connection, even with sends pending during the reconnect.
func TestMUST_5_3_SupportedProfilesFirstOnEveryConnection(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
	m, md, _, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { // keep sends pending across reconnects
		defer close(done)
		id := newID(t)
		for ctx.Err() == nil {
			_ = m.SendTunneledDtls(id, []byte{1, 2, 3})
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range 4 {
		c := recv(t, srv.conns, "connection")
		msg := readMsg(t, c)
		sp, ok := msg.(*SupportedProfiles)
		if !ok {
			t.Fatalf("connection %d: first message is %s", i, msg.Type())
		}
		if sp.Version != 0 || !slices.Equal(sp.Profiles, testProfiles) {
			t.Fatalf("connection %d: %+v", i, sp)
		}
		if st := recv(t, md.state, "TunnelState up"); !st.up {
			t.Fatalf("connection %d: state %+v", i, st)
		}
		_ = c.Close()
		if st := recv(t, md.state, "TunnelState down"); st.up {
			t.Fatalf("connection %d: state %+v", i, st)
		}
	}
	cancel()
	<-done
}

// The KD side is killed (listener and connections closed) and restarted on
// the same address: the MD reconnects and its first message is again
// SupportedProfiles (the restarted KD only reports TunnelUp after it).
func TestMUST_5_3_KDRestartMDReconnectsWithSupportedProfiles(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	addr := ln.Addr().String()
	k1, kd1, _ := startKD(t, p, KDConfig{}, ln)
	m, md, _, _ := startMD(t, p, MDConfig{Peers: []string{addr}})
	recv(t, kd1.up, "first TunnelUp")
	id := newID(t)
	sendDelivered(t, m, kd1, id, []byte{1})
	if st := recv(t, md.state, "up"); !st.up {
		t.Fatal(st)
	}

	if err := k1.Close(); err != nil { // kill: listener and every tunnel
		t.Fatal(err)
	}
	if st := recv(t, md.state, "down"); st.up {
		t.Fatal(st)
	}
	eventually(t, "MD to notice", func() bool { return m.Up() == 0 })
	if err := m.SendTunneledDtls(id, []byte{2}); !errors.Is(err, ErrNoTunnel) {
		t.Fatalf("send while down: %v", err)
	}

	// Phase 2: a raw server on the same address checks the first octets.
	var ln2 net.Listener
	eventually(t, "rebinding "+addr, func() bool {
		var err error
		ln2, err = net.Listen("tcp", addr)
		return err == nil
	})
	_, kd2, _ := startKD(t, p, KDConfig{}, ln2)
	tun := recv(t, kd2.up, "TunnelUp after restart")
	if !slices.Equal(tun.Profiles(), testProfiles) {
		t.Fatalf("profiles %v", tun.Profiles())
	}
	if st := recv(t, md.state, "up again"); !st.up {
		t.Fatal(st)
	}
	ev := sendDelivered(t, m, kd2, id, []byte{3})
	if ev.tunnel != tun.ID() {
		t.Fatalf("delivered on %s, want %s", ev.tunnel, tun.ID())
	}
}

// Section 5.5: an unsupported version is answered with UnsupportedVersion
// {highest} and the connection is closed; a first message of another type
// just closes it.
func TestMUST_5_5_UnsupportedVersionThenClose(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, lb := startKD(t, p, KDConfig{}, ln)

	t.Run("version 1", func(t *testing.T) {
		c, err := rawDial(t, p, ln.Addr().String(), &p.md)
		if err != nil {
			t.Fatal(err)
		}
		writeMsg(t, c, &SupportedProfiles{Version: 1, Profiles: testProfiles})
		b, _ := readAllUntilClosed(t, c)
		if want := mustHex(t, "02 0001 00"); !bytes.Equal(b, want) {
			t.Fatalf("got %x, want %x then close", b, want)
		}
	})
	t.Run("version 9 with a body this KD cannot parse", func(t *testing.T) {
		c, err := rawDial(t, p, ln.Addr().String(), &p.md)
		if err != nil {
			t.Fatal(err)
		}
		writeRaw(t, c, "01 0004 09 ffffff")
		b, _ := readAllUntilClosed(t, c)
		if want := mustHex(t, "02 0001 00"); !bytes.Equal(b, want) {
			t.Fatalf("got %x, want %x then close", b, want)
		}
	})
	for name, first := range map[string]string{
		"TunneledDtls first":          "04 0013 0f1e2d3c4b5a49788796a5b4c3d2e1f0 0001 16",
		"reserved type first":         "07 0000",
		"malformed SupportedProfiles": "01 0004 00 0001 09",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := rawDial(t, p, ln.Addr().String(), &p.md)
			if err != nil {
				t.Fatal(err)
			}
			writeRaw(t, c, first)
			if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
				t.Fatalf("got %x, want close without a message", b)
			}
		})
	}
	none(t, kd.up, 50*time.Millisecond, "TunnelUp")
	lb.waitFor(t, "first message is TunneledDtls, not SupportedProfiles")
}

// Section 5.5: the MD remembers the version from UnsupportedVersion and uses
// it on the next attempt; it recognises the message from its first octets
// even when the rest is in an unknown (newer) format.
func TestMUST_5_5_MDRemembersVersion(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)

	t.Run("against the real KD", func(t *testing.T) {
		ln := listen(t)
		_, kd, _ := startKD(t, p, KDConfig{}, ln)
		m, _, lb, _ := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}, Version: 2})
		tun := recv(t, kd.up, "TunnelUp")
		if tun.Version() != 0 || m.Version() != 0 {
			t.Fatalf("tunnel version %d, MD version %d", tun.Version(), m.Version())
		}
		lb.waitFor(t, "highest=0")
	})

	t.Run("newer KD with an unknown body", func(t *testing.T) {
		srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
		m, _, lb, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}})
		c := recv(t, srv.conns, "first connection")
		if sp := readMsg(t, c).(*SupportedProfiles); sp.Version != 0 {
			t.Fatalf("first version %d", sp.Version)
		}
		writeRaw(t, c, "02 0004 03 abcdef") // highest_version 3 plus octets -05 does not define
		_, _ = readAllUntilClosed(t, c)     // the MD closes
		// Recognised from its first octets, but version 3 is newer than
		// this MD implements: it keeps its own and says so, rather than
		// claim a version it cannot speak.
		lb.waitFor(t, "requires a newer tunnel protocol version")
		c = recv(t, srv.conns, "second connection")
		if sp := readMsg(t, c).(*SupportedProfiles); sp.Version != 0 {
			t.Fatalf("second version %d, want 0", sp.Version)
		}
		if m.Version() != 0 {
			t.Fatalf("MD version %d", m.Version())
		}
	})
}

// A malformed message closes only the tunnel it arrived on, with a logged
// reason; the other tunnels keep working. Both sides.
func TestMalformedMessageClosesOnlyThatTunnel(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)

	t.Run("at the KD", func(t *testing.T) {
		ln := listen(t)
		_, kd, lb := startKD(t, p, KDConfig{}, ln)
		m, _, _, _ := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}})
		good := recv(t, kd.up, "real MD TunnelUp")

		c, err := rawDial(t, p, ln.Addr().String(), &p.md2)
		if err != nil {
			t.Fatal(err)
		}
		writeMsg(t, c, supportedProfilesMsg)
		bad := recv(t, kd.up, "raw MD TunnelUp")
		writeRaw(t, c, "06 0000") // reserved type
		d := recv(t, kd.down, "TunnelDown")
		if d.t != bad || !errors.Is(d.err, ErrReservedType) {
			t.Fatalf("TunnelDown(%s, %v), want the raw tunnel with ErrReservedType", d.t.ID(), d.err)
		}
		lb.waitFor(t, "malformed or unexpected message from media distributor")
		if ev := sendDelivered(t, m, kd, newID(t), []byte{5}); ev.tunnel != good.ID() {
			t.Fatalf("delivered on %s", ev.tunnel)
		}
		none(t, kd.down, 50*time.Millisecond, "TunnelDown")
	})

	t.Run("at the MD", func(t *testing.T) {
		badKD := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
		ln := listen(t)
		_, kd, _ := startKD(t, p, KDConfig{}, ln)
		m, md, lb, _ := startMD(t, p, MDConfig{Peers: []string{badKD.addr(), ln.Addr().String()}})
		good := recv(t, kd.up, "TunnelUp")
		c := recv(t, badKD.conns, "connection")
		readMsg(t, c)
		eventually(t, "two tunnels", func() bool { return m.Up() == 2 })
		writeRaw(t, c, "03 0012 0f1e2d3c4b5a49788796a5b4c3d2e1f0 0007") // MediaKeys cut short
		if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
			t.Fatalf("got %x", b)
		}
		lb.waitFor(t, "malformed or unexpected message from key distributor")
		id := newID(t)
		if err := good.SendTunneledDtls(id, []byte{8}); err != nil {
			t.Fatal(err)
		}
		if ev := recv(t, md.dtls, "TunneledDtls on the good tunnel"); ev.id != id {
			t.Fatalf("%+v", ev)
		}
		if n := m.Up(); n < 1 {
			t.Fatalf("%d tunnels up", n)
		}
	})
}

// Messages a side must not receive close the tunnel: SupportedProfiles (and
// the other KD-only messages) at the MD, MediaKeys and UnsupportedVersion at
// the KD, a changed SupportedProfiles. An identical SupportedProfiles repeat
// is ignored.
func TestWrongDirectionMessagesCloseTheTunnel(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{}, ln)
	id := "0f1e2d3c4b5a49788796a5b4c3d2e1f0"
	for _, tc := range []struct {
		name  string
		msg   string
		close bool
	}{
		{"identical SupportedProfiles", "01 0007 00 0004 0009 0007", false},
		{"changed SupportedProfiles", "01 0005 00 0002 0009", true},
		{"MediaKeys from the MD", "03 001b" + id + "0007 00 01 01 01 02 01 03 01 04", true},
		{"UnsupportedVersion from the MD", "02 0001 00", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := rawDial(t, p, ln.Addr().String(), &p.md)
			if err != nil {
				t.Fatal(err)
			}
			writeMsg(t, c, supportedProfilesMsg)
			tun := recv(t, kd.up, "TunnelUp")
			writeRaw(t, c, tc.msg)
			if !tc.close {
				writeRaw(t, c, "05 0010"+id)
				if got := recv(t, kd.disc, "EndpointDisconnect"); got.String() != "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0" {
					t.Fatal(got)
				}
				_ = c.Close()
				recv(t, kd.down, "TunnelDown")
				return
			}
			d := recv(t, kd.down, "TunnelDown")
			if d.t != tun || !errors.Is(d.err, ErrProtocol) {
				t.Fatalf("TunnelDown err %v, want ErrProtocol", d.err)
			}
		})
	}

	t.Run("SupportedProfiles at the MD", func(t *testing.T) {
		srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
		_, md, lb, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}})
		c := recv(t, srv.conns, "connection")
		readMsg(t, c)
		recv(t, md.state, "up")
		writeMsg(t, c, supportedProfilesMsg)
		if st := recv(t, md.state, "down"); st.up {
			t.Fatal(st)
		}
		lb.waitFor(t, "SupportedProfiles must not be sent by a key distributor")
	})
}

// One slow tunnel (a peer that stops reading) never blocks sends on another
// tunnel nor the caller: its queue fills and sends fail with ErrQueueFull.
func TestSlowTunnelDoesNotBlockOthers(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	slow := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{}, ln)
	m, _, _, _ := startMD(t, p, MDConfig{
		Peers:        []string{slow.addr(), ln.Addr().String()},
		QueueLen:     4,
		WriteTimeout: time.Minute, // keep the slow tunnel alive for the test
	})
	c := recv(t, slow.conns, "slow connection")
	readMsg(t, c) // then never read again
	recv(t, kd.up, "TunnelUp")
	eventually(t, "two tunnels", func() bool { return m.Up() == 2 })

	// Pin one association to each tunnel.
	slowID, fastID := newID(t), newID(t)
	m.mu.Lock()
	for _, tun := range m.live {
		id := fastID
		if tun.peer == slow.addr() {
			id = slowID
		}
		tun.pins[id] = struct{}{}
		m.pins[id] = tun
	}
	m.mu.Unlock()

	big := make([]byte, MaxDtlsMessageLen)
	var slowest time.Duration
	full := false
	for i := 0; i < 5000 && !full; i++ {
		start := time.Now()
		err := m.SendTunneledDtls(slowID, big)
		slowest = max(slowest, time.Since(start))
		switch {
		case errors.Is(err, ErrQueueFull):
			full = true
		case err != nil:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if !full {
		t.Fatal("the slow tunnel's queue never filled")
	}
	if slowest > time.Second {
		t.Fatalf("a send blocked for %v", slowest)
	}
	// The other tunnel is unaffected.
	for i := range 20 {
		sendDelivered(t, m, kd, fastID, []byte{byte(i), 1})
	}
	// The slow tunnel is still up (congestion is not an error) and still
	// does not block.
	start := time.Now()
	if err := m.SendTunneledDtls(slowID, big); err != nil && !errors.Is(err, ErrQueueFull) {
		t.Fatalf("slow tunnel: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("send blocked for %v", d)
	}
}

// An association is pinned to one tunnel while it lives; when that tunnel
// dies it moves to another live tunnel and stays there.
func TestAssociationPinnedThenMovesWhenTunnelDies(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{}, ln)
	m, _, _, _ := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}, TunnelsPerPeer: 2})
	tunnels := map[string]*KDTunnel{}
	for range 2 {
		tun := recv(t, kd.up, "TunnelUp")
		tunnels[tun.ID()] = tun
	}
	eventually(t, "two tunnels at the MD", func() bool { return m.Up() == 2 })

	a, b := newID(t), newID(t)
	first := sendDelivered(t, m, kd, a, []byte{1}).tunnel
	for i := range 5 {
		if ev := sendDelivered(t, m, kd, a, []byte{2, byte(i)}); ev.tunnel != first {
			t.Fatalf("association moved from %s to %s while its tunnel lived", first, ev.tunnel)
		}
	}
	// The least loaded tunnel takes the next association.
	if other := sendDelivered(t, m, kd, b, []byte{3}).tunnel; other == first {
		t.Fatal("second association pinned to the loaded tunnel")
	}

	if err := tunnels[first].Close(); err != nil {
		t.Fatal(err)
	}
	if d := recv(t, kd.down, "TunnelDown"); d.t.ID() != first || !errors.Is(d.err, ErrClosed) {
		t.Fatalf("TunnelDown(%s, %v)", d.t.ID(), d.err)
	}
	eventually(t, "MD to drop the dead tunnel", func() bool {
		m.mu.RLock()
		defer m.mu.RUnlock()
		return m.pins[a] == nil
	})
	moved := sendDelivered(t, m, kd, a, []byte{4}).tunnel
	if moved == first {
		t.Fatal("association still on the dead tunnel")
	}
	for i := range 5 {
		if ev := sendDelivered(t, m, kd, a, []byte{5, byte(i)}); ev.tunnel != moved {
			t.Fatalf("association moved again from %s to %s", moved, ev.tunnel)
		}
	}
	if err := m.SendEndpointDisconnect(a); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, kd.disc, "EndpointDisconnect"); got != a {
		t.Fatal(got)
	}
	m.mu.RLock()
	_, pinned := m.pins[a]
	m.mu.RUnlock()
	if pinned {
		t.Fatal("EndpointDisconnect did not unpin")
	}
}

// Idle and half-open tunnels: with an idle timeout, a tunnel on which nothing
// arrives is closed (the peer may be gone without a FIN); the KD also bounds
// the wait for the first message.
func TestIdleTimeoutDetectsSilentPeer(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)

	t.Run("MD", func(t *testing.T) {
		srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
		m, md, lb, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}, IdleTimeout: 200 * time.Millisecond})
		c := recv(t, srv.conns, "connection")
		readMsg(t, c)
		recv(t, md.state, "up")
		start := time.Now()
		if st := recv(t, md.state, "down"); st.up {
			t.Fatal(st)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the idle timeout", d)
		}
		lb.waitFor(t, "idle timeout")
		_ = m
	})

	t.Run("KD", func(t *testing.T) {
		ln := listen(t)
		_, kd, _ := startKD(t, p, KDConfig{IdleTimeout: 200 * time.Millisecond}, ln)
		c, err := rawDial(t, p, ln.Addr().String(), &p.md)
		if err != nil {
			t.Fatal(err)
		}
		writeMsg(t, c, supportedProfilesMsg)
		recv(t, kd.up, "TunnelUp")
		if d := recv(t, kd.down, "TunnelDown"); !errors.Is(d.err, ErrIdleTimeout) {
			t.Fatalf("TunnelDown err %v, want ErrIdleTimeout", d.err)
		}
	})

	t.Run("KD waiting for the first message", func(t *testing.T) {
		ln := listen(t)
		_, kd, lb := startKD(t, p, KDConfig{HandshakeTimeout: 200 * time.Millisecond}, ln)
		c, err := rawDial(t, p, ln.Addr().String(), &p.md)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := readAllUntilClosed(t, c); len(b) != 0 {
			t.Fatalf("got %x", b)
		}
		none(t, kd.up, 10*time.Millisecond, "TunnelUp")
		lb.waitFor(t, "waiting for SupportedProfiles: none within 200ms")
	})
}

// Reverse mode: the KD dials the MD; the MD still sends SupportedProfiles
// first, and everything flows both ways.
func TestReverseModeEndToEnd(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	m, md, _, stopMD := startMD(t, p, MDConfig{Listener: ln})
	k, kd, _ := startKD(t, p, KDConfig{}, nil)
	if err := k.Dial(context.Background(), ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	tun := recv(t, kd.up, "TunnelUp")
	if !slices.Equal(tun.Profiles(), testProfiles) {
		t.Fatal(tun.Profiles())
	}
	st := recv(t, md.state, "up")
	if want := "spki:" + SPKIOf(p.kd.Leaf).String(); !st.up || st.peer != want {
		t.Fatalf("state %+v, want peer %s", st, want)
	}
	id := newID(t)
	sendDelivered(t, m, kd, id, []byte{22, 1})
	if err := tun.SendTunneledDtls(id, []byte{22, 2}); err != nil {
		t.Fatal(err)
	}
	recv(t, md.dtls, "TunneledDtls at the MD")
	mk := &MediaKeys{AssociationID: id, Profile: ProfileAEADAES128GCM, ClientWriteMasterKey: []byte{1}, ServerWriteMasterKey: []byte{2}, ClientWriteMasterSalt: []byte{3}, ServerWriteMasterSalt: []byte{4}}
	if err := tun.SendMediaKeys(context.Background(), mk); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, md.keys, "MediaKeys"); got.AssociationID != id {
		t.Fatal(got)
	}
	// The KD reconnects when the tunnel drops.
	_ = tun.Close()
	recv(t, kd.down, "TunnelDown")
	recv(t, kd.up, "TunnelUp after reconnect")
	stopMD()
	if m.Up() != 0 {
		t.Fatal("tunnels left after Run returned")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("Run did not close its listener")
	}
}

// Section 5.4: MediaKeys must precede the KD's Finished, so SendMediaKeys
// returns only once the message is written; the encoded key material is
// zeroed afterwards.
func TestMUST_5_4_SendMediaKeysReturnsAfterWriteAndZeroes(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{}, ln)
	c, err := rawDial(t, p, ln.Addr().String(), &p.md)
	if err != nil {
		t.Fatal(err)
	}
	writeMsg(t, c, supportedProfilesMsg)
	tun := recv(t, kd.up, "TunnelUp")
	mk := &MediaKeys{AssociationID: testID, Profile: ProfileDoubleAEADAES128GCM,
		ClientWriteMasterKey: bytes.Repeat([]byte{0xC1}, 16), ServerWriteMasterKey: bytes.Repeat([]byte{0x5E}, 16),
		ClientWriteMasterSalt: bytes.Repeat([]byte{0xC5}, 12), ServerWriteMasterSalt: bytes.Repeat([]byte{0x55}, 12)}
	want, _ := AppendMessage(nil, mk)
	buf, err := tun.sendMediaKeys(context.Background(), mk)
	if err != nil {
		t.Fatal(err)
	}
	if len(buf) != len(want) || !bytes.Equal(buf, make([]byte, len(buf))) {
		t.Fatalf("encoded keys not zeroed after the write: %x", buf)
	}
	if got, _ := AppendMessage(nil, readMsg(t, c)); !bytes.Equal(got, want) {
		t.Fatalf("MD read %x, want %x", got, want)
	}
	if mk.ServerWriteMasterKey[0] != 0x5E {
		t.Fatal("the caller's MediaKeys was modified")
	}
	_ = tun.Close()
	recv(t, kd.down, "TunnelDown")
	if err := tun.SendMediaKeys(context.Background(), mk); !errors.Is(err, ErrClosed) {
		t.Fatalf("SendMediaKeys on a closed tunnel: %v", err)
	}
}

// A message still queued when its wait is abandoned is dropped and zeroed,
// never written later.
func TestAwaitCancelledDropsAndZeroes(t *testing.T) {
	opts := connOptions{}
	if err := opts.fill(); err != nil {
		t.Fatal(err)
	}
	c := newConn(nil, nil, &opts) // no writer: the message stays queued
	m := &outMsg{buf: []byte{1, 2, 3}, sensitive: true, done: make(chan error, 1)}
	if err := c.enqueue(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.await(ctx, m); !errors.Is(err, context.Canceled) {
		t.Fatalf("await: %v", err)
	}
	if !bytes.Equal(m.buf, []byte{0, 0, 0}) || m.state.Load() != msgCancelled {
		t.Fatalf("buf %x state %d", m.buf, m.state.Load())
	}
	// A full queue refuses without blocking.
	for c.enqueue(&outMsg{}) == nil {
	}
	if err := c.enqueue(&outMsg{}); !errors.Is(err, ErrQueueFull) {
		t.Fatal(err)
	}
}

// Close/cancel stops every goroutine of both sides, with several tunnels up
// and traffic in flight.
func TestGoroutinesEndOnClose(t *testing.T) {
	p := newPKI(t)
	// The leak check runs when the subtest's cleanups (which stop
	// nothing here: the subtest stops everything itself) have run.
	t.Run("run and close", func(t *testing.T) {
		testutil.CheckGoroutines(t)
		ln := listen(t)
		baseline := runtime.NumGoroutine()
		k, kd, _ := startKD(t, p, KDConfig{}, ln)
		m, _, _, stop := startMD(t, p, MDConfig{Peers: []string{ln.Addr().String()}, TunnelsPerPeer: 3})
		for range 3 {
			recv(t, kd.up, "TunnelUp")
		}
		eventually(t, "3 tunnels at the MD", func() bool { return m.Up() == 3 })
		if n := runtime.NumGoroutine(); n < baseline+2*3*2 {
			t.Fatalf("only %d goroutines with 3 tunnels on each side", n)
		}
		for i := range 50 {
			_ = m.SendTunneledDtls(newID(t), []byte{byte(i)})
		}
		stop()
		_ = k.Close()
		_ = k.Close() // idempotent
		if len(k.Tunnels()) != 0 || m.Up() != 0 {
			t.Fatal("tunnels left after close")
		}
		if err := k.Dial(context.Background(), "127.0.0.1:1"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Dial after Close: %v", err)
		}
		for i := range 100 { // goroutines stopped, not merely counted
			if runtime.NumGoroutine() <= baseline {
				break
			}
			time.Sleep(time.Duration(i) * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > baseline {
			t.Fatalf("%d goroutines after Close, %d before start", n, baseline)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	p := newPKI(t)
	good := MDConfig{Peers: []string{"127.0.0.1:1"}, TLS: p.tls(t, p.md, PeerPolicy{}), Profiles: testProfiles}
	mut := func(f func(*MDConfig)) MDConfig { c := good; f(&c); return c }
	for name, cfg := range map[string]MDConfig{
		"no TLS":          mut(func(c *MDConfig) { c.TLS = nil }),
		"no profiles":     mut(func(c *MDConfig) { c.Profiles = nil }),
		"no peers":        mut(func(c *MDConfig) { c.Peers = nil }),
		"bad peer":        mut(func(c *MDConfig) { c.Peers = []string{"nohost"} }),
		"MaxFrame small":  mut(func(c *MDConfig) { c.MaxFrame = 10 }),
		"negative queue":  mut(func(c *MDConfig) { c.QueueLen = -1 }),
		"backoff swapped": mut(func(c *MDConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }),
	} {
		if _, err := NewMD(cfg, newMDRec()); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	m, err := NewMD(good, newMDRec())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SendTunneledDtls(testID, []byte{1}); !errors.Is(err, ErrNoTunnel) {
		t.Fatalf("send before Run: %v", err)
	}
	if _, err := NewKD(KDConfig{}, newKDRec()); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("KD without TLS: %v", err)
	}
	if _, err := NewTLSConfig(TLSOptions{CAs: p.ca.Pool}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("TLS without cert: %v", err)
	}
}

// Keys for a profile the MD did not offer are dropped (logged), not handed
// to the key table; the tunnel stays up.
func TestMDDropsMediaKeysForUnofferedProfile(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	srv := newRawServer(t, p.tls(t, p.kd, PeerPolicy{}))
	_, md, lb, _ := startMD(t, p, MDConfig{Peers: []string{srv.addr()}})
	c := recv(t, srv.conns, "connection")
	readMsg(t, c)
	recv(t, md.state, "up")
	k := []byte{1}
	writeMsg(t, c, &MediaKeys{AssociationID: testID, Profile: ProfileAES128CMHMACSHA1_80, ClientWriteMasterKey: k, ServerWriteMasterKey: k, ClientWriteMasterSalt: k, ServerWriteMasterSalt: k})
	writeMsg(t, c, &EndpointDisconnect{AssociationID: testID})
	if got := recv(t, md.disc, "EndpointDisconnect after the dropped keys"); got != testID {
		t.Fatal(got)
	}
	if len(md.keys) != 0 {
		t.Fatal("MediaKeys with an unoffered profile delivered")
	}
	lb.waitFor(t, "dropping MediaKeys")
	none(t, md.state, 50*time.Millisecond, "TunnelState change")
}

// A frame over the configured limit closes the tunnel as soon as its header
// is read.
func TestFrameOverLimitClosesTunnel(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newPKI(t)
	ln := listen(t)
	_, kd, _ := startKD(t, p, KDConfig{MaxFrame: 1024}, ln)
	c, err := rawDial(t, p, ln.Addr().String(), &p.md)
	if err != nil {
		t.Fatal(err)
	}
	writeMsg(t, c, supportedProfilesMsg)
	recv(t, kd.up, "TunnelUp")
	writeMsg(t, c, &TunneledDtls{AssociationID: testID, Message: make([]byte, 1000)}) // within the limit
	recv(t, kd.dtls, "TunneledDtls within the limit")
	writeRaw(t, c, "04 0400") // header of a 1027-octet frame: the body never comes
	if d := recv(t, kd.down, "TunnelDown"); !errors.Is(d.err, ErrFrameTooLarge) {
		t.Fatalf("TunnelDown err %v, want ErrFrameTooLarge", d.err)
	}
}

package perc

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/ekt"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/tunnel"
	"github.com/mdfast/mdfast/internal/tunnel/tunneltest"
)

// curiousMD is a Media Distributor for tests: it relays DTLS through a real
// tunnel to a real Key Distributor (internal/keydist), installs the
// MediaKeys it gets and forwards media re-sealed hop by hop, carrying the
// EKTField untouched, as mdfast's data plane does. It also keeps every
// MediaKeys it ever received and every packet it forwarded, so that a test
// can try, with everything an MD knows, to read the media.
type curiousMD struct {
	t   testing.TB
	udp *net.UDPConn
	md  *tunnel.MD

	mu    sync.Mutex
	ids   map[netip.AddrPort]uuid.UUID
	peers map[uuid.UUID]*mdPeer
	keys  []tunnel.MediaKeys // every MediaKeys, deep copies
	seen  [][]byte           // every RTP packet as an endpoint sent it
	drops int
}

type mdPeer struct {
	addr netip.AddrPort
	op   *srtpfast.Opener
	send *srtpfast.Keys
}

func (m *curiousMD) HandleTunneledDtls(id uuid.UUID, b []byte) {
	m.mu.Lock()
	var addr netip.AddrPort
	for a, x := range m.ids {
		if x == id {
			addr = a
		}
	}
	m.mu.Unlock()
	if addr.IsValid() {
		_, _ = m.udp.WriteToUDPAddrPort(b, addr)
	}
}

func (m *curiousMD) HandleMediaKeys(mk *tunnel.MediaKeys) {
	c := *mk
	for _, p := range []*[]byte{&c.MKI, &c.ClientWriteMasterKey, &c.ServerWriteMasterKey, &c.ClientWriteMasterSalt, &c.ServerWriteMasterSalt} {
		*p = bytes.Clone(*p)
	}
	p := srtpfast.Profile(mk.Profile)
	recv, err := srtpfast.NewKeys(p, c.ClientWriteMasterKey, c.ClientWriteMasterSalt, nil)
	if err != nil {
		m.t.Errorf("MediaKeys: %v", err)
		return
	}
	send, err := srtpfast.NewKeys(p, c.ServerWriteMasterKey, c.ServerWriteMasterSalt, nil)
	if err != nil {
		m.t.Errorf("MediaKeys: %v", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, c)
	var addr netip.AddrPort
	for a, x := range m.ids {
		if x == mk.AssociationID {
			addr = a
		}
	}
	m.peers[mk.AssociationID] = &mdPeer{addr: addr, op: srtpfast.NewOpener(recv, 64), send: send}
}

func (m *curiousMD) HandleEndpointDisconnect(id uuid.UUID) {
	m.mu.Lock()
	delete(m.peers, id)
	m.mu.Unlock()
}

func (m *curiousMD) TunnelState(string, bool) {}

func (m *curiousMD) readLoop() {
	buf := make([]byte, 65536)
	var sc srtpfast.Scratch
	for {
		n, from, err := m.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		m.mu.Lock()
		id, ok := m.ids[from]
		if !ok {
			id = uuid.New()
			m.ids[from] = id
		}
		p := m.peers[id]
		m.mu.Unlock()
		switch {
		case b[0] >= 20 && b[0] <= 63:
			_ = m.md.SendTunneledDtls(id, b)
		case b[0] >= 128 && b[0] <= 191 && p != nil:
			m.forward(p, b, &sc)
		}
	}
}

// forward is what mdfast's worker does with one media packet.
func (m *curiousMD) forward(p *mdPeer, b []byte, sc *srtpfast.Scratch) {
	rtcp := b[1] >= 192 && b[1] <= 223
	var tail []byte
	if !rtcp && p.op.Keys().Profile().IsDouble() {
		m.mu.Lock()
		m.seen = append(m.seen, bytes.Clone(b))
		m.mu.Unlock()
		n, _, err := ekt.FieldLen(b)
		if err != nil {
			m.drop()
			return
		}
		b, tail = b[:len(b)-n], bytes.Clone(b[len(b)-n:])
	}
	var plain []byte
	var ctr uint32
	if rtcp {
		info, err := p.op.OpenRTCP(b)
		if err != nil {
			m.drop()
			return
		}
		plain, ctr = b[:info.Len], info.Index
	} else {
		info, err := p.op.OpenRTP(b)
		if err != nil {
			m.drop()
			return
		}
		plain, ctr = b[:info.Len], info.ROC
	}
	m.mu.Lock()
	var rcv []*mdPeer
	for _, q := range m.peers {
		if q != p {
			rcv = append(rcv, q)
		}
	}
	m.mu.Unlock()
	for _, q := range rcv {
		var out []byte
		var err error
		if rtcp {
			out, err = q.send.SealRTCP(sc, nil, plain, ctr)
		} else {
			out, err = q.send.SealRTP(sc, nil, plain, ctr)
		}
		if err == nil {
			_, _ = m.udp.WriteToUDPAddrPort(append(out, tail...), q.addr)
		}
	}
}

func (m *curiousMD) drop() {
	m.mu.Lock()
	m.drops++
	m.mu.Unlock()
}

// conference is a KD, a tunnel and a curious MD on loopback.
type conference struct {
	t      testing.TB
	reg    *keydist.Registry
	kd     *keydist.KeyDistributor
	kdFP   [32]byte
	md     *curiousMD
	addr   netip.AddrPort
	ektSrc *keydist.MemoryEKT
}

func newConference(t testing.TB, profiles ...tunnel.ProtectionProfile) *conference {
	t.Helper()
	ca := tunneltest.NewCA(t, "perc-test")
	kdTLS, err := tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{ca.Leaf(t, "kd")}, CAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	mdTLS, err := tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{ca.Leaf(t, "md")}, CAs: ca.Pool, ServerName: "kd"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := keydist.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := keydist.NewMemoryEKT(keydist.MemoryEKTConfig{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reg := keydist.NewRegistry()
	kd, err := keydist.New(keydist.Config{Certificate: cert, Registry: reg, EKT: src, FlightInterval: 100 * time.Millisecond,
		Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tunnel.NewKD(tunnel.KDConfig{TLS: kdTLS, Logger: quiet()}, kd)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = tk.Serve(ctx, ln) })
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m := &curiousMD{t: t, udp: udp, ids: map[netip.AddrPort]uuid.UUID{}, peers: map[uuid.UUID]*mdPeer{}}
	if len(profiles) == 0 {
		profiles = []tunnel.ProtectionProfile{tunnel.ProfileDoubleAEADAES128GCM, tunnel.ProfileDoubleAEADAES256GCM, tunnel.ProfileAEADAES128GCM}
	}
	md, err := tunnel.NewMD(tunnel.MDConfig{Peers: []string{ln.Addr().String()}, TLS: mdTLS, Profiles: profiles,
		Logger: quiet(), BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}, m)
	if err != nil {
		t.Fatal(err)
	}
	m.md = md
	wg.Go(func() { _ = md.Run(ctx) })
	wg.Go(m.readLoop)
	t.Cleanup(func() {
		cancel()
		_ = udp.Close()
		_ = kd.Close()
		_ = tk.Close()
		wg.Wait()
	})
	c := &conference{t: t, reg: reg, kd: kd, kdFP: keydist.CertFingerprint(cert), md: m,
		addr: udp.LocalAddr().(*net.UDPAddr).AddrPort(), ektSrc: src}
	// The tunnel is up once SupportedProfiles went through.
	deadline := time.Now().Add(5 * time.Second)
	for md.Up() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return c
}

// member is one endpoint in a test conference, recording what it received.
type member struct {
	s  *Session
	mu sync.Mutex
	rx map[uint32][][]byte // payloads by sender SSRC
}

func (m *member) payloads(ssrc uint32) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.rx[ssrc]...)
}

// join registers a new endpoint in conference id and dials it.
func (c *conference) join(id string, tweak func(*Config)) (*member, error) {
	c.t.Helper()
	cert, err := keydist.GenerateCertificate(time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	tlsID := keydist.NewTLSID()
	if _, err := c.reg.AddEndpoint(id, keydist.Endpoint{TLSID: tlsID, Fingerprint: keydist.CertFingerprint(cert)}); err != nil {
		c.t.Fatal(err)
	}
	m := &member{rx: map[uint32][][]byte{}}
	cfg := Config{Certificate: cert, TLSID: tlsID, KDFingerprint: c.kdFP, RetransmitTimeout: 100 * time.Millisecond,
		OnRTP: func(p RTPPacket) {
			m.mu.Lock()
			m.rx[p.SSRC] = append(m.rx[p.SSRC], bytes.Clone(p.Payload))
			m.mu.Unlock()
		}}
	if tweak != nil {
		tweak(&cfg)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Dial(ctx, pc, c.addr, cfg)
	if err != nil {
		return nil, err
	}
	m.s = s
	c.t.Cleanup(func() { _ = s.Close() })
	return m, nil
}

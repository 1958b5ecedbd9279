package keydist

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/dtls/v3"

	"github.com/mdfast/mdfast/internal/dtlsmsg/piondtls"
	"github.com/mdfast/mdfast/internal/tunnel"
	"github.com/mdfast/mdfast/internal/tunnel/tunneltest"
)

// event is one message the MD received from the KD, in tunnel order.
type event struct {
	kind string // "dtls", "keys", "disconnect"
	id   uuid.UUID
	dtls []byte
	keys *tunnel.MediaKeys
}

// relay is the MD side of the tests: a UDP socket for endpoints, a
// tunnel.MD to the KD, and a map association id <-> UDP address.
type relay struct {
	t    testing.TB
	udp  *net.UDPConn
	md   *tunnel.MD
	mu   sync.Mutex
	ids  map[string]uuid.UUID
	addr map[uuid.UUID]*net.UDPAddr
	evs  []event
	up   chan bool
	sig  chan struct{}
}

func (r *relay) HandleTunneledDtls(id uuid.UUID, b []byte) {
	r.record(event{kind: "dtls", id: id, dtls: bytes.Clone(b)})
	r.mu.Lock()
	a := r.addr[id]
	r.mu.Unlock()
	if a != nil {
		_, _ = r.udp.WriteToUDP(b, a)
	}
}

func (r *relay) HandleMediaKeys(mk *tunnel.MediaKeys) {
	c := *mk
	c.MKI = bytes.Clone(mk.MKI)
	c.ClientWriteMasterKey = bytes.Clone(mk.ClientWriteMasterKey)
	c.ServerWriteMasterKey = bytes.Clone(mk.ServerWriteMasterKey)
	c.ClientWriteMasterSalt = bytes.Clone(mk.ClientWriteMasterSalt)
	c.ServerWriteMasterSalt = bytes.Clone(mk.ServerWriteMasterSalt)
	r.record(event{kind: "keys", id: mk.AssociationID, keys: &c})
}

func (r *relay) HandleEndpointDisconnect(id uuid.UUID) {
	r.record(event{kind: "disconnect", id: id})
}

func (r *relay) TunnelState(_ string, up bool) {
	select {
	case r.up <- up:
	default:
	}
}

func (r *relay) record(e event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
	select {
	case r.sig <- struct{}{}:
	default:
	}
}

func (r *relay) events(id uuid.UUID) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.evs {
		if e.id == id {
			out = append(out, e)
		}
	}
	return out
}

// idFor returns the association id of the endpoint at UDP address a.
func (r *relay) idFor(a *net.UDPAddr) uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[a.String()]
}

// waitEvent waits until f holds for the events of id.
func (r *relay) waitEvent(id uuid.UUID, timeout time.Duration, f func([]event) bool) bool {
	deadline := time.After(timeout)
	for {
		if f(r.events(id)) {
			return true
		}
		select {
		case <-r.sig:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

func (r *relay) readLoop() {
	buf := make([]byte, 65536)
	for {
		n, a, err := r.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		id, ok := r.ids[a.String()]
		if !ok {
			id = uuid.New()
			r.ids[a.String()] = id
			r.addr[id] = a
		}
		r.mu.Unlock()
		_ = r.md.SendTunneledDtls(id, buf[:n])
	}
}

// env is a KD behind a tunnel listener and an MD relay connected to it.
type env struct {
	reg   *Registry
	kd    *KeyDistributor
	tk    *tunnel.KD
	relay *relay
	kdFP  Fingerprint
}

type envOpts struct {
	mdProfiles []tunnel.ProtectionProfile
	mdCert     func(ca *tunneltest.CA) tls.Certificate // nil: issued by the tunnel CA
	cfg        func(*Config)
	noWaitUp   bool
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ca := tunneltest.NewCA(t, "test-ca")
	kdTLS, err := tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{ca.Leaf(t, "kd")}, CAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	mdCert := ca.Leaf(t, "md")
	mdCAs := ca.Pool
	if o.mdCert != nil {
		mdCert = o.mdCert(ca)
	}
	mdTLS, err := tunnel.NewTLSConfig(tunnel.TLSOptions{Certificates: []tls.Certificate{mdCert}, CAs: mdCAs, ServerName: "kd"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	cfg := Config{Certificate: cert, Registry: reg, Logger: discardLogger(), HandshakeTimeout: 5 * time.Second, FlightInterval: 200 * time.Millisecond}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	kd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tunnel.NewKD(tunnel.KDConfig{TLS: kdTLS, Logger: discardLogger()}, kd)
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

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, udp: udp, ids: map[string]uuid.UUID{}, addr: map[uuid.UUID]*net.UDPAddr{},
		up: make(chan bool, 4), sig: make(chan struct{}, 1)}
	profiles := o.mdProfiles
	if profiles == nil {
		profiles = []tunnel.ProtectionProfile{tunnel.ProfileAEADAES128GCM, tunnel.ProfileAEADAES256GCM, tunnel.ProfileAES128CMHMACSHA1_80}
	}
	md, err := tunnel.NewMD(tunnel.MDConfig{Peers: []string{ln.Addr().String()}, TLS: mdTLS, Profiles: profiles,
		Logger: discardLogger(), BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, r)
	if err != nil {
		t.Fatal(err)
	}
	r.md = md
	wg.Go(func() { _ = md.Run(ctx) })
	wg.Go(r.readLoop)
	t.Cleanup(func() {
		cancel()
		_ = udp.Close()
		_ = kd.Close()
		_ = tk.Close()
		wg.Wait()
	})
	if !o.noWaitUp {
		select {
		case up := <-r.up:
			if !up {
				t.Fatal("tunnel reported down")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("tunnel did not come up")
		}
		// TunnelUp on the KD side runs after SupportedProfiles: wait for it.
		deadline := time.Now().Add(5 * time.Second)
		for {
			kd.mu.Lock()
			n := len(kd.peers)
			kd.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("KD never saw the tunnel")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return &env{reg: reg, kd: kd, tk: tk, relay: r, kdFP: CertFingerprint(cert)}
}

// endpoint is a pion/dtls client endpoint.
type endpoint struct {
	cert     tls.Certificate
	fp       Fingerprint
	tlsID    string // "" : no external_session_id
	profiles []dtls.SRTPProtectionProfile
	mki      []byte
}

func newEndpoint(t testing.TB, tlsID string, profiles ...dtls.SRTPProtectionProfile) *endpoint {
	t.Helper()
	c, err := GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &endpoint{cert: c, fp: CertFingerprint(c), tlsID: tlsID, profiles: profiles}
}

// result of an endpoint handshake.
type epResult struct {
	conn     *dtls.Conn
	pc       *net.UDPConn
	local    *net.UDPAddr
	material []byte
	profile  uint16
	err      error
}

// connect runs the endpoint's handshake through the relay and exports the
// DTLS-SRTP keying material.
func (ep *endpoint) connect(ctx context.Context, relayAddr net.Addr, kdFP Fingerprint) epResult {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return epResult{err: err}
	}
	opts := []dtls.ClientOption{
		dtls.WithCertificates(ep.cert),
		dtls.WithInsecureSkipVerify(true), // checked by fingerprint below, as DTLS-SRTP does
		dtls.WithSRTPProtectionProfiles(ep.profiles...),
		dtls.WithFlightInterval(200 * time.Millisecond),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || CertificateFingerprint(raw[0]) != kdFP {
				return errors.New("KD fingerprint mismatch")
			}
			return nil
		}),
	}
	if len(ep.mki) > 0 {
		opts = append(opts, dtls.WithSRTPMasterKeyIdentifier(ep.mki))
	}
	if ep.tlsID != "" {
		hook, err := piondtls.ClientHelloHook([]byte(ep.tlsID))
		if err != nil {
			_ = pc.Close()
			return epResult{err: err}
		}
		opts = append(opts, dtls.WithClientHelloMessageHook(hook))
	}
	res := epResult{pc: pc, local: pc.LocalAddr().(*net.UDPAddr)}
	conn, err := dtls.ClientWithOptions(pc, relayAddr, opts...)
	if err != nil {
		_ = pc.Close()
		res.err = err
		return res
	}
	res.conn = conn
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		res.err = err
		return res
	}
	p, _ := conn.SelectedSRTPProtectionProfile()
	res.profile = uint16(p)
	kl, sl, _ := ProfileKeyLengths(res.profile)
	st, _ := conn.ConnectionState()
	res.material, res.err = st.ExportKeyingMaterial(exporterLabelDTLSSRTP, nil, 2*(kl+sl))
	return res
}

// keysOf returns the MediaKeys the relay received for id, or nil.
func keysOf(evs []event) *tunnel.MediaKeys {
	for _, e := range evs {
		if e.kind == "keys" {
			return e.keys
		}
	}
	return nil
}

func hasKind(evs []event, kind string) bool {
	for _, e := range evs {
		if e.kind == kind {
			return true
		}
	}
	return false
}

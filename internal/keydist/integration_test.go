package keydist

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/mdfast/mdfast/internal/tunnel"
	"github.com/mdfast/mdfast/internal/tunnel/tunneltest"
)

// checkKeys compares the endpoint's exported keying material with the
// MediaKeys the MD received.
func checkKeys(t *testing.T, profile uint16, material []byte, mk *tunnel.MediaKeys) {
	t.Helper()
	km, err := SplitKeyingMaterial(profile, bytes.Clone(material))
	if err != nil {
		t.Fatal(err)
	}
	if uint16(mk.Profile) != profile {
		t.Fatalf("MediaKeys profile %v, endpoint negotiated 0x%04x", mk.Profile, profile)
	}
	if !bytes.Equal(mk.ClientWriteMasterKey, km.ClientKey) || !bytes.Equal(mk.ServerWriteMasterKey, km.ServerKey) ||
		!bytes.Equal(mk.ClientWriteMasterSalt, km.ClientSalt) || !bytes.Equal(mk.ServerWriteMasterSalt, km.ServerSalt) {
		t.Fatal("MediaKeys differ from the keys the endpoint exported")
	}
}

// finishedIndex returns the index of the first TunneledDtls that carries the
// KD's ChangeCipherSpec/Finished (epoch >= 1), and of the MediaKeys.
func orderIndexes(evs []event) (keys, finished int) {
	keys, finished = -1, -1
	for i, e := range evs {
		switch {
		case e.kind == "keys" && keys < 0:
			keys = i
		case e.kind == "dtls" && finished < 0 && startsNewEpoch(e.dtls):
			finished = i
		}
	}
	return keys, finished
}

func TestIntegrationMediaKeys(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name    string
		profile dtls.SRTPProtectionProfile
		offer   []dtls.SRTPProtectionProfile
		mki     []byte
	}{
		{"AEAD_AES_128_GCM", dtls.SRTP_AEAD_AES_128_GCM, []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM}, nil},
		{"AEAD_AES_256_GCM", dtls.SRTP_AEAD_AES_256_GCM, []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AEAD_AES_128_GCM}, nil},
		{"AES128_CM_SHA1_80 with MKI", dtls.SRTP_AES128_CM_HMAC_SHA1_80, []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, []byte{1, 2, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsID := NewTLSID()
			ep := newEndpoint(t, tlsID, tc.offer...)
			ep.mki = tc.mki
			entry, err := e.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: ep.fp})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res := ep.connect(ctx, e.relay.udp.LocalAddr(), e.kdFP)
			if res.err != nil {
				t.Fatal(res.err)
			}
			defer res.conn.Close()
			if res.profile != uint16(tc.profile) {
				t.Fatalf("negotiated 0x%04x", res.profile)
			}
			id := e.relay.idFor(res.local)
			if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return keysOf(ev) != nil }) {
				t.Fatal("no MediaKeys")
			}
			evs := e.relay.events(id)
			mk := keysOf(evs)
			checkKeys(t, res.profile, res.material, mk)
			if !bytes.Equal(mk.MKI, tc.mki) {
				t.Fatalf("MKI %x, want %x", mk.MKI, tc.mki)
			}
			k, f := orderIndexes(evs)
			if k < 0 || f < 0 || k > f {
				t.Fatalf("MediaKeys at %d, server Finished at %d: MediaKeys must come first", k, f)
			}
			// The KD's tls-id is in its ServerHello.
			var sawKDID bool
			for _, ev := range evs {
				if ev.kind == "dtls" && bytes.Contains(ev.dtls, []byte(entry.KDTLSID)) {
					sawKDID = true
				}
			}
			if !sawKDID {
				t.Fatal("KD tls-id not in the ServerHello")
			}
			// close_notify from the endpoint ends the association: EndpointDisconnect.
			_ = res.conn.Close()
			if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return hasKind(ev, "disconnect") }) {
				t.Fatal("no EndpointDisconnect after close_notify")
			}
		})
	}
	waitNoAssociations(t, e.kd)
}

func waitNoAssociations(t *testing.T, kd *KeyDistributor) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for kd.NumAssociations() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d associations left: %+v", kd.NumAssociations(), kd.Associations())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIntegrationRejections(t *testing.T) {
	e := newEnv(t, envOpts{mdProfiles: []tunnel.ProtectionProfile{tunnel.ProfileAEADAES128GCM, tunnel.ProfileAEADAES256GCM}})
	gcm := []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM}
	other := newEndpoint(t, "", gcm...)
	for _, tc := range []struct {
		name     string
		register func(ep *endpoint) // what the signalling registered
		ep       func() *endpoint
	}{
		{"unknown tls-id", func(ep *endpoint) {
			_, _ = e.reg.AddEndpoint("conf", Endpoint{TLSID: NewTLSID(), Fingerprint: ep.fp})
		}, func() *endpoint { return newEndpoint(t, NewTLSID(), gcm...) }},
		{"wrong fingerprint", func(ep *endpoint) {
			_, _ = e.reg.AddEndpoint("conf", Endpoint{TLSID: ep.tlsID, Fingerprint: other.fp})
		}, func() *endpoint { return newEndpoint(t, NewTLSID(), gcm...) }},
		{"missing extension", func(ep *endpoint) {
			_, _ = e.reg.AddEndpoint("conf", Endpoint{TLSID: NewTLSID(), Fingerprint: ep.fp})
		}, func() *endpoint { return newEndpoint(t, "", gcm...) }},
		{"no common profile", func(ep *endpoint) {
			_, _ = e.reg.AddEndpoint("conf", Endpoint{TLSID: ep.tlsID, Fingerprint: ep.fp})
		}, func() *endpoint { return newEndpoint(t, NewTLSID(), dtls.SRTP_AES128_CM_HMAC_SHA1_80) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := tc.ep()
			tc.register(ep)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			res := ep.connect(ctx, e.relay.udp.LocalAddr(), e.kdFP)
			if res.err == nil {
				_ = res.conn.Close()
				t.Fatal("handshake succeeded")
			}
			id := e.relay.idFor(res.local)
			if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return hasKind(ev, "disconnect") }) {
				t.Fatal("no EndpointDisconnect")
			}
			if keysOf(e.relay.events(id)) != nil {
				t.Fatal("MediaKeys sent for a rejected association")
			}
		})
	}
	waitNoAssociations(t, e.kd)
}

func TestIntegrationUnauthorizedMD(t *testing.T) {
	e := newEnv(t, envOpts{noWaitUp: true, mdCert: func(*tunneltest.CA) tls.Certificate {
		return tunneltest.NewCA(t, "rogue-ca").Leaf(t, "md")
	}})
	tlsID := NewTLSID()
	ep := newEndpoint(t, tlsID, dtls.SRTP_AEAD_AES_128_GCM)
	_, _ = e.reg.AddEndpoint("conf", Endpoint{TLSID: tlsID, Fingerprint: ep.fp})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if res := ep.connect(ctx, e.relay.udp.LocalAddr(), e.kdFP); res.err == nil {
		t.Fatal("handshake through an unauthorized MD succeeded")
	}
	e.relay.mu.Lock()
	defer e.relay.mu.Unlock()
	for _, ev := range e.relay.evs {
		if ev.kind == "keys" {
			t.Fatal("MediaKeys reached an unauthorized MD")
		}
	}
	if len(e.kd.peers) != 0 {
		t.Fatal("KD accepted a tunnel from an unauthorized MD")
	}
}

func TestIntegrationAdminRemoval(t *testing.T) {
	e := newEnv(t, envOpts{})
	tlsID := NewTLSID()
	ep := newEndpoint(t, tlsID, dtls.SRTP_AEAD_AES_128_GCM)
	h, err := NewAdminHandler(AdminConfig{Registry: e.reg, KD: e.kd, Token: "tok", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rec := adminDo(t, h, "POST", "/v1/conferences/room/endpoints", "tok",
		fmt.Sprintf(`{"tls_id":%q,"fingerprint":"sha-256 %s"}`, tlsID, ep.fp))
	if rec.Code != 201 {
		t.Fatalf("add: %d %s", rec.Code, rec.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := ep.connect(ctx, e.relay.udp.LocalAddr(), e.kdFP)
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.conn.Close()
	id := e.relay.idFor(res.local)
	if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return keysOf(ev) != nil }) {
		t.Fatal("no MediaKeys")
	}
	if rec := adminDo(t, h, "GET", "/v1/associations", "tok", ""); !strings.Contains(rec.Body.String(), id.String()) {
		t.Fatalf("association not listed: %s", rec.Body)
	}
	if rec := adminDo(t, h, "DELETE", "/v1/conferences/room/endpoints/"+tlsID, "tok", ""); rec.Code != 200 {
		t.Fatalf("remove: %d %s", rec.Code, rec.Body)
	}
	if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return hasKind(ev, "disconnect") }) {
		t.Fatal("no EndpointDisconnect after removal")
	}
	// The endpoint sees close_notify.
	_ = res.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := res.conn.Read(make([]byte, 100)); err == nil {
		t.Fatal("endpoint read data instead of close_notify")
	}
	waitNoAssociations(t, e.kd)
}

func TestIntegrationMDDisconnect(t *testing.T) {
	e := newEnv(t, envOpts{})
	tlsID := NewTLSID()
	ep := newEndpoint(t, tlsID, dtls.SRTP_AEAD_AES_128_GCM)
	_, _ = e.reg.AddEndpoint("c", Endpoint{TLSID: tlsID, Fingerprint: ep.fp})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := ep.connect(ctx, e.relay.udp.LocalAddr(), e.kdFP)
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.conn.Close()
	id := e.relay.idFor(res.local)
	if !e.relay.waitEvent(id, 5*time.Second, func(ev []event) bool { return keysOf(ev) != nil }) {
		t.Fatal("no MediaKeys")
	}
	if err := e.relay.md.SendEndpointDisconnect(id); err != nil {
		t.Fatal(err)
	}
	waitNoAssociations(t, e.kd)
}

// TestIntegrationOpenSSL runs a real third-party endpoint: openssl s_client
// (legacy: it cannot send external_session_id) through the relay; the
// keying material it prints must equal the MediaKeys.
func TestIntegrationOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t, envOpts{})
	ep := newEndpoint(t, "")
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(ep.cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ep.cert.Certificate[0]}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	if err := e.reg.SetConference("legacy-room", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.AddEndpoint("legacy-room", Endpoint{Fingerprint: ep.fp}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-dtls1_2", "-use_srtp", "SRTP_AEAD_AES_128_GCM",
		"-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", "56",
		"-connect", e.relay.udp.LocalAddr().String(), "-cert", certPath, "-key", keyPath)
	stdin, _ := cmd.StdinPipe() // kept open: s_client stays connected until we are done
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var material []byte
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if h, ok := strings.CutPrefix(line, "Keying material:"); ok {
			if material, err = hex.DecodeString(strings.TrimSpace(h)); err != nil {
				t.Fatalf("keying material %q: %v", h, err)
			}
			break
		}
	}
	if material == nil {
		t.Fatalf("s_client printed no keying material; stderr: %s", stderr.String())
	}
	e.relay.mu.Lock()
	var mk *tunnel.MediaKeys
	for _, ev := range e.relay.evs {
		if ev.kind == "keys" {
			mk = ev.keys
		}
	}
	e.relay.mu.Unlock()
	if mk == nil {
		t.Fatal("no MediaKeys")
	}
	checkKeys(t, ProfileAEADAES128GCM, material, mk)
}

// TestLoad500 runs 500 concurrent handshakes through one tunnel and reports
// the duration and the KD heap with them open. Gated: MDFAST_LOAD=1.
func TestLoad500(t *testing.T) {
	if os.Getenv("MDFAST_LOAD") == "" {
		t.Skip("set MDFAST_LOAD=1 to run the 500-handshake load test")
	}
	const n = 500
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.HandshakeTimeout = 60 * time.Second }})
	eps := make([]*endpoint, n)
	for i := range eps {
		eps[i] = newEndpoint(t, NewTLSID(), dtls.SRTP_AEAD_AES_128_GCM)
		if _, err := e.reg.AddEndpoint("load", Endpoint{TLSID: eps[i].tlsID, Fingerprint: eps[i].fp}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := time.Now()
	results := make([]epResult, n)
	var wg sync.WaitGroup
	for i := range eps {
		wg.Go(func() { results[i] = eps[i].connect(ctx, e.relay.udp.LocalAddr(), e.kdFP) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.kd.NumAssociations() < n-failed && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	open := e.kd.NumAssociations()
	t.Logf("%d handshakes (%d failed) through one tunnel in %v; %d associations open", n, failed, elapsed, open)
	t.Logf("process heap in use: before %.1f MiB, with them open %.1f MiB (%d goroutines); includes the %d test endpoints",
		float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20), runtime.NumGoroutine(), n)
	// The KD's share: drop the endpoints' sockets without close_notify (the
	// KD keeps its associations: no idle timeout), collect, measure again.
	for _, r := range results {
		if r.pc != nil {
			_ = r.pc.Close()
		}
	}
	// Drop every reference to the pion endpoints (their goroutines end
	// with their sockets), so that what stays is the KD's.
	results, eps = nil, nil
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var kdOnly runtime.MemStats
	runtime.ReadMemStats(&kdOnly)
	perAssoc := (float64(kdOnly.HeapInuse) - float64(before.HeapInuse)) / float64(open)
	t.Logf("KD alone with %d associations open: heap in use %.1f MiB, %.1f KiB per association, %d goroutines in the process",
		e.kd.NumAssociations(), float64(kdOnly.HeapInuse)/(1<<20), perAssoc/1024, runtime.NumGoroutine())
	if failed > 0 {
		t.Fatalf("%d handshakes failed", failed)
	}
}

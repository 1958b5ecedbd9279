package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/mdfast/mdfast/internal/dtls"
	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/testutil"
	"github.com/mdfast/mdfast/perc"
)

// confKD runs a Key Distributor on loopback whose registry holds confs
// (conference -> identities) and returns its tunnel address and DTLS
// certificate fingerprint.
func confKD(t *testing.T, p *pki, confs map[string][]endpointsim.Identity) (string, keydist.Fingerprint) {
	t.Helper()
	reg := keydist.NewRegistry()
	var cs []keydist.Conference
	for name, ids := range confs {
		c := keydist.Conference{ID: name}
		for _, id := range ids {
			c.Endpoints = append(c.Endpoints, keydist.Endpoint{TLSID: id.TLSID, Fingerprint: id.Fingerprint()})
		}
		cs = append(cs, c)
	}
	if err := reg.ReplaceFile(cs); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr, cert := serveKDRegistry(t, p, ln, reg)
	return addr, cert
}

// startMD runs "mdfast run" with the config file body and waits until
// /readyz answers 200 (the tunnel to the KD is up). It returns the
// metrics and control API URLs, the log and a stop function (SIGTERM,
// wait).
func startMD(t *testing.T, p *pki, name, body string) (metricsURL, controlURL string, logs *syncBuffer, stop func()) {
	t.Helper()
	path := p.writeConfig(t, name, body)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var stdout, stderr syncBuffer
	cmd := command(ctx, "run", "-config", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			cancel()
			if t.Failed() {
				t.Logf("%s: mdfast stderr:\n%s", name, stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		for _, m := range listenRE.FindAllStringSubmatch(stderr.String(), -1) {
			if m[1] == "metrics" {
				metricsURL = "http://" + m[2]
			} else {
				controlURL = "http://" + m[2]
			}
		}
		if metricsURL != "" {
			if resp, err := client.Get(metricsURL + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return metricsURL, controlURL, &stderr, stop
				}
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mdfast exited (%v):\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mdfast not ready in 15s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// member is a legacy endpoint (AEAD_AES_128_GCM: the MD holds the whole
// key and re-seals every packet with the receiver's) that counts what it
// receives per sender SSRC.
type member struct {
	name string
	id   endpointsim.Identity
	ssrc uint32
	s    *perc.Session
	seq  uint16 // of the next packet (talk's goroutine)

	mu  sync.Mutex
	got map[uint32]int
}

func newMember(t *testing.T, name string, ssrc uint32) *member {
	t.Helper()
	id, err := endpointsim.NewIdentity(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &member{name: name, id: id, ssrc: ssrc}
}

// dial joins through the MD at md; it returns perc.Dial's error.
func (m *member) dial(ctx context.Context, md netip.AddrPort, kd keydist.Fingerprint) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.got = map[uint32]int{}
	m.mu.Unlock()
	s, err := perc.Dial(ctx, c, md, perc.Config{
		Certificate: m.id.Cert, TLSID: m.id.TLSID, KDFingerprint: kd,
		Profiles: []uint16{perc.ProfileAES128GCM}, HandshakeTimeout: 10 * time.Second,
		OnRTP: func(p perc.RTPPacket) {
			m.mu.Lock()
			m.got[p.SSRC]++
			m.mu.Unlock()
		},
	})
	if err != nil {
		c.Close()
		return err
	}
	m.s = s
	return nil
}

func (m *member) close() {
	if m.s != nil {
		_ = m.s.Close()
		m.s = nil
	}
}

func (m *member) received(from *member) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got[from.ssrc]
}

// talk has every member send n packets, 5 ms apart, all at once, and
// waits a moment for the last ones.
func talk(t *testing.T, n int, ms ...*member) {
	t.Helper()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			for range n {
				seq := m.seq
				m.seq++
				pl := make([]byte, 160)
				binary.BigEndian.PutUint32(pl, m.ssrc)
				raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
					Timestamp: uint32(seq) * 960, SSRC: m.ssrc}, Payload: pl}).Marshal()
				if err != nil {
					t.Error(err)
					return
				}
				if err := m.s.WriteRTP(raw); err != nil {
					t.Errorf("%s: WriteRTP: %v", m.name, err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
}

// metricValue returns the value of the sample line that starts with
// series in the metrics page at url (-1 when absent).
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// checkIsolation: every member received packets from each member of its
// own conference and none from a member of another.
func checkIsolation(t *testing.T, confs ...[]*member) {
	t.Helper()
	for i, ci := range confs {
		for j, cj := range confs {
			for _, rx := range ci {
				for _, tx := range cj {
					if rx == tx {
						continue
					}
					n := rx.received(tx)
					switch {
					case i == j && n == 0:
						t.Errorf("%s received nothing from %s, a member of its conference", rx.name, tx.name)
					case i != j && n != 0:
						t.Errorf("%s received %d packets from %s, a member of another conference", rx.name, n, tx.name)
					}
				}
			}
		}
	}
}

// TestConferencesIsolated runs the daemon against a KD with two legacy
// conferences and endpoints (perc, AEAD_AES_128_GCM) on loopback:
//
//   - mapped by tls-id, the members of each conference receive each
//     other's packets and never a packet of the other conference (counted
//     at the receivers: with the legacy profile a packet forwarded across
//     would open there);
//   - an endpoint the KD admits to a conference but no mapping places is
//     refused by the MD: its DTLS fails with access_denied and
//     mdfast_endpoints_refused_total{reason="no_mapping"} counts it;
//   - restarted in single-conference mode naming the first conference,
//     the MD places that endpoint there: it talks with that conference's
//     members and still never with the other's.
func TestConferencesIsolated(t *testing.T) {
	testutil.NeedRoot(t, "runs the mdfast daemon end to end")
	p := writePKI(t)
	a1, a2, u := newMember(t, "a1", 0xA1), newMember(t, "a2", 0xA2), newMember(t, "unmapped", 0xCC)
	b1, b2 := newMember(t, "b1", 0xB1), newMember(t, "b2", 0xB2)
	kdAddr, kdFP := confKD(t, p, map[string][]endpointsim.Identity{
		"roomA": {a1.id, a2.id, u.id}, // the KD admits u to roomA; the MD has no mapping for it
		"roomB": {b1.id, b2.id},
	})
	mediaPort := freeUDPPort(t)
	md := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), mediaPort)
	cfg := func(extra ...string) string {
		lines := []string{
			"mode: socket",
			"address: 127.0.0.1",
			fmt.Sprintf("media-ports: [%d]", mediaPort),
			"kd: [" + kdAddr + "]",
			"kd-server-name: kd",
			"tunnel-cert: " + p.certFile,
			"tunnel-key: " + p.key,
			"tunnel-ca: " + p.caFile,
			"tunnel-backoff-max: 200ms",
			"control-listen: 127.0.0.1:0",
			"control-token-file: " + p.tokenFile,
			"metrics-listen: 127.0.0.1:0",
			"new-associations-per-second: -1", // every endpoint has the address 127.0.0.1
			"mappings:",
			"  tls-ids:",
		}
		for _, m := range []*member{a1, a2} {
			lines = append(lines, fmt.Sprintf("    %q: roomA", m.id.TLSID))
		}
		for _, m := range []*member{b1, b2} {
			lines = append(lines, fmt.Sprintf("    %q: roomB", m.id.TLSID))
		}
		return strings.Join(append(lines, extra...), "\n") + "\n"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	join := func(ms ...*member) {
		t.Helper()
		for _, m := range ms {
			if err := m.dial(ctx, md, kdFP); err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			t.Cleanup(m.close)
		}
	}

	// Mappings only: two conferences, kept apart; the unmapped endpoint
	// refused.
	url, ctl, logs, stop := startMD(t, p, "mappings.yaml", cfg())
	join(a1, a2, b1, b2)
	talk(t, 40, a1, a2, b1, b2)
	checkIsolation(t, []*member{a1, a2}, []*member{b1, b2})

	toKD := `mdfast_slowpath_events_total{event="dtls_to_kd"}`
	toKDBefore := metricValue(t, url, toKD)
	if toKDBefore <= 0 {
		t.Fatalf("%s = %v after four handshakes", toKD, toKDBefore)
	}
	err := u.dial(ctx, md, kdFP)
	var ae *dtls.AlertError
	if !errors.As(err, &ae) || ae.Description != dtls.AlertAccessDenied || !ae.Remote {
		t.Fatalf("unmapped endpoint: Dial = %v, want an access_denied alert from the MD", err)
	}
	if v := metricValue(t, url, `mdfast_endpoints_refused_total{reason="no_mapping"}`); v != 1 {
		t.Errorf(`mdfast_endpoints_refused_total{reason="no_mapping"} = %v, want 1`, v)
	}
	// The KD never saw the refused endpoint's ClientHello (one datagram):
	// no handshake was started for it.
	if after := metricValue(t, url, toKD); after != toKDBefore {
		t.Errorf("%s went from %v to %v during the refused handshake, want no datagram to the KD", toKD, toKDBefore, after)
	}
	if !strings.Contains(logs.String(), "endpoint refused: no mapping places it in a conference") {
		t.Error("the refusal was not logged")
	}
	for _, m := range []*member{a1, a2, b1, b2} {
		if n := m.received(u); n != 0 {
			t.Errorf("%s received %d packets from the refused endpoint", m.name, n)
		}
	}

	// A mapping added through the control API after the refusal admits
	// the endpoint's next handshake; removing it ends the association.
	controlDo(t, http.MethodPut, ctl+"/v1/mappings/tls-id/"+u.id.TLSID, `{"conference":"roomA"}`)
	join(u)
	talk(t, 40, a1, a2, u, b1, b2)
	checkIsolation(t, []*member{a1, a2, u}, []*member{b1, b2})
	controlDo(t, http.MethodDelete, ctl+"/v1/mappings/tls-id/"+u.id.TLSID, "")
	if v := metricValue(t, url, `mdfast_endpoints_refused_total{reason="mapping_removed"}`); v != 1 {
		t.Errorf(`mdfast_endpoints_refused_total{reason="mapping_removed"} = %v, want 1`, v)
	}
	if v := metricValue(t, url, "mdfast_associations"); v != 4 {
		t.Errorf("mdfast_associations = %v after the mapping was removed, want 4", v)
	}
	for _, m := range []*member{a1, a2, u, b1, b2} {
		m.close()
	}
	stop()

	// Single-conference mode (roomA): the unmapped endpoint joins roomA;
	// roomB, mapped, stays apart.
	url, _, logs, _ = startMD(t, p, "single.yaml", cfg("single-conference: roomA"))
	if !strings.Contains(logs.String(), "single-conference mode") {
		t.Error("single-conference mode not logged at start")
	}
	join(a1, u, b1, b2)
	talk(t, 40, a1, u, b1, b2)
	checkIsolation(t, []*member{a1, u}, []*member{b1, b2})
	if v := metricValue(t, url, `mdfast_endpoints_refused_total{reason="no_mapping"}`); v != 0 {
		t.Errorf(`single-conference mode: mdfast_endpoints_refused_total{reason="no_mapping"} = %v, want 0`, v)
	}
}

// controlDo sends an authorized control API request and wants 204.
func controlDo(t *testing.T, method, url, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer 0123456789abcdef0123456789abcdef")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%s %s = %s", method, url, resp.Status)
	}
}

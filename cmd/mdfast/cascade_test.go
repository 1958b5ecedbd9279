package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/rtp"
	"golang.org/x/sys/unix"

	"github.com/mdfast/mdfast/internal/cascade"
	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/etcdtest"
	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/srtpfast"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/internal/testutil"
	"github.com/mdfast/mdfast/perc"
)

// TestPresence: the slow path's table writes become the set of hosted
// conferences (with their profile kind), once per change.
func TestPresence(t *testing.T) {
	table, err := keytable.New(keytable.Config{})
	if err != nil {
		t.Fatal(err)
	}
	memb, _ := control.NewMembership("")
	if err := memb.Replace(control.Mappings{TLSIDs: map[string]string{"tls-id-a-0123456789": "room-a", "tls-id-b-0123456789": "room-b"}}); err != nil {
		t.Fatal(err)
	}
	ida, _ := memb.Conference("tls-id-a-0123456789", netip.AddrPort{})
	idb, _ := memb.Conference("tls-id-b-0123456789", netip.AddrPort{})
	var got []map[string]cascade.Local
	p := newPresence(table, memb, func(l map[string]cascade.Local) { got = append(got, l) })
	keys := func(prof srtpfast.Profile) *srtpfast.Keys {
		k, err := srtpfast.NewKeys(prof, make([]byte, prof.HBHKeyLen()), make([]byte, 12), nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ctx := context.Background()
	install := func(port uint16, conf keytable.ConferenceID, prof srtpfast.Profile) uuid.UUID {
		id := uuid.New()
		if _, err := p.Install(ctx, keytable.Association{ID: id, Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.5"), port),
			Conference: conf, Recv: keys(prof), Send: keys(prof)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1 := install(1, ida, srtpfast.ProfileDoubleAEADAES128GCM)
	a2 := install(2, ida, srtpfast.ProfileDoubleAEADAES128GCM)
	b1 := install(3, idb, srtpfast.ProfileAEADAES128GCM)
	want := []map[string]cascade.Local{
		{"room-a": {ID: ida, Kind: directory.KindDouble}},
		{"room-a": {ID: ida, Kind: directory.KindDouble}, "room-b": {ID: idb, Kind: directory.KindSingle}},
	}
	check := func(step string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: changes %v, want %v", step, got, want)
		}
	}
	check("installs")
	if err := p.Remove(ctx, a1); err != nil {
		t.Fatal(err)
	}
	check("one of two members gone") // no change
	if _, err := p.SetConference(ctx, b1, ida); err != nil {
		t.Fatal(err)
	}
	want = append(want, map[string]cascade.Local{"room-a": {ID: ida, Kind: directory.KindDouble}})
	check("move")
	if err := p.Remove(ctx, a2); err != nil {
		t.Fatal(err)
	}
	want = append(want, map[string]cascade.Local{"room-a": {ID: ida, Kind: directory.KindSingle}})
	check("double member gone")
	if ids, err := p.ExpireIdle(ctx, time.Nanosecond); err != nil || len(ids) != 1 {
		t.Fatalf("ExpireIdle = %v, %v", ids, err)
	}
	want = append(want, map[string]cascade.Local{})
	check("expired")
}

// cascadeMDProc is one mdfast of the cascade test, in its namespace.
type cascadeMDProc struct {
	name    string
	cfg     string // -config path
	node    *netnstest.Node
	cmd     *exec.Cmd
	exited  chan error
	stderr  *syncBuffer
	client  *http.Client
	metrics string
}

func (d *cascadeMDProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	code, body, err := syssim.Get(d.client, d.metrics+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s: GET /metrics = %d %v", d.name, code, err)
	}
	var sum float64
	for l := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(rest, &f); err == nil {
				sum += f
			}
		}
	}
	return sum
}

// cascadeEP is one PERC endpoint (double + EKT) that records every
// payload it receives per sender SSRC.
type cascadeEP struct {
	name string
	id   endpointsim.Identity
	ssrc uint32
	md   int
	s    *perc.Session

	mu  sync.Mutex
	got map[uint32][][]byte
	bad int
}

// payloadOf is what sender ssrc sends in packet seq: the receivers compare
// octet for octet.
func payloadOf(ssrc uint32, seq uint16) []byte {
	p := make([]byte, 120)
	binary.BigEndian.PutUint32(p, ssrc)
	binary.BigEndian.PutUint16(p[4:], seq)
	for i := 6; i < len(p); i++ {
		p[i] = byte(uint32(i)*31 + ssrc + uint32(seq))
	}
	return p
}

func (e *cascadeEP) from(ssrc uint32) [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got[ssrc]
}

// send sends n packets from seq0, 4 ms apart.
func (e *cascadeEP) send(t *testing.T, seq0 uint16, n int) {
	for i := range n {
		seq := seq0 + uint16(i)
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq,
			Timestamp: uint32(seq) * 960, SSRC: e.ssrc}, Payload: payloadOf(e.ssrc, seq)}).Marshal()
		if err != nil {
			t.Error(err)
			return
		}
		if err := e.s.WriteRTP(raw); err != nil {
			t.Errorf("%s: WriteRTP: %v", e.name, err)
			return
		}
		time.Sleep(4 * time.Millisecond)
	}
}

// TestCascadeThreeMDs: a real etcd, three mdfast daemons on three
// namespace hosts and one KD; six PERC endpoints (double + EKT) of one
// conference, two on each MD. Every endpoint gets every other's media octet
// for octet with no loss and no authentication failure, and the per-link
// counters show each packet crossed each link exactly once. Then one MD is
// killed (SIGKILL): the others' media keep flowing with no loss and its
// directory entries expire within the lease.
func TestCascadeThreeMDs(t *testing.T) {
	testutil.NeedRoot(t, "runs three mdfast daemons and etcd in network namespaces")
	etcdtest.Binary(t)
	const (
		lease = 3 * time.Second
		n     = 150 // packets per sender per phase (at most 4n < 65536: no SEQ wrap)
	)
	p := writePKI(t)
	br := netnstest.NewBridge(t)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }
	etcdNode := br.Node(t, 24, ip(10))
	kdNode := br.Node(t, 24, ip(20))
	epNode := br.Node(t, 24, ip(100))
	mdNodes := []*netnstest.Node{br.Node(t, 24, ip(1)), br.Node(t, 24, ip(2)), br.Node(t, 24, ip(3))}

	etcd := etcdtest.Start(t, etcdtest.Options{Netns: etcdNode.NS.Name, IP: ip(10)})

	// Six endpoints of one conference, two per MD; one KD (file registry).
	var eps []*cascadeEP
	reg := keydist.NewRegistry()
	conf := keydist.Conference{ID: "room"}
	mappings := []string{"mappings:", "  tls-ids:"}
	for i := range 6 {
		e := &cascadeEP{name: fmt.Sprintf("ep%d", i), ssrc: 0xC0DE0000 + uint32(i), md: i / 2, got: map[uint32][][]byte{}}
		id, err := endpointsim.NewIdentity(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e.id = id
		conf.Endpoints = append(conf.Endpoints, keydist.Endpoint{TLSID: e.id.TLSID, Fingerprint: e.id.Fingerprint()})
		mappings = append(mappings, fmt.Sprintf("    %q: room", e.id.TLSID))
		eps = append(eps, e)
	}
	if err := reg.ReplaceFile([]keydist.Conference{conf}); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := kdNode.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", ip(20).String()+":5740")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kdAddr, kdFP := serveKDRegistry(t, p, ln, reg)

	// Three MDs, each with its cascade certificate from the test CA.
	var mds []*cascadeMDProc
	for i, node := range mdNodes {
		name := fmt.Sprintf("md%d", i+1)
		if err := syssim.WriteTLSCert(p.dir, name+"-cascade", p.ca.Leaf(t, name)); err != nil {
			t.Fatal(err)
		}
		cfg := p.writeConfig(t, name+".yaml", strings.Join(append([]string{
			"mode: socket",
			"address: " + node.Addrs[0].String(),
			"media-ports: [5004]",
			"kd: [" + kdAddr + "]",
			"kd-server-name: kd",
			"tunnel-cert: " + p.certFile,
			"tunnel-key: " + p.key,
			"tunnel-ca: " + p.caFile,
			"tunnel-backoff-max: 200ms",
			"control-listen: ''",
			"metrics-listen: 127.0.0.1:9542",
			"new-associations-per-second: -1",
			"etcd-endpoints: [" + etcd.Endpoints()[0] + "]",
			"md-id: " + name,
			"cascade-listen: " + node.Addrs[0].String() + ":5800",
			"cascade-cert: " + filepath.Join(p.dir, name+"-cascade.crt"),
			"cascade-key: " + filepath.Join(p.dir, name+"-cascade.key"),
			"cascade-ca: " + p.caFile,
			fmt.Sprintf("directory-lease: %ds", int(lease/time.Second)),
		}, mappings...), "\n")+"\n")
		mds = append(mds, startCascadeMD(t, name, node, cfg))
	}
	for _, d := range mds {
		waitReady(t, d)
	}

	// The endpoints join, each through its MD.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	join := func(e *cascadeEP) {
		t.Helper()
		u, err := epNode.NS.ListenUDP(ip(100), 0)
		if err != nil {
			t.Fatal(err)
		}
		e.s, err = perc.Dial(ctx, u, netip.AddrPortFrom(ip(e.md+1), 5004), perc.Config{
			Certificate: e.id.Cert, TLSID: e.id.TLSID, KDFingerprint: kdFP,
			Profiles: []uint16{perc.ProfileDoubleAES128GCM}, HandshakeTimeout: 15 * time.Second,
			OnRTP: func(pk perc.RTPPacket) {
				e.mu.Lock()
				defer e.mu.Unlock()
				if len(pk.Payload) < 6 || binary.BigEndian.Uint32(pk.Payload) != pk.SSRC {
					e.bad++
					return
				}
				e.got[pk.SSRC] = append(e.got[pk.SSRC], bytes.Clone(pk.Payload))
			},
		})
		if err != nil {
			t.Fatalf("%s joining md%d: %v", e.name, e.md+1, err)
		}
		s := e.s
		t.Cleanup(func() { _ = s.Close() })
	}
	for _, e := range eps {
		join(e)
	}
	// Links: each MD has one link association (the one conference) with
	// each of the two others.
	linksUp := func(d *cascadeMDProc, peers ...string) bool {
		for _, pr := range peers {
			if d.metric(t, `mdfast_cascade_links{peer="`+pr+`"}`) != 1 || d.metric(t, `mdfast_cascade_peer_up{peer="`+pr+`"}`) != 1 {
				return false
			}
		}
		return true
	}
	start := time.Now()
	if _, ok := waitFor(20*time.Second, func() bool {
		return linksUp(mds[0], "md2", "md3") && linksUp(mds[1], "md1", "md3") && linksUp(mds[2], "md1", "md2")
	}); !ok {
		for _, d := range mds {
			t.Logf("%s:\n%s", d.name, d.stderr.String())
		}
		t.Fatal("the links between the three MDs did not come up")
	}
	t.Logf("links between the three MDs up %v after the last endpoint joined", time.Since(start).Round(time.Millisecond))

	// Phase 1: everyone talks.
	talkAll := func(senders []*cascadeEP, seq0 uint16) {
		var wg sync.WaitGroup
		for _, e := range senders {
			wg.Go(func() { e.send(t, seq0, n) })
		}
		wg.Wait()
	}
	complete := func(rx []*cascadeEP, tx []*cascadeEP, upto int) bool {
		for _, r := range rx {
			for _, s := range tx {
				if r != s && len(r.from(s.ssrc)) < upto {
					return false
				}
			}
		}
		return true
	}
	talkAll(eps, 0)
	waitFor(5*time.Second, func() bool { return complete(eps, eps, n) })
	checkMedia := func(rx, tx []*cascadeEP, seq0 uint16, upto int) {
		t.Helper()
		for _, r := range rx {
			for _, s := range tx {
				if r == s {
					continue
				}
				got := r.from(s.ssrc)
				if len(got) != upto {
					t.Errorf("%s (md%d) got %d packets from %s (md%d), want %d", r.name, r.md+1, len(got), s.name, s.md+1, upto)
					continue
				}
				for i := upto - n; i < upto; i++ {
					if !bytes.Equal(got[i], payloadOf(s.ssrc, seq0+uint16(i-(upto-n)))) {
						t.Errorf("%s: packet %d from %s differs from what was sent", r.name, i, s.name)
						break
					}
				}
			}
			r.mu.Lock()
			bad := r.bad
			r.mu.Unlock()
			st := r.s.Stats()
			if bad != 0 || st.DropOuter != 0 || st.DropInner != 0 || st.DropReplay != 0 || st.DropEKTAuth != 0 {
				t.Errorf("%s: %d foreign payloads, stats %+v (want no authentication failure)", r.name, bad, st)
			}
		}
	}
	checkMedia(eps, eps, 0, n)
	// Each packet crossed each link once: MD i sent exactly its two local
	// senders' packets to each peer, and each peer received exactly those.
	for i, d := range mds {
		for j, o := range mds {
			if i == j {
				continue
			}
			tx := d.metric(t, `mdfast_cascade_link_tx_packets_total{peer="`+o.name+`"}`)
			rx := o.metric(t, `mdfast_cascade_link_rx_packets_total{peer="`+d.name+`"}`)
			if tx != 2*n || rx != 2*n {
				t.Errorf("link %s→%s: sent %v, received %v packets; want %d each (every packet of %s's two senders once)", d.name, o.name, tx, rx, 2*n, d.name)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Phase 2: md3 is killed; the other four endpoints keep talking.
	killed := time.Now()
	_ = mds[2].cmd.Process.Signal(unix.SIGKILL)
	<-mds[2].exited
	mds[2].exited <- nil
	survivors := eps[:4]
	talkAll(survivors, n)
	waitFor(5*time.Second, func() bool { return complete(survivors, survivors, 2*n) })
	checkMedia(survivors, survivors, n, 2*n)
	// etcd checks for expired leases every 500 ms.
	_, ok := waitFor(time.Until(killed.Add(lease+time.Second)), func() bool {
		return mds[0].metric(t, "mdfast_directory_peers") == 2 && mds[1].metric(t, "mdfast_directory_peers") == 2
	})
	if !ok {
		t.Fatalf("md3's directory entries still there %v after the kill (lease %v)", time.Since(killed), lease)
	}
	t.Logf("md3's directory entries gone from both survivors' view %v after the kill (lease %v)", time.Since(killed).Round(time.Millisecond), lease)
	for _, d := range mds[:2] {
		if l := d.metric(t, `mdfast_cascade_links{peer="md3"}`); l != 0 {
			t.Errorf("%s still has %v links to the dead md3", d.name, l)
		}
	}

	// Phase 3: etcd stops for twice the lease. Established media keeps
	// flowing; when etcd is back, the MDs register again on new leases
	// and the links stay.
	regs := mds[0].metric(t, "mdfast_directory_registrations_total")
	etcd.Stop(0)
	talkAll(survivors, 2*n)
	waitFor(5*time.Second, func() bool { return complete(survivors, survivors, 3*n) })
	checkMedia(survivors, survivors, 2*n, 3*n)
	if _, ok := waitFor(2*lease, func() bool { return mds[0].metric(t, "mdfast_directory_registered") == 0 }); !ok {
		t.Error("md1 still says it is registered with etcd stopped for longer than the lease")
	}
	if code, _, err := syssim.Get(mds[0].client, mds[0].metrics+"/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("md1 /readyz = %d %v during the etcd outage; an outage of the store must not make the MDs unready", code, err)
	}
	if err := etcd.Restart(0); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if _, ok := waitFor(20*time.Second, func() bool {
		return mds[0].metric(t, "mdfast_directory_registered") == 1 && mds[1].metric(t, "mdfast_directory_registered") == 1 &&
			mds[0].metric(t, "mdfast_directory_registrations_total") > regs && mds[0].metric(t, "mdfast_directory_peers") == 2
	}); !ok {
		t.Fatal("the MDs did not register again after etcd came back")
	}
	t.Logf("MDs registered again %v after etcd was restarted", time.Since(back).Round(time.Millisecond))
	talkAll(survivors, 3*n)
	waitFor(5*time.Second, func() bool { return complete(survivors, survivors, 4*n) })
	checkMedia(survivors, survivors, 3*n, 4*n)
	if h := mds[0].metric(t, `mdfast_cascade_handshakes_total{result="ok"}`); h != 2 {
		t.Errorf("md1 made %v link handshakes, want 2 (one per peer): the etcd outage must not rebuild the links", h)
	}

	// Phase 4: md3 comes back (a new incarnation in the directory): the
	// others build new associations with it, its endpoints join again and
	// everyone hears everyone, with no loss.
	md3 := startCascadeMD(t, "md3", mdNodes[2], mds[2].cfg)
	waitReady(t, md3)
	mds[2] = md3
	for _, e := range eps[4:] {
		_ = e.s.Close()
		e.mu.Lock()
		e.got = map[uint32][][]byte{}
		e.mu.Unlock()
		join(e)
	}
	restarted := time.Now()
	if _, ok := waitFor(20*time.Second, func() bool {
		return linksUp(mds[0], "md2", "md3") && linksUp(mds[1], "md1", "md3") && linksUp(mds[2], "md1", "md2")
	}); !ok {
		t.Fatal("the links with the restarted md3 did not come up")
	}
	t.Logf("links with the restarted md3 up %v after its endpoints joined again", time.Since(restarted).Round(time.Millisecond))
	before := map[[2]int]int{}
	for i, r := range eps {
		for j, x := range eps {
			before[[2]int{i, j}] = len(r.from(x.ssrc))
		}
	}
	talkAll(eps, 4*n)
	gained := func() bool {
		for i, r := range eps {
			for j, x := range eps {
				if i != j && len(r.from(x.ssrc)) < before[[2]int{i, j}]+n {
					return false
				}
			}
		}
		return true
	}
	waitFor(5*time.Second, gained)
	for i, r := range eps {
		for j, x := range eps {
			if i == j {
				continue
			}
			got := r.from(x.ssrc)
			if len(got) != before[[2]int{i, j}]+n {
				t.Errorf("after md3's restart %s got %d packets from %s, want %d", r.name, len(got)-before[[2]int{i, j}], x.name, n)
				continue
			}
			for k := range n {
				if !bytes.Equal(got[before[[2]int{i, j}]+k], payloadOf(x.ssrc, 4*n+uint16(k))) {
					t.Errorf("after md3's restart: packet %d from %s to %s differs from what was sent", k, x.name, r.name)
					break
				}
			}
		}
		if st := r.s.Stats(); st.DropOuter != 0 || st.DropInner != 0 || st.DropEKTAuth != 0 {
			t.Errorf("%s after md3's restart: stats %+v (want no authentication failure)", r.name, st)
		}
	}
	if h := mds[0].metric(t, `mdfast_cascade_handshakes_total{result="ok"}`); h != 3 {
		t.Errorf("md1 made %v link handshakes, want 3 (a new association with the restarted md3)", h)
	}
}

// startCascadeMD runs "mdfast run" in node's namespace; SIGKILL ends it in
// the test, SIGTERM at cleanup.
func startCascadeMD(t *testing.T, name string, node *netnstest.Node, cfg string) *cascadeMDProc {
	t.Helper()
	cmd := command(t.Context(), "run", "-config", cfg)
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("ip(8): %v", err)
	}
	cmd.Path = ipPath
	cmd.Args = append([]string{"ip", "netns", "exec", node.NS.Name}, cmd.Args...)
	d := &cascadeMDProc{name: name, cfg: cfg, node: node, cmd: cmd, exited: make(chan error, 1), stderr: new(syncBuffer),
		client: netnsHTTPClient(node.NS, 5*time.Second), metrics: "http://127.0.0.1:9542"}
	cmd.Stdout, cmd.Stderr = new(syncBuffer), d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case err := <-d.exited:
			d.exited <- err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, d.stderr.String())
		}
	})
	return d
}

func waitReady(t *testing.T, d *cascadeMDProc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, err := syssim.Get(d.client, d.metrics+"/readyz"); err == nil && code == http.StatusOK {
			return
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("%s exited (%v):\n%s", d.name, err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in 20s:\n%s", d.name, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pion/rtp"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// TestCascadeThreeMDs: a real etcd, three mdfast daemons (xdp-native) on
// three namespace hosts and two keydist replicas sharing the etcd; PERC
// endpoints (double + EKT) of one conference, two on each MD. Every
// endpoint gets every other's media octet for octet with no loss and no
// authentication failure, every member holds the same EKT SPI whichever
// replica keyed it, and the per-link counters show each packet crossed
// each link exactly once. Then the faults, each followed by media between
// everyone still there, with no loss:
//
//  1. md3 is killed (SIGKILL): the others' media keep flowing, its
//     directory entries expire within the lease;
//  2. KD replica kd1 is killed: two new endpoints join through kd2 and get
//     the EKT SPI the members already hold;
//  3. etcd stops for twice the lease: established media keeps flowing, the
//     MDs stay ready and register again when it is back; an endpoint that
//     tries to join meanwhile either completes with the conference's SPI or
//     fails, and then joins once etcd is back;
//  4. md3 restarts: new links, its endpoints join again; if that re-keys
//     the conference, the members kd1 had keyed (which no replica can
//     re-key) are ended at their MD by kd2 and join again.
func TestCascadeThreeMDs(t *testing.T) {
	testutil.NeedRoot(t, "runs three mdfast daemons, two keydist replicas and etcd in network namespaces")
	etcdtest.Binary(t)
	const (
		lease = 3 * time.Second
		n     = 150 // packets per sender per phase (at most 5n < 65536: no SEQ wrap)
	)
	p := writePKI(t)
	br := netnstest.NewBridge(t)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }
	etcdNode := br.Node(t, 24, ip(10))
	kdNodes := []*netnstest.Node{br.Node(t, 24, ip(20)), br.Node(t, 24, ip(21))}
	epNode := br.Node(t, 24, ip(100))
	mdNodes := []*netnstest.Node{br.Node(t, 24, ip(1)), br.Node(t, 24, ip(2)), br.Node(t, 24, ip(3))}
	// The AF_XDP path needs the endpoints' and the peer MDs' MACs before
	// the first packet; the KDs and etcd are reached through the kernel.
	for _, m := range mdNodes {
		m.Neigh(t, epNode)
		epNode.Neigh(t, m)
		for _, o := range mdNodes {
			if o != m {
				m.Neigh(t, o)
			}
		}
	}

	etcd := etcdtest.Start(t, etcdtest.Options{Netns: etcdNode.NS.Name, IP: ip(10)})

	// Endpoints of one conference: six joining at once (two per MD), two
	// joining after kd1's death (on md1 and md2), one during the etcd
	// outage (on md1).
	var eps []*cascadeEP
	var ids []endpointsim.Identity
	mappings := []string{"mappings:", "  tls-ids:"}
	for i, md := range []int{0, 0, 1, 1, 2, 2, 0, 1, 0} {
		e := &cascadeEP{name: fmt.Sprintf("ep%d", i), ssrc: 0xC0DE0000 + uint32(i), md: md, got: map[uint32][][]byte{}}
		id, err := endpointsim.NewIdentity(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		e.id = id
		ids = append(ids, id)
		mappings = append(mappings, fmt.Sprintf("    %q: room", e.id.TLSID))
		eps = append(eps, e)
	}
	first, late, outage := eps[:6], eps[6:8], eps[8]
	kds, kdFP := startKDReplicas(t, p, kdNodes, ids, etcd.Endpoints()[0], lease)

	// Three MDs, each with its cascade certificate from the test CA, each
	// with a tunnel to both replicas.
	var mds []*cascadeMDProc
	for i, node := range mdNodes {
		name := fmt.Sprintf("md%d", i+1)
		// Each MD its own tunnel identity (the KDs address an MD by it)
		// and its own cascade certificate, from the test CA.
		if err := syssim.WriteTLSCert(p.dir, name+"-cascade", p.ca.Leaf(t, name)); err != nil {
			t.Fatal(err)
		}
		if err := syssim.WriteTLSCert(p.dir, name+"-tunnel", p.ca.Leaf(t, name)); err != nil {
			t.Fatal(err)
		}
		cfg := p.writeConfig(t, name+".yaml", strings.Join(append([]string{
			"mode: xdp-native",
			"interface: eth0",
			"address: " + node.Addrs[0].String(),
			"media-ports: [5004]",
			"kd: [" + kds[0].addr + ", " + kds[1].addr + "]",
			"kd-server-name: kd",
			"tunnel-cert: " + filepath.Join(p.dir, name+"-tunnel.crt"),
			"tunnel-key: " + filepath.Join(p.dir, name+"-tunnel.key"),
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
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tryJoin := func(e *cascadeEP, timeout time.Duration) error {
		u, err := epNode.NS.ListenUDP(ip(100), 0)
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.got = map[uint32][][]byte{}
		e.mu.Unlock()
		s, err := perc.Dial(ctx, u, netip.AddrPortFrom(ip(e.md+1), 5004), perc.Config{
			Certificate: e.id.Cert, TLSID: e.id.TLSID, KDFingerprint: kdFP,
			Profiles: []uint16{perc.ProfileDoubleAES128GCM}, HandshakeTimeout: timeout,
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
			u.Close()
			return err
		}
		e.s = s
		t.Cleanup(func() { _ = s.Close() })
		return nil
	}
	join := func(e *cascadeEP) {
		t.Helper()
		if err := tryJoin(e, 15*time.Second); err != nil {
			t.Fatalf("%s joining md%d: %v", e.name, e.md+1, err)
		}
	}
	for _, e := range first {
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

	// phase has members send n packets each from seq0 at once; every
	// member must get exactly those n from every other, octet for octet,
	// with no authentication failure.
	phase := func(what string, members []*cascadeEP, seq0 uint16) {
		t.Helper()
		before := map[[2]int]int{}
		for i, r := range members {
			for j, x := range members {
				before[[2]int{i, j}] = len(r.from(x.ssrc))
			}
		}
		var wg sync.WaitGroup
		for _, e := range members {
			wg.Go(func() { e.send(t, seq0, n) })
		}
		wg.Wait()
		waitFor(5*time.Second, func() bool {
			for i, r := range members {
				for j, x := range members {
					if i != j && len(r.from(x.ssrc)) < before[[2]int{i, j}]+n {
						return false
					}
				}
			}
			return true
		})
		for i, r := range members {
			for j, x := range members {
				if i == j {
					continue
				}
				got := r.from(x.ssrc)
				if len(got) != before[[2]int{i, j}]+n {
					t.Errorf("%s: %s (md%d) got %d packets from %s (md%d), want %d", what, r.name, r.md+1, len(got)-before[[2]int{i, j}], x.name, x.md+1, n)
					continue
				}
				for k := range n {
					if !bytes.Equal(got[before[[2]int{i, j}]+k], payloadOf(x.ssrc, seq0+uint16(k))) {
						t.Errorf("%s: packet %d from %s to %s differs from what was sent", what, k, x.name, r.name)
						break
					}
				}
			}
			r.mu.Lock()
			bad := r.bad
			r.mu.Unlock()
			if st := r.s.Stats(); bad != 0 || st.DropOuter != 0 || st.DropInner != 0 || st.DropReplay != 0 || st.DropEKTAuth != 0 {
				t.Errorf("%s: %s: %d foreign payloads, stats %+v (want no authentication failure)", what, r.name, bad, st)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// sameSPI waits until every member holds the same EKT parameter set
	// (a re-key reaches them all, whichever replica keyed each).
	sameSPI := func(what string, members []*cascadeEP) uint16 {
		t.Helper()
		var spis []uint16
		if _, ok := waitFor(10*time.Second, func() bool {
			spis = spis[:0]
			for _, e := range members {
				spi, ok := e.s.EKTSPI()
				if !ok {
					return false
				}
				spis = append(spis, spi)
			}
			for _, spi := range spis {
				if spi != spis[0] {
					return false
				}
			}
			return true
		}); !ok {
			t.Fatalf("%s: the members' EKT SPIs differ: %v", what, spis)
		}
		return spis[0]
	}
	kdOK := func(k int) float64 { return kds[k].metric(t, `keydist_handshakes_total{result="ok"}`) }

	// Everyone talks.
	phase("all six", first, 0)
	spi := sameSPI("all six", first)
	if kdOK(0) == 0 || kdOK(1) == 0 || kdOK(0)+kdOK(1) != 6 {
		t.Errorf("replicas completed %v and %v handshakes, want 6 spread over both", kdOK(0), kdOK(1))
	}
	t.Logf("six endpoints keyed by kd1 (%v) and kd2 (%v), one EKT SPI %d", kdOK(0), kdOK(1), spi)
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

	// Fault 1: md3 is killed; the other four endpoints keep talking.
	killed := time.Now()
	_ = mds[2].cmd.Process.Signal(unix.SIGKILL)
	<-mds[2].exited
	mds[2].exited <- nil
	survivors := first[:4]
	phase("md3 killed", survivors, n)
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

	// Fault 2: KD replica kd1 is killed. Two new endpoints join through
	// kd2 and get the parameter set the members hold; everyone talks.
	spi = sameSPI("after md3's death", survivors)
	kd2Before := kdOK(1)
	kds[0].proc.Kill()
	<-kds[0].proc.Done()
	for _, e := range late {
		join(e)
	}
	if got := kdOK(1) - kd2Before; got != 2 {
		t.Errorf("kd2 completed %v handshakes after kd1's death, want 2", got)
	}
	present := append(append([]*cascadeEP(nil), survivors...), late...)
	if got := sameSPI("after kd1's death", present); got != spi {
		t.Errorf("endpoints that joined through kd2 hold SPI %d, the members SPI %d", got, spi)
	}
	phase("kd1 killed", present, 2*n)

	// Fault 3: etcd stops for twice the lease. Established media keeps
	// flowing; when etcd is back, the MDs register again on new leases
	// and the links stay. An endpoint joining meanwhile either completes
	// with the conference's parameter set or fails; it joins once etcd is
	// back.
	regs := mds[0].metric(t, "mdfast_directory_registrations_total")
	etcd.Stop(0)
	phase("etcd down", present, 3*n)
	if _, ok := waitFor(2*lease, func() bool { return mds[0].metric(t, "mdfast_directory_registered") == 0 }); !ok {
		t.Error("md1 still says it is registered with etcd stopped for longer than the lease")
	}
	if code, _, err := syssim.Get(mds[0].client, mds[0].metrics+"/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("md1 /readyz = %d %v during the etcd outage; an outage of the store must not make the MDs unready", code, err)
	}
	outageErr := tryJoin(outage, 8*time.Second)
	if outageErr != nil {
		t.Logf("%s could not join during the etcd outage: %v", outage.name, outageErr)
	} else if got, _ := outage.s.EKTSPI(); got != spi {
		t.Errorf("%s joined during the etcd outage with SPI %d, the members hold %d", outage.name, got, spi)
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
	if outageErr != nil {
		join(outage)
	}
	present = append(present, outage)
	if got := sameSPI("after the etcd outage", present); got != spi {
		t.Errorf("after the etcd outage the members hold SPI %d, want %d (nobody left)", got, spi)
	}
	phase("etcd back", present, 4*n)
	if h := mds[0].metric(t, `mdfast_cascade_handshakes_total{result="ok"}`); h != 2 {
		t.Errorf("md1 made %v link handshakes, want 2 (one per peer): the etcd outage must not rebuild the links", h)
	}

	// Fault 4 ends: md3 comes back (a new incarnation in the directory):
	// the others build new associations with it, its endpoints join again
	// and everyone hears everyone, with no loss.
	// kd1's lease (renewed by etcd's restart) must have run out, so that
	// kd2 holds kd1's associations as orphans: only kd2's alive key is
	// left under kd/assoc/.
	ecl := etcd.Client(t)
	if _, ok := waitFor(3*lease, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := ecl.Get(ctx, "/mdfast/v1/kd/assoc/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return false
		}
		alive := 0
		for _, kv := range r.Kvs {
			if !strings.Contains(strings.TrimPrefix(string(kv.Key), "/mdfast/v1/kd/assoc/"), "/") {
				alive++
			}
		}
		return alive == 1
	}); !ok {
		t.Fatal("kd1's alive key is still in etcd three leases after etcd came back")
	}
	rekeysBefore := kds[1].metric(t, "keydist_ekt_rekeys_total")
	closedBefore := mds[0].metric(t, `mdfast_slowpath_events_total{event="closed_by_kd"}`) + mds[1].metric(t, `mdfast_slowpath_events_total{event="closed_by_kd"}`)
	md3 := startCascadeMD(t, "md3", mdNodes[2], mds[2].cfg)
	waitReady(t, md3)
	mds[2] = md3
	for _, e := range first[4:] {
		_ = e.s.Close()
		join(e)
	}
	restarted := time.Now()
	if _, ok := waitFor(20*time.Second, func() bool {
		return linksUp(mds[0], "md2", "md3") && linksUp(mds[1], "md1", "md3") && linksUp(mds[2], "md1", "md2")
	}); !ok {
		t.Fatal("the links with the restarted md3 did not come up")
	}
	t.Logf("links with the restarted md3 up %v after its endpoints joined again", time.Since(restarted).Round(time.Millisecond))
	// md3's endpoints' old associations ended with md3: if kd2 held one,
	// that is a departure and kd2 re-keys the conference. Members keyed
	// by the dead kd1 cannot be given the new set (their DTLS association
	// died with kd1): the re-keying replica ends them at their MD, and
	// they join again, as an application does when its media stops.
	if _, rekeyed := waitFor(5*time.Second, func() bool { return kds[1].metric(t, "keydist_ekt_rekeys_total") > rekeysBefore }); rekeyed {
		var newest uint16
		waitFor(5*time.Second, func() bool { // kd2's members all hold the new set
			newest, _ = late[0].s.EKTSPI()
			for _, e := range append([]*cascadeEP{late[1], outage}, first[4:]...) {
				if s, _ := e.s.EKTSPI(); s != newest || newest == spi {
					return false
				}
			}
			return true
		})
		var orphans []*cascadeEP
		for _, e := range first[:4] {
			if s, _ := e.s.EKTSPI(); s != newest {
				orphans = append(orphans, e)
			}
		}
		t.Logf("md3's return re-keyed the conference to SPI %d; %d members keyed by the dead kd1 could not follow", newest, len(orphans))
		if _, ok := waitFor(5*time.Second, func() bool {
			return mds[0].metric(t, `mdfast_slowpath_events_total{event="closed_by_kd"}`)+mds[1].metric(t, `mdfast_slowpath_events_total{event="closed_by_kd"}`) == closedBefore+float64(len(orphans))
		}); !ok {
			t.Errorf("the %d members kd2 could not re-key were not ended at their MDs (closed_by_kd)", len(orphans))
		}
		for _, e := range orphans {
			_ = e.s.Close()
			join(e)
		}
	} else {
		t.Log("md3's return did not re-key the conference (kd1 had keyed both of its endpoints)")
	}
	sameSPI("md3 back", eps)
	phase("md3 back", eps, 5*n)
	if h := mds[0].metric(t, `mdfast_cascade_handshakes_total{result="ok"}`); h != 3 {
		t.Errorf("md1 made %v link handshakes, want 3 (a new association with the restarted md3)", h)
	}
}

// kdReplica is one keydist process of the cascade test.
type kdReplica struct {
	addr   string // tunnel listener
	proc   *syssim.Proc
	client *http.Client
}

func (k *kdReplica) metric(t *testing.T, series string) float64 {
	t.Helper()
	code, body, err := syssim.Get(k.client, "http://127.0.0.1:9541/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("keydist: GET /metrics = %d %v", code, err)
	}
	return syssim.SumMetric(body, series)
}

// startKDReplicas runs one keydist per node, all on the etcd at
// etcdURL with one EKT store key, one registry file (the conference
// "room" of ids) and one DTLS certificate (the endpoints know one KD
// fingerprint), each with its own journal and a store lease of lease;
// they listen for tunnels on their node's address, port 5740.
func startKDReplicas(t *testing.T, p *pki, nodes []*netnstest.Node, ids []endpointsim.Identity, etcdURL string, lease time.Duration) ([]*kdReplica, keydist.Fingerprint) {
	t.Helper()
	bin := buildKeydist(t)
	dir := t.TempDir()
	f := &syssim.Files{Dir: dir}
	if err := f.WriteRegistry("room", ids); err != nil {
		t.Fatal(err)
	}
	if err := syssim.WriteTLSCert(dir, "kd", p.ca.Leaf(t, "kd")); err != nil {
		t.Fatal(err)
	}
	dtlsCert, err := keydist.GenerateCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := syssim.WriteTLSCert(dir, "kd-dtls", dtlsCert); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{f.Path("ca.crt"): ca, f.Path("ekt-store.key"): []byte(hex.EncodeToString(key) + "\n")} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var kds []*kdReplica
	for i, node := range nodes {
		addr := netip.AddrPortFrom(node.Addrs[0], 5740).String()
		args := append([]string{"ip", "netns", "exec", node.NS.Name, bin}, f.KeydistArgs(addr, "127.0.0.1:9541")...)
		args = append(args, "-journal", f.Path(fmt.Sprintf("kd%d.journal", i+1)),
			"-etcd-endpoints", etcdURL, "-ekt-store-key-file", f.Path("ekt-store.key"), "-store-lease", lease.String())
		proc, err := syssim.Start(fmt.Sprintf("kd%d", i+1), filepath.Join(dir, fmt.Sprintf("kd%d.log", i+1)), exec.Command(args[0], args[1:]...))
		if err != nil {
			t.Fatal(err)
		}
		k := &kdReplica{addr: addr, proc: proc, client: netnsHTTPClient(node.NS, 5*time.Second)}
		t.Cleanup(func() {
			proc.Stop(unix.SIGTERM)
			if t.Failed() {
				t.Logf("kd%d log:\n%s", i+1, proc.Tail(40))
			}
		})
		if err := syssim.WaitReady(context.Background(), k.client, "http://127.0.0.1:9541/readyz", 20*time.Second, proc); err != nil {
			t.Fatalf("kd%d: %v\n%s", i+1, err, proc.Tail(40))
		}
		kds = append(kds, k)
	}
	return kds, keydist.CertFingerprint(dtlsCert)
}

// buildKeydist builds cmd/keydist into a directory of the test's.
func buildKeydist(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keydist")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/mdfast/mdfast/cmd/keydist").CombinedOutput(); err != nil {
		t.Fatalf("build keydist: %v\n%s", err, out)
	}
	return path
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

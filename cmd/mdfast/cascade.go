package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mdfast/mdfast/internal/cascade"
	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/control"
	"github.com/mdfast/mdfast/internal/directory"
	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/keytable"
	"github.com/mdfast/mdfast/internal/mdslow"
)

// presence is the key table as the slow path writes it, watching which
// conferences have local members: a conference's first local member
// publishes it in the directory (with its profile kind) and hands it to the
// link manager; its last one withdraws it. Links (written by the manager
// straight to the table) are not members.
type presence struct {
	mdslow.Table
	memb     *control.Membership
	onChange func(map[string]cascade.Local)

	mu      sync.Mutex
	members map[uuid.UUID]localMember
	counts  map[keytable.ConferenceID]*[2]int // [single, double]
	last    map[string]cascade.Local
}

type localMember struct {
	conf   keytable.ConferenceID
	double bool
}

func newPresence(t mdslow.Table, memb *control.Membership, onChange func(map[string]cascade.Local)) *presence {
	return &presence{Table: t, memb: memb, onChange: onChange,
		members: map[uuid.UUID]localMember{}, counts: map[keytable.ConferenceID]*[2]int{}, last: map[string]cascade.Local{}}
}

// Install implements mdslow.Table.
func (p *presence) Install(ctx context.Context, a keytable.Association) (*keytable.Endpoint, error) {
	ep, err := p.Table.Install(ctx, a)
	if err == nil {
		p.update(func() {
			p.drop(a.ID)
			p.add(a.ID, localMember{conf: a.Conference, double: a.Recv.Profile().IsDouble()})
		})
	}
	return ep, err
}

// Remove implements mdslow.Table.
func (p *presence) Remove(ctx context.Context, id uuid.UUID) error {
	err := p.Table.Remove(ctx, id)
	if err == nil || errors.Is(err, keytable.ErrNotFound) {
		p.update(func() { p.drop(id) })
	}
	return err
}

// SetConference implements mdslow.Table.
func (p *presence) SetConference(ctx context.Context, id uuid.UUID, conf keytable.ConferenceID) (*keytable.Endpoint, error) {
	ep, err := p.Table.SetConference(ctx, id, conf)
	if err == nil {
		p.update(func() {
			if m, ok := p.members[id]; ok {
				p.drop(id)
				m.conf = conf
				p.add(id, m)
			}
		})
	}
	return ep, err
}

// ExpireIdle implements mdslow.Table.
func (p *presence) ExpireIdle(ctx context.Context, idle time.Duration) ([]uuid.UUID, error) {
	ids, err := p.Table.ExpireIdle(ctx, idle)
	if len(ids) > 0 {
		p.update(func() {
			for _, id := range ids {
				p.drop(id)
			}
		})
	}
	return ids, err
}

func (p *presence) add(id uuid.UUID, m localMember) {
	p.members[id] = m
	c := p.counts[m.conf]
	if c == nil {
		c = new([2]int)
		p.counts[m.conf] = c
	}
	c[b2i(m.double)]++
}

func (p *presence) drop(id uuid.UUID) {
	m, ok := p.members[id]
	if !ok {
		return
	}
	delete(p.members, id)
	c := p.counts[m.conf]
	if c[b2i(m.double)]--; c[0]+c[1] == 0 {
		delete(p.counts, m.conf)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// update applies fn and, when the set of hosted conferences changed, hands
// the new set to onChange (under the lock: changes arrive in order).
func (p *presence) update(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn()
	now := make(map[string]cascade.Local, len(p.counts))
	for id, c := range p.counts {
		name := p.memb.ConferenceName(id)
		if name == "" {
			continue
		}
		kind := directory.KindSingle
		if c[1] > 0 { // a conference's members share one kind; double wins
			kind = directory.KindDouble
		}
		now[name] = cascade.Local{ID: id, Kind: kind}
	}
	if maps.Equal(now, p.last) {
		return
	}
	p.last = now
	if p.onChange != nil {
		p.onChange(maps.Clone(now))
	}
}

// linkTable is the key table as the link manager writes it: the first
// link towards a peer MD asks the data plane to resolve the peer's next
// hop (as the slow path does for an endpoint), so that the first packets
// on a new link are not dropped as no_neighbour; its last link forgets it.
type linkTable struct {
	*keytable.Table
	nb mdslow.Neighbours

	mu    sync.Mutex
	links map[uuid.UUID]netip.Addr
	refs  map[netip.Addr]int
}

// Install implements cascade.Table.
func (l *linkTable) Install(ctx context.Context, a keytable.Association) (*keytable.Endpoint, error) {
	ep, err := l.Table.Install(ctx, a)
	if err != nil || l.nb == nil {
		return ep, err
	}
	ip := a.Addr.Addr()
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.links[a.ID]; ok {
		if old == ip {
			return ep, nil
		}
		l.unref(old)
	}
	l.links[a.ID] = ip
	if l.refs[ip]++; l.refs[ip] == 1 {
		l.nb.Resolve(ip)
	}
	return ep, nil
}

// Remove implements cascade.Table.
func (l *linkTable) Remove(ctx context.Context, id uuid.UUID) error {
	err := l.Table.Remove(ctx, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if ip, ok := l.links[id]; ok && (err == nil || errors.Is(err, keytable.ErrNotFound)) {
		delete(l.links, id)
		l.unref(ip)
	}
	return err
}

func (l *linkTable) unref(ip netip.Addr) {
	if l.refs[ip]--; l.refs[ip] <= 0 {
		delete(l.refs, ip)
		l.nb.Forget(ip)
	}
}

// cascadeMD is what an MD of several runs beside its data plane: the etcd
// client, the directory and the link manager.
type cascadeMD struct {
	log  *slog.Logger
	cl   *clientv3.Client
	dir  *directory.Directory
	mgr  *cascade.Manager
	pres *presence

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// cascadeTLS loads the cascade certificate and CA.
func cascadeTLS(c *config.Config) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.CascadeCert, c.CascadeKey)
	if err != nil {
		return cert, nil, &config.FieldError{Field: "cascade-cert", Err: err}
	}
	pem, err := os.ReadFile(c.CascadeCA)
	if err != nil {
		return cert, nil, &config.FieldError{Field: "cascade-ca", Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return cert, nil, &config.FieldError{Field: "cascade-ca", Err: errors.New("no PEM certificate in it")}
	}
	return cert, pool, nil
}

// newCascade builds the directory and the link manager over table (the
// links) and wraps relayTable (the slow path's writes) to follow local
// presence. Start runs them.
func newCascade(c *config.Config, table *keytable.Table, nb mdslow.Neighbours, memb *control.Membership, log *slog.Logger) (*cascadeMD, error) {
	cert, roots, err := cascadeTLS(c)
	if err != nil {
		return nil, err
	}
	id, err := c.ID()
	if err != nil {
		return nil, &config.FieldError{Field: "md-id", Err: err}
	}
	casc, _ := c.CascadeAddr() // validated
	media, _ := c.MediaAddr()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(casc))
	if err != nil {
		return nil, &config.FieldError{Field: "cascade-listen", Err: err}
	}
	mgr, err := cascade.NewManager(cascade.Config{
		ID: id, Conn: pc, Certificate: cert, Roots: roots, Logger: log,
		Table: &linkTable{Table: table, nb: nb, links: map[uuid.UUID]netip.Addr{}, refs: map[netip.Addr]int{}},
		LinkStats: func(e *keytable.Endpoint) cascade.LinkCounters {
			s := e.LinkStats()
			return cascade.LinkCounters{TxPackets: s.TxPackets, TxBytes: s.TxBytes, RxPackets: s.RxPackets, RxBytes: s.RxBytes,
				TxDrops: s.TxDrops, RxDrops: s.RxDrops}
		},
	})
	if err != nil {
		pc.Close()
		return nil, err
	}
	ec := c.Etcd
	cl, err := etcdclient.New(ec)
	if err != nil {
		pc.Close()
		return nil, &config.FieldError{Field: "etcd-endpoints", Err: err}
	}
	dir, err := directory.New(directory.Config{
		Client: cl, Key: ec.Key, ID: id, Lease: c.DirectoryLease.D(), Logger: log,
		Self: directory.Alive{Media: media, Cascade: netip.AddrPortFrom(casc.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port)),
			Fingerprint: mgr.Fingerprint(), Started: time.Now()},
	})
	if err != nil {
		pc.Close()
		cl.Close()
		return nil, err
	}
	cm := &cascadeMD{log: log, cl: cl, dir: dir, mgr: mgr}
	cm.pres = newPresence(table, memb, func(l map[string]cascade.Local) {
		hosted := dir.Hosted()
		for name, loc := range l {
			if err := dir.Host(name, loc.Kind); err != nil {
				log.Error("directory: host conference", "err", err)
			}
		}
		for name := range hosted {
			if _, ok := l[name]; !ok {
				dir.Unhost(name)
			}
		}
		mgr.SetLocal(l)
	})
	log.Info("cascade: MD of several", "md_id", id, "cascade", casc, "media", media, "etcd", c.Etcd.Endpoints)
	return cm, nil
}

// Start runs the directory and the link manager.
func (cm *cascadeMD) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	cm.cancel = cancel
	cm.wg.Go(func() { _ = cm.dir.Run(ctx) })
	cm.wg.Go(func() { _ = cm.mgr.Run(ctx) })
	cm.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case v := <-cm.dir.Updates():
				cm.mgr.SetView(v)
			}
		}
	})
}

// Stop removes the links, withdraws this MD from the directory (its lease
// is revoked) and closes the etcd client.
func (cm *cascadeMD) Stop() {
	if cm.cancel != nil {
		cm.cancel()
	}
	cm.wg.Wait()
	cm.cl.Close()
}

// check is the readiness check "directory": this MD has registered in
// the directory since it started. A later etcd outage does not make it
// unready: its established links and media do not need etcd, and an
// outage of the store must not take every MD out of a load balancer at
// once (mdfast_directory_registered says it). An md-id held by another
// live MD does: this MD is then not in the directory at all, and no other
// MD links to it until the operator gives it a unique md-id or the other
// one stops.
func (cm *cascadeMD) check() error {
	s := cm.dir.State()
	if s.IDInUse {
		if !s.InUseBy.Media.IsValid() {
			return fmt.Errorf("md-id %q is in use: its alive entry in the directory is on a lease and does not parse; not registered until it is gone (md-ids must be unique)", cm.dir.ID())
		}
		return fmt.Errorf("md-id %q is in use by another live MD (media %v, cascade %v): not registered in the directory until its entry is gone (md-ids must be unique)",
			cm.dir.ID(), s.InUseBy.Media, s.InUseBy.Cascade)
	}
	if s.Registrations == 0 {
		if s.LastError != "" {
			return fmt.Errorf("not registered in the directory yet: %s", s.LastError)
		}
		return errors.New("not registered in the directory yet")
	}
	return nil
}

// cascadeCollector exports the directory's and the links' state.
type cascadeCollector struct {
	cm                                          *cascadeMD
	registered, peers, lastErr, links, up       *prometheus.Desc
	hs, txP, txB, rxP, rxB, drops, bad, unknown *prometheus.Desc
	registrations, idInUse, refused             *prometheus.Desc
}

func newCascadeCollector(cm *cascadeMD) *cascadeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("mdfast_"+name, help, labels, nil)
	}
	return &cascadeCollector{cm: cm,
		registered:    d("directory_registered", "1 while this MD's alive entry is on a lease kept alive in etcd."),
		peers:         d("directory_peers", "Alive MDs in the directory, this one included."),
		lastErr:       d("directory_last_error_timestamp_seconds", "When the last etcd request of the directory failed (0: never, or succeeded since)."),
		registrations: d("directory_registrations_total", "Leases granted to this MD (more than one: it re-registered after losing its lease)."),
		bad:           d("directory_bad_entries_total", "Keys or values under md/ in etcd that did not parse (ignored)."),
		idInUse:       d("directory_id_in_use", "1 while this MD's md-id is held by another live MD: it is not registered and retries."),
		refused:       d("directory_registrations_refused_total", "Registrations refused because another live MD held this MD's md-id."),
		links:         d("cascade_links", "Link associations installed with a peer MD (one per shared conference).", "peer"),
		up:            d("cascade_peer_up", "1 while the DTLS association with a peer MD is established.", "peer"),
		hs:            d("cascade_handshakes_total", "Link DTLS handshakes by result.", "result"),
		txP:           d("cascade_link_tx_packets_total", "Packets sent to a peer MD over its links.", "peer"),
		txB:           d("cascade_link_tx_bytes_total", "Octets sent to a peer MD over its links.", "peer"),
		rxP:           d("cascade_link_rx_packets_total", "Packets received from a peer MD over its links.", "peer"),
		rxB:           d("cascade_link_rx_bytes_total", "Octets received from a peer MD over its links.", "peer"),
		drops:         d("cascade_link_drops_total", "Packets the data plane dropped on a peer MD's links, by direction.", "peer", "direction"),
		unknown:       d("cascade_unknown_source_total", "Datagrams on cascade-listen from an address that is no peer's."),
	}
}

// Describe implements prometheus.Collector.
func (c *cascadeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.registered, c.peers, c.lastErr, c.registrations, c.bad, c.idInUse, c.refused, c.links, c.up, c.hs,
		c.txP, c.txB, c.rxP, c.rxB, c.drops, c.unknown} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *cascadeCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectDirectory(ch)
	c.collectLinks(ch)
}

// collectDirectory exports the directory's state.
func (c *cascadeCollector) collectDirectory(ch chan<- prometheus.Metric) {
	g, ctr := prometheus.GaugeValue, prometheus.CounterValue
	ds := c.cm.dir.State()
	ch <- prometheus.MustNewConstMetric(c.registered, g, float64(b2i(ds.Registered)))
	ch <- prometheus.MustNewConstMetric(c.peers, g, float64(ds.Peers))
	var at float64
	if ds.LastError != "" {
		at = float64(ds.LastErrorAt.Unix())
	}
	ch <- prometheus.MustNewConstMetric(c.lastErr, g, at)
	ch <- prometheus.MustNewConstMetric(c.registrations, ctr, float64(ds.Registrations))
	ch <- prometheus.MustNewConstMetric(c.bad, ctr, float64(ds.BadEntries))
	ch <- prometheus.MustNewConstMetric(c.idInUse, g, float64(b2i(ds.IDInUse)))
	ch <- prometheus.MustNewConstMetric(c.refused, ctr, float64(ds.Refusals))
}

// collectLinks exports the link manager's state.
func (c *cascadeCollector) collectLinks(ch chan<- prometheus.Metric) {
	g, ctr := prometheus.GaugeValue, prometheus.CounterValue
	ms := c.cm.mgr.Stats()
	for r := cascade.HandshakeOK; r <= cascade.HandshakeFailed; r++ {
		ch <- prometheus.MustNewConstMetric(c.hs, ctr, float64(ms.Handshakes[r]), r.String())
	}
	ch <- prometheus.MustNewConstMetric(c.unknown, ctr, float64(ms.UnknownSource))
	for peer, p := range ms.Peers {
		ch <- prometheus.MustNewConstMetric(c.links, g, float64(p.Links), peer)
		ch <- prometheus.MustNewConstMetric(c.up, g, float64(b2i(p.Established)), peer)
		ch <- prometheus.MustNewConstMetric(c.txP, ctr, float64(p.TxPackets), peer)
		ch <- prometheus.MustNewConstMetric(c.txB, ctr, float64(p.TxBytes), peer)
		ch <- prometheus.MustNewConstMetric(c.rxP, ctr, float64(p.RxPackets), peer)
		ch <- prometheus.MustNewConstMetric(c.rxB, ctr, float64(p.RxBytes), peer)
		ch <- prometheus.MustNewConstMetric(c.drops, ctr, float64(p.TxDrops), peer, "tx")
		ch <- prometheus.MustNewConstMetric(c.drops, ctr, float64(p.RxDrops), peer, "rx")
	}
}

package attacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mdfast/mdfast/internal/endpointsim"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/internal/testutil"
)

// The system's addresses: everything is on one bridge, on-link in
// 198.18.0.0/15. Legitimate endpoints live in 198.18.4.0/22, attackers'
// own addresses in 198.18.16.0/20, spoofed sources in 198.19.0.0/16 (the
// top /24 of which the attacker's namespace answers for).
var (
	mdIP = netip.MustParseAddr("198.18.0.1")
	kdIP = netip.MustParseAddr("198.18.0.2")
)

const (
	prefixLen  = 15
	mediaPort  = 5004
	tunnelPort = 5740
	mdMetrics  = "127.0.0.1:9542"
	mdControl  = "127.0.0.1:5742" // mdfast's default control listener
	kdAdmin    = "127.0.0.1:5741"
	kdMetrics  = "127.0.0.1:9541"
	adminToken = "attacktest-admin-token-0123456789"
	packetGap  = 20 * time.Millisecond // 50 packets/s per endpoint
	mdMode     = "auto"                // what cmd/mdfast-demo runs: xdp-native on veth
)

// epAddr is the address of legitimate endpoint i (0 <= i < 1000).
func epAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(4 + (i+1)/256), byte((i + 1) % 256)})
}

// atkAddr is the attacker's own address i (0 <= i < 4000).
func atkAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(16 + (i+1)/256), byte((i + 1) % 256)})
}

// binDir holds mdfast and keydist, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips, saying why
		}
		dir, err := syssim.BuildDaemons("attacktest")
		if err != nil {
			fmt.Fprintln(os.Stderr, "attacktest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// needRoot skips t when not root and checks the goroutines it leaves.
func needRoot(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t, "attacktest uses network namespaces, XDP and raw sockets")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("attacktest needs ip(8) (iproute2) to run the daemons in namespaces")
	}
	testutil.CheckGoroutines(t)
}

// node is a namespace plugged into the test's bridge.
type node = netnstest.Node

// conference is a conference in the KD registry and its endpoints.
type conference struct {
	name string
	ids  []endpointsim.Identity
}

// sys is one run of the whole system: KD, MD, legitimate endpoints'
// namespace and (optionally) an attacker's.
type sys struct {
	t      *testing.T
	dir    string
	files  *syssim.Files
	tp     *netnstest.Bridge
	md, kd *node
	ep     *node // every legitimate endpoint, one address each
	atk    *node // nil without an attacker
	confs  []conference

	mdProc, kdProc *syssim.Proc
	mdHTTP, kdHTTP *http.Client
	starts         int
	nextEP         int
	kdArgs         []string
}

// sysConfig describes a system.
type sysConfig struct {
	// conferences: name -> number of endpoints registered.
	conferences []confSize
	// attackerAddrs is how many own addresses the attacker namespace has
	// (-1: no attacker namespace).
	attackerAddrs int
	// kdArgs are extra keydist flags (for example -rekey-on-join).
	kdArgs []string
}

type confSize struct {
	name string
	n    int
}

// newSys builds the topology and the files, and starts keydist and
// mdfast (waiting for /readyz).
func newSys(t *testing.T, cfg sysConfig) *sys {
	t.Helper()
	s := &sys{t: t, dir: t.TempDir(), kdArgs: cfg.kdArgs}
	total := 0
	for _, c := range cfg.conferences {
		total += c.n
	}
	s.tp = netnstest.NewBridge(t)
	s.md = s.tp.Node(t, prefixLen, mdIP)
	s.kd = s.tp.Node(t, prefixLen, kdIP)
	var epAddrs []netip.Addr
	for i := range total {
		epAddrs = append(epAddrs, epAddr(i))
	}
	s.ep = s.tp.Node(t, prefixLen, epAddrs...)
	if cfg.attackerAddrs >= 0 {
		addrs := []netip.Addr{netip.MustParseAddr("198.18.0.3")}
		for i := range cfg.attackerAddrs {
			addrs = append(addrs, atkAddr(i))
		}
		s.atk = s.tp.Node(t, prefixLen, addrs...)
		// The attacker's namespace answers for 198.19.255.0/24 (spoofed
		// sources whose answers come back).
		r := &netlink.Route{Dst: &net.IPNet{IP: net.IP{198, 19, 255, 0}, Mask: net.CIDRMask(24, 32)}, Type: syscall.RTN_LOCAL,
			Table: syscall.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: 1}
		if err := s.atk.NS.Netlink().RouteAdd(r); err != nil {
			t.Fatalf("local route for the reachable spoofed range: %v", err)
		}
	}
	s.md.Neigh(t, s.ep)
	s.md.Neigh(t, s.kd)
	s.kd.Neigh(t, s.md)
	s.ep.Neigh(t, s.md)

	var err error
	if s.files, err = syssim.WriteFiles(s.dir, kdIP.AsSlice(), mdIP.AsSlice()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.files.Path("admin.token"), []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The KD's registry and mdfast's mappings (tls-id to conference):
	// mdfast refuses an endpoint that no mapping places.
	var confs []syssim.Conference
	for _, c := range cfg.conferences {
		conf := conference{name: c.name}
		for range c.n {
			id, err := endpointsim.NewIdentity(24 * time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			conf.ids = append(conf.ids, id)
		}
		s.confs = append(s.confs, conf)
		confs = append(confs, syssim.Conference{ID: c.name, Endpoints: conf.ids})
	}
	if err := s.files.WriteConferences(confs); err != nil {
		t.Fatal(err)
	}
	s.mdHTTP = syssim.HTTPClient(s.md.NS.Name)
	s.kdHTTP = syssim.HTTPClient(s.kd.NS.Name)
	t.Cleanup(s.stop)
	if err := s.startKD(); err != nil {
		t.Fatal(err)
	}
	if err := s.startMD(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitReady(20 * time.Second); err != nil {
		s.fatal(err)
	}
	path, err := s.mdProc.ReportedPath()
	if err != nil {
		s.fatal(err)
	}
	t.Logf("mdfast data path: %s", path)
	return s
}

// stop stops both daemons and, when the test failed, logs their tails.
func (s *sys) stop() {
	if s.t.Failed() {
		s.logTails()
	}
	if s.mdProc != nil {
		s.mdProc.Stop(syscall.SIGTERM)
	}
	if s.kdProc != nil {
		s.kdProc.Stop(syscall.SIGTERM)
	}
}

func (s *sys) logTails() {
	if s.mdProc != nil {
		s.t.Logf("--- %s (tail) ---\n%s", filepath.Base(s.mdProc.Log), s.mdProc.Tail(30))
	}
	if s.kdProc != nil {
		s.t.Logf("--- %s (tail) ---\n%s", filepath.Base(s.kdProc.Log), s.kdProc.Tail(30))
	}
}

// fatal logs the daemons' log tails and ends the test.
func (s *sys) fatal(err error) {
	s.t.Helper()
	s.logTails()
	s.t.Fatal(err)
}

func (s *sys) start(n *node, name string, argv ...string) (*syssim.Proc, error) {
	s.starts++
	log := filepath.Join(s.dir, fmt.Sprintf("%s-%d.log", name, s.starts))
	return syssim.Start(name, log, exec.Command("ip", append([]string{"netns", "exec", n.NS.Name, filepath.Join(binDir, name)}, argv...)...))
}

// startKD starts keydist with its admin API on kdAdmin.
func (s *sys) startKD() error {
	args := append(s.files.KeydistArgs(netip.AddrPortFrom(kdIP, tunnelPort).String(), kdMetrics),
		"-admin-listen", kdAdmin, "-admin-token-file", s.files.Path("admin.token"))
	args = append(args, s.kdArgs...)
	p, err := s.start(s.kd, "keydist", args...)
	if err != nil {
		return fmt.Errorf("start keydist: %w", err)
	}
	s.kdProc = p
	return s.waitHTTP(s.kdHTTP, "http://"+kdMetrics+"/metrics", p)
}

// startMD starts mdfast (it does not wait for /readyz).
func (s *sys) startMD() error {
	p, err := s.start(s.md, "mdfast", s.files.MDFastArgs(syssim.MD{Interface: "eth0", Mode: mdMode, Address: mdIP.String(), Port: mediaPort,
		KD: netip.AddrPortFrom(kdIP, tunnelPort).String(), Metrics: mdMetrics})...)
	if err != nil {
		return fmt.Errorf("start mdfast: %w", err)
	}
	s.mdProc = p
	return nil
}

// waitHTTP waits for url to answer at all.
func (s *sys) waitHTTP(c *http.Client, url string, p *syssim.Proc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.Err(), p.Tail(20))
		}
		if _, _, err := syssim.Get(c, url); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s does not answer", p.Name, url)
}

// waitReady waits for mdfast's /readyz.
func (s *sys) waitReady(timeout time.Duration) error {
	if err := syssim.WaitReady(context.Background(), s.mdHTTP, "http://"+mdMetrics+"/readyz", timeout, s.mdProc, s.kdProc); err != nil {
		return fmt.Errorf("wait for mdfast /readyz: %w", err)
	}
	return nil
}

// mdAssoc is an entry of the MD control API's GET /v1/associations.
type mdAssoc struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	TLSID string `json:"tls_id"`
	State string `json:"state"`
}

// kdAssoc is an entry of the KD admin API's GET /v1/associations.
type kdAssoc struct {
	ID    string `json:"association_id"`
	State string `json:"state"`
	TLSID string `json:"tls_id"`
	MD    string `json:"md"`
}

func (s *sys) mdAssociations() ([]mdAssoc, error) {
	code, body, err := syssim.GetAuth(s.mdHTTP, "http://"+mdControl+"/v1/associations", s.files.ControlToken())
	if err != nil {
		return nil, fmt.Errorf("MD control API associations: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("MD control API associations: status %d: %s", code, body)
	}
	var l []mdAssoc
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		return nil, fmt.Errorf("MD control API associations: %w", err)
	}
	return l, nil
}

func (s *sys) kdAssociations() ([]kdAssoc, error) {
	code, body, err := syssim.GetAuth(s.kdHTTP, "http://"+kdAdmin+"/v1/associations", adminToken)
	if err != nil {
		return nil, fmt.Errorf("KD admin API associations: %w", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("KD admin API associations: status %d: %s", code, body)
	}
	var l struct {
		Associations []kdAssoc `json:"associations"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		return nil, fmt.Errorf("KD admin API associations: %w", err)
	}
	return l.Associations, nil
}

// kdDelete sends an authenticated DELETE to the KD admin API.
func (s *sys) kdDelete(path string) error {
	req, err := http.NewRequest(http.MethodDelete, "http://"+kdAdmin+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := s.kdHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("KD admin DELETE %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("KD admin DELETE %s: status %d", path, resp.StatusCode)
	}
	return nil
}

// procStats is what a daemon's /metrics says about its process.
type procStats struct {
	goroutines float64
	rssMB      float64
}

func (p procStats) String() string {
	return fmt.Sprintf("goroutines=%.0f rss=%.1fMB", p.goroutines, p.rssMB)
}

func (s *sys) mdMetrics() (string, error) {
	_, body, err := syssim.Get(s.mdHTTP, "http://"+mdMetrics+"/metrics")
	if err != nil {
		return "", fmt.Errorf("mdfast /metrics: %w", err)
	}
	return body, nil
}

func (s *sys) kdMetrics() (string, error) {
	_, body, err := syssim.Get(s.kdHTTP, "http://"+kdMetrics+"/metrics")
	if err != nil {
		return "", fmt.Errorf("keydist /metrics: %w", err)
	}
	return body, nil
}

func statsOf(body string) procStats {
	return procStats{goroutines: syssim.SumMetric(body, "go_goroutines"),
		rssMB: syssim.SumMetric(body, "process_resident_memory_bytes") / (1 << 20)}
}

// daemonStats reads both daemons' goroutines and RSS ("?" when a
// daemon does not answer).
func (s *sys) daemonStats() string {
	out := func(name string, f func() (string, error)) string {
		body, err := f()
		if err != nil {
			return name + ": " + err.Error()
		}
		return name + ": " + statsOf(body).String()
	}
	return out("mdfast", s.mdMetrics) + "; " + out("keydist", s.kdMetrics)
}

// sumMatching sums every sample whose metric name contains all of words
// (lenient: survives renames that keep the words).
func sumMatching(body string, words ...string) (float64, []string) {
	var sum float64
	var lines []string
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		ok := true
		for _, w := range words {
			if !strings.Contains(strings.ToLower(name), w) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
			if v != 0 {
				lines = append(lines, line)
			}
		}
	}
	return sum, lines
}

// fileSize is the size of path (0 when it does not exist).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// eventually polls cond every 50 ms until it holds or timeout passes, and
// returns how long it took.
func eventually(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errNotJoined: send before join.
var errNotJoined = errors.New("endpoint not joined")

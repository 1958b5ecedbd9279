package webrtctest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/mdfast/mdfast/internal/keydist"
	"github.com/mdfast/mdfast/internal/netnstest"
	"github.com/mdfast/mdfast/internal/syssim"
	"github.com/mdfast/mdfast/internal/testutil"
)

// Everything is on one bridge, on-link in 198.18.0.0/15; endpoints live in
// 198.18.4.0/24.
var (
	mdIP = netip.MustParseAddr("198.18.0.1")
	kdIP = netip.MustParseAddr("198.18.0.2")
)

const (
	prefixLen   = 15
	mediaPort   = 5004
	tunnelPort  = 5740
	joinPort    = 8080
	controlPort = 5742
	mdMetrics   = "127.0.0.1:9542"
	kdMetrics   = "127.0.0.1:9541"
	kdAdmin     = "127.0.0.1:5741"
	adminToken  = "webrtctest-admin-token-0123456789"
	joinSecret  = "webrtctest-join-secret-0123456789abcdef"
	mdMode      = "auto" // xdp-native on veth, as the demo runs it
)

func epAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 4, byte(i + 1)}) }

// binDir holds mdfast and keydist, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips, saying why
		}
		dir, err := syssim.BuildDaemons("webrtctest")
		if err != nil {
			fmt.Fprintln(os.Stderr, "webrtctest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// node is a namespace plugged into the test's bridge.
type node = netnstest.Node

// sys is keydist (with its join endpoint) and mdfast in namespaces, and
// a namespace for the WebRTC endpoints.
type sys struct {
	t              *testing.T
	dir            string
	files          *syssim.Files
	md, kd, ep     *node
	mdProc, kdProc *syssim.Proc
	mdHTTP, kdHTTP *http.Client
	epHTTP         *http.Client
}

// sysConfig: the conferences of the KD registry (legacy ones admit WebRTC
// clients without a tls-id, perc ones do not), extra daemon flags.
type sysConfig struct {
	conferences []string
	percConfs   []string
	mdArgs      []string
	kdArgs      []string
	endpoints   int
}

func newSys(t *testing.T, cfg sysConfig) *sys {
	t.Helper()
	testutil.NeedRoot(t, "webrtctest runs the daemons in network namespaces with XDP")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("webrtctest needs ip(8) (iproute2) to run the daemons in namespaces")
	}
	testutil.CheckGoroutines(t)
	s := &sys{t: t, dir: t.TempDir()}
	tp := netnstest.NewBridge(t)
	s.md = tp.Node(t, prefixLen, mdIP)
	s.kd = tp.Node(t, prefixLen, kdIP)
	var eps []netip.Addr
	for i := range cfg.endpoints {
		eps = append(eps, epAddr(i))
	}
	s.ep = tp.Node(t, prefixLen, eps...)
	s.md.Neigh(t, s.ep)
	s.md.Neigh(t, s.kd)
	s.kd.Neigh(t, s.md)
	s.ep.Neigh(t, s.md)
	s.ep.Neigh(t, s.kd)
	s.kd.Neigh(t, s.ep)

	var err error
	if s.files, err = syssim.WriteFiles(s.dir, kdIP.AsSlice(), mdIP.AsSlice()); err != nil {
		t.Fatal(err)
	}
	if err := s.files.WriteConferences(nil); err != nil { // no mappings at the MD: sessions place endpoints
		t.Fatal(err)
	}
	var reg strings.Builder
	reg.WriteString("conferences:\n")
	for _, c := range cfg.conferences {
		fmt.Fprintf(&reg, "  - id: %s\n    allow_legacy: true\n    endpoints: []\n", c)
	}
	for _, c := range cfg.percConfs {
		fmt.Fprintf(&reg, "  - id: %s\n    allow_legacy: false\n    endpoints: []\n", c)
	}
	for name, content := range map[string]string{
		syssim.RegistryFile: reg.String(), "admin.token": adminToken + "\n", "join.secret": joinSecret + "\n",
	} {
		if err := os.WriteFile(s.files.Path(name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.mdHTTP = syssim.HTTPClient(s.md.NS.Name)
	s.kdHTTP = syssim.HTTPClient(s.kd.NS.Name)
	s.epHTTP = syssim.HTTPClient(s.ep.NS.Name)
	t.Cleanup(s.stop)

	kdArgs := append(s.files.KeydistArgs(netip.AddrPortFrom(kdIP, tunnelPort).String(), kdMetrics),
		"-admin-listen", kdAdmin, "-admin-token-file", s.files.Path("admin.token"),
		"-join-listen", netip.AddrPortFrom(kdIP, joinPort).String(), "-join-secret-file", s.files.Path("join.secret"),
		"-md-control-url", "http://"+netip.AddrPortFrom(mdIP, controlPort).String(), "-md-control-token-file", s.files.Path("control.token"),
		"-md-media-addr", netip.AddrPortFrom(mdIP, mediaPort).String(), "-join-timeout", "20s")
	kdArgs = append(kdArgs, cfg.kdArgs...)
	if s.kdProc, err = s.start(s.kd, "keydist", kdArgs...); err != nil {
		t.Fatal(err)
	}
	mdArgs := s.files.MDFastArgs(syssim.MD{Interface: "eth0", Mode: mdMode, Address: mdIP.String(), Port: mediaPort,
		KD: netip.AddrPortFrom(kdIP, tunnelPort).String(), Metrics: mdMetrics,
		Extra: append([]string{"-control-listen", netip.AddrPortFrom(mdIP, controlPort).String()}, cfg.mdArgs...)})
	if s.mdProc, err = s.start(s.md, "mdfast", mdArgs...); err != nil {
		s.fatal(err)
	}
	if err := syssim.WaitReady(context.Background(), s.mdHTTP, "http://"+mdMetrics+"/readyz", 30*time.Second, s.mdProc, s.kdProc); err != nil {
		s.fatal(fmt.Errorf("wait for mdfast /readyz: %w", err))
	}
	path, err := s.mdProc.ReportedPath()
	if err != nil {
		s.fatal(err)
	}
	t.Logf("mdfast data path: %s", path)
	return s
}

func (s *sys) start(n *node, name string, argv ...string) (*syssim.Proc, error) {
	log := filepath.Join(s.dir, name+".log")
	return syssim.Start(name, log, exec.Command("ip", append([]string{"netns", "exec", n.NS.Name, filepath.Join(binDir, name)}, argv...)...))
}

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
		s.t.Logf("--- mdfast (tail) ---\n%s", s.mdProc.Tail(40))
	}
	if s.kdProc != nil {
		s.t.Logf("--- keydist (tail) ---\n%s", s.kdProc.Tail(40))
	}
}

func (s *sys) fatal(err error) {
	s.t.Helper()
	s.logTails()
	s.t.Fatal(err)
}

// token mints a join token for conf (the test knows the secret).
func (s *sys) token(conf string) string {
	tok, err := keydist.MintJoinToken([]byte(joinSecret), conf, time.Now().Add(time.Hour))
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// joinURL is the join endpoint's base URL.
func joinURL() string { return "http://" + netip.AddrPortFrom(kdIP, joinPort).String() }

// request sends an HTTP request from the endpoints' namespace.
func (s *sys) request(method, url, token, ctype, body string, hdr ...string) (int, http.Header, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.epHTTP.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b), err
}

// mdMetric sums the samples of family name whose labels contain all of
// labels (e.g. `reason="auth"`).
func (s *sys) mdMetric(name string, labels ...string) float64 {
	_, body, err := syssim.Get(s.mdHTTP, "http://"+mdMetrics+"/metrics")
	if err != nil {
		s.t.Errorf("mdfast metrics: %v", err)
		return -1
	}
	var sum float64
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// joinSessions is the KD admin API's GET /v1/join/sessions.
func (s *sys) joinSessions() []keydist.JoinSessionInfo {
	code, body, err := syssim.GetAuth(s.kdHTTP, "http://"+kdAdmin+"/v1/join/sessions", adminToken)
	if err != nil || code != 200 {
		s.t.Errorf("GET /v1/join/sessions: %d %v", code, err)
		return nil
	}
	var out struct {
		Sessions []keydist.JoinSessionInfo `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		s.t.Errorf("GET /v1/join/sessions: %v", err)
	}
	return out.Sessions
}

// mdSessions is the MD control API's GET /v1/sessions.
type mdSession struct {
	ID          string `json:"id"`
	Conference  string `json:"conference"`
	Association string `json:"association"`
	Addr        string `json:"addr"`
	Consent     bool   `json:"consent"`
	Moves       int    `json:"moves"`
}

func (s *sys) mdSessions() []mdSession {
	code, body, err := syssim.GetAuth(s.mdHTTP, "http://"+netip.AddrPortFrom(mdIP, controlPort).String()+"/v1/sessions", s.files.ControlToken())
	if err != nil || code != 200 {
		s.t.Errorf("GET MD /v1/sessions: %d %v", code, err)
		return nil
	}
	var out struct {
		Sessions []mdSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		s.t.Errorf("GET MD /v1/sessions: %v", err)
	}
	return out.Sessions
}

// eventually polls cond every 20 ms until it holds or timeout passes; it
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
		time.Sleep(20 * time.Millisecond)
	}
}

// logMetrics logs mdfast's non-zero packet counters (diagnostics).
func (s *sys) logMetrics() {
	_, body, err := syssim.Get(s.mdHTTP, "http://"+mdMetrics+"/metrics")
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "mdfast_") && !strings.HasSuffix(line, " 0") && !strings.Contains(line, "_bucket") {
			s.t.Log(line)
		}
	}
}

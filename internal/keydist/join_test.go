package keydist

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/testutil"
)

const fakeMDToken = "fake-md-control-token-0123"

// fakeMD is the MD control API's session part as the contract describes
// it, checking every request body; it records what it was asked.
type fakeMD struct {
	t    *testing.T
	mu   sync.Mutex
	puts []fakePut
	dels []string
	have map[string]MDSession
	fail int // status to answer PUTs with (0: success)
	srv  *httptest.Server
}

type fakePut struct {
	id string
	s  MDSession
}

var (
	sessionIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	iceCharRe   = regexp.MustCompile(`^[A-Za-z0-9+/]+$`)
)

func newFakeMD(t *testing.T) *fakeMD {
	f := &fakeMD{t: t, have: map[string]MDSession{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var s MDSession
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Errorf("fake MD: PUT body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !sessionIDRe.MatchString(id) || s.Conference == "" || len(s.ICEUfrag) < 4 || len(s.ICEUfrag) > 256 ||
			!iceCharRe.MatchString(s.ICEUfrag) || len(s.ICEPwd) < 22 || !iceCharRe.MatchString(s.ICEPwd) ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("fake MD: PUT %q %+v breaks the contract", id, s)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for other, o := range f.have {
			if other != id && o.ICEUfrag == s.ICEUfrag {
				w.WriteHeader(http.StatusConflict)
				return
			}
		}
		f.puts = append(f.puts, fakePut{id, s})
		if f.fail != 0 {
			w.WriteHeader(f.fail)
			return
		}
		_, existed := f.have[id]
		f.have[id] = s
		if existed {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
	})
	mux.HandleFunc("DELETE /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := r.PathValue("id")
		f.dels = append(f.dels, id)
		if _, ok := f.have[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(f.have, id)
		w.WriteHeader(http.StatusNoContent)
	})
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeMDToken {
			t.Errorf("fake MD: request without the control token")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	f.srv = httptest.NewServer(auth)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMD) counts() (puts, dels, live int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.puts), len(f.dels), len(f.have)
}

// joinRig is a Join on a registry with conferences "perc" (PERC only) and
// "web" (allow_legacy), a fake MD, a fake clock and settable associations.
type joinRig struct {
	j      *Join
	reg    *Registry
	md     *fakeMD
	srv    *httptest.Server
	secret []byte
	kdFP   Fingerprint

	mu     sync.Mutex
	now    time.Time
	assocs []AssociationInfo
}

func newJoinRig(t *testing.T, mod func(*JoinConfig)) *joinRig {
	testutil.CheckGoroutines(t)
	rg := &joinRig{reg: NewRegistry(), md: newFakeMD(t), secret: make([]byte, 32), now: time.Unix(1_800_000_000, 0)}
	_, _ = rand.Read(rg.secret)
	_, _ = rand.Read(rg.kdFP[:])
	if err := rg.reg.SetConference("perc", false); err != nil {
		t.Fatal(err)
	}
	if err := rg.reg.SetConference("web", true); err != nil {
		t.Fatal(err)
	}
	cfg := JoinConfig{
		Registry: rg.reg,
		MD:       &MDControlClient{URL: rg.md.srv.URL, Token: fakeMDToken},
		Associations: func() []AssociationInfo {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			return append([]AssociationInfo(nil), rg.assocs...)
		},
		Fingerprint:   rg.kdFP,
		Candidates:    []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:4000"), netip.MustParseAddrPort("[2001:db8::1]:4000")},
		Secret:        rg.secret,
		Logger:        discardLogger(),
		SweepInterval: time.Hour, // the tests sweep by hand
		now: func() time.Time {
			rg.mu.Lock()
			defer rg.mu.Unlock()
			return rg.now
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	j, err := NewJoin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rg.j = j
	rg.srv = httptest.NewServer(j.Handler())
	t.Cleanup(func() {
		rg.srv.Close()
		_ = j.Close()
	})
	return rg
}

func (rg *joinRig) advance(d time.Duration) {
	rg.mu.Lock()
	rg.now = rg.now.Add(d)
	rg.mu.Unlock()
}

func (rg *joinRig) token(t *testing.T, conf string, ttl time.Duration) string {
	rg.mu.Lock()
	now := rg.now
	rg.mu.Unlock()
	tok, err := MintJoinToken(rg.secret, conf, now.Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type joinResp struct {
	code int
	hdr  http.Header
	body string
}

func (rg *joinRig) do(t *testing.T, method, path, token, ctype string, body string, hdr ...string) joinResp {
	t.Helper()
	req, err := http.NewRequest(method, rg.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return joinResp{resp.StatusCode, resp.Header, string(b)}
}

// testOffer is a browser-like offer with fingerprint fp and, when tlsID is
// not empty, a=tls-id.
func testOffer(fp Fingerprint, tlsID string) string {
	transport := "a=ice-ufrag:EPuf\r\na=ice-pwd:endpointpasswordendpoint\r\na=fingerprint:sha-256 " + fp.String() + "\r\na=setup:actpass\r\n"
	if tlsID != "" {
		transport += "a=tls-id:" + tlsID + "\r\n"
	}
	return "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" + transport + "a=mid:a\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" + transport + "a=mid:v\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\n"
}

func randomFP() Fingerprint {
	var fp Fingerprint
	_, _ = rand.Read(fp[:])
	return fp
}

func TestJoinBadInput(t *testing.T) {
	rg := newJoinRig(t, func(c *JoinConfig) { c.RatePerSource, c.BurstPerSource = 1000, 1000 })
	fp := randomFP()
	good := testOffer(fp, "")
	tok := rg.token(t, "web", time.Hour)
	other, _ := MintJoinToken(make([]byte, 32), "web", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name, conf, token, ctype, body string
		want                           int
		wantMsg                        string
	}{
		{"no token", "web", "", "application/sdp", good, 401, "join token is required"},
		{"garbage token", "web", "hello", "application/sdp", good, 401, "invalid join token"},
		{"token of another secret", "web", other, "application/sdp", good, 401, "invalid join token"},
		{"tampered token", "web", strings.Replace(tok, "mdj1.", "mdj1.A", 1), "application/sdp", good, 401, "invalid join token"},
		{"expired token", "web", rg.token(t, "web", -time.Second), "application/sdp", good, 401, "expired"},
		{"token for another conference", "web", rg.token(t, "perc", time.Hour), "application/sdp", good, 403, "another conference"},
		{"unknown conference", "nosuch", rg.token(t, "nosuch", time.Hour), "application/sdp", good, 404, "no conference"},
		{"wrong content type", "web", tok, "application/json", good, 415, "application/sdp"},
		{"huge body", "web", tok, "application/sdp", good + strings.Repeat("a=x\r\n", 20000), 413, "larger than"},
		{"malformed SDP", "web", tok, "application/sdp", "hello", 400, "malformed SDP"},
		{"no DTLS", "web", tok, "application/sdp", strings.ReplaceAll(good, "UDP/TLS/RTP/SAVPF", "RTP/SAVPF"), 400, "without DTLS"},
		{"sha-1 fingerprint", "web", tok, "application/sdp", strings.ReplaceAll(good, "sha-256 "+fp.String(), "sha-1 00:11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99"), 400, `hash "sha-1" is not supported`},
		{"setup passive", "web", tok, "application/sdp", strings.ReplaceAll(good, "actpass", "passive"), 400, "DTLS role"},
		{"no rtcp-mux", "web", tok, "application/sdp", strings.ReplaceAll(good, "a=rtcp-mux\r\n", ""), 400, "rtcp-mux"},
		{"legacy into a PERC conference", "perc", rg.token(t, "perc", time.Hour), "application/sdp", good, 403, "no a=tls-id"},
		{"bad tls-id", "perc", rg.token(t, "perc", time.Hour), "application/sdp", testOffer(fp, "short"), 400, "tls-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rg.do(t, "POST", "/v1/join/"+tc.conf, tc.token, tc.ctype, tc.body)
			if r.code != tc.want || !strings.Contains(r.body, tc.wantMsg) {
				t.Fatalf("status %d %q, want %d containing %q", r.code, r.body, tc.want, tc.wantMsg)
			}
			if n := rg.reg.NumEndpoints(); n != 0 {
				t.Fatalf("%d endpoints registered", n)
			}
			if puts, _, _ := rg.md.counts(); puts != 0 {
				t.Fatalf("%d PUTs at the MD", puts)
			}
			if r.code == 401 && !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Fatal("401 without a Bearer challenge")
			}
		})
	}
	// A second join with the same certificate: 409, nothing more.
	if r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", good); r.code != 201 {
		t.Fatalf("first join: %d %s", r.code, r.body)
	}
	if r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", good); r.code != 409 {
		t.Fatalf("second join: %d %s", r.code, r.body)
	}
	// The same legacy certificate in another allow_legacy conference would
	// make both ambiguous: 409 too.
	if err := rg.reg.SetConference("web2", true); err != nil {
		t.Fatal(err)
	}
	if r := rg.do(t, "POST", "/v1/join/web2", rg.token(t, "web2", time.Hour), "application/sdp", good); r.code != 409 || !strings.Contains(r.body, "one certificate per conference") {
		t.Fatalf("same legacy certificate in another conference: %d %s", r.code, r.body)
	}
	if n := rg.reg.NumEndpoints(); n != 1 {
		t.Fatalf("%d endpoints", n)
	}
	if puts, _, _ := rg.md.counts(); puts != 1 {
		t.Fatalf("%d PUTs", puts)
	}
}

// TestJoinMaxSessions: concurrent offers never exceed MaxSessions.
func TestJoinMaxSessions(t *testing.T) {
	rg := newJoinRig(t, func(c *JoinConfig) { c.MaxSessions, c.RatePerSource, c.BurstPerSource = 3, 1000, 1000 })
	tok := rg.token(t, "web", time.Hour)
	codes := make(chan int, 12)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			codes <- rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", testOffer(randomFP(), "")).code
		})
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[201] != 3 || got[503] != 9 {
		t.Fatalf("statuses %v, want 3 x 201 and 9 x 503", got)
	}
	if n := rg.reg.NumEndpoints(); n != 3 {
		t.Fatalf("%d endpoints", n)
	}
}

func TestJoinAnswer(t *testing.T) {
	for _, perc := range []bool{false, true} {
		t.Run(fmt.Sprint("perc=", perc), func(t *testing.T) {
			rg := newJoinRig(t, nil)
			fp := randomFP()
			conf, tlsID := "web", ""
			if perc {
				conf, tlsID = "perc", NewTLSID()
			}
			r := rg.do(t, "POST", "/v1/join/"+conf, rg.token(t, conf, time.Minute), "application/sdp; charset=utf-8", testOffer(fp, tlsID))
			if r.code != 201 || r.hdr.Get("Content-Type") != "application/sdp" || r.hdr.Get("ETag") == "" {
				t.Fatalf("%d %v %s", r.code, r.hdr, r.body)
			}
			loc := r.hdr.Get("Location")
			id, ok := strings.CutPrefix(loc, "/v1/join/sessions/")
			if !ok || len(id) != 32 {
				t.Fatalf("Location %q", loc)
			}
			// Registered at the KD, with the right identity.
			c, _ := rg.reg.Conference(conf)
			if len(c.Endpoints) != 1 || c.Endpoints[0].Fingerprint != fp || c.Endpoints[0].TLSID != tlsID {
				t.Fatalf("registry: %+v", c)
			}
			// PUT at the MD with the answer's credentials.
			rg.md.mu.Lock()
			put := rg.md.puts[0]
			rg.md.mu.Unlock()
			if put.id != id || put.s.Conference != conf || put.s.TLSID != tlsID || put.s.RemoteUfrag != "EPuf" {
				t.Fatalf("MD PUT %+v", put)
			}
			for _, want := range []string{
				"a=ice-lite", "a=group:BUNDLE a v", "a=ice-ufrag:" + put.s.ICEUfrag, "a=ice-pwd:" + put.s.ICEPwd,
				"a=fingerprint:sha-256 " + rg.kdFP.String(), "a=setup:passive", "a=rtcp-mux", "a=sendrecv",
				"a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000", "m=audio 4000 UDP/TLS/RTP/SAVPF 111",
				"a=candidate:1 1 udp 2130706431 198.18.0.1 4000 typ host", "a=candidate:2 1 udp 2130706175 2001:db8::1 4000 typ host",
			} {
				if !strings.Contains(r.body, want+"\r\n") {
					t.Errorf("answer lacks %q", want)
				}
			}
			if perc != strings.Contains(r.body, "a=tls-id:"+c.Endpoints[0].KDTLSID+"\r\n") {
				t.Errorf("answer tls-id (perc %v): %s", perc, r.body)
			}
			if strings.Contains(r.body, "endpointpassword") {
				t.Error("the answer echoes the endpoint's password")
			}
			if s := rg.j.Sessions(); len(s) != 1 || s[0].ID != id {
				t.Fatalf("sessions %+v", s)
			}
		})
	}
}

func TestJoinRollback(t *testing.T) {
	rg := newJoinRig(t, nil)
	rg.md.fail = http.StatusInternalServerError
	r := rg.do(t, "POST", "/v1/join/web", rg.token(t, "web", time.Minute), "application/sdp", testOffer(randomFP(), ""))
	if r.code != http.StatusBadGateway {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if n := rg.reg.NumEndpoints(); n != 0 {
		t.Fatalf("registration not rolled back: %d endpoints", n)
	}
	puts, dels, live := rg.md.counts()
	if puts != 1 || dels != 1 || live != 0 {
		t.Fatalf("MD: %d puts, %d deletes, %d live", puts, dels, live)
	}
	if len(rg.j.Sessions()) != 0 {
		t.Fatal("session kept")
	}
}

func TestJoinRateLimit(t *testing.T) {
	rg := newJoinRig(t, func(c *JoinConfig) { c.RatePerSource, c.BurstPerSource, c.Rate, c.Burst = 1, 3, 1, 5 })
	for i := range 3 {
		if r := rg.do(t, "POST", "/v1/join/web", "", "", ""); r.code != 401 {
			t.Fatalf("request %d: %d", i, r.code)
		}
	}
	r := rg.do(t, "POST", "/v1/join/web", "", "", "")
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("fourth request: %d", r.code)
	}
	rg.advance(time.Second) // one token back
	if r := rg.do(t, "POST", "/v1/join/web", "", "", ""); r.code != 401 {
		t.Fatalf("after refill: %d", r.code)
	}
	// Other sources: only the global budget is left (burst 5, 4 admitted,
	// one token back after the second; the per-source refusal spent none).
	l := rg.j.lim
	now := rg.j.cfg.now()
	got := []string{l.allow(netip.MustParseAddr("198.18.0.7"), now), l.allow(netip.MustParseAddr("2001:db8::7"), now), l.allow(netip.MustParseAddr("2001:db8::8"), now)}
	if got[0] != "" || got[1] != "" || got[2] != "global" {
		t.Fatalf("limits %q", got)
	}
	// Sources are bounded.
	l.maxSources = 8
	for i := range 100 {
		l.allow(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), now)
	}
	if len(l.per) > 8 {
		t.Fatalf("%d sources tracked", len(l.per))
	}
}

func TestJoinExpiryAndAssociation(t *testing.T) {
	rg := newJoinRig(t, nil)
	tok := rg.token(t, "web", time.Minute)
	fpA, fpB := randomFP(), randomFP()
	if r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", testOffer(fpA, "")); r.code != 201 {
		t.Fatal(r.code, r.body)
	}
	if r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", testOffer(fpB, "")); r.code != 201 {
		t.Fatal(r.code, r.body)
	}
	// B's association completes; A's never does.
	idB := uuid.New()
	rg.mu.Lock()
	rg.assocs = []AssociationInfo{
		{ID: uuid.New(), State: "handshaking", Conference: "web", Fingerprint: fpA.String()},
		{ID: idB, State: "established", Conference: "web", Fingerprint: fpB.String()},
	}
	rg.mu.Unlock()
	rg.advance(DefaultJoinTimeout - time.Second)
	rg.j.sweep()
	bound := map[string]string{}
	for _, s := range rg.j.Sessions() {
		bound[s.Fingerprint] = s.Association
	}
	if len(bound) != 2 || bound[fpB.String()] != idB.String() || bound[fpA.String()] != "" {
		t.Fatalf("before the timeout: %+v", bound)
	}
	rg.advance(time.Second)
	rg.j.sweep()
	s := rg.j.Sessions()
	if len(s) != 1 || s[0].Fingerprint != fpB.String() {
		t.Fatalf("after the timeout: %+v", s)
	}
	c, _ := rg.reg.Conference("web")
	if len(c.Endpoints) != 1 || c.Endpoints[0].Fingerprint != fpB {
		t.Fatalf("registry after A's expiry: %+v", c.Endpoints)
	}
	if _, _, live := rg.md.counts(); live != 1 {
		t.Fatalf("%d MD sessions", live)
	}
	// B's association ends: its session ends, long before any timeout.
	rg.mu.Lock()
	rg.assocs = nil
	rg.mu.Unlock()
	rg.j.sweep()
	if s := rg.j.Sessions(); len(s) != 0 {
		t.Fatalf("after B's association ended: %+v", s)
	}
	if n := rg.reg.NumEndpoints(); n != 0 {
		t.Fatalf("%d endpoints", n)
	}
	if _, _, live := rg.md.counts(); live != 0 {
		t.Fatalf("%d MD sessions", live)
	}
}

func TestJoinPatchDelete(t *testing.T) {
	rg := newJoinRig(t, nil)
	tok := rg.token(t, "web", time.Minute)
	r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", testOffer(randomFP(), ""))
	if r.code != 201 {
		t.Fatal(r.code, r.body)
	}
	loc, etag := r.hdr.Get("Location"), r.hdr.Get("ETag")
	const frag = "a=ice-ufrag:NeWu\r\na=ice-pwd:newpasswordnewpassword12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\n"
	ct := "application/trickle-ice-sdpfrag"
	if r := rg.do(t, "PATCH", loc, tok, ct, frag, "If-Match", `"stale"`); r.code != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d", r.code)
	}
	if r := rg.do(t, "PATCH", loc, rg.token(t, "perc", time.Minute), ct, frag); r.code != http.StatusForbidden {
		t.Fatalf("token of another conference: %d", r.code)
	}
	if r := rg.do(t, "PATCH", loc, tok, ct, "a=candidate:1 1 udp 1 198.18.0.2 5000 typ host\r\n"); r.code != http.StatusNoContent {
		t.Fatalf("trickle: %d", r.code)
	}
	if r := rg.do(t, "PATCH", loc, tok, ct, "a=ice-ufrag:NeWu\r\n"); r.code != http.StatusBadRequest {
		t.Fatalf("half a restart: %d", r.code)
	}
	if puts, _, _ := rg.md.counts(); puts != 1 {
		t.Fatalf("%d PUTs before the restart", puts)
	}
	rg.advance(2 * time.Minute) // the token has expired: PATCH still works with it
	r = rg.do(t, "PATCH", loc, tok, ct, frag, "If-Match", etag)
	if r.code != 200 || r.hdr.Get("Content-Type") != ct || r.hdr.Get("ETag") == etag {
		t.Fatalf("restart: %d %v %s", r.code, r.hdr, r.body)
	}
	rg.md.mu.Lock()
	first, second := rg.md.puts[0], rg.md.puts[1]
	rg.md.mu.Unlock()
	if second.id != first.id || second.s.RemoteUfrag != "NeWu" || second.s.ICEUfrag == first.s.ICEUfrag || second.s.ICEPwd == first.s.ICEPwd || second.s.Conference != "web" {
		t.Fatalf("restart PUT %+v after %+v", second, first)
	}
	if !strings.Contains(r.body, "a=ice-ufrag:"+second.s.ICEUfrag+"\r\n") || !strings.Contains(r.body, "a=ice-pwd:"+second.s.ICEPwd+"\r\n") ||
		!strings.Contains(r.body, "a=mid:a\r\n") || !strings.Contains(r.body, "typ host") {
		t.Fatalf("restart answer %s", r.body)
	}
	// A POST with the expired token is refused.
	if r := rg.do(t, "POST", "/v1/join/web", tok, "application/sdp", testOffer(randomFP(), "")); r.code != 401 {
		t.Fatalf("expired POST: %d", r.code)
	}
	if r := rg.do(t, "DELETE", loc, "", "", ""); r.code != 401 {
		t.Fatalf("DELETE without a token: %d", r.code)
	}
	if r := rg.do(t, "DELETE", loc, tok, "", ""); r.code != 204 {
		t.Fatalf("DELETE: %d %s", r.code, r.body)
	}
	if n := rg.reg.NumEndpoints(); n != 0 {
		t.Fatalf("%d endpoints after DELETE", n)
	}
	if _, dels, live := rg.md.counts(); dels != 1 || live != 0 {
		t.Fatalf("MD after DELETE: %d deletes, %d live", dels, live)
	}
	if r := rg.do(t, "DELETE", loc, tok, "", ""); r.code != 404 {
		t.Fatalf("second DELETE: %d", r.code)
	}
	if r := rg.do(t, "DELETE", "/v1/join/sessions/00000000000000000000000000000000", "", "", ""); r.code != 401 {
		t.Fatalf("unknown session without a token: %d", r.code)
	}
}

func TestJoinCORS(t *testing.T) {
	rg := newJoinRig(t, func(c *JoinConfig) { c.AllowOrigins = []string{"http://app.example"} })
	r := rg.do(t, "OPTIONS", "/v1/join/web", "", "", "", "Origin", "http://app.example", "Access-Control-Request-Method", "POST")
	if r.code != 204 || r.hdr.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(r.hdr.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight %d %v", r.code, r.hdr)
	}
	r = rg.do(t, "OPTIONS", "/v1/join/web", "", "", "", "Origin", "http://evil.example")
	if r.hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS for an origin not allowed")
	}
	r = rg.do(t, "POST", "/v1/join/web", rg.token(t, "web", time.Minute), "application/sdp", testOffer(randomFP(), ""), "Origin", "http://app.example")
	if r.code != 201 || !strings.Contains(r.hdr.Get("Access-Control-Expose-Headers"), "Location") {
		t.Fatalf("POST with Origin: %d %v", r.code, r.hdr)
	}
}

func TestJoinToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	tok, err := MintJoinToken(secret, "room-1:a@b.c", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	conf, exp, err := verifyJoinToken(secret, tok, now, true)
	if err != nil || conf != "room-1:a@b.c" || !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("%q %v %v", conf, exp, err)
	}
	dot := strings.LastIndexByte(tok, '.')
	for _, tc := range []struct {
		name, tok string
		now       time.Time
		want      error
	}{
		{"expired", tok, now.Add(time.Minute), ErrJoinTokenExpired},
		{"other secret", func() string {
			s, _ := MintJoinToken([]byte("1123456789abcdef0123456789abcdef"), "room-1:a@b.c", now.Add(time.Minute))
			return s
		}(), now, ErrJoinToken},
		{"expiry changed", strings.Replace(tok, ".1800000060.", ".1900000060.", 1), now, ErrJoinToken},
		{"signature cut", tok[:dot+5], now, ErrJoinToken},
		{"no signature", tok[:dot], now, ErrJoinToken},
		{"empty", "", now, ErrJoinToken},
		{"other version", "mdj2" + tok[4:], now, ErrJoinToken},
		{"huge", tok + strings.Repeat("A", 2000), now, ErrJoinToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := verifyJoinToken(secret, tc.tok, tc.now, true); err != tc.want {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
	if _, err := MintJoinToken(secret[:31], "x", now); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := MintJoinToken(secret, "bad/conference", now); err == nil {
		t.Fatal("bad conference accepted")
	}
}

func TestJoinCloseRemovesSessions(t *testing.T) {
	rg := newJoinRig(t, nil)
	if r := rg.do(t, "POST", "/v1/join/web", rg.token(t, "web", time.Minute), "application/sdp", testOffer(randomFP(), "")); r.code != 201 {
		t.Fatal(r.code)
	}
	_ = rg.j.Close()
	if n := rg.reg.NumEndpoints(); n != 0 {
		t.Fatalf("%d endpoints after Close", n)
	}
	if _, _, live := rg.md.counts(); live != 0 {
		t.Fatalf("%d MD sessions after Close", live)
	}
	// An offer arriving during shutdown leaves nothing behind.
	if r := rg.do(t, "POST", "/v1/join/web", rg.token(t, "web", time.Minute), "application/sdp", testOffer(randomFP(), "")); r.code != http.StatusServiceUnavailable {
		t.Fatalf("offer after Close: %d", r.code)
	}
	if _, _, live := rg.md.counts(); live != 0 || rg.reg.NumEndpoints() != 0 {
		t.Fatalf("after a late offer: %d MD sessions, %d endpoints", live, rg.reg.NumEndpoints())
	}
}

func TestAdminJoinTokens(t *testing.T) {
	rg := newJoinRig(t, nil)
	h, err := NewAdminHandler(AdminConfig{Registry: rg.reg, Token: "admin-token-0123456789", Logger: discardLogger(), Join: rg.j, JoinSecret: rg.secret})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer admin-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/v1/conferences/web/join-tokens", `{"ttl":"0s"}`, 400},
		{"/v1/conferences/web/join-tokens", `{"ttl":"1000h"}`, 400},
		{"/v1/conferences/web/join-tokens", `{"ttl":"1h","x":1}`, 400},
		{"/v1/conferences/nosuch/join-tokens", `{"ttl":"1h"}`, 404},
	} {
		if code, _ := post(tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.path, tc.body, code, tc.want)
		}
	}
	code, out := post("/v1/conferences/web/join-tokens", `{"ttl":"1h"}`)
	tok, _ := out["token"].(string)
	if code != 201 || tok == "" {
		t.Fatalf("%d %v", code, out)
	}
	conf, _, err := verifyJoinToken(rg.secret, tok, time.Now(), true)
	if err != nil || conf != "web" {
		t.Fatalf("minted token: %q %v", conf, err)
	}
}

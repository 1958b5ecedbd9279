package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/mdslow"
)

const testToken = "0123456789abcdef-token"

func sessionAPI(t *testing.T) (*Membership, *fakeRelay, func(method, path, body string) (int, string)) {
	t.Helper()
	m, err := NewMembership("")
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeRelay{}
	h, err := NewHandler(Config{Membership: m, Relay: fr, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	return m, fr, func(method, path, body string) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
}

const goodSession = `{"conference":"room1","tls_id":"tls-id-of-endpoint-1","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl","remote_ufrag":"epU1"}`

func TestSessionAPIBadInput(t *testing.T) {
	long := strings.Repeat("a", 257)
	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"not JSON", "/v1/sessions/s1", `{"conference":`, http.StatusBadRequest},
		{"unknown field", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl","pwd":"x"}`, http.StatusBadRequest},
		{"trailing data", "/v1/sessions/s1", goodSession + ` {}`, http.StatusBadRequest},
		{"no conference", "/v1/sessions/s1", `{"ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"conference too long", "/v1/sessions/s1", `{"conference":"` + strings.Repeat("c", 256) + `","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"no ufrag", "/v1/sessions/s1", `{"conference":"room1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"short ufrag", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"md1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"long ufrag", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"` + long + `","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"ufrag with colon", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"md:U1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"ufrag not ice-char", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1é","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"short pwd", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijk"}`, http.StatusBadRequest},
		{"long pwd", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1","ice_pwd":"` + long + `"}`, http.StatusBadRequest},
		{"pwd not ice-char", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijk "}`, http.StatusBadRequest},
		{"bad remote ufrag", "/v1/sessions/s1", `{"conference":"room1","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl","remote_ufrag":"a:b!"}`, http.StatusBadRequest},
		{"tls_id too long", "/v1/sessions/s1", `{"conference":"room1","tls_id":"` + long + `","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl"}`, http.StatusBadRequest},
		{"id with a dot", "/v1/sessions/s.1", goodSession, http.StatusBadRequest},
		{"id too long", "/v1/sessions/" + strings.Repeat("i", 65), goodSession, http.StatusBadRequest},
		{"huge body", "/v1/sessions/s1", `{"conference":"` + strings.Repeat("c", 70<<10) + `"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, fr, do := sessionAPI(t)
			if code, body := do("PUT", tc.path, tc.body); code != tc.want {
				t.Fatalf("PUT = %d %s, want %d", code, body, tc.want)
			}
			if l := m.Sessions(); len(l) != 0 {
				t.Fatalf("stored %+v", l)
			}
			if _, ok := m.ICECredential("mdU1"); ok {
				t.Fatal("credentials stored")
			}
			if fr.reassigned != 0 {
				t.Fatal("reassigned after a refused PUT")
			}
		})
	}
}

func TestSessionAPI(t *testing.T) {
	m, fr, do := sessionAPI(t)
	if code, body := do("PUT", "/v1/sessions/s1", goodSession); code != http.StatusCreated {
		t.Fatalf("create = %d %s", code, body)
	}
	c, ok := m.ICECredential("mdU1")
	if !ok || c.Session != "s1" || c.Pwd != "0123456789abcdefghijkl" || c.Remote != "epU1" {
		t.Fatalf("credential %+v %v", c, ok)
	}
	// Placement: the session's tls_id, then a checked session.
	addr := netip.MustParseAddrPort("198.18.0.11:5000")
	conf, sid, ok := m.Place("tls-id-of-endpoint-1", addr, "")
	if !ok || sid != "s1" || m.ConferenceName(conf) != "room1" {
		t.Fatalf("Place by tls_id = %d %q %v", conf, sid, ok)
	}
	conf, sid, ok = m.Place("", addr, "s1")
	if !ok || sid != "s1" || m.ConferenceName(conf) != "room1" {
		t.Fatalf("Place by check = %d %q %v", conf, sid, ok)
	}
	if _, _, ok := m.Place("", addr, "unknown"); ok {
		t.Fatal("an unknown checked session placed an endpoint")
	}
	// A tls-id mapping wins over the session.
	if err := m.MapTLSID("tls-id-of-endpoint-1", "other"); err != nil {
		t.Fatal(err)
	}
	if conf, sid, _ := m.Place("tls-id-of-endpoint-1", addr, ""); m.ConferenceName(conf) != "other" || sid != "s1" {
		t.Fatalf("tls-id mapping: %q %q", m.ConferenceName(conf), sid)
	}
	// The session wins over an address mapping.
	if err := m.MapAddr("198.18.0.11", "byaddr"); err != nil {
		t.Fatal(err)
	}
	if conf, _, _ := m.Place("", addr, "s1"); m.ConferenceName(conf) != "room1" {
		t.Fatalf("address mapping won over the session: %q", m.ConferenceName(conf))
	}
	// Conflicts: another session's ufrag or tls_id, a configured ufrag.
	if code, _ := do("PUT", "/v1/sessions/s2", goodSession); code != http.StatusConflict {
		t.Fatalf("same ufrag, other session = %d", code)
	}
	if code, _ := do("PUT", "/v1/sessions/s2", `{"conference":"room1","tls_id":"tls-id-of-endpoint-1","ice_ufrag":"mdU2","ice_pwd":"0123456789abcdefghijkl"}`); code != http.StatusConflict {
		t.Fatalf("same tls_id, other session = %d", code)
	}
	if err := m.SetICE("static1", "0123456789012345678901"); err != nil {
		t.Fatal(err)
	}
	if code, _ := do("PUT", "/v1/sessions/s2", `{"conference":"room1","ice_ufrag":"static1","ice_pwd":"0123456789abcdefghijkl"}`); code != http.StatusConflict {
		t.Fatalf("configured ufrag = %d", code)
	}
	if err := m.SetICE("mdU1", "0123456789012345678901"); err == nil {
		t.Fatal("SetICE took a session's ufrag")
	}
	// An ICE restart: new credentials replace the old ones.
	if code, body := do("PUT", "/v1/sessions/s1", `{"conference":"room1","tls_id":"tls-id-of-endpoint-1","ice_ufrag":"mdU9","ice_pwd":"abcdefghijkl0123456789","remote_ufrag":"epU9"}`); code != http.StatusOK {
		t.Fatalf("restart = %d %s", code, body)
	}
	if _, ok := m.ICECredential("mdU1"); ok {
		t.Fatal("the old ufrag still authenticates")
	}
	if c, ok := m.ICECredential("mdU9"); !ok || c.Session != "s1" || c.Remote != "epU9" {
		t.Fatalf("new credential %+v", c)
	}
	// The old ufrag is free for another session now.
	if code, _ := do("PUT", "/v1/sessions/s2", `{"conference":"room2","ice_ufrag":"mdU1","ice_pwd":"0123456789abcdefghijkl"}`); code != http.StatusCreated {
		t.Fatalf("s2 = %d", code)
	}
	if fr.reassigned != 3 {
		t.Fatalf("reassigned %d times, want 3", fr.reassigned)
	}
	// The listing joins the relay's state and never shows a password.
	aid := uuid.New()
	fr.state = []mdslow.SessionInfo{{ID: "s1", Association: aid, Addr: addr, Consent: true, Moves: 2}}
	code, body := do("GET", "/v1/sessions", "")
	if code != http.StatusOK || strings.Contains(body, "abcdefghijkl0123456789") || strings.Contains(body, "pwd") {
		t.Fatalf("list = %d %s", code, body)
	}
	var list struct {
		Sessions []struct {
			ID, Conference, Association, Addr string
			TLSID                             string `json:"tls_id"`
			Consent                           bool
			Moves                             uint64
		}
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 2 {
		t.Fatalf("%d sessions: %s", len(list.Sessions), body)
	}
	s1, s2 := list.Sessions[0], list.Sessions[1]
	if s1.ID != "s1" || s1.Association != aid.String() || s1.Addr != addr.String() || !s1.Consent || s1.Moves != 2 || s1.TLSID != "tls-id-of-endpoint-1" {
		t.Fatalf("s1 %+v", s1)
	}
	if s2.ID != "s2" || s2.Association != "" || s2.Addr != "" || s2.Consent || s2.Conference != "room2" {
		t.Fatalf("s2 %+v", s2)
	}
	// Delete: the relay ends its association; unknown is 404.
	if code, _ := do("DELETE", "/v1/sessions/s1", ""); code != http.StatusNoContent {
		t.Fatalf("delete = %d", code)
	}
	if len(fr.ended) != 1 || fr.ended[0] != "s1" {
		t.Fatalf("ended %v", fr.ended)
	}
	if _, ok := m.ICECredential("mdU9"); ok {
		t.Fatal("a deleted session's ufrag still authenticates")
	}
	if _, _, ok := m.Place("tls-id-of-endpoint-2", netip.MustParseAddrPort("198.18.0.99:5000"), "s1"); ok {
		t.Fatal("a deleted session still places")
	}
	if code, _ := do("DELETE", "/v1/sessions/s1", ""); code != http.StatusNotFound {
		t.Fatalf("delete again = %d", code)
	}
	// A reload keeps sessions and refuses a configured ufrag that is a session's.
	if err := m.Replace(Mappings{ICE: map[string]string{"mdU1": "0123456789012345678901"}}); err == nil {
		t.Fatal("reload took session s2's ufrag")
	}
	if err := m.Replace(Mappings{}); err != nil {
		t.Fatal(err)
	}
	if c, ok := m.ICECredential("mdU1"); !ok || c.Session != "s2" {
		t.Fatal("a reload dropped a session")
	}
}

package control

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/mdslow"
)

type fakeRelay struct {
	reassigned int
	ended      []string
	state      []mdslow.SessionInfo
}

func (f *fakeRelay) Sessions(context.Context) ([]mdslow.SessionInfo, error) { return f.state, nil }
func (f *fakeRelay) EndSession(_ context.Context, id string) (bool, error) {
	f.ended = append(f.ended, id)
	return true, nil
}

func (f *fakeRelay) Associations(context.Context) ([]mdslow.AssociationInfo, error) {
	return []mdslow.AssociationInfo{{ID: uuid.New(), Conference: 1, State: "established"}}, nil
}
func (f *fakeRelay) Reassign(context.Context) error                      { f.reassigned++; return nil }
func (f *fakeRelay) Disconnect(context.Context, uuid.UUID) (bool, error) { return false, nil }

func TestAPI(t *testing.T) {
	m, err := NewMembership("")
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeRelay{}
	h, err := NewHandler(Config{Membership: m, Relay: fr, Token: "0123456789abcdef-token"})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body, token string) int {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	const tok = "0123456789abcdef-token"
	for _, tc := range []struct {
		name, method, path, body, token string
		want                            int
	}{
		{"no token", "GET", "/v1/associations", "", "", http.StatusUnauthorized},
		{"bad token", "GET", "/v1/associations", "", "0123456789abcdef-tokem", http.StatusUnauthorized},
		{"list", "GET", "/v1/associations", "", tok, http.StatusOK},
		{"map tls-id", "PUT", "/v1/mappings/tls-id/abcdefghijklmnopqrstu", `{"conference":"room1"}`, tok, http.StatusNoContent},
		{"map addr", "PUT", "/v1/mappings/addr/198.18.0.11:4000", `{"conference":"room2"}`, tok, http.StatusNoContent},
		{"map ip", "PUT", "/v1/mappings/addr/198.18.0.12", `{"conference":"room2"}`, tok, http.StatusNoContent},
		{"bad addr", "PUT", "/v1/mappings/addr/nope", `{"conference":"room2"}`, tok, http.StatusBadRequest},
		{"unknown field", "PUT", "/v1/mappings/tls-id/x", `{"conf":"room2"}`, tok, http.StatusBadRequest},
		{"trailing data", "PUT", "/v1/mappings/tls-id/x", `{"conference":"room2"} {"conference":"room3"}`, tok, http.StatusBadRequest},
		{"ice", "PUT", "/v1/ice/mdufrag", `{"pwd":"0123456789012345678901"}`, tok, http.StatusNoContent},
		{"ice short pwd", "PUT", "/v1/ice/mdufrag", `{"pwd":"short"}`, tok, http.StatusBadRequest},
		{"disconnect unknown", "DELETE", "/v1/associations/" + uuid.NewString(), "", tok, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := do(tc.method, tc.path, tc.body, tc.token); got != tc.want {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, got, tc.want)
			}
		})
	}
	if fr.reassigned != 3 {
		t.Errorf("reassigned %d times, want 3", fr.reassigned)
	}
	if c, ok := m.Conference("", netip.MustParseAddrPort("198.18.0.99:1")); ok {
		t.Errorf("an unmapped endpoint is in conference %d", c)
	}
	r1, ok1 := m.Conference("abcdefghijklmnopqrstu", netip.MustParseAddrPort("198.18.0.99:1"))
	r2, ok2 := m.Conference("", netip.MustParseAddrPort("198.18.0.11:4000"))
	r2ip, ok3 := m.Conference("", netip.MustParseAddrPort("198.18.0.12:9"))
	if !ok1 || !ok2 || !ok3 || r1 == r2 || r2ip != r2 {
		t.Errorf("conferences room1=%d room2=%d room2(ip)=%d", r1, r2, r2ip)
	}
	if c, ok := m.ICECredential("mdufrag"); !ok || c.Pwd != "0123456789012345678901" || c.Session != "" {
		t.Error("ICE password not set")
	}
}

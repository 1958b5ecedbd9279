package httpserve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBearerAuth(t *testing.T) {
	h := BearerAuth("0123456789abcdef-token", "test", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong scheme", "Basic 0123456789abcdef-token", http.StatusUnauthorized},
		{"wrong token", "Bearer 0123456789abcdef-tokeN", http.StatusUnauthorized},
		{"prefix of the token", "Bearer 0123456789abcdef", http.StatusUnauthorized},
		{"empty token", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer 0123456789abcdef-token", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="test"` {
					t.Fatalf("challenge %q", got)
				}
				if !strings.Contains(w.Body.String(), `"error":"unauthorized"`) || w.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("body %q (%s)", w.Body.String(), w.Header().Get("Content-Type"))
				}
			}
		})
	}
}

package httpserve

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// BearerAuth returns a handler that serves next only to requests carrying
// "Authorization: Bearer <token>"; anything else gets 401 with a JSON error
// body and a WWW-Authenticate challenge for realm. Both sides are hashed
// before the constant-time comparison, so neither the token's content nor
// its length leaks through timing.
func BearerAuth(token, realm string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	challenge := `Bearer realm="` + realm + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", challenge)
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteJSON writes v as a JSON response with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

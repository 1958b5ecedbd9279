package keydist

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Join tokens (see the join endpoint in join.go) are
//
//	"mdj1." base64url(conference) "." expiry-unix-seconds "." base64url(HMAC-SHA256(secret, everything before the last dot))
//
// The MAC is checked (constant time) before anything the token says is
// believed; then the expiry and the conference.

const (
	joinTokenPrefix = "mdj1."
	// MinJoinSecret is the shortest join-token secret accepted (bytes).
	MinJoinSecret = 32
	maxJoinToken  = 1024
)

// Join token errors (callers answer 401 or 403 on them).
var (
	// ErrJoinToken: no token, or one that does not verify.
	ErrJoinToken = errors.New("keydist: invalid join token")
	// ErrJoinTokenExpired: a valid token past its expiry.
	ErrJoinTokenExpired = errors.New("keydist: join token expired")
	// ErrJoinTokenConference: a valid token for another conference.
	ErrJoinTokenConference = errors.New("keydist: join token for another conference")
)

// MintJoinToken returns a join token for conference valid until exp,
// signed with secret (at least MinJoinSecret bytes).
func MintJoinToken(secret []byte, conference string, exp time.Time) (string, error) {
	if len(secret) < MinJoinSecret {
		return "", fmt.Errorf("mint join token: secret of %d bytes, want at least %d", len(secret), MinJoinSecret)
	}
	if err := ValidateConferenceID(conference); err != nil {
		return "", fmt.Errorf("mint join token: %w", err)
	}
	body := joinTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(conference)) + "." + strconv.FormatInt(exp.Unix(), 10)
	return body + "." + base64.RawURLEncoding.EncodeToString(joinMAC(secret, body)), nil
}

func joinMAC(secret []byte, body string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(body))
	return h.Sum(nil)
}

// verifyJoinToken checks tok and returns its conference and expiry. It
// returns ErrJoinToken for anything that is not a token signed with
// secret, ErrJoinTokenExpired when checkExpiry and now is past it.
func verifyJoinToken(secret []byte, tok string, now time.Time, checkExpiry bool) (string, time.Time, error) {
	if len(tok) > maxJoinToken || !strings.HasPrefix(tok, joinTokenPrefix) {
		return "", time.Time{}, ErrJoinToken
	}
	dot := strings.LastIndexByte(tok, '.')
	body, sig := tok[:dot], tok[dot+1:]
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, joinMAC(secret, body)) {
		return "", time.Time{}, ErrJoinToken
	}
	confB64, expStr, ok := strings.Cut(body[len(joinTokenPrefix):], ".")
	if !ok {
		return "", time.Time{}, ErrJoinToken
	}
	conf, err1 := base64.RawURLEncoding.DecodeString(confB64)
	exp, err2 := strconv.ParseInt(expStr, 10, 64)
	if err1 != nil || err2 != nil {
		return "", time.Time{}, ErrJoinToken
	}
	expiry := time.Unix(exp, 0)
	if checkExpiry && !now.Before(expiry) {
		return "", time.Time{}, ErrJoinTokenExpired
	}
	return string(conf), expiry, nil
}

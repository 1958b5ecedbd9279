package keydist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MDSession is the body of PUT /v1/sessions/{id} at the Media
// Distributor's control API: what the MD may know of a joined endpoint
// (never its fingerprint: only the KD authorizes endpoints).
type MDSession struct {
	// Conference places the endpoint's association at the MD.
	Conference string `json:"conference"`
	// TLSID is the endpoint's tls-id (PERC endpoints), for the MD's
	// tls-id placement.
	TLSID string `json:"tls_id,omitempty"`
	// ICEUfrag and ICEPwd are the MD's local ICE-lite credentials for the
	// endpoint (the answer's a=ice-ufrag and a=ice-pwd).
	ICEUfrag string `json:"ice_ufrag"`
	ICEPwd   string `json:"ice_pwd"`
	// RemoteUfrag is the endpoint's ufrag (the offer's a=ice-ufrag): the
	// MD accepts a check's USERNAME only as "ICEUfrag:RemoteUfrag".
	RemoteUfrag string `json:"remote_ufrag,omitempty"`
}

// MDSessions is what the join endpoint asks of the Media Distributor.
type MDSessions interface {
	// PutSession creates or replaces (ICE restart) session id.
	PutSession(ctx context.Context, id string, s MDSession) error
	// DeleteSession removes session id and ends its association; a
	// session the MD does not know is not an error.
	DeleteSession(ctx context.Context, id string) error
}

// MDControlClient calls the MD's control API (bearer token).
type MDControlClient struct {
	// URL is the control API's base URL, e.g. http://127.0.0.1:5742.
	URL string
	// Token is the control API's bearer token.
	Token string
	// Client is the HTTP client (default: one with a 5 s timeout).
	Client *http.Client
}

// maxMDError bounds how much of an MD error body is quoted.
const maxMDError = 512

var defaultMDClient = &http.Client{Timeout: 5 * time.Second}

func (c *MDControlClient) do(ctx context.Context, method, id string, body []byte, ok ...int) error {
	u := strings.TrimSuffix(c.URL, "/") + "/v1/sessions/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s MD session %s: %w", method, id, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.Client
	if hc == nil {
		hc = defaultMDClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s MD session %s: %w", method, id, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxMDError))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	for _, code := range ok {
		if resp.StatusCode == code {
			return nil
		}
	}
	return fmt.Errorf("%s MD session %s: %w", method, id, &MDError{Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))})
}

// MDError is an MD control API answer other than success.
type MDError struct {
	Status int
	Body   string
}

func (e *MDError) Error() string {
	return fmt.Sprintf("MD control API: status %d: %.200s", e.Status, e.Body)
}

// PutSession implements MDSessions.
func (c *MDControlClient) PutSession(ctx context.Context, id string, s MDSession) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("PUT MD session %s: %w", id, err)
	}
	return c.do(ctx, http.MethodPut, id, b, http.StatusOK, http.StatusCreated)
}

// DeleteSession implements MDSessions.
func (c *MDControlClient) DeleteSession(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, id, nil, http.StatusNoContent, http.StatusOK)
	if e := (*MDError)(nil); errors.As(err, &e) && e.Status == http.StatusNotFound {
		return nil
	}
	return err
}

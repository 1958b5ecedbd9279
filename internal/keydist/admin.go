package keydist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/mdfast/mdfast/internal/httpserve"
)

// maxAdminBody bounds an admin API request body.
const maxAdminBody = 64 << 10

// AdminConfig configures the admin API handler.
type AdminConfig struct {
	// Registry is the registry the API edits. Required.
	Registry *Registry
	// KD, if not nil, serves /v1/associations and /v1/kd.
	KD *KeyDistributor
	// Token is the bearer token every request must carry. Required (an
	// empty token would mean no authentication: refused).
	Token string
	// Logger receives one line per change (default slog.Default()).
	Logger *slog.Logger
	// Join, if not nil, serves GET /v1/join/sessions.
	Join *Join
	// JoinSecret, if set, serves POST /v1/conferences/{conf}/join-tokens.
	JoinSecret []byte
}

// NewAdminHandler returns the admin API (JSON over HTTP). Every request needs
// "Authorization: Bearer <token>"; the comparison is constant-time.
//
//	GET    /v1/conferences                          list conferences and endpoints
//	GET    /v1/conferences/{conf}                   one conference
//	PUT    /v1/conferences/{conf}                   {"allow_legacy": bool}: create or update
//	DELETE /v1/conferences/{conf}                   remove (ends its associations)
//	POST   /v1/conferences/{conf}/endpoints         {"tls_id","fingerprint"[,"kd_tls_id"]} -> 201 endpoint with kd_tls_id
//	DELETE /v1/conferences/{conf}/endpoints/{tls_id}             remove by tls-id
//	DELETE /v1/conferences/{conf}/endpoints?tls_id=..&fingerprint=..  remove by either or both
//	GET    /v1/associations                         live associations
//	GET    /v1/kd                                   the KD certificate fingerprint
//	POST   /v1/conferences/{conf}/join-tokens       {"ttl": "1h"} -> 201 {"token","expires"} (join endpoint on)
//	GET    /v1/join/sessions                        live join sessions (join endpoint on)
//
// Removing an endpoint ends its live association: fatal alert or
// close_notify to the endpoint, EndpointDisconnect to the MD.
func NewAdminHandler(cfg AdminConfig) (http.Handler, error) {
	if cfg.Registry == nil {
		return nil, errors.New("keydist: AdminConfig.Registry is required")
	}
	if cfg.Token == "" {
		return nil, errors.New("keydist: AdminConfig.Token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &admin{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/conferences", a.listConferences)
	mux.HandleFunc("GET /v1/conferences/{conf}", a.getConference)
	mux.HandleFunc("PUT /v1/conferences/{conf}", a.putConference)
	mux.HandleFunc("DELETE /v1/conferences/{conf}", a.deleteConference)
	mux.HandleFunc("POST /v1/conferences/{conf}/endpoints", a.addEndpoint)
	mux.HandleFunc("DELETE /v1/conferences/{conf}/endpoints", a.removeEndpoints)
	mux.HandleFunc("DELETE /v1/conferences/{conf}/endpoints/{tlsid}", a.removeEndpoints)
	mux.HandleFunc("GET /v1/associations", a.associations)
	mux.HandleFunc("GET /v1/kd", a.kdInfo)
	if len(cfg.JoinSecret) > 0 {
		mux.HandleFunc("POST /v1/conferences/{conf}/join-tokens", a.joinToken)
	}
	if cfg.Join != nil {
		mux.HandleFunc("GET /v1/join/sessions", func(w http.ResponseWriter, _ *http.Request) {
			httpserve.WriteJSON(w, http.StatusOK, map[string]any{"sessions": cfg.Join.Sessions()})
		})
	}
	return httpserve.BearerAuth(cfg.Token, "keydist", mux), nil
}

type admin struct {
	cfg AdminConfig
}

type errorBody struct {
	Error string `json:"error"`
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrDuplicate):
		code = http.StatusConflict
	case errors.Is(err, ErrStoreUnavailable):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, ErrInvalidTLSID), errors.Is(err, ErrInvalidFingerprint),
		errors.Is(err, ErrInvalidConference), errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	}
	httpserve.WriteJSON(w, code, errorBody{Error: err.Error()})
}

var errBadRequest = errors.New("bad request")

// decodeBody decodes exactly one JSON object with known fields only.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: decode JSON body: %w", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", errBadRequest)
	}
	return nil
}

func (a *admin) listConferences(w http.ResponseWriter, _ *http.Request) {
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"conferences": a.cfg.Registry.Conferences()})
}

func (a *admin) getConference(w http.ResponseWriter, r *http.Request) {
	c, ok := a.cfg.Registry.Conference(r.PathValue("conf"))
	if !ok {
		writeErr(w, fmt.Errorf("conference %q: %w", r.PathValue("conf"), ErrNotFound))
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, c)
}

// conferenceRequest is the body of PUT /v1/conferences/{conf}.
type conferenceRequest struct {
	AllowLegacy *bool `json:"allow_legacy"`
}

func (a *admin) putConference(w http.ResponseWriter, r *http.Request) {
	var req conferenceRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if req.AllowLegacy == nil {
		writeErr(w, fmt.Errorf("%w: allow_legacy is required", errBadRequest))
		return
	}
	conf := r.PathValue("conf")
	if err := a.cfg.Registry.SetConference(conf, *req.AllowLegacy); err != nil {
		writeErr(w, err)
		return
	}
	a.cfg.Logger.Info("admin: conference set", "conference", conf, "allow_legacy", *req.AllowLegacy)
	c, _ := a.cfg.Registry.Conference(conf)
	httpserve.WriteJSON(w, http.StatusOK, c)
}

func (a *admin) deleteConference(w http.ResponseWriter, r *http.Request) {
	conf := r.PathValue("conf")
	if err := a.cfg.Registry.RemoveConference(conf); err != nil {
		writeErr(w, err)
		return
	}
	a.cfg.Logger.Info("admin: conference removed", "conference", conf)
	w.WriteHeader(http.StatusNoContent)
}

// endpointRequest is the body of POST /v1/conferences/{conf}/endpoints.
type endpointRequest struct {
	TLSID       string `json:"tls_id"`
	Fingerprint string `json:"fingerprint"`
	KDTLSID     string `json:"kd_tls_id"`
}

// parseEndpointRequest decodes and validates an endpoint JSON body.
func parseEndpointRequest(r io.Reader) (Endpoint, error) {
	dec := json.NewDecoder(io.LimitReader(r, maxAdminBody))
	dec.DisallowUnknownFields()
	var req endpointRequest
	if err := dec.Decode(&req); err != nil {
		return Endpoint{}, fmt.Errorf("%w: decode JSON body: %w", errBadRequest, err)
	}
	if dec.More() {
		return Endpoint{}, fmt.Errorf("%w: trailing data after the JSON body", errBadRequest)
	}
	fp, err := ParseFingerprint(req.Fingerprint)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{TLSID: req.TLSID, Fingerprint: fp, KDTLSID: req.KDTLSID}, nil
}

func (a *admin) addEndpoint(w http.ResponseWriter, r *http.Request) {
	e, err := parseEndpointRequest(r.Body)
	if err != nil {
		writeErr(w, err)
		return
	}
	conf := r.PathValue("conf")
	out, err := a.cfg.Registry.AddEndpoint(conf, e)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.cfg.Logger.Info("admin: endpoint added", "conference", conf, "tls_id", out.TLSID, "fingerprint", out.Fingerprint)
	httpserve.WriteJSON(w, http.StatusCreated, out)
}

func (a *admin) removeEndpoints(w http.ResponseWriter, r *http.Request) {
	conf := r.PathValue("conf")
	tlsID := r.PathValue("tlsid")
	if tlsID == "" {
		tlsID = r.URL.Query().Get("tls_id")
	}
	var fp *Fingerprint
	if s := r.URL.Query().Get("fingerprint"); s != "" {
		f, err := ParseFingerprint(s)
		if err != nil {
			writeErr(w, err)
			return
		}
		fp = &f
	}
	if tlsID == "" && fp == nil {
		writeErr(w, fmt.Errorf("%w: give tls_id and/or fingerprint", errBadRequest))
		return
	}
	n, err := a.cfg.Registry.RemoveEndpoint(conf, tlsID, fp)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.cfg.Logger.Info("admin: endpoints removed", "conference", conf, "tls_id", tlsID, "removed", n)
	httpserve.WriteJSON(w, http.StatusOK, map[string]int{"removed": n})
}

func (a *admin) associations(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.KD == nil {
		httpserve.WriteJSON(w, http.StatusOK, map[string]any{"associations": []AssociationInfo{}})
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"associations": a.cfg.KD.Associations()})
}

func (a *admin) kdInfo(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{"endpoints": a.cfg.Registry.NumEndpoints()}
	if a.cfg.KD != nil {
		out["fingerprint"] = "sha-256 " + a.cfg.KD.Fingerprint().String()
		out["associations"] = a.cfg.KD.NumAssociations()
	}
	httpserve.WriteJSON(w, http.StatusOK, out)
}

// maxJoinTokenTTL bounds what the admin API mints.
const maxJoinTokenTTL = 7 * 24 * time.Hour

// joinTokenRequest is the body of POST /v1/conferences/{conf}/join-tokens.
type joinTokenRequest struct {
	TTL string `json:"ttl"`
}

func (a *admin) joinToken(w http.ResponseWriter, r *http.Request) {
	var req joinTokenRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 || ttl > maxJoinTokenTTL {
		writeErr(w, fmt.Errorf("%w: ttl %q: want a duration in (0, %s]", errBadRequest, req.TTL, maxJoinTokenTTL))
		return
	}
	conf := r.PathValue("conf")
	if _, ok := a.cfg.Registry.Conference(conf); !ok {
		writeErr(w, fmt.Errorf("conference %q: %w", conf, ErrNotFound))
		return
	}
	exp := time.Now().Add(ttl).Truncate(time.Second)
	tok, err := MintJoinToken(a.cfg.JoinSecret, conf, exp)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.cfg.Logger.Info("admin: join token minted", "conference", conf, "expires", exp)
	httpserve.WriteJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires": exp})
}

package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/mdfast/mdfast/internal/httpserve"
	"github.com/mdfast/mdfast/internal/mdslow"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// MinTokenLen is the shortest bearer token accepted.
const MinTokenLen = 16

// Relay is what the API asks of the slow path (an *mdslow.Relay).
type Relay interface {
	Associations(ctx context.Context) ([]mdslow.AssociationInfo, error)
	Reassign(ctx context.Context) error
	Disconnect(ctx context.Context, id uuid.UUID) (bool, error)
	Sessions(ctx context.Context) ([]mdslow.SessionInfo, error)
	EndSession(ctx context.Context, id string) (bool, error)
}

// Config configures the API handler.
type Config struct {
	Membership *Membership // required
	Relay      Relay       // required
	// Token is the bearer token (at least MinTokenLen characters).
	Token  string
	Logger *slog.Logger
}

type api struct {
	cfg Config
	log *slog.Logger
}

// NewHandler returns the control API under /v1/:
//
//	GET    /v1/associations                 list associations
//	DELETE /v1/associations/{id}            end one (EndpointDisconnect to the KD)
//	GET    /v1/mappings                     tls-id and address mappings
//	PUT    /v1/mappings/tls-id/{tlsid}      {"conference": "name"}
//	DELETE /v1/mappings/tls-id/{tlsid}
//	PUT    /v1/mappings/addr/{addr}         {"conference": "name"}; addr is ip or ip:port
//	DELETE /v1/mappings/addr/{addr}
//	GET    /v1/ice                          the configured ufrags
//	PUT    /v1/ice/{ufrag}                  {"pwd": "..."}
//	DELETE /v1/ice/{ufrag}
//	GET    /v1/sessions                     sessions, their association, address, consent, moves
//	PUT    /v1/sessions/{id}                {"conference", "tls_id", "ice_ufrag", "ice_pwd", "remote_ufrag"}
//	DELETE /v1/sessions/{id}                remove it, end its association (EndpointDisconnect to the KD)
//
// A session is one endpoint as the signalling layer set it up (the KD's
// join endpoint): its conference, its tls-id if any, and the MD's ICE-lite
// credentials for it. A check those credentials authenticate places the
// DTLS association that starts from its address in the session's
// conference, a nominating one from a new address moves the session's
// association there, and checks from its address are its consent (see
// mdslow/session.go). A PUT on an existing session replaces it (an ICE
// restart when the credentials change; the association stays bound).
//
// Every request needs "Authorization: Bearer <token>" (compared in
// constant time). A mapping change moves established associations to
// their new conference and ends those that no mapping places any more
// (unless single-conference mode places them). Mappings can be added at
// any time; an endpoint is placed when its ClientHello is complete (one
// that no mapping placed then was refused, and a mapping added later
// admits its next ClientHello) and again when its keys arrive.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Membership == nil || cfg.Relay == nil {
		return nil, errors.New("control: Membership and Relay are required")
	}
	if len(cfg.Token) < MinTokenLen {
		return nil, fmt.Errorf("control: the bearer token must be at least %d characters", MinTokenLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &api{cfg: cfg, log: cfg.Logger.With("component", "control")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/associations", a.associations)
	mux.HandleFunc("DELETE /v1/associations/{id}", a.disconnect)
	mux.HandleFunc("GET /v1/mappings", a.mappings)
	mux.HandleFunc("PUT /v1/mappings/tls-id/{key}", a.putTLSID)
	mux.HandleFunc("DELETE /v1/mappings/tls-id/{key}", a.deleteTLSID)
	mux.HandleFunc("PUT /v1/mappings/addr/{key}", a.putAddr)
	mux.HandleFunc("DELETE /v1/mappings/addr/{key}", a.deleteAddr)
	mux.HandleFunc("GET /v1/ice", a.listICE)
	mux.HandleFunc("PUT /v1/ice/{ufrag}", a.putICE)
	mux.HandleFunc("DELETE /v1/ice/{ufrag}", a.deleteICE)
	mux.HandleFunc("GET /v1/sessions", a.listSessions)
	mux.HandleFunc("PUT /v1/sessions/{id}", a.putSession)
	mux.HandleFunc("DELETE /v1/sessions/{id}", a.deleteSession)
	return httpserve.BearerAuth(cfg.Token, "mdfast", mux), nil
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrFull):
		code = http.StatusInsufficientStorage
	case errors.Is(err, mdslow.ErrClosed):
		code = http.StatusServiceUnavailable
	}
	httpserve.WriteJSON(w, code, map[string]string{"error": err.Error()})
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %w", ErrInvalid, err)
	}
	if dec.More() {
		// One JSON value, as keydist's admin API requires too.
		return fmt.Errorf("%w: trailing data after the JSON body", ErrInvalid)
	}
	return nil
}

func ctxOf(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 5*time.Second)
}

type assocJSON struct {
	mdslow.AssociationInfo
	ConferenceName string `json:"conference_name"`
}

func (a *api) associations(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxOf(r)
	defer cancel()
	l, err := a.cfg.Relay.Associations(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]assocJSON, len(l))
	for i, x := range l {
		out[i] = assocJSON{AssociationInfo: x, ConferenceName: a.cfg.Membership.ConferenceName(x.Conference)}
	}
	httpserve.WriteJSON(w, http.StatusOK, out)
}

func (a *api) disconnect(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		writeErr(w, fmt.Errorf("%w: association id: %w", ErrInvalid, err))
		return
	}
	ctx, cancel := ctxOf(r)
	defer cancel()
	found, err := a.cfg.Relay.Disconnect(ctx, id)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !found {
		httpserve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such association"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) mappings(w http.ResponseWriter, _ *http.Request) {
	httpserve.WriteJSON(w, http.StatusOK, a.cfg.Membership.Snapshot())
}

type confReq struct {
	Conference string `json:"conference"`
}

// changed moves associations after a mapping change.
func (a *api) changed(w http.ResponseWriter, r *http.Request, code int) {
	ctx, cancel := ctxOf(r)
	defer cancel()
	if err := a.cfg.Relay.Reassign(ctx); err != nil {
		a.log.Warn("reassign associations after a mapping change", "err", err)
	}
	w.WriteHeader(code)
}

func (a *api) putTLSID(w http.ResponseWriter, r *http.Request) {
	var req confReq
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if err := a.cfg.Membership.MapTLSID(r.PathValue("key"), req.Conference); err != nil {
		writeErr(w, err)
		return
	}
	a.log.Info("tls-id mapped", "tls_id", r.PathValue("key"), "conference", req.Conference)
	a.changed(w, r, http.StatusNoContent)
}

func (a *api) deleteTLSID(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.Membership.UnmapTLSID(r.PathValue("key")) {
		httpserve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such mapping"})
		return
	}
	a.changed(w, r, http.StatusNoContent)
}

func (a *api) putAddr(w http.ResponseWriter, r *http.Request) {
	var req confReq
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if err := a.cfg.Membership.MapAddr(r.PathValue("key"), req.Conference); err != nil {
		writeErr(w, err)
		return
	}
	a.log.Info("address mapped", "addr", r.PathValue("key"), "conference", req.Conference)
	a.changed(w, r, http.StatusNoContent)
}

func (a *api) deleteAddr(w http.ResponseWriter, r *http.Request) {
	ok, err := a.cfg.Membership.UnmapAddr(r.PathValue("key"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if !ok {
		httpserve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such mapping"})
		return
	}
	a.changed(w, r, http.StatusNoContent)
}

func (a *api) listICE(w http.ResponseWriter, _ *http.Request) {
	httpserve.WriteJSON(w, http.StatusOK, map[string][]string{"ufrags": a.cfg.Membership.ICEUfrags()})
}

func (a *api) putICE(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Pwd string `json:"pwd"`
	}
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if err := a.cfg.Membership.SetICE(r.PathValue("ufrag"), req.Pwd); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) deleteICE(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.Membership.DeleteICE(r.PathValue("ufrag")) {
		httpserve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such ufrag"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sessionReq is the body of PUT /v1/sessions/{id}.
type sessionReq struct {
	Conference  string `json:"conference"`
	TLSID       string `json:"tls_id"`
	ICEUfrag    string `json:"ice_ufrag"`
	ICEPwd      string `json:"ice_pwd"`
	RemoteUfrag string `json:"remote_ufrag"`
}

// sessionJSON is one session as GET /v1/sessions lists it (never the
// password).
type sessionJSON struct {
	ID          string `json:"id"`
	Conference  string `json:"conference"`
	TLSID       string `json:"tls_id"`
	ICEUfrag    string `json:"ice_ufrag"`
	RemoteUfrag string `json:"remote_ufrag"`
	// Association is the bound association ("" for none).
	Association string `json:"association"`
	Addr        string `json:"addr"`
	Consent     bool   `json:"consent"`
	Moves       uint64 `json:"moves"`
}

func (a *api) listSessions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxOf(r)
	defer cancel()
	st, err := a.cfg.Relay.Sessions(ctx)
	if err != nil {
		writeErr(w, err)
		return
	}
	byID := make(map[string]mdslow.SessionInfo, len(st))
	for _, x := range st {
		byID[x.ID] = x
	}
	l := a.cfg.Membership.Sessions()
	out := make([]sessionJSON, len(l))
	for i, s := range l {
		j := sessionJSON{ID: s.ID, Conference: s.Conference, TLSID: s.TLSID, ICEUfrag: s.ICEUfrag, RemoteUfrag: s.RemoteUfrag}
		if x, ok := byID[s.ID]; ok && x.Association != uuid.Nil {
			j.Association, j.Addr, j.Consent, j.Moves = x.Association.String(), x.Addr.String(), x.Consent, x.Moves
		} else if ok {
			j.Moves = x.Moves
		}
		out[i] = j
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string][]sessionJSON{"sessions": out})
}

func (a *api) putSession(w http.ResponseWriter, r *http.Request) {
	var req sessionReq
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	s := Session{ID: r.PathValue("id"), Conference: req.Conference, TLSID: req.TLSID,
		ICEUfrag: req.ICEUfrag, ICEPwd: req.ICEPwd, RemoteUfrag: req.RemoteUfrag}
	created, err := a.cfg.Membership.PutSession(s)
	if err != nil {
		writeErr(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	a.log.Info("session set", "session", s.ID, "conference", s.Conference, "tls_id", s.TLSID, "ice_ufrag", s.ICEUfrag, "created", created)
	// A changed conference moves the session's association.
	ctx, cancel := ctxOf(r)
	defer cancel()
	if err := a.cfg.Relay.Reassign(ctx); err != nil {
		a.log.Warn("reassign associations after a session change", "err", err)
	}
	httpserve.WriteJSON(w, code, sessionJSON{ID: s.ID, Conference: s.Conference, TLSID: s.TLSID, ICEUfrag: s.ICEUfrag, RemoteUfrag: s.RemoteUfrag})
}

func (a *api) deleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := CheckSessionID(id); err != nil {
		writeErr(w, err)
		return
	}
	if !a.cfg.Membership.DeleteSession(id) {
		httpserve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such session"})
		return
	}
	ctx, cancel := ctxOf(r)
	defer cancel()
	ended, err := a.cfg.Relay.EndSession(ctx, id)
	if err != nil {
		writeErr(w, err)
		return
	}
	a.log.Info("session deleted", "session", id, "association_ended", ended)
	w.WriteHeader(http.StatusNoContent)
}

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
	return httpserve.BearerAuth(cfg.Token, "mdfast", mux), nil
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
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

package keydist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Established associations across replicas. A join session is taken by
// one replica (the one that answered the offer), but its endpoint's
// handshake reaches whichever replica the MD's tunnel leads to. So that
// the join endpoint can bind the session to an association held by
// another replica, every replica publishes its established associations:
//
//	kd/assoc/<replica>          "" on the lease: the replica is alive
//	kd/assoc/<replica>/<digest> {"md","id","conference","tls_id",
//	                            "fingerprint","since"} on the lease
//
// A record deleted on its own is an association that ended. Records that
// vanish together with their replica's alive key (its lease expired: the
// replica died or lost etcd) are kept as orphans: the MD still forwards
// with the keys it holds, and the join session stays bound until its app
// ends it, its conference is re-keyed (the replica that re-keys ends it at
// its MD: orphans.go), or OrphanTTL passes. Records are written by one goroutine
// that coalesces changes and retries while etcd is unreachable; a new
// lease re-publishes everything.

// OrphanTTL bounds how long an association of a vanished replica is kept.
const OrphanTTL = 24 * time.Hour

// storedAssoc is a published association.
type storedAssoc struct {
	MD          string    `json:"md"`
	ID          uuid.UUID `json:"id"`
	Conference  string    `json:"conference"`
	TLSID       string    `json:"tls_id,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Since       time.Time `json:"since"`
}

// remoteAssoc is another replica's association as this one knows it.
type remoteAssoc struct {
	replica  string
	a        storedAssoc
	orphaned time.Time // zero while its replica is alive
}

func (s *Store) assocPrefix() string { return s.key("kd/assoc/") }

func assocDigest(md string, id uuid.UUID) string {
	h := sha256.Sum256([]byte("mdfast kd assoc v1\x00" + md + "\x00" + id.String()))
	return hex.EncodeToString(h[:16])
}

// maxPublished bounds the records waiting to be written (a KD holds at
// most Config.MaxAssociations; more means etcd has been away long).
const maxPublished = 1 << 17

// Established implements AssociationPublisher: it never blocks.
func (s *Store) Established(info AssociationInfo) {
	fp, err := ParseFingerprint(info.Fingerprint)
	if err != nil {
		return
	}
	v := mustJSON(storedAssoc{MD: info.MD, ID: info.ID, Conference: info.Conference, TLSID: info.TLSID,
		Fingerprint: fp.String(), Since: info.Since.UTC()})
	s.publish(s.assocPrefix()+s.replica+"/"+assocDigest(info.MD, info.ID), &v)
}

// Ended implements AssociationPublisher: it never blocks.
func (s *Store) Ended(md string, id uuid.UUID) {
	s.publish(s.assocPrefix()+s.replica+"/"+assocDigest(md, id), nil)
}

func (s *Store) publish(key string, v *string) {
	s.pubMu.Lock()
	if v != nil {
		if len(s.pubWant) >= maxPublished {
			s.pubMu.Unlock()
			s.errs.WithLabelValues(storeOpAssoc).Inc()
			return
		}
		s.pubWant[key] = *v
	} else {
		delete(s.pubWant, key)
	}
	s.pubDirty[key] = struct{}{}
	s.pubMu.Unlock()
	select {
	case s.pubKick <- struct{}{}:
	default:
	}
}

// republish marks every record (and the alive key) to be written again
// on the new lease.
func (s *Store) republish() {
	s.pubMu.Lock()
	for k := range s.pubWant {
		s.pubDirty[k] = struct{}{}
	}
	s.pubDirty[s.assocPrefix()+s.replica] = struct{}{}
	s.pubMu.Unlock()
	select {
	case s.pubKick <- struct{}{}:
	default:
	}
}

// publishLoop writes the dirty records, retrying every second.
func (s *Store) publishLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.pubKick:
		case <-t.C:
		}
		s.flushPublished(s.ctx)
	}
}

// flushPublished writes what changed; a failed write stays dirty.
func (s *Store) flushPublished(ctx context.Context) {
	lease, err := s.currentLease()
	if err != nil {
		return
	}
	s.pubMu.Lock()
	keys := make([]string, 0, len(s.pubDirty))
	for k := range s.pubDirty {
		keys = append(keys, k)
	}
	s.pubMu.Unlock()
	slices.Sort(keys) // the alive key first: it sorts before its records
	for _, k := range keys {
		s.pubMu.Lock()
		v, want := s.pubWant[k]
		if k == s.assocPrefix()+s.replica {
			want = true
		}
		s.pubMu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		if want {
			_, err = s.cl.Put(rctx, k, v, clientv3.WithLease(lease))
		} else {
			_, err = s.cl.Delete(rctx, k)
		}
		cancel()
		if err != nil {
			_ = s.fail(storeOpAssoc, err)
			return
		}
		s.pubMu.Lock()
		v2, want2 := s.pubWant[k]
		if want2 == want && v2 == v || k == s.assocPrefix()+s.replica {
			delete(s.pubDirty, k)
		}
		s.pubMu.Unlock()
	}
}

// RemoteAssociations returns the established associations other replicas
// published (orphans of vanished replicas included), for the join
// endpoint (JoinConfig.Associations, with the local ones).
func (s *Store) RemoteAssociations() []AssociationInfo {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	out := make([]AssociationInfo, 0, len(s.remote))
	now := time.Now()
	for k, r := range s.remote {
		if !r.orphaned.IsZero() && now.Sub(r.orphaned) > OrphanTTL {
			delete(s.remote, k)
			continue
		}
		out = append(out, AssociationInfo{MD: r.a.MD, ID: r.a.ID, State: "established", Conference: r.a.Conference,
			TLSID: r.a.TLSID, Fingerprint: r.a.Fingerprint, Since: r.a.Since})
	}
	return out
}

// assocMirrorLoop follows the other replicas' records.
func (s *Store) assocMirrorLoop() {
	prefix := s.assocPrefix()
	for s.ctx.Err() == nil {
		ctx, cancel := s.reqCtx()
		g, err := s.cl.Get(ctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			_ = s.fail(storeOpWatch, err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.remMu.Lock()
		old := s.remote
		s.remote = map[string]*remoteAssoc{}
		s.alive = map[string]bool{}
		for _, kv := range g.Kvs {
			s.applyAssocLocked(strings.TrimPrefix(string(kv.Key), prefix), kv.Value, false)
		}
		// What vanished while the watch was down: orphans if their replica
		// is gone, else ended.
		for k, r := range old {
			if _, ok := s.remote[k]; !ok && !s.alive[r.replica] {
				if r.orphaned.IsZero() {
					r.orphaned = time.Now()
				}
				s.remote[k] = r
			}
		}
		s.remMu.Unlock()
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		for resp := range s.cl.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(g.Header.Revision+1)) {
			if err := resp.Err(); err != nil {
				_ = s.fail(storeOpWatch, err)
				break
			}
			s.remMu.Lock()
			// Alive keys first: a record deleted in the same revision as its
			// replica's alive key is an orphan, not an end.
			for _, ev := range resp.Events {
				k := strings.TrimPrefix(string(ev.Kv.Key), prefix)
				if !strings.Contains(k, "/") {
					s.applyAssocLocked(k, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				}
			}
			for _, ev := range resp.Events {
				k := strings.TrimPrefix(string(ev.Kv.Key), prefix)
				if strings.Contains(k, "/") {
					s.applyAssocLocked(k, ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				}
			}
			s.remMu.Unlock()
		}
		wcancel()
	}
}

// applyAssocLocked applies one key below kd/assoc/. Called with remMu.
func (s *Store) applyAssocLocked(k string, v []byte, deleted bool) {
	replica, digest, isRecord := strings.Cut(k, "/")
	if replica == s.replica || replica == "" {
		return
	}
	if !isRecord {
		if deleted {
			delete(s.alive, replica)
			return
		}
		s.alive[replica] = true
		// Back on a new lease: it re-publishes what it still holds right
		// after its alive key; the orphans it does not go soon.
		soon := time.Now().Add(-OrphanTTL + 2*s.timeout + 2*time.Second)
		for _, r := range s.remote {
			if r.replica == replica && !r.orphaned.IsZero() && r.orphaned.After(soon) {
				r.orphaned = soon
			}
		}
		return
	}
	if deleted {
		r := s.remote[k]
		if r == nil {
			return
		}
		if s.alive[replica] {
			delete(s.remote, k)
		} else if r.orphaned.IsZero() {
			r.orphaned = time.Now()
		}
		return
	}
	a, err := parseStoredAssoc(digest, v)
	if err != nil {
		_ = s.fail(storeOpAssoc, err)
		return
	}
	s.remote[k] = &remoteAssoc{replica: replica, a: a}
}

// parseStoredAssoc parses a published association and checks it against
// its key's digest.
func parseStoredAssoc(digest string, b []byte) (storedAssoc, error) {
	var a storedAssoc
	if err := decodeStrict(b, &a); err != nil {
		return a, fmt.Errorf("published association %s: %w", digest, err)
	}
	if assocDigest(a.MD, a.ID) != digest {
		return a, fmt.Errorf("published association %s does not match its key: %w", digest, ErrStoreValue)
	}
	if ValidateConferenceID(a.Conference) != nil || (a.TLSID != "" && ValidateTLSID(a.TLSID) != nil) || len(a.MD) > 1024 {
		return a, fmt.Errorf("published association %s: bad conference, tls-id or md: %w", digest, ErrStoreValue)
	}
	fp, err := ParseFingerprint(a.Fingerprint)
	if err != nil || fp.String() != a.Fingerprint {
		return a, fmt.Errorf("published association %s: fingerprint: %w", digest, ErrStoreValue)
	}
	return a, nil
}

// AssociationPublisher is told of the KeyDistributor's established
// associations and their end (Store implements it for KD replicas). Its
// methods must not block.
type AssociationPublisher interface {
	Established(info AssociationInfo)
	Ended(md string, id uuid.UUID)
}

var _ AssociationPublisher = (*Store)(nil)

// orphan is an association of a vanished replica, as the KeyDistributor
// needs it to end it at its MD.
type orphan struct {
	key        string // below kd/assoc/: <replica>/<digest>
	replica    string
	md         string
	id         uuid.UUID
	conference string
	tlsID      string
}

// orphansOf returns the orphaned associations of conference: records of
// replicas that vanished (their lease expired) while keying them.
func (s *Store) orphansOf(conference string) []orphan {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	var out []orphan
	for k, r := range s.remote {
		if r.orphaned.IsZero() || r.a.Conference != conference {
			continue
		}
		out = append(out, orphan{key: k, replica: r.replica, md: r.a.MD, id: r.a.ID, conference: r.a.Conference, tlsID: r.a.TLSID})
	}
	return out
}

// isOrphan reports whether o is still kept as an orphan: its record is
// there, of the same association, and its replica has not re-published
// it (a replica back on a new lease holds it again).
func (s *Store) isOrphan(o orphan) bool {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	r := s.remote[o.key]
	return r != nil && !r.orphaned.IsZero() && r.a.MD == o.md && r.a.ID == o.id
}

// orphanByID returns the orphan association id relayed by md, if there is
// one (an EndpointDisconnect for it reached this replica: its endpoint
// left while the replica that keyed it is gone). O(records).
func (s *Store) orphanByID(md string, id uuid.UUID) (orphan, bool) {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	for k, r := range s.remote {
		if !r.orphaned.IsZero() && r.a.ID == id && r.a.MD == md {
			return orphan{key: k, replica: r.replica, md: r.a.MD, id: r.a.ID, conference: r.a.Conference, tlsID: r.a.TLSID}, true
		}
	}
	return orphan{}, false
}

// forgetOrphan drops an orphan the KeyDistributor ended at its MD: from
// the mirror, and from etcd if its record is still there (it is not once
// the vanished replica's lease expired; the delete is then a no-op). The
// delete goes through the publishing goroutine, retried while etcd is
// unreachable.
func (s *Store) forgetOrphan(o orphan) {
	s.remMu.Lock()
	r := s.remote[o.key]
	if r == nil || r.orphaned.IsZero() {
		s.remMu.Unlock()
		return
	}
	delete(s.remote, o.key)
	s.remMu.Unlock()
	s.publish(s.assocPrefix()+o.key, nil)
}

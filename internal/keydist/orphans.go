package keydist

import (
	"log/slog"
	"time"

	"github.com/google/uuid"
)

// Orphans of a vanished replica. A KD replica that dies takes its
// associations' DTLS state with it: their endpoints keep media flowing
// with the keys their MD holds, but nobody can send them an EKTKey any
// more. The other replicas keep the dead replica's published records as
// orphans (assocstore.go). When the conference is re-keyed (a member
// left, the set's TTL ran low) the orphans cannot follow: they would lose
// the others' media after the grace period, and keep a key whoever left
// knows. So the replica that made the re-key (the one whose
// compare-and-swap replaced the set, exactly one per re-key) ends every
// orphan of the conference at its MD with EndpointDisconnect, over its
// own tunnel to that MD; the endpoint then joins again. Orphans are not
// ended when their replica dies: that would cut media for every member
// the dead replica keyed. When an orphan's endpoint leaves (its MD ends
// the association and sends EndpointDisconnect, on any live tunnel since
// the one it was pinned to is gone), the replica that receives it forgets
// the orphan and re-keys the conference as for any departure
// (orphanLeft).

// Bounds of the retries of an orphan whose MD has no tunnel to this KD.
const (
	orphanRetries       = 30
	orphanRetryInterval = time.Second
)

// orphanJob is an orphan to end at its MD.
type orphanJob struct {
	o     orphan
	tries int
	next  time.Time // earliest next attempt
}

// orphansRekeyed is told by the EKT source that this replica re-keyed
// conference: its orphans are queued and ended at once where a tunnel to
// their MD is up, else retried by the janitor. It may run with the
// conference's lock held (it only takes k.mu and the store's leaf locks).
func (k *KeyDistributor) orphansRekeyed(conference string) {
	src, ok := k.cfg.EKT.(orphanSource)
	if !ok {
		return
	}
	list := src.orphansOf(conference)
	if len(list) == 0 {
		return
	}
	k.mu.Lock()
	for _, o := range list {
		key := assocKey{peer: o.md, id: o.id}
		if k.orphans[key] == nil {
			k.orphans[key] = &orphanJob{o: o}
		}
	}
	k.mu.Unlock()
	k.endOrphans(time.Now(), false)
}

// endOrphans sends EndpointDisconnect for the queued orphans whose MD has
// a live tunnel. On the janitor's tick (tick), a failed orphan counts one
// attempt (at most one per orphanRetryInterval); after orphanRetries it is
// given up (counted, logged; its record stays and the conference's next
// re-key tries again).
func (k *KeyDistributor) endOrphans(now time.Time, tick bool) {
	src, ok := k.cfg.EKT.(orphanSource)
	if !ok {
		return
	}
	var done, failed []orphan
	k.mu.Lock()
	if len(k.orphans) == 0 {
		k.mu.Unlock()
		return
	}
	for key, j := range k.orphans {
		if tick && now.Before(j.next) {
			continue
		}
		if !src.isOrphan(j.o) {
			// Its replica came back and holds it again while the job
			// waited for a tunnel: a live association, not ours to end.
			delete(k.orphans, key)
			continue
		}
		var t tunnelConn
		if p := k.peers[key.peer]; p != nil {
			// The record does not name the MD instance: the newest tunnel
			// of the MD identity (an instance that does not know the id
			// ignores it).
			t = p.tunnelFor(uuid.Nil)
		}
		if t != nil && t.SendEndpointDisconnect(key.id) == nil {
			delete(k.orphans, key)
			done = append(done, j.o)
			continue
		}
		if !tick {
			continue
		}
		j.tries++
		j.next = now.Add(k.orphanRetryInterval)
		k.m.orphanDisconnectRetries.Inc()
		if j.tries >= k.orphanRetries {
			delete(k.orphans, key)
			failed = append(failed, j.o)
		}
	}
	k.mu.Unlock()
	for _, o := range done {
		src.forgetOrphan(o)
		k.m.disconnectsOut.Inc()
		k.m.orphansDisconnected.Inc()
		k.rl.Log(slog.LevelInfo, "orphan_disconnected", "association of a vanished replica ended at its MD: its conference was re-keyed",
			"md", o.md, "association", o.id, "conference", o.conference, "tls_id", o.tlsID, "replica", o.replica)
	}
	for _, o := range failed {
		k.m.orphanDisconnectsFailed.Inc()
		k.rl.Log(slog.LevelWarn, "orphan_disconnect_failed", "association of a vanished replica not ended: no tunnel to its MD",
			"md", o.md, "association", o.id, "conference", o.conference, "tls_id", o.tlsID, "replica", o.replica, "attempts", k.orphanRetries)
	}
}

// numOrphansPending returns how many orphans wait for a tunnel to their MD.
func (k *KeyDistributor) numOrphansPending() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.orphans)
}

// orphanLeft handles an EndpointDisconnect from md for association id
// that no replica holds: if it is an orphan, its endpoint has left while
// the replica that keyed it is gone, and it knew the conference's key. The
// orphan is forgotten and the conference re-keyed as for any departure
// (which also ends the conference's other orphans: they cannot follow).
// Only a replica with members of the conference can send them the new set;
// one without logs that it could not re-key (the MD sends the disconnect
// on any of its live tunnels). It reports whether id was an orphan.
func (k *KeyDistributor) orphanLeft(md string, id uuid.UUID) bool {
	src, ok := k.cfg.EKT.(orphanSource)
	if !ok {
		return false
	}
	o, ok := src.orphanByID(md, id)
	if !ok {
		return false
	}
	src.forgetOrphan(o)
	k.m.orphansLeft.Inc()
	k.mu.Lock()
	conf := k.members[o.conference]
	k.mu.Unlock()
	if conf == nil {
		k.rl.Log(slog.LevelWarn, "orphan_left_no_members", "an orphaned member left a conference this replica has no members of: not re-keyed here",
			"md", md, "association", id, "conference", o.conference)
		return true
	}
	conf.mu.Lock()
	var stay []*association
	if len(conf.members) > 0 {
		stay = k.rekeyLocked(o.conference, conf)
	}
	conf.mu.Unlock()
	for _, a := range stay {
		a.flush()
	}
	k.rl.Log(slog.LevelInfo, "orphan_left", "an orphaned member left: conference re-keyed", "md", md, "association", id, "conference", o.conference)
	return true
}

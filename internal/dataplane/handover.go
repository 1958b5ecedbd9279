package dataplane

// Handing a sender's receive state from one worker to another.
//
// A sender's receive state is its srtpfast.Opener: the ROC and the replay
// window of each SSRC it sends. Exactly one worker holds it, the one whose
// key-table Reader owns the sender's key generation (keytable.Reader.Own).
// When the sender's flow moves to another queue (an RSS change, a new
// indirection table, an address change through keytable.Table.SetAddr, or
// on veth a new TX queue at the sender), its packets reach a worker that
// does not own it. That worker drops them (DropMisrouted) and asks the
// owner for the state:
//
//  1. The new worker N posts a request (sender ID, generation, N) in the
//     owner O's mailbox and wakes O's port (Port.Wake). It asks at most
//     once per handoverRetry per sender, however many packets arrive, so a
//     misrouted flood costs a map read per packet, not a request.
//  2. O serves its mailbox between batches (serve, once per loop: one
//     atomic load when empty), also when idle: the Wake ends its Receive
//     (for AF_XDP an eventfd polled beside the socket). If O opened a
//     packet of the sender less than handoverQuiet ago, the flow still
//     reaches O: it keeps the state and defers the request to the moment
//     the sender will have been quiet that long, and its Receive waits no
//     later than that (Port.WaitUntil), so an idle O hands over
//     handoverQuiet after the sender's last packet, not a poll interval
//     later. A deferred request lapses once N has not asked for
//     handoverQuiet plus handoverRetry (N asks again every handoverRetry
//     while the sender's packets reach it), e.g. when the flow went back
//     to O; a new request refreshes it. A
//     flow split for a moment by the move settles, and packets spoofed
//     with the sender's address that land on another queue (a request is
//     made before anything is authenticated) cannot take the state from a
//     worker the sender's real packets reach at least every
//     handoverQuiet. If the sender is silent longer (e.g. audio DTX), a
//     spoofer can move the state; the real packets then fetch it back the
//     same way, dropped meanwhile (about handoverRetry plus handoverQuiet
//     plus one poll), and nothing is opened twice or with a reset window.
//  3. Otherwise O deletes the Opener from its map (it can no longer reach
//     it: the next packet of the sender on O is misrouted there), then
//     moves ownership of the generation from O to "in transit to N"
//     (keytable.Reader.HandOver, one compare-and-swap), then puts the
//     Opener in N's mailbox under the hub's mutex and wakes N.
//  4. N takes it from its mailbox between batches, puts it in its map and
//     moves ownership from "in transit to N" to N (keytable.Reader.Accept).
//     Its next packet of the sender is opened with the Opener O used.
//
// Why a packet can never be opened by two Openers, nor the window reset:
// an Opener is used only by the worker whose map holds it, and only inside
// a batch; O removes it from its map outside any batch, before publishing
// it, and N inserts it outside any batch, after receiving it through the
// mutex, so there is no instant at which two workers hold it, and the
// mutex orders O's last write to the replay windows before N's first read
// (Go memory model: Unlock happens before the next Lock). A worker builds a
// fresh Opener only when Own hands it a generation nobody owns (a new
// association, new keys, or one released by a worker that held no Opener
// for it); while a generation is in transit Own refuses it
// on every worker, N included, so neither O (which would see the sender as
// misrouted and ask for it back) nor any third worker can build a second
// Opener from the same keys in the gap. The window thus survives: a packet
// O accepted before the hand-over is a replay for N. If the keys are
// replaced meanwhile (a new generation), Accept fails and N drops the stale
// Opener: the new keys start a new window anyway.
//
// A worker that stops (its port failed, or the data plane closes) parks
// every Opener it holds: ownership goes to "in transit to nobody"
// (HandOver to reader 0) and the Opener to the hub. The first worker that
// sees one of those senders takes it from there (counted as a hand-over);
// requests and hand-overs addressed to a stopped worker are parked the same
// way. The state is therefore never dropped while its keys live, and the
// stop is logged with the number of states parked. What is lost is the
// stopped worker's queue: until RSS moves its flows elsewhere, nothing
// receives them.
//
// An Opener dropped as idle (WorkerConfig.OpenerIdle, longer than the key
// table's idle expiry) releases its ownership, so no worker, running or
// stopped, owns a generation it holds no state for (except one with no
// receive keys, which needs none). A sender whose owner is not one of this
// data plane's workers (another reader of the same key table) is only
// counted (DropMisrouted).

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// handoverRetry is how often a worker asks again for a sender whose
	// packets keep reaching it while another worker holds its state.
	handoverRetry = 10 * time.Millisecond
	// handoverQuiet is how long the owner must have opened nothing of a
	// sender before it hands the sender's state over.
	handoverQuiet = 20 * time.Millisecond
	// mailboxRequests bounds the requests waiting in one worker's mailbox;
	// more are dropped (their senders ask again after handoverRetry).
	mailboxRequests = 256
)

// hub connects the workers of one Dataplane for hand-overs: one mailbox
// per worker, the workers by reader ID, and the Openers parked by stopped
// workers. Everything but a mailbox's pending flag is under mu; it is
// touched only on the slow path of a hand-over.
type hub struct {
	mu       sync.Mutex
	byReader map[int]*Worker
	parked   map[uint64]*openerEntry
}

func newHub() *hub {
	return &hub{byReader: make(map[int]*Worker), parked: make(map[uint64]*openerEntry)}
}

// mailbox is one worker's inbox of hand-over requests and gifts.
type mailbox struct {
	// pending is set when reqs or gifts is not empty: the worker reads it
	// once per loop.
	pending atomic.Bool
	// stopped is set (under hub.mu) when the worker has parked its state.
	stopped bool
	reqs    []handoverRequest
	gifts   []gift
}

// handoverRequest asks the owner to hand the state of peer to from.
type handoverRequest struct {
	peer *Peer
	from *Worker
}

// deferredRequest is a request its owner could not answer yet: it opened
// a packet of the sender less than handoverQuiet ago. It is answered again
// at due, unless asked (when it was last made) is too old by then.
type deferredRequest struct {
	handoverRequest
	asked, due int64
}

// gift is a receive state handed over: the Opener and the Peer it was for.
type gift struct {
	peer *Peer
	e    *openerEntry
}

// join adds w to h; before w runs.
func (h *hub) join(w *Worker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.hub = h
	w.rid = w.table.ID()
	w.box.reqs = make([]handoverRequest, 0, mailboxRequests)
	w.deferred = make([]deferredRequest, 0, mailboxRequests)
	w.deferSpare = make([]deferredRequest, 0, mailboxRequests)
	h.byReader[w.rid] = w
}

// misrouted handles a packet of sender, whose state another reader holds:
// at most once per handoverRetry it asks the owner for it, or takes it
// from the parked states. Called inside a batch.
func (w *Worker) misrouted(sender *Peer, now int64) {
	if w.hub == nil {
		return
	}
	if last, ok := w.asked[sender.ID]; ok && now-last < int64(w.retry) {
		return
	}
	if len(w.asked) >= 4096 {
		clear(w.asked) // a bound; forgetting only lets a sender ask sooner
	}
	w.asked[sender.ID] = now
	owner, transit, stale := w.table.Owner(sender)
	switch {
	case stale:
		return // a packet under replaced keys: Route gave an old version
	case transit && owner == w.rid:
		return // on its way here
	case transit && owner == 0:
		w.adopt(sender)
		return
	case transit || owner == 0:
		return // in transit elsewhere, or free: Own takes it next time
	}
	h := w.hub
	h.mu.Lock()
	o := h.byReader[owner]
	if o == nil || o == w {
		h.mu.Unlock()
		return
	}
	if o.box.stopped {
		// Its state was parked when it stopped.
		h.mu.Unlock()
		w.adopt(sender)
		return
	}
	sent := len(o.box.reqs) < cap(o.box.reqs)
	if sent {
		o.box.reqs = append(o.box.reqs, handoverRequest{peer: sender, from: w})
		o.box.pending.Store(true)
	}
	h.mu.Unlock()
	if !sent {
		w.counts[HandoverMailboxFull]++
		return
	}
	w.counts[HandoverRequests]++
	o.port.Wake()
}

// adopt takes the parked state of sender, if a stopped worker left it.
func (w *Worker) adopt(sender *Peer) {
	h := w.hub
	h.mu.Lock()
	e := h.parked[sender.ID]
	if e != nil && e.gen == sender.Gen {
		delete(h.parked, sender.ID)
	} else {
		e = nil
	}
	h.mu.Unlock()
	if e != nil {
		w.receive(gift{peer: sender, e: e})
	}
}

// receive installs a state handed to w and takes ownership of it.
func (w *Worker) receive(g gift) {
	if !w.table.Accept(g.peer) {
		return // the keys were replaced meanwhile: the Opener is stale
	}
	g.e.peer = g.peer
	w.openers[g.peer.ID] = g.e
	w.forget(g.peer.ID)
	delete(w.asked, g.peer.ID)
	w.counts[Handovers]++
}

// serve answers w's mailbox: gifts are installed, requests answered, and
// deferred requests that are due answered again. It runs between batches,
// never inside one; with nothing pending it costs an atomic load and a
// comparison.
func (w *Worker) serve(now int64) {
	if w.hub == nil {
		return
	}
	due := w.deferDue != 0 && now >= w.deferDue
	if !due && !w.box.pending.Load() {
		return
	}
	var reqs []handoverRequest
	if w.box.pending.Load() {
		h := w.hub
		h.mu.Lock()
		w.box.pending.Store(false)
		gifts := w.box.gifts
		w.box.gifts = w.giftScratch[:0]
		w.giftScratch = gifts[:0]
		reqs = append(w.reqScratch[:0], w.box.reqs...)
		w.box.reqs = w.box.reqs[:0]
		h.mu.Unlock()
		w.reqScratch = reqs[:0]
		for _, g := range gifts {
			w.receive(g)
		}
		clear(gifts)
	}
	if due {
		// The older requests first: a new one for the same sender then
		// refreshes what they deferred again.
		pend := w.deferred
		w.deferred = w.deferSpare[:0]
		for i := range pend {
			switch d := &pend[i]; {
			case d.due > now:
				w.deferred = append(w.deferred, *d)
			case now-d.asked <= int64(w.quiet+w.retry):
				w.answer(&d.handoverRequest, d.asked, now)
			} // else lapsed: the requester stopped asking
			pend[i] = deferredRequest{}
		}
		w.deferSpare = pend[:0]
	}
	for i := range reqs {
		w.answer(&reqs[i], now, now)
		reqs[i] = handoverRequest{}
	}
	w.deferDue = 0
	for i := range w.deferred {
		if d := w.deferred[i].due; w.deferDue == 0 || d < w.deferDue {
			w.deferDue = d
		}
	}
	if w.deferDue != 0 {
		w.port.WaitUntil(w.deferDue)
		// A Wake that came since the mailbox was read may have been
		// overwritten by WaitUntil (the socket port's read deadline):
		// make sure the work it announced is not left for the deadline.
		if w.box.pending.Load() {
			w.port.Wake()
		}
	}
}

// answer hands the state r asks for to the requesting worker, if w holds
// it and has not opened a packet of the sender for handoverQuiet; if the
// sender is not quiet yet, it defers r (asked when it was made).
func (w *Worker) answer(r *handoverRequest, asked, now int64) {
	id := r.peer.ID
	e := w.openers[id]
	if e == nil || e.gen != r.peer.Gen {
		// w holds no state for this generation: if it owns it anyway
		// (it claimed it and never built an Opener, or dropped an idle
		// one), nothing is lost by letting the requester start afresh.
		w.table.Release(r.peer)
		return
	}
	if now-e.opened < int64(w.quiet) {
		w.deferRequest(r, asked, e.opened+int64(w.quiet), now)
		return // the flow still reaches w
	}
	w.undefer(id)
	// Step 3 of the ordering: out of w's map first, then ownership, then
	// the Opener to the new owner.
	delete(w.openers, id)
	w.forget(id)
	h := w.hub
	h.mu.Lock()
	to := r.from
	if to.box.stopped {
		if w.table.HandOver(e.peer, 0) {
			h.parked[id] = e
		}
		h.mu.Unlock()
		return
	}
	if !w.table.HandOver(e.peer, to.rid) {
		h.mu.Unlock()
		return // w no longer owns this generation: the state is stale
	}
	to.box.gifts = append(to.box.gifts, gift{peer: r.peer, e: e})
	to.box.pending.Store(true)
	h.mu.Unlock()
	to.port.Wake()
}

// deferRequest keeps r to be answered again at due, replacing an earlier
// request for the same sender, unless the requester has not asked for
// quiet plus retry (it stopped seeing the sender's packets) or too many
// are deferred (counted; the requester asks again).
func (w *Worker) deferRequest(r *handoverRequest, asked, due, now int64) {
	if now-asked > int64(w.quiet+w.retry) {
		return
	}
	for i := range w.deferred {
		if d := &w.deferred[i]; d.peer.ID == r.peer.ID {
			d.handoverRequest = *r
			d.asked = max(d.asked, asked)
			d.due = due
			return
		}
	}
	if len(w.deferred) == cap(w.deferred) {
		w.counts[HandoverMailboxFull]++
		return
	}
	w.deferred = append(w.deferred, deferredRequest{handoverRequest: *r, asked: asked, due: due})
	w.counts[HandoversDeferred]++
}

// undefer forgets the deferred request for sender id, if any: its state
// is being handed over.
func (w *Worker) undefer(id uint64) {
	for i := range w.deferred {
		if w.deferred[i].peer.ID == id {
			last := len(w.deferred) - 1
			w.deferred[i] = w.deferred[last]
			w.deferred[last] = deferredRequest{}
			w.deferred = w.deferred[:last]
			return
		}
	}
}

// park leaves every state w holds to the other workers; w has stopped
// (its Run is returning) and never runs a batch again. closing says the
// whole data plane is stopping (nothing to log then).
func (w *Worker) park(closing bool) {
	if w.hub == nil {
		return
	}
	h := w.hub
	h.mu.Lock()
	w.box.stopped = true
	// Gifts that reached w after its last loop: take them, then park them
	// with the rest.
	for _, g := range w.box.gifts {
		if w.table.Accept(g.peer) {
			g.e.peer = g.peer
			w.openers[g.peer.ID] = g.e
		}
	}
	w.box.gifts, w.box.reqs = nil, nil
	clear(w.deferred)
	w.deferred, w.deferDue = w.deferred[:0], 0
	n := 0
	for id, e := range w.openers {
		if w.table.HandOver(e.peer, 0) {
			h.parked[id] = e
			n++
		}
		delete(w.openers, id)
	}
	w.recent = [recentOpeners]recentOpener{}
	h.mu.Unlock()
	w.counts[HandoversParked] += uint64(n)
	w.publish()
	if n > 0 && !closing {
		w.cfg.Logger.Warn("dataplane: worker stopped; its senders' receive state is parked for the other workers",
			"worker", w.id, "senders", n)
	}
}

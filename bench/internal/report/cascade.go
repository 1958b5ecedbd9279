package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// CascadePrefix starts the name of every cascade group (members split over
// several MDs joined by links, issue 14): "cascade2md-fanout1to4-160B".
// Their steps are summarized like every other step, reported per MD in
// their own table (Run.Cascade), and not judged against the goals, which
// are a single forwarder's.
const CascadePrefix = "cascade"

// IsCascade says whether group is a cascade group.
func IsCascade(group string) bool { return strings.HasPrefix(group, CascadePrefix) }

// MD is what one MD of a cascade step did (Scenario.MDs).
type MD struct {
	// Index is the MD's index in the key file (md00, md01, ...); Core
	// the CPU it was pinned to (-1: none).
	Index int `json:"md"`
	Core  int `json:"core"`
	// Mode is the data plane mode it reported.
	Mode string `json:"mode,omitempty"`
	// Members are the endpoints attached to it, Senders how many of them
	// send.
	Members int `json:"members"`
	Senders int `json:"senders"`
	// CPU is its process's CPU time over the measured phase per second
	// (1.0 = one core), from /proc/<pid>/stat.
	CPU float64 `json:"md_cpu"`
	// ForwardedPPS is the datagrams it sent per second over the measured
	// phase, to its members and on its links (its data plane's
	// tx_packets at the start and the end of the phase);
	// ForwardedPerCPUSecond that over CPU.
	ForwardedPPS          float64 `json:"forwarded_pps"`
	ForwardedPerCPUSecond float64 `json:"forwarded_per_md_cpu_second"`
	// Received counts the measured packets its members received; Loss is
	// 1 - Received over what they should have received.
	Received uint64  `json:"received"`
	Loss     float64 `json:"loss"`
	// LinkTx and LinkRx are the packets it sent on its links and the ones
	// from its links that opened, Forwarded the media packets it received
	// and sent on (from members and links alike), over its whole life
	// (warm-up included; its data plane's link_tx, link_rx and
	// forwarded). SentAll is what its own senders sent over the whole
	// run, PeerSentAll what the senders on the other MDs sent.
	LinkTx      uint64 `json:"link_tx_packets"`
	LinkRx      uint64 `json:"link_rx_packets"`
	Forwarded   uint64 `json:"forwarded_packets"`
	SentAll     uint64 `json:"sent_all"`
	PeerSentAll uint64 `json:"peer_sent_all"`
	// Drops are its data plane's non-zero drop counters.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// CrossedOnce says whether the MD sent every packet of its own members it
// forwarded on each of its mds-1 links exactly once, and nothing that came
// from a link on another link: LinkTx = (Forwarded - LinkRx) × (mds - 1).
// It holds under loss too (a packet the MD never received is neither
// forwarded nor sent on a link).
func (m *MD) CrossedOnce(mds int) bool {
	return m.Forwarded >= m.LinkRx && m.LinkTx == (m.Forwarded-m.LinkRx)*uint64(mds-1)
}

// LinksLossless says whether the MD received from its links exactly what
// the senders on the other MDs sent (LinkRx = PeerSentAll): no packet lost
// on the way to or across a link, none duplicated.
func (m *MD) LinksLossless() bool { return m.LinkRx == m.PeerSentAll }

// CascadeMD is one MD of a cascade step over the rounds.
type CascadeMD struct {
	Index   int `json:"md"`
	Members int `json:"members"`
	Senders int `json:"senders"`
	// PerCPUSecond is MD.ForwardedPerCPUSecond over the rounds;
	// VsOneMD, per round, that over the one-MD group's forwarded packets
	// per forwarder CPU-second at the same step on the same path in the
	// same round.
	PerCPUSecond stats.Spread `json:"forwarded_per_md_cpu_second"`
	VsOneMD      stats.Spread `json:"vs_one_md"`
	ForwardedPPS stats.Spread `json:"forwarded_pps"`
	CPU          stats.Spread `json:"md_cpu"`
	Loss         stats.Spread `json:"loss"`
	LinkTx       stats.Spread `json:"link_tx_packets"`
	LinkRx       stats.Spread `json:"link_rx_packets"`
}

// CascadeAggregate is one step of a cascade group on one path over the
// rounds, next to the one-MD group's same step.
type CascadeAggregate struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	Step  string `json:"step"`
	Path  string `json:"path"`
	// OneMDGroup is the one-MD group it is compared with.
	OneMDGroup string `json:"one_md_group"`
	Rounds     int    `json:"rounds"`
	Errors     int    `json:"errors"`
	// MDs are the MDs' figures.
	MDs []CascadeMD `json:"mds"`
	// PerCPUSecond is the whole cascade's: the packets every endpoint
	// received per second over the MDs' summed CPU; VsOneMD that over
	// the one-MD figure of the same round.
	PerCPUSecond stats.Spread `json:"forwarded_per_cpu_second_all_mds"`
	VsOneMD      stats.Spread `json:"vs_one_md"`
	// OneMD is the one-MD group's forwarded packets per forwarder
	// CPU-second at the same step and path, in the rounds that measured
	// both.
	OneMD stats.Spread `json:"one_md_forwarded_per_md_cpu_second"`
	Loss  stats.Spread `json:"loss"`
	// CrossedOnce counts the rounds in which every MD sent each packet of
	// its members once on each link and nothing from a link on a link
	// (MD.CrossedOnce); LinksLossless those in which every MD received
	// from its links exactly what the other MDs' senders sent
	// (MD.LinksLossless; not expected at saturation, where the senders'
	// own MD drops).
	CrossedOnce   int `json:"rounds_crossed_once"`
	LinksLossless int `json:"rounds_links_lossless"`
}

// SummarizeCascade summarizes the cascade steps of scs per group, step and
// path, in the order they first appear, each round's MDs next to the
// one-MD group (Scenario.OneMDGroup) of the same round, step and path.
func SummarizeCascade(scs []Scenario) []CascadeAggregate {
	all, rows := groupSteps(scs)
	var order []stepKey
	for _, k := range all {
		if IsCascade(k.group) {
			order = append(order, k)
		}
	}
	var out []CascadeAggregate
	for _, k := range order {
		ss := rows[k]
		slices.SortStableFunc(ss, func(a, b *Scenario) int { return a.Round - b.Round })
		a := CascadeAggregate{Name: k.group + "@" + k.step, Group: k.group, Step: k.step, Path: k.path, OneMDGroup: ss[0].OneMDGroup}
		type perMD struct{ pcs, vs, fwd, cpu, loss, tx, rx []float64 }
		var mds []perMD
		var pcs, vs, one, loss []float64
		for _, s := range ss {
			if s.Error != "" || len(s.MDs) == 0 {
				a.Errors++
				continue
			}
			a.Rounds++
			base := rows.forwardedPerCPU(stepKey{a.OneMDGroup, s.Step, s.Path}, s.Round)
			one = append(one, base)
			loss = append(loss, s.Loss)
			var cpu float64
			once, lossless := true, true
			for i, m := range s.MDs {
				if len(mds) <= i {
					mds = append(mds, perMD{})
					a.MDs = append(a.MDs, CascadeMD{Index: m.Index, Members: m.Members, Senders: m.Senders})
				}
				p := &mds[i]
				p.fwd, p.cpu, p.loss = append(p.fwd, m.ForwardedPPS), append(p.cpu, m.CPU), append(p.loss, m.Loss)
				p.tx, p.rx = append(p.tx, float64(m.LinkTx)), append(p.rx, float64(m.LinkRx))
				if m.ForwardedPerCPUSecond > 0 {
					p.pcs = append(p.pcs, m.ForwardedPerCPUSecond)
					p.vs = append(p.vs, m.ForwardedPerCPUSecond/base)
				}
				cpu += max(m.CPU, 0)
				once = once && m.CrossedOnce(len(s.MDs))
				lossless = lossless && m.LinksLossless()
			}
			if once {
				a.CrossedOnce++
			}
			if lossless {
				a.LinksLossless++
			}
			if cpu > 0 && s.ForwardedPPS > 0 {
				pcs = append(pcs, s.ForwardedPPS/cpu)
				vs = append(vs, s.ForwardedPPS/cpu/base)
			}
		}
		for i, p := range mds {
			m := &a.MDs[i]
			m.PerCPUSecond, m.VsOneMD, m.ForwardedPPS = stats.SpreadOf(p.pcs), stats.SpreadOf(p.vs), stats.SpreadOf(p.fwd)
			m.CPU, m.Loss, m.LinkTx, m.LinkRx = stats.SpreadOf(p.cpu), stats.SpreadOf(p.loss), stats.SpreadOf(p.tx), stats.SpreadOf(p.rx)
		}
		a.PerCPUSecond, a.VsOneMD, a.OneMD, a.Loss = stats.SpreadOf(pcs), stats.SpreadOf(vs), stats.SpreadOf(one), stats.SpreadOf(loss)
		out = append(out, a)
	}
	return out
}

// writeCascade writes the cascade table, when the run has cascade steps.
func writeCascade(b *strings.Builder, cs []CascadeAggregate) {
	if len(cs) == 0 {
		return
	}
	b.WriteString("\nCascade (members split over MDs joined by links, issue 14): per MD, forwarded packets (datagrams it sent, to its members and on its links, over the measured phase) per second of that MD's own CPU, next to the one-MD group's forwarded packets per forwarder CPU-second at the same step on the same path in the same round; \"all MDs\" is every endpoint's received packets per second over the MDs' summed CPU. Median (min–max) over the rounds; link packets are over each harness's life (warm-up included). \"crossed once\" counts the rounds in which every MD sent each packet of its own members it forwarded once on each link and nothing from a link on a link (link tx = (forwarded - link rx) × (MDs - 1)); \"links lossless\" those in which every MD's link rx equals what the other MDs' senders sent (not expected at saturation, where the senders' MD drops input):\n\n")
	b.WriteString("| scenario | path | MD | members (senders) | fwd pkt / MD CPU-s | one-MD fwd pkt / MD CPU-s | vs one MD | md_cpu | loss | link tx pkts | link rx pkts | crossed once | links lossless |\n")
	b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, a := range cs {
		one := spread(a.OneMD, "%.0f") + " (" + a.OneMDGroup + ")"
		for _, m := range a.MDs {
			fmt.Fprintf(b, "| %s | %s | md%02d | %d (%d) | %s | %s | %s | %s | %s | %s | %s | | |\n", a.Name, a.Path, m.Index, m.Members, m.Senders,
				spread(m.PerCPUSecond, "%.0f"), one, spread(m.VsOneMD, "%.2f×"), spread(m.CPU, "%.2f"), spreadPct(m.Loss),
				spread(m.LinkTx, "%.0f"), spread(m.LinkRx, "%.0f"))
		}
		fmt.Fprintf(b, "| %s | %s | all MDs | | %s | %s | %s | | %s | | | %d of %d | %d of %d |\n", a.Name, a.Path,
			spread(a.PerCPUSecond, "%.0f"), one, spread(a.VsOneMD, "%.2f×"), spreadPct(a.Loss), a.CrossedOnce, a.Rounds, a.LinksLossless, a.Rounds)
		if a.Errors > 0 {
			fmt.Fprintf(b, "| %s | %s | %d rounds failed | | | | | | | | | | |\n", a.Name, a.Path, a.Errors)
		}
	}
}

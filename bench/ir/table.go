package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mdfast/mdfast/bench/internal/callgrind"
)

// Implementations, as TestIRCallgrind names them.
const (
	implMdfast = "mdfast"
	implGCM    = "gcm"
	implPion   = "pion"
)

var impls = []string{implMdfast, implGCM, implPion}

// Case is one measurement: Senders senders' packets alternate one by one,
// each sent to Fanout receivers.
type Case struct {
	Impl    string `json:"impl"`
	Size    int    `json:"size"`
	Fanout  int    `json:"fanout"`
	Senders int    `json:"senders"`
}

func (c Case) String() string {
	return fmt.Sprintf("%s/%d/%d/%d", c.Impl, c.Size, c.Fanout, c.Senders)
}

// Phases is what callgrind counted for one measurement: phase A processed
// N packets, phase B 2N.
type Phases struct {
	A, B *callgrind.Profile
}

// Measurement is one case's result.
type Measurement struct {
	Case
	// IrA and IrB are the instructions of phases A (N packets) and B (2N).
	IrA uint64 `json:"ir_a"`
	IrB uint64 `json:"ir_b"`
	// PerPacket is (IrB − IrA) / N.
	PerPacket float64 `json:"ir_per_packet"`
	// Nonlinearity is (IrB − 2·IrA) / IrB: 0 when every packet of both
	// phases cost the same.
	Nonlinearity float64 `json:"nonlinearity"`
	// Crypto is the part of PerPacket in functions of the crypto/ packages
	// (phase B's self costs / 2N); Other is the rest.
	Crypto float64 `json:"crypto_per_packet"`
	Other  float64 `json:"other_per_packet"`
	// Top are the functions outside crypto/ of highest self cost per
	// packet in phase B.
	Top []FuncCost `json:"top,omitempty"`
}

// FuncCost is a function's self cost per packet.
type FuncCost struct {
	Name      string  `json:"name"`
	PerPacket float64 `json:"ir_per_packet"`
}

func isCrypto(fn string) bool { return strings.HasPrefix(fn, "crypto/") }

// measure computes a case's result from its two profiles (n packets in
// phase A); top is how many functions outside crypto/ to keep.
func measure(c Case, ph Phases, n, top int) (Measurement, error) {
	m := Measurement{Case: c}
	if n <= 0 {
		return m, fmt.Errorf("%s: %d packets per phase", c, n)
	}
	if ph.A == nil || ph.B == nil {
		return m, fmt.Errorf("%s: a phase's profile is missing", c)
	}
	evA, err := ph.A.Event("Ir")
	if err != nil {
		return m, fmt.Errorf("%s: phase A: %w", c, err)
	}
	evB, err := ph.B.Event("Ir")
	if err != nil {
		return m, fmt.Errorf("%s: phase B: %w", c, err)
	}
	if ph.A.Summary == nil || ph.B.Summary == nil {
		return m, fmt.Errorf("%s: a phase's profile has no summary", c)
	}
	m.IrA, m.IrB = ph.A.Summary[evA], ph.B.Summary[evB]
	if m.IrB <= m.IrA {
		return m, fmt.Errorf("%s: phase B (2N packets) counted %d instructions, phase A (N) %d: not a measurement", c, m.IrB, m.IrA)
	}
	m.PerPacket = float64(m.IrB-m.IrA) / float64(n)
	m.Nonlinearity = (float64(m.IrB) - 2*float64(m.IrA)) / float64(m.IrB)
	crypto := ph.B.SelfTotal(evB, isCrypto)
	m.Crypto = float64(crypto) / float64(2*n)
	m.Other = float64(m.IrB-min(crypto, m.IrB)) / float64(2*n)
	for _, f := range ph.B.Top(evB, len(ph.B.Self)) {
		if len(m.Top) == top {
			break
		}
		if !isCrypto(f.Name) {
			m.Top = append(m.Top, FuncCost{f.Name, float64(f.Cost) / float64(2*n)})
		}
	}
	return m, nil
}

// Row is one size × fan-out × senders of the table.
type Row struct {
	Size    int     `json:"size"`
	Fanout  int     `json:"fanout"`
	Senders int     `json:"senders"`
	Mdfast  float64 `json:"mdfast_ir_per_packet"`
	GCM     float64 `json:"gcm_ir_per_packet"`
	Pion    float64 `json:"pion_ir_per_packet"`
	// VsGCM and VsPion are Mdfast/GCM and Mdfast/Pion.
	VsGCM  float64 `json:"mdfast_vs_gcm"`
	VsPion float64 `json:"mdfast_vs_pion"`
	// Holds says whether VsGCM ≤ the goal.
	Holds bool `json:"goal_holds"`
}

// Report is what bench/ir writes.
type Report struct {
	Started  string        `json:"started"`
	Command  string        `json:"command"`
	Go       string        `json:"go"`
	Valgrind string        `json:"valgrind"`
	N        int           `json:"packets_per_phase"`
	Goal     float64       `json:"goal_mdfast_vs_gcm"`
	Seconds  float64       `json:"seconds"`
	Rows     []Row         `json:"rows"`
	Cases    []Measurement `json:"measurements"`
}

// rows builds the table from the measurements: one row per size, fan-out
// and senders that all three implementations were measured at, in size,
// fan-out then senders order.
func rows(ms []Measurement, goal float64) ([]Row, error) {
	type key struct{ size, fanout, senders int }
	by := map[key]map[string]float64{}
	for _, m := range ms {
		k := key{m.Size, m.Fanout, m.Senders}
		if by[k] == nil {
			by[k] = map[string]float64{}
		}
		if _, dup := by[k][m.Impl]; dup {
			return nil, fmt.Errorf("%s measured twice", m.Case)
		}
		by[k][m.Impl] = m.PerPacket
	}
	var out []Row
	for k, v := range by {
		for _, impl := range impls {
			if v[impl] <= 0 {
				return nil, fmt.Errorf("%d B fan-out %d senders %d: no measurement of %s", k.size, k.fanout, k.senders, impl)
			}
		}
		r := Row{Size: k.size, Fanout: k.fanout, Senders: k.senders, Mdfast: v[implMdfast], GCM: v[implGCM], Pion: v[implPion]}
		r.VsGCM, r.VsPion = r.Mdfast/r.GCM, r.Mdfast/r.Pion
		r.Holds = r.VsGCM <= goal
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Size != out[j].Size {
			return out[i].Size < out[j].Size
		}
		if out[i].Fanout != out[j].Fanout {
			return out[i].Fanout < out[j].Fanout
		}
		return out[i].Senders < out[j].Senders
	})
	return out, nil
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	if err := e.Encode(r); err != nil {
		return fmt.Errorf("ir: json: %w", err)
	}
	return nil
}

// Markdown writes the table, the breakdown and how they were measured.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Instructions per forwarded packet\n\n")
	fmt.Fprintf(&b, "Counted with callgrind (`%s`, %s, %s) on %s, in %.0f s: each\n", r.Command, r.Valgrind, r.Go, r.Started, r.Seconds)
	fmt.Fprintf(&b, "implementation opens a received SRTP packet once (AEAD_AES_128_GCM) and seals it\n")
	fmt.Fprintf(&b, "once per receiver. Ir/packet = (Ir of 2N packets − Ir of N packets) / N, N = %d,\n", r.N)
	fmt.Fprintf(&b, "counted on the measuring thread only while packets are processed.\n\n")
	fmt.Fprintf(&b, "- **mdfast**: the worker (`Worker.poll`) on the real key table, a port serving\n")
	fmt.Fprintf(&b, "  Ethernet/IPv4/UDP frames from memory (parsed as the AF_XDP port does; headers\n")
	fmt.Fprintf(&b, "  written per receiver, UDP checksum off as by default), batches of 64.\n")
	fmt.Fprintf(&b, "- **raw GCM**: `crypto/cipher` alone: one `Open`, then per receiver a header copy\n")
	fmt.Fprintf(&b, "  and one `Seal` (RFC 7714 IVs).\n")
	fmt.Fprintf(&b, "- **pion/srtp**: v3 `DecryptRTP` once, `EncryptRTP` per receiver.\n\n")
	fmt.Fprintf(&b, "Size is the SRTP packet (UDP payload, tag included). Senders: that many senders'\n")
	fmt.Fprintf(&b, "packets alternate one by one in every batch, each to fan-out receivers (the other\n")
	fmt.Fprintf(&b, "members of its conference; two conferences of two at fan-out 1 with 4 senders), in\n")
	fmt.Fprintf(&b, "all three implementations. Goal: mdfast ≤ %.2f× raw GCM on every row.\n\n", r.Goal)
	fmt.Fprintf(&b, "| size | fan-out | senders | mdfast Ir/pkt | raw GCM Ir/pkt | pion/srtp Ir/pkt | mdfast/raw GCM | mdfast/pion | ≤ %.2f× raw GCM |\n", r.Goal)
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|:---|\n")
	for _, row := range r.Rows {
		holds := "no"
		if row.Holds {
			holds = "yes"
		}
		fmt.Fprintf(&b, "| %d B | %d | %d | %.0f | %.0f | %.0f | %.2f× | %.2f× | %s |\n",
			row.Size, row.Fanout, row.Senders, row.Mdfast, row.GCM, row.Pion, row.VsGCM, row.VsPion, holds)
	}
	fmt.Fprintf(&b, "\n## Where the instructions go\n\n")
	fmt.Fprintf(&b, "Self costs of phase B per packet: in `crypto/` (the AEAD) and elsewhere.\n\n")
	fmt.Fprintf(&b, "| size | fan-out | senders | mdfast crypto/ | mdfast other | raw GCM crypto/ | raw GCM other | pion crypto/ | pion other |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	by := map[string]Measurement{}
	for _, m := range r.Cases {
		by[m.Case.String()] = m
	}
	for _, row := range r.Rows {
		get := func(impl string) Measurement {
			return by[Case{impl, row.Size, row.Fanout, row.Senders}.String()]
		}
		md, g, p := get(implMdfast), get(implGCM), get(implPion)
		fmt.Fprintf(&b, "| %d B | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
			row.Size, row.Fanout, row.Senders, md.Crypto, md.Other, g.Crypto, g.Other, p.Crypto, p.Other)
	}
	for _, row := range r.Rows {
		md := by[Case{implMdfast, row.Size, row.Fanout, row.Senders}.String()]
		if len(md.Top) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nmdfast, %d B, fan-out %d, %d sender(s): top functions outside `crypto/` (self Ir/packet)\n\n", row.Size, row.Fanout, row.Senders)
		fmt.Fprintf(&b, "| Ir/pkt | function |\n|---:|:---|\n")
		for _, f := range md.Top {
			fmt.Fprintf(&b, "| %.0f | `%s` |\n", f.PerPacket, strings.TrimPrefix(f.Name, "github.com/mdfast/mdfast/"))
		}
	}
	var warn []string
	for _, m := range r.Cases {
		if m.Nonlinearity > 0.01 || m.Nonlinearity < -0.01 {
			warn = append(warn, fmt.Sprintf("%s: phase B is %.1f%% off twice phase A", m.Case, 100*m.Nonlinearity))
		}
	}
	if len(warn) > 0 {
		fmt.Fprintf(&b, "\n**Warning**: the per-packet cost was not steady:\n\n- %s\n", strings.Join(warn, "\n- "))
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("ir: markdown: %w", err)
	}
	return nil
}

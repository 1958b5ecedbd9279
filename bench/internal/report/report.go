// Package report is the output of a benchmark run: the JSON document
// (bench/results/<timestamp>.json and latest.json), the Markdown tables,
// the SVG plot of forwarded against offered rate per path with the spread
// over the rounds, and the findings against the goals of issues 8 and 13.
// It computes nothing it was not given: every figure comes from Scenarios
// measured in the run; what it derives (added latency over the reflector,
// medians and min–max over the rounds, ratios within a round) it derives
// from them alone.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/mdfast/mdfast/bench/internal/stats"
)

// Scenario is one measured step of one scenario on one path. The first
// eleven fields are the ones issue 8 names.
type Scenario struct {
	// Name is "<group>@<step>", e.g. "fanout1to4-160B@sat".
	Name string `json:"name"`
	// Path is "mdfast-xdp-native", "mdfast-xdp-generic",
	// "mdfast-socket" or "baseline".
	Path string `json:"path"`
	// Payload is the RTP payload size in octets.
	Payload int `json:"payload"`
	// Fanout is the receivers of each packet; Participants the members of
	// the conference; Senders how many of them send.
	Fanout       int `json:"fanout"`
	Participants int `json:"participants"`
	// OfferedPPS is the packets per second a lossless forwarder would
	// deliver (input rate × fanout); ForwardedPPS what the endpoints
	// received per second.
	OfferedPPS   float64 `json:"offered_pps"`
	ForwardedPPS float64 `json:"forwarded_pps"`
	// Loss is 1 - received/expected.
	Loss float64 `json:"loss"`
	// P50us and P99us are send-to-receive latency through the forwarder.
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	// MDCPU is the forwarder process's CPU time over the measured phase
	// divided by its length (1.0 = one core), from /proc/<pid>/stat.
	MDCPU float64 `json:"md_cpu"`

	// Group is Name without the step; Step is "sat" (as fast as the
	// generator sends), a percentage of the group's saturation ("50%"),
	// or "fixed" (the pattern's own rate).
	Group string `json:"group"`
	Step  string `json:"step"`
	// Pattern is "flood", "audio", "video" or "paced".
	Pattern string `json:"pattern"`
	Senders int    `json:"senders"`
	// InputPPS is the packets per second sent to the forwarder.
	InputPPS float64 `json:"input_pps"`
	P999us   float64 `json:"p999_us"`
	JitterUs float64 `json:"jitter_us"`
	// CoreCPU is the busy fraction of the forwarder's core (softirq
	// included) from /proc/stat, -1 when unknown.
	CoreCPU float64 `json:"core_cpu"`
	// ForwardedPerCPUSecond is ForwardedPPS / MDCPU: packets delivered
	// per second of forwarder CPU.
	ForwardedPerCPUSecond float64 `json:"forwarded_per_md_cpu_second"`
	// Sent, Received, Verified, VerifyErrors are the generator's counts.
	Sent         uint64 `json:"sent"`
	Received     uint64 `json:"received"`
	Verified     uint64 `json:"verified"`
	VerifyErrors uint64 `json:"verify_errors"`
	// Handshakes is how many DTLS-SRTP handshakes ran at once before the
	// step (the system path; 0 elsewhere) and HandshakesOK how many
	// completed. HandshakeP50ms, P99ms and MaxMs summarise one
	// handshake's time (first ClientHello to exported keys);
	// HandshakeTotalMs is the wall time for all of them.
	Handshakes       int     `json:"handshakes,omitempty"`
	HandshakesOK     int     `json:"handshakes_ok,omitempty"`
	HandshakeP50ms   float64 `json:"handshake_p50_ms,omitempty"`
	HandshakeP99ms   float64 `json:"handshake_p99_ms,omitempty"`
	HandshakeMaxMs   float64 `json:"handshake_max_ms,omitempty"`
	HandshakeTotalMs float64 `json:"handshake_total_ms,omitempty"`
	// SetupsPerSecond is the KD's association set-up rate through the
	// tunnel: HandshakesOK over HandshakeTotalMs.
	SetupsPerSecond float64 `json:"association_setups_per_second,omitempty"`
	// Profile is the SRTP protection profile the endpoints sent:
	// "AEAD_AES_128_GCM" or, RFC 8723 double with a real inner layer,
	// "DOUBLE_AEAD_AES_128_GCM_AEAD_AES_128_GCM".
	Profile string `json:"profile"`
	// Mode is the data plane mode the forwarder reported.
	Mode string `json:"mode,omitempty"`
	// Keys says how the forwarder got its keys.
	Keys string `json:"keys"`
	// ForwarderDrops are the forwarder's non-zero drop counters.
	ForwarderDrops map[string]uint64 `json:"forwarder_drops,omitempty"`
	// QueueRx is the packets each of the forwarder's workers received (one
	// per queue), for the multi-queue paths: how the flows spread.
	QueueRx []uint64 `json:"queue_rx_packets,omitempty"`
	// Error is set when the step could not be measured.
	Error string `json:"error,omitempty"`
	// Round is the round (1..) that measured the step.
	Round int `json:"round"`
	// Calibrates, on a reflector step, names the path whose paced step
	// it was run after at the same rate (empty on the fixed patterns,
	// where the reflector runs once per round for every path).
	Calibrates string `json:"calibrates,omitempty"`
	// Reflector, on a step of a path that is not a reflector, names the
	// reflector path that calibrates it: ReflectorXDPNative or
	// ReflectorXDPGeneric for a path in that XDP mode, Reflector (the
	// socket one) for the others. Empty in results written before the
	// XDP reflectors, which were all calibrated by the socket reflector.
	Reflector string `json:"reflector,omitempty"`
	// Added is the latency this step adds over its reflector at the same
	// rate in the same round (AttachAdded); nil when not calibrated.
	Added *stats.Added `json:"added_latency,omitempty"`
	// ForwarderRx, XDPPollSleeps and XDPSpinCatches are the forwarder's
	// own counts over its life (warm-up included; mdharness only): the
	// packets it received, the times its AF_XDP worker slept in poll on an
	// empty ring, and the times its spin found packets instead.
	ForwarderRx    uint64 `json:"forwarder_rx_packets,omitempty"`
	XDPPollSleeps  uint64 `json:"xdp_poll_sleeps,omitempty"`
	XDPSpinCatches uint64 `json:"xdp_spin_catches,omitempty"`
	// SendBurstMean is the generator's mean burst in the measured phase
	// (packets handed to the kernel together, which reach the forwarder
	// back to back: gen.Result.SendBursts), SendBurstMax its largest; 0
	// in results from before they were counted.
	SendBurstMean float64 `json:"send_burst_mean,omitempty"`
	SendBurstMax  int     `json:"send_burst_max,omitempty"`
	// CalibrationSaturated says the reflector step at this rate was
	// busier than MaxReflectorCPU, so no added latency was taken.
	CalibrationSaturated bool `json:"calibration_saturated,omitempty"`
	// RefP99us is that reflector step's p99 (with Added).
	RefP99us float64 `json:"reflector_p99_us,omitempty"`
	// MDs are, on a cascade step (IsCascade), each MD's figures; the
	// step's MDCPU is then the MDs' summed CPU and ForwardedPerCPUSecond
	// ForwardedPPS over it. OneMDGroup is the one-MD group it is
	// compared with (see SummarizeCascade).
	MDs        []MD   `json:"mds,omitempty"`
	OneMDGroup string `json:"one_md_group,omitempty"`
	// Dwell is the packets' time in the forwarder over the measured
	// phase (XDP paths and XDP reflectors), nil when not measured.
	Dwell *Dwell `json:"dwell,omitempty"`
	// AddedDwell is Dwell minus its reflector's at the same rate in the
	// same round (AttachAddedDwell), RefDwell that reflector's Dwell;
	// RefDwellBusy says the reflector was busier than MaxReflectorCPU.
	AddedDwell   *stats.Added `json:"added_dwell,omitempty"`
	RefDwell     *Dwell       `json:"reflector_dwell,omitempty"`
	RefDwellBusy bool         `json:"reflector_dwell_busy,omitempty"`
}

// Host describes where the run happened.
type Host struct {
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	// MDCore and GenCore are the cores the forwarder and the generator
	// were pinned to.
	MDCore  int `json:"md_core"`
	GenCore int `json:"gen_core"`
}

// Run is one benchmark run.
type Run struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Command  string    `json:"command"`
	Quick    bool      `json:"quick"`
	Host     Host      `json:"host"`
	// Method explains what was measured and how (keys, topology, CPU).
	Method []string `json:"method"`
	// Rounds is how many rounds the plan had.
	Rounds    int        `json:"rounds"`
	Scenarios []Scenario `json:"scenarios"`
	// Summary is every step of every path over the rounds (Summarize).
	Summary  []Aggregate `json:"summary"`
	Findings []Finding   `json:"findings"`
	// Cascade is every cascade step per MD over the rounds
	// (SummarizeCascade).
	Cascade []CascadeAggregate `json:"cascade,omitempty"`
}

// Finish derives what r's scenarios imply: each step's added latency
// (AttachAdded) and added dwell (AttachAddedDwell), the summary over the rounds, the findings and the
// cascade table.
func (r *Run) Finish() {
	AttachAdded(r.Scenarios)
	AttachAddedDwell(r.Scenarios)
	r.Summary = Summarize(r.Scenarios)
	r.Findings = Evaluate(r.Summary)
	r.Cascade = SummarizeCascade(r.Scenarios)
}

// WriteJSON writes r as indented JSON.
func (r *Run) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	if err := e.Encode(r); err != nil {
		return fmt.Errorf("report: encode JSON: %w", err)
	}
	return nil
}

// RequiredFields are the JSON fields issue 8 asks of every scenario.
var RequiredFields = []string{"name", "path", "payload", "fanout", "participants", "offered_pps", "forwarded_pps", "loss", "p50_us", "p99_us", "md_cpu"}

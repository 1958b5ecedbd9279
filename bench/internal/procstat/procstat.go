// Package procstat reads a process's CPU time from /proc/<pid>/stat, the
// figure the benchmark divides forwarded packets by.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat (USER_HZ, fixed at
// 100 by the kernel ABI on every architecture Go supports on Linux).
const userHZ = 100

// CPUTime returns utime+stime of pid (all its threads, including exited
// ones).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseStat(b)
}

// ParseStat parses the content of /proc/<pid>/stat and returns utime+stime.
func ParseStat(b []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: no command name in %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: utime/stime %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// CoreBusy returns the time CPU cpu spent not idle (user, nice, system,
// irq, softirq, steal) according to /proc/stat: with the forwarder pinned
// alone to that core it includes the kernel's softirq work the forwarder's
// own CPU time leaves out.
func CoreBusy(cpu int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseCoreBusy(b, cpu)
}

// ParseCoreBusy parses the content of /proc/stat for CoreBusy.
func ParseCoreBusy(b []byte, cpu int) (time.Duration, error) {
	prefix := []byte("cpu" + strconv.Itoa(cpu) + " ")
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		f := bytes.Fields(line[len(prefix):])
		if len(f) < 8 {
			return 0, fmt.Errorf("procstat: short cpu%d line", cpu)
		}
		var ticks uint64
		// user nice system idle iowait irq softirq steal
		for _, i := range []int{0, 1, 2, 5, 6, 7} {
			v, err := strconv.ParseUint(string(f[i]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procstat: cpu%d field %d: %w", cpu, i, err)
			}
			ticks += v
		}
		return time.Duration(ticks) * time.Second / userHZ, nil
	}
	return 0, fmt.Errorf("procstat: no cpu%d in /proc/stat", cpu)
}

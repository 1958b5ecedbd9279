package bpf

import "errors"

var (
	// ErrClosed is returned by the methods of a Classifier after Close.
	ErrClosed = errors.New("bpf: classifier closed")
	// ErrInvalidPort is returned when port 0 is given as a media port.
	ErrInvalidPort = errors.New("bpf: invalid media port 0")
	// ErrQueueOutOfRange is returned by RegisterSocket and UnregisterSocket
	// for a queue index not below Options.QueueSlots.
	ErrQueueOutOfRange = errors.New("bpf: queue index out of range of the XSKMAP")
)

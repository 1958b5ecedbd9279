package udpbatch

import "errors"

// ErrBatchTooLarge is returned when a batch exceeds the size given in
// Options.BatchSize.
var ErrBatchTooLarge = errors.New("udpbatch: batch larger than the configured batch size")

package keydist

import (
	"io"
	"log/slog"
	"os"
)

// discardLogger returns a logger for tests; KEYDIST_TEST_LOG=1 shows it.
func discardLogger() *slog.Logger {
	if os.Getenv("KEYDIST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

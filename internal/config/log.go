package config

import (
	"io"
	"log/slog"

	"github.com/mdfast/mdfast/internal/options"
)

// NewLogger returns the slog logger the config asks for, writing to w, and
// the LevelVar controlling it (for reloads).
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	return options.NewLogger(c.LogLevel, c.LogFormat, w)
}

// SetLevel sets lv to the configured level.
func (c *Config) SetLevel(lv *slog.LevelVar) error { return options.SetLevel(lv, c.LogLevel) }

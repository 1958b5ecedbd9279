package config

import (
	"io"
	"log/slog"
)

type slogLevel struct{ l slog.Level }

func (s *slogLevel) parse(v string) error { return s.l.UnmarshalText([]byte(v)) }

// NewLogger returns the slog logger the config asks for, writing to w, and
// the LevelVar controlling it (for reloads).
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := c.SetLevel(lv); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, fieldErr("log-format", "%q: want text or json", c.LogFormat)
}

// SetLevel sets lv to the configured level.
func (c *Config) SetLevel(lv *slog.LevelVar) error {
	var s slogLevel
	if err := s.parse(c.LogLevel); err != nil {
		return fieldErr("log-level", "%w", err)
	}
	lv.Set(s.l)
	return nil
}

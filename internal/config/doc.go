// Package config is the Media Distributor's configuration: the settings,
// declared once each in Config.Options (name, default, documentation,
// validation, whether SIGHUP applies it; see internal/options), from which
// come the flags and the YAML file (keys are the flag names; flags given
// on the command line override the file), validation that names the field
// at fault (in declaration order), the README's option table and what a
// reload reports as needing a restart.
//
// It must not open sockets, read certificates or start anything: it only
// parses and checks.
package config

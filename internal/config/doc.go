// Package config is the Media Distributor's configuration: the settings,
// their defaults, the flags and the YAML file (keys are the flag names;
// flags given on the command line override the file), and validation that
// names the field at fault.
//
// It must not open sockets, read certificates or start anything: it only
// parses and checks.
package config

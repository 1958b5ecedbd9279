package main

import (
	"reflect"
	"slices"
	"testing"

	"github.com/mdfast/mdfast/internal/config"
	"github.com/mdfast/mdfast/internal/options/optionstest"
)

// TestReloadCoversOptions: every option is either applied by SIGHUP (it is
// declared Reload and exactly one reloader handles it) or, when changed,
// named as needing a restart; reloadPlan takes over exactly the applied
// values into the running configuration.
func TestReloadCoversOptions(t *testing.T) {
	handled := map[string]int{}
	for _, r := range reloaders {
		for _, name := range r.options {
			handled[name]++
		}
	}
	base := config.Defaults()
	declared := map[string]bool{}
	for _, o := range base.Options() {
		declared[o.Name] = true
		if o.Reload && handled[o.Name] != 1 {
			t.Errorf("option %s is declared reloadable but %d reloaders apply it", o.Name, handled[o.Name])
		}
		if !o.Reload && handled[o.Name] != 0 {
			t.Errorf("option %s is applied on reload but not declared reloadable", o.Name)
		}
	}
	for name := range handled {
		if !declared[name] {
			t.Errorf("reloader for undeclared option %s", name)
		}
	}

	for i, o := range base.Options() {
		run, n := config.Defaults(), config.Defaults()
		v := optionstest.NonDefault(o)
		n.Options()[i].SetValue(v)
		applied, restart := reloadPlan(&run, &n)
		got := run.Options()[i].Value()
		if o.Reload {
			if !slices.Equal(applied, []string{o.Name}) || len(restart) != 0 {
				t.Errorf("changing %s: applied %v, restart %v", o.Name, applied, restart)
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("changing %s: running value %v, want the new %v", o.Name, got, v)
			}
		} else {
			if len(applied) != 0 || !slices.Equal(restart, []string{o.Name}) {
				t.Errorf("changing %s: applied %v, restart %v", o.Name, applied, restart)
			}
			if !reflect.DeepEqual(got, o.Value()) {
				t.Errorf("changing %s: running value became %v", o.Name, got)
			}
		}
		// The limits reloader carries each of its options.
		if slices.Contains(reloaders[1].options, o.Name) && reflect.DeepEqual(n.Limits(), base.Limits()) {
			t.Errorf("changing %s does not change Limits()", o.Name)
		}
	}
}

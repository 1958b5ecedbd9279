// Package optionstest checks a daemon's option declarations: that every
// option has a flag, a YAML key and a README row, and gives each a value
// other than its default (for reload tests).
package optionstest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mdfast/mdfast/internal/options"
)

// NonDefault returns a value of o's type that differs from o's current
// value (valid enough to load; not necessarily to validate).
func NonDefault(o options.Option) any {
	return change(reflect.ValueOf(o.Value()), o.Name).Interface()
}

func change(v reflect.Value, name string) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.String:
		out.SetString(v.String() + "x-" + name)
	case reflect.Bool:
		out.SetBool(!v.Bool())
	case reflect.Int64: // durations
		out.SetInt(v.Int() + int64(time.Second))
	case reflect.Int, reflect.Int32:
		out.SetInt(v.Int() + 3)
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		out.SetUint(v.Uint()*2 + 1)
	case reflect.Float64:
		out.SetFloat(v.Float() + 1.5)
	case reflect.Slice:
		out.Set(reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()+1), v))
		out.Set(reflect.Append(out, change(reflect.New(v.Type().Elem()).Elem(), name)))
	case reflect.Map:
		out.Set(reflect.MakeMap(v.Type()))
		out.SetMapIndex(change(reflect.New(v.Type().Key()).Elem(), name), change(reflect.New(v.Type().Elem()).Elem(), name))
	case reflect.Struct:
		out.Set(v)
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(change(v.Field(i), name))
			}
		}
	default:
		panic(fmt.Sprintf("optionstest: no non-default value for %s (%s)", name, v.Type()))
	}
	return out
}

// yamlValue is v as the YAML file writes it (durations as "1m30s").
func yamlValue(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Int64 {
		return time.Duration(rv.Int()).String()
	}
	return v
}

// Everywhere checks every option of fresh() (a function returning the
// options bound to a new default configuration): it has a flag (unless it
// is declared YAML-only) whose text form reads back; and a file setting
// every option to a non-default value, read by load (which returns the
// loaded configuration's options), gives those values.
func Everywhere(t *testing.T, fresh func() []options.Option, load func(path string) ([]options.Option, error)) {
	t.Helper()
	want := fresh()
	file := map[string]any{}
	for _, o := range want {
		v := NonDefault(o)
		o.SetValue(v)
		file[o.Name] = yamlValue(v)
		if o.NoFlag {
			continue
		}
		fs := options.FlagSet("test", fresh(), nil)
		f := fs.Lookup(o.Name)
		if f == nil {
			t.Errorf("option %s has no flag", o.Name)
			continue
		}
		if err := fs.Parse([]string{"-" + o.Name + "=" + o.Flag().String()}); err != nil {
			t.Errorf("flag -%s=%s: %v", o.Name, o.Flag().String(), err)
		}
	}
	// The flags read back: parse each into a fresh binding and compare.
	for i, o := range want {
		if o.NoFlag {
			continue
		}
		got := fresh()
		if err := got[i].Flag().Set(o.Flag().String()); err != nil {
			t.Errorf("flag -%s: %v", o.Name, err)
			continue
		}
		if g := got[i].Value(); !reflect.DeepEqual(g, o.Value()) && !listAppended(g, o.Value()) {
			t.Errorf("flag -%s=%s reads back as %v, want %v", o.Name, o.Flag().String(), g, o.Value())
		}
	}
	b, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := load(path)
	if err != nil {
		t.Fatalf("load a file setting every option: %v\n%s", err, b)
	}
	if len(got) != len(want) {
		t.Fatalf("%d options loaded, %d declared", len(got), len(want))
	}
	for i, o := range want {
		if !reflect.DeepEqual(got[i].Value(), o.Value()) {
			t.Errorf("YAML key %s: loaded %#v, want %#v", o.Name, got[i].Value(), o.Value())
		}
	}
}

// listAppended: a list flag set on top of its default appends to it.
func listAppended(got, want any) bool {
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() != reflect.Slice || g.Len() < w.Len() {
		return false
	}
	s := g.Slice(g.Len()-w.Len(), g.Len())
	return reflect.DeepEqual(s.Interface(), w.Convert(s.Type()).Interface())
}

// README checks that the section of the README at path between the
// markers named section is the option table of opts; with UPDATE_README=1
// in the environment it rewrites the section instead.
func README(t *testing.T, path, section string, opts []options.Option) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := options.ReplaceSection(string(b), section, options.Markdown(opts))
	if err != nil {
		t.Fatal(err)
	}
	if want == string(b) {
		return
	}
	if os.Getenv("UPDATE_README") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the %q option table differs from the declarations; regenerate it with UPDATE_README=1 go test -run TestREADMEOptions ./...\nwant:\n%s", path, section, options.Markdown(opts))
}

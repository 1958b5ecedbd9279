// Package options declares a daemon's settings once each (name, type,
// default, validation, documentation and whether SIGHUP applies it) and
// derives from the declarations the flags, the strict YAML file, the
// validation (in declaration order, so errors read the same every run), the
// README's option table and what a reload must report as needing a restart.
//
// A daemon writes a function that returns its options bound to the fields
// of one configuration value; everything else here works on that list.
package options

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFile bounds a configuration file.
const MaxFile = 1 << 20

// Option is one setting bound to a field. Build it with the typed
// constructors (String, Int, ...), then Reloadable and Check.
type Option struct {
	Name   string // flag name and YAML key
	Doc    string // flag usage and README description
	Reload bool   // SIGHUP applies it; otherwise a change needs a restart
	NoFlag bool   // YAML only (structured values)

	ptr   any        // the field
	value flag.Value // nil when NoFlag
	def   func()     // sets the default
	check func() error
}

// Reloadable marks o as applied on SIGHUP.
func (o Option) Reloadable() Option { o.Reload = true; return o }

// Check sets o's validation. f sees the whole configuration through its
// closure; its errors are reported under o's name.
func (o Option) Check(f func() error) Option { o.check = f; return o }

// Value returns the field's current value.
func (o Option) Value() any { return reflect.ValueOf(o.ptr).Elem().Interface() }

// Default returns the flag text of the default ("" for YAML-only options).
func (o Option) Default() string {
	if o.value == nil {
		return ""
	}
	saved := reflect.ValueOf(o.ptr).Elem()
	keep := reflect.New(saved.Type()).Elem()
	keep.Set(saved)
	o.def()
	s := o.value.String()
	saved.Set(keep)
	return s
}

func newOption[T any](p *T, name string, def T, doc string, v flag.Value) Option {
	return Option{Name: name, Doc: doc, ptr: p, value: v, def: func() { *p = clone(def) }}
}

// clone copies slices so that defaults are never shared.
func clone[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	if rv.Kind() == reflect.Slice && !rv.IsNil() {
		c := reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
		reflect.Copy(c, rv)
		rv.Set(c)
	}
	return v
}

// String declares a string option.
func String(p *string, name, def, doc string) Option {
	return newOption(p, name, def, doc, &value[string]{"string", p, func(s string) (string, error) { return s, nil }, func(s string) string { return s }})
}

// Int declares an int option (flag syntax as strconv.ParseInt base 0).
func Int(p *int, name string, def int, doc string) Option {
	return newOption(p, name, def, doc, &value[int]{"int", p, func(s string) (int, error) {
		v, err := strconv.ParseInt(s, 0, strconv.IntSize)
		return int(v), numErr(err)
	}, strconv.Itoa})
}

// Uint32 declares a uint32 option (decimal or 0x hex).
func Uint32(p *uint32, name string, def uint32, doc string) Option {
	return newOption(p, name, def, doc, &value[uint32]{"uint", p, func(s string) (uint32, error) {
		v, err := strconv.ParseUint(s, 0, 32)
		return uint32(v), numErr(err)
	}, func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }})
}

// Float declares a float64 option.
func Float(p *float64, name string, def float64, doc string) Option {
	return newOption(p, name, def, doc, &value[float64]{"float", p, func(s string) (float64, error) {
		v, err := strconv.ParseFloat(s, 64)
		return v, numErr(err)
	}, func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }})
}

// Bool declares a boolean option (-name alone sets it).
func Bool(p *bool, name string, def bool, doc string) Option {
	return newOption(p, name, def, doc, &boolValue{value[bool]{"", p, strconv.ParseBool, strconv.FormatBool}})
}

// Dur declares a duration option ("30s" in flags and YAML).
func Dur[D ~int64](p *D, name string, def D, doc string) Option {
	return newOption(p, name, def, doc, &value[D]{"duration", p, func(s string) (D, error) {
		v, err := time.ParseDuration(s)
		return D(v), err
	}, func(d D) string { return time.Duration(d).String() }})
}

// Ports declares a list of UDP ports (comma-separated flag, YAML list).
func Ports(p *[]uint16, name string, def []uint16, doc string) Option {
	return newOption(p, name, def, doc, &value[[]uint16]{"ports", p, func(s string) ([]uint16, error) {
		var out []uint16
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
			if err != nil {
				return nil, fmt.Errorf("port %q: %w", f, err)
			}
			out = append(out, uint16(n))
		}
		return out, nil
	}, func(v []uint16) string { return join(v) }})
}

// Ints declares a list of ints (comma-separated flag, YAML list).
func Ints(p *[]int, name string, def []int, doc string) Option {
	return newOption(p, name, def, doc, &value[[]int]{"ints", p, func(s string) ([]int, error) {
		var out []int
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("%q: %w", f, err)
			}
			out = append(out, n)
		}
		return out, nil
	}, func(v []int) string { return join(v) }})
}

// List declares a string list: a repeatable, comma-separated flag and a
// YAML list. A list given as a flag replaces the file's list.
func List(p *StringList, name string, def StringList, doc string) Option {
	return newOption(p, name, def, doc, p)
}

// YAML declares a structured option set only in the file (no flag),
// decoded strictly into *p; its default is the zero value.
func YAML[T any](p *T, name, doc string) Option {
	var zero T
	o := newOption(p, name, zero, doc, nil)
	o.NoFlag = true
	return o
}

func join[T int | uint16](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(int(x))
	}
	return strings.Join(s, ",")
}

// numErr drops strconv's "strconv.ParseInt: parsing ..." prefix, as the
// flag package does.
func numErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

type value[T any] struct {
	kind   string // for -h
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v *value[T]) String() string {
	if v == nil || v.p == nil {
		var zero T
		if v == nil {
			return ""
		}
		return v.format(zero)
	}
	return v.format(*v.p)
}

func (v *value[T]) typeName() string { return v.kind }

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

type boolValue struct{ value[bool] }

func (*boolValue) IsBoolFlag() bool { return true }

// StringList is a repeatable, comma-separated flag and a YAML list.
type StringList []string

// String implements flag.Value.
func (s *StringList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

// Set implements flag.Value: it appends.
func (s *StringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func (s *StringList) reset() { *s = nil }

func (s *StringList) typeName() string { return "list" }

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SetDefaults sets every option to its default.
func SetDefaults(opts []Option) {
	for _, o := range opts {
		o.def()
	}
}

// FlagSet returns the flags of opts, plus -config (the file).
func FlagSet(name string, opts []Option, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", "", "YAML configuration file (keys are the flag names; flags override it)")
	for _, o := range opts {
		if o.value != nil {
			fs.Var(o.value, o.Name, o.Doc)
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage of %s:\n", name)
		fs.VisitAll(func(f *flag.Flag) {
			kind := "string"
			if t, ok := f.Value.(interface{ typeName() string }); ok {
				kind = t.typeName()
			}
			line := "  -" + f.Name
			if kind != "" {
				line += " " + kind
			}
			line += "\n    \t" + strings.ReplaceAll(f.Usage, "\n", "\n    \t")
			if f.DefValue != "" && f.DefValue != "0s" && f.DefValue != "false" && f.DefValue != "0" {
				line += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintln(w, line)
		})
	}
	return fs
}

// Load parses args into a configuration of type T whose options bind
// returns: defaults, then the -config file, then the flags given on the
// command line. It returns the file's path ("" when none). It does not
// validate.
func Load[T any](name string, args []string, out io.Writer, bind func(*T) []Option) (T, string, error) {
	var c T
	SetDefaults(bind(&c))
	fs := FlagSet(name, bind(&c), out)
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if fs.NArg() > 0 {
		return c, "", fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return c, "", nil
	}
	var fc T
	opts := bind(&fc)
	SetDefaults(opts)
	if err := LoadFile(path, opts); err != nil {
		return c, path, err
	}
	over := FlagSet(name, opts, io.Discard)
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		g := over.Lookup(f.Name)
		if f.Name == "config" || g == nil {
			return
		}
		if r, ok := g.Value.(interface{ reset() }); ok {
			r.reset() // a list flag replaces the file's list
		}
		if err := g.Value.Set(f.Value.String()); err != nil && setErr == nil {
			setErr = fmt.Errorf("flag -%s: %w", f.Name, err)
		}
	})
	return fc, path, setErr
}

// LoadFile reads the YAML file at path into opts. Unknown and repeated
// keys are errors.
func LoadFile(path string, opts []Option) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFile {
		return fmt.Errorf("config %s: larger than %d octets", path, MaxFile)
	}
	if err := DecodeYAML(data, opts); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	return nil
}

// DecodeYAML decodes a YAML mapping whose keys are option names into opts.
func DecodeYAML(data []byte, opts []Option) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the configuration is not a mapping of option names", root.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		j := slices.IndexFunc(opts, func(o Option) bool { return o.Name == k.Value })
		if j < 0 {
			return fmt.Errorf("line %d: unknown option %q", k.Line, k.Value)
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: option %q given twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		if err := decodeStrict(v, opts[j].ptr); err != nil {
			return fmt.Errorf("line %d: %s: %w", k.Line, k.Value, err)
		}
	}
	return nil
}

// decodeStrict decodes n into p, rejecting unknown keys of nested
// structures (yaml.Node.Decode alone would ignore them).
func decodeStrict(n *yaml.Node, p any) error {
	if n.Kind != yaml.MappingNode {
		return n.Decode(p)
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(p)
}

// FieldError is a validation error naming the option.
type FieldError struct {
	Field string
	Err   error
}

// Error implements error.
func (e *FieldError) Error() string { return fmt.Sprintf("config: %s: %v", e.Field, e.Err) }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Validate runs every option's check in declaration order and returns the
// problems joined, each a *FieldError (a check's own *FieldError, naming
// another option, is kept).
func Validate(opts []Option) error {
	var errs []error
	for _, o := range opts {
		if o.check == nil {
			continue
		}
		err := o.check()
		if err == nil {
			continue
		}
		list := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		}
		for _, e := range list {
			if fe := (*FieldError)(nil); !errors.As(e, &fe) {
				e = &FieldError{Field: o.Name, Err: e}
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// Changes compares two bindings of the same options (the running
// configuration and a new one) and returns, in declaration order, the
// reloadable options that changed and the others that changed (these need
// a restart).
func Changes(running, next []Option) (reload, restart []string) {
	for i, o := range running {
		if reflect.DeepEqual(o.Value(), next[i].Value()) {
			continue
		}
		if o.Reload {
			reload = append(reload, o.Name)
		} else {
			restart = append(restart, o.Name)
		}
	}
	return reload, restart
}

// Markdown returns the README table of opts (bound to any configuration:
// the defaults are taken from the declarations).
func Markdown(opts []Option) string {
	var b strings.Builder
	b.WriteString("| Option | Default | SIGHUP | Description |\n|---|---|---|---|\n")
	for _, o := range opts {
		def, reload := o.Default(), "restart"
		if def != "" {
			def = "`" + def + "`"
		}
		if o.Reload {
			reload = "applied"
		}
		name := "`" + o.Name + "`"
		if o.NoFlag {
			name += " (file only)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, def, reload, strings.ReplaceAll(o.Doc, "|", `\|`))
	}
	return b.String()
}

// ReplaceSection returns text with the lines between the marker lines
// "<!-- BEGIN name -->" and "<!-- END name -->" replaced by body.
func ReplaceSection(text, name, body string) (string, error) {
	begin, end := "<!-- BEGIN "+name+" -->\n", "<!-- END "+name+" -->"
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q section", strings.TrimSpace(begin), end)
	}
	return text[:i+len(begin)] + body + text[j:], nil
}

// Adopt copies the reloadable options' values from next into running (two
// bindings of the same options), leaving the others as they are.
func Adopt(running, next []Option) {
	for i, o := range running {
		if o.Reload {
			reflect.ValueOf(o.ptr).Elem().Set(reflect.ValueOf(next[i].ptr).Elem())
		}
	}
}

// SetValue sets the field to v, which must have the field's type.
func (o Option) SetValue(v any) { reflect.ValueOf(o.ptr).Elem().Set(reflect.ValueOf(v)) }

// Flag returns the option's flag.Value (nil for a YAML-only option).
func (o Option) Flag() flag.Value { return o.value }

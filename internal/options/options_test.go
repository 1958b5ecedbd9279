package options

import (
	"errors"
	"io"
	"strings"
	"testing"
)

type cfg struct {
	N    int
	L    StringList
	S    string
	Dur  Duration
	Flag bool
}

func (c *cfg) options() []Option {
	return []Option{
		Int(&c.N, "n", 2, "a number").Check(func() error {
			if c.N < 0 {
				return errors.Join(errors.New("negative"), &FieldError{Field: "s", Err: errors.New("blames s")})
			}
			return nil
		}),
		List(&c.L, "l", StringList{"a"}, "a list"),
		String(&c.S, "s", "x", "a string").Reloadable(),
		Dur(&c.Dur, "dur", Duration(5e9), "a duration"),
		Bool(&c.Flag, "flag", true, "a flag"),
	}
}

func TestLoadFlagsOverFile(t *testing.T) {
	c, _, err := Load("t", []string{"-n", "0x10", "-l", "b,c", "-flag=false"}, io.Discard, (*cfg).options)
	if err != nil || c.N != 16 || c.L.String() != "a,b,c" || c.S != "x" || c.Dur.D().String() != "5s" || c.Flag {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestValidateWrapsInOrder(t *testing.T) {
	c := cfg{N: -1}
	err := Validate(c.options())
	if got := err.Error(); got != "config: n: negative\nconfig: s: blames s" {
		t.Fatalf("%q", got)
	}
}

func TestChangesAndAdopt(t *testing.T) {
	var a, b cfg
	SetDefaults(a.options())
	SetDefaults(b.options())
	b.N, b.S = 7, "y"
	reload, restart := Changes(a.options(), b.options())
	if strings.Join(reload, ",") != "s" || strings.Join(restart, ",") != "n" {
		t.Fatalf("reload %v restart %v", reload, restart)
	}
	Adopt(a.options(), b.options())
	if a.S != "y" || a.N != 2 {
		t.Fatalf("adopted %+v", a)
	}
}

func TestReplaceSection(t *testing.T) {
	in := "a\n<!-- BEGIN x -->\nold\n<!-- END x -->\nb\n"
	out, err := ReplaceSection(in, "x", "new\n")
	if err != nil || out != "a\n<!-- BEGIN x -->\nnew\n<!-- END x -->\nb\n" {
		t.Fatalf("%q %v", out, err)
	}
	if _, err := ReplaceSection("a", "x", ""); err == nil {
		t.Fatal("missing section accepted")
	}
}

package options

import (
	"errors"
	"io"
	"os"
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

// TestToken: one minimum length for the environment and the file; file
// errors name the file option.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	short, long := dir+"/short", dir+"/long"
	if err := os.WriteFile(short, []byte("0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte(" 0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := Token{API: "test API", Env: "OPTIONS_TEST_TOKEN", FileOption: "token-file", ListenOption: "listen", Min: 16}
	for _, tc := range []struct {
		env, file, want, field string
	}{
		{"", long, "0123456789abcdef", ""},
		{"", short, "", "token-file"},
		{"", "", "", "token-file"},
		{"", dir + "/missing", "", "token-file"},
		{"fedcba9876543210", short, "fedcba9876543210", ""},
		{"short", long, "", ""},
		{"  ", long, "0123456789abcdef", ""},
	} {
		t.Setenv(src.Env, tc.env)
		got, err := src.Load(tc.file)
		var fe *FieldError
		if got != tc.want || (tc.want == "") != (err != nil) || (tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field)) {
			t.Errorf("env %q file %q: %q, %v", tc.env, tc.file, got, err)
		}
	}
}

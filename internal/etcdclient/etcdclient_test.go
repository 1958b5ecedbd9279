package etcdclient_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdfast/mdfast/internal/etcdclient"
	"github.com/mdfast/mdfast/internal/etcdtest"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []etcdclient.Config{
		{Endpoints: []string{"127.0.0.1:2379"}},
		{Endpoints: []string{"ftp://127.0.0.1:2379"}},
		{Endpoints: []string{"http://"}},
		{Endpoints: []string{"http://h:1/x"}},
		{Endpoints: []string{"http://h:1"}, Prefix: "mdfast"},
		{Endpoints: []string{"http://h:1"}, Prefix: "/a//b/"},
		{Endpoints: []string{"https://h:1"}, CertFile: "c"},
		{Endpoints: []string{"http://h:1"}, CAFile: "ca"},
		{Endpoints: []string{"http://h:1"}, Username: "u"},
		{Endpoints: []string{"http://h:1"}, DialTimeout: -time.Second},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, etcdclient.ErrConfig) {
			t.Errorf("%+v: got %v, want ErrConfig", c, err)
		}
	}
	good := []etcdclient.Config{
		{},
		{Endpoints: []string{"http://127.0.0.1:2379", "https://[2001:db8::1]:2379/"}, Prefix: "/x/", CAFile: "ca", CertFile: "c", KeyFile: "k"},
		{Endpoints: []string{"http://h:1"}, Username: "md", PasswordFile: pw},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if k := (etcdclient.Config{}).Key("md/alive/a"); k != "/mdfast/v1/md/alive/a" {
		t.Errorf("Key = %q", k)
	}
}

func TestNewAgainstRealEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cl, err := etcdclient.New(etcdclient.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, etcdclient.DefaultPrefix+"probe", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdclient.New(etcdclient.Config{}); !errors.Is(err, etcdclient.ErrConfig) {
		t.Errorf("New without endpoints: %v", err)
	}
}

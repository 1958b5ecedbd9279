package keydist

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func adminDo(t *testing.T, h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAdminAPI(t *testing.T) {
	r := NewRegistry()
	h, err := NewAdminHandler(AdminConfig{Registry: r, Token: "s3cret", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAdminHandler(AdminConfig{Registry: r}); err == nil {
		t.Fatal("empty token accepted")
	}
	fp := "sha-256 " + testFP(7).String()
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
	}{
		{"no token", "GET", "/v1/conferences", "", "", 401},
		{"wrong token", "GET", "/v1/conferences", "s3cres", "", 401},
		{"token prefix", "GET", "/v1/conferences", "s3cret2", "", 401},
		{"list", "GET", "/v1/conferences", "s3cret", "", 200},
		{"add", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"tls_id":"` + testTLSID + `","fingerprint":"` + fp + `"}`, 201},
		{"add duplicate", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"tls_id":"` + testTLSID + `","fingerprint":"` + fp + `"}`, 409},
		{"add bad fp", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"tls_id":"` + testTLSID2 + `","fingerprint":"x"}`, 400},
		{"add unknown field", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"tls_id":"` + testTLSID2 + `","fingerprint":"` + fp + `","x":1}`, 400},
		{"add not json", "POST", "/v1/conferences/c1/endpoints", "s3cret", `tls_id=1`, 400},
		{"add trailing", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"tls_id":"` + testTLSID2 + `","fingerprint":"` + fp + `"}{}`, 400},
		{"add legacy refused", "POST", "/v1/conferences/c1/endpoints", "s3cret", `{"fingerprint":"` + fp + `"}`, 400},
		{"put conf", "PUT", "/v1/conferences/leg", "s3cret", `{"allow_legacy":true}`, 200},
		{"put conf missing field", "PUT", "/v1/conferences/leg", "s3cret", `{}`, 400},
		{"add legacy", "POST", "/v1/conferences/leg/endpoints", "s3cret", `{"fingerprint":"` + fp + `"}`, 201},
		{"get conf", "GET", "/v1/conferences/c1", "s3cret", "", 200},
		{"get unknown conf", "GET", "/v1/conferences/zz", "s3cret", "", 404},
		{"remove by path", "DELETE", "/v1/conferences/c1/endpoints/" + testTLSID, "s3cret", "", 200},
		{"remove again", "DELETE", "/v1/conferences/c1/endpoints/" + testTLSID, "s3cret", "", 404},
		{"remove nothing given", "DELETE", "/v1/conferences/leg/endpoints", "s3cret", "", 400},
		{"remove by fingerprint", "DELETE", "/v1/conferences/leg/endpoints?fingerprint=" + strings.ReplaceAll(testFP(7).String(), ":", ""), "s3cret", "", 200},
		{"delete conf", "DELETE", "/v1/conferences/leg", "s3cret", "", 204},
		{"delete unknown conf", "DELETE", "/v1/conferences/leg2", "s3cret", "", 404},
		{"associations", "GET", "/v1/associations", "s3cret", "", 200},
		{"kd", "GET", "/v1/kd", "s3cret", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := adminDo(t, h, tc.method, tc.path, tc.token, tc.body)
			if rec.Code != tc.code {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.code)
			}
			if tc.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// The add response carries the KD tls-id for the SDP answer.
	rec := adminDo(t, h, "POST", "/v1/conferences/c9/endpoints", "s3cret", `{"tls_id":"`+testTLSID2+`","fingerprint":"`+fp+`"}`)
	var e Endpoint
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || ValidateTLSID(e.KDTLSID) != nil || e.Fingerprint != testFP(7) {
		t.Fatalf("add response %s: %v", rec.Body, err)
	}
	rec = adminDo(t, h, "GET", "/v1/conferences", "s3cret", "")
	if !bytes.Contains(rec.Body.Bytes(), []byte(e.KDTLSID)) {
		t.Fatal("list does not show the KD tls-id")
	}
}

func FuzzParseEndpointRequest(f *testing.F) {
	f.Add([]byte(`{"tls_id":"` + testTLSID + `","fingerprint":"sha-256 ` + testFP(1).String() + `"}`))
	f.Add([]byte(`{"fingerprint":"00"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEndpointRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		r := NewRegistry()
		_ = r.SetConference("c", true)
		if _, err := r.AddEndpoint("c", e); err == nil {
			if e.TLSID != "" && ValidateTLSID(e.TLSID) != nil {
				t.Fatalf("invalid tls-id %q accepted", e.TLSID)
			}
		}
	})
}

func FuzzParseRegistryFile(f *testing.F) {
	f.Add([]byte(fileYAML(confYAML("c1", false, [2]string{testTLSID, "sha-256 " + testFP(1).String()}))))
	f.Add([]byte(fileYAML(confYAML("c1", true, [2]string{"", testFP(2).String()}))))
	f.Add([]byte("conferences: [{id: x, endpoints: [{tls_id: 1}]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		confs, err := ParseRegistryFile(b)
		if err != nil {
			return
		}
		r := NewRegistry()
		if err := r.ReplaceFile(confs); err != nil {
			t.Fatalf("validated file refused: %v", err)
		}
		n := 0
		for _, c := range confs {
			n += len(c.Endpoints)
		}
		if r.NumEndpoints() != n {
			t.Fatalf("%d endpoints registered, file has %d", r.NumEndpoints(), n)
		}
	})
}

func FuzzParseFingerprint(f *testing.F) {
	f.Add("sha-256 " + testFP(3).String())
	f.Add(strings.Repeat("ab", 32))
	f.Add("sha-1 00")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		back, err := ParseFingerprint(fp.String())
		if err != nil || back != fp {
			t.Fatalf("round trip of %q failed", s)
		}
	})
}

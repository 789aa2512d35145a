// A minimal admission webhook in Go, the reference for bench/experiments/admission_floor.py: the fastest
// possible answer, to find the apiserver's own cost of calling a webhook and applying its patch.
//
// It answers every POST /mutate with allowed: true, echoing apiVersion, kind and the request's uid, and,
// when PATCH_FILE names a file, with that file's bytes as the JSONPatch (the same patch for every review),
// unless the review contains PATCH_UNLESS: a re-invocation (reinvocationPolicy IfNeeded, after the
// ServiceAccount plugin mounted its token into the patched Pod) then gets no patch, as a converged webhook
// answers, instead of the same "add"s again.
// It speaks HTTP/1.1 only, like uvicorn, unless HTTP2 is set (net/http offers h2 over TLS by default, and
// the apiserver's webhook client takes it).
// Environment: ADDR (host:port), CERT and KEY (PEM files of the serving certificate), PATCH_FILE,
// PATCH_UNLESS and HTTP2 (all optional).
// Build: go build -o gohook main.go (standard library only, no go.mod needed).
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
)

type review struct {
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Request    map[string]interface{} `json:"request,omitempty"`
	Response   map[string]interface{} `json:"response,omitempty"`
}

func main() {
	patch := os.Getenv("PATCH_FILE")
	var patchB64 string
	if patch != "" {
		b, err := os.ReadFile(patch)
		if err != nil {
			panic(err)
		}
		patchB64 = base64.StdEncoding.EncodeToString(b)
	}
	unless := []byte(os.Getenv("PATCH_UNLESS"))
	http.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		var in review
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(body, &in)
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		resp := map[string]interface{}{"uid": in.Request["uid"], "allowed": true}
		if patchB64 != "" && (len(unless) == 0 || !bytes.Contains(body, unless)) {
			resp["patchType"] = "JSONPatch"
			resp["patch"] = patchB64
		}
		out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv := &http.Server{Addr: os.Getenv("ADDR")}
	if os.Getenv("HTTP2") == "" {
		// A non-nil, empty TLSNextProto turns off the automatic HTTP/2 of net/http.
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	if err := srv.ListenAndServeTLS(os.Getenv("CERT"), os.Getenv("KEY")); err != nil {
		panic(err)
	}
}

package httpx

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAllowMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	am := NewAllowMux(mux, func(w http.ResponseWriter, r *http.Request, allow string) {
		WriteError(w, http.StatusMethodNotAllowed, "invalid_request", "use "+allow)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	am.Handle("POST /v2/token", ok)
	am.Handle("GET /things/{id}", ok)
	am.Handle("DELETE /things/{id}", ok)
	am.Handle("GET /prefix/", ok)
	mux.Handle("GET /api/", ok)           // a gateway prefix route mounted after the modules
	mux.Handle("PUT /things/special", ok) // another module's endpoint below a wildcard path
	am.Finish()
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"POST", "/v2/token", 204, ""},
		{"GET", "/v2/token", 405, "POST"},
		{"PUT", "/v2/token", 405, "POST"},
		{"HEAD", "/things/1", 204, ""},
		{"PATCH", "/things/1", 405, "DELETE, GET, HEAD"},
		{"OPTIONS", "/things/1", 405, "DELETE, GET, HEAD"},
		{"POST", "/prefix/x", 404, ""}, // prefixes keep falling through
		{"PUT", "/things/special", 204, ""},
		{"GET", "/api/x", 204, ""},
		{"GET", "/other", 404, ""},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
		}
	}
}

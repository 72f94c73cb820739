package httpx

import (
	"net/http"
	"slices"
	"strings"
	"sync"
)

// AllowMux registers handlers on a mux and remembers, for every path registered with a method
// ("POST /v2/token"), which methods it serves. Finish then makes every other standard method on
// that path answer 405 Method Not Allowed with an Allow header naming the served ones (RFC 9110
// §15.5.6), written by the owner's notAllowed in the owner's error shape. Without it a wrong
// method falls through to a catch-all (the gateway's "/") and gets a misleading 404.
//
// The 405 handlers are method-specific patterns ("GET /v2/token"), registered only after every
// module has mounted: a method-less pattern would conflict with a gateway prefix route such as
// "GET /api/", and a pattern some other module serves stays that module's (a conflicting 405
// registration is skipped). Prefix patterns (a path ending in "/") and "{$}" patterns get none.
type AllowMux struct {
	mux        interface{ Handle(string, http.Handler) }
	notAllowed func(w http.ResponseWriter, r *http.Request, allow string)

	mu      sync.Mutex
	paths   []string            // in registration order
	methods map[string][]string // path → its registered methods
}

// standardMethods are the methods a 405 is registered for (RFC 9110 §9 plus PATCH).
var standardMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// NewAllowMux wraps mux. notAllowed writes the 405 body; the Allow header is set before it runs.
func NewAllowMux(mux interface{ Handle(string, http.Handler) }, notAllowed func(w http.ResponseWriter, r *http.Request, allow string)) *AllowMux {
	return &AllowMux{mux: mux, notAllowed: notAllowed, methods: map[string][]string{}}
}

// Handle registers pattern on the wrapped mux (panicking as ServeMux does on a bad or conflicting
// pattern) and remembers its method and path.
func (m *AllowMux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "{$}") {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	known, seen := m.methods[path]
	if !seen {
		m.paths = append(m.paths, path)
	}
	if !slices.Contains(known, method) {
		m.methods[path] = append(known, method)
	}
}

// Patterns lists the "METHOD /path" patterns registered through m (those it answers 405 around),
// path by path in registration order.
func (m *AllowMux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, path := range m.paths {
		for _, method := range m.methods[path] {
			out = append(out, method+" "+path)
		}
	}
	return out
}

// Finish registers the 405 answers. Call it once, after every module has mounted on the mux.
func (m *AllowMux) Finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, path := range m.paths {
		served := slices.Clone(m.methods[path])
		if slices.Contains(served, http.MethodGet) && !slices.Contains(served, http.MethodHead) {
			served = append(served, http.MethodHead) // ServeMux answers HEAD with the GET handler
		}
		slices.Sort(served)
		allow := strings.Join(served, ", ")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			m.notAllowed(w, r, allow)
		})
		for _, method := range standardMethods {
			if !slices.Contains(served, method) {
				tryHandle(m.mux, method+" "+path, h)
			}
		}
	}
}

// tryHandle registers pattern unless ServeMux refuses it (another handler owns it).
func tryHandle(mux interface{ Handle(string, http.Handler) }, pattern string, h http.Handler) {
	defer func() { _ = recover() }()
	mux.Handle(pattern, h)
}

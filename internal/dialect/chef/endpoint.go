package chef

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/posgate/posgate/internal/app"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/jsonrpc"
)

// MethodAuthenticate is the pairing method. Every other method outside the Authentication and rpc.
// namespaces is a data call, verified and forwarded upstream.
const MethodAuthenticate = "Authentication.authenticateClient"

// maxBodyBytes caps a JSON-RPC request body (lower when server.max_body_bytes is lower).
const maxBodyBytes = 1 << 20

// maxUpstreamBatchBytes caps an upstream answer posgate must parse to merge it into a mixed batch.
const maxUpstreamBatchBytes = 8 << 20

// HTTP answers of the endpoint (docs/dialects/chef.md):
//   - 200 with a JSON-RPC response (or an array of them for a batch) for every call answered,
//     protocol faults (-32700 … -32603) and Chef business errors (inside `result`) included;
//   - 204 with no body when every call was a notification;
//   - 415 when the Content-Type is not JSON, 413 when the body is over the cap (a -32600 body);
//   - 429 / 503 with Retry-After when throttled / when the store is unavailable, 502 / 504 when the
//     upstream of a data call failed (a -32603 or -32029 body with the call's id).
func (m *Module) serveRPC(w http.ResponseWriter, r *http.Request) {
	if !rpcContentType(r) {
		writeResponses(w, http.StatusUnsupportedMediaType, false, []jsonrpc.Response{
			jsonrpc.Failure(jsonrpc.Null, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, "Content-Type must be application/json (UTF-8)")),
		})
		return
	}
	if len(r.Header.Values("Authorization")) > 1 {
		// One credential, sent once: which of two tokens a device meant is not ours to guess.
		writeResponses(w, http.StatusBadRequest, false, []jsonrpc.Response{
			jsonrpc.Failure(jsonrpc.Null, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, "the request carries more than one Authorization header")),
		})
		return
	}
	limit := int64(maxBodyBytes)
	if s := m.svc.Config.Server.MaxBodyBytes; s > 0 && s < limit {
		limit = s
	}
	body, err := httpx.ReadBody(r, limit)
	if err != nil {
		if errs.CodeOf(err) == "body_too_large" {
			writeResponses(w, http.StatusRequestEntityTooLarge, false, []jsonrpc.Response{
				jsonrpc.Failure(jsonrpc.Null, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, fmt.Sprintf("body exceeds %d bytes", limit))),
			})
			return
		}
		// Broken framing (a malformed chunked body) or a client that stopped sending: answer,
		// so nobody mistakes an empty 200 for a result. The client may be gone already.
		writeResponses(w, http.StatusBadRequest, false, []jsonrpc.Response{
			jsonrpc.Failure(jsonrpc.Null, jsonrpc.NewError(jsonrpc.CodeParseError, "request body could not be read")),
		})
		return
	}
	b, perr := jsonrpc.Parse(body, jsonrpc.Limits{MaxBatch: m.cfg.maxBatch})
	if perr != nil {
		writeResponses(w, http.StatusOK, false, []jsonrpc.Response{jsonrpc.Failure(jsonrpc.Null, perr)})
		return
	}

	var local, data []int // indexes into b.Calls
	for i := range b.Calls {
		if m.isData(&b.Calls[i]) {
			data = append(data, i)
		} else {
			local = append(local, i)
		}
	}
	if len(data) > 0 && len(local) == 0 {
		m.serveData(w, r, body, b)
		return
	}
	m.serveMixed(w, r, b, local, data)
}

// rpcContentType accepts application/json and the two media types of the JSON-RPC over HTTP draft,
// in UTF-8 (a charset parameter naming anything else is refused: JSON is UTF-8, RFC 8259 §8.1).
// A JSON type is required so a web page cannot make a browser post a "simple" cross-site request.
func rpcContentType(r *http.Request) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/json-rpc" && mt != "application/jsonrequest") {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

// isData reports whether c is a data call to forward upstream.
func (m *Module) isData(c *jsonrpc.Call) bool {
	if c.Err != nil || c.Method == MethodAuthenticate || strings.HasPrefix(c.Method, "Authentication.") ||
		strings.HasPrefix(c.Method, "rpc.") || c.Method == "" {
		return false
	}
	return m.hasUpstream()
}

func (m *Module) hasUpstream() bool {
	return m.svc.Upstream != nil && m.svc.Config.Upstreams[m.cfg.upstream] != ""
}

// result is the answer to one call: a response (nil for a notification), the raw JSON of an
// upstream's answer to merge, and the HTTP status and Retry-After it calls for.
type result struct {
	resp       *jsonrpc.Response
	status     int
	retryAfter time.Duration
}

// local answers a call posgate handles itself.
func (m *Module) local(ctx context.Context, r *http.Request, c *jsonrpc.Call) result {
	if c.Err != nil {
		resp := jsonrpc.Failure(c.ID, c.Err)
		return result{resp: &resp, status: http.StatusOK}
	}
	if c.Method != MethodAuthenticate {
		if c.IsNotification() {
			return result{status: http.StatusOK}
		}
		resp := jsonrpc.Failure(c.ID, jsonrpc.NewError(jsonrpc.CodeMethodNotFound, nil))
		return result{resp: &resp, status: http.StatusOK}
	}
	// authenticateClient as a notification changes nothing: nobody could receive the token.
	if c.IsNotification() {
		return result{status: http.StatusOK}
	}
	id, perr := parseIdentity(c.Params, r)
	if perr != nil {
		resp := jsonrpc.Failure(c.ID, perr)
		return result{resp: &resp, status: http.StatusOK}
	}
	res, err := m.pairing.authenticateClient(ctx, r, id)
	if err != nil {
		if ctx.Err() != nil {
			return result{status: 499} // the caller went away; nothing is written
		}
		return m.failed(c.ID, err)
	}
	resp := jsonrpc.Response{ID: c.ID, Result: res}
	return result{resp: &resp, status: http.StatusOK}
}

// failed turns a non-business error into the call's JSON-RPC error and the HTTP status.
func (m *Module) failed(id json.RawMessage, err error) result {
	status, rpcErr := protocolError(err)
	var ra time.Duration
	if e, ok := errs.As(err); ok {
		ra = e.RetryAfter
		if e.Kind == errs.Unavailable && ra == 0 {
			ra = 5 * time.Second
		}
		if e.Kind == errs.Internal {
			m.svc.Log.Error("chef: internal error", "error", err.Error())
		}
	} else {
		m.svc.Log.Error("chef: internal error", "error", err.Error())
	}
	resp := jsonrpc.Failure(id, rpcErr)
	return result{resp: &resp, status: status, retryAfter: ra}
}

// serveData handles a body made only of data calls: the device token is verified once, then the
// body is forwarded unchanged to the upstream, whose answer is streamed back as it is.
func (m *Module) serveData(w http.ResponseWriter, r *http.Request, body []byte, b *jsonrpc.Body) {
	ctx := r.Context()
	addr := auth.Addr(r)
	if err := m.throttleCheck(ctx, addr); err != nil {
		m.answerAll(w, b.Batch, b.Calls, func(c *jsonrpc.Call) result { return m.failed(c.ID, err) })
		return
	}
	p, f := m.verifyDevice(ctx, bearerToken(r))
	if f != nil {
		m.throttleFail(ctx, addr, f)
		m.answerAll(w, b.Batch, b.Calls, func(c *jsonrpc.Call) result {
			resp := jsonrpc.Response{ID: c.ID, Result: failureResult(f)}
			return result{resp: &resp, status: http.StatusOK}
		})
		return
	}
	if p == nil {
		err := unavailable(errors.New("token verification unavailable"))
		m.answerAll(w, b.Batch, b.Calls, func(c *jsonrpc.Call) result { return m.failed(c.ID, err) })
		return
	}
	r.Body = http.NoBody
	fwd := r.Clone(ctx)
	fwd.Body = readCloser{bytes.NewReader(body)}
	fwd.ContentLength = int64(len(body))
	fwd.Header.Del("Content-Length")
	writeErr := func(w http.ResponseWriter, _ *http.Request, err error) {
		m.answerAll(w, b.Batch, b.Calls, func(c *jsonrpc.Call) result { return m.failed(c.ID, err) })
	}
	if allNotifications(b.Calls) {
		// JSON-RPC 2.0 §4.1: a notification is never answered. The upstream gets it; its answer
		// (a body, an error status) is dropped and the caller gets 204, as for local notifications.
		m.svc.Upstream.Forward(discardResponse{}, fwd, m.cfg.upstream, p, writeErr, nil)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	m.svc.Upstream.Forward(w, fwd, m.cfg.upstream, p, writeErr, nil)
}

// allNotifications reports whether every call of a body is a notification (no id).
func allNotifications(calls []jsonrpc.Call) bool {
	for i := range calls {
		if !calls[i].IsNotification() {
			return false
		}
	}
	return len(calls) > 0
}

// discardResponse is a ResponseWriter that drops what is written to it: the upstream's answer to
// notifications.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (discardResponse) WriteHeader(int)             {}

// answerAll answers every call of a body with answer (notifications get nothing).
func (m *Module) answerAll(w http.ResponseWriter, batch bool, calls []jsonrpc.Call, answer func(*jsonrpc.Call) result) {
	rs := make([]result, 0, len(calls))
	for i := range calls {
		if calls[i].IsNotification() {
			continue
		}
		rs = append(rs, answer(&calls[i]))
	}
	writeResults(w, batch, rs, nil)
}

// serveMixed answers a body holding calls posgate handles (pairing, invalid calls, unknown
// methods), possibly with data calls: the local calls run concurrently (pairing calls may be held
// open), the data calls are forwarded upstream as one batch after the token is verified, and the
// answers are merged into one array.
func (m *Module) serveMixed(w http.ResponseWriter, r *http.Request, b *jsonrpc.Body, local, data []int) {
	ctx := r.Context()
	for _, i := range local {
		if c := &b.Calls[i]; c.Err == nil && c.Method == MethodAuthenticate && !c.IsNotification() {
			// A held call may last the approval window; keep the server's write timeout from cutting it.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(m.cfg.approvalTimeout + 30*time.Second))
			break
		}
	}
	results := make([]result, len(b.Calls))
	var wg sync.WaitGroup
	for _, i := range local {
		wg.Go(func() { results[i] = m.local(ctx, r, &b.Calls[i]) })
	}
	var upstream [][]byte
	if len(data) > 0 {
		upstream = m.forwardCaptured(r, b, data, results)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	var rs []result
	for i := range b.Calls {
		if results[i].status == 499 {
			return
		}
		if results[i].resp != nil || results[i].status != http.StatusOK {
			rs = append(rs, results[i])
		}
	}
	if !b.Batch {
		writeResults(w, false, rs, nil)
		return
	}
	writeResults(w, true, rs, upstream)
}

// forwardCaptured verifies the token and forwards the data calls of a mixed batch as one batch,
// returning the upstream's answers to merge; failures are written into results.
func (m *Module) forwardCaptured(r *http.Request, b *jsonrpc.Body, data []int, results []result) [][]byte {
	ctx := r.Context()
	fail := func(answer func(c *jsonrpc.Call) result) [][]byte {
		for _, i := range data {
			if !b.Calls[i].IsNotification() {
				results[i] = answer(&b.Calls[i])
			}
		}
		return nil
	}
	addr := auth.Addr(r)
	if err := m.throttleCheck(ctx, addr); err != nil {
		return fail(func(c *jsonrpc.Call) result { return m.failed(c.ID, err) })
	}
	p, f := m.verifyDevice(ctx, bearerToken(r))
	if f != nil {
		m.throttleFail(ctx, addr, f)
		return fail(func(c *jsonrpc.Call) result {
			resp := jsonrpc.Response{ID: c.ID, Result: failureResult(f)}
			return result{resp: &resp, status: http.StatusOK}
		})
	}
	if p == nil {
		err := unavailable(errors.New("token verification unavailable"))
		return fail(func(c *jsonrpc.Call) result { return m.failed(c.ID, err) })
	}
	var sub bytes.Buffer
	sub.WriteByte('[')
	for n, i := range data {
		if n > 0 {
			sub.WriteByte(',')
		}
		sub.Write(b.Calls[i].Raw)
	}
	sub.WriteByte(']')
	fwd := r.Clone(ctx)
	fwd.Body = readCloser{bytes.NewReader(sub.Bytes())}
	fwd.ContentLength = int64(sub.Len())
	fwd.Header.Del("Content-Length")
	cw := &captureWriter{header: http.Header{}}
	var upErr error
	m.svc.Upstream.Forward(cw, fwd, m.cfg.upstream, p, func(_ http.ResponseWriter, _ *http.Request, err error) { upErr = err }, nil)
	if upErr != nil {
		return fail(func(c *jsonrpc.Call) result { return m.failed(c.ID, upErr) })
	}
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	var elems []json.RawMessage
	if status == http.StatusNoContent || (status == http.StatusOK && len(bytes.TrimSpace(cw.body.Bytes())) == 0) {
		return nil // every data call was a notification
	}
	if cw.overflow || status != http.StatusOK || json.Unmarshal(cw.body.Bytes(), &elems) != nil {
		detail := fmt.Sprintf("upstream answered HTTP %d without a JSON-RPC batch response", status)
		return fail(func(c *jsonrpc.Call) result {
			resp := jsonrpc.Failure(c.ID, jsonrpc.NewError(jsonrpc.CodeInternalError, detail))
			return result{resp: &resp, status: http.StatusBadGateway}
		})
	}
	out := make([][]byte, 0, len(elems))
	for _, e := range elems {
		out = append(out, bytes.TrimSpace(e))
	}
	return out
}

// writeResults writes the answers: nothing but 204 when there is none, one object for a single
// call, an array for a batch (with upstream answers appended verbatim). The status is the most
// severe of the results (200 unless something failed).
func writeResults(w http.ResponseWriter, batch bool, rs []result, upstream [][]byte) {
	status := http.StatusOK
	var retry time.Duration
	resps := make([]jsonrpc.Response, 0, len(rs))
	for _, r := range rs {
		if r.status > status {
			status = r.status
		}
		if r.retryAfter > retry {
			retry = r.retryAfter
		}
		if r.resp != nil {
			resps = append(resps, *r.resp)
		}
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryData(retry).RetryAfter))
	}
	if len(resps) == 0 && len(upstream) == 0 {
		httpx.NoStore(w)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !batch && len(upstream) == 0 && len(resps) == 1 {
		writeResponses(w, status, false, resps)
		return
	}
	buf := []byte{'['}
	for _, r := range resps {
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = r.AppendJSON(buf)
	}
	for _, u := range upstream {
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = append(buf, u...)
	}
	buf = append(buf, ']')
	writeBody(w, status, buf)
}

// writeResponses writes one response (batch false) or an array.
func writeResponses(w http.ResponseWriter, status int, batch bool, rs []jsonrpc.Response) {
	var body []byte
	if batch || len(rs) != 1 {
		body = jsonrpc.EncodeBatch(rs)
	} else {
		body = rs[0].AppendJSON(nil)
	}
	writeBody(w, status, body)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	httpx.NoStore(w)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// readCloser gives a bytes.Reader a no-op Close for a request body.
type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// captureWriter records an upstream answer for a mixed batch, up to maxUpstreamBatchBytes.
type captureWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body.Len()+len(p) > maxUpstreamBatchBytes {
		c.overflow = true
		return 0, errors.New("chef: upstream batch answer too large")
	}
	return c.body.Write(p)
}

// WriteMethodNotAllowed answers a wrong method on a JSON-RPC path with a JSON-RPC error object
// (the server has set Allow): JSON-RPC over HTTP is POST only.
func (m *Module) WriteMethodNotAllowed(w http.ResponseWriter, _ *http.Request, allow string) {
	writeResponses(w, http.StatusMethodNotAllowed, false, []jsonrpc.Response{
		jsonrpc.Failure(jsonrpc.Null, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, "method not allowed; use "+allow)),
	})
}

var _ app.MethodNotAllowedWriter = (*Module)(nil)

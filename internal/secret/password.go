package secret

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new password hashes.
//
// 64 MiB of memory and 2 passes over 2 lanes keep a login within the 50–100 ms it may take on a
// 2-core machine (`go test -bench Password ./internal/secret/`; figures in docs/BENCHMARKS.md).
// That is RFC 9106's second recommended memory (64 MiB; its t=3, p=4 would cost more passes on
// 2 cores for no gain) and three times OWASP's minimum (19 MiB, t=2, p=1).
// Every hash is a PHC string that records its own parameters, so these can be raised later: old
// hashes keep verifying with the parameters they were made with, and NeedsRehash tells the caller
// to re-hash at the next successful login.
const (
	argonMemoryKiB = 64 * 1024
	argonTime      = 2
	argonThreads   = 2
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// MaxPasswordBytes bounds a password. Argon2 pre-hashes its input, so a long password is not
// expensive, but no one types a kilobyte and an unbounded input is an invitation.
const MaxPasswordBytes = 1024

// Bounds on parameters read back from a stored hash, so a corrupted or hostile row cannot make a
// login allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 16
	maxThreads   = 16
)

var (
	// ErrEmptyPassword is returned by HashPassword for "".
	ErrEmptyPassword = errors.New("secret: password is empty")
	// ErrPasswordTooLong is returned by HashPassword for a password over MaxPasswordBytes.
	ErrPasswordTooLong = fmt.Errorf("secret: password is longer than %d bytes", MaxPasswordBytes)
)

// slots bounds how many argon2id computations run at once. Each takes 64 MiB; without a bound a
// burst of logins (or an attacker) could make the process allocate memory without limit.
// CheckPassword and DummyCheck queue for a slot without a bound (admin tools, tests); a server
// path that an anonymous caller can reach uses CheckPasswordContext and DummyCheckContext, which
// give up when their context ends, so the queue in front of the slots stays short.
var slots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// ErrBusy is returned by CheckPasswordContext and DummyCheckContext when no slot became free
// before the context ended. Nothing was checked: the caller should answer "try again shortly"
// (503 with Retry-After), not "wrong password".
var ErrBusy = errors.New("secret: every password-check slot stayed busy")

// acquire takes a slot, waiting until ctx ends. A free slot is taken even if ctx has already
// ended, so a check whose caller hung up still runs when it costs no one any waiting.
func acquire(ctx context.Context) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%w)", ErrBusy, context.Cause(ctx))
	}
}

// argonKey computes the argon2id key once a slot is free. ctx bounds only the wait for the slot:
// a computation that has started always finishes (it cannot be interrupted, and its result is
// what the caller counts and audits).
func argonKey(ctx context.Context, pw, salt []byte, t, m uint32, p uint8, keyLen uint32) ([]byte, error) {
	if err := acquire(ctx); err != nil {
		return nil, err
	}
	inFlight.Add(1)
	cycles := gcCycles()
	defer func() {
		// The count drops before the slot is freed, so a check waiting for the slot counts as
		// in flight before it allocates its buffer.
		last := inFlight.Add(-1) == 0
		<-slots
		if last && gcCycles() != cycles {
			collectAfterArgon(uint64(m) * 1024)
		}
	}()
	return argon2.IDKey(pw, salt, t, m, p, keyLen), nil
}

// inFlight counts the argon2id computations running.
var inFlight atomic.Int32

// collectAfterArgon keeps an argon2id buffer from setting the heap goal. The buffer (64 MiB) is
// allocated at once, which usually starts a collection while it is in use, and the collector then counts it as
// live and sets the next heap goal to (1 + GOGC/100) times a heap that includes it — 365 MiB at
// posgate's gc_percent of 400 for a heap of a few MiB. The buffer is garbage a moment later, but
// the heap grows to that goal before the next collection, and on its way every new span is
// memory never touched before: a page fault and the kernel zeroing the page, about a quarter
// of posgate's CPU per hub round trip in the benchmark after one POS logged in (docs/BENCHMARKS.md
// "gocpu"), and hundreds of MiB of resident memory. So after the last computation of a burst
// that saw a collection, when the buffer was a large part of what that collection found live,
// one more collection sets the goal from the heap without it. "A large part" is at least half:
// the collection then marks at most as much as the buffer (the buffer itself is garbage by now),
// a few milliseconds against the 50–100 ms of the computation, and about one for posgate's
// usual heap of a few MiB. In a process whose heap is large anyway (a hub with thousands of
// sockets) the buffer inflates the goal little and nothing is done.
//
// The collection runs on its own goroutine, so the check's caller (a login, a POS auth) does not
// wait for it; one runs at a time.
func collectAfterArgon(buffer uint64) {
	if live := heapLive(); live != 0 && live <= 2*buffer && collecting.CompareAndSwap(false, true) {
		go func() {
			defer collecting.Store(false)
			runtime.GC()
			collected.Add(1)
		}()
	}
}

// collecting is set while collectAfterArgon's collection runs; collected counts them (tests).
var (
	collecting atomic.Bool
	collected  atomic.Uint64
)

// gcCycles is the number of completed collections.
func gcCycles() uint64 { return readGCMetric("/gc/cycles/total:gc-cycles") }

// heapLive is the heap the last collection found live, 0 when unknown.
func heapLive() uint64 { return readGCMetric("/gc/heap/live:bytes") }

func readGCMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// HashPassword returns the argon2id PHC string of pw with a fresh random salt:
// "$argon2id$v=19$m=65536,t=2,p=2$<salt>$<hash>" (salt and hash unpadded standard base64).
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", ErrEmptyPassword
	}
	if len(pw) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key, err := argonKey(context.Background(), []byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	if err != nil {
		return "", err
	}
	return encodePHC(phc{memory: argonMemoryKiB, time: argonTime, threads: argonThreads, salt: salt, key: key}), nil
}

// CheckPassword reports whether pw matches the argon2id PHC string hash. A malformed hash, an
// empty or over-long password all answer false after spending the time of a real check, so the
// answer's timing tells nothing about why it failed.
func CheckPassword(hash, pw string) bool {
	ok, _ := CheckPasswordContext(context.Background(), hash, pw) // never ErrBusy: Background never ends
	return ok
}

// CheckPasswordContext is CheckPassword that waits for a free argon2id slot only until ctx ends;
// then it returns ErrBusy and has checked nothing. Once the check has started, ctx no longer
// matters: it runs to its end.
func CheckPasswordContext(ctx context.Context, hash, pw string) (bool, error) {
	p, err := decodePHC(hash)
	if err != nil || pw == "" || len(pw) > MaxPasswordBytes {
		return false, DummyCheckContext(ctx)
	}
	key, err := argonKey(ctx, []byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	if err != nil {
		return false, err
	}
	return Equal(key, p.key), nil
}

// NeedsRehash reports whether hash was made with parameters other than the current ones (or is
// not a hash this package can read): after a successful CheckPassword the caller should store
// HashPassword(pw) instead.
func NeedsRehash(hash string) bool {
	p, err := decodePHC(hash)
	if err != nil {
		return true
	}
	return p.memory != argonMemoryKiB || p.time != argonTime || p.threads != argonThreads ||
		len(p.salt) != argonSaltLen || len(p.key) != argonKeyLen
}

// dummyHash is the hash of a random password nobody knows, made once with the current
// parameters (a test keeps it in step with them). DummyCheck computes against it.
const dummyHash = "$argon2id$v=19$m=65536,t=2,p=2$jAfp6Y5FHofGOZZrYxGFXg$V64l9uOM6v+pR709svzOrpks68JsXXi955uuc0DQOQE"

var dummyParams = func() phc {
	p, err := decodePHC(dummyHash)
	if err != nil {
		panic("secret: dummyHash is malformed: " + err.Error())
	}
	return p
}()

// DummyCheck spends the time of a failed CheckPassword. Call it when the user does not exist, so
// that "no such user" and "wrong password" take the same time and usernames cannot be enumerated
// by timing.
func DummyCheck() { _ = DummyCheckContext(context.Background()) }

// DummyCheckContext is DummyCheck that waits for a free argon2id slot only until ctx ends (then
// ErrBusy), exactly as CheckPasswordContext does, so the two stay indistinguishable under load too.
func DummyCheckContext(ctx context.Context) error {
	key, err := argonKey(ctx, []byte("posgate dummy password check"), dummyParams.salt, dummyParams.time,
		dummyParams.memory, dummyParams.threads, uint32(len(dummyParams.key)))
	if err != nil {
		return err
	}
	Equal(key, dummyParams.key)
	return nil
}

// phc is a decoded argon2id PHC string.
type phc struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

var phcB64 = base64.RawStdEncoding.Strict()

func encodePHC(p phc) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		phcB64.EncodeToString(p.salt), phcB64.EncodeToString(p.key))
}

var errBadHash = errors.New("secret: not an argon2id hash this version understands")

// decodePHC parses "$argon2id$v=19$m=…,t=…,p=…$salt$hash" exactly (parameters in that order, no
// extras), and refuses parameters outside sane bounds.
func decodePHC(s string) (phc, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return phc{}, errBadHash
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return phc{}, errBadHash
	}
	m, ok1 := phcParam(params[0], "m=", maxMemoryKiB)
	t, ok2 := phcParam(params[1], "t=", maxTime)
	p, ok3 := phcParam(params[2], "p=", maxThreads)
	if !ok1 || !ok2 || !ok3 || m < 8*p { // argon2 requires at least 8 KiB per lane
		return phc{}, errBadHash
	}
	salt, err := phcB64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return phc{}, errBadHash
	}
	key, err := phcB64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return phc{}, errBadHash
	}
	return phc{memory: m, time: t, threads: uint8(p), salt: salt, key: key}, nil
}

// phcParam parses "name=decimal" with 1 ≤ value ≤ limit and no leading zeros or signs.
func phcParam(s, name string, limit uint32) (uint32, bool) {
	v, ok := strings.CutPrefix(s, name)
	if !ok || v == "" || v[0] == '0' || len(v) > 10 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > uint64(limit) {
		return 0, false
	}
	return uint32(n), true
}

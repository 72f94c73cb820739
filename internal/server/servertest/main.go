package servertest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// StartMain starts an instance outside of a test, from TestMain, for the Example functions of a
// package (an Example has no *testing.T). It returns the instance, a testing.TB for its helpers
// (Admin) whose Fatal panics, and a function that stops the instance and removes its temporary
// directory; call it after m.Run.
func StartMain(o Options) (*Instance, testing.TB, func()) {
	tb := &mainTB{}
	inst := Start(tb, o)
	return inst, tb, tb.cleanup
}

// mainTB is the part of testing.TB that Start uses, for a process-wide instance. The embedded
// interface is nil: a method Start does not use would panic, which a test run would show at once.
type mainTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
	failed   bool
}

func (m *mainTB) Helper() {}

func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "posgate-example-")
	if err != nil {
		panic(err)
	}
	m.mu.Lock()
	m.dirs = append(m.dirs, d)
	m.mu.Unlock()
	return d
}

func (m *mainTB) Cleanup(f func()) {
	m.mu.Lock()
	m.cleanups = append(m.cleanups, f)
	m.mu.Unlock()
}

func (m *mainTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (m *mainTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (m *mainTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (m *mainTB) Errorf(format string, args ...any) {
	m.mu.Lock()
	m.failed = true
	m.mu.Unlock()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (m *mainTB) Failed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}

func (m *mainTB) cleanup() {
	m.mu.Lock()
	fs, ds := m.cleanups, m.dirs
	m.cleanups, m.dirs = nil, nil
	m.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	for _, d := range ds {
		os.RemoveAll(d)
	}
}

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"unicode"
)

// maxSecretFile bounds what readSecret reads: a secret is a short line, so a larger input is
// not a secret file (a certificate, a log, a device) and is refused before it is read whole.
const maxSecretFile = 4096

// secretInput is one secret a command takes, and every way it may be given. All the CLI's
// secrets (the admin token, the admin API's password/AuthSecret/token values, the simulators'
// and `posgate token`'s credentials) are read through it, so they follow the same rules.
type secretInput struct {
	what   string // the secret's name in messages: "admin token", "password"
	from   string // how file was given, for messages: "--token-file"
	file   string // where to read it (readSecret): a path, "-" for standard input, "" for none
	argIs  string // how arg was given, for the warning: "--token"
	arg    string // the secret itself from the command line: used, with a warning
	env    string // the variable read when neither is given, or ""
	safer  string // the safer ways, named by the warning: "--token-file FILE or $POSGATE_ADMIN_TOKEN"
	phrase bool   // chosen by a person (password, AuthSecret): may hold spaces
}

// get returns the secret: the command line's (with a warning on stderr that never echoes it),
// else the file's, else the variable's; "" when none is given. Both a file and the command
// line is a usage error.
func (s secretInput) get(env Env) (string, error) {
	switch {
	case s.arg != "" && s.file != "":
		return "", usagef("give the %s once: %s or %s, not both", s.what, s.argIs, s.from)
	case s.arg != "":
		fmt.Fprintf(orDiscard(env.Stderr), "posgate: warning: %s shows the %s to every user of this machine (ps, /proc/<pid>/cmdline) and leaves it in the shell history; use %s instead\n", s.argIs, s.what, s.safer)
		return s.arg, nil
	case s.file != "":
		return readSecret(env, s.what, s.from, s.file, s.phrase)
	case s.env != "":
		return env.Getenv(s.env), nil
	}
	return "", nil
}

// readSecret reads a secret from path ("-" is standard input); from names where it was given
// and what the secret, in errors. Like ssh with a private key, it refuses a regular file that
// its group or other users may access (any of the mode bits 077: chmod 600 fixes it), whether
// named or redirected to standard input; a pipe (a shell's <(command), `cmd |`) or a terminal
// holds nothing at rest and is read as it is. The input is the secret alone, optionally followed
// by one newline ("\n" or "\r\n"); from a terminal, the first line. An empty input, one larger
// than maxSecretFile bytes, or one with a control character (a second line, a NUL) is refused,
// and so is white space unless phrase (a password may hold spaces; a token never does). No
// error quotes the input.
func readSecret(env Env, what, from, path string, phrase bool) (string, error) {
	r, name := orEmpty(env.Stdin), "- (standard input)"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", from, err)
		}
		defer f.Close()
		r, name = f, path
	}
	terminal := false
	if f, ok := r.(*os.File); ok {
		fi, err := f.Stat() // the file opened, not whatever the path names by now
		if err != nil {
			return "", fmt.Errorf("%s: %w", from, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("%s %s is a directory, not a file holding the %s", from, name, what)
		}
		if perm := fi.Mode().Perm(); fi.Mode().IsRegular() && perm&0o077 != 0 && runtime.GOOS != "windows" {
			fix := "chmod 600 " + path
			if path == "-" {
				fix = "chmod 600 the file it comes from"
			}
			return "", fmt.Errorf("%s %s: permissions %04o are too open: the %s must be readable by its owner only (%s)", from, name, perm, what, fix)
		}
		terminal = fi.Mode()&os.ModeCharDevice != 0
	}
	data, err := readUpTo(r, maxSecretFile+1, terminal)
	if err != nil {
		return "", fmt.Errorf("%s: %w", from, err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("%s %s is larger than %d bytes: not a file holding the %s", from, name, maxSecretFile, what)
	}
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s %s is empty: write the %s in it", from, name, what)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || !phrase && unicode.IsSpace(r) }) {
		found := "white space, a control character or a second line"
		if phrase {
			found = "a control character or a second line"
		}
		return "", fmt.Errorf("%s %s holds more than the %s (%s): write the %s alone, optionally followed by a newline", from, name, what, found, what)
	}
	return s, nil
}

// readUpTo reads r until its end or max bytes; with line, also until the end of the first line
// (a terminal ends its input with a newline, not an end of file).
func readUpTo(r io.Reader, max int, line bool) ([]byte, error) {
	var data []byte
	buf := make([]byte, 512)
	for len(data) < max {
		n, err := r.Read(buf[:min(len(buf), max-len(data))])
		data = append(data, buf[:n]...)
		if errors.Is(err, io.EOF) || line && bytes.IndexByte(data, '\n') >= 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return data, nil
}

package cli

import "strings"

// AdminCommandRoutes lists the admin API route ("METHOD /path") each remote admin command calls,
// by command name.
func AdminCommandRoutes() map[string]string {
	out := map[string]string{}
	for _, c := range commands {
		if c.local == nil {
			out[strings.Join(c.words, " ")] = c.method + " " + c.path
		}
	}
	return out
}

// HelpWidth is the widest line `posgate admin help` may print.
const HelpWidth = helpWidth

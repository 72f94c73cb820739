package cli

// The admin commands, one line each: `posgate admin <words…> [ARGS] [flags]` → an admin API call.
// Positional arguments fill {placeholders} in the path (or, with a "body:" prefix, a JSON body
// field); flags become body fields or query parameters.

// field kinds
const (
	kString = iota
	kList   // comma-separated → JSON array
	kBool
	kSecret // a string; "-" reads it from standard input (keeps it out of `ps` and shell history)
	kInt
)

type field struct {
	flag     string // command-line flag (without --)
	json     string // JSON body field or query parameter
	kind     int
	required bool
	usage    string
}

type command struct {
	words   []string                         // e.g. {"doshii", "vendors", "create"}
	usage   string                           // the flags shown in `admin help` when they are not body or query fields
	local   func(args []string, env Env) int // runs on this machine instead of calling the API
	method  string
	path    string   // relative to /admin/api/v1; {name} filled from args
	args    []string // positional argument names, in order; "body:token" fills a body field
	body    []field
	query   []field
	list    string   // key of the list in the answer, for table output
	columns []string // table columns (for lists)
	help    string
}

var commands = []command{
	{words: w("clients create"), method: "POST", path: "/clients", help: "create an OAuth client (secrets are shown once)", body: []field{
		{flag: "name", json: "name", required: true, usage: "human label"},
		{flag: "grant-types", json: "grant_types", kind: kList, required: true, usage: "client_credentials,password,refresh_token,urn:ietf:params:oauth:grant-type:jwt-bearer"},
		{flag: "scopes", json: "scopes", kind: kList, usage: "scopes the client may get"},
		{flag: "audiences", json: "audiences", kind: kList, usage: "audiences the client may request"},
		{flag: "apikey", json: "apikey", kind: kBool, usage: "the client_id is a jackpot API key"},
		{flag: "assertion-secret", json: "assertion_secret", kind: kBool, usage: "also generate a jackpot API signature"},
	}},
	{words: w("clients list"), method: "GET", path: "/clients", list: "clients", columns: []string{"id", "name", "client_id_hint", "grant_types", "disabled"}, help: "list clients"},
	{words: w("clients get"), method: "GET", path: "/clients/{id}", args: []string{"id"}, help: "show a client"},
	{words: w("clients disable"), method: "POST", path: "/clients/{id}/disable", args: []string{"id"}, help: "disable a client"},
	{words: w("users create"), method: "POST", path: "/users", help: "create a user (chimpy password grant)", body: []field{
		{flag: "username", json: "username", required: true},
		{flag: "password", json: "password", kind: kSecret, required: true, usage: `password, or "-" to read it from standard input`},
	}},
	{words: w("users get"), method: "GET", path: "/users/{id}", args: []string{"id"}, help: "show a user"},
	{words: w("users list"), method: "GET", path: "/users", list: "users", columns: []string{"id", "username", "disabled", "created_at"}, help: "list users"},
	{words: w("users disable"), method: "POST", path: "/users/{id}/disable", args: []string{"id"}, help: "disable a user (revokes their sessions)"},
	{words: w("users enable"), method: "POST", path: "/users/{id}/enable", args: []string{"id"}, help: "enable a disabled user"},
	{words: w("users password"), method: "POST", path: "/users/{id}/password", args: []string{"id"}, help: "set a user's password", body: []field{
		{flag: "password", json: "password", kind: kSecret, required: true, usage: `new password, or "-" to read it from standard input`},
	}},
	{words: w("keys list"), method: "GET", path: "/keys", list: "keys", columns: []string{"kid", "alg", "state", "created_at", "expires_at"}, help: "list signing keys"},
	{words: w("keys rotate"), method: "POST", path: "/keys/rotate", list: "keys", columns: []string{"kid", "alg", "state", "created_at", "expires_at"}, help: "rotate: next becomes active"},
	{words: w("tokens revoke"), method: "POST", path: "/tokens/revoke", args: []string{"body:token"}, help: `revoke a posgate token (TOKEN, or "-" to read it from standard input)`},
	{words: w("tokens introspect"), method: "POST", path: "/tokens/introspect", args: []string{"body:token"}, help: `show whether a posgate token is active, and its claims (TOKEN, or "-" for standard input)`},
	{words: w("audit list"), method: "GET", path: "/audit", list: "events", columns: []string{"at", "actor", "action", "target", "address", "outcome", "detail"}, help: "show the audit trail, newest first", query: []field{
		{flag: "limit", json: "limit", kind: kInt, usage: "how many events (1–1000, default 100)"},
	}},
	{words: w("doshii vendors create"), method: "POST", path: "/doshii/vendors", help: "create a doshii vendor (the vendor key is shown once)", body: []field{
		{flag: "api-name", json: "api_name", required: true},
	}},
	{words: w("doshii vendors list"), method: "GET", path: "/doshii/vendors", list: "vendors", columns: []string{"id", "api_name", "created_at"}, help: "list doshii vendors"},
	{words: w("doshii vendors rotate-key"), method: "POST", path: "/doshii/vendors/{id}/rotate-key", args: []string{"id"}, help: "issue a new vendor key (the old one keeps working for doshii.key_overlap)"},
	{words: w("doshii vendors disable"), method: "POST", path: "/doshii/vendors/{id}/disable", args: []string{"id"}, help: "disable a vendor (its sockets are closed, its keys refused)"},
	{words: w("doshii vendors enable"), method: "POST", path: "/doshii/vendors/{id}/enable", args: []string{"id"}, help: "enable a disabled vendor"},
	{words: w("doshii vendors delete"), method: "DELETE", path: "/doshii/vendors/{id}", args: []string{"id"}, help: "delete a vendor with its locations (sockets closed, credentials refused)"},
	{words: w("doshii locations list"), method: "GET", path: "/doshii/locations", list: "locations", columns: []string{"id", "name", "vendor_id", "organisation_id", "disabled", "online", "disconnected_date"}, help: "list doshii locations with their online state", query: []field{
		{flag: "vendor", json: "vendor", usage: "only this vendor's locations (vendor id)"},
	}},
	{words: w("doshii locations get"), method: "GET", path: "/doshii/locations/{id}", args: []string{"id"}, help: "show a doshii location (online, disconnected since)"},
	{words: w("doshii locations disable"), method: "POST", path: "/doshii/locations/{id}/disable", args: []string{"id"}, help: "disable a location (its socket is closed, its token refused)"},
	{words: w("doshii locations enable"), method: "POST", path: "/doshii/locations/{id}/enable", args: []string{"id"}, help: "enable a disabled location"},
	{words: w("doshii locations rotate-token"), method: "POST", path: "/doshii/locations/{id}/rotate-token", args: []string{"id"}, help: "issue a new location token (shown once; the old one stops working)"},
	{words: w("doshii locations delete"), method: "DELETE", path: "/doshii/locations/{id}", args: []string{"id"}, help: "delete a location (its sockets closed, its token refused)"},
	{words: w("chef devices list"), method: "GET", path: "/chef/devices", list: "devices", columns: []string{"id", "label", "state", "address", "user_agent", "first_seen"}, help: "list chef devices", query: []field{
		{flag: "state", json: "state", usage: "pending, approved, declined or revoked"},
	}},
	{words: w("chef devices get"), method: "GET", path: "/chef/devices/{id}", args: []string{"id"}, help: "show a chef device"},
	{words: w("chef devices approve"), method: "POST", path: "/chef/devices/{id}/approve", args: []string{"id"}, help: "approve a pending device"},
	{words: w("chef devices decline"), method: "POST", path: "/chef/devices/{id}/decline", args: []string{"id"}, help: "decline a pending device"},
	{words: w("chef devices revoke"), method: "POST", path: "/chef/devices/{id}/revoke", args: []string{"id"}, help: "revoke an approved device"},
	{words: w("orderpay outlets create"), method: "POST", path: "/orderpay/outlets", help: "create an orderpay outlet", body: []field{
		{flag: "provider-outlet-id", json: "provider_outlet_id", required: true},
		{flag: "pos-remote-id", json: "pos_remote_id", required: true},
		{flag: "provider-id", json: "provider_id", kind: kInt, required: true, usage: "ProviderID sent to the POS in every request"},
		{flag: "provider-name", json: "provider_name", required: true, usage: "ProviderName sent to the POS (at most 64 characters)"},
		{flag: "auth-secret", json: "auth_secret", kind: kSecret, usage: `AuthSecret, or "-" to read it from standard input; default: generated (shown once)`},
	}},
	{words: w("orderpay outlets list"), method: "GET", path: "/orderpay/outlets", list: "outlets", columns: []string{"id", "provider_outlet_id", "pos_remote_id", "provider_name", "disabled", "online", "connected_since", "replica"}, help: "list orderpay outlets with their connection state"},
	{words: w("orderpay outlets get"), method: "GET", path: "/orderpay/outlets/{id}", args: []string{"id"}, help: "show an orderpay outlet (online, connected since, replica)"},
	{words: w("orderpay outlets secret"), method: "POST", path: "/orderpay/outlets/{id}/secret", args: []string{"id"}, help: "set or generate an outlet's AuthSecret (a generated one is shown once)", body: []field{
		{flag: "auth-secret", json: "auth_secret", kind: kSecret, usage: `new AuthSecret, or "-" to read it from standard input; default: generated`},
	}},
	{words: w("orderpay outlets disable"), method: "POST", path: "/orderpay/outlets/{id}/disable", args: []string{"id"}, help: "disable an outlet (its socket is closed, auth refused)"},
	{words: w("orderpay outlets enable"), method: "POST", path: "/orderpay/outlets/{id}/enable", args: []string{"id"}, help: "enable a disabled outlet"},
	{words: w("jackpot clients rotate-signature"), method: "POST", path: "/clients/{id}/rotate-assertion-secret", args: []string{"id"}, help: "issue a new jackpot API signature (shown once)"},
	{words: w("gateway routes"), method: "GET", path: "/gateway/routes", list: "routes", columns: []string{"methods", "path", "auth", "upstream", "scopes", "audience"}, help: "list the gateway's route table"},
	{words: w("gateway signing-key"), local: gatewaySigningKey, usage: "[--config FILE] [--data-dir DIR]", help: "print the key upstreams verify X-Posgate-Signature with (reads the data dir; no API call)"},
}

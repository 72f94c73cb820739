// Package doshii is a Go client for the POS side of a Doshii API (v3) — posgate or Doshii itself.
//
// A POS vendor holds one vendor key (VendorKey). With it, the vendor:
//
//   - onboards venues: Client.CreateOrganisation and Client.CreateLocation send the raw key as
//     the Bearer token with the `vendor` header, and return each new location's token (shown
//     once: keep it);
//   - makes every call for a venue with a fresh location JWT: Transport signs, per request,
//     HS256 over {"locationToken", "timestamp"} with the vendor key (VendorKey.SignLocation), and
//     sets `authorization` and `vendor`. A client whose clock is off learns the server's time from
//     the Date header of a 401 and signs again once (tokensource.Skew). After a key rotation,
//     VendorKey.Set switches every signer to the new key at once; the server accepts the old one
//     during its overlap window, so nothing fails in between.
//
// Errors of the API are *Error values with the HTTP status and Doshii's {"message"}.
package doshii

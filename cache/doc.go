// Package cache is moltbot's output cache: a stored reply answers an
// identical request again, without a model call, as a turn-pipeline stage
// (Stage, an actors.AroundModel wired in cmd).
//
// A reply is found by exact match on a canonical hash (Key) of the
// tenant's space, the resolved model chain, the messages with their parts,
// the tools, tool_choice, response_format and every sampling parameter.
// Only deterministic requests are cached (temperature 0, or a seed given)
// unless the client asks (moltbot.CacheUse); a client may bypass the cache
// or refresh an entry. Errors and incomplete replies are never stored.
// Entries never cross tenants: the space is in the hash and the tenant id
// heads every stored key, which is how a tenant's entries are purged.
//
// A stored entry keeps the reply's pieces as they streamed (text, tool
// call pieces), so a hit replays the same chunks. Identical requests in
// flight at once share one model call (flight.go): those that came later
// get the pieces already streamed, then the rest as they come.
//
// Tiers (Config.Type): memory, an LRU bounded in bytes; pebble, the node's
// database (storage.Cache namespace, entries expire by their stored
// expiry and are swept); redis, shared by a cluster, through package resp.
// pebble and redis keep a memory tier in front. A back tier that fails is
// bypassed (the request goes to the model), counted and logged at most
// once a minute, and tried again after a backoff: it comes back by
// itself.
package cache

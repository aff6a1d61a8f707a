// Package actors is, with its subpackages, the only code that knows
// protoactor-go. It runs a node's actor system, in parts that each read
// alone:
//
//   - actors/provider: one provider actor per configured model server, under
//     a supervisor ("providers") that restarts a crashed provider at once,
//     out of service for a backoff (the router skips it meanwhile), and
//     counts it in moltbot_actor_restarts_total. Admission (max in-flight, a
//     bounded queue, "busy" past both): a call that finds a free slot and
//     nobody waiting takes it with a compare-and-swap and runs at once,
//     without a message; the provider actor queues, refuses and starts the
//     others, each in a goroutine of its own, so Receive never blocks on a
//     model. A health loop probes the providers;
//   - actors/route: the router (plain Go, used by a turn's goroutine) that
//     walks the model chain: primary first, then fallbacks when a model fails
//     before its first token. The failover policy proper (breakers,
//     thresholds, inference/failover) plugs in here;
//   - actors/conv: a conversation manager ("conversations") that owns one
//     child actor per conversation id (<tenant>/<id>), routes every message to
//     it, spawns it from its snapshot on demand and passivates it when idle,
//     buffering messages while a child stops so none reaches a dead mailbox;
//     and the conversation actors, which hold the context, run one turn at a
//     time (the rest wait in a bounded queue), persist the user message
//     (synced) before asking a model and the reply (synced) before answering
//     the caller;
//   - this package: the cluster link (Link: protoactor remote behind an RPC
//     guard, the agent that serves other nodes, forwarding to a
//     conversation's owner, replication, shared state) and Runtime, the
//     facade that wires the parts together.
//
// Every request message gets exactly one reply, the one whose handling made
// an actor panic included; callers never wait forever. Other nodes' requests
// run on goroutines bounded per kind (RemoteWork), answered busy past that.
// The Runtime type is the package's API: the gateway declares the small
// interface it needs and the cmd package hands it a *Runtime (and attaches
// the cluster membership through Runtime.Link).
package actors

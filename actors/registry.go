package actors

import cmap "github.com/orcaman/concurrent-map"

// protoactor's process registry (every actor's PID) is 1024 buckets, each
// a concurrent-map cut into cmap.SHARD_COUNT maps (32 by default): 32,768
// maps and 2.8 MB of heap in every actor system before its first actor,
// most of an idle edge node's heap. The 1024 buckets spread the lock
// already; one map a bucket is enough. The count must be set before any
// such map exists (a map is cut at creation and read with the count), so
// it is set here, before any actor system can be made, and never again.
func init() { cmap.SHARD_COUNT = 1 }

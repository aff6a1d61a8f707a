package main

import (
	"fmt"
	"strings"

	"github.com/moltbot/moltbot/skills/wire"
	"github.com/moltbot/moltbot/storage"
	"github.com/moltbot/moltbot/storage/replica"
)

// skillKVTag is the skills' kv records' part of what every member holds
// (actors.SharedMux).
const skillKVTag = 0x03

// openSkillKV opens the skills' context.kv records, replicated to every
// member of a cluster (storage/replica over storage.SkillsKV). Records a
// node of an earlier release kept per node (storage.Skills: the records,
// and a count of keys per skill under "#") move there first, each at the
// oldest version (replica.Set.Seed): any write made through an upgraded
// member beats them, a deletion too; where nodes bring different values
// of a key, the greater bytes win on every member.
func openSkillKV(ns storage.Namespaces) (*replica.Set, error) {
	set, err := replica.Open(replica.Config{KV: ns.Namespace(storage.SkillsKV), MaxValue: wire.MaxValue})
	if err != nil {
		return nil, err
	}
	old := ns.Namespace(storage.Skills)
	var keys []string
	var vals [][]byte
	if err := old.Scan(func(k string, v []byte) bool {
		keys, vals = append(keys, k), append(vals, v)
		return true
	}); err != nil {
		return nil, fmt.Errorf("skills kv: reading the records kept before replication: %w", err)
	}
	for i, k := range keys {
		if !strings.HasPrefix(k, "#") {
			// At the oldest version (Seed): what a member wrote since its
			// upgrade, a deletion too, beats a record moved from before.
			if err := set.Seed(k, vals[i]); err != nil {
				return nil, fmt.Errorf("skills kv: moving %q: %w", k, err)
			}
		}
		if err := old.Delete(k); err != nil {
			return nil, fmt.Errorf("skills kv: moving %q: %w", k, err)
		}
	}
	return set, nil
}

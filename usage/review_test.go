package usage

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moltbot/moltbot"
)

// A user-bound caller (an end user's token) speaks for one user, not for
// the tenant: a refusal at the tenant's quota tells it the quota is spent,
// not how many conversations and bytes the whole tenant (every other user)
// stores.
func TestReviewQuotaRefusalTellsAnEndUserNoTenantTotals(t *testing.T) {
	tb := NewTable(nil)
	q := NewQuotas(tb, nil, func(string) (int64, int64) { return 3, 1000 }, nil)
	user := &moltbot.Principal{Tenant: "acme", Space: "acme:inc", User: "alice", UserBound: true}
	for _, id := range []string{"a", "b", "c"} {
		tb.Put(conv(user.Space, id, strings.Repeat("x", 100)))
	}
	_, err := q.AdmitCreate(user)
	if moltbot.ErrorCode(err) != moltbot.EQuota {
		t.Fatalf("%v", err)
	}
	if msg := err.Error(); strings.Contains(msg, " 3 conversations") {
		t.Fatalf("an end user learns the tenant's totals: %s", msg)
	}
	tb.Put(conv(user.Space, "c", strings.Repeat("x", 1000)))
	err = q.AdmitTurn(user)
	if moltbot.ErrorCode(err) != moltbot.EQuota {
		t.Fatalf("%v", err)
	}
	if msg := err.Error(); strings.Contains(msg, fmt.Sprint(q.Usage(user.Space).Bytes)) {
		t.Fatalf("an end user learns the tenant's stored bytes: %s", msg)
	}
}

package intent

import _ "embed"

// DefaultYAML is the customer-service intents `moltbot init` writes to a new
// workspace's skills/intents.yaml (refund, order_status, shipping,
// cancel_order, change_address, invoice, account, payment, human,
// greeting, thanks, complaint; zh and en), and the set
// testdata/intents/*.jsonl measures.
//
//go:embed default.yaml
var DefaultYAML []byte

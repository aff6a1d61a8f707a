// Drives npm @slack/socket-mode (Slack's official Socket Mode client)
// against channels/slack's fake Slack: node socketmode.mjs API_URL APP_TOKEN.
// It connects, acknowledges every events_api envelope it gets and prints
// one JSON line per thing it saw ({"connected": n}, {"event": type,
// "envelope_id": id, "retry": n}) for the Go test reading its stdout; the
// test ends it.
import { SocketModeClient, LogLevel } from '@slack/socket-mode';

const [apiUrl, appToken] = process.argv.slice(2);
if (!apiUrl || !appToken) {
  console.error('usage: node socketmode.mjs API_URL APP_TOKEN');
  process.exit(2);
}
const out = (v) => process.stdout.write(JSON.stringify(v) + '\n');

const client = new SocketModeClient({
  appToken,
  logLevel: LogLevel.ERROR,
  clientOptions: { slackApiUrl: apiUrl },
});
let connected = 0;
client.on('connected', () => out({ connected: ++connected }));
client.on('slack_event', async ({ ack, type, envelope_id, body, retry_num }) => {
  await ack();
  out({ type, event: body?.event?.type, envelope_id, retry: retry_num ?? 0 });
});
process.on('SIGTERM', async () => {
  await client.disconnect().catch(() => {});
  process.exit(0);
});
await client.start();

// Drives a moltbot node's Anthropic Messages API (POST /v1/messages) with
// the npm `@anthropic-ai/sdk` and prints one JSON object: what each case
// saw, or {error} for a case that threw. The Go test
// (test/acceptance/anthropic_test.go) judges it.
// Env: MOLTBOT_URL, MOLTBOT_API_KEY (sent as x-api-key, the SDK's apiKey).
import Anthropic from '@anthropic-ai/sdk';
import { PNG, WEATHER_TOOL, runCases } from './common.mjs';

const client = new Anthropic({
  baseURL: process.env.MOLTBOT_URL,
  apiKey: process.env.MOLTBOT_API_KEY,
  maxRetries: 0,
  timeout: 30_000,
});
const model = 'moltbot';
const max_tokens = 256;
const hello = [{ role: 'user', content: 'hello' }];
const weather = [{ role: 'user', content: 'What is the weather in Paris?' }];
const tools = [{ name: WEATHER_TOOL.name, description: WEATHER_TOOL.description, input_schema: WEATHER_TOOL.parameters }];
const toolResult = '{"temperature_c":21}';

// reply keeps what a test needs of a message.
function reply(m) {
  return {
    type: m.type, role: m.role, model: m.model, stop_reason: m.stop_reason, usage: m.usage ?? null,
    text: m.content.filter((b) => b.type === 'text').map((b) => b.text).join(''),
    tool_uses: m.content.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id, name: b.name, input: b.input })),
  };
}

// withResults answers each tool_use of message with the tool's result.
function withResults(message) {
  const results = message.content.filter((b) => b.type === 'tool_use')
    .map((b) => ({ type: 'tool_result', tool_use_id: b.id, content: toolResult }));
  return [...weather, { role: 'assistant', content: message.content }, { role: 'user', content: results }];
}

await runCases({
  async message() {
    return reply(await client.messages.create({ model, max_tokens, system: 'You are terse.', messages: hello }));
  },

  async message_stream() {
    // The SDK's stream helper: text events, then the assembled message.
    let text = '', events = 0;
    const stream = client.messages.stream({ model, max_tokens, messages: hello });
    stream.on('text', (delta) => { text += delta; events++; });
    const final = await stream.finalMessage();
    return { text_events: events, streamed_text: text, final: reply(final) };
  },

  async tools() {
    const first = await client.messages.create({ model, max_tokens, messages: weather, tools });
    const second = await client.messages.create({ model, max_tokens, messages: withResults(first), tools });
    return { first: reply(first), second: reply(second) };
  },

  async tools_stream() {
    // input_json deltas assembled into the tool_use block's input.
    let jsonEvents = 0;
    const stream = client.messages.stream({ model, max_tokens, messages: weather, tools });
    stream.on('inputJson', () => { jsonEvents++; });
    const first = await stream.finalMessage();
    const second = await client.messages.stream({ model, max_tokens, messages: withResults(first), tools }).finalMessage();
    return { input_json_events: jsonEvents, first: reply(first), second: reply(second) };
  },

  async image() {
    const m = await client.messages.create({
      model, max_tokens, messages: [{ role: 'user', content: [
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
        { type: 'text', text: 'What is in this picture?' },
      ] }],
    });
    return reply(m);
  },

  async bad_request() {
    // A message list that begins with the assistant's tool call and no
    // result after it: 400, raised as the SDK's BadRequestError.
    try {
      await client.messages.create({ model, max_tokens, messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
        { role: 'user', content: 'and then?' },
      ], tools });
      return { thrown: false };
    } catch (e) {
      return { thrown: true, bad_request: e instanceof Anthropic.BadRequestError, status: e.status, type: e.error?.error?.type ?? null, message: e.message };
    }
  },

  async bad_key() {
    const other = new Anthropic({ baseURL: client.baseURL, apiKey: 'mb_nobody_nothing', maxRetries: 0, timeout: 30_000 });
    try {
      await other.messages.create({ model, max_tokens, messages: hello });
      return { thrown: false };
    } catch (e) {
      return { thrown: true, authentication: e instanceof Anthropic.AuthenticationError, status: e.status, type: e.error?.error?.type ?? null };
    }
  },
});

// What the client scripts share: the fixtures every client sends, and the
// runner that prints their one JSON result.

// A 1x1 PNG: the node checks that an image's bytes begin as its type says.
export const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

// A tool as OpenAI's and Ollama's APIs describe it (Anthropic's is made from it).
export const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'The current weather in a city.',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string', description: 'The city.' } },
    required: ['city'],
    additionalProperties: false,
  },
};

export const PERSON_SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string' }, age: { type: 'integer' } },
  required: ['name', 'age'],
  additionalProperties: false,
};

// runCases runs each case in turn (only those named in MOLTBOT_CASES, a
// comma-separated list, when set) and prints one JSON object: each case's
// result, or {error, name, status} when it threw (so a case's own result
// has no top-level `error` member). It exits 0 either way:
// the Go test reads the cases; an exit code other than 0 means the script
// itself broke.
export async function runCases(cases) {
  const only = (process.env.MOLTBOT_CASES ?? '').split(',').filter(Boolean);
  const out = {};
  for (const [name, fn] of Object.entries(cases)) {
    if (only.length && !only.includes(name)) continue;
    try {
      out[name] = await fn();
    } catch (e) {
      out[name] = { error: String(e?.message ?? e), name: e?.name ?? null, status: e?.status ?? e?.status_code ?? null };
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

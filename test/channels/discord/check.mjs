// discord.js against channels/discord/fakediscord: log in (GET
// /gateway/bot, HELLO, IDENTIFY, READY, GUILD_CREATE), take two
// MESSAGE_CREATEs and reply to each (POST /channels/{id}/messages, the
// first answered 429 by the fake and retried), resuming in between when
// the fake sends op 7; and a slash command over the Gateway, deferred
// (POST /interactions/{id}/{token}/callback) then followed up (POST
// /webhooks/{app}/{token}). Prints one JSON object of what it saw; the Go test
// (channels/discord/fakediscord TestDiscordJS) drives the fake and judges.
//
// FAKE_DISCORD_URL is the fake's http://127.0.0.1:port.
import { Client, Events, GatewayIntentBits, Partials } from 'discord.js';

const base = process.env.FAKE_DISCORD_URL;
const token = process.env.FAKE_DISCORD_TOKEN;
const out = { ready: null, messages: [], replies: [], interactions: [], errors: [], debug: [] };
const finished = () => out.messages.length >= 2 && out.interactions.length >= 1;
const done = (code) => {
  process.stdout.write(JSON.stringify(out) + '\n');
  client.destroy().finally(() => process.exit(code));
};

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.DirectMessages, GatewayIntentBits.MessageContent],
  partials: [Partials.Channel],
  rest: { api: base + '/api', retries: 1 },
});
client.on(Events.Debug, (m) => { if (/resum|Resum|identif|Identif|zombie|429|rate/i.test(m)) out.debug.push(m.slice(0, 200)); });
client.on(Events.Error, (e) => out.errors.push(String(e)));
client.once(Events.ClientReady, (c) => {
  out.ready = { user: c.user.id, bot: c.user.bot, guilds: c.guilds.cache.map((g) => g.id), channels: c.channels.cache.map((ch) => ch.id), application: c.application?.id ?? null };
  console.error('ready');
});
client.on(Events.MessageCreate, async (m) => {
  out.messages.push({ id: m.id, channel: m.channelId, guild: m.guildId, author: m.author.id, bot: m.author.bot, content: m.content });
  try {
    const r = await m.reply({ content: 'echo: ' + m.content, allowedMentions: { parse: [] } });
    out.replies.push({ id: r.id, content: r.content, channel: r.channelId });
    console.error('replied ' + out.replies.length);
  } catch (e) {
    out.errors.push(String(e));
  }
  if (finished()) done(0);
});
client.on(Events.InteractionCreate, async (i) => {
  if (!i.isChatInputCommand()) return;
  try {
    await i.deferReply();
    const f = await i.followUp({ content: 'answer to ' + i.options.getString('text'), allowedMentions: { parse: [] } });
    out.interactions.push({ id: i.id, command: i.commandName, text: i.options.getString('text'), user: i.user.id, followUp: f.id });
    console.error('interaction answered');
  } catch (e) {
    out.errors.push('interaction: ' + e);
  }
  if (finished()) done(0);
});
setTimeout(() => { out.errors.push('timeout'); done(1); }, 60000).unref();
client.login(token).catch((e) => { out.errors.push('login: ' + e); done(1); });

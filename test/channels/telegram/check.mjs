// npm grammy against moltbot's fake Telegram Bot API (faketelegram):
// started by check_test.go with TG_API (the fake's URL), TG_TOKEN and
// TG_LIMITED_CHAT. It prints "LISTEN <url>" once its webhook server is up,
// waits for stdin to close (the Go side has posted its updates), then
// prints "RESULT <json>".
import http from "node:http";
import { Bot, webhookCallback } from "grammy";

const apiRoot = process.env.TG_API;
const token = process.env.TG_TOKEN;
const out = {};

// 1. Long polling: bot.start() must call getUpdates, get the queued
// message, and the reply must go through sendMessage.
const bot = new Bot(token, { client: { apiRoot } });
bot.on("message:text", async (ctx) => {
  await ctx.reply("echo: " + ctx.message.text, {
    reply_parameters: { message_id: ctx.message.message_id },
  });
  out.polled = { chat: ctx.chat.id, text: ctx.message.text, from: ctx.from.id, me: ctx.me.username };
  bot.stop();
});
bot.catch((err) => {
  out.pollError = String(err);
  bot.stop();
});
await bot.start({ timeout: 1 });

// 2. A 429: grammY's GrammyError carries parameters.retry_after.
try {
  await bot.api.sendMessage(Number(process.env.TG_LIMITED_CHAT), "limited");
  out.limited = { error: "none" };
} catch (e) {
  out.limited = { name: e.name, code: e.error_code, retry_after: e.parameters?.retry_after };
}

// 3. A webhook: the fake's POSTs (secret header) to grammY's webhookCallback.
const hook = new Bot(token, { client: { apiRoot } });
out.webhook = [];
hook.on("message:text", async (ctx) => {
  out.webhook.push(ctx.message.text);
  await ctx.reply("hook: " + ctx.message.text);
});
await hook.init();
const server = http.createServer(webhookCallback(hook, "http", { secretToken: "hook_Secret-1" }));
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
console.log("LISTEN http://127.0.0.1:" + server.address().port + "/");
process.stdin.resume();
await new Promise((resolve) => process.stdin.on("end", resolve));
server.close();
console.log("RESULT " + JSON.stringify(out));

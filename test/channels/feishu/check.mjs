// npm @larksuiteoapi/node-sdk against moltbot's fake Feishu (fakefeishu):
// started by check_test.go with FS_API (the fake's URL), FS_APP_ID,
// FS_APP_SECRET, FS_ENCRYPT_KEY, FS_VERIFICATION_TOKEN, and FS_EVENTS (a
// JSON list of {body, headers} the fake encrypted and signed) and
// FS_CHALLENGE (an encrypted url_verification body). Prints "RESULT <json>".
import * as lark from "@larksuiteoapi/node-sdk";

const env = process.env;
const out = {};

// 1. The Client: a tenant token from the fake, then a message created and
// a reply, both with it.
const client = new lark.Client({
  appId: env.FS_APP_ID,
  appSecret: env.FS_APP_SECRET,
  domain: env.FS_API,
  loggerLevel: lark.LoggerLevel.error,
});
const created = await client.im.message.create({
  params: { receive_id_type: "chat_id" },
  data: { receive_id: "oc_sdk", msg_type: "text", content: JSON.stringify({ text: "from the sdk" }) },
});
out.create = { code: created.code, message_id: created.data?.message_id };
const replied = await client.im.message.reply({
  path: { message_id: "om_user1" },
  data: { msg_type: "text", content: JSON.stringify({ text: "a reply" }) },
});
out.reply = { code: replied.code, message_id: replied.data?.message_id };

// 2. The EventDispatcher with the same keys: it must check the fake's
// signature and decrypt its encryption.
out.events = [];
const dispatcher = new lark.EventDispatcher({
  encryptKey: env.FS_ENCRYPT_KEY,
  verificationToken: env.FS_VERIFICATION_TOKEN,
  loggerLevel: lark.LoggerLevel.error,
}).register({
  "im.message.receive_v1": async (data) => {
    out.events.push({
      event_id: data.event_id,
      token: data.token,
      message_id: data.message.message_id,
      chat_type: data.message.chat_type,
      text: JSON.parse(data.message.content).text,
    });
    return "handled";
  },
});
out.invoked = [];
for (const ev of JSON.parse(env.FS_EVENTS)) {
  const data = Object.assign(Object.create({ headers: ev.headers }), JSON.parse(ev.body));
  out.invoked.push((await dispatcher.invoke(data)) ?? null);
}
out.challenge = JSON.parse(new lark.AESCipher(env.FS_ENCRYPT_KEY).decrypt(JSON.parse(env.FS_CHALLENGE).encrypt));
console.log("RESULT " + JSON.stringify(out));

// Runs the web chat widget's script (served by a widget channel) in a DOM
// (jsdom), as a shop's page that embeds it: node widget.mjs BASE KEY ORIGIN
// [handoff|page|image] where BASE is http://HOST/channels/NAME/. It opens the panel,
// waits for the session (title, greeting), sends a message, waits for the
// streamed reply, and prints what the panel shows and what the page stored
// as JSON on stdout. With handoff it then asks for a person, prints
// {"queued":true} once the reply says so and the script follows the
// conversation, and waits for a person's reply (the test sends it) before
// the final JSON. With page it loads the channel's own page from the node
// instead (the panel shown at once, same-origin calls). With image it
// attaches a PNG to a second message. The page's fetch
// adds the headers a browser would send (Origin, Sec-Fetch-Site).
import { JSDOM } from "jsdom";

const [base, key, origin, mode] = process.argv.slice(2);
if (!base || !key || !origin) {
  console.error("usage: node widget.mjs BASE KEY ORIGIN");
  process.exit(2);
}
const deadline = setTimeout(() => { console.error("widget.mjs: timed out"); process.exit(3); }, 60000);

const requests = [];
const page = mode === "page"; // the channel's own page, served by the node
const options = {
  runScripts: "dangerously",
  resources: "usable",
  pretendToBeVisual: true,
  beforeParse(window) {
    window.fetch = (url, init = {}) => {
      const headers = new Headers(init.headers || {});
      const method = init.method || "GET";
      if (page) {
        // A same-origin call: Sec-Fetch-Site says so; Origin only on a POST.
        headers.set("Sec-Fetch-Site", "same-origin");
        if (method !== "GET") headers.set("Origin", new URL(base).origin);
      } else {
        headers.set("Origin", origin); // what a browser sends on a cross-origin call
      }
      requests.push(`${method} ${new URL(url).pathname}`);
      return fetch(url, { ...init, headers });
    };
    window.TextDecoder = TextDecoder;
  },
};
const dom = page ? await JSDOM.fromURL(base, options) : new JSDOM(
  `<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>` +
  `<script src="${base}widget.js" data-key="${key}" async></script></body></html>`,
  { ...options, url: origin + "/products/1" },
);
const { window } = dom;
window.addEventListener("error", (e) => { console.error("page error:", e.message); process.exit(4); });

async function waitFor(what, fn) {
  for (let i = 0; i < 5000; i++) {
    const v = fn();
    if (v) return v;
    await new Promise((ok) => setTimeout(ok, 10));
  }
  throw new Error("waited in vain for " + what);
}

try {
  const host = await waitFor("the widget's element", () => window.document.querySelector("[data-moltbot-widget]"));
  const root = host.shadowRoot;
  if (!root) throw new Error("no shadow root");
  const launcher = root.querySelector(".mb-launcher");
  const panel = root.querySelector(".mb-panel");
  const hiddenBefore = panel.hidden;
  if (launcher) launcher.click(); // the page shows the panel at once
  const title = await waitFor("the title", () => {
    const t = root.querySelector(".mb-title").textContent;
    return t !== "Chat" && t;
  });
  await waitFor("the greeting", () => root.querySelector(".mb-greeting"));
  const input = root.querySelector(".mb-input");
  input.value = "hello there";
  root.querySelector(".mb-form").requestSubmit();
  await waitFor("the reply", () => {
    const bots = [...root.querySelectorAll(".mb-bot")].filter((b) => !b.classList.contains("mb-greeting"));
    return bots.length === 1 && !bots[0].classList.contains("mb-typing") && bots[0].textContent &&
      !root.querySelector(".mb-send").disabled; // the stream read to its end
  });
  if (mode === "image") {
    // A 1x1 PNG chosen in the file input, sent with the next message.
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");
    const picker = root.querySelector(".mb-attach input");
    Object.defineProperty(picker, "files", { configurable: true, value: [new window.File([png], "dot.png", { type: "image/png" })] });
    picker.dispatchEvent(new window.Event("change"));
    await waitFor("the image read", () => root.querySelector(".mb-attach").textContent === "+1");
    input.value = "and this?";
    root.querySelector(".mb-form").requestSubmit();
    await waitFor("the second reply", () =>
      [...root.querySelectorAll(".mb-bot")].filter((b) => !b.classList.contains("mb-greeting")).length === 2 &&
      !root.querySelector(".mb-typing") && !root.querySelector(".mb-send").disabled);
  }
  if (mode === "handoff") {
    input.value = "human please";
    root.querySelector(".mb-form").requestSubmit();
    await waitFor("the hand-off's notice and the events stream", () =>
      !root.querySelector(".mb-send").disabled && root.querySelectorAll(".mb-bot").length === 3 &&
      panel.hasAttribute("data-following"));
    console.log(JSON.stringify({ queued: true }));
    await waitFor("a person's reply", () => root.querySelector(".mb-agent"));
  }
  const bubbles = [...root.querySelectorAll(".mb-msg")].map((b) => ({
    cls: b.className, text: b.textContent, images: [...b.querySelectorAll("img")].map((i) => i.src.slice(0, 22)),
  }));
  const stored = Object.keys(window.localStorage).map((k) => window.localStorage.getItem(k));
  console.log(JSON.stringify({
    hiddenBefore, hiddenAfter: panel.hidden, expanded: launcher ? launcher.getAttribute("aria-expanded") : "",
    launcher: !!launcher, full: panel.classList.contains("mb-full"), pageTitle: window.document.title,
    title, bubbles, stored, requests, sendEnabled: !root.querySelector(".mb-send").disabled,
    stylesheet: root.querySelector("link").href,
  }));
  clearTimeout(deadline);
  window.close();
  process.exit(0);
} catch (e) {
  console.error("widget.mjs:", e.message);
  process.exit(1);
}

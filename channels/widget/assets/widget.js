// moltbot web chat widget: <script src="https://NODE/channels/NAME/widget.js"
// data-key="pk_..." async></script> adds a launcher button and a chat panel
// (in a shadow DOM) to the page; the channel's own page (data-mode="page")
// shows the panel alone. Vanilla JS, no build step, no inline code: the
// page's Content-Security-Policy needs script-src, style-src and
// connect-src of the node. Text is only ever set with textContent.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || !me.src || !window.fetch || !window.TextDecoder) return;
  var base = new URL(".", me.src).href;
  var key = me.getAttribute("data-key") || "";
  var pageMode = me.getAttribute("data-mode") === "page";
  var store = "moltbot-widget:" + base + ":" + key;
  var token = null;
  try { token = window.localStorage.getItem(store); } catch (e) { /* storage refused: a session per page */ }
  var shown = {}; // message ids on screen
  var following = false;
  var sending = false; // a message's reply is streaming in
  var later = []; // the bot's messages the events stream brought meanwhile

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  // The UI, in a shadow root: the host page's styles do not reach it.
  var host = el("div");
  host.setAttribute("data-moltbot-widget", "");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var css = el("link");
  css.rel = "stylesheet";
  css.href = base + "widget.css";
  root.appendChild(css);
  var panel = el("section", "mb-panel" + (pageMode ? " mb-full" : ""));
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", "Chat");
  var head = el("header", "mb-head");
  var title = el("h2", "mb-title", "Chat");
  head.appendChild(title);
  var log = el("div", "mb-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var form = el("form", "mb-form");
  var input = el("textarea", "mb-input");
  input.rows = 2;
  input.setAttribute("aria-label", "Message");
  input.placeholder = "Write a message";
  var send = el("button", "mb-send", "Send");
  send.type = "submit";
  // Images: chosen with a file input, sent as data URLs (at most two).
  var attach = el("label", "mb-attach", "+");
  attach.title = "Attach an image";
  var files = el("input");
  files.type = "file";
  files.accept = "image/png,image/jpeg,image/gif,image/webp";
  files.multiple = true;
  files.hidden = true;
  files.setAttribute("aria-label", "Attach an image");
  attach.appendChild(files);
  var attached = []; // data URLs waiting for the next message
  form.appendChild(attach);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(form);
  var launcher = null;
  if (!pageMode) {
    var close = el("button", "mb-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", "Close the chat");
    head.appendChild(close);
    launcher = el("button", "mb-launcher", "Chat");
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    panel.hidden = true;
    launcher.addEventListener("click", function () { toggle(panel.hidden); });
    panel.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { toggle(false); launcher.focus(); }
    });
    close.addEventListener("click", function () { toggle(false); });
    root.appendChild(launcher);
  }
  root.appendChild(panel);

  function toggle(open) {
    panel.hidden = !open;
    if (launcher) launcher.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { start(); input.focus(); }
  }

  function bubble(role, text, cls) {
    var b = el("div", "mb-msg mb-" + role + (cls ? " " + cls : ""), text);
    log.appendChild(b);
    log.scrollTop = log.scrollHeight;
    return b;
  }

  function render(m) {
    if (m.id && shown[m.id]) return;
    if (m.id) shown[m.id] = true;
    var text = m.content;
    if (m.images) text += (text ? " " : "") + "[" + m.images + (m.images > 1 ? " images]" : " image]");
    bubble(m.role === "user" ? "user" : "bot", text, m.agent ? "mb-agent" : "");
  }

  var maxImage = 256 * 1024; // the session says the channel's limit
  files.addEventListener("change", function () {
    var list = Array.prototype.slice.call(files.files || [], 0, 2 - attached.length);
    files.value = "";
    list.forEach(function (f) {
      if (f.size > maxImage) { note("That image is too large (" + Math.round(f.size / 1024) + " KB; at most " + Math.round(maxImage / 1024) + " KB)."); return; }
      var r = new FileReader();
      r.onload = function () {
        if (attached.length < 2) attached.push(String(r.result));
        attach.textContent = "+" + attached.length;
        attach.appendChild(files);
      };
      r.readAsDataURL(f);
    });
  });

  function note(text) { bubble("note", text); }

  function headers(json) {
    var h = {};
    if (token) h.Authorization = "Bearer " + token;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  async function problem(res) {
    try { var b = await res.json(); return (b.error && b.error.message) || res.statusText; }
    catch (e) { return res.statusText || String(res.status); }
  }

  // session gets (or renews) this browser's visitor token.
  async function session() {
    var h = headers(false);
    h["X-Widget-Key"] = key;
    var res = await fetch(base + "api/session", { method: "POST", headers: h, body: "{}" });
    if (!res.ok) throw new Error(await problem(res));
    var s = await res.json();
    token = s.token;
    try { window.localStorage.setItem(store, token); } catch (e) { /* kept for this page only */ }
    title.textContent = s.title || "Chat";
    if (s.max_image_bytes !== undefined) maxImage = s.max_image_bytes;
    attach.hidden = !maxImage;
    return s;
  }

  // call sends a request with the token, renewing the session once on 401.
  async function call(path, init) {
    init.headers = headers(init.body !== undefined);
    var res = await fetch(base + "api/" + path, init);
    if (res.status === 401) {
      token = null;
      await session();
      init.headers = headers(init.body !== undefined);
      res = await fetch(base + "api/" + path, init);
    }
    return res;
  }

  // events reads a server-sent event stream from a fetch response.
  async function events(res, on) {
    var reader = res.body.getReader();
    var dec = new TextDecoder();
    var buf = "";
    for (;;) {
      var r = await reader.read();
      if (r.done) return;
      buf += dec.decode(r.value, { stream: true });
      var i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        var block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        var kind = "message", data = "";
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) kind = line.slice(7);
          else if (line.indexOf("data: ") === 0) data += line.slice(6);
        });
        if (data) { try { on(kind, JSON.parse(data)); } catch (e) { /* not ours */ } }
      }
    }
  }

  var started = null;
  function start() {
    if (!started) started = begin().catch(function (e) { started = null; note("The chat is not available: " + e.message); });
    return started;
  }

  async function begin() {
    var s = await session();
    if (s.greeting) bubble("bot", s.greeting, "mb-greeting");
    var res = await call("history", { method: "GET" });
    if (!res.ok) throw new Error(await problem(res));
    var h = await res.json();
    (h.data || []).forEach(render);
    if (h.handoff) follow();
  }

  // follow keeps the events stream open once a person was asked for: their
  // replies come there, not in a request of ours.
  // Once following, the history is read again: what was said before the
  // stream was in place is not missed (render skips what is shown).
  async function catchUp() {
    try {
      var res = await call("history", { method: "GET" });
      if (res.ok) ((await res.json()).data || []).forEach(render);
    } catch (e) { /* the next subscription tries again */ }
  }

  async function follow() {
    if (following) return;
    following = true;
    var wait = 2000;
    while (following) {
      try {
        var res = await call("events", { method: "GET" });
        if (res.ok) {
          wait = 2000;
          await events(res, function (kind, data) {
            if (kind === "subscribed") {
              panel.setAttribute("data-following", "");
              catchUp();
            } else if (kind === "message") {
              // The reply to a message being sent is shown by its own
              // stream; the events stream's copy waits until it is done.
              if (sending && data.role === "assistant" && !data.agent) later.push(data);
              else render(data);
            }
          });
          panel.removeAttribute("data-following");
        } else if (res.status !== 429 && res.status < 500) {
          following = false;
          return;
        }
      } catch (e) { /* the network: try again */ }
      await new Promise(function (ok) { setTimeout(ok, wait); });
      wait = Math.min(wait * 2, 60000);
    }
  }

  function id() {
    var a = new Uint8Array(12);
    window.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    var images = attached.splice(0);
    attach.textContent = "+";
    attach.appendChild(files);
    if (!text && !images.length) return;
    input.value = "";
    send.disabled = true;
    sending = true;
    var mine = bubble("user", text);
    images.forEach(function (u) {
      var img = el("img", "mb-thumb");
      img.alt = "an attached image";
      img.src = u;
      mine.appendChild(img);
    });
    var mid = id();
    shown["x:w:" + mid] = true; // the stored message's id (an external id's)
    var reply = null;
    try {
      await start();
      var res = await call("messages", { method: "POST", body: JSON.stringify(images.length ? { content: text, id: mid, images: images } : { content: text, id: mid }) });
      if (!res.ok) {
        mine.classList.add("mb-failed");
        note(res.status === 429 ? "Please wait a moment before writing again." : await problem(res));
        return;
      }
      reply = bubble("bot", "", "mb-typing");
      await events(res, function (kind, data) {
        if (kind === "token") {
          reply.classList.remove("mb-typing");
          reply.textContent += data.content;
          log.scrollTop = log.scrollHeight;
        } else if (kind === "handoff") {
          follow();
        } else if (kind === "done") {
          reply.classList.remove("mb-typing");
          if (data.message) {
            shown[data.message.id] = true;
            reply.textContent = data.message.content;
          } else if (!reply.textContent) {
            reply.remove();
          }
          if (data.finish_reason === "handoff") follow();
        } else if (kind === "error") {
          reply.classList.remove("mb-typing");
          reply.classList.add("mb-failed");
          if (!reply.textContent) reply.textContent = (data.error && data.error.message) || "The reply failed.";
        }
      });
    } catch (e) {
      note("The message was not sent: " + e.message);
    } finally {
      if (reply && reply.classList.contains("mb-typing")) reply.remove();
      send.disabled = false;
      sending = false;
      later.splice(0).forEach(render);
    }
  });

  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit ? form.requestSubmit() : send.click(); }
  });

  function mount() {
    document.body.appendChild(host);
    if (pageMode) start();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();

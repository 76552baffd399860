/**
 * The status page of `stormlock serve`: its HTML shell, stylesheet and
 * script, kept as strings so they are compiled into the binary with no
 * asset step. The script builds every piece of lock data into the DOM with
 * `textContent`, never as markup, and the server's CSP forbids inline code
 * and `innerHTML` (Trusted Types), so a hostile reason stays text.
 *
 * @module
 */
import { span } from "../../kit/time.ts";

/**
 * The HTML shell: no data, no inline script or style.
 * @example
 * ```ts
 * import { PAGE_HTML } from "./page.ts";
 * console.log(PAGE_HTML.startsWith("<!doctype html>")); // true
 * ```
 */
export const PAGE_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<title>Stormlock</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<a class="skip" href="#locks-title">Skip to the locks</a>
<header class="top">
  <h1><span class="mark" aria-hidden="true">&#9632;</span> Stormlock</h1>
  <p id="status" class="status" role="status" aria-live="polite">Connecting…</p>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<main id="main">
  <form id="token-form" class="panel" hidden>
    <h2>This server needs a token</h2>
    <p>Paste the token it was started with. It is kept in this tab only (session storage) and sent as a header, never as a cookie.</p>
    <label for="token-input">Token</label>
    <div class="row">
      <input id="token-input" type="password" autocomplete="off" spellcheck="false" required>
      <button type="submit">Use token</button>
    </div>
    <p id="token-error" class="error" role="alert"></p>
  </form>
  <section id="history" class="panel" hidden aria-labelledby="history-title">
    <div class="panel-head">
      <h2 id="history-title" tabindex="-1">History of <code id="history-resource"></code></h2>
      <a id="history-close" class="button" href="#">Close</a>
    </div>
    <p id="history-empty" class="muted" hidden>No events recorded.</p>
    <ol id="history-list" class="events"></ol>
  </section>
  <section id="locks-section" aria-labelledby="locks-title">
    <div class="toolbar">
      <h2 id="locks-title" tabindex="-1">Live locks <span id="count" class="count"></span></h2>
      <label class="filter"><span class="sr-only">Filter locks</span>
        <input id="filter" type="search" placeholder="Filter: resource, holder, reason  ( / )" autocomplete="off" spellcheck="false" aria-describedby="count">
      </label>
    </div>
    <table id="locks" class="locks">
      <thead><tr>
        <th scope="col">Resource</th><th scope="col">Holder</th><th scope="col">Reason</th>
        <th scope="col">Since</th><th scope="col">Expires</th><th scope="col" class="num">Fence</th>
        <th scope="col" id="actions-head" hidden><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody id="rows"></tbody>
    </table>
    <p id="empty" class="empty" hidden></p>
  </section>
</main>
<footer class="foot"><span id="version"></span> · times in your time zone, <span id="zone"></span></footer>
<dialog id="break-dialog" aria-labelledby="break-title">
  <form id="break-form">
    <h2 id="break-title">Break this lease?</h2>
    <p id="break-summary"></p>
    <p class="muted">The holder's next renew or release fails, naming you. This is recorded in the history.</p>
    <label for="break-reason">Why is it stale?</label>
    <input id="break-reason" type="text" maxlength="4096" required autocomplete="off" placeholder="e.g. the job died">
    <p id="break-error" class="error" role="alert"></p>
    <div class="actions">
      <button type="button" id="break-cancel">Cancel</button>
      <button type="submit" id="break-confirm" class="danger">Break lease</button>
    </div>
  </form>
</dialog>
</body>
</html>
`;

/**
 * The stylesheet: light and dark themes from `prefers-color-scheme`, and a
 * card layout on narrow screens.
 * @example
 * ```ts
 * import { PAGE_CSS } from "./page.ts";
 * console.log(PAGE_CSS.includes("prefers-color-scheme")); // true
 * ```
 */
export const PAGE_CSS: string = `:root {
  color-scheme: light dark;
  --bg: #fbfbfa; --fg: #1d1f21; --muted: #5c6370; --line: #e3e3df;
  --panel: #ffffff; --accent: #1f5fbf; --accent-fg: #ffffff;
  --danger: #b3261e; --warn-bg: #fff4d6; --warn-fg: #5b4200; --warn-line: #e9c46a;
  --soon: #a15c00; --chip: #eef1f6;
  --mono: ui-monospace, "SF Mono", "Cascadia Mono", Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #15171a; --fg: #e6e6e3; --muted: #9aa1ab; --line: #2c3036;
    --panel: #1c1f23; --accent: #7cb0ff; --accent-fg: #0d1117;
    --danger: #ff8a80; --warn-bg: #3a2f12; --warn-fg: #f5dc9a; --warn-line: #7a6222;
    --soon: #f0b35a; --chip: #262a30;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0 auto; max-width: 78rem; padding: 1.5rem clamp(0.75rem, 3vw, 2rem) 3rem;
  background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
h1 { font-size: 1.35rem; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 1.05rem; margin: 0; }
.mark { color: var(--accent); }
a { color: var(--accent); text-underline-offset: 2px; }
code, .mono { font-family: var(--mono); font-size: 0.92em; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; border-radius: 3px; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.skip { position: absolute; left: -999px; top: 0.5rem; background: var(--panel); padding: 0.4rem 0.8rem; }
.skip:focus { left: 0.5rem; z-index: 10; }
.top { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
.status { margin: 0; color: var(--muted); font-size: 0.9rem; }
.status.live::before { content: ""; display: inline-block; width: 0.55rem; height: 0.55rem; border-radius: 50%; background: #2e9e5b; margin-right: 0.4rem; }
.status.down::before { content: ""; display: inline-block; width: 0.55rem; height: 0.55rem; border-radius: 50%; background: var(--danger); margin-right: 0.4rem; }
.banner { border: 1px solid var(--warn-line); background: var(--warn-bg); color: var(--warn-fg); padding: 0.7rem 1rem; border-radius: 8px; margin-bottom: 1rem; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.2rem; margin-bottom: 1.25rem; }
.panel-head { display: flex; justify-content: space-between; align-items: center; gap: 1rem; margin-bottom: 0.5rem; }
.toolbar { display: flex; justify-content: space-between; align-items: center; gap: 1rem; flex-wrap: wrap; margin-bottom: 0.6rem; }
.count { color: var(--muted); font-weight: normal; font-size: 0.9rem; }
.filter input { width: min(24rem, 100%); }
.filter { flex: 1 1 16rem; display: flex; justify-content: flex-end; }
input[type=search], input[type=text], input[type=password] {
  font: inherit; color: inherit; background: var(--panel); border: 1px solid var(--line);
  border-radius: 7px; padding: 0.45rem 0.65rem; min-width: 0;
}
button, .button {
  font: inherit; font-size: 0.9rem; color: var(--fg); background: var(--chip); border: 1px solid var(--line);
  border-radius: 7px; padding: 0.35rem 0.8rem; cursor: pointer; text-decoration: none; display: inline-block;
}
button:hover, .button:hover { border-color: var(--muted); }
button.danger { background: var(--danger); border-color: var(--danger); color: var(--accent-fg); }
button.small { font-size: 0.8rem; padding: 0.15rem 0.55rem; }
.row { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.row input { flex: 1 1 14rem; }
.error { color: var(--danger); margin: 0.4rem 0 0; min-height: 1.2em; }
.muted { color: var(--muted); }
table.locks { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
.locks th { text-align: left; font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); font-weight: 600; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--line); }
.locks td { padding: 0.6rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
.locks tbody tr:hover { background: color-mix(in srgb, var(--chip) 55%, transparent); }
.locks .num { text-align: right; }
.resource a { font-family: var(--mono); font-weight: 600; }
.backend { display: inline-block; font-size: 0.72rem; color: var(--muted); background: var(--chip); border-radius: 4px; padding: 0 0.35rem; margin-left: 0.35rem; }
.host { color: var(--muted); font-size: 0.88em; }
.queue { display: block; color: var(--muted); font-size: 0.82em; margin-top: 0.15em; }
.expires.soon { color: var(--soon); font-weight: 600; }
.expires.gone { color: var(--danger); }
.empty { color: var(--muted); padding: 2rem 0.6rem; text-align: center; border-bottom: 1px solid var(--line); margin: 0; }
.events { list-style: none; margin: 0; padding: 0; }
.events li { display: grid; grid-template-columns: 9.5rem 7.5rem 1fr; gap: 0.2rem 1rem; padding: 0.45rem 0; border-top: 1px solid var(--line); }
.events li:first-child { border-top: 0; }
.kind { font-family: var(--mono); font-size: 0.85em; }
.kind.broken { color: var(--danger); font-weight: 600; }
.kind.acquired { color: #2e9e5b; }
.foot { margin-top: 2rem; color: var(--muted); font-size: 0.82rem; }
dialog { border: 1px solid var(--line); border-radius: 12px; background: var(--panel); color: var(--fg); padding: 1.2rem 1.3rem; width: min(32rem, calc(100vw - 2rem)); }
dialog::backdrop { background: rgb(0 0 0 / 0.45); }
dialog label { display: block; margin: 0.8rem 0 0.3rem; font-weight: 600; }
dialog input { width: 100%; }
.actions { display: flex; justify-content: flex-end; gap: 0.5rem; margin-top: 0.9rem; }
@media (max-width: 720px) {
  .locks thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  .locks, .locks tbody, .locks tr, .locks td { display: block; width: 100%; }
  .locks tr { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 0.5rem 0.8rem; margin-bottom: 0.75rem; }
  .locks td { border: 0; padding: 0.2rem 0; display: grid; grid-template-columns: 5.5rem 1fr; gap: 0.6rem; }
  .locks td::before { content: attr(data-label); color: var(--muted); font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em; padding-top: 0.15rem; }
  .locks td.resource { grid-template-columns: 1fr; font-size: 1.05rem; }
  .locks td.resource::before { content: none; }
  .locks .num { text-align: left; }
  .events li { grid-template-columns: 1fr 1fr; }
  .events li > :last-child { grid-column: 1 / -1; }
  .filter { justify-content: stretch; }
  .filter input { width: 100%; }
}
@media (prefers-reduced-motion: no-preference) {
  .locks tr.fresh { animation: fresh 1.2s ease-out; }
  @keyframes fresh { from { background: color-mix(in srgb, var(--accent) 18%, transparent); } to { background: transparent; } }
}
`;

/**
 * The page's script. It asks for the token once (kept in session
 * storage), streams `/api/events` with `fetch` so the header can be sent,
 * reconnects when the stream drops, and shows a banner while the store is
 * down. All data goes into the DOM as text.
 * @example
 * ```ts
 * import { PAGE_JS } from "./page.ts";
 * console.log(PAGE_JS.includes("innerHTML")); // false
 * ```
 */
export const PAGE_JS: string = String.raw`"use strict";
(function () {
  var TOKEN_KEY = "stormlock.token";
  var state = { locks: [], info: null, history: null, stale: false, seen: null };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        if (key === "text") node.textContent = props[key];
        else if (key === "class") node.className = props[key];
        else node.setAttribute(key, props[key]);
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function headers() {
    var h = { "Accept": "application/json" };
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }

  function safeLink(text) {
    if (!text) return null;
    try {
      var url = new URL(text);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) { return null; }
  }

  ${span.toString()}
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function countdown(ms) {
    if (ms <= 0) return "expired";
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return "in " + d + "d " + h + "h " + pad(m) + "m";
    return "in " + (h > 0 ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
  }
  function relative(iso) {
    var ms = Date.parse(iso) - Date.now();
    return ms < 0 ? span(ms) + " ago" : "in " + span(ms);
  }
  var fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
  function local(iso) { return fullTime.format(new Date(iso)); }
  function timeEl(iso, cls, text) {
    return el("time", { datetime: iso, title: local(iso), class: cls || "", text: text });
  }

  function holderNodes(item) {
    var nodes = [el("span", { class: "principal", text: item.principal })];
    if (item.host && item.principal.slice(-(item.host.length + 1)) !== "@" + item.host) {
      nodes.push(el("span", { class: "host", text: " on " + item.host }));
    }
    var waiting = item.waiting || [];
    if (waiting.length) {
      nodes.push(el("span", {
        class: "queue",
        title: "Waiting, first come first: " + waiting.map(function (w) { return w.principal; }).join(", "),
        text: waiting.length + " waiting: " + waiting.map(function (w) { return w.principal; }).join(", "),
      }));
    }
    if (item.request) {
      nodes.push(el("span", {
        class: "queue request",
        title: "Hand-over requested by " + item.request.principal + (item.request.reason ? ": " + item.request.reason : ""),
        text: item.request.principal + " asks for it" + (item.request.reason ? ": " + item.request.reason : ""),
      }));
    }
    return nodes;
  }
  function reasonNodes(item) {
    var href = safeLink(item.link);
    if (href) return [el("a", { href: href, rel: "noopener noreferrer", target: "_blank", text: item.reason || item.link })];
    var nodes = [];
    if (item.reason) nodes.push(el("span", { text: item.reason }));
    if (item.link) nodes.push(el("span", { class: "muted", text: (item.reason ? " · " : "") + item.link }));
    if (!nodes.length) nodes.push(el("span", { class: "muted", text: "—" }));
    return nodes;
  }
  function historyHref(resource) { return "#history/" + encodeURIComponent(resource); }

  function setStatus(text, cls) {
    var s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }
  function banner(text) {
    var b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  function matches(item, words) {
    var hay = [item.resource, item.principal, item.host, item.reason, item.link, item.backend]
      .filter(Boolean).join("\n").toLowerCase();
    return words.every(function (w) { return hay.indexOf(w) >= 0; });
  }

  function render() {
    var words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = state.locks.filter(function (item) { return matches(item, words); });
    var canBreak = !!(state.info && state.info.allowBreak);
    var many = new Set(state.locks.map(function (l) { return l.backend; })).size > 1;
    $("actions-head").hidden = !canBreak;
    var fresh = state.seen;
    // Others' lease ids are hidden (null): a lease is also known by its start.
    var key = function (l) { return l.id || l.resource + "\u0000" + l.created; };
    state.seen = new Set(state.locks.map(key));
    var rows = shown.map(function (item) {
      var cells = [
        el("td", { class: "resource", "data-label": "Resource" }, [
          el("a", { href: historyHref(item.resource), title: "Show the history of this lock", text: item.resource }),
          many && item.backend ? el("span", { class: "backend", text: item.backend }) : null,
        ]),
        el("td", { "data-label": "Holder" }, holderNodes(item)),
        el("td", { class: "reason", "data-label": "Reason" }, reasonNodes(item)),
        el("td", { "data-label": "Since" }, [timeEl(item.created, "since", relative(item.created))]),
        el("td", { "data-label": "Expires" }, [timeEl(item.expires, "expires", countdown(Date.parse(item.expires) - Date.now()))]),
        el("td", { class: "num", "data-label": "Fence", text: String(item.fence) }),
      ];
      if (canBreak) {
        var button = el("button", { type: "button", class: "small", text: "Break…", "aria-label": "Break the lease on " + item.resource });
        button.addEventListener("click", function () { openBreak(item, button); });
        cells.push(el("td", { "data-label": "" }, [button]));
      }
      var row = el("tr", { "data-resource": item.resource, "data-id": item.id || "" }, cells);
      if (fresh && !fresh.has(key(item))) row.classList.add("fresh");
      return row;
    });
    $("rows").replaceChildren.apply($("rows"), rows);
    var total = state.locks.length;
    $("count").textContent = words.length ? "(" + shown.length + " of " + total + ")" : "(" + total + ")";
    var empty = $("empty");
    empty.hidden = shown.length > 0;
    empty.textContent = total === 0 ? "No live locks. Everything is free." : "No lock matches the filter.";
    $("locks").hidden = shown.length === 0;
    tick();
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.expires").forEach(function (t) {
      var ms = Date.parse(t.getAttribute("datetime")) - now;
      t.textContent = countdown(ms);
      t.classList.toggle("soon", ms > 0 && ms < 60000);
      t.classList.toggle("gone", ms <= 0);
    });
    document.querySelectorAll("time.since").forEach(function (t) {
      t.textContent = relative(t.getAttribute("datetime"));
    });
  }

  // --- Requests ---------------------------------------------------------
  function Unauthorized() {}
  function api(path, init) {
    init = init || {};
    init.headers = Object.assign(headers(), init.headers || {});
    init.cache = "no-store";
    return fetch(path, init).then(function (res) {
      if (res.status === 401) throw new Unauthorized();
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) {
          var error = new Error(body && body.error ? body.error : "HTTP " + res.status);
          error.status = res.status;
          throw error;
        }
        return body;
      });
    });
  }

  function askToken(message) {
    stopStream();
    $("token-form").hidden = false;
    $("locks-section").hidden = true;
    $("history").hidden = true;
    $("token-error").textContent = message || "";
    setStatus("Waiting for a token", "down");
    $("token-input").focus();
  }

  // --- Live stream over fetch (EventSource can't send headers) ----------
  var streamAbort = null;
  var backoff = 1000;
  function stopStream() {
    if (streamAbort) streamAbort.abort();
    streamAbort = null;
  }
  function handleEvent(block) {
    var event = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) event = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return;
    var payload = JSON.parse(data.join("\n"));
    if (event === "locks") {
      state.locks = payload;
      banner("");
      setStatus("Live", "live");
      render();
      if (state.history) loadHistory(state.history, false);
    } else if (event === "partial") {
      banner("Not shown: the locks of " + payload.missing.map(function (m) {
        return "backend " + m.backend + " (" + m.error + ")";
      }).join("; ") + ". Showing the other backends' locks; retrying every second.");
      setStatus("Partly unavailable", "down");
    } else if (event === "unavailable") {
      banner("The lock store is unavailable: " + payload.error + ". Showing the last known locks; retrying every second.");
      setStatus("Store unavailable", "down");
    }
  }
  function stream() {
    stopStream();
    var controller = new AbortController();
    streamAbort = controller;
    fetch("/api/events", { headers: headers(), cache: "no-store", signal: controller.signal })
      .then(function (res) {
        if (res.status === 401) throw new Unauthorized();
        if (!res.ok || !res.body) {
          return res.json().catch(function () { return {}; }).then(function (body) {
            throw new Error(body.error || "HTTP " + res.status);
          });
        }
        backoff = 1000;
        var reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("The server closed the stream");
            buffer += chunk.value;
            var at;
            while ((at = buffer.indexOf("\n\n")) >= 0) {
              var block = buffer.slice(0, at);
              buffer = buffer.slice(at + 2);
              handleEvent(block);
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (error) {
        if (controller.signal.aborted) return;
        if (error instanceof Unauthorized) { askToken("That token was refused; paste the current one."); return; }
        streamAbort = null;
        setStatus("Reconnecting…", "down");
        banner("Lost the live connection to the server (" + (error && error.message ? error.message : "network error") + "). Reconnecting…");
        setTimeout(function () { if (!streamAbort) start(); }, backoff);
        backoff = Math.min(backoff * 2, 10000);
      });
  }

  function start() {
    api("/api/info").then(function (info) {
      state.info = info;
      $("version").textContent = "Stormlock " + info.version +
        (info.principal ? " · signed in as " + info.principal : "") +
        (info.allowBreak ? " · breaking allowed" : " · read-only");
      $("token-form").hidden = true;
      $("locks-section").hidden = false;
      route();
      stream();
    }).catch(function (error) {
      if (error instanceof Unauthorized) { askToken(token() ? "That token was refused; paste the current one." : ""); return; }
      setStatus("Reconnecting…", "down");
      banner("Cannot reach the server (" + error.message + "). Retrying…");
      setTimeout(start, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }

  // --- History ----------------------------------------------------------
  function loadHistory(resource, focus) {
    return api("/api/locks/" + encodeURIComponent(resource) + "/history?limit=50").then(function (events) {
      if (state.history !== resource) return;
      var items = events.map(function (ev) {
        var what = [el("span", {}, holderNodes(ev))];
        if (ev.reason) what.push(el("span", { class: "muted", text: " — " }), el("span", { text: ev.reason }));
        if (ev.by) what.push(el("div", { class: "by" }, [el("strong", { text: "by " }), el("span", { text: ev.by.principal }), el("span", { text: ": " + ev.by.reason })]));
        return el("li", { "data-kind": ev.kind }, [
          timeEl(ev.at, "", relative(ev.at)),
          el("span", { class: "kind " + ev.kind, text: ev.kind + " · #" + ev.fence }),
          el("div", {}, what),
        ]);
      });
      $("history-list").replaceChildren.apply($("history-list"), items);
      $("history-empty").hidden = items.length > 0;
      if (focus) $("history-title").focus();
    }).catch(function (error) {
      if (error instanceof Unauthorized) { askToken("That token was refused."); return; }
      $("history-list").replaceChildren(el("li", { class: "error", text: error.message }));
    });
  }
  function route() {
    var hash = location.hash;
    if (hash.indexOf("#history/") === 0) {
      var resource;
      try { resource = decodeURIComponent(hash.slice(9)); } catch (e) { resource = null; }
      if (resource) {
        state.history = resource;
        $("history-resource").textContent = resource;
        $("history").hidden = false;
        $("history-list").replaceChildren();
        loadHistory(resource, true);
        return;
      }
    }
    var wasOpen = state.history;
    state.history = null;
    $("history").hidden = true;
    if (wasOpen) {
      var link = document.querySelector('#rows tr[data-resource="' + CSS.escape(wasOpen) + '"] a');
      (link || $("locks-title")).focus();
    }
  }

  // --- Break ------------------------------------------------------------
  var breaking = null;
  function openBreak(item, opener) {
    breaking = { item: item, opener: opener };
    var who = [item.principal];
    if (item.host) who.push("(on " + item.host + ")");
    $("break-summary").replaceChildren(
      "Resource ", el("code", { text: item.resource }), " is held by ",
      el("strong", { text: who.join(" ") }), ", fence " + item.fence + "."
    );
    $("break-reason").value = "";
    $("break-error").textContent = "";
    $("break-confirm").disabled = false;
    $("break-dialog").showModal();
    $("break-reason").focus();
  }
  function closeBreak() {
    $("break-dialog").close();
  }

  function init() {
    $("zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    $("filter").addEventListener("input", render);
    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (e.key === "/" && tag !== "INPUT" && tag !== "TEXTAREA" && !$("break-dialog").open) {
        e.preventDefault();
        $("filter").focus();
      }
    });
    $("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      start();
    });
    $("history-close").addEventListener("click", function (e) {
      e.preventDefault();
      history.pushState(null, "", location.pathname + location.search);
      route();
    });
    window.addEventListener("hashchange", route);
    $("break-cancel").addEventListener("click", closeBreak);
    $("break-dialog").addEventListener("close", function () {
      if (breaking && breaking.opener && document.contains(breaking.opener)) breaking.opener.focus();
      breaking = null;
    });
    $("break-form").addEventListener("submit", function (e) {
      e.preventDefault();
      if (!breaking) return;
      var item = breaking.item;
      var reason = $("break-reason").value.trim();
      if (!reason) { $("break-error").textContent = "Say why the lease is stale."; return; }
      $("break-confirm").disabled = true;
      api("/api/locks/" + encodeURIComponent(item.resource) + "/break", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: item.id, reason: reason }),
      }).then(function (broken) {
        closeBreak();
        setStatus("Broke the lease of " + broken.principal + " on " + broken.resource, "live");
      }).catch(function (error) {
        $("break-confirm").disabled = false;
        $("break-error").textContent = error instanceof Unauthorized
          ? "The token was refused; the lease was not broken."
          : "Not broken: " + error.message;
      });
    });
    setInterval(tick, 1000);
    start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
`;

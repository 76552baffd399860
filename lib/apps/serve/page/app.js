// @ts-check
/// <reference lib="dom" />
// The status page's script, served as /app.js as it is (see page.ts), and
// type-checked against the DOM by `deno check`. It asks for the token once
// (kept in session storage), streams /api/events with fetch so the header
// can be sent, reconnects when the stream drops, and shows a banner while
// the store is down. All data goes into the DOM as text, never as markup.
"use strict";

/** @import { Info, Lease, LockEvent } from "./types.ts" */
/** @typedef {Node | string | null | undefined} Child */

(function () {
  const TOKEN_KEY = "stormlock.token";
  /**
   * @type {{
   *   locks: Lease[], info: Info | null, history: string | null,
   *   stale: boolean, seen: Set<string> | null,
   * }}
   */
  const state = {
    locks: [],
    info: null,
    history: null,
    stale: false,
    seen: null,
  };
  /**
   * An element of the page, which has them all from the start.
   * @param {string} id
   */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  /** @param {string} id */
  const input = (id) => /** @type {HTMLInputElement} */ ($(id));
  /** @param {string} id */
  const button = (id) => /** @type {HTMLButtonElement} */ ($(id));
  /** @param {string} id */
  const dialog = (id) => /** @type {HTMLDialogElement} */ ($(id));

  /**
   * @param {string} tag
   * @param {Record<string, string | null | undefined>} [props]
   * @param {Child[]} [children]
   * @returns {HTMLElement}
   */
  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        const value = props[key];
        if (key === "text") node.textContent = value ?? "";
        else if (key === "class") node.className = value ?? "";
        else node.setAttribute(key, String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(
        typeof child === "string" ? document.createTextNode(child) : child,
      );
    });
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }
  function headers() {
    /** @type {Record<string, string>} */
    const h = { "Accept": "application/json" };
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }

  /** @param {string | undefined} text */
  function safeLink(text) {
    if (!text) return null;
    try {
      const url = new URL(text);
      return url.protocol === "https:" || url.protocol === "http:"
        ? url.href
        : null;
    } catch {
      return null;
    }
  }

  /**
   * A span as people say it (`45s`, `12m`, `3h5m`). A stand-in: page.ts
   * puts the CLI's own rule from lib/kit/time.ts here, so both agree.
   * @param {number} ms
   * @returns {string}
   */
  function span(ms) {
    throw new Error("span(" + ms + ") was not inlined by page.ts");
  }
  /** @param {number} n */
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  /** @param {number} ms */
  function countdown(ms) {
    if (ms <= 0) return "expired";
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400),
      h = Math.floor(s / 3600) % 24,
      m = Math.floor(s / 60) % 60;
    if (d > 0) return "in " + d + "d " + h + "h " + pad(m) + "m";
    return "in " + (h > 0 ? h + ":" + pad(m) : String(m)) + ":" + pad(s % 60);
  }
  /** @param {string} iso */
  function relative(iso) {
    const ms = Date.parse(iso) - Date.now();
    return ms < 0 ? span(ms) + " ago" : "in " + span(ms);
  }
  const fullTime = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "long",
  });
  /** @param {string} iso */
  function local(iso) {
    return fullTime.format(new Date(iso));
  }
  /**
   * @param {string} iso
   * @param {string} cls
   * @param {string} text
   */
  function timeEl(iso, cls, text) {
    return el("time", {
      datetime: iso,
      title: local(iso),
      class: cls || "",
      text: text,
    });
  }

  /** @param {Lease} item */
  function holderNodes(item) {
    const nodes = [el("span", { class: "principal", text: item.principal })];
    if (
      item.host &&
      item.principal.slice(-(item.host.length + 1)) !== "@" + item.host
    ) {
      nodes.push(el("span", { class: "host", text: " on " + item.host }));
    }
    const waiting = item.waiting || [];
    if (waiting.length) {
      nodes.push(el("span", {
        class: "queue",
        title: "Waiting, first come first: " +
          waiting.map((w) => w.principal).join(", "),
        text: waiting.length + " waiting: " +
          waiting.map((w) => w.principal).join(", "),
      }));
    }
    if (item.request) {
      nodes.push(el("span", {
        class: "queue request",
        title: "Hand-over requested by " + item.request.principal +
          (item.request.reason ? ": " + item.request.reason : ""),
        text: item.request.principal + " asks for it" +
          (item.request.reason ? ": " + item.request.reason : ""),
      }));
    }
    return nodes;
  }
  /** @param {Lease} item */
  function reasonNodes(item) {
    const href = safeLink(item.link);
    if (href) {
      return [
        el("a", {
          href: href,
          rel: "noopener noreferrer",
          target: "_blank",
          text: item.reason || item.link,
        }),
      ];
    }
    const nodes = [];
    if (item.reason) nodes.push(el("span", { text: item.reason }));
    if (item.link) {
      nodes.push(
        el("span", {
          class: "muted",
          text: (item.reason ? " · " : "") + item.link,
        }),
      );
    }
    if (!nodes.length) nodes.push(el("span", { class: "muted", text: "—" }));
    return nodes;
  }
  /** @param {string} resource */
  function historyHref(resource) {
    return "#history/" + encodeURIComponent(resource);
  }

  /**
   * @param {string} text
   * @param {string} [cls]
   */
  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }
  /** @param {string} text */
  function banner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  /**
   * @param {Lease} item
   * @param {string[]} words
   */
  function matches(item, words) {
    const hay = [
      item.resource,
      item.principal,
      item.host,
      item.reason,
      item.link,
      item.backend,
    ]
      .filter(Boolean).join("\n").toLowerCase();
    return words.every((w) => hay.indexOf(w) >= 0);
  }

  function render() {
    const words = input("filter").value.toLowerCase().split(/\s+/).filter(
      Boolean,
    );
    const shown = state.locks.filter((item) => matches(item, words));
    const canBreak = !!(state.info && state.info.allowBreak);
    const many = new Set(state.locks.map((l) => l.backend)).size > 1;
    $("actions-head").hidden = !canBreak;
    const fresh = state.seen;
    // Others' lease ids are hidden (null): a lease is also known by its start.
    /** @param {Lease} l */
    const key = (l) => l.id || l.resource + "\u0000" + l.created;
    state.seen = new Set(state.locks.map(key));
    const rows = shown.map(function (item) {
      const cells = [
        el("td", { class: "resource", "data-label": "Resource" }, [
          el("a", {
            href: historyHref(item.resource),
            title: "Show the history of this lock",
            text: item.resource,
          }),
          many && item.backend
            ? el("span", { class: "backend", text: item.backend })
            : null,
        ]),
        el("td", { "data-label": "Holder" }, holderNodes(item)),
        el(
          "td",
          { class: "reason", "data-label": "Reason" },
          reasonNodes(item),
        ),
        el("td", { "data-label": "Since" }, [
          timeEl(item.created, "since", relative(item.created)),
        ]),
        el("td", { "data-label": "Expires" }, [
          timeEl(
            item.expires,
            "expires",
            countdown(Date.parse(item.expires) - Date.now()),
          ),
        ]),
        el("td", {
          class: "num",
          "data-label": "Fence",
          text: String(item.fence),
        }),
      ];
      if (canBreak) {
        const breakButton = el("button", {
          type: "button",
          class: "small",
          text: "Break…",
          "aria-label": "Break the lease on " + item.resource,
        });
        breakButton.addEventListener("click", function () {
          openBreak(item, breakButton);
        });
        cells.push(el("td", { "data-label": "" }, [breakButton]));
      }
      const row = el(
        "tr",
        { "data-resource": item.resource, "data-id": item.id || "" },
        cells,
      );
      if (fresh && !fresh.has(key(item))) row.classList.add("fresh");
      return row;
    });
    $("rows").replaceChildren(...rows);
    const total = state.locks.length;
    $("count").textContent = words.length
      ? "(" + shown.length + " of " + total + ")"
      : "(" + total + ")";
    const empty = $("empty");
    empty.hidden = shown.length > 0;
    empty.textContent = total === 0
      ? "No live locks. Everything is free."
      : "No lock matches the filter.";
    $("locks").hidden = shown.length === 0;
    tick();
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time.expires").forEach(function (t) {
      const ms = Date.parse(t.getAttribute("datetime") || "") - now;
      t.textContent = countdown(ms);
      t.classList.toggle("soon", ms > 0 && ms < 60000);
      t.classList.toggle("gone", ms <= 0);
    });
    document.querySelectorAll("time.since").forEach(function (t) {
      t.textContent = relative(t.getAttribute("datetime") || "");
    });
  }

  // --- Requests ---------------------------------------------------------
  /** The server refused the token (401). */
  class Unauthorized {}
  /**
   * @param {string} path
   * @param {{ method?: string, headers?: Record<string, string>, body?: string }} [init]
   * @returns {Promise<any>}
   */
  function api(path, init) {
    init = init || {};
    init.headers = Object.assign(headers(), init.headers || {});
    return fetch(path, { ...init, cache: "no-store" }).then(function (res) {
      if (res.status === 401) throw new Unauthorized();
      return res.json().catch(() => {}).then(function (body) {
        if (!res.ok) {
          const error = new Error(
            body && body.error ? body.error : "HTTP " + res.status,
          );
          Object.assign(error, { status: res.status });
          throw error;
        }
        return body;
      });
    });
  }

  /** @param {string} [message] */
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
  /** @type {AbortController | null} */
  let streamAbort = null;
  let backoff = 1000;
  function stopStream() {
    if (streamAbort) streamAbort.abort();
    streamAbort = null;
  }
  /** @param {string} block */
  function handleEvent(block) {
    let event = "message";
    /** @type {string[]} */
    const data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) event = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    });
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (event === "locks") {
      state.locks = payload;
      banner("");
      setStatus("Live", "live");
      render();
      if (state.history) loadHistory(state.history, false);
    } else if (event === "partial") {
      /** @type {{ backend: string, error: string }[]} */
      const missing = payload.missing;
      banner(
        "Not shown: the locks of " + missing.map((m) =>
          "backend " + m.backend + " (" + m.error + ")"
        ).join("; ") +
          ". Showing the other backends' locks; retrying every second.",
      );
      setStatus("Partly unavailable", "down");
    } else if (event === "unavailable") {
      banner(
        "The lock store is unavailable: " + payload.error +
          ". Showing the last known locks; retrying every second.",
      );
      setStatus("Store unavailable", "down");
    }
  }
  function stream() {
    stopStream();
    const controller = new AbortController();
    streamAbort = controller;
    fetch("/api/events", {
      headers: headers(),
      cache: "no-store",
      signal: controller.signal,
    })
      .then(function (res) {
        if (res.status === 401) throw new Unauthorized();
        if (!res.ok || !res.body) {
          return res.json().catch(() => {}).then(function (body) {
            throw new Error(body.error || "HTTP " + res.status);
          });
        }
        backoff = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream())
          .getReader();
        let buffer = "";
        /** @returns {Promise<void>} */
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("The server closed the stream");
            buffer += chunk.value;
            let at;
            while ((at = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, at);
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
        if (error instanceof Unauthorized) {
          askToken("That token was refused; paste the current one.");
          return;
        }
        streamAbort = null;
        setStatus("Reconnecting…", "down");
        banner(
          "Lost the live connection to the server (" +
            (error && error.message ? error.message : "network error") +
            "). Reconnecting…",
        );
        setTimeout(function () {
          if (!streamAbort) start();
        }, backoff);
        backoff = Math.min(backoff * 2, 10000);
      });
  }

  function start() {
    api("/api/info").then(function (/** @type {Info} */ info) {
      state.info = info;
      $("version").textContent = "Stormlock " + info.version +
        (info.principal ? " · signed in as " + info.principal : "") +
        (info.allowBreak ? " · breaking allowed" : " · read-only");
      $("token-form").hidden = true;
      $("locks-section").hidden = false;
      route();
      stream();
    }).catch(function (error) {
      if (error instanceof Unauthorized) {
        askToken(
          token() ? "That token was refused; paste the current one." : "",
        );
        return;
      }
      setStatus("Reconnecting…", "down");
      banner("Cannot reach the server (" + error.message + "). Retrying…");
      setTimeout(start, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }

  // --- History ----------------------------------------------------------
  /**
   * @param {string} resource
   * @param {boolean} focus
   */
  function loadHistory(resource, focus) {
    return api(
      "/api/locks/" + encodeURIComponent(resource) + "/history?limit=50",
    ).then(function (/** @type {LockEvent[]} */ events) {
      if (state.history !== resource) return;
      const items = events.map(function (ev) {
        const what = [el("span", {}, holderNodes(ev))];
        if (ev.reason) {
          what.push(
            el("span", { class: "muted", text: " — " }),
            el("span", { text: ev.reason }),
          );
        }
        if (ev.by) {
          what.push(
            el("div", { class: "by" }, [
              el("strong", { text: "by " }),
              el("span", { text: ev.by.principal }),
              el("span", { text: ": " + ev.by.reason }),
            ]),
          );
        }
        return el("li", { "data-kind": ev.kind }, [
          timeEl(ev.at, "", relative(ev.at)),
          el("span", {
            class: "kind " + ev.kind,
            text: ev.kind + " · #" + ev.fence,
          }),
          el("div", {}, what),
        ]);
      });
      $("history-list").replaceChildren(...items);
      $("history-empty").hidden = items.length > 0;
      if (focus) $("history-title").focus();
    }).catch(function (error) {
      if (error instanceof Unauthorized) {
        askToken("That token was refused.");
        return;
      }
      $("history-list").replaceChildren(
        el("li", { class: "error", text: error.message }),
      );
    });
  }
  function route() {
    const hash = location.hash;
    if (hash.indexOf("#history/") === 0) {
      let resource;
      try {
        resource = decodeURIComponent(hash.slice(9));
      } catch {
        resource = null;
      }
      if (resource) {
        state.history = resource;
        $("history-resource").textContent = resource;
        $("history").hidden = false;
        $("history-list").replaceChildren();
        loadHistory(resource, true);
        return;
      }
    }
    const wasOpen = state.history;
    state.history = null;
    $("history").hidden = true;
    if (wasOpen) {
      const link = /** @type {HTMLElement | null} */ (document.querySelector(
        '#rows tr[data-resource="' + CSS.escape(wasOpen) + '"] a',
      ));
      (link || $("locks-title")).focus();
    }
  }

  // --- Break ------------------------------------------------------------
  /** @type {{ item: Lease, opener: HTMLElement } | null} */
  let breaking = null;
  /**
   * @param {Lease} item
   * @param {HTMLElement} opener
   */
  function openBreak(item, opener) {
    breaking = { item: item, opener: opener };
    const who = [item.principal];
    if (item.host) who.push("(on " + item.host + ")");
    $("break-summary").replaceChildren(
      "Resource ",
      el("code", { text: item.resource }),
      " is held by ",
      el("strong", { text: who.join(" ") }),
      ", fence " + item.fence + ".",
    );
    input("break-reason").value = "";
    $("break-error").textContent = "";
    button("break-confirm").disabled = false;
    dialog("break-dialog").showModal();
    $("break-reason").focus();
  }
  function closeBreak() {
    dialog("break-dialog").close();
  }

  function init() {
    $("zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone ||
      "local time";
    $("filter").addEventListener("input", render);
    document.addEventListener("keydown", function (e) {
      const target = /** @type {HTMLElement | null} */ (e.target);
      const tag = (target && target.tagName) || "";
      if (
        e.key === "/" && tag !== "INPUT" && tag !== "TEXTAREA" &&
        !dialog("break-dialog").open
      ) {
        e.preventDefault();
        $("filter").focus();
      }
    });
    $("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      const value = input("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      input("token-input").value = "";
      start();
    });
    $("history-close").addEventListener("click", function (e) {
      e.preventDefault();
      history.pushState(null, "", location.pathname + location.search);
      route();
    });
    globalThis.addEventListener("hashchange", route);
    $("break-cancel").addEventListener("click", closeBreak);
    $("break-dialog").addEventListener("close", function () {
      if (
        breaking && breaking.opener && document.contains(breaking.opener)
      ) breaking.opener.focus();
      breaking = null;
    });
    $("break-form").addEventListener("submit", function (e) {
      e.preventDefault();
      if (!breaking) return;
      const item = breaking.item;
      const reason = input("break-reason").value.trim();
      if (!reason) {
        $("break-error").textContent = "Say why the lease is stale.";
        return;
      }
      button("break-confirm").disabled = true;
      api("/api/locks/" + encodeURIComponent(item.resource) + "/break", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: item.id, reason: reason }),
      }).then(function (broken) {
        closeBreak();
        setStatus(
          "Broke the lease of " + broken.principal + " on " + broken.resource,
          "live",
        );
      }).catch(function (error) {
        button("break-confirm").disabled = false;
        $("break-error").textContent = error instanceof Unauthorized
          ? "The token was refused; the lease was not broken."
          : "Not broken: " + error.message;
      });
    });
    setInterval(tick, 1000);
    start();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else init();
})();

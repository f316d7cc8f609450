/* tracker beacon: pageviews, link clicks and custom events to POST /t/auto. See README.md. */
(function () {
  "use strict";

  const script = document.currentScript;
  const options = script ? script.dataset : {};
  const key = options.key;
  if (!key || window.tracker) return;

  const safe = (fn) => {
    try {
      return fn();
    } catch (e) {
      return null;
    }
  };
  const clip = (value, max) => String(value).slice(0, max);

  const host = options.host || safe(() => new URL(script.src).origin);
  const endpoint = String(host).replace(/\/+$/, "") + "/t/auto";
  const mode = options.track || "outbound";
  const adClickId = safe(() => new URL(location.href).searchParams.get("ad_click_id"));
  let lastUrl = null;

  // The server takes at most 32 string params and a body of at most 16 KB.
  function cleanParams(params, max) {
    const names = params && typeof params === "object" ? Object.keys(params).slice(0, 32) : [];
    const out = {};
    names.forEach((name) => {
      out[clip(name, 128)] = clip(params[name], max);
    });
    return names.length ? out : undefined;
  }

  function encode(type, params, max) {
    return JSON.stringify({
      k: key,
      t: type,
      u: clip(location.href, 2048),
      r: clip(document.referrer, 2048),
      c: adClickId || undefined,
      p: max < 0 ? undefined : cleanParams(params, max)
    });
  }

  function send(type, params) {
    // Halve the longest allowed param value until the body fits, then drop params.
    let max = 2048;
    let body = encode(type, params, max);
    while (new TextEncoder().encode(body).length > 16000 && max >= 0) {
      max = max ? max >> 1 : -1;
      body = encode(type, params, max);
    }
    if (safe(() => navigator.sendBeacon(endpoint, body))) return;
    // keepalive lets the request outlive the page, like sendBeacon.
    fetch(endpoint, {method: "POST", body, keepalive: true, mode: "no-cors",
      credentials: "omit", headers: {"Content-Type": "text/plain"}}).catch(() => {});
  }

  const pageview = () => safe(() => {
    if (location.href === lastUrl) return;
    lastUrl = location.href;
    send("pageview");
  });

  const onClick = (event) => safe(() => {
    if (mode === "none" || (event.type === "auxclick" && event.button !== 1)) return;
    const link = event.target.closest("a[href]");
    if (!link) return;
    const url = new URL(link.href, location.href);
    const outbound = url.origin !== location.origin;
    if (!/^https?:$/.test(url.protocol) || (!outbound && mode !== "all")) return;
    send(outbound ? "outbound" : "link_click",
      {href: url.href, text: clip((link.innerText || link.textContent || "").trim(), 200)});
  });

  function wrapHistory(name) {
    const original = history[name];
    history[name] = function () {
      const result = original.apply(this, arguments);
      pageview();
      return result;
    };
  }

  window.tracker = {
    // Returns false when the type breaks the event_type rule.
    track: (type, params) => !!safe(() => {
      if (typeof type !== "string" || !/^[A-Za-z0-9_.:-]{1,64}$/.test(type)) return false;
      send(type, params);
      return true;
    })
  };

  safe(() => {
    document.addEventListener("click", onClick, true);
    document.addEventListener("auxclick", onClick, true);
    if (!("noSpa" in options)) {
      wrapHistory("pushState");
      wrapHistory("replaceState");
      window.addEventListener("popstate", pageview);
    }
    pageview();
  });
})();

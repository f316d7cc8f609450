/* tracker beacon: pageviews, link clicks and custom events sent to POST /t/auto.
   No cookies, no storage, no eval; every entry point catches its own errors. */
(function () {
  "use strict";

  var script = document.currentScript;
  var key = script && script.getAttribute("data-key");
  if (!key || window.tracker) return;

  var host = script.getAttribute("data-host") || safe(function () {
    return new URL(script.src).origin;
  });
  var endpoint = String(host).replace(/\/+$/, "") + "/t/auto";
  var mode = script.getAttribute("data-track") || "outbound";
  var adClickId = safe(function () {
    return new URL(location.href).searchParams.get("ad_click_id");
  });
  var lastUrl = null;

  function safe(fn) {
    try {
      return fn();
    } catch (e) {
      return null;
    }
  }

  function clip(value, max) {
    return String(value).slice(0, max);
  }

  // The server takes at most 32 string params.
  function cleanParams(params) {
    var out = {};
    var names = params && typeof params === "object" ? Object.keys(params).slice(0, 32) : [];
    names.forEach(function (name) {
      out[clip(name, 128)] = clip(params[name], 2048);
    });
    return names.length ? out : undefined;
  }

  function send(type, params) {
    var body = JSON.stringify({
      k: key,
      t: type,
      u: clip(location.href, 2048),
      r: clip(document.referrer, 2048),
      c: adClickId || undefined,
      p: cleanParams(params)
    });
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body)) return;
    // keepalive lets the request outlive the page, like sendBeacon.
    fetch(endpoint, {method: "POST", body: body, keepalive: true, mode: "no-cors",
      credentials: "omit", headers: {"Content-Type": "text/plain"}}).catch(function () {});
  }

  function pageview() {
    safe(function () {
      if (location.href === lastUrl) return;
      lastUrl = location.href;
      send("pageview");
    });
  }

  function onClick(event) {
    safe(function () {
      if (mode === "none" || (event.type === "auxclick" && event.button !== 1)) return;
      var link = event.target.closest && event.target.closest("a[href]");
      if (!link) return;
      var url = new URL(link.href, location.href);
      if (!/^https?:$/.test(url.protocol)) return;
      var outbound = url.origin !== location.origin;
      if (!outbound && mode !== "all") return;
      send(outbound ? "outbound" : "link_click",
        {href: url.href, text: clip((link.innerText || link.textContent || "").trim(), 200)});
    });
  }

  function wrapHistory(name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      pageview();
      return result;
    };
  }

  window.tracker = {
    // Returns false when the type breaks the event_type rule.
    track: function (type, params) {
      return !!safe(function () {
        if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(type)) return false;
        send(type, params);
        return true;
      });
    }
  };

  safe(function () {
    document.addEventListener("click", onClick, true);
    document.addEventListener("auxclick", onClick, true);
    if (!script.hasAttribute("data-no-spa")) {
      wrapHistory("pushState");
      wrapHistory("replaceState");
      window.addEventListener("popstate", pageview);
    }
    pageview();
  });
})();

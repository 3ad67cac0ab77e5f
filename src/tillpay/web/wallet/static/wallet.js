/*
 * The wallet app's behaviour in the browser: payment codes made offline from the device secret,
 * live updates of confirmations and results, countdowns, the language switch and the time zone.
 * Every visible text comes from the server-rendered page (translated there); none is written here.
 */
(function () {
  "use strict";

  var STORE_KEY = "tillpay.device";
  var SEEN_KEY = "tillpay.seen";
  var PAGES_CACHE = "tillpay-wallet-pages"; // as in sw.js
  var body = document.body;
  var page = body.dataset.page;
  var signedIn = body.dataset.signedIn === "1";
  // "0" on a copy the service worker kept and showed without network (see sw.js).
  var fresh = body.dataset.fresh !== "0";

  // ------------------------------------------------------------ installable app and offline pages

  /** Delete the pages kept for offline use: they show the signed-in customer's balance and payments. */
  function forgetPages() {
    var done = [];
    if (window.caches) done.push(caches.delete(PAGES_CACHE).catch(function () {}));
    if (navigator.serviceWorker && navigator.serviceWorker.controller) {
      navigator.serviceWorker.controller.postMessage({ type: "forget" });
    }
    localStorage.removeItem(SEEN_KEY);
    return Promise.all(done);
  }

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/wallet/sw.js", { scope: "/wallet/" }).then(function () {
      return navigator.serviceWorker.ready;
    }).then(function (reg) {
      if (signedIn && fresh && reg.active) reg.active.postMessage({ type: "warm" });
    }).catch(function () { /* no offline pages: the app works online as before */ });
  }
  if (!signedIn && page === "login" && window.caches) forgetPages();

  if (!fresh) {
    var lastKnown = document.getElementById("last-known");
    if (lastKnown) lastKnown.hidden = false;
    // Back online: show what is true now (the code screen keeps its code and learns of payments live).
    if (page !== "code") window.addEventListener("online", function () { location.reload(); });
  }

  /** The newest payment this phone has seen, so a kept page does not announce an old one again. */
  function since() {
    var own = Number(body.dataset.since || "0");
    try {
      var seen = JSON.parse(localStorage.getItem(SEEN_KEY) || "null");
      if (seen && String(seen.device_no) === body.dataset.deviceNo) return Math.max(own, Number(seen.since));
    } catch (e) { /* unreadable: the page's own */ }
    return own;
  }

  if (signedIn && fresh && (page === "home" || page === "code")) {
    localStorage.setItem(SEEN_KEY, JSON.stringify({ device_no: body.dataset.deviceNo, since: since() }));
  }

  // ---------------------------------------------------------------- time zone and language switch

  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && document.cookie.indexOf("tp_tz=" + encodeURIComponent(tz)) < 0) {
      document.cookie = "tp_tz=" + encodeURIComponent(tz) + "; path=/wallet; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* the server falls back to UTC */ }

  var lang = document.getElementById("lang");
  if (lang) {
    lang.addEventListener("change", function () { document.getElementById("lang-form").submit(); });
  }

  var logout = document.getElementById("logout");
  if (logout) {
    // Signing out takes the code secret and the kept pages off this browser; signing in brings the
    // secret back.
    var leaving = false;
    logout.addEventListener("submit", function (e) {
      localStorage.removeItem(STORE_KEY);
      if (leaving) return;
      e.preventDefault();
      leaving = true;
      forgetPages().then(function () { logout.submit(); });
    });
  }

  // ------------------------------------------------------------------------------ device storage

  function loadDevice() {
    try {
      var d = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
      if (d && String(d.device_no) === body.dataset.deviceNo) return d;
    } catch (e) { /* unreadable: provision again */ }
    return null;
  }

  function saveDevice(d) {
    localStorage.setItem(STORE_KEY, JSON.stringify(d));
  }

  function nowSeconds() {
    return Date.now() / 1000;
  }

  /** Forget used slots of steps the server no longer accepts (it looks 2 steps back). */
  function prune(d) {
    var keep = TillpayPaycode.stepAt(nowSeconds()) - 3;
    Object.keys(d.used).forEach(function (s) { if (Number(s) < keep) delete d.used[s]; });
  }

  function markUsed(d, step, slot) {
    var list = d.used[step] || (d.used[step] = []);
    if (list.indexOf(slot) < 0) list.push(slot);
    prune(d);
    saveDevice(d);
  }

  /** Fetch this browser's device (number, secret, slots the server saw used) and keep it for offline use. */
  function provision() {
    return fetch("/wallet/api/device", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status === 401) {
        localStorage.removeItem(STORE_KEY);
        forgetPages();
        location.assign("/wallet/login?next=" + encodeURIComponent(location.pathname));
        throw new Error("signed out");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (info) {
      var d = loadDevice();
      if (!d || d.secret !== info.secret) d = { device_no: info.device_no, secret: info.secret, used: {} };
      info.used.forEach(function (u) { markUsed(d, u[0], u[1]); });
      saveDevice(d);
      return d;
    });
  }

  if (signedIn && !loadDevice() && page !== "code") {
    provision().catch(function () { /* retried on the code screen */ });
  }

  // -------------------------------------------------------------------------------- code screen

  function groupDigits(code) {
    return code.replace(/(\d{4})(?=\d)/g, "$1 ");
  }

  function drawQr(el, text) {
    var qr = qrcode(0, "M");
    qr.addData(text, "Numeric");
    qr.make();
    var n = qr.getModuleCount(), quiet = 4, size = n + 2 * quiet, d = "";
    for (var r = 0; r < n; r++) {
      for (var c = 0; c < n; c++) {
        if (qr.isDark(r, c)) d += "M" + (c + quiet) + " " + (r + quiet) + "h1v1h-1z";
      }
    }
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + size + " " + size);
    svg.setAttribute("shape-rendering", "crispEdges");
    var bg = document.createElementNS(ns, "rect");
    bg.setAttribute("width", size); bg.setAttribute("height", size); bg.setAttribute("fill", "#fff");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "#000");
    svg.appendChild(bg); svg.appendChild(path);
    el.replaceChildren(svg);
  }

  var codeScreen = null;

  function startCodeScreen() {
    var root = document.getElementById("paycode");
    var el = {
      qr: document.getElementById("qr"),
      bar: document.getElementById("barcode"),
      digits: document.getElementById("digits"),
      renew: document.getElementById("renew"),
      offline: document.getElementById("offline"),
      nocode: document.getElementById("nocode"),
      next: document.getElementById("new-code"),
    };
    var device = loadDevice();
    var shown = null; // {step, slot, code}

    function current() {
      var t = nowSeconds(), step = TillpayPaycode.stepAt(t);
      var used = device.used[step] || [];
      for (var slot = 0; slot < TillpayPaycode.SLOTS; slot++) {
        if (used.indexOf(slot) < 0) return { step: step, slot: slot, left: 60 - Math.floor(t % 60) };
      }
      return { step: step, slot: null, left: 60 - Math.floor(t % 60) };
    }

    function render() {
      el.offline.hidden = navigator.onLine;
      if (!device) {
        el.nocode.hidden = false;
        return;
      }
      el.nocode.hidden = true;
      var now = current();
      if (now.slot === null) {
        el.renew.textContent = root.dataset.usedTemplate.replace("{s}", now.left);
        return;
      }
      el.renew.textContent = root.dataset.renewTemplate.replace("{s}", now.left);
      if (shown && shown.step === now.step && shown.slot === now.slot) return;
      var secret = TillpayPaycode.fromHex(device.secret);
      var code = TillpayPaycode.generate(secret, device.device_no, now.step * 60, now.slot);
      shown = { step: now.step, slot: now.slot, code: code };
      root.dataset.code = code;
      root.dataset.step = now.step;
      root.dataset.slot = now.slot;
      el.digits.textContent = groupDigits(code);
      el.bar.replaceChildren(TillpayCode128.svg(document, code, 60));
      drawQr(el.qr, code);
    }

    function tick() {
      render();
      // Wake at the next whole second so the countdown and the minute's renewal are on time.
      setTimeout(tick, 1000 - (Date.now() % 1000) + 5);
    }

    el.next.addEventListener("click", function () {
      // The server cannot tell an offline phone that a code was used; the customer can skip it.
      if (device && shown) markUsed(device, shown.step, shown.slot);
      render();
    });
    window.addEventListener("online", render);
    window.addEventListener("offline", render);

    var p = navigator.onLine ? provision() : Promise.reject(new Error("offline"));
    p.then(function (d) { device = d; }, function () { device = loadDevice(); }).then(tick);
    if (navigator.wakeLock) navigator.wakeLock.request("screen").catch(function () { /* not granted */ });

    return {
      used: function () { if (device && shown) markUsed(device, shown.step, shown.slot); },
    };
  }

  if (page === "code" && signedIn) codeScreen = startCodeScreen();

  // ------------------------------------------------------------------------------ live updates

  // News that arrives while the phone is offline (an open event stream can outlive the signal) is
  // acted on when it is back: a page the phone cannot load would show the browser's error instead.
  var heldState = null;
  window.addEventListener("online", function () {
    var state = heldState;
    heldState = null;
    if (state) onState(state);
  });

  function onState(state) {
    if (!navigator.onLine) {
      heldState = state;
      return;
    }
    var here = location.pathname;
    if (state.pending.length) {
      var mine = state.pending.some(function (p) { return p.url === here; });
      if (!mine) {
        if (codeScreen) codeScreen.used();
        location.assign(state.pending[0].url);
      }
      return;
    }
    if (page === "confirm") {
      location.reload(); // it was confirmed, rejected or expired elsewhere: the server shows which
      return;
    }
    var done = state.recent.filter(function (r) { return r.status !== "WAIT_BUYER_PAY"; });
    if (!done.length) return;
    if (page === "code") {
      codeScreen.used();
      location.assign(done[0].url);
    } else if (page === "home") {
      location.reload();
    }
  }

  function live() {
    var url = "/wallet/api/events?since=" + encodeURIComponent(since());
    var errors = 0;
    var polling = false;

    function poll() {
      if (polling) return;
      polling = true;
      setInterval(function () {
        if (!navigator.onLine) return;
        fetch("/wallet/api/state?since=" + encodeURIComponent(since()), {
          credentials: "same-origin", cache: "no-store",
        }).then(function (r) {
          if (r.status === 401) location.assign("/wallet/login");
          return r.ok ? r.json() : null;
        }).then(function (s) { if (s) onState(s); }).catch(function () { /* offline: try again */ });
      }, 1000);
    }

    if (!window.EventSource) return poll();
    var es = new EventSource(url);
    es.addEventListener("state", function (e) { errors = 0; onState(JSON.parse(e.data)); });
    es.addEventListener("signed-out", function () { es.close(); location.assign("/wallet/login"); });
    es.addEventListener("open", function () { errors = 0; });
    es.addEventListener("error", function () {
      // A stream ends every minute by design and reconnects; several failures in a row mean a proxy
      // that breaks event streams, so fall back to polling.
      errors += 1;
      if (errors >= 4) { es.close(); poll(); }
    });
  }

  if (signedIn && ["home", "code", "confirm", "payment"].indexOf(page) >= 0) live();

  // ------------------------------------------------------------------------------- countdowns

  var expiring = document.querySelector("[data-expires-in]");
  var countdown = document.getElementById("countdown");
  if (expiring && countdown && Number(expiring.dataset.expiresIn) > 0) {
    var deadline = Date.now() + Number(expiring.dataset.expiresIn) * 1000;
    var timer = setInterval(function () {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      countdown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left === 0) {
        clearInterval(timer);
        // Expired: the request disappears; the server shows what became of it.
        var form = document.getElementById("confirm-form");
        if (form) form.hidden = true;
        setTimeout(function () { location.reload(); }, 1500);
      }
    }, 1000);
  }
})();

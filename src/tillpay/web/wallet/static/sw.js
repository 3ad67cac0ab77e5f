/*
 * The wallet's service worker, served as /wallet/sw.js (scope /wallet/) with its version filled in.
 *
 * - Scripts, styles and icons: kept per version, answered from the cache (a new version, made whenever
 *   any of them changes, installs, takes over at once and deletes the old caches).
 * - Pages: network first. Only a GET answer of 200 that the server marked as fit for offline use is
 *   kept (the signed-in user's home, code, history and payment pages); never the sign-in page, an
 *   error, a redirect or the answer to a form. Without network the kept copy is shown, marked as such
 *   (data-fresh="0"), and the page says "last known" with the time it was made.
 * - The JSON API and the live event stream are never touched: they go to the network or fail.
 * - The kept pages belong to whoever is signed in: they are deleted on sign-out (the page script and a
 *   "forget" message), and whenever a page turns out signed out (the sign-in page or a redirect to it).
 */
"use strict";

var VERSION = "__VERSION__";
var ASSETS = ["__ASSETS__"];
var OFFLINE_HEADER = "__OFFLINE_HEADER__";
var START_URL = "__START_URL__";
var STATIC_CACHE = "tillpay-wallet-static-" + VERSION;
var PAGES_CACHE = "tillpay-wallet-pages";
var MAX_PAGES = 40;
// A phone with a weak signal: after this long, a kept copy is better than a blank screen.
var NETWORK_TIMEOUT_MS = 6000;
// A page with no kept copy: tried again this many times, this far apart, when the network fails.
var NAVIGATION_RETRIES = 5;
var NAVIGATION_RETRY_MS = 700;

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(STATIC_CACHE).then(function (cache) {
      return cache.addAll(ASSETS.map(function (u) { return new Request(u, { cache: "reload" }); }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (n) {
        return n.indexOf("tillpay-wallet-static-") === 0 && n !== STATIC_CACHE;
      }).map(function (n) { return caches.delete(n); }));
    }).then(function () { return self.clients.claim(); })
  );
});

// Bumped by every forget(): a page fetched before a sign-out and answered after it is not kept.
var generation = 0;

function forget() {
  generation += 1;
  return caches.delete(PAGES_CACHE);
}

function isSignIn(url) {
  return new URL(url).pathname === "/wallet/login";
}

/** Keep a page for offline use, marked as a kept copy; only pages the server marked, and only GETs. */
function keep(request, response, gen) {
  if (gen !== generation) return Promise.resolve();
  if (request.method !== "GET" || response.status !== 200 || response.type !== "basic") return Promise.resolve();
  if (response.headers.get(OFFLINE_HEADER) !== "page") return Promise.resolve();
  return response.text().then(function (html) {
    if (gen !== generation) return undefined;
    var copy = new Response(html.replace('data-fresh="1"', 'data-fresh="0"'), {
      status: 200,
      headers: { "Content-Type": "text/html; charset=utf-8" },
    });
    return caches.open(PAGES_CACHE).then(function (cache) {
      if (gen !== generation) return undefined;
      return cache.put(request.url, copy).then(function () { return cache.keys(); }).then(function (keys) {
        // Oldest first: drop payment pages beyond the limit.
        return Promise.all(keys.slice(0, Math.max(0, keys.length - MAX_PAGES)).map(function (k) {
          return cache.delete(k);
        }));
      });
    });
  });
}

/** What a page's network answer leaves behind: a kept copy, or (signed out) nothing of the session. */
function save(request, response, gen) {
  // Signed out (or someone else about to sign in): nothing of the previous session stays.
  return isSignIn(response.url || request.url) && response.type === "basic"
    ? forget() : keep(request, response.clone(), gen);
}

function withTimeout(promise, ms) {
  return new Promise(function (resolve, reject) {
    var timer = setTimeout(function () { reject(new Error("timeout")); }, ms);
    promise.then(function (v) { clearTimeout(timer); resolve(v); }, function (e) { clearTimeout(timer); reject(e); });
  });
}

function page(event) {
  var request = event.request;
  var saved = null;
  var gen = generation;
  var network = fetch(request).then(function (response) {
    saved = save(request, response, gen);
    return response;
  });
  event.waitUntil(network.then(function () { return saved; }).catch(function () {}));
  return caches.open(PAGES_CACHE).then(function (cache) {
    return cache.match(request.url);
  }).then(function (kept) {
    if (!kept) return network.catch(function () { return retried(request, gen, NAVIGATION_RETRIES); });
    return withTimeout(network, NETWORK_TIMEOUT_MS).catch(function () { return kept; });
  });
}

/**
 * A page with no kept copy whose fetch failed: fetched again a moment later, a few times, before the
 * browser's error page is shown. The signal of a phone that was offline a moment ago often comes back
 * a little after the page learns of it (and the page goes to a payment's result as soon as it does).
 */
function retried(request, gen, tries) {
  return new Promise(function (resolve) { setTimeout(resolve, NAVIGATION_RETRY_MS); }).then(function () {
    return fetch(request);
  }).then(function (response) {
    save(request, response, gen).catch(function () {});
    return response;
  }, function (e) {
    if (tries <= 1) throw e;
    return retried(request, gen, tries - 1);
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return; // forms go to the network, and their answers are not kept
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.indexOf("/wallet/") !== 0) return;
  if (url.pathname.indexOf("/wallet/static/") === 0) {
    event.respondWith(caches.open(STATIC_CACHE).then(function (cache) {
      return cache.match(request, { ignoreSearch: true }).then(function (hit) { return hit || fetch(request); });
    }));
    return;
  }
  if (request.mode === "navigate") event.respondWith(page(event));
});

self.addEventListener("message", function (event) {
  var msg = event.data || {};
  if (msg.type === "forget") {
    event.waitUntil(forget());
  } else if (msg.type === "warm") {
    // Signed in: keep the start page too (once), so that the installed app opens on the code offline.
    var request = new Request(START_URL, { credentials: "same-origin", redirect: "manual" });
    var gen = generation;
    event.waitUntil(caches.open(PAGES_CACHE).then(function (cache) {
      return cache.match(START_URL);
    }).then(function (hit) {
      if (hit) return undefined;
      return fetch(request).then(function (r) { return keep(request, r, gen); });
    }).catch(function () {}));
  }
});

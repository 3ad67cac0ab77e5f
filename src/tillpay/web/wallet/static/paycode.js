/*
 * Tillpay payment codes in the browser, offline: the same algorithm as tillpay.domain.paycode.
 *
 *   code    = "28" + device_no (8 digits) + slot (1 digit) + otp (7 digits)
 *   step    = floor(unix_seconds / 60)
 *   counter = step * 10 + slot, as an 8-byte big-endian integer
 *   otp     = RFC 4226 HOTP (HMAC-SHA1, dynamic truncation) mod 10**7
 *
 * SHA-1 and HMAC are written out here instead of using WebCrypto because crypto.subtle exists only in
 * secure contexts, and a phone on the shop's Wi-Fi may reach a test server over plain http. Checked
 * against tests/vectors/paycode.json in Chromium and in Node.js.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.TillpayPaycode = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var PREFIX = "28";
  var TIME_STEP = 60;
  var SLOTS = 10;
  var DEVICE_DIGITS = 8;
  var OTP_DIGITS = 7;

  function rotl(x, n) {
    return (x << n) | (x >>> (32 - n));
  }

  /** SHA-1 (FIPS 180-4) of a Uint8Array, as a 20-byte Uint8Array. */
  function sha1(bytes) {
    var len = bytes.length;
    var words = ((len + 8) >> 6) + 1;
    var w = new Uint32Array(words * 16);
    for (var i = 0; i < len; i++) {
      w[i >> 2] |= bytes[i] << (24 - (i % 4) * 8);
    }
    w[len >> 2] |= 0x80 << (24 - (len % 4) * 8);
    // Message length in bits; messages here are tiny, so the high word stays 0.
    w[words * 16 - 1] = len * 8;
    var h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
    var x = new Uint32Array(80);
    for (var blk = 0; blk < w.length; blk += 16) {
      for (var t = 0; t < 16; t++) x[t] = w[blk + t];
      for (t = 16; t < 80; t++) x[t] = rotl(x[t - 3] ^ x[t - 8] ^ x[t - 14] ^ x[t - 16], 1);
      var a = h0, b = h1, c = h2, d = h3, e = h4;
      for (t = 0; t < 80; t++) {
        var f, k;
        if (t < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
        else if (t < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
        else if (t < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
        else { f = b ^ c ^ d; k = 0xca62c1d6; }
        var tmp = (rotl(a, 5) + f + e + k + x[t]) >>> 0;
        e = d; d = c; c = rotl(b, 30) >>> 0; b = a; a = tmp;
      }
      h0 = (h0 + a) >>> 0; h1 = (h1 + b) >>> 0; h2 = (h2 + c) >>> 0; h3 = (h3 + d) >>> 0; h4 = (h4 + e) >>> 0;
    }
    var out = new Uint8Array(20);
    [h0, h1, h2, h3, h4].forEach(function (h, j) {
      out[j * 4] = h >>> 24; out[j * 4 + 1] = (h >>> 16) & 255; out[j * 4 + 2] = (h >>> 8) & 255; out[j * 4 + 3] = h & 255;
    });
    return out;
  }

  function concat(a, b) {
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  /** HMAC-SHA1 (RFC 2104) of msg under key, both Uint8Array. */
  function hmacSha1(key, msg) {
    if (key.length > 64) key = sha1(key);
    var ipad = new Uint8Array(64), opad = new Uint8Array(64);
    for (var i = 0; i < 64; i++) {
      var k = i < key.length ? key[i] : 0;
      ipad[i] = k ^ 0x36;
      opad[i] = k ^ 0x5c;
    }
    return sha1(concat(opad, sha1(concat(ipad, msg))));
  }

  /** The 8-byte big-endian counter; exact while counter < 2**53 (true until far beyond year 9999). */
  function counterBytes(counter) {
    var out = new Uint8Array(8);
    var hi = Math.floor(counter / 4294967296), lo = counter % 4294967296;
    for (var i = 0; i < 4; i++) {
      out[3 - i] = (hi >>> (8 * i)) & 255;
      out[7 - i] = (lo >>> (8 * i)) & 255;
    }
    return out;
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) s = "0" + s;
    return s;
  }

  /** RFC 4226 HOTP value (before the modulo) for a secret and counter. */
  function hotp(secret, counter) {
    var mac = hmacSha1(secret, counterBytes(counter));
    var off = mac[19] & 0x0f;
    return ((mac[off] & 0x7f) * 16777216) + (mac[off + 1] << 16) + (mac[off + 2] << 8) + mac[off + 3];
  }

  function stepAt(unixSeconds) {
    return Math.floor(unixSeconds / TIME_STEP);
  }

  /** The 18-digit code of a device at a moment and slot (secret: Uint8Array). */
  function generate(secret, deviceNo, unixSeconds, slot) {
    if (!secret || !secret.length) throw new Error("empty secret");
    if (!(deviceNo >= 0 && deviceNo < 100000000)) throw new Error("device_no out of range");
    if (!(slot >= 0 && slot < SLOTS)) throw new Error("slot out of range");
    var otp = hotp(secret, stepAt(unixSeconds) * SLOTS + slot) % 10000000;
    return PREFIX + pad(deviceNo, DEVICE_DIGITS) + String(slot) + pad(otp, OTP_DIGITS);
  }

  function fromHex(hex) {
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  return {
    TIME_STEP: TIME_STEP,
    SLOTS: SLOTS,
    sha1: sha1,
    hmacSha1: hmacSha1,
    stepAt: stepAt,
    generate: generate,
    fromHex: fromHex,
  };
});

/*
 * Code 128 (ISO/IEC 15417) for payment codes, subset C (pairs of digits), drawn as SVG.
 * Written for Tillpay; the pattern table is the standard's bar/space widths for values 0..106.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.TillpayCode128 = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var PATTERNS = (
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 " +
    "221312 231212 112232 122132 122231 113222 123122 123221 223211 221132 " +
    "221231 213212 223112 312131 311222 321122 321221 312212 322112 322211 " +
    "212123 212321 232121 111323 131123 131321 112313 132113 132311 211313 " +
    "231113 231311 112133 112331 132131 113123 113321 133121 313121 211331 " +
    "231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 " +
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214 " +
    "112412 122114 122411 142112 142211 241211 221114 413111 241112 134111 " +
    "111242 121142 121241 114212 124112 124211 411212 421112 421211 212141 " +
    "214121 412121 111143 111341 131141 114113 114311 411113 411311 113141 " +
    "114131 311141 411131 211412 211214 211232 2331112"
  ).split(" ");
  var START_C = 105;
  var STOP = 106;
  var QUIET = 10;

  /** Bar and space widths (in modules, bar first) of an even-length digit string in subset C. */
  function widths(digits) {
    if (!/^(\d\d)+$/.test(digits)) throw new Error("subset C needs an even number of digits");
    var values = [START_C];
    for (var i = 0; i < digits.length; i += 2) values.push(parseInt(digits.substr(i, 2), 10));
    var sum = START_C;
    for (i = 1; i < values.length; i++) sum += values[i] * i;
    values.push(sum % 103);
    values.push(STOP);
    var out = [];
    values.forEach(function (v) {
      PATTERNS[v].split("").forEach(function (w) { out.push(Number(w)); });
    });
    return out;
  }

  /** An <svg> element with the barcode, quiet zones included, scaled to its container's width. */
  function svg(doc, digits, height) {
    var ns = "http://www.w3.org/2000/svg";
    var ws = widths(digits);
    var total = ws.reduce(function (a, b) { return a + b; }, 0) + 2 * QUIET;
    var el = doc.createElementNS(ns, "svg");
    el.setAttribute("viewBox", "0 0 " + total + " " + height);
    el.setAttribute("preserveAspectRatio", "none");
    el.setAttribute("shape-rendering", "crispEdges");
    var bg = doc.createElementNS(ns, "rect");
    bg.setAttribute("width", total); bg.setAttribute("height", height); bg.setAttribute("fill", "#fff");
    el.appendChild(bg);
    var x = QUIET, d = "";
    ws.forEach(function (w, i) {
      if (i % 2 === 0) d += "M" + x + " 0h" + w + "v" + height + "h-" + w + "z";
      x += w;
    });
    var path = doc.createElementNS(ns, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "#000");
    el.appendChild(path);
    return el;
  }

  return { widths: widths, svg: svg, PATTERNS: PATTERNS };
});

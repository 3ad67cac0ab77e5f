// Checks the browser payment-code implementation against tests/vectors/paycode.json in Node.js.
// Usage: node paycode_vectors.js <paycode.js> <paycode.json>; prints "N passed, M failed".
"use strict";
const fs = require("fs");
const path = require("path");
const lib = require(path.resolve(process.argv[2]));
const vectors = JSON.parse(fs.readFileSync(process.argv[3], "utf8")).vectors;
let passed = 0;
let failed = 0;
for (const v of vectors) {
  const got = lib.generate(lib.fromHex(v.secret_hex), v.device_no, v.unix_seconds, v.slot);
  if (got === v.code) {
    passed++;
  } else {
    failed++;
    console.log(`vector ${JSON.stringify(v)}: got ${got}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);

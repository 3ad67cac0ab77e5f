// Tillpay merchant console: small comforts only; every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A form sends once: its buttons are disabled on submit (the server is idempotent anyway: a refund
  // form carries the refund id it was rendered with, so a second submission refunds nothing more).
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function () {
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
  // The refund form: a "full amount" shortcut next to the amount field.
  var left = document.getElementById("refundable");
  var amount = document.getElementById("refund-amount");
  if (left && amount) {
    var all = document.createElement("button");
    all.type = "button";
    all.className = "button small";
    all.id = "refund-all";
    all.textContent = "Full amount";
    all.addEventListener("click", function () {
      amount.value = left.textContent.replace(/[^0-9.,]/g, "").replace(/,/g, "");
    });
    amount.parentNode.appendChild(all);
  }
});

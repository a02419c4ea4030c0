// Progressive enhancement only: every page works without this script.
(function () {
  "use strict";

  // Create form: tick and lock what the ticked scopes imply.
  function refreshImplied(form) {
    var boxes = form.querySelectorAll('input[type=checkbox][name=scopes]');
    var implied = {};
    boxes.forEach(function (box) {
      if (box.checked && !box.disabled) {
        (box.dataset.implies || "").split(" ").forEach(function (name) {
          if (name) implied[name] = true;
        });
      }
    });
    boxes.forEach(function (box) {
      var isImplied = Boolean(implied[box.value]);
      var item = box.closest(".accesstokens-scope");
      var mark = item && item.querySelector(".accesstokens-implied-mark");
      if (isImplied) {
        if (!box.disabled) box.dataset.wasChecked = box.checked ? "1" : "";
        box.checked = true;
        box.disabled = true;  // implied scopes need not be sent
      } else if (box.disabled) {
        box.disabled = false;
        box.checked = box.dataset.wasChecked === "1";
      }
      if (item) item.classList.toggle("accesstokens-implied", isImplied);
      if (mark) mark.hidden = !isImplied;
    });
  }

  document.querySelectorAll(".accesstokens-form").forEach(function (form) {
    form.addEventListener("change", function () { refreshImplied(form); });
    refreshImplied(form);
  });

  // Forms that answer with a secret: a double click sends them once. (The
  // server refuses a second submission anyway; this spares the user the notice.)
  var onceForms = document.querySelectorAll("form input[name=form_id]");
  onceForms.forEach(function (input) {
    input.form.addEventListener("submit", function () {
      input.form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
      });
    });
  });
  window.addEventListener("pageshow", function () {
    onceForms.forEach(function (input) {
      input.form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = false;
      });
    });
  });

  // Reveal page: a copy button, and never bring the secret back from the
  // back-forward cache. The page answered a POST, so reloading it would send
  // the form again: leave for the token list instead.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.dataset.copy);
    var status = button.parentNode.querySelector(".accesstokens-copied");
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        if (status) status.hidden = false;
      });
    });
  });
  var revealed = document.querySelector("[data-leave-to]");
  if (revealed) {
    window.addEventListener("pagehide", function () {
      var secret = document.getElementById("token-secret");
      if (secret) secret.textContent = "";
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) window.location.replace(revealed.dataset.leaveTo);
    });
  }
})();

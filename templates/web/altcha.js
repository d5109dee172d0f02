// altcha.js is Herald's own proof-of-work widget for the signup form. It
// speaks ALTCHA's format (altcha-lib-go on the server): it fetches a
// challenge, finds the number n for which SHA-256(salt + n) is the
// challenge, and puts the base64 of the JSON payload
// {algorithm, challenge, number, salt, signature} in the hidden "altcha"
// field. A form sent before the work is done waits for it.
(function () {
  "use strict";
  var field = document.querySelector('input[name="altcha"][data-challenge]');
  if (!field || !window.fetch || !window.crypto || !window.crypto.subtle) {
    return; // the server answers "Please complete the check"
  }
  var form = field.form;
  var status = document.getElementById("altcha-status");
  var submitting = false;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function hex(buf) {
    var bytes = new Uint8Array(buf);
    var out = "";
    for (var i = 0; i < bytes.length; i++) {
      out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    }
    return out;
  }

  function sha256(text) {
    return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(hex);
  }

  async function solve() {
    var res = await fetch(field.getAttribute("data-challenge"), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" }
    });
    if (!res.ok) {
      throw new Error("challenge: HTTP " + res.status);
    }
    var ch = await res.json();
    if (ch.algorithm !== "SHA-256") {
      throw new Error("unsupported algorithm " + ch.algorithm);
    }
    for (var n = 0; n <= ch.maxNumber; n++) {
      if ((await sha256(ch.salt + n)) === ch.challenge) {
        return btoa(JSON.stringify({
          algorithm: ch.algorithm,
          challenge: ch.challenge,
          number: n,
          salt: ch.salt,
          signature: ch.signature
        }));
      }
    }
    throw new Error("no solution");
  }

  say("Checking that you are not a robot…");
  var work = solve().then(function (payload) {
    field.value = payload;
    say("Check done.");
  }, function (err) {
    say("The automatic check failed; please reload the page.");
    throw err;
  });

  form.addEventListener("submit", function (ev) {
    if (field.value || submitting) {
      return;
    }
    ev.preventDefault();
    submitting = true;
    say("Finishing the check…");
    work.then(function () { form.submit(); }, function () { submitting = false; });
  });
})();

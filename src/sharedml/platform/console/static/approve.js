// sharedml console: a data owner's signed approval, made in this browser (sharedml.approvals).
// The owner's approval key (Ed25519, PKCS#8 PEM from 'sharedml approval keygen') is read
// from a local file and used here through WebCrypto; it is never uploaded (its file input
// has no name, so no form sends it). Steps, as sharedml.approvals describes them:
//   1. fetch the job's spec as stored, in canonical form (the bytes the nodes hash);
//   2. show it, and hash those bytes here (SHA-256);
//   3. sign DOMAIN + the statement {dataset, job_id, party, spec_sha256, v} written as
//      Python's json.dumps(sort_keys=True) writes it (", " and ": ", non-ASCII as \uXXXX);
//   4. post only the statement, the signer's name (the key file's stem) and the signature.
// Reveals to the platform: what the CLI's signed approval reveals; nothing of the key.
// Caveat (docs/architecture.md, trust table): this script is served by the platform; an
// owner who does not trust the platform's host signs with the CLI instead.
"use strict";
(function () {
  var DOMAIN = "sharedml/approval/v1\n";

  function pyString(s) {
    return JSON.stringify(s).replace(/[\u007f-\uffff]/g, function (c) {
      return c.charCodeAt(0) < 0x80 ? c : "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
  }
  function statementText(st) {
    return "{\"dataset\": " + pyString(st.dataset) + ", \"job_id\": " + pyString(st.job_id) +
      ", \"party\": " + pyString(st.party) + ", \"spec_sha256\": " + pyString(st.spec_sha256) +
      ", \"v\": 1}";
  }
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  function base64(buffer) {
    return btoa(String.fromCharCode.apply(null, new Uint8Array(buffer)));
  }
  function pemBody(pem) {
    var m = /-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/.exec(pem);
    if (!m) { throw new Error("not a PKCS#8 PEM private key (make one: sharedml approval keygen)"); }
    var raw = atob(m[1].replace(/\s+/g, ""));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  async function sign(form, file) {
    var enc = new TextEncoder();
    // (form.dataset would be the form's input named "dataset": forms override built-ins)
    var r = await fetch(form.getAttribute("data-statement"), { credentials: "same-origin" });
    if (!r.ok) { throw new Error("the platform refused the spec (HTTP " + r.status + ")"); }
    var got = await r.json();
    form.querySelector(".signed-spec").textContent = JSON.stringify(JSON.parse(got.canonical), null, 2);
    var st = { job_id: got.job_id, party: got.party, dataset: got.dataset };
    st.spec_sha256 = hex(await crypto.subtle.digest("SHA-256", enc.encode(got.canonical)));
    var key = await crypto.subtle.importKey("pkcs8", pemBody(await file.text()),
                                            { name: "Ed25519" }, false, ["sign"]);
    var sig = await crypto.subtle.sign({ name: "Ed25519" }, key,
                                       enc.encode(DOMAIN + statementText(st)));
    st.signer = file.name.replace(/\.[^.]*$/, "");
    st.signature = base64(sig);
    Object.keys(st).forEach(function (k) { form.elements[k].value = st[k]; });
  }
  function decision(form, value) {
    var input = document.createElement("input");
    input.type = "hidden"; input.name = "decision"; input.value = value;
    form.appendChild(input);
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("decide") || form.hasAttribute("data-signed")) {
      return;
    }
    var by = event.submitter;
    if (!by || by.value !== "approve") { return; }
    event.preventDefault();
    var say = form.querySelector(".sign-message");
    var file = form.querySelector("input.approval-key").files[0];
    if (!file) { say.textContent = say.getAttribute("data-nokey") || "Choose your approval key file."; return; }
    sign(form, file).then(function () {
      form.setAttribute("data-signed", "1");
      decision(form, "approve");
      form.submit();
    }, function (err) { say.textContent = String(err.message || err); });
  });
})();

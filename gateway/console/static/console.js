// keyquorum console: the WebAuthn calls. The node builds every command;
// this script only asks the passkey to sign the exact bytes it was given
// and posts the assertion back. No inline code (the CSP forbids it).
"use strict";

const b64u = {
  enc(buf) {
    const b = new Uint8Array(buf);
    let s = "";
    for (const c of b) s += String.fromCharCode(c);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  dec(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  },
};

function say(text, isError) {
  const el = document.getElementById("status");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

async function call(path, body) {
  const r = await fetch("/ui/api/" + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const out = await r.json();
  if (!r.ok) throw new Error(out.words || out.message || r.statusText);
  return out;
}

// sign asks the passkey to sign a challenge the node made.
async function sign(ch) {
  const opts = {
    challenge: b64u.dec(ch.challenge),
    rpId: ch.rp_id,
    userVerification: "required",
    timeout: 120000,
  };
  if (ch.allow) opts.allowCredentials = ch.allow.map((id) => ({ type: "public-key", id: b64u.dec(id) }));
  const cred = await navigator.credentials.get({ publicKey: opts });
  return {
    payload: ch.payload,
    credential: b64u.enc(cred.rawId),
    authenticator_data: b64u.enc(cred.response.authenticatorData),
    client_data_json: b64u.enc(cred.response.clientDataJSON),
    signature: b64u.enc(cred.response.signature),
  };
}

function failed(e) {
  say(e.name === "NotAllowedError" ? "The passkey was not used (cancelled or timed out)." : e.message, true);
}

async function signIn() {
  try {
    const ch = await call("signin/begin");
    say("Use your passkey to " + ch.summary + ".");
    const out = await call("signin/finish", await sign(ch));
    say("Signed in as " + out.operator + ".");
    window.location.assign(out.next);
  } catch (e) {
    failed(e);
  }
}

async function register(ev) {
  ev.preventDefault();
  const f = ev.target;
  const operator = f.elements.operator.value.trim();
  const rpId = f.elements.rp_id.value.trim() || document.location.hostname;
  const origins = f.elements.origins.value.split(/\s+/).filter((o) => o !== "");
  try {
    const challenge = crypto.getRandomValues(new Uint8Array(32));
    const cred = await navigator.credentials.create({
      publicKey: {
        rp: { id: rpId, name: "keyquorum" },
        user: { id: new TextEncoder().encode(operator).slice(0, 64), name: operator, displayName: operator },
        challenge,
        pubKeyCredParams: [{ type: "public-key", alg: -8 }, { type: "public-key", alg: -7 }],
        authenticatorSelection: { residentKey: "required", userVerification: "required" },
        attestation: "none",
        timeout: 120000,
      },
    });
    const out = await call("register", {
      operator,
      name: f.elements.name.value.trim(),
      id: b64u.enc(cred.rawId),
      algorithm: cred.response.getPublicKeyAlgorithm(),
      public_key: b64u.enc(cred.response.getPublicKey()),
      rp_id: rpId,
      origins,
    });
    document.getElementById("request-command").value = out.command;
    document.getElementById("request").hidden = false;
    say("Passkey created. An admin must now sign its registration.");
    document.getElementById("request-command").focus();
  } catch (e) {
    failed(e);
  }
}

async function decide(ev) {
  ev.preventDefault();
  const f = ev.target;
  const body = {
    action: f.elements.action.value,
    machine: f.dataset.machine,
    key: f.dataset.key,
    uses: parseInt(f.elements.uses.value, 10) || 0,
    minutes: parseInt(f.elements.minutes.value, 10) || 0,
  };
  try {
    const ch = await call("prepare", body);
    say("Use your passkey to " + ch.summary + ".");
    const out = await call("submit", await sign(ch));
    say("Done: the cluster " + out.done + " it (log index " + out.index + ").");
    const li = f.closest("li");
    if (li) li.classList.add("decided");
  } catch (e) {
    failed(e);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const s = document.getElementById("signin");
  if (s) s.addEventListener("click", signIn);
  const r = document.getElementById("register");
  if (r) r.addEventListener("submit", register);
  for (const f of document.querySelectorAll("form.decide")) f.addEventListener("submit", decide);
});

// A webhook receiver as a Node user writes one: express 5 over HTTPS, every request verified
// with ONLY the npm `standardwebhooks` and `svix` libraries and an X-SuperOffice-Signature
// check written from the documented algorithm with node's crypto.
//
//   node verify_receiver.cjs <config.json>
//
// config.json: {"key": <PEM path>, "cert": <PEM path>,
//               "secrets": {<kind>: {"secret": <Secret>, "standard": <whsec_ form>}}}
// POST /hook/<kind>/<run> is verified with that kind's secrets and answered 200 when every
// verifier accepts it, else 401. GET /results?prefix=<path> lists the records of the requests
// whose path starts with the prefix. On listening it prints one line to stdout:
// {"ready": true, "port": <port>}.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const https = require("node:https");
const express = require("express");
const { Webhook: StandardWebhook } = require("standardwebhooks");
const { Webhook: SvixWebhook } = require("svix");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

// One verifier object per kind, built once at start as a user would: a secret a library
// refuses fails here, loudly, instead of on every request.
const verifiers = {};
for (const [kind, { secret, standard }] of Object.entries(config.secrets)) {
  verifiers[kind] = {
    secret,
    standardwebhooks: new StandardWebhook(standard),
    svix: new SvixWebhook(standard),
  };
}

// X-SuperOffice-Signature: base64(HMAC-SHA256(key = Secret as UTF-8, message = body bytes)).
// The base64 texts are compared, so a non-canonical encoding of the digest is not accepted.
function checkSuperOfficeSignature(secret, body, header) {
  if (typeof header !== "string" || header === "") {
    throw new Error("missing X-SuperOffice-Signature");
  }
  const expected = Buffer.from(
    crypto.createHmac("sha256", Buffer.from(secret, "utf8")).update(body).digest("base64"),
    "utf8",
  );
  const given = Buffer.from(header, "utf8");
  // timingSafeEqual throws on different lengths; a different length is a mismatch anyway.
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw new Error("X-SuperOffice-Signature does not match the body");
  }
}

function verdict(check) {
  try {
    check();
    return { ok: true, error: null };
  } catch (err) {
    return { ok: false, error: String(err && err.message ? err.message : err) };
  }
}

const records = [];
const app = express();

app.get("/results", (req, res) => {
  const prefix = typeof req.query.prefix === "string" ? req.query.prefix : "";
  res.json(records.filter((r) => r.path.startsWith(prefix)));
});

// express.raw keeps the exact body bytes: the signatures are over them, not over re-encoded JSON.
app.all(
  "/hook/:kind/:run",
  express.raw({ type: () => true, limit: "1mb" }),
  (req, res) => {
    const kind = verifiers[req.params.kind];
    if (kind === undefined) {
      res.status(404).send("no such kind");
      return;
    }
    // body-parser leaves req.body undefined for a request without a body.
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const verdicts = {
      standardwebhooks: verdict(() => kind.standardwebhooks.verify(body, req.headers)),
      svix: verdict(() => kind.svix.verify(body, req.headers)),
      "x-superoffice-signature": verdict(() =>
        checkSuperOfficeSignature(kind.secret, body, req.headers["x-superoffice-signature"]),
      ),
    };
    const accepted = Object.values(verdicts).every((v) => v.ok);
    const status = accepted ? 200 : 401;
    records.push({
      path: req.path,
      method: req.method,
      event: req.headers["x-superoffice-event"] ?? null,
      test: req.headers["x-hook-test"] ?? null,
      headers: req.headers,
      body: body.toString("base64"),
      verdicts,
      status,
    });
    res.status(status).json(verdicts);
  },
);

const server = https.createServer(
  { key: fs.readFileSync(config.key), cert: fs.readFileSync(config.cert) },
  app,
);
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.address().port })}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive sockets a client still holds
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

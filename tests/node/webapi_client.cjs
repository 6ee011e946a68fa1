#!/usr/bin/env node
// Drives hookcast with SuperOffice's official JS client: WebhookAgent of @superoffice/webapi
// (its CommonJS build; the ESM build does not load on node 20). Every WebhookAgent method is
// called with the client's own carriers, and each step prints ONE JSON line:
//
//   {"step": "...", "outcome": "ok" | "err", "result": <what the client mapped>,
//    "error": {...}, "exchange": {method, url, requestBody, status, responseBody}, ...}
//
// `result` is the client's mapped value with the types made visible: a Date becomes
// {"$date": "<ISO>"} (or {"$date": "Invalid Date"}), undefined becomes {"$undefined": true}.
// `exchange` is the last HTTP exchange of the step, as axios sent and received it.
// tests/test_superoffice_client.py runs this and asserts on the lines; the script itself
// judges nothing and exits 0 once every step has printed (2 on a usage or setup error).
//
// Usage: node webapi_client.cjs '<JSON config>' | node webapi_client.cjs config.json
//   baseUrl            http://127.0.0.1:PORT/ (the client appends api/v1/Agents/Webhook/)
//   key                API key, sent as "Authorization: Bearer <key>"
//   targetUrl          an HTTPS receiver that answers 2xx (webhook A, and B while Stopped)
//   failingTargetUrl   an HTTPS receiver that answers the verification POST with 2xx and
//                      every delivery with an error (webhook C, for LastError)   [optional]
//   tenantBaseUrl      the same server with the key's ContextIdentifier, e.g.
//                      http://127.0.0.1:PORT/Cust1234/api/                        [optional]
//   otherTenantBaseUrl the same server with another tenant's ContextIdentifier    [optional]
//   associateId, associateName   an associate for ErrorAssociates (default 5, "tony")
//   requestTimeoutMs   per request (default 15000); pollDeadlineMs per polling step (15000)
"use strict";

const fs = require("fs");

function usage(message) {
  process.stderr.write(`webapi_client.cjs: ${message}\n`);
  process.exit(2);
}

let webapi;
try {
  webapi = require("@superoffice/webapi");
} catch (err) {
  usage(`cannot load @superoffice/webapi (${err.message}); run \`npm ci\` in tests/node`);
}
const { WebhookAgent, WebhookState, WebhookNotifyVia, WebhookNotifyWhen } = webapi;

const arg = process.argv[2];
if (!arg) usage("pass a JSON config (inline or a file name)");
let config;
try {
  config = JSON.parse(arg.trim().startsWith("{") ? arg : fs.readFileSync(arg, "utf8"));
} catch (err) {
  usage(`bad config: ${err.message}`);
}
for (const field of ["baseUrl", "key", "targetUrl"]) {
  if (typeof config[field] !== "string" || !config[field]) usage(`config.${field} is required`);
}
const REQUEST_TIMEOUT = config.requestTimeoutMs || 15000;
const POLL_DEADLINE = config.pollDeadlineMs || 15000;
const POLL_INTERVAL = 100;
const ASSOCIATE = { id: config.associateId || 5, name: config.associateName || "tony" };
const TAG = config.tag || `${process.pid}`;
const NAME_A = `so-client A ${TAG}`;
const NAME_B = `so-client B ${TAG}`;
const NAME_C = `so-client C ${TAG}`;
const SECRET = "Something Super Secret";

// ----- output ---------------------------------------------------------------------------

/** The mapped value, JSON-safe, with Dates and undefined made visible. */
function encode(value) {
  if (value === undefined) return { $undefined: true };
  if (value instanceof Date) {
    return { $date: Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString() };
  }
  if (Array.isArray(value)) return value.map(encode);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value)) out[key] = encode(value[key]);
    return out;
  }
  return value;
}

function describeError(err) {
  if (err && err.skipped) return { name: "Skipped", message: err.message };
  const out = {
    name: (err && err.constructor && err.constructor.name) || typeof err,
    message: err && err.message !== undefined ? String(err.message) : String(err),
  };
  if (err && err.code) out.code = err.code;
  if (err && err.response) {
    out.httpStatus = err.response.status;
    out.body = err.response.data;
  } else if (err && err.stack) {
    out.at = String(err.stack).split("\n").slice(1, 3).map((s) => s.trim());
  }
  return out;
}

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

// ----- agents ---------------------------------------------------------------------------

/** A WebhookAgent on `baseUrl` that sends `Authorization: Bearer <key>`, with every HTTP
 * exchange recorded into `log` (axios response interceptors see the serialized body). */
function makeAgent(baseUrl, key, log) {
  const agent = new WebhookAgent({
    baseUrl,
    axiosConfig: { headers: { Authorization: `Bearer ${key}` }, timeout: REQUEST_TIMEOUT },
  });
  const record = (cfg, response) => {
    cfg = cfg || {};
    const base = String(cfg.baseURL || "");
    const url = String(cfg.url || "");
    log.push({
      method: String(cfg.method || "").toUpperCase(),
      url: /^https?:/.test(url) ? url : base.replace(/\/?$/, "/") + url.replace(/^\//, ""),
      requestBody: cfg.data === undefined ? null : cfg.data,
      status: response ? response.status : null,
      responseBody: response ? response.data : null,
    });
  };
  agent._axios.interceptors.response.use(
    (response) => {
      record(response.config, response);
      return response;
    },
    (error) => {
      record(error && error.config, error && error.response);
      return Promise.reject(error);
    },
  );
  return agent;
}

const exchanges = [];
const agent = makeAgent(config.baseUrl, config.key, exchanges);

/** Run one step: `fn` returns the client's result (or throws); prints the line. */
async function step(name, fn, extra = {}, after = undefined) {
  const before = exchanges.length;
  const line = { step: name };
  let result;
  try {
    result = await fn(line);
    line.outcome = "ok";
    line.result = encode(result);
  } catch (err) {
    line.outcome = "err";
    line.error = describeError(err);
  }
  line.calls = exchanges.length - before;
  if (line.calls > 0) line.exchange = exchanges[exchanges.length - 1];
  Object.assign(line, extra);
  if (after) await after(line);
  print(line);
  return line.outcome === "ok" ? result : undefined;
}

function needs(value, what) {
  if (value === undefined || value === null) {
    const err = new Error(`needs ${what}`);
    err.skipped = true;
    throw err;
  }
  return value;
}

function clientVersion() {
  // The package's exports map hides package.json; read it beside the resolved entry point.
  const path = require("path");
  const entry = require.resolve("@superoffice/webapi"); // .../dist/cjs/WebApi.js
  const file = path.join(path.dirname(entry), "..", "..", "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Call `fn` until `done(result)` or the deadline; stop at the first error (rethrown). */
async function poll(line, fn, done) {
  const deadline = Date.now() + POLL_DEADLINE;
  let result;
  let polls = 0;
  for (;;) {
    polls += 1;
    result = await fn();
    line.polls = polls;
    if (done(result)) return result;
    if (Date.now() >= deadline) {
      line.pollTimedOut = true;
      return result;
    }
    await sleep(POLL_INTERVAL);
  }
}

/** A copy of a mapped carrier, Dates kept (structuredClone), or {} when there is none. */
function copyOf(carrier) {
  return carrier ? structuredClone(carrier) : {};
}

/** The REST route beside the agent's (…/api/v1/Agents/Webhook/ -> …/api/v1/Webhook). */
function restUrl() {
  return agent._options.baseUrl.replace(/Agents\/Webhook\/$/, "Webhook");
}

/** Not the client: POST /api/v1/Webhook with the PascalCase carrier, so that the steps after
 * a failed SaveWebhook still exercise the other WebhookAgent methods on a real webhook. */
async function restCreate(fields) {
  const body = {
    Name: fields.name,
    Events: fields.events,
    TargetUrl: fields.targetUrl,
    Secret: fields.secret === undefined ? null : fields.secret,
    State: fields.state,
    Type: "webhook",
  };
  if (fields.errorEmails) body.ErrorEmails = fields.errorEmails;
  if (fields.errorAssociates) {
    body.ErrorAssociates = fields.errorAssociates.map((a) => ({ Id: a.id, Name: a.name }));
  }
  if (fields.description !== undefined) body.Description = fields.description;
  if (fields.notifyVia !== undefined) body.NotifyVia = fields.notifyVia;
  if (fields.notifyWhen !== undefined) body.NotifyWhen = fields.notifyWhen;
  const response = await fetch(restUrl(), {
    method: "POST",
    headers: { Authorization: `Bearer ${config.key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (err) {
    json = text;
  }
  return { status: response.status, webhookId: json && json.WebhookId, body: json };
}

/** A SaveWebhook create step: the default carrier with `fields` set. When the client's call
 * fails, the webhook is created over REST instead (the line says so under `fallback`), or,
 * when hookcast stored it and only the client's mapping of the answer failed, its id is taken
 * from the raw answer; the step still counts as failed. Returns {id, carrier}: carrier is what
 * the client mapped. */
async function createStep(name, defaults, fields) {
  let fallback;
  const carrier = await step(
    name,
    (line) => {
      const hook = copyOf(defaults);
      if (!defaults) line.note = "no default carrier: started from {}";
      Object.assign(hook, fields);
      return agent.saveWebhookAsync(hook);
    },
    { name: fields.name },
    async (line) => {
      if (line.outcome === "ok") {
        line.webhookId = line.result && line.result.webhookId;
        return;
      }
      const answer = line.exchange;
      if (answer && answer.status >= 200 && answer.status < 300) {
        // Stored, but the client failed on the answer (e.g. its mapping threw): use the id
        // from the raw response rather than create a second webhook.
        const raw = answer.responseBody;
        fallback = { fromRawResponse: true, webhookId: raw && raw.WebhookId };
      } else {
        try {
          fallback = await restCreate(fields);
        } catch (err) {
          fallback = { error: describeError(err) };
        }
      }
      line.fallback = fallback;
      if (typeof fallback.webhookId === "number") line.webhookId = fallback.webhookId;
    },
  );
  const id = carrier ? carrier.webhookId : fallback && fallback.webhookId;
  return { id: typeof id === "number" && id > 0 ? id : undefined, carrier };
}

// ----- the run --------------------------------------------------------------------------

async function main() {
  print({
    step: "setup",
    outcome: "ok",
    result: {
      baseUrl: agent._options.baseUrl,
      client: clientVersion(),
      node: process.version,
      tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    },
  });

  const defaults = await step("create_default", () => agent.createDefaultWebhookAsync());

  // A: start from the default carrier, as SuperOffice's docs do, and set everything,
  // including the SuperOffice 12 fields.
  const fieldsA = {
    name: NAME_A,
    targetUrl: config.targetUrl,
    events: ["contact.created", "Sale.Created"],
    secret: SECRET,
    state: WebhookState.Active,
    errorEmails: ["ops@example.com", "dev@example.com"],
    errorAssociates: [{ id: ASSOCIATE.id, name: ASSOCIATE.name }],
    description: "Created by @superoffice/webapi WebhookAgent",
    notifyVia: WebhookNotifyVia.Email | WebhookNotifyVia.InApp,
    notifyWhen: WebhookNotifyWhen.FirstFailure | WebhookNotifyWhen.Disabling,
  };
  const created = await createStep("save_create", defaults, fieldsA);
  const idA = created.id;

  // B: Stopped (stored without the test POST), other events, no SuperOffice 12 fields.
  const fieldsB = {
    name: NAME_B,
    targetUrl: config.targetUrl,
    events: ["person.changed"],
    state: WebhookState.Stopped,
  };
  const idB = (await createStep("save_create_stopped", defaults, fieldsB)).id;

  // Update A: the carrier the client mapped goes back as it is (Dates, associates,
  // counters and all), with some fields changed.
  const updated = await step("save_update", (line) => {
    const hook = created.carrier
      ? copyOf(created.carrier)
      : Object.assign(copyOf(defaults), fieldsA, { webhookId: needs(idA, "webhook A's id") });
    line.note = created.carrier ? undefined : "save_create failed: the carrier is built anew";
    hook.events = [...(hook.events || []), "project.created"];
    hook.description = "Updated by @superoffice/webapi WebhookAgent";
    hook.errorEmails = ["ops@example.com"];
    hook.errorAssociates = [...(hook.errorAssociates || []), { id: 7, name: "eve" }];
    hook.notifyVia = WebhookNotifyVia.Email;
    hook.notifyWhen = WebhookNotifyWhen.Disabling;
    return agent.saveWebhookAsync(hook);
  });

  const fetched = await step("get_webhook", () =>
    agent.getWebhookAsync(needs(idA, "webhook A's id")),
  );

  const ids = (list) => (Array.isArray(list) ? list.map((h) => h && h.webhookId) : list);
  await step("get_all", async (line) => {
    const list = await agent.getAllWebhooksAsync();
    line.ids = ids(list);
    return list;
  });
  await step("get_all_by_name", async (line) => {
    const list = await agent.getAllWebhooksAsync(NAME_A, null, null);
    line.ids = ids(list);
    return list;
  });
  await step("get_all_by_event", async (line) => {
    const list = await agent.getAllWebhooksAsync({ eventFilter: "person.changed" });
    line.ids = ids(list);
    return list;
  });
  await step("get_all_by_state", async (line) => {
    const list = await agent.getAllWebhooksAsync(null, null, WebhookState.Stopped);
    line.ids = ids(list);
    return list;
  });
  await step("get_all_combined", async (line) => {
    const list = await agent.getAllWebhooksAsync(NAME_A, "sale.created", WebhookState.Active);
    line.ids = ids(list);
    return list;
  });
  await step("get_all_no_match", async (line) => {
    const list = await agent.getAllWebhooksAsync(NAME_A, "person.changed", WebhookState.Unknown);
    line.ids = ids(list);
    return list;
  });

  await step("test_webhook", () =>
    agent.testWebhookAsync(
      copyOf(fetched || updated || created.carrier || Object.assign(copyOf(defaults), fieldsA)),
    ),
  );

  await step("signal_event", () =>
    agent.signalEventAsync("contact.created", 994863, { name: "Ada", department: "R&D" }),
  );

  // The delivery of that event to A shows in A's counters.
  await step("delivered", (line) => {
    needs(idA, "webhook A's id");
    return poll(
      line,
      () => agent.getWebhookAsync(idA),
      (h) => !h || typeof h.totalCalls !== "number" || h.totalCalls >= 1,
    );
  });

  // C: Active at a receiver that passes verification and then fails every delivery.
  const fieldsC = {
    name: NAME_C,
    targetUrl: config.failingTargetUrl,
    events: ["hookcast.failing"],
    state: WebhookState.Active,
  };
  const idC = config.failingTargetUrl
    ? (await createStep("save_create_failing", defaults, fieldsC)).id
    : undefined;
  if (config.failingTargetUrl) {
    await step("signal_failing", () => agent.signalEventAsync("hookcast.failing", 7, null));
    await step("last_error", (line) => {
      needs(idC, "webhook C's id");
      return poll(
        line,
        () => agent.getLastErrorAsync(idC),
        (e) => typeof e === "string" && e.length > 0,
      );
    });
    await step("failing_state", (line) => {
      needs(idC, "webhook C's id");
      return poll(
        line,
        () => agent.getWebhookAsync(idC),
        (h) => !h || h.state === WebhookState.TooManyErrors,
      );
    });
  }

  // The same agent API on URLs that carry a ContextIdentifier, as SuperOffice Online's do.
  if (config.tenantBaseUrl) {
    const tenantAgent = makeAgent(config.tenantBaseUrl, config.key, exchanges);
    await step("tenant_url", () => tenantAgent.getWebhookAsync(needs(idA, "webhook A's id")), {
      baseUrl: tenantAgent._options.baseUrl,
    });
  }
  if (config.otherTenantBaseUrl) {
    const otherAgent = makeAgent(config.otherTenantBaseUrl, config.key, exchanges);
    await step(
      "other_tenant_url",
      () => otherAgent.getWebhookAsync(needs(idA, "webhook A's id")),
      { baseUrl: otherAgent._options.baseUrl },
    );
  }

  // Errors as the client surfaces them: an AxiosError with response.status and response.data.
  await step("save_invalid", () => {
    const hook = copyOf(defaults);
    hook.name = "insecure";
    hook.targetUrl = "http://hooks.example.com/insecure";
    hook.events = ["contact.created"];
    hook.state = WebhookState.Active;
    return agent.saveWebhookAsync(hook);
  });
  const badAgent = makeAgent(config.baseUrl, "not-a-valid-key", exchanges);
  await step("bad_key", () => badAgent.createDefaultWebhookAsync());

  await step("delete_webhook", () => agent.deleteWebhookAsync(needs(idA, "webhook A's id")));
  await step("get_deleted", () => agent.getWebhookAsync(needs(idA, "webhook A's id")));

  await step("cleanup", async (line) => {
    line.deleted = [];
    for (const id of [idB, idC]) {
      if (id) {
        await agent.deleteWebhookAsync(id);
        line.deleted.push(id);
      }
    }
    return null;
  });
}

main().then(
  () => process.exit(0),
  (err) => {
    print({ step: "harness", outcome: "err", error: describeError(err) });
    process.exit(1);
  },
);

// Ask every NATS micro service PING, INFO and STATS with the official NATS JavaScript services
// client (@nats-io/services over @nats-io/transport-node); print one JSON object:
// {ping: [...], info: [...], stats: [...], harness: {ping, info}}.
// usage: node js_micro.mjs <nats url> <agent whose harness to ask by name>
// env: HIVE_NODE_MODULES (node_modules with the clients), NATS_USER/NATS_PASSWORD/NATS_INBOX_PREFIX (optional)
import { createRequire } from "node:module";

const require = createRequire(process.env.HIVE_NODE_MODULES + "/");
const { connect } = require("@nats-io/transport-node");
const { Svcm } = require("@nats-io/services");

const [url, agent] = process.argv.slice(2);
const opts = { servers: url, name: "hive-contract-js" };
if (process.env.NATS_USER) {
  opts.user = process.env.NATS_USER;
  opts.pass = process.env.NATS_PASSWORD;
  opts.inboxPrefix = process.env.NATS_INBOX_PREFIX;
}
const nc = await connect(opts);
// the deployer relays the broadcasts to its harnesses: wait a fixed time for every answer
const client = new Svcm(nc).client({ strategy: "timer", maxWait: 2500 });
const all = async (it) => { const out = []; for await (const x of await it) out.push(x); return out; };
const out = {
  ping: await all(client.ping()),
  info: await all(client.info()),
  stats: await all(client.stats()),
  harness: { ping: await all(client.ping("hive-harness", agent)), info: await all(client.info("hive-harness", agent)) },
};
await nc.close();
console.log(JSON.stringify(out));

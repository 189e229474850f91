// The sandbox's first process (run by the harness inside bubblewrap).
// argv: PORT EGRESS_SOCKET COMMAND [ARGS...]
// Relays 127.0.0.1:PORT (the agent CLI's HTTP(S)_PROXY; the sandbox has no other network)
// to the harness's egress proxy on a unix socket, then runs COMMAND with this process's
// stdio and exits with its status. When it exits, bubblewrap ends the whole sandbox.
'use strict';
const net = require('net');
const os = require('os');
const { spawn } = require('child_process');

const [port, egress, cmd, ...args] = process.argv.slice(2);

const relay = net.createServer((inner) => {
  const outer = net.connect(egress);
  const end = () => { inner.destroy(); outer.destroy(); };
  inner.on('error', end); outer.on('error', end);
  inner.on('close', end); outer.on('close', end);
  inner.pipe(outer); outer.pipe(inner);
});
relay.on('error', (e) => { process.stderr.write(`hive sandbox: proxy relay: ${e.message}\n`); process.exit(125); });
relay.listen(Number(port), '127.0.0.1', () => {
  const child = spawn(cmd, args, { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => { process.stderr.write(`hive sandbox: cannot run ${cmd}: ${e.message}\n`); process.exit(127); });
  child.on('exit', (code, sig) => process.exit(code === null ? 128 + (os.constants.signals[sig] || 9) : code));
});
